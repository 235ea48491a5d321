/** Minute arithmetic: REST bars and candles are whole minutes. */

/** Milliseconds in a minute. */
export const MINUTE_MS = 60_000;

/** `ms` rounded down to its minute. */
export function floorMinute(ms: number): number {
  return Math.floor(ms / MINUTE_MS) * MINUTE_MS;
}

/** `ms` rounded up to a minute boundary (a boundary stays as it is). */
export function ceilMinute(ms: number): number {
  return Math.ceil(ms / MINUTE_MS) * MINUTE_MS;
}
