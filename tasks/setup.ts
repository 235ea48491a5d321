import { configFromFlags, loggerFor, parseFlags, runMain } from "../lib/cli.ts";
import { UsageError } from "../lib/errors.ts";
import { openDatabase } from "../lib/db/connection.ts";
import { migrate } from "../lib/db/migrations.ts";
import { readCandleMode, refreshCandles } from "../lib/candles/mod.ts";
import {
  defaultMode,
  describeServer,
  readServerInfo,
  type SchemaMode,
} from "../lib/db/server_info.ts";

const USAGE =
  `Usage: tickpipe setup [--mode auto|timescaledb|portable] [--log-level L] [--log-format text|json]

Creates or updates the schema (tables, candles, policies). Safe to run again.`;

/** `tickpipe setup`: applies the schema migrations in the mode the server supports. */
export function run(args: string[]): Promise<number> {
  return runMain(async () => {
    const { values } = parseFlags(args, { mode: { type: "string", default: "auto" } }, USAGE);
    if (!["auto", "timescaledb", "portable"].includes(values.mode)) {
      throw new UsageError(`--mode must be auto, timescaledb or portable\n${USAGE}`);
    }
    const config = configFromFlags(values);
    const logger = loggerFor(config);
    const db = await openDatabase(config, { logger, max: 1 });
    try {
      const info = await readServerInfo(db.sql);
      const mode: SchemaMode = values.mode === "auto"
        ? defaultMode(info)
        : values.mode as SchemaMode;
      if (mode === "timescaledb" && !info.timescaleVersion) {
        throw new UsageError(
          "--mode timescaledb: this server has no TimescaleDB extension available",
        );
      }
      console.log(describeServer(info, mode));
      const result = await migrate(db.sql, {
        mode,
        timescaleVersion: info.timescaleVersion,
        logger,
      });
      if (result.applied.length === 0) {
        console.log(`Schema up to date (${result.alreadyApplied} migrations already applied)`);
      } else {
        console.log(
          `Applied ${result.applied.length} migration(s): ${
            result.applied.map((m) => `${String(m.version).padStart(3, "0")}_${m.name}`).join(", ")
          }`,
        );
      }
      // Migration 008 rebuilds the continuous aggregates empty (a migration runs in a
      // transaction, a refresh cannot): materialize the history once, here.
      if (
        result.applied.some((m) => m.version === 8) &&
        await readCandleMode(db.sql) === "timescaledb"
      ) {
        const started = performance.now();
        await refreshCandles(db.sql, {}, { logger });
        console.log(
          `Rebuilt the candle aggregates over the whole history (${
            Math.round(performance.now() - started)
          } ms)`,
        );
      }
      if (db.embedded) {
        console.log(
          `Embedded PostgreSQL in ${db.embedded.dataDir}; connect with: ${db.embedded.psql}`,
        );
      }
      return 0;
    } finally {
      await db.close();
    }
  });
}

if (import.meta.main) Deno.exitCode = await run(Deno.args);
