import type { TimerId, Timers } from "../../lib/timers.ts";

interface Pending {
  at: number;
  fn: () => void;
  every: number | undefined;
}

/**
 * Timers that fire only when the test moves time with `advance`, for code that takes
 * `Timers`: a watchdog, a heartbeat or a flush interval is driven, never slept through.
 */
export class ManualTimers implements Timers {
  #now: number;
  #ids = 0;
  #pending = new Map<number, Pending>();

  /** Starts at `startMs` (default: the wall clock now, so real timestamps stay plausible). */
  constructor(startMs = Date.now()) {
    this.#now = startMs;
  }

  now(): number {
    return this.#now;
  }

  setTimeout(fn: () => void, ms: number): TimerId {
    return this.#add(fn, ms, undefined);
  }

  clearTimeout(id: TimerId | undefined): void {
    if (id !== undefined) this.#pending.delete(id as unknown as number);
  }

  setInterval(fn: () => void, ms: number): TimerId {
    return this.#add(fn, ms, Math.max(1, ms));
  }

  clearInterval(id: TimerId | undefined): void {
    this.clearTimeout(id);
  }

  /** Timers waiting to fire. */
  get pending(): number {
    return this.#pending.size;
  }

  /** Moves time forward by `ms`, firing each timer due on the way at its time, in order. */
  advance(ms: number): void {
    const end = this.#now + ms;
    while (true) {
      let dueId: number | undefined;
      let due: Pending | undefined;
      for (const [id, p] of this.#pending) {
        if (p.at <= end && (due === undefined || p.at < due.at)) [dueId, due] = [id, p];
      }
      if (dueId === undefined || due === undefined) break;
      this.#now = due.at;
      if (due.every === undefined) this.#pending.delete(dueId);
      else due.at += due.every;
      due.fn();
    }
    this.#now = end;
  }

  #add(fn: () => void, ms: number, every: number | undefined): TimerId {
    const id = ++this.#ids;
    this.#pending.set(id, { at: this.#now + Math.max(0, ms), fn, every });
    return id as unknown as TimerId;
  }
}
