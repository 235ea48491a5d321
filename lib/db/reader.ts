import type { Sql } from "postgres";
import { CANDLE_RELATIONS } from "../candles/query.ts";
import { UserError } from "../errors.ts";
import type { SchemaMode } from "./server_info.ts";

/** What a reader role may SELECT: the ticks, the assets and the three candle relations. */
export const READER_RELATIONS = [
  "crypto_ticks",
  "crypto_assets",
  ...Object.values(CANDLE_RELATIONS),
];

/** Portable mode's materialized candles, which its candle views read. */
const CANDLE_TABLE = "tickpipe_candle";

/** A role name `setup --reader` accepts: a plain lower-case identifier, not `pg_*`. */
export const READER_NAME_RE = /^(?!pg_)[a-z_][a-z0-9_]{0,62}$/;

/** What `grantReader` did. */
export interface ReaderResult {
  /** False when the role existed (its grants were brought to the reader's set). */
  created: boolean;
  /** What it may do: relations, and the function in portable mode. */
  granted: string[];
  /** Access it still has through grants to PUBLIC, which only an administrator should revoke. */
  warnings: string[];
}

/**
 * Creates (or updates) `name` as a login role that can read the candles and nothing
 * else of tickpipe's: SELECT on `READER_RELATIONS`, EXECUTE on `tickpipe_candles` and SELECT
 * on the candle table in portable mode, no privilege at all on the `tickpipe_*` tables (exactly-once batch
 * records, migrations) and no write anywhere in tickpipe's tables. It gets no password:
 * the caller tells the user how to set one without it passing through tickpipe.
 * Idempotent; one transaction.
 */
export async function grantReader(
  sql: Sql,
  name: string,
  options: { mode: SchemaMode },
): Promise<ReaderResult> {
  if (!READER_NAME_RE.test(name)) {
    throw new RangeError(`Cannot create the reader role "${name}": not a plain role name`);
  }
  return await sql.begin(async (tx) => {
    const [me] = await tx<{ user: string; database: string }[]>`
      SELECT current_user AS user, current_database() AS database`;
    if (me!.user === name) {
      throw new UserError(
        `Cannot make "${name}" a reader: it is the role setup connects as; choose another name`,
      );
    }
    const [existing] = await tx<{ super: boolean }[]>`
      SELECT rolsuper AS super FROM pg_roles WHERE rolname = ${name}`;
    if (existing?.super) {
      throw new UserError(
        `Cannot make "${name}" a reader: it is a superuser, which reads everything; choose another name`,
      );
    }
    if (!existing) {
      await tx`CREATE ROLE ${tx(name)} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION`;
    }
    const role = tx(name);
    await tx`GRANT CONNECT ON DATABASE ${tx(me!.database)} TO ${role}`;
    await tx`GRANT USAGE ON SCHEMA public TO ${role}`;
    // Whatever an existing role had on tickpipe's tables goes, then only SELECT comes back.
    const internal = await tx<{ name: string }[]>`
      SELECT c.relname AS name FROM pg_class AS c
      JOIN pg_namespace AS n ON n.oid = c.relnamespace
      WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm')
        AND c.relname LIKE 'tickpipe\\_%'`;
    const revoked = [...internal.map((r) => r.name), ...READER_RELATIONS];
    await tx`REVOKE ALL ON TABLE ${tx(revoked)} FROM ${role}`;
    // Portable mode's views and tickpipe_candles() read the candle table (migration 010).
    const readable = options.mode === "portable" && internal.some((r) => r.name === CANDLE_TABLE)
      ? [...READER_RELATIONS, CANDLE_TABLE]
      : READER_RELATIONS;
    await tx`GRANT SELECT ON TABLE ${tx(readable)} TO ${role}`;
    const granted = [...readable];
    if (options.mode === "portable") {
      await tx`
        GRANT EXECUTE ON FUNCTION tickpipe_candles(text, timestamptz, timestamptz) TO ${role}`;
      granted.push("tickpipe_candles()");
    }
    const warnings: string[] = [];
    const leaks = await tx<{ relation: string; privilege: string }[]>`
      SELECT r.relation, p.privilege
      FROM unnest(${revoked}::text[]) AS r(relation)
      CROSS JOIN unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) AS p(privilege)
      WHERE NOT (r.relation = ANY(${readable}::text[]) AND p.privilege = 'SELECT')
        AND has_table_privilege(${name}, r.relation, p.privilege)`;
    for (const leak of leaks) {
      warnings.push(
        `"${name}" can still ${leak.privilege} ${leak.relation} through a grant to PUBLIC ` +
          `(an administrator can run: REVOKE ${leak.privilege} ON ${leak.relation} FROM PUBLIC)`,
      );
    }
    const [schema] = await tx<{ create: boolean }[]>`
      SELECT has_schema_privilege(${name}, 'public', 'CREATE') AS create`;
    if (schema?.create) {
      warnings.push(
        `"${name}" can create tables in schema public, as every role can before PostgreSQL 15 ` +
          "(an administrator can run: REVOKE CREATE ON SCHEMA public FROM PUBLIC)",
      );
    }
    return { created: !existing, granted, warnings };
  });
}
