import type { Logger } from "../log.ts";

/** What is gated: a tick, with its symbol and event time. */
export interface Gated {
  symbol: string;
  timeMs: number;
}

const MAX_HELD = 200_000;

/**
 * Notices when the process itself was frozen (SIGSTOP, swapping, a debugger) for so long
 * that the server may have ended its silent lease session and another process taken its
 * symbols: from then until the leases are confirmed, ticks are held instead of admitted,
 * for the backlog the socket delivers on waking may be ticks the new holder also received.
 * A freeze is told from a slow database by the timer itself running late; on the hot path,
 * without reading a clock, by a tick stamped well after the timer last ran.
 */
export class FreezeGuard<T extends Gated> {
  #stallMs: number;
  #logger: Logger;
  #release: (items: T[]) => void;
  #aliveAt = performance.now();
  /** `Date.now()` when the timer last ran, against which ticks' own stamps are read. */
  #aliveWall = Date.now();
  #suspect: { since: number; round: number } | undefined;
  #held: T[] = [];

  /** `release` receives the held ticks admitted when the suspicion ends, in arrival order. */
  constructor(stallMs: number, logger: Logger, release: (items: T[]) => void) {
    this.#stallMs = stallMs;
    this.#logger = logger;
    this.#release = release;
  }

  /** True from a freeze until the leases are confirmed. */
  get frozen(): boolean {
    return this.#suspect !== undefined;
  }

  /** Ticks held now. */
  get held(): number {
    return this.#held.length;
  }

  /**
   * Runs on a timer (and from `pass`): a late run means a freeze. `round` numbers the
   * lease rounds started so far; only a later one can confirm the leases. `armed`: false
   * while nothing is held or on shutdown.
   */
  beat(round: number, armed: boolean): void {
    const now = performance.now();
    const gap = now - this.#aliveAt;
    this.#aliveAt = now;
    this.#aliveWall = Date.now();
    if (gap <= this.#stallMs || this.#suspect || !armed) return;
    this.#suspect = { since: now, round };
    this.#logger.warn(
      `This process was frozen for ${
        (gap / 1000).toFixed(1)
      } s, long enough to lose its leases: holding ticks until they are confirmed`,
    );
  }

  /** True when `item` may be pushed now; false when it is held. */
  pass(item: T, round: number): boolean {
    if (this.#suspect === undefined) {
      // After a freeze the socket's backlog may arrive before the timers run: a tick stamped
      // long after the timer's last run has the clock read (rarely: it costs ~90 ns a tick).
      if (item.timeMs - this.#aliveWall <= this.#stallMs / 2) return true;
      this.beat(round, true);
      if (this.#suspect === undefined) return true;
    }
    if (this.#held.length >= MAX_HELD) {
      this.#logger.warn(
        `Holding ${MAX_HELD} ticks while the leases are unconfirmed: admitting them (duplicates are possible)`,
      );
      this.settle(() => true);
      return true;
    }
    this.#held.push(item);
    return false;
  }

  /** True when round `round`, which has just confirmed the leases, ends the suspicion. */
  confirms(round: number): boolean {
    return this.#suspect !== undefined && round > this.#suspect.round;
  }

  /** True when the leases have stayed unconfirmed for longer than `ms` since the freeze. */
  unconfirmedFor(ms: number): boolean {
    return this.#suspect !== undefined && performance.now() - this.#suspect.since > ms;
  }

  /**
   * Ends the suspicion: held ticks for which `keep` says so are released, the others
   * dropped; returns how many were dropped.
   */
  settle(keep: (item: T) => boolean): number {
    this.#suspect = undefined;
    const held = this.#held;
    this.#held = [];
    const admitted = held.filter(keep);
    const dropped = held.length - admitted.length;
    if (held.length > 0) {
      this.#logger.info(
        `Leases settled after the freeze: admitted ${admitted.length} held tick(s), discarded ${dropped} that the new holder of their symbol received too`,
      );
    }
    if (admitted.length > 0) this.#release(admitted);
    return dropped;
  }
}
