import type { Sql } from "postgres";
import { UserError } from "../errors.ts";
import type { SchemaMode } from "../db/server_info.ts";

/** Candle widths, each backed by one relation (view or continuous aggregate). */
export const CANDLE_INTERVALS = ["1m", "1h", "1d"] as const;
/** One of `CANDLE_INTERVALS`. */
export type CandleInterval = (typeof CANDLE_INTERVALS)[number];

/** The relation holding each interval's candles, finest first (the refresh order). */
export const CANDLE_RELATIONS: Record<CandleInterval, string> = {
  "1m": "one_minute_candle",
  "1h": "one_hour_candle",
  "1d": "one_day_candle",
};

/** One OHLCV candle. `volume` and `dayVolume` are NUMERIC, kept exact as strings. */
export interface Candle {
  /** Start of the bucket. */
  bucket: Date;
  symbol: string;
  open: number;
  high: number;
  low: number;
  close: number;
  /** Sum of the ticks' own volume; null when the source reports none (forex). */
  volume: string | null;
  /** Volume-weighted average price; null without volume. */
  vwap: number | null;
  /** Number of streamed ticks in the bucket (REST bars not counted). */
  ticks: number;
  /** The running day volume of the bucket's last tick. */
  dayVolume: string | null;
  /** Sum of price × volume, so candles re-aggregate exactly (vwap = pv / volume). */
  pv: number | null;
  /** Minutes of the bucket filled from REST 1-minute bars (`deno task backfill`). */
  filled: number;
}

/** Which candles to read: `bucket >= from AND bucket < to`. */
export interface CandleQuery {
  symbol: string;
  interval: CandleInterval;
  from: Date;
  to: Date;
  /**
   * Daily candles only: bucket days in this IANA time zone (e.g. an exchange's), built
   * from the hourly candles. Exact for zones whose offset is a whole number of hours.
   */
  timeZone?: string | undefined;
}

interface CandleRow {
  bucket: Date;
  symbol: string;
  open: number;
  high: number;
  low: number;
  close: number;
  volume: string | null;
  vwap: number | null;
  ticks: number;
  day_volume: string | null;
  pv: number | null;
  filled: number;
}

const toCandle = (row: CandleRow): Candle => ({
  bucket: row.bucket,
  symbol: row.symbol,
  open: row.open,
  high: row.high,
  low: row.low,
  close: row.close,
  volume: row.volume,
  vwap: row.vwap,
  ticks: row.ticks,
  dayVolume: row.day_volume,
  pv: row.pv,
  filled: row.filled,
});

/** True for `UTC` and its aliases, where the stored daily candles already apply. */
export function isUtc(timeZone: string | undefined): boolean {
  return timeZone === undefined || /^(utc|etc\/utc|gmt|etc\/gmt|z|zulu|universal)$/i.test(timeZone);
}

/** The date_trunc unit of each interval, as `tickpipe_candles(unit, ...)` takes it. */
const CANDLE_UNITS: Record<CandleInterval, string> = { "1m": "minute", "1h": "hour", "1d": "day" };

/** How to read candles. */
export interface FetchOptions {
  /** The schema mode; read from `tickpipe_migrations` when omitted (one more query). */
  mode?: SchemaMode | undefined;
}

/**
 * Reads candles, ordered by bucket. TimescaleDB mode reads the real-time continuous
 * aggregates (never the raw ticks). Portable mode calls `tickpipe_candles(unit, from, to)`
 * (migration 003), which PostgreSQL inlines into a `"time"` range scan of the symbol's
 * ticks on the (symbol, time) index: the view's rows for that bucket range, without the
 * bucket expression indexes a filter on the view itself would need to be fast.
 */
export async function fetchCandles(
  sql: Sql,
  query: CandleQuery,
  options: FetchOptions = {},
): Promise<Candle[]> {
  if (query.from.getTime() >= query.to.getTime()) {
    throw new RangeError("Cannot read candles: the start of the range must be before its end");
  }
  if (!isUtc(query.timeZone) && query.interval !== "1d") {
    throw new RangeError("Cannot read candles: a time zone applies to daily candles only");
  }
  const mode = options.mode ?? await readCandleMode(sql);
  try {
    return (await candleStatement(sql, query, mode)).map(toCandle);
  } catch (error) {
    throw explainCandleError(error);
  }
}

/**
 * The statement `fetchCandles` runs for `query` in `mode`, not yet sent (await it, or
 * nest it in another query, e.g. `EXPLAIN`).
 */
export function candleStatement(sql: Sql, query: CandleQuery, mode: SchemaMode) {
  if (query.timeZone !== undefined && !isUtc(query.timeZone)) {
    return zonedDailyCandles(sql, query, query.timeZone, mode);
  }
  const source = mode === "portable"
    ? sql`
      tickpipe_candles(${CANDLE_UNITS[query.interval]}::text,
        ${query.from}::timestamptz, ${query.to}::timestamptz)
      WHERE symbol = ${query.symbol}`
    : sql`
      ${sql(CANDLE_RELATIONS[query.interval])}
      WHERE symbol = ${query.symbol}
        AND bucket >= ${query.from}::timestamptz AND bucket < ${query.to}::timestamptz`;
  return sql<CandleRow[]>`
    SELECT bucket, symbol, open, high, low, close, volume, vwap, ticks, day_volume, pv, filled
    FROM ${source}
    ORDER BY bucket`;
}

/**
 * Daily candles in `timeZone`, re-aggregated from the hourly ones exactly as the
 * aggregates do it (open = first open, close = last close, sums for volume, pv, ticks).
 * The hourly rows are read with a two-day margin (DST days have 23 or 25 hours), and the
 * days then filtered to the range.
 */
function zonedDailyCandles(sql: Sql, query: CandleQuery, timeZone: string, mode: SchemaMode) {
  const hours = mode === "portable"
    ? sql`
      tickpipe_candles('hour', ${query.from}::timestamptz - INTERVAL '2 days',
        ${query.to}::timestamptz + INTERVAL '2 days')
      WHERE symbol = ${query.symbol}`
    : sql`
      one_hour_candle
      WHERE symbol = ${query.symbol}
        AND bucket >= ${query.from}::timestamptz - INTERVAL '2 days'
        AND bucket < ${query.to}::timestamptz + INTERVAL '2 days'`;
  return sql<CandleRow[]>`
    SELECT * FROM (
      SELECT
        date_trunc('day', bucket, ${timeZone}) AS bucket,
        symbol,
        (array_agg(open ORDER BY bucket))[1] AS open,
        max(high) AS high,
        min(low) AS low,
        (array_agg(close ORDER BY bucket))[count(*)] AS close,
        sum(volume) AS volume,
        sum(pv) / NULLIF(sum(volume), 0) AS vwap,
        sum(ticks)::integer AS ticks,
        (array_agg(day_volume ORDER BY bucket) FILTER (WHERE day_volume IS NOT NULL))
          [count(day_volume)] AS day_volume,
        sum(filled)::integer AS filled,
        sum(pv) AS pv
      FROM ${hours}
      GROUP BY 1, symbol
    ) AS day
    WHERE bucket >= ${query.from}::timestamptz AND bucket < ${query.to}::timestamptz
    ORDER BY bucket`;
}

/**
 * True when `symbol` is listed in crypto_assets or has candles. In TimescaleDB mode this
 * reads the daily aggregate (materialized rows plus the real-time tail), not the ticks.
 */
export async function isKnownSymbol(sql: Sql, symbol: string, mode: SchemaMode): Promise<boolean> {
  try {
    const [row] = mode === "timescaledb"
      ? await sql<{ known: boolean }[]>`
        SELECT EXISTS (SELECT 1 FROM crypto_assets WHERE symbol = ${symbol})
          OR EXISTS (SELECT 1 FROM one_day_candle WHERE symbol = ${symbol}) AS known`
      : await sql<{ known: boolean }[]>`
        SELECT EXISTS (SELECT 1 FROM crypto_assets WHERE symbol = ${symbol})
          OR EXISTS (SELECT 1 FROM crypto_ticks WHERE symbol = ${symbol}) AS known`;
    return row?.known ?? false;
  } catch (error) {
    throw explainCandleError(error);
  }
}

/**
 * The mode the candles were built in, read from the catalog: portable mode's migration
 * creates `tickpipe_candles(...)`, TimescaleDB mode's does not. No table is read, so a
 * reader role (`setup --reader`), which may not read `tickpipe_migrations`, can ask too.
 * Throws a `UserError` when the candle migration has not been applied.
 */
export async function readCandleMode(sql: Sql): Promise<SchemaMode> {
  const [row] = await sql<{ candles: boolean; portable: boolean }[]>`
    SELECT to_regclass('one_minute_candle') IS NOT NULL AS candles,
      to_regprocedure('tickpipe_candles(text, timestamptz, timestamptz)') IS NOT NULL
        AS portable`;
  if (row?.candles) return row.portable ? "portable" : "timescaledb";
  throw new UserError(
    "Cannot read candles: this database has no candle schema yet (run `deno task setup`)",
  );
}

/** A missing candle relation becomes a `UserError` saying to run setup; others pass through. */
export function explainCandleError(error: unknown): unknown {
  const e = error as { code?: string; message?: string };
  if (e?.code === "42P01") {
    return new UserError(
      "Cannot read candles: this database has no candle schema yet (run `deno task setup`)",
      { cause: error },
    );
  }
  return error;
}
