import type { Sql } from "postgres";
import { explainCandleError } from "./query.ts";

/** A symbol that has ticks, with its name and the span of its candles. */
export interface SymbolSummary {
  symbol: string;
  /** From crypto_assets (e.g. "Bitcoin/US Dollar"); null when unknown (stocks). */
  name: string | null;
  /** Start of its oldest daily candle (UTC day). */
  first: Date;
  /** Start of its newest one-minute candle. */
  last: Date;
}

/**
 * Every symbol with candles, ordered by symbol, with its name from crypto_assets and the
 * first day and last minute of its candles, in both modes from the candle relations (so it
 * stays true after old ticks are deleted) and without reading a symbol's history: the daily
 * candles grouped by symbol (one row per symbol and day), then the newest minute of each
 * symbol's last day.
 */
export async function listSymbols(sql: Sql): Promise<SymbolSummary[]> {
  try {
    const rows = await sql<SymbolSummary[]>`
      SELECT d.symbol, a.name, d.first, coalesce(m.last, d.last_day) AS last
      FROM (
        SELECT symbol, min(bucket) AS first, max(bucket) AS last_day
        FROM one_day_candle GROUP BY symbol
      ) AS d
      LEFT JOIN crypto_assets AS a ON a.symbol = d.symbol
      LEFT JOIN LATERAL (
        SELECT max(bucket) AS last FROM one_minute_candle AS c
        WHERE c.symbol = d.symbol AND c.bucket >= d.last_day
      ) AS m ON true
      ORDER BY d.symbol`;
    return [...rows];
  } catch (error) {
    throw explainCandleError(error);
  }
}
