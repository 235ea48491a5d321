import { z } from "zod";
import {
  configFromFlags,
  exitWhenDone,
  loggerFor,
  parseFlags,
  parseOptions,
  runMain,
} from "../lib/cli.ts";
import { openDatabase } from "../lib/db/connection.ts";
import { readCandleMode, refreshCandles, windowOption } from "../lib/candles/mod.ts";

const USAGE = `Usage: tickpipe refresh [--from TIME] [--to TIME]

Refreshes the candle aggregates (TimescaleDB mode) over a window, 1m then 1h then 1d, e.g.
after a backfill of old ticks; the refresh policies keep recent windows current on their own.
TIME is an ISO date or date-time (UTC unless it has an offset); without --from the window
starts at the oldest data, without --to it runs to the newest. In portable mode the candles
are views, always current, and there is nothing to refresh.`;

const WindowSchema = z.object({ from: z.string().optional(), to: z.string().optional() })
  .transform((o, ctx) => windowOption(ctx, o));

/** `tickpipe refresh`: refreshes the continuous aggregates over a window, finest first. */
export function run(args: string[]): Promise<number> {
  return runMain(async () => {
    const { values } = parseFlags(
      args,
      {
        from: { type: "string" },
        to: { type: "string" },
      },
      USAGE,
      { maxPositionals: 0 },
    );
    const window = parseOptions(WindowSchema, values, USAGE);
    const config = configFromFlags(values);
    const logger = loggerFor(config);
    const db = await openDatabase(config, { logger, max: 1 });
    try {
      const mode = await readCandleMode(db.sql);
      if (mode === "portable") {
        console.log(
          "Nothing to refresh: in portable mode the candles are views over the ticks, always current",
        );
        return 0;
      }
      const refreshed = await refreshCandles(db.sql, window, { logger });
      console.log(
        `Refreshed ${refreshed.join(", ")} from ${window.from?.toISOString() ?? "the start"} to ${
          window.to?.toISOString() ?? "the end"
        }`,
      );
      return 0;
    } finally {
      await db.close();
    }
  });
}

if (import.meta.main) exitWhenDone(await run(Deno.args));
