import type { Sql } from "postgres";
import type { SchemaMode } from "../db/server_info.ts";
import { UserError } from "../errors.ts";

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

/**
 * Reads candles, ordered by bucket, from the interval's relation: in both modes a bucket
 * range of one symbol, never the raw ticks. TimescaleDB mode reads the real-time continuous
 * aggregates; portable mode the views over its candle table (migration 010), which the
 * ticks' triggers keep current: one primary key range scan.
 */
export async function fetchCandles(sql: Sql, query: CandleQuery): Promise<Candle[]> {
  if (query.from.getTime() >= query.to.getTime()) {
    throw new RangeError("Cannot read candles: the start of the range must be before its end");
  }
  if (!isUtc(query.timeZone) && query.interval !== "1d") {
    throw new RangeError("Cannot read candles: a time zone applies to daily candles only");
  }
  try {
    return (await candleStatement(sql, query)).map(toCandle);
  } catch (error) {
    throw explainCandleError(error);
  }
}

/**
 * The statement `fetchCandles` runs for `query`, not yet sent (await it, or nest it in
 * another query, e.g. `EXPLAIN`).
 */
export function candleStatement(sql: Sql, query: CandleQuery) {
  if (query.timeZone !== undefined && !isUtc(query.timeZone)) {
    return zonedDailyCandles(sql, query, query.timeZone);
  }
  return sql<CandleRow[]>`
    SELECT bucket, symbol, open, high, low, close, volume, vwap, ticks, day_volume, pv, filled
    FROM ${sql(CANDLE_RELATIONS[query.interval])}
    WHERE symbol = ${query.symbol}
      AND bucket >= ${query.from}::timestamptz AND bucket < ${query.to}::timestamptz
    ORDER BY bucket`;
}

/**
 * Daily candles in `timeZone`, re-aggregated from the hourly ones exactly as the
 * aggregates do it (open = first open, close = last close, sums for volume, pv, ticks).
 * The hourly rows are read with a two-day margin (DST days have 23 or 25 hours), and the
 * days then filtered to the range.
 */
function zonedDailyCandles(sql: Sql, query: CandleQuery, timeZone: string) {
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
      FROM one_hour_candle
      WHERE symbol = ${query.symbol}
        AND bucket >= ${query.from}::timestamptz - INTERVAL '2 days'
        AND bucket < ${query.to}::timestamptz + INTERVAL '2 days'
      GROUP BY 1, symbol
    ) AS day
    WHERE bucket >= ${query.from}::timestamptz AND bucket < ${query.to}::timestamptz
    ORDER BY bucket`;
}

/** True when `symbol` is listed in crypto_assets or has daily candles (never reads ticks). */
export async function isKnownSymbol(sql: Sql, symbol: string): Promise<boolean> {
  try {
    const [row] = await sql<{ known: boolean }[]>`
      SELECT EXISTS (SELECT 1 FROM crypto_assets WHERE symbol = ${symbol})
        OR EXISTS (SELECT 1 FROM one_day_candle WHERE symbol = ${symbol}) AS known`;
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
