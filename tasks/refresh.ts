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
import { buildCandles, readCandleMode, refreshCandles, windowOption } from "../lib/candles/mod.ts";
import { formatCount } from "../lib/text.ts";

const USAGE = `Usage: tickpipe refresh [--from TIME] [--to TIME]

Recomputes the candles over a window from the ticks. TimescaleDB mode refreshes the
aggregates, 1m then 1h then 1d (the refresh policies keep recent windows current on their
own). Portable mode's candles are kept by triggers as ticks are written; this rebuilds whole
UTC days of them, for ticks changed with the triggers disabled, and never below the
retention horizon. TIME is an ISO date or date-time (UTC unless it has an offset); without
--from the window starts at the oldest data, without --to it runs to the newest.`;

const WindowSchema = z.object({ from: z.string().optional(), to: z.string().optional() })
  .transform((o, ctx) => windowOption(ctx, o));

/** `tickpipe refresh`: recomputes the candles of a window from the ticks. */
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
        const built = await buildCandles(db.sql, window, { logger });
        console.log(
          `Rebuilt the candles of ${formatCount(built.days)} symbol-days of ${
            formatCount(built.symbols)
          } symbols from the ticks`,
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
