/** The message of a thrown value, for log lines and stats (whatever was thrown). */
export function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** A count as people read it, to the unit: 1,234,567. */
export function formatCount(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

/** A duration as people read it: "1h 02m", "3m 20s", "45s". */
export function duration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s >= 3600) {
    return `${Math.floor(s / 3600)}h ${String(Math.floor(s / 60) % 60).padStart(2, "0")}m`;
  }
  if (s >= 60) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`;
  return `${s}s`;
}
