import { configFromFlags, exitWhenDone, loggerFor, parseFlags, runMain } from "../lib/cli.ts";
import { UsageError } from "../lib/errors.ts";
import { openDatabase } from "../lib/db/connection.ts";
import { migrate, recordedMode } from "../lib/db/migrations.ts";
import { grantReader, READER_NAME_RE } from "../lib/db/reader.ts";
import {
  MIN_RETAIN_DAYS,
  parseRetain,
  readCandleMode,
  refreshCandles,
  setRetention,
} from "../lib/candles/mod.ts";
import { chooseMode, describeServer, type RequestedMode } from "../lib/db/server_info.ts";

const USAGE = `Usage: tickpipe setup [--mode auto|timescaledb|portable] [--reader NAME]
                     [--retain-ticks 30d|12w|off] [--log-level L] [--log-format text|json]

Creates or updates the schema (tables, candles, policies). Safe to run again.
--mode auto (the default) keeps the mode the database was set up in, else uses TimescaleDB
when the server has it (2.9 or later, preloaded), else plain PostgreSQL (portable).

  --reader NAME   also create (or update) NAME, a login role that can only read the
                  candles, ticks and assets (for Grafana); it prints how to set its
                  password with psql, which never passes through tickpipe
  --retain-ticks  delete raw ticks older than this (at least ${MIN_RETAIN_DAYS} days), keeping every
                  candle; off (the default) keeps them all. TimescaleDB: a retention
                  policy; portable: ingest deletes them (deno task prune: now)`;

/** `tickpipe setup`: applies the schema migrations in the mode the server supports. */
export function run(args: string[]): Promise<number> {
  return runMain(async () => {
    const { values } = parseFlags(args, {
      mode: { type: "string", default: "auto" },
      reader: { type: "string" },
      "retain-ticks": { type: "string" },
    }, USAGE);
    if (!["auto", "timescaledb", "portable"].includes(values.mode)) {
      throw new UsageError(`--mode must be auto, timescaledb or portable\n${USAGE}`);
    }
    if (values.reader !== undefined && !READER_NAME_RE.test(values.reader)) {
      throw new UsageError(
        `--reader must be a role name of lower-case letters, digits and _ (not pg_...), ` +
          `e.g. grafana_reader\n${USAGE}`,
      );
    }
    let retainDays: number | null | undefined;
    try {
      retainDays = values["retain-ticks"] === undefined
        ? undefined
        : parseRetain(values["retain-ticks"]);
    } catch (error) {
      throw new UsageError(`${(error as Error).message}\n${USAGE}`);
    }
    const config = configFromFlags(values);
    const logger = loggerFor(config);
    const db = await openDatabase(config, { logger, max: 1 });
    try {
      if (values.reader === db.config.user) {
        throw new UsageError(
          `--reader must name another role than "${db.config.user}", the one setup connects as`,
        );
      }
      const info = db.server;
      const mode = chooseMode(info, {
        requested: values.mode as RequestedMode,
        recorded: await recordedMode(db.sql),
      });
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
      if (retainDays !== undefined) {
        await setRetention(db.sql, await readCandleMode(db.sql), retainDays);
        console.log(
          retainDays === null
            ? "Keeping every tick (no retention)"
            : `Keeping ${retainDays} days of ticks; older ones are deleted, their candles kept`,
        );
      }
      if (values.reader !== undefined) {
        const reader = await grantReader(db.sql, values.reader, {
          mode: await readCandleMode(db.sql),
        });
        console.log(
          `${reader.created ? "Created" : "Updated"} the reader role "${values.reader}": it can ` +
            `log in and SELECT ${reader.granted.join(", ")}; nothing else of tickpipe's`,
        );
        for (const warning of reader.warnings) console.log(`Warning: ${warning}`);
        // psql's \password asks twice, without echo, and sends only a SCRAM hash.
        const psql = db.embedded
          ? db.embedded.psql
          : db.config.source === "DATABASE_URL"
          ? `psql "$DATABASE_URL"`
          : "psql";
        console.log(
          `Set its password (psql asks for it; it is neither shown nor logged):\n` +
            `  ${psql} -c '\\password ${values.reader}'\n` +
            `Then give it to Grafana as TICKPIPE_GRAFANA_PASSWORD (see grafana/datasource.yaml).`,
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

if (import.meta.main) exitWhenDone(await run(Deno.args));
