import type { ISql } from "postgres";
import type { Gap } from "../gaps/log.ts";
import { ceilMinute, floorMinute, MINUTE_MS } from "./minutes.ts";
import { formatCount } from "../text.ts";

/**
 * Minutes per `/time_series` request: Twelve Data returns at most 5000 bars a call, and
 * whether `end_date` is inclusive is not documented, so a window is one minute short of it.
 */
const WINDOW_MINUTES = 4999;

/** One request's worth of a gap: whole minutes `[fromMs, toMs)`. */
export interface FillChunk {
  gap: Gap;
  fromMs: number;
  toMs: number;
  /** Minutes of the window without any row: what a request can fill (0: no request needed). */
  missing: number;
  /** The gap's last chunk: once stored, the gap is filled (unless it is still going on). */
  last: boolean;
}

/** What a backfill will do. */
export interface FillPlan {
  chunks: FillChunk[];
  /** Requests the plan needs (1 API credit each): the chunks with missing minutes. */
  requests: number;
  /** Minutes without any row, over every chunk. */
  missing: number;
  symbols: string[];
  /** Ongoing gaps of symbols a live ingest run streams: it fills them itself once closed. */
  waiting: Gap[];
}

/**
 * Counts the minutes of `[fromMs, toMs)` in which `symbol` has no row at all (no tick, no
 * bar): what REST bars can fill. One range scan of the window (on TimescaleDB's columnstore,
 * one decompression, not one per minute).
 */
async function missingMinutes(
  sql: ISql,
  symbol: string,
  fromMs: number,
  toMs: number,
): Promise<number> {
  if (toMs <= fromMs) return 0;
  const [row] = await sql<{ taken: number }[]>`
    SELECT count(DISTINCT floor(extract(epoch FROM "time") / 60))::int AS taken
    FROM crypto_ticks
    WHERE symbol = ${symbol} AND "time" >= ${new Date(fromMs)} AND "time" < ${new Date(toMs)}`;
  return Math.round((toMs - fromMs) / MINUTE_MS) - (row?.taken ?? 0);
}

/**
 * The window of whole minutes a gap covers, from where its fill stopped: from the minute of
 * its start to the end of the minute of its end (the edge minutes hold the ticks that bound
 * the gap, and a minute with ticks is never filled, so including them costs nothing), never
 * past the last complete minute.
 * Undefined for an ongoing gap of a symbol a live run streams.
 */
function gapWindow(
  gap: Gap,
  nowMs: number,
  live: ReadonlySet<string>,
): { fromMs: number; toMs: number } | undefined {
  if (gap.end === null && live.has(gap.symbol)) return undefined;
  const lastComplete = floorMinute(nowMs);
  let fromMs = floorMinute(gap.start.getTime());
  if (gap.filledTo) fromMs = Math.max(fromMs, gap.filledTo.getTime());
  const end = gap.end === null ? lastComplete : ceilMinute(gap.end.getTime());
  return { fromMs, toMs: Math.max(fromMs, Math.min(end, lastComplete)) };
}

/**
 * Plans the fill of `gaps` (open ones): each cut into windows of at most `WINDOW_MINUTES`,
 * each window's missing minutes counted, so the plan says exactly how many requests (and
 * credits) it needs. A gap with nothing missing gets one empty chunk, which marks it filled
 * without a request.
 */
export async function planFill(
  sql: ISql,
  gaps: readonly Gap[],
  options: { nowMs: number; live: ReadonlySet<string> },
): Promise<FillPlan> {
  const plan: FillPlan = { chunks: [], requests: 0, missing: 0, symbols: [], waiting: [] };
  const symbols = new Set<string>();
  for (const gap of gaps) {
    if (gap.state !== "open") continue;
    const window = gapWindow(gap, options.nowMs, options.live);
    if (!window) {
      plan.waiting.push(gap);
      continue;
    }
    const chunks: FillChunk[] = [];
    for (let from = window.fromMs; from < window.toMs; from += WINDOW_MINUTES * MINUTE_MS) {
      const to = Math.min(window.toMs, from + WINDOW_MINUTES * MINUTE_MS);
      const missing = await missingMinutes(sql, gap.symbol, from, to);
      chunks.push({ gap, fromMs: from, toMs: to, missing, last: false });
      plan.missing += missing;
      if (missing > 0) {
        plan.requests++;
        symbols.add(gap.symbol);
      }
    }
    if (chunks.length === 0) {
      chunks.push({ gap, fromMs: window.fromMs, toMs: window.toMs, missing: 0, last: false });
    }
    chunks[chunks.length - 1]!.last = true;
    plan.chunks.push(...chunks);
  }
  plan.symbols = [...symbols];
  return plan;
}

/** A plan's cost in one paragraph, with the plan's limits when known (`/api_usage`). */
export function describePlan(
  plan: FillPlan,
  usage?: { perMinute?: number | undefined; perDay?: number | undefined; usedToday?: number },
): string {
  const gaps = new Set(plan.chunks.map((c) => c.gap)).size;
  if (gaps === 0) return "Nothing to fill: no open gap in the log (deno task gaps lists them).";
  if (plan.requests === 0) {
    return `Nothing to request: ${
      formatCount(gaps)
    } gap(s), no whole minute without data (0 API credits).`;
  }
  const lines = [
    `Backfill: ${formatCount(gaps)} gap(s) over ${formatCount(plan.symbols.length)} symbol(s), ${
      formatCount(plan.missing)
    } minute(s) without data: ${formatCount(plan.requests)} request(s) to /time_series = ${
      formatCount(plan.requests)
    } API credit(s).`,
  ];
  if (usage?.perMinute) {
    const minutes = Math.ceil(plan.requests / usage.perMinute);
    lines.push(
      `At ${formatCount(usage.perMinute)} credits a minute this takes ${
        minutes <= 1 ? "about a minute or less" : `at least ${formatCount(minutes)} minutes`
      }.`,
    );
  }
  if (usage?.perDay) {
    const left = usage.perDay - (usage.usedToday ?? 0);
    lines.push(
      `The plan allows ${formatCount(usage.perDay)} a day; ${
        formatCount(Math.max(0, left))
      } left today${
        plan.requests > left ? ": the run stops when they are spent and resumes when run again" : ""
      }.`,
    );
  }
  return lines.join(" ");
}
