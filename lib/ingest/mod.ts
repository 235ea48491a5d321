/** Ingest: the Twelve Data stream into the pipeline until stopped, with its summary line. */
export * from "./run.ts";
export * from "./schema.ts";
export * from "./summary.ts";
