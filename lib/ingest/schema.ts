import type { Sql } from "postgres";
import { UserError } from "../errors.ts";

/** Fails with a clear line when the schema has not been set up (a write could never succeed). */
export async function checkSchema(sql: Sql): Promise<void> {
  const [row] = await sql<
    { ticks: string | null; batches: string | null; leases: string | null }[]
  >`
    SELECT to_regclass('crypto_ticks')::text AS ticks, to_regclass('tickpipe_batches')::text AS batches,
           to_regclass('tickpipe_lease_holders')::text AS leases`;
  if (!row?.ticks || !row.batches) {
    throw new UserError("Cannot ingest: the schema is missing (run `deno task setup` first)");
  }
  if (!row.leases) {
    throw new UserError(
      "Cannot ingest: the schema predates ingest leases (run `deno task setup` to update it)",
    );
  }
}
