import type { Sql } from "postgres";
import { type Logger, silentLogger } from "../log.ts";
import { CANDLE_INTERVALS, CANDLE_RELATIONS } from "./query.ts";

/** A refresh window; an undefined end is open (the whole history on that side). */
export interface RefreshWindow {
  from?: Date | undefined;
  to?: Date | undefined;
}

/**
 * Refreshes the continuous aggregates over `window`, finest first (1m → 1h → 1d), since
 * each level is computed from the one below. TimescaleDB mode only.
 *
 * `refresh_continuous_aggregate` commits internally and refuses to run inside a
 * transaction block, so each CALL goes out as its own statement on the pool (autocommit),
 * never inside `sql.begin`. The arguments are cast because the procedure takes "any".
 */
export async function refreshCandles(
  sql: Sql,
  window: RefreshWindow,
  options: { logger?: Logger } = {},
): Promise<string[]> {
  const logger = options.logger ?? silentLogger;
  const refreshed: string[] = [];
  for (const interval of CANDLE_INTERVALS) {
    const relation = CANDLE_RELATIONS[interval];
    const started = performance.now();
    await sql`
      CALL refresh_continuous_aggregate(${relation}::regclass,
        ${window.from ?? null}::timestamptz, ${window.to ?? null}::timestamptz)`;
    logger.info(`Refreshed ${relation}`, { ms: Math.round(performance.now() - started) });
    refreshed.push(relation);
  }
  return refreshed;
}
