import type { Sql } from "postgres";
import { type Logger, silentLogger } from "../log.ts";
import { formatCount } from "../text.ts";
import type { RefreshWindow } from "./refresh.ts";

const DAY_MS = 86_400_000;
const PROGRESS_EVERY_MS = 2_000;

/** What `buildCandles` did. */
export interface BuildResult {
  /** (symbol, UTC day)s rebuilt. */
  days: number;
  symbols: number;
}

/**
 * Rebuilds portable mode's materialized candles from the ticks, symbol by symbol and UTC
 * day by day (`tickpipe_rebuild_day`, migration 010), logging progress every 2 s: the
 * migration that introduces the candle table (existing ticks become candles) and
 * `deno task refresh` (after ticks were changed behind the triggers' back, say with
 * triggers disabled). The window is widened to whole UTC days and never reaches below the
 * retention horizon, where the ticks are gone and the candles are final. Symbols come from
 * a loose scan of the (symbol, time) index, each symbol's span from two index probes: no
 * step reads more than one day of one symbol.
 */
export async function buildCandles(
  sql: Sql,
  window: RefreshWindow = {},
  options: { logger?: Logger } = {},
): Promise<BuildResult> {
  const logger = options.logger ?? silentLogger;
  const spans = await sql<{ symbol: string; first: Date; last: Date }[]>`
    WITH RECURSIVE s(symbol) AS (
      SELECT min(symbol) FROM crypto_ticks
      UNION ALL
      SELECT (SELECT min(t.symbol) FROM crypto_ticks AS t WHERE t.symbol > s.symbol)
      FROM s WHERE s.symbol IS NOT NULL
    )
    SELECT s.symbol, span.first, span.last
    FROM s CROSS JOIN LATERAL (
      SELECT min(t."time") AS first, max(t."time") AS last FROM crypto_ticks AS t
      WHERE t.symbol = s.symbol
    ) AS span
    WHERE s.symbol IS NOT NULL
    ORDER BY s.symbol`;
  const [retention] = await sql<{ horizon: Date | null }[]>`
    SELECT horizon FROM tickpipe_retention`;
  const floorMs = Math.max(
    retention?.horizon ? Math.ceil(retention.horizon.getTime() / DAY_MS) * DAY_MS : -Infinity,
    window.from ? Math.floor(window.from.getTime() / DAY_MS) * DAY_MS : -Infinity,
  );
  const plan = spans.map(({ symbol, first, last }) => {
    const from = Math.max(Math.floor(first.getTime() / DAY_MS) * DAY_MS, floorMs);
    const to = Math.min(last.getTime(), window.to?.getTime() ?? Infinity);
    return { symbol, from, days: to < from ? 0 : Math.floor((to - from) / DAY_MS) + 1 };
  });
  const total = plan.reduce((n, p) => n + p.days, 0);
  let done = 0;
  let lastReport = performance.now();
  const started = lastReport;
  for (const { symbol, from, days } of plan) {
    for (let i = 0; i < days; i++) {
      await sql`SELECT tickpipe_rebuild_day(${symbol}::text, ${new Date(from + i * DAY_MS)})`;
      done++;
      if (performance.now() - lastReport >= PROGRESS_EVERY_MS) {
        lastReport = performance.now();
        logger.info(
          `Building candles: ${formatCount(done)} of ${formatCount(total)} symbol-days ` +
            `(${Math.floor((100 * done) / total)} %)`,
          { symbol },
        );
      }
    }
  }
  if (total > 0) {
    logger.info(
      `Built the candles of ${formatCount(total)} symbol-days of ${
        formatCount(plan.length)
      } symbols`,
      { ms: Math.round(performance.now() - started) },
    );
  }
  return { days: total, symbols: plan.length };
}
