import type { ISql, Sql } from "postgres";
import { UserError } from "../errors.ts";

/** Why a symbol's ticks may be missing over an interval (see sql/007_gaps.sql). */
const GAP_REASONS = [
  "disconnected",
  "stalled",
  "refused",
  "not_running",
  "dropped",
  "handover",
  "history",
] as const;
/** One of `GAP_REASONS`. */
export type GapReason = (typeof GAP_REASONS)[number];

/** Where a gap stands: not yet filled, filled from REST bars, or impossible to fill. */
export const GAP_STATES = ["open", "filled", "unfillable"] as const;
/** One of `GAP_STATES`. */
export type GapState = (typeof GAP_STATES)[number];

/** One row of the gap log. */
export interface Gap {
  id: number;
  symbol: string;
  reason: GapReason;
  /** The last tick stored before the gap, or the instant it began. */
  start: Date;
  /** The first tick after it; null while the gap goes on. */
  end: Date | null;
  state: GapState;
  /** The fill's progress: every minute before it has been asked for. */
  filledTo: Date | null;
  /** Minutes stored from REST bars. */
  bars: number;
  /** Why it is unfillable, or what the fill found. */
  detail: string | null;
  /** The ingest run that recorded it. */
  runId: string | null;
  recordedAt: Date;
}

interface GapRow {
  gap_id: string;
  symbol: string;
  reason: GapReason;
  gap_start: Date;
  gap_end: Date | null;
  state: GapState;
  filled_to: Date | null;
  bars: number;
  detail: string | null;
  run_id: string | null;
  recorded_at: Date;
}

/** A row of `tickpipe_gaps` as a `Gap`. */
function toGap(row: GapRow): Gap {
  return {
    id: Number(row.gap_id),
    symbol: row.symbol,
    reason: row.reason,
    start: row.gap_start,
    end: row.gap_end,
    state: row.state,
    filledTo: row.filled_to,
    bars: row.bars,
    detail: row.detail,
    runId: row.run_id,
    recordedAt: row.recorded_at,
  };
}

/** What to record: see `Gap`. Without `end` the gap is ongoing (closed by the next tick). */
export interface NewGap {
  symbol: string;
  reason: GapReason;
  start: Date;
  end?: Date | null | undefined;
  detail?: string | null | undefined;
  runId?: string | null | undefined;
}

/**
 * Records a gap. An ongoing gap (no `end`) is not recorded when the symbol already has one:
 * the missing interval is already open from an earlier start, and the first tick after it
 * closes it (`closeOngoingGaps`). Returns the new gap, or undefined when it was not needed.
 * The shape other writers use too (e.g. a lease hand-over: reason `handover`).
 */
export async function recordGap(sql: ISql, gap: NewGap): Promise<Gap | undefined> {
  const end = gap.end ?? null;
  const rows = await sql<GapRow[]>`
    INSERT INTO tickpipe_gaps (symbol, reason, gap_start, gap_end, detail, run_id)
    VALUES (${gap.symbol}, ${gap.reason}, ${gap.start},
      ${end === null ? null : new Date(Math.max(end.getTime(), gap.start.getTime()))},
      ${gap.detail ?? null}, ${gap.runId ?? null})
    ON CONFLICT (symbol) WHERE gap_end IS NULL DO NOTHING
    RETURNING *`;
  return rows[0] ? toGap(rows[0]) : undefined;
}

/** Closes the symbol's ongoing gap at `end` (its first tick after); returns what it closed. */
export async function closeOngoingGaps(sql: Sql, symbol: string, end: Date): Promise<Gap[]> {
  const rows = await sql<GapRow[]>`
    UPDATE tickpipe_gaps SET gap_end = greatest(${end}::timestamptz, gap_start), updated_at = now()
    WHERE symbol = ${symbol} AND gap_end IS NULL
    RETURNING *`;
  return rows.map(toGap);
}

/** Which gaps to read: any that overlaps `[from, to)`, of these symbols, in these states. */
export interface GapFilter {
  symbols?: readonly string[] | undefined;
  from?: Date | undefined;
  to?: Date | undefined;
  states?: readonly GapState[] | undefined;
  ids?: readonly number[] | undefined;
}

/** The gaps matching `filter`, oldest first. */
export async function listGaps(sql: Sql, filter: GapFilter = {}): Promise<Gap[]> {
  const symbols = filter.symbols && filter.symbols.length > 0 ? [...filter.symbols] : null;
  const states = filter.states && filter.states.length > 0 ? [...filter.states] : null;
  const ids = filter.ids ? filter.ids.map(String) : null;
  const rows = await sql<GapRow[]>`
    SELECT * FROM tickpipe_gaps
    WHERE (${symbols}::text[] IS NULL OR symbol = ANY(${symbols}::text[]))
      AND (${states}::text[] IS NULL OR state = ANY(${states}::text[]))
      AND (${ids}::bigint[] IS NULL OR gap_id = ANY(${ids}::bigint[]))
      AND (${filter.to ?? null}::timestamptz IS NULL OR gap_start < ${filter.to ?? null})
      AND (${filter.from ?? null}::timestamptz IS NULL
        OR coalesce(gap_end, 'infinity') >= ${filter.from ?? null})
    ORDER BY gap_start, gap_id`;
  return rows.map(toGap);
}

/** Marks gaps unfillable (the REST API refused them, say), with why. */
export async function markUnfillable(sql: Sql, ids: number[], detail: string): Promise<void> {
  if (ids.length === 0) return;
  await sql`
    UPDATE tickpipe_gaps SET state = 'unfillable', detail = ${detail}, updated_at = now()
    WHERE gap_id = ANY(${ids.map(String)}::bigint[]) AND state = 'open'`;
}

/** Fails with a clear line when the gap log is missing (a schema older than this code). */
export async function checkGapSchema(sql: Sql, action: string): Promise<void> {
  const [row] = await sql<{ gaps: string | null; source: boolean }[]>`
    SELECT to_regclass('tickpipe_gaps')::text AS gaps,
      EXISTS (SELECT 1 FROM information_schema.columns
        WHERE table_name = 'crypto_ticks' AND column_name = 'source') AS source`;
  if (!row?.gaps || !row.source) {
    throw new UserError(
      `Cannot ${action}: the schema has no gap log yet (run \`deno task setup\` to update it)`,
    );
  }
}
