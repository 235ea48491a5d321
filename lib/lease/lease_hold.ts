import type { Logger } from "../log.ts";
import { seconds } from "./lease_messages.ts";

/** What is gated: a tick, with its symbol, event time and what tells it from its neighbours. */
export interface Gated {
  symbol: string;
  timeMs: number;
  price: number;
  day_volume?: number | undefined;
}

const MAX_HELD = 200_000;

interface Suspicion {
  /** `performance.now()` when the hold began. */
  since: number;
  /** Lease rounds started by then: only a later round can confirm the leases. */
  round: number;
  /** The symbols whose ticks are held; undefined: all (a freeze). */
  symbols: ReadonlySet<string> | undefined;
}

/**
 * Holds ticks back while this process's leases are in doubt, for the ticks it receives then
 * may be ones another process, which took its symbols over, also received:
 * - after a **freeze** (SIGSTOP, swapping, a debugger) long enough for the server to have
 *   ended its silent lease session: every symbol's ticks, from the moment it notices. A
 *   freeze is told from a slow database by the timer itself running late; on the hot path,
 *   without reading a clock, by a tick stamped well after the timer last ran;
 * - after its lease session was **lost** and not regained in time (`hold`): the ticks of the
 *   symbols another process stands by for.
 * The owner ends the hold (`end`) once the leases are confirmed or found lost, and sorts the
 * held ticks out.
 */
export class LeaseHold<T extends Gated> {
  #stallMs: number;
  #logger: Logger;
  #release: (items: T[]) => void;
  #aliveAt = performance.now();
  /** `Date.now()` when the timer last ran, against which ticks' own stamps are read. */
  #aliveWall = Date.now();
  #suspect: Suspicion | undefined;
  #held: T[] = [];

  /** `release` receives the held ticks when too many are held to go on holding them. */
  constructor(stallMs: number, logger: Logger, release: (items: T[]) => void) {
    this.#stallMs = stallMs;
    this.#logger = logger;
    this.#release = release;
  }

  /** True from a freeze until the hold ends. */
  get frozen(): boolean {
    return this.#suspect !== undefined && this.#suspect.symbols === undefined;
  }

  /** True while ticks of `symbol` are held. */
  covers(symbol: string): boolean {
    const s = this.#suspect;
    return s !== undefined && (s.symbols === undefined || s.symbols.has(symbol));
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
    if (gap <= this.#stallMs || this.frozen || !armed) return;
    this.#suspect = { since: this.#suspect?.since ?? now, round, symbols: undefined };
    this.#logger.warn(
      `This process was frozen for ${
        seconds(gap)
      }, long enough to lose its leases: holding ticks until they are confirmed`,
    );
  }

  /**
   * Holds the ticks of `symbols` from now until `end` (the lease session is lost, see
   * `IngestLeases`), logging `line`.
   */
  hold(round: number, symbols: ReadonlySet<string>, line: string): void {
    if (this.#suspect || symbols.size === 0) return;
    this.#suspect = { since: performance.now(), round, symbols: new Set(symbols) };
    this.#logger.warn(line);
  }

  /** True when `item` may be pushed now; false when it is held. */
  pass(item: T, round: number): boolean {
    if (!this.covers(item.symbol)) {
      // After a freeze the socket's backlog may arrive before the timers run: a tick stamped
      // long after the timer's last run has the clock read (rarely: it costs ~90 ns a tick).
      if (item.timeMs - this.#aliveWall <= this.#stallMs / 2) return true;
      this.beat(round, true);
      if (!this.covers(item.symbol)) return true;
    }
    if (this.#held.length >= MAX_HELD) {
      this.#logger.warn(
        `Holding ${MAX_HELD} ticks while the leases are unconfirmed: admitting them (duplicates are possible)`,
      );
      this.#release(this.end());
      return true;
    }
    this.#held.push(item);
    return false;
  }

  /** True when round `round`, which has just confirmed the leases, ends the hold. */
  confirms(round: number): boolean {
    return this.#suspect !== undefined && round > this.#suspect.round;
  }

  /** True when ticks have been held for longer than `ms`. */
  unconfirmedFor(ms: number): boolean {
    return this.#suspect !== undefined && performance.now() - this.#suspect.since > ms;
  }

  /** Ends the hold; returns the ticks held, in arrival order, for the owner to sort out. */
  end(): T[] {
    this.#suspect = undefined;
    const held = this.#held;
    this.#held = [];
    return held;
  }
}
