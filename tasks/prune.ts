import { configFromFlags, exitWhenDone, loggerFor, parseFlags, runMain } from "../lib/cli.ts";
import { openDatabase } from "../lib/db/connection.ts";
import { pruneTicks, readCandleMode, readRetention } from "../lib/candles/mod.ts";
import { formatCount } from "../lib/text.ts";

const USAGE = `Usage: tickpipe prune [--log-level L] [--log-format text|json]

Deletes the ticks older than the retention set with \`deno task setup --retain-ticks 30d\`,
now, keeping every candle (ingest does it hourly in portable mode; TimescaleDB's retention
policy on its own schedule). Without a retention it deletes nothing.`;

/** `tickpipe prune`: applies the tick retention now. */
export function run(args: string[]): Promise<number> {
  return runMain(async () => {
    const { values } = parseFlags(args, {}, USAGE, { maxPositionals: 0 });
    const config = configFromFlags(values);
    const logger = loggerFor(config);
    const db = await openDatabase(config, { logger, max: 2 });
    try {
      const retention = await readRetention(db.sql);
      if (retention.days === null) {
        console.log("No retention set (deno task setup --retain-ticks 30d): every tick is kept");
        return 0;
      }
      const mode = await readCandleMode(db.sql);
      const result = await pruneTicks(db.sql, mode, { logger });
      if (result.busy) {
        console.log("Another process is deleting old ticks now; nothing done");
        return 0;
      }
      const what = mode === "timescaledb" ? "chunks of ticks dropped" : "ticks deleted";
      console.log(
        `${
          formatCount(result.deleted)
        } ${what}: ticks before ${result.cutoff?.toISOString()} (${retention.days} days) are gone, their candles kept`,
      );
      return 0;
    } finally {
      await db.close();
    }
  });
}

if (import.meta.main) exitWhenDone(await run(Deno.args));
