import type { Sql } from "postgres";
import { type Gap, listGaps, recordGap } from "../gaps/log.ts";
import { floorMinute, MINUTE_MS } from "./minutes.ts";

/** `[from, to)` minus the intervals in `taken`, in order. */
function subtract(
  fromMs: number,
  toMs: number,
  taken: { fromMs: number; toMs: number }[],
): { fromMs: number; toMs: number }[] {
  const pieces: { fromMs: number; toMs: number }[] = [];
  let cursor = fromMs;
  for (const t of [...taken].sort((a, b) => a.fromMs - b.fromMs)) {
    if (t.toMs <= cursor) continue;
    if (t.fromMs >= toMs) break;
    if (t.fromMs > cursor) pieces.push({ fromMs: cursor, toMs: t.fromMs });
    cursor = Math.max(cursor, t.toMs);
  }
  if (cursor < toMs) pieces.push({ fromMs: cursor, toMs });
  return pieces;
}

/**
 * The history gaps that load `[from, to)` for `symbols` (whole minutes): what earlier history
 * loads did not already cover becomes new `history` gaps, and every open history gap of the
 * window is returned — so the same command run again resumes an interrupted load, and after
 * a complete one finds nothing to do. With `record: false` (a dry run) nothing is written:
 * the new pieces come back as gaps that are not in the log (id 0).
 */
export async function historyGaps(
  sql: Sql,
  symbols: readonly string[],
  window: { from: Date; to: Date },
  options: { record?: boolean } = {},
): Promise<Gap[]> {
  const record = options.record ?? true;
  const fromMs = floorMinute(window.from.getTime());
  const toMs = floorMinute(window.to.getTime());
  const from = new Date(fromMs);
  const to = new Date(toMs);
  const unrecorded: Gap[] = [];
  for (const symbol of symbols) {
    const earlier = (await listGaps(sql, { symbols: [symbol], from, to }))
      .filter((g) => g.reason === "history" && g.end !== null)
      .map((g) => ({ fromMs: g.start.getTime(), toMs: g.end!.getTime() }));
    for (const piece of subtract(fromMs, toMs, earlier)) {
      if (piece.toMs - piece.fromMs < MINUTE_MS) continue;
      const gap = {
        symbol,
        reason: "history" as const,
        start: new Date(piece.fromMs),
        end: new Date(piece.toMs),
        detail: "history requested with deno task backfill",
      };
      if (record) {
        await recordGap(sql, gap);
      } else {
        unrecorded.push({
          ...gap,
          id: 0,
          state: "open",
          filledTo: null,
          bars: 0,
          runId: null,
          recordedAt: new Date(),
        });
      }
    }
  }
  const open = (await listGaps(sql, { symbols, from, to, states: ["open"] }))
    .filter((g) => g.reason === "history");
  return [...open, ...unrecorded];
}
