import { csvField } from "../candles/format.ts";
import { duration } from "../text.ts";
import type { Gap } from "./log.ts";

/** Output formats of `formatGaps`. */
export const GAP_FORMATS = ["table", "csv", "json"] as const;
/** One of `GAP_FORMATS`. */
export type GapFormat = (typeof GAP_FORMATS)[number];

const COLUMNS = [
  "id",
  "symbol",
  "reason",
  "start",
  "end",
  "duration",
  "state",
  "bars",
  "detail",
] as const;

function record(gap: Gap, nowMs: number) {
  const endMs = gap.end?.getTime() ?? nowMs;
  return {
    id: gap.id,
    symbol: gap.symbol,
    reason: gap.reason,
    start: gap.start.toISOString(),
    end: gap.end?.toISOString() ?? null,
    duration_s: Math.round((endMs - gap.start.getTime()) / 1000),
    state: gap.state,
    bars: gap.bars,
    detail: gap.detail,
  };
}

/**
 * Renders gaps as an aligned table (an ongoing gap's end reads "ongoing", its duration runs
 * to `nowMs`), CSV or a JSON array (ISO 8601 instants, `end` null while ongoing, duration in
 * seconds). Ends with a newline.
 */
export function formatGaps(gaps: readonly Gap[], format: GapFormat, nowMs = Date.now()): string {
  const records = gaps.map((g) => record(g, nowMs));
  switch (format) {
    case "json":
      return JSON.stringify(records, null, 2) + "\n";
    case "csv":
      return [
        [...COLUMNS.slice(0, 5), "duration_s", ...COLUMNS.slice(6)].join(","),
        ...records.map((r) =>
          [r.id, r.symbol, r.reason, r.start, r.end, r.duration_s, r.state, r.bars, r.detail]
            .map(csvField).join(",")
        ),
      ].join("\n") + "\n";
    case "table": {
      const time = (iso: string | null) => iso === null ? "ongoing" : iso.slice(0, 19) + "Z";
      const rows = records.map((r) => [
        String(r.id),
        r.symbol,
        r.reason,
        time(r.start),
        time(r.end),
        duration(r.duration_s * 1000),
        r.state,
        String(r.bars),
        r.detail ?? "",
      ]);
      const widths = COLUMNS.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
      const right = new Set([0, 5, 7]);
      const line = (cells: readonly string[]) =>
        cells.map((c, i) => right.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))
          .join("  ").trimEnd();
      return [line(COLUMNS), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)]
        .join("\n") + "\n";
    }
  }
}
