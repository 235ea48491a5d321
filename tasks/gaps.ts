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
import { windowOption } from "../lib/candles/time.ts";
import { formatGaps, GAP_FORMATS } from "../lib/gaps/format.ts";
import { checkGapSchema, GAP_STATES, listGaps } from "../lib/gaps/log.ts";
import { findCrashedRuns } from "../lib/gaps/runs.ts";

const USAGE =
  `Usage: tickpipe gaps [--symbol S] [--from TIME] [--to TIME] [--state open|filled|unfillable]
                    [--format table|csv|json]

Prints the gap log: every interval in which a symbol's ticks may be missing, why
(disconnected, stalled, refused, not_running, dropped, handover, history), its bounds (the
last tick before, the first tick after; "ongoing" while it lasts) and its state: open (not
yet filled: deno task backfill --gaps), filled (bars = minutes stored from REST bars) or
unfillable (the detail says why). --from/--to keep the gaps that overlap the range (TIME is
an ISO date or date-time, UTC unless it has an offset). An ingest run that ended without a
clean stop is found here too, and its gaps recorded.`;

const OptionsSchema = z.object({
  symbol: z.string().trim().min(1, "--symbol must not be empty").optional(),
  from: z.string().optional(),
  to: z.string().optional(),
  state: z.enum(GAP_STATES, { error: () => "--state must be open, filled or unfillable" })
    .optional(),
  format: z.enum(GAP_FORMATS, { error: () => "--format must be table, csv or json" }),
}).transform((o, ctx) => {
  const { from, to } = windowOption(ctx, o);
  return { symbol: o.symbol, state: o.state, format: o.format, from, to };
});

/** `tickpipe gaps`: prints the gap log as a table, CSV or JSON. */
export function run(args: string[]): Promise<number> {
  return runMain(async () => {
    const { values } = parseFlags(
      args,
      {
        symbol: { type: "string" },
        from: { type: "string" },
        to: { type: "string" },
        state: { type: "string" },
        format: { type: "string", default: "table" },
      },
      USAGE,
      { maxPositionals: 0 },
    );
    const options = parseOptions(OptionsSchema, values, USAGE);
    const config = configFromFlags(values);
    const logger = loggerFor(config);
    const db = await openDatabase(config, { logger, max: 1 });
    try {
      await checkGapSchema(db.sql, "read the gap log");
      await findCrashedRuns(db.sql, { logger });
      const gaps = await listGaps(db.sql, {
        symbols: options.symbol ? [options.symbol] : undefined,
        states: options.state ? [options.state] : undefined,
        from: options.from,
        to: options.to,
      });
      if (gaps.length === 0 && options.format === "table") {
        console.log("No gaps recorded" + (options.symbol ? ` for ${options.symbol}` : "") + ".");
        return 0;
      }
      console.log(formatGaps(gaps, options.format).trimEnd());
      return 0;
    } finally {
      await db.close();
    }
  });
}

if (import.meta.main) exitWhenDone(await run(Deno.args));
