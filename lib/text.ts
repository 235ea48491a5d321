/** The message of a thrown value, for log lines and stats (whatever was thrown). */
export function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** A count as people read it, to the unit: 1,234,567. */
export function formatCount(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}
