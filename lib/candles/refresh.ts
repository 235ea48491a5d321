import type { Sql } from "postgres";
import { type Logger, silentLogger } from "../log.ts";
import { CANDLE_INTERVALS, CANDLE_RELATIONS } from "./query.ts";
import { systemClock } from "../timers.ts";

/** A refresh window; an undefined end is open (the whole history on that side). */
export interface RefreshWindow {
  from?: Date | undefined;
  to?: Date | undefined;
}

const BUCKET_MS: Record<string, number> = { "1m": 60_000, "1h": 3_600_000, "1d": 86_400_000 };

// TimescaleDB refuses a refresh whose window overlaps one in progress (a policy job, say)
// with lock_not_available: wait for it, a bounded number of times.
const CONCURRENT = "55P03";
const ATTEMPTS = 20;

/**
 * Refreshes the continuous aggregates over `window`, finest first (1m → 1h → 1d), since
 * each level is computed from the one below. TimescaleDB mode only.
 *
 * A refresh rewrites only the buckets entirely inside its window and moves the aggregate's
 * watermark to the window's end, below which queries read materialized rows only. So each
 * level's window is widened to whole buckets of that level (a few filled minutes refresh
 * their hour and their day), but never past the start of the level's current bucket: an
 * unfinished bucket stays real-time instead of being frozen until the next policy run.
 * An open start is cheap: a refresh recomputes only what was invalidated (or never
 * materialized) in its window, which is why a backfill refreshes from the start of history.
 *
 * `refresh_continuous_aggregate` commits internally and refuses to run inside a
 * transaction block, so each CALL goes out as its own statement on the pool (autocommit),
 * never inside `sql.begin`. The arguments are cast because the procedure takes "any". A
 * refresh that meets a concurrent one over an overlapping window (a policy job that has
 * just started, for instance) waits and tries again, up to 20 times.
 */
export async function refreshCandles(
  sql: Sql,
  window: RefreshWindow,
  options: { logger?: Logger } = {},
): Promise<string[]> {
  const logger = options.logger ?? silentLogger;
  const now = Date.now();
  const refreshed: string[] = [];
  for (const interval of CANDLE_INTERVALS) {
    const relation = CANDLE_RELATIONS[interval];
    const size = BUCKET_MS[interval]!;
    const current = Math.floor(now / size) * size;
    const from = window.from && Math.floor(window.from.getTime() / size) * size;
    const to = Math.min(Math.ceil((window.to?.getTime() ?? Infinity) / size) * size, current);
    if (from !== undefined && from >= to) continue;
    const started = performance.now();
    for (let attempt = 1;; attempt++) {
      try {
        await sql`
          CALL refresh_continuous_aggregate(${relation}::regclass,
            ${from === undefined ? null : new Date(from)}::timestamptz, ${new Date(
          to,
        )}::timestamptz)`;
        break;
      } catch (error) {
        if ((error as { code?: string }).code !== CONCURRENT || attempt >= ATTEMPTS) throw error;
        logger.debug(`A concurrent refresh of ${relation} is in progress; waiting`);
        await systemClock.sleep(Math.min(2_000, 100 * attempt));
      }
    }
    logger.info(`Refreshed ${relation}`, { ms: Math.round(performance.now() - started) });
    refreshed.push(relation);
  }
  return refreshed;
}
