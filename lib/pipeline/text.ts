/** The message of a thrown value, for log lines and stats. */
export function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** A count as people read it: 1,234,567. */
export function fmt(n: number): string {
  return n.toLocaleString("en-US");
}
