import type { Sql } from "postgres";
import { UserError } from "../errors.ts";
import { type Logger, silentLogger } from "../log.ts";
import { errorText } from "../text.ts";
import { systemClock } from "../timers.ts";
import { CONNECTION_ERRORS } from "./connection.ts";
import { compareVersions, type SchemaMode } from "./server_info.ts";
import ticksPortable from "../../sql/001_ticks.portable.sql" with { type: "text" };
import ticksTimescale from "../../sql/001_ticks.timescaledb.sql" with { type: "text" };
import ticksTimescaleLegacy from "../../sql/001_ticks.timescaledb_legacy.sql" with { type: "text" };
import ingestBatches from "../../sql/002_ingest_batches.sql" with { type: "text" };
import candlesPortable from "../../sql/003_candles.portable.sql" with { type: "text" };
import candlesTimescale from "../../sql/003_candles.timescaledb.sql" with { type: "text" };
import candlesColumnstore from "../../sql/003_candles_columnstore.timescaledb.sql" with {
  type: "text",
};
import candlesCompression from "../../sql/003_candles_columnstore.timescaledb_legacy.sql" with {
  type: "text",
};
import externalWrites from "../../sql/004_external_writes.sql" with { type: "text" };
import quarantine from "../../sql/005_quarantine.sql" with { type: "text" };
import ingestLeases from "../../sql/006_ingest_leases.sql" with { type: "text" };
import gaps from "../../sql/007_gaps.sql" with { type: "text" };
import provenancePortable from "../../sql/008_candle_provenance.portable.sql" with {
  type: "text",
};
import provenanceTimescale from "../../sql/008_candle_provenance.timescaledb.sql" with {
  type: "text",
};
import retention from "../../sql/009_retention.sql" with { type: "text" };
import candleTablesPortable from "../../sql/010_candle_tables.portable.sql" with {
  type: "text",
};
import candleTablesTimescale from "../../sql/010_candle_tables.timescaledb.sql" with {
  type: "text",
};
import { buildCandles } from "../candles/build.ts";

/** One numbered schema change, with its SQL for each mode. */
export interface Migration {
  version: number;
  name: string;
  /** Plain PostgreSQL. */
  portable: string;
  /** TimescaleDB 2.20 or later. */
  timescaledb: string;
  /** TimescaleDB before 2.20, when it differs. */
  timescaledbLegacy?: string;
  /** Portable mode: runs after the SQL, in its transaction (e.g. to fill a new table). */
  portableData?: (sql: Sql, logger: Logger) => Promise<unknown>;
}

/** First TimescaleDB version with `CREATE TABLE ... WITH (tsdb.hypertable)`. */
const TSDB_WITH_SYNTAX = "2.20.0";

/** The schema, in order. SQL is imported as text so a compiled binary carries it. */
export const MIGRATIONS: Migration[] = [
  {
    version: 1,
    name: "ticks",
    portable: ticksPortable,
    timescaledb: ticksTimescale,
    timescaledbLegacy: ticksTimescaleLegacy,
  },
  { version: 2, name: "ingest_batches", portable: ingestBatches, timescaledb: ingestBatches },
  {
    version: 3,
    name: "candles",
    portable: candlesPortable,
    // The aggregates are the same on every version; only their columnstore API differs.
    timescaledb: `${candlesTimescale}\n${candlesColumnstore}`,
    timescaledbLegacy: `${candlesTimescale}\n${candlesCompression}`,
  },
  // Rows written by other tools (the tutorial's four columns) get their seq from a trigger.
  { version: 4, name: "external_writes", portable: externalWrites, timescaledb: externalWrites },
  { version: 5, name: "quarantine", portable: quarantine, timescaledb: quarantine },
  // A plain table in both modes: a handful of rows per symbol, no time-series features.
  { version: 6, name: "ingest_leases", portable: ingestLeases, timescaledb: ingestLeases },
  { version: 7, name: "gaps", portable: gaps, timescaledb: gaps },
  {
    version: 8,
    name: "candle_provenance",
    portable: provenancePortable,
    // The rebuilt aggregates get the columnstore (or compression) settings of 003 again.
    timescaledb: `${provenanceTimescale}\n${candlesColumnstore}`,
    timescaledbLegacy: `${provenanceTimescale}\n${candlesCompression}`,
  },
  { version: 9, name: "retention", portable: retention, timescaledb: retention },
  {
    version: 10,
    name: "candle_tables",
    portable: candleTablesPortable,
    timescaledb: candleTablesTimescale,
    // The ticks already stored become candles, day by day, before the migration commits.
    portableData: (sql, logger) => buildCandles(sql, {}, { logger }),
  },
];

/** The SQL of `migration` for `mode` (and, in TimescaleDB mode, the server's version). */
export function renderMigration(
  migration: Migration,
  mode: SchemaMode,
  timescaleVersion?: string,
): string {
  if (mode === "portable") return migration.portable;
  const legacy = timescaleVersion !== undefined &&
    compareVersions(timescaleVersion, TSDB_WITH_SYNTAX) < 0;
  return legacy && migration.timescaledbLegacy
    ? migration.timescaledbLegacy
    : migration.timescaledb;
}

/** What `migrate` did. */
export interface MigrationResult {
  applied: { version: number; name: string }[];
  alreadyApplied: number;
}

async function checksum(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest).slice(0, 8)).map((b) => b.toString(16).padStart(2, "0"))
    .join("");
}

/** Key of the advisory lock that keeps two concurrent `setup` runs apart. */
const LOCK_KEY = 7_316_402_911;

const TRANSIENT_ATTEMPTS = 5;

/**
 * An error a retry of the whole migration can outlive: a deadlock or serialization failure,
 * or TimescaleDB's background jobs (the policies an earlier migration just created start at
 * once) touching the catalog rows a migration drops ("tuple concurrently deleted").
 */
function isTransient(error: unknown): boolean {
  const e = error as { code?: string; message?: string };
  return e?.code === "40P01" || e?.code === "40001" ||
    /tuple concurrently (deleted|updated)/.test(e?.message ?? "");
}

/**
 * True when `error` means the connection it came from is gone: a FATAL or PANIC from the
 * server (a terminated backend, `extension "timescaledb" must be preloaded`, a shutdown)
 * or a socket that closed. postgres.js 3.4.9 must then not be sent anything more on that
 * connection: a query on a reserved connection whose socket has closed throws a TypeError
 * from a timer, out of reach of any `catch` (porsager/postgres#1208).
 */
export function connectionLost(error: unknown): boolean {
  const e = error as { severity?: string; code?: string; errno?: string };
  if (e?.severity === "FATAL" || e?.severity === "PANIC") return true;
  const code = e?.code ?? e?.errno ?? "";
  return CONNECTION_ERRORS.has(code) || code.startsWith("CONNECTION_") ||
    code.startsWith("08") || ["57P01", "57P02", "57P03"].includes(code);
}

/** The mode a database was set up in (from `tickpipe_migrations`), undefined if never. */
export async function recordedMode(sql: Sql): Promise<SchemaMode | undefined> {
  const [table] = await sql<{ exists: boolean }[]>`
    SELECT to_regclass('tickpipe_migrations') IS NOT NULL AS exists`;
  if (!table?.exists) return undefined;
  const [row] = await sql<{ mode: SchemaMode }[]>`
    SELECT mode FROM tickpipe_migrations ORDER BY version LIMIT 1`;
  return row?.mode;
}

/**
 * Applies the migrations not yet recorded in `tickpipe_migrations`, in order, each
 * in its own transaction together with its record: a failing migration rolls back
 * entirely and stops the run (after up to 5 attempts when the failure is transient, see
 * `isTransient`). Re-running applies nothing. A role that may not create what the schema
 * needs gets a `UserError` naming the grant to ask for.
 */
export async function migrate(
  sql: Sql,
  options: {
    mode: SchemaMode;
    timescaleVersion?: string | undefined;
    migrations?: Migration[];
    logger?: Logger;
    /** Waits between attempts after a transient failure (default: real timers). */
    sleep?: (ms: number) => Promise<void>;
  },
): Promise<MigrationResult> {
  const logger = options.logger ?? silentLogger;
  const sleep = options.sleep ?? systemClock.sleep;
  const migrations = [...(options.migrations ?? MIGRATIONS)].sort((a, b) => a.version - b.version);
  const reserved = await sql.reserve();
  // Once the connection is lost, nothing more may be sent on it (see `connectionLost`):
  // the server has already rolled back and released the session's advisory lock.
  let lost = false;
  const guard = async <T>(query: () => Promise<T>): Promise<T> => {
    try {
      return await query();
    } catch (error) {
      if (connectionLost(error)) lost = true;
      throw error;
    }
  };
  let who = { role: "?", database: "?", schema: "public" };
  try {
    const [row] = await guard(() =>
      reserved<{ role: string; database: string; schema: string | null }[]>`
        SELECT current_user AS role, current_database() AS database, current_schema() AS schema`
    );
    who = { role: row!.role, database: row!.database, schema: row!.schema ?? "public" };
    await guard(() => reserved`SELECT pg_advisory_lock(${LOCK_KEY})`);
    await guard(() =>
      reserved`
        CREATE TABLE IF NOT EXISTS tickpipe_migrations (
          version INTEGER PRIMARY KEY,
          name TEXT NOT NULL,
          mode TEXT NOT NULL,
          checksum TEXT NOT NULL,
          applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )`
    );
    const done = await guard(() =>
      reserved<{ version: number; mode: string }[]>`
        SELECT version, mode FROM tickpipe_migrations ORDER BY version`
    );
    const doneVersions = new Set(done.map((r) => r.version));
    const previousMode = done[0]?.mode;
    if (previousMode && previousMode !== options.mode) {
      logger.warn(
        `This database was set up in ${previousMode} mode; continuing in ${previousMode} mode`,
      );
    }
    const mode = (previousMode as SchemaMode | undefined) ?? options.mode;
    const result: MigrationResult = { applied: [], alreadyApplied: 0 };
    for (const migration of migrations) {
      if (doneVersions.has(migration.version)) {
        result.alreadyApplied++;
        continue;
      }
      const label = `${String(migration.version).padStart(3, "0")}_${migration.name}`;
      const text = renderMigration(migration, mode, options.timescaleVersion);
      const sum = await checksum(text);
      for (let attempt = 1;; attempt++) {
        await guard(() => reserved.unsafe("BEGIN"));
        try {
          await guard(() => reserved.unsafe(text));
          if (mode === "portable" && migration.portableData) {
            await guard(() => migration.portableData!(reserved, logger));
          }
          await guard(() =>
            reserved`
              INSERT INTO tickpipe_migrations (version, name, mode, checksum)
              VALUES (${migration.version}, ${migration.name}, ${mode}, ${sum})`
          );
          await guard(() => reserved.unsafe("COMMIT"));
          break;
        } catch (error) {
          if (!lost) await guard(() => reserved.unsafe("ROLLBACK")).catch(() => {});
          let message = errorText(error);
          if (!lost && attempt < TRANSIENT_ATTEMPTS && isTransient(error)) {
            logger.warn(`Migration ${label} met a concurrent job (${message}); retrying`);
            await sleep(250 * attempt);
            continue;
          }
          if (/^\w+ CONNECTION_\w+/.test(message)) {
            message = `the connection closed (${message}); see the PostgreSQL server log`;
          }
          throw new MigrationError(`Migration ${label} failed and was rolled back: ${message}`, {
            cause: error,
          });
        }
      }
      logger.info(`Applied migration ${label}`);
      result.applied.push({ version: migration.version, name: migration.name });
    }
    return result;
  } catch (error) {
    throw explainPrivilege(error, who) ?? error;
  } finally {
    if (!lost) {
      await reserved`SELECT pg_advisory_unlock(${LOCK_KEY})`.catch(() => {});
      reserved.release();
    }
  }
}

/** A `UserError` for a privilege error (SQLSTATE 42501) while migrating, else undefined. */
function explainPrivilege(
  error: unknown,
  who: { role: string; database: string; schema: string },
): UserError | undefined {
  const cause = error instanceof MigrationError ? error.cause : error;
  if ((cause as { code?: string })?.code !== "42501") return undefined;
  const pgMessage = (cause as Error).message;
  const fix = /schema/.test(pgMessage)
    ? `; run setup as the database owner or a superuser, or have one run: GRANT CREATE ON ` +
      `SCHEMA ${who.schema} TO ${who.role}`
    : /database/.test(pgMessage)
    ? `; run setup as the database owner or a superuser, or have one run: GRANT CREATE ON ` +
      `DATABASE ${who.database} TO ${who.role}`
    : "; run setup as the database owner or a superuser";
  return new UserError(
    `Cannot set up the schema as role "${who.role}" in database "${who.database}": ` +
      `${pgMessage}${fix}`,
    { cause: error },
  );
}

/** A migration failed; nothing of it was applied. */
export class MigrationError extends Error {
  override name = "MigrationError";
}
