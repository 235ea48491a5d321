/**
 * The wait before retry number `step` (from 0) of a capped exponential backoff with "equal
 * jitter": between half and all of min(cap, base × 2^step), so a fleet of clients does not
 * retry in step. `random` is for tests.
 */
export function backoffDelay(
  step: number,
  baseMs: number,
  capMs: number,
  random: () => number = Math.random,
): number {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(step, 30));
  return Math.round(ceiling / 2 + random() * ceiling / 2);
}

/** `backoffDelay` as a ladder that remembers its step: `next()` climbs, `reset()` descends. */
export class Backoff {
  #baseMs: number;
  #capMs: number;
  #random: () => number;
  #attempt = 0;

  /** Throws a `RangeError` unless 0 < baseMs <= capMs; `random` is for tests. */
  constructor(baseMs: number, capMs: number, options: { random?: () => number } = {}) {
    if (!(baseMs > 0 && capMs >= baseMs)) {
      throw new RangeError(`Cannot create a backoff: needs 0 < base (${baseMs}) <= cap (${capMs})`);
    }
    this.#baseMs = baseMs;
    this.#capMs = capMs;
    this.#random = options.random ?? Math.random;
  }

  /** Waits handed out since the last `reset()`. */
  get attempt(): number {
    return this.#attempt;
  }

  /** The next wait in ms, one step up the ladder. */
  next(): number {
    return backoffDelay(this.#attempt++, this.#baseMs, this.#capMs, this.#random);
  }

  /** Back to the bottom of the ladder (the service works again). */
  reset(): void {
    this.#attempt = 0;
  }
}
