import { z } from "zod";
import {
  configFromFlags,
  exitWhenDone,
  loggerFor,
  parseFlags,
  parseOptions,
  runMain,
} from "../lib/cli.ts";
import { UserError } from "../lib/errors.ts";
import { openDatabase } from "../lib/db/connection.ts";
import {
  bucketLabel,
  CANDLE_FORMATS,
  CANDLE_INTERVALS,
  fetchCandles,
  formatCandles,
  instantOption,
  isKnownSymbol,
  isUtc,
  isValidTimeZone,
} from "../lib/candles/mod.ts";

const USAGE = `Usage: tickpipe candles SYMBOL [DAYS] [--interval 1m|1h|1d] [--from TIME] [--to TIME]
                       [--format table|csv|json] [--tz ZONE]

Prints the OHLCV candles of SYMBOL; by default the daily candles of the last DAYS days
(default 14), like: deno task candles BTC/USD 14

  --interval 1m|1h|1d   candle width (default 1d)
  --from TIME           first bucket, an ISO date or date-time (replaces DAYS)
  --to TIME             end of the range, exclusive (default now)
                        TIME is UTC unless it has an offset (Z, +01:00) or --tz is given
  --format FORMAT       table (default), csv or json
  --tz ZONE             daily candles cut at midnight in ZONE instead of UTC, e.g.
                        America/New_York for NYSE equities (built from the hourly candles;
                        exact for zones with whole-hour offsets)`;

const DAY_MS = 24 * 60 * 60 * 1000;

const OptionsSchema = z.object({
  symbol: z.string({ error: () => "SYMBOL is required (e.g. BTC/USD)" }).trim()
    .min(1, "SYMBOL is required (e.g. BTC/USD)"),
  days: z.coerce.number({ error: () => "DAYS must be a whole number from 1 to 3650" })
    .int("DAYS must be a whole number from 1 to 3650")
    .min(1, "DAYS must be a whole number from 1 to 3650")
    .max(3650, "DAYS must be a whole number from 1 to 3650")
    .default(14),
  interval: z.enum(CANDLE_INTERVALS, { error: () => "--interval must be 1m, 1h or 1d" }),
  format: z.enum(CANDLE_FORMATS, { error: () => "--format must be table, csv or json" }),
  tz: z.string().refine(isValidTimeZone, {
    error: "--tz must be an IANA time zone such as America/New_York",
  }).optional(),
  from: z.string().optional(),
  to: z.string().optional(),
}).transform((o, ctx) => {
  const zone = o.tz ?? "UTC";
  const to = instantOption(ctx, "--to", o.to, zone) ?? new Date();
  const from = instantOption(ctx, "--from", o.from, zone) ??
    new Date(to.getTime() - o.days * DAY_MS);
  if (from.getTime() >= to.getTime()) {
    ctx.addIssue({ code: "custom", message: "--from must be before --to" });
  }
  if (!isUtc(o.tz) && o.interval !== "1d") {
    ctx.addIssue({ code: "custom", message: "--tz applies to daily candles (--interval 1d)" });
  }
  return { symbol: o.symbol, interval: o.interval, format: o.format, timeZone: o.tz, from, to };
});

/** `tickpipe candles SYMBOL [DAYS]`: prints a symbol's candles as a table, CSV or JSON. */
export function run(args: string[]): Promise<number> {
  return runMain(async () => {
    const { values, positionals } = parseFlags(
      args,
      {
        interval: { type: "string", default: "1d" },
        from: { type: "string" },
        to: { type: "string" },
        format: { type: "string", default: "table" },
        tz: { type: "string" },
      },
      USAGE,
      { maxPositionals: 2 },
    );
    const options = parseOptions(
      OptionsSchema,
      { ...values, symbol: positionals[0], days: positionals[1] },
      USAGE,
    );
    const config = configFromFlags(values);
    const logger = loggerFor(config);
    const db = await openDatabase(config, { logger, max: 1 });
    try {
      const candles = await fetchCandles(db.sql, options);
      if (candles.length === 0) {
        if (!await isKnownSymbol(db.sql, options.symbol)) {
          throw new UserError(
            `Unknown symbol "${options.symbol}": it has no ticks and is not in crypto_assets`,
          );
        }
        throw new UserError(
          `No ${options.interval} candles for "${options.symbol}" from ${
            bucketLabel(options.from, "1m")
          } to ${bucketLabel(options.to, "1m")} UTC`,
        );
      }
      console.log(formatCandles(candles, options).trimEnd());
      return 0;
    } finally {
      await db.close();
    }
  });
}

if (import.meta.main) exitWhenDone(await run(Deno.args));
