import type { Sql, TransactionSql } from "postgres";
import type { Bar } from "../twelvedata/rest.ts";
import { MINUTE_MS } from "./minutes.ts";
import type { FillChunk } from "./plan.ts";

/** What storing one chunk did. */
export interface StoreResult {
  /** Minutes filled with a bar now (minutes that already had rows are left alone). */
  stored: number;
  /** Bars of the response outside the window or malformed, ignored. */
  ignored: number;
  /**
   * Volume taken off the first tick after filled minutes (it had counted their volume);
   * never more than that tick had.
   */
  volumeMoved: number;
  /** The end of where candles changed (exclusive), for a refresh of the aggregates. */
  touchedToMs: number | undefined;
}

/** Settings of `storeChunk`. */
export interface StoreOptions {
  /**
   * Lists the symbol in `crypto_assets` (with this name, null when unknown) when it is not
   * yet: a history load of a new symbol makes it known to `candles` and to ingest's seeding.
   */
  assetName?: string | null | undefined;
  /**
   * Take the filled minutes' volume off the first tick after them (default true). That tick's
   * own volume is the rise of day_volume since the tick before the gap, so it already holds
   * the gap's volume; not for ticks the pipeline dropped, whose volume went with them.
   */
  reconcileVolume?: boolean;
}

// A lock per symbol: two backfills (ingest's and a task's) never fill the same minute twice.
const LOCK_NAMESPACE = 7316;
const DAY_MS = 86_400_000;

function literal(values: (number | null)[]): string {
  return "{" + values.map((v) => (v === null ? "NULL" : String(v))).join(",") + "}";
}

/** The bars of the response that belong in the window: whole minutes, sane OHLC. */
function usable(bars: readonly Bar[], chunk: FillChunk): Bar[] {
  const seen = new Set<number>();
  return bars.filter((b) => {
    const ok = b.timeMs >= chunk.fromMs && b.timeMs < chunk.toMs && b.timeMs % MINUTE_MS === 0 &&
      !seen.has(b.timeMs) && [b.open, b.high, b.low, b.close].every((p) => p > 0 && p < 1e15) &&
      b.low <= Math.min(b.open, b.close) && b.high >= Math.max(b.open, b.close) &&
      (b.volume === undefined || b.volume >= 0);
    if (ok) seen.add(b.timeMs);
    return ok;
  });
}

/**
 * Stores one chunk's REST bars in crypto_ticks, in one transaction with the gap's progress:
 * each bar becomes four rows (`source` 1..4: its open, high, low and close; see migration
 * 008) in a minute of the window that has no row at all — a minute with ticks is never
 * touched, a minute already filled is not filled twice — then the filled minutes' volume
 * is taken off the tick that had counted it, and the gap's `filled_to` (and, with its last
 * chunk, its state) is updated. Running it again changes nothing.
 */
export async function storeChunk(
  sql: Sql,
  chunk: FillChunk,
  bars: readonly Bar[],
  options: StoreOptions = {},
): Promise<StoreResult> {
  const symbol = chunk.gap.symbol;
  const good = usable(bars, chunk).sort((a, b) => a.timeMs - b.timeMs);
  const result: StoreResult = {
    stored: 0,
    ignored: bars.length - good.length,
    volumeMoved: 0,
    touchedToMs: undefined,
  };
  await sql.begin(async (tx) => {
    await tx`SELECT pg_advisory_xact_lock(${LOCK_NAMESPACE}, hashtext(${symbol}))`;
    let inserted: { t: number; v: string | null }[] = [];
    if (good.length > 0) {
      if (options.assetName !== undefined) {
        await tx`
          INSERT INTO crypto_assets (symbol, name) VALUES (${symbol}, ${options.assetName})
          ON CONFLICT (symbol) DO NOTHING`;
      }
      inserted = await insertBars(tx, symbol, good);
    }
    result.stored = inserted.length;
    if (inserted.length > 0) {
      result.touchedToMs = inserted.at(-1)!.t + MINUTE_MS;
      if (options.reconcileVolume ?? true) {
        const moved = await reconcileVolume(tx, symbol, inserted);
        result.volumeMoved = moved.volume;
        result.touchedToMs = Math.max(result.touchedToMs, moved.untilMs);
      }
    }
    await tx`
      UPDATE tickpipe_gaps SET
        filled_to = greatest(coalesce(filled_to, ${new Date(chunk.toMs)}), ${new Date(chunk.toMs)}),
        bars = bars + ${inserted.length},
        state = CASE WHEN ${chunk.last} AND gap_end IS NOT NULL THEN 'filled' ELSE state END,
        updated_at = now()
      WHERE gap_id = ${String(chunk.gap.id)} AND state = 'open'`;
  });
  return result;
}

/** Inserts the bars' rows where their minute has none; returns the minutes filled. */
async function insertBars(
  tx: TransactionSql,
  symbol: string,
  bars: Bar[],
): Promise<{ t: number; v: string | null }[]> {
  const rows = await tx<{ t: string; v: string | null }[]>`
    WITH bar AS (
      SELECT * FROM unnest(${literal(bars.map((b) => b.timeMs))}::int8[],
        ${literal(bars.map((b) => b.open))}::float8[], ${
    literal(bars.map((b) => b.high))
  }::float8[],
        ${literal(bars.map((b) => b.low))}::float8[], ${
    literal(bars.map((b) => b.close))
  }::float8[],
        ${literal(bars.map((b) => b.volume ?? null))}::numeric[]) AS b(t, o, h, l, c, v)
    ), taken AS (
      -- The minutes of the bars' span that have rows: one range scan (on TimescaleDB's
      -- columnstore one decompression, where a probe per bar would decompress per bar).
      SELECT DISTINCT (floor(extract(epoch FROM x."time") / 60) * 60000)::int8 AS t
      FROM crypto_ticks AS x
      WHERE x.symbol = ${symbol} AND x."time" >= ${new Date(bars[0]!.timeMs)}
        AND x."time" < ${new Date(bars.at(-1)!.timeMs + MINUTE_MS)}
    ), fresh AS (
      SELECT b.*, timestamptz 'epoch' + b.t * INTERVAL '1 millisecond' AS m FROM bar AS b
      WHERE NOT EXISTS (SELECT 1 FROM taken WHERE taken.t = b.t)
    ), inserted AS (
      INSERT INTO crypto_ticks ("time", symbol, price, day_volume, bid, ask, volume, seq, source)
      SELECT f.m, ${symbol}, p.price, NULL, NULL, NULL,
        -- A quarter each (at the volume's own scale, the close row taking the rest): the
        -- four rows sum to the bar's volume exactly, their pv to it at the OHLC average.
        CASE WHEN p.k < 3 THEN trunc(f.v / 4, scale(f.v))
          ELSE f.v - 3 * trunc(f.v / 4, scale(f.v)) END,
        f.t * 1000 + p.k, p.k + 1
      FROM fresh AS f
      CROSS JOIN LATERAL (VALUES (0, f.o), (1, f.h), (2, f.l), (3, f.c)) AS p(k, price)
      RETURNING 1
    )
    SELECT f.t::text AS t, f.v::text AS v FROM fresh AS f ORDER BY f.t`;
  return rows.map((r) => ({ t: Number(r.t), v: r.v }));
}

/**
 * A tick's own volume is the rise of day_volume since the symbol's previous tick, so the
 * first tick after a gap carries the volume traded during the gap. Now that bars carry the
 * filled minutes' volume, take it off that tick (never below 0), once: these minutes were
 * only just filled. Only minutes of that tick's UTC day count (day_volume restarts at
 * midnight). Consecutive filled minutes share that tick, so one probe per run of them.
 */
async function reconcileVolume(
  tx: TransactionSql,
  symbol: string,
  minutes: { t: number; v: string | null }[],
): Promise<{ volume: number; untilMs: number }> {
  const runEnds: number[] = [];
  let end = 0;
  for (let i = minutes.length - 1; i >= 0; i--) {
    const t = minutes[i]!.t;
    if (t + MINUTE_MS !== end) end = t + MINUTE_MS;
    runEnds[i] = end;
  }
  const withVolume = minutes.map((m, i) => ({ ...m, end: runEnds[i]! })).filter((m) =>
    m.v !== null
  );
  if (withVolume.length === 0) return { volume: 0, untilMs: 0 };
  const rows = await tx<{ moved: string; at: string }[]>`
    WITH filled AS (
      SELECT * FROM unnest(${literal(withVolume.map((m) => m.t))}::int8[],
        ${"{" + withVolume.map((m) => m.v).join(",") + "}"}::numeric[],
        ${literal(withVolume.map((m) => m.end))}::int8[]) AS f(t, v, run_end)
    ), next_tick AS (
      SELECT r.run_end, n."time", n.seq, n.volume
      FROM (SELECT DISTINCT run_end FROM filled) AS r
      CROSS JOIN LATERAL (
        SELECT x."time", x.seq, x.volume FROM crypto_ticks AS x
        WHERE x.symbol = ${symbol} AND x.source = 0
          AND x."time" >= timestamptz 'epoch' + r.run_end * INTERVAL '1 millisecond'
          AND x."time" < timestamptz 'epoch'
            + (r.run_end - 1 - (r.run_end - 1) % ${DAY_MS} + ${DAY_MS}) * INTERVAL '1 millisecond'
        ORDER BY x."time", x.seq
        LIMIT 1
      ) AS n
    ), moved AS (
      SELECT n."time", n.seq, least(sum(f.v), n.volume) AS v
      FROM next_tick AS n JOIN filled AS f ON f.run_end = n.run_end
      WHERE date_trunc('day', timestamptz 'epoch' + f.t * INTERVAL '1 millisecond', 'UTC')
        = date_trunc('day', n."time", 'UTC')
      GROUP BY n."time", n.seq, n.volume
    )
    UPDATE crypto_ticks AS x SET volume = x.volume - m.v
    FROM moved AS m
    WHERE x.symbol = ${symbol} AND x.source = 0 AND x."time" = m."time" AND x.seq = m.seq
      AND x.volume IS NOT NULL
    RETURNING m.v::text AS moved, (extract(epoch FROM x."time") * 1000)::int8::text AS at`;
  let volume = 0;
  let untilMs = 0;
  for (const row of rows) {
    volume += Number(row.moved);
    untilMs = Math.max(untilMs, Number(row.at) + MINUTE_MS);
  }
  return { volume, untilMs };
}
