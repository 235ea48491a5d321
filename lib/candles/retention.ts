import type { Sql } from "postgres";
import type { SchemaMode } from "../db/server_info.ts";
import { type Logger, silentLogger } from "../log.ts";
import { formatCount } from "../text.ts";
import { refreshCandles } from "./refresh.ts";

/**
 * The shortest retention accepted, in days: longer than every refresh window of the
 * TimescaleDB aggregates (the daily level refreshes the last 7 days, migration 003), so no
 * policy ever recomputes a bucket whose ticks are gone.
 */
export const MIN_RETAIN_DAYS = 7;

/** Rows deleted per transaction in portable mode. */
const CHUNK_ROWS = 5_000;

/** Key (with class 7317's symbol keys) that lets one process of a fleet prune at a time. */
const PRUNE_LOCK = 7_318;

/**
 * Days from a `--retain-ticks` value: `30d` (days), `12w` (weeks), or `off` (null: keep
 * every tick). Throws a `RangeError` naming what it accepts.
 */
export function parseRetain(text: string): number | null {
  if (text === "off") return null;
  const match = /^(\d+)([dw])$/.exec(text);
  const days = match ? Number(match[1]) * (match[2] === "w" ? 7 : 1) : NaN;
  if (!(days >= MIN_RETAIN_DAYS)) {
    throw new RangeError(
      `--retain-ticks must be off or a number of days (30d) or weeks (12w) of at least ` +
        `${MIN_RETAIN_DAYS} days`,
    );
  }
  return days;
}

/** The retention setting: days kept (null: every tick), and what has been deleted. */
export interface Retention {
  days: number | null;
  /** Ticks before this instant have been deleted (portable mode); null: none yet. */
  horizon: Date | null;
}

/** Reads the retention setting (migration 009). */
export async function readRetention(sql: Sql): Promise<Retention> {
  const [row] = await sql<{ days: number | null; horizon: Date | null }[]>`
    SELECT extract(day FROM retain)::int AS days, horizon FROM tickpipe_retention`;
  return { days: row?.days ?? null, horizon: row?.horizon ?? null };
}

/**
 * Stores how long ticks are kept. TimescaleDB mode also replaces crypto_ticks' retention
 * policy (drop_after = the retention), which TimescaleDB's scheduler runs on its own;
 * portable mode's deletes are run by ingest and `deno task prune` (`pruneTicks`).
 */
export async function setRetention(sql: Sql, mode: SchemaMode, days: number | null) {
  await sql.begin(async (tx) => {
    await tx`
      UPDATE tickpipe_retention
      SET retain = CASE WHEN ${days}::int IS NULL THEN NULL ELSE make_interval(days => ${days}) END`;
    if (mode === "timescaledb") {
      await tx`SELECT remove_retention_policy('crypto_ticks', if_exists => true)`;
      if (days !== null) {
        await tx`
          SELECT add_retention_policy('crypto_ticks', drop_after => make_interval(days => ${days}))`;
      }
    }
  });
}

/** What `pruneTicks` did. */
export interface PruneResult {
  /** Ticks before this instant are gone; undefined when nothing is retained (or busy). */
  cutoff?: Date | undefined;
  /** Ticks deleted (portable) or chunks dropped (TimescaleDB). */
  deleted: number;
  /** Another process was pruning. */
  busy?: boolean;
}

/**
 * Deletes the ticks older than the retention, leaving every candle as it is. The cutoff is
 * the start of the UTC day `days` ago, so a day's ticks are either all kept or all gone.
 *
 * Portable mode: the horizon moves first (rebuilds stop reaching below it), then each
 * symbol's old ticks are deleted 5,000 at a time, each chunk its own short transaction
 * with `tickpipe.retention = on` (the candle triggers leave them be) and its symbol's
 * advisory lock (a rebuild of that symbol never sees half a day); ingest's inserts are
 * never blocked by the deletes, at most by one chunk of their own symbol. One process of a
 * fleet prunes at a time (a session advisory lock); the others return `busy`.
 *
 * TimescaleDB mode: the aggregates are refreshed up to the cutoff (so every bucket about
 * to lose its ticks is materialized), then the chunks wholly before it are dropped: what
 * the retention policy does on its own schedule, now.
 */
export async function pruneTicks(
  sql: Sql,
  mode: SchemaMode,
  options: { logger?: Logger } = {},
): Promise<PruneResult> {
  const logger = options.logger ?? silentLogger;
  const [row] = await sql<{ cutoff: Date | null }[]>`
    SELECT date_trunc('day', now() - retain, 'UTC') AS cutoff FROM tickpipe_retention`;
  const cutoff = row?.cutoff ?? undefined;
  if (!cutoff) return { deleted: 0 };
  if (mode === "timescaledb") {
    await refreshCandles(sql, { to: cutoff }, { logger });
    const dropped =
      await sql`SELECT drop_chunks('crypto_ticks', older_than => ${cutoff}::timestamptz)`;
    logger.info(`Dropped ${formatCount(dropped.length)} chunks of ticks before the retention`, {
      cutoff: cutoff.toISOString(),
    });
    return { cutoff, deleted: dropped.length };
  }
  const session = await sql.reserve();
  try {
    const [lock] = await session<
      { ok: boolean }[]
    >`SELECT pg_try_advisory_lock(${PRUNE_LOCK}) AS ok`;
    if (!lock?.ok) return { cutoff, deleted: 0, busy: true };
    try {
      await session`
        UPDATE tickpipe_retention
        SET horizon = greatest(coalesce(horizon, '-infinity'), ${cutoff}::timestamptz)`;
      const symbols = await session<{ symbol: string }[]>`
        WITH RECURSIVE s(symbol) AS (
          SELECT min(symbol) FROM crypto_ticks
          UNION ALL
          SELECT (SELECT min(t.symbol) FROM crypto_ticks AS t WHERE t.symbol > s.symbol)
          FROM s WHERE s.symbol IS NOT NULL
        )
        SELECT symbol FROM s WHERE symbol IS NOT NULL`;
      let deleted = 0;
      for (const { symbol } of symbols) {
        for (;;) {
          const n = await sql.begin(async (tx) => {
            await tx`SELECT set_config('tickpipe.retention', 'on', true)`;
            await tx`SELECT tickpipe_lock_symbols(ARRAY[${symbol}::text])`;
            const result = await tx`
              DELETE FROM crypto_ticks WHERE ctid = ANY(ARRAY(
                SELECT ctid FROM crypto_ticks
                WHERE symbol = ${symbol} AND "time" < ${cutoff}::timestamptz
                LIMIT ${CHUNK_ROWS}))`;
            return result.count;
          });
          deleted += n;
          if (n < CHUNK_ROWS) break;
        }
      }
      if (deleted > 0) {
        logger.info(`Deleted ${formatCount(deleted)} ticks before the retention`, {
          cutoff: cutoff.toISOString(),
        });
      }
      return { cutoff, deleted };
    } finally {
      await session`SELECT pg_advisory_unlock(${PRUNE_LOCK})`;
    }
  } finally {
    session.release();
  }
}
