/** One writer per symbol: leases in the database (docs/one_writer.md). */
export * from "./ingest_leases.ts";
export * from "./lease_options.ts";
export * from "./lease_session.ts";
