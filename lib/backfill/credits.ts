import { UserError } from "../errors.ts";
import type { TwelveDataError } from "../twelvedata/errors.ts";
import { type Clock, systemClock } from "../timers.ts";
import { floorMinute, MINUTE_MS } from "./minutes.ts";

/** The plan's credits for the day are used up: nothing more until midnight UTC. */
export class DailyLimitError extends UserError {
  override name = "DailyLimitError";
}

/** Settings of `CreditGate`. */
export interface CreditGateOptions {
  clock?: Clock;
  /** At most this many credits in any hour (ingest's background backfill); default none. */
  perHour?: number | undefined;
  /** Called each time the gate waits, with how long and why. */
  onWait?: (ms: number, why: string) => void;
}

// Twelve Data's minute and ours are not the same clock: wait a little past the boundary.
const MARGIN_MS = 1_000;
const HOUR_MS = 3_600_000;

/**
 * Keeps requests within a Twelve Data plan: reads the credit headers of every response
 * (`api-credits-left` at 0 means wait for the next minute, `Retry-After` when sent), waits
 * out a 429 (until the next minute, or the hint) instead of failing, turns the daily
 * limit into a `DailyLimitError`, and optionally spends at most `perHour` credits an hour.
 * Time comes from the clock option, so tests drive it.
 */
export class CreditGate {
  #clock: Clock;
  #perHour: number | undefined;
  #onWait: ((ms: number, why: string) => void) | undefined;
  #blockedUntil = 0;
  #retryAfterMs: number | undefined;
  #spent: number[] = [];
  #used = 0;
  #left: number | undefined;

  constructor(options: CreditGateOptions = {}) {
    this.#clock = options.clock ?? systemClock;
    this.#perHour = options.perHour;
    this.#onWait = options.onWait;
    if (this.#perHour !== undefined && !(this.#perHour >= 1)) {
      throw new RangeError(`Cannot budget ${this.#perHour} credits an hour: expected at least 1`);
    }
  }

  /** Credits charged so far. */
  get used(): number {
    return this.#used;
  }

  /** What the last response said is left this minute, if it said. */
  get left(): number | undefined {
    return this.#left;
  }

  /** Reads a response's credit headers (see `RestOptions.onResponse`). */
  observe(response: { headers: Headers }): void {
    const now = this.#clock.now();
    const left = Number(response.headers.get("api-credits-left") ?? NaN);
    if (Number.isFinite(left)) {
      this.#left = left;
      if (left <= 0) this.#block(floorMinute(now) + MINUTE_MS + MARGIN_MS);
    }
    const retryAfter = Number(response.headers.get("retry-after") ?? NaN);
    this.#retryAfterMs = Number.isFinite(retryAfter) && retryAfter >= 0
      ? retryAfter * 1000
      : undefined;
  }

  /** Counts credits a successful request cost. */
  charged(credits = 1): void {
    this.#used += credits;
    if (this.#perHour !== undefined) {
      const now = this.#clock.now();
      for (let i = 0; i < credits; i++) this.#spent.push(now);
    }
  }

  /**
   * Takes a 429 from Twelve Data: the next request waits for the `Retry-After` hint when
   * one came, else for the next minute. Throws `DailyLimitError` for the daily limit.
   */
  limited(error: TwelveDataError): void {
    if (/for the day|daily/i.test(error.message)) {
      throw new DailyLimitError(
        `Cannot backfill further today: the plan's daily API credits are used up (${error.message})`,
      );
    }
    const now = this.#clock.now();
    this.#block(
      this.#retryAfterMs !== undefined
        ? now + this.#retryAfterMs
        : floorMinute(now) + MINUTE_MS + MARGIN_MS,
    );
  }

  /** How long the next request must wait, and why (0 when it may go now). */
  delay(): { ms: number; why: string } {
    const now = this.#clock.now();
    let ms = this.#blockedUntil - now;
    let why = "waiting for the next minute's API credits";
    if (this.#perHour !== undefined) {
      this.#spent = this.#spent.filter((t) => t > now - HOUR_MS);
      if (this.#spent.length >= this.#perHour) {
        const hourly = this.#spent[this.#spent.length - this.#perHour]! + HOUR_MS - now;
        if (hourly > ms) {
          ms = hourly;
          why = `waiting: the budget of ${this.#perHour} credits an hour is spent`;
        }
      }
    }
    return { ms: Math.max(0, Math.ceil(ms)), why };
  }

  /** Waits until a request may go out (returns early when `signal` aborts). */
  async ready(signal?: AbortSignal): Promise<void> {
    while (!signal?.aborted) {
      const { ms, why } = this.delay();
      if (ms <= 0) return;
      this.#onWait?.(ms, why);
      await this.#clock.sleep(ms, signal);
    }
  }

  #block(until: number): void {
    if (until > this.#blockedUntil) this.#blockedUntil = until;
  }
}
