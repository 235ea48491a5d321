/**
 * @deprecated Import lib/ingest/mod.ts. Kept only for tasks/bench.ts and tests/lease_test.ts
 * (other sessions' files) until they switch; then delete this file.
 */
export * from "./ingest/mod.ts";
