import { z } from "zod";
import {
  CANDLE_INTERVALS,
  type CandleInterval,
  type CandleQuery,
  parseInstant,
} from "../candles/mod.ts";
import { SYMBOL_RE } from "../twelvedata/price.ts";
import { INTERVAL_MS } from "./live.ts";

const DAY_MS = 86_400_000;

/** The range the chart shows first, and loads at a time when scrolling back, per interval. */
const DEFAULT_SPAN_MS: Record<CandleInterval, number> = {
  "1m": DAY_MS,
  "1h": 30 * DAY_MS,
  "1d": 365 * DAY_MS,
};

/** Most candles one `/api/candles` request may ask for. */
const MAX_CANDLES = 10_000;

/** A parsed request, or the one line saying what is wrong with it. */
export type Parsed<T> = { ok: true; value: T } | { ok: false; error: string };

const symbol = z.string({ error: () => "symbol is required, e.g. symbol=BTC/USD" })
  .regex(SYMBOL_RE, "symbol must be 1 to 32 letters, digits or / . : - _ ^ =");
const interval = z.enum(CANDLE_INTERVALS, { error: () => "interval must be 1m, 1h or 1d" });
const instant = (name: string) =>
  z.string().transform((text, ctx) => {
    const date = parseInstant(text);
    if (!date) {
      ctx.addIssue({
        code: "custom",
        message:
          `${name} must be an ISO 8601 date or date-time (UTC unless it has an offset), e.g. 2026-03-01T14:30Z`,
      });
      return z.NEVER;
    }
    return date;
  }).optional();

const LiveSchema = z.object({ symbol, interval });

/**
 * `/api/candles?symbol=&interval=&from=&to=`: interval defaults to 1m; without `to` the
 * range ends after the current bucket, without `from` it spans `DEFAULT_SPAN_MS`.
 */
const CandlesSchema = z.object({
  symbol,
  interval: interval.default("1m"),
  from: instant("from"),
  to: instant("to"),
  now: z.number(),
}).transform((p, ctx): CandleQuery => {
  const width = INTERVAL_MS[p.interval];
  const to = p.to ?? new Date(Math.floor(p.now / width) * width + width);
  const from = p.from ?? new Date(to.getTime() - DEFAULT_SPAN_MS[p.interval]);
  if (from.getTime() >= to.getTime()) {
    ctx.addIssue({ code: "custom", message: "from must be before to" });
    return z.NEVER;
  }
  const count = Math.ceil((to.getTime() - from.getTime()) / width);
  if (count > MAX_CANDLES) {
    ctx.addIssue({
      code: "custom",
      message:
        `the range holds up to ${count} ${p.interval} candles; ask for at most ${MAX_CANDLES} at a time`,
    });
    return z.NEVER;
  }
  return { symbol: p.symbol, interval: p.interval, from, to };
});

function parse<T>(schema: z.ZodType<T>, input: Record<string, unknown>): Parsed<T> {
  const result = schema.safeParse(input);
  return result.success
    ? { ok: true, value: result.data }
    : { ok: false, error: result.error.issues[0]?.message ?? "invalid parameters" };
}

/** The query string's named parameters (the first of each), as the schemas take them. */
function fields(params: URLSearchParams, names: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of names) {
    const value = params.get(name);
    if (value !== null) out[name] = value;
  }
  return out;
}

/** Parses `/api/candles` parameters; `now` (epoch ms) anchors the default range. */
export function parseCandleParams(params: URLSearchParams, now: number): Parsed<CandleQuery> {
  return parse(CandlesSchema, { ...fields(params, ["symbol", "interval", "from", "to"]), now });
}

/** Parses `/api/live` parameters: a symbol and an interval, both required. */
export function parseLiveParams(
  params: URLSearchParams,
): Parsed<{ symbol: string; interval: CandleInterval }> {
  return parse(LiveSchema, fields(params, ["symbol", "interval"]));
}
