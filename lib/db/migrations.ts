import type { Sql } from "postgres";
import { type Logger, silentLogger } from "../log.ts";
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
import gaps from "../../sql/007_gaps.sql" with { type: "text" };
import provenancePortable from "../../sql/008_candle_provenance.portable.sql" with {
  type: "text",
};
import provenanceTimescale from "../../sql/008_candle_provenance.timescaledb.sql" with {
  type: "text",
};

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
}

/** First TimescaleDB version with `CREATE TABLE ... WITH (tsdb.hypertable)`. */
export const TSDB_WITH_SYNTAX = "2.20.0";

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
  { version: 7, name: "gaps", portable: gaps, timescaledb: gaps },
  {
    version: 8,
    name: "candle_provenance",
    portable: provenancePortable,
    // The rebuilt aggregates get the columnstore (or compression) settings of 003 again.
    timescaledb: `${provenanceTimescale}\n${candlesColumnstore}`,
    timescaledbLegacy: `${provenanceTimescale}\n${candlesCompression}`,
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
 * Applies the migrations not yet recorded in `tickpipe_migrations`, in order, each
 * in its own transaction together with its record: a failing migration rolls back
 * entirely and stops the run (after up to 5 attempts when the failure is transient, see
 * `isTransient`). Re-running applies nothing.
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
  const sleep = options.sleep ??
    ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  const migrations = [...(options.migrations ?? MIGRATIONS)].sort((a, b) => a.version - b.version);
  const reserved = await sql.reserve();
  try {
    await reserved`SELECT pg_advisory_lock(${LOCK_KEY})`;
    await reserved`
      CREATE TABLE IF NOT EXISTS tickpipe_migrations (
        version INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        mode TEXT NOT NULL,
        checksum TEXT NOT NULL,
        applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
      )`;
    const done = await reserved<{ version: number; mode: string }[]>`
      SELECT version, mode FROM tickpipe_migrations ORDER BY version`;
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
      const text = renderMigration(migration, mode, options.timescaleVersion);
      const sum = await checksum(text);
      const label = `${String(migration.version).padStart(3, "0")}_${migration.name}`;
      for (let attempt = 1;; attempt++) {
        await reserved.unsafe("BEGIN");
        try {
          await reserved.unsafe(text);
          await reserved`
            INSERT INTO tickpipe_migrations (version, name, mode, checksum)
            VALUES (${migration.version}, ${migration.name}, ${mode}, ${sum})`;
          await reserved.unsafe("COMMIT");
          break;
        } catch (error) {
          await reserved.unsafe("ROLLBACK").catch(() => {});
          const message = error instanceof Error ? error.message : String(error);
          if (attempt < TRANSIENT_ATTEMPTS && isTransient(error)) {
            logger.warn(`Migration ${label} met a concurrent job (${message}); retrying`);
            await sleep(250 * attempt);
            continue;
          }
          throw new MigrationError(`Migration ${label} failed and was rolled back: ${message}`, {
            cause: error,
          });
        }
      }
      logger.info(
        `Applied migration ${String(migration.version).padStart(3, "0")}_${migration.name}`,
      );
      result.applied.push({ version: migration.version, name: migration.name });
    }
    return result;
  } finally {
    await reserved`SELECT pg_advisory_unlock(${LOCK_KEY})`.catch(() => {});
    reserved.release();
  }
}

/** A migration failed; nothing of it was applied. */
export class MigrationError extends Error {
  override name = "MigrationError";
}
