/**
 * Capped exponential backoff with "equal jitter": the n-th wait (from 0) lies between half
 * and all of min(cap, base × 2^n), so a fleet of clients does not retry in step.
 */
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
    const ceiling = Math.min(this.#capMs, this.#baseMs * 2 ** Math.min(this.#attempt, 30));
    this.#attempt++;
    return Math.round(ceiling / 2 + this.#random() * ceiling / 2);
  }

  /** Back to the bottom of the ladder (the service works again). */
  reset(): void {
    this.#attempt = 0;
  }
}
