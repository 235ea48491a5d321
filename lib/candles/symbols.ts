import type { Sql } from "postgres";
import type { SchemaMode } from "../db/server_info.ts";
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
 * Every symbol with ticks, ordered by symbol, with its name from crypto_assets and the
 * first day and last minute of its candles. It never reads a symbol's history:
 *
 * - portable mode: a loose index scan of crypto_ticks' (symbol, time) index (each step
 *   is `min(symbol) WHERE symbol > previous`, one index probe), then min/max of "time"
 *   per symbol, two more probes;
 * - TimescaleDB mode: the daily aggregate grouped by symbol (one row per symbol and day),
 *   then the newest minute of each symbol's last day from the minute aggregate.
 */
export async function listSymbols(sql: Sql, mode: SchemaMode): Promise<SymbolSummary[]> {
  try {
    const rows = mode === "portable"
      ? await sql<SymbolSummary[]>`
        WITH RECURSIVE s(symbol) AS (
          SELECT min(symbol) FROM crypto_ticks
          UNION ALL
          SELECT (SELECT min(t.symbol) FROM crypto_ticks AS t WHERE t.symbol > s.symbol)
          FROM s WHERE s.symbol IS NOT NULL
        )
        SELECT s.symbol, a.name,
          date_trunc('day',
            (SELECT min(t."time") FROM crypto_ticks AS t WHERE t.symbol = s.symbol), 'UTC')
            AS first,
          date_trunc('minute',
            (SELECT max(t."time") FROM crypto_ticks AS t WHERE t.symbol = s.symbol), 'UTC')
            AS last
        FROM s LEFT JOIN crypto_assets AS a ON a.symbol = s.symbol
        WHERE s.symbol IS NOT NULL
        ORDER BY s.symbol`
      : await sql<SymbolSummary[]>`
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
