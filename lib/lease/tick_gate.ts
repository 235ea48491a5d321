import type { Logger } from "../log.ts";
import { LostTicks, type ReadStored, type SortedOut } from "./held_ticks.ts";
import { type Gated, LeaseHold } from "./lease_hold.ts";
import { holdLine, seconds } from "./lease_messages.ts";

/** Settings of `TickGate`. */
export interface TickGateOptions<T> {
  /** The symbols this process holds (the leases' own set, read at every tick). */
  owned: ReadonlySet<string>;
  /** See `LeaseOptions`: the lease timeout, renewal interval and staleness limit. */
  timeoutMs: number;
  renewMs: number;
  staleMs: number;
  logger: Logger;
  /** Held ticks admitted late, in arrival order. */
  onRelease: (items: T[]) => void;
}

/** Who took a symbol, and when (epoch ms, the database's). */
export interface Loss {
  sinceMs: number;
  by: string;
}

/**
 * The gate between the feed and the pipeline: admits the ticks of the symbols this process
 * holds, and holds them back while its leases are in doubt — after a freeze, or when its
 * lease session is lost and not back before a standby may take its leases — so that no tick
 * is stored twice: held ticks are admitted once the leases are confirmed, or, for a symbol
 * lost meanwhile, compared with what its new holder stored (`LostTicks`).
 */
export class TickGate<T extends Gated> {
  #o: TickGateOptions<T>;
  #hold: LeaseHold<T>;
  #lostTicks = new LostTicks<T>();
  /** Symbols lost, with who took them and when. */
  #lostAt = new Map<string, Loss>();
  /** Owned symbols another process stood by for at the last renewal. */
  #watched = new Set<string>();
  /** `performance.now()` when the last renewal made while every lease was held was sent. */
  #confirmedAt = -Infinity;
  /** While the lease session is lost: from when (`performance.now()`) to hold ticks. */
  #holdFrom: number | undefined;
  #lostSince = 0;
  /** The session was found lost after holding was due: ticks were admitted in between. */
  #late = false;
  #unconfirmed: ReadonlySet<string> = new Set();
  notOwned = 0;
  discardedUnverified = 0;

  constructor(options: TickGateOptions<T>) {
    this.#o = options;
    // A freeze this long may have let the server end the silent session.
    this.#hold = new LeaseHold<T>(
      Math.max(options.renewMs, options.timeoutMs - 2 * options.renewMs),
      options.logger,
      options.onRelease,
    );
  }

  /** Ticks held now, or waiting to be compared. */
  get held(): number {
    return this.#hold.held + this.#lostTicks.held;
  }

  /** True when held ticks of lost symbols wait to be compared (`sortOut`). */
  get sorting(): boolean {
    return this.#lostTicks.size > 0;
  }

  /**
   * The gate for one tick: true when it may be pushed now; false when this process does
   * not hold its symbol (counted) or holds the tick back (later passed to `onRelease`, or
   * counted). Reads the clock only while the lease session is lost.
   */
  admit(item: T, round: number): boolean {
    if (!this.#o.owned.has(item.symbol)) {
      this.notOwned++;
      return false;
    }
    if (this.#holdFrom !== undefined && performance.now() >= this.#holdFrom) this.#startHold(round);
    return this.#hold.pass(item, round);
  }

  /**
   * A renewal sent at `sentAt` (`performance.now()`) succeeded; `alive`: it renewed the
   * holder's row (every lease held). `watched`: the owned symbols others stand by for.
   */
  renewed(sentAt: number, alive: boolean, watched: ReadonlySet<string>): void {
    if (alive) this.#confirmedAt = sentAt;
    this.#watched = new Set(watched);
  }

  /**
   * The lease session is lost: `unconfirmed` (the leases' live set) are in doubt until a
   * new session locks them again. A standby may take one once its holder's row has gone
   * `staleMs` unrenewed, so from `staleMs` less one renewal after the last renewal sent,
   * the ticks of the symbols others stand by for are held (only then: a session merely
   * reset is usually back before).
   */
  sessionLost(unconfirmed: ReadonlySet<string>): void {
    this.#unconfirmed = unconfirmed;
    this.#lostSince = Date.now();
    if (unconfirmed.size > 0 && this.#watched.size > 0) {
      this.#holdFrom = this.#confirmedAt + this.#o.staleMs - this.#o.renewMs;
      // Found lost only then (a renewal that timed out: a partition): a standby may have
      // taken over while this process still admitted ticks.
      this.#late = performance.now() > this.#holdFrom;
    }
  }

  /** Every lease is confirmed by round `round`: admits what was held for the doubt. */
  confirmed(round: number): void {
    this.#holdFrom = undefined;
    this.#late = false;
    if (this.#hold.confirms(round)) this.#settle("The leases are confirmed");
  }

  /**
   * Symbols lost to another process: returns those whose ticks were held since before it
   * took them (nothing stored twice); the others were ingested meanwhile, for a while at
   * least (an overlap). What was held is sorted out either way.
   */
  lose(losses: Map<string, Loss>): { held: string[]; ingested: string[]; frozen: boolean } {
    const held: string[] = [];
    const ingested: string[] = [];
    const frozen = this.#hold.frozen;
    for (const [symbol, loss] of losses) {
      this.#lostAt.set(symbol, loss);
      const early = frozen || !this.#late;
      (this.#hold.covers(symbol) && early ? held : ingested).push(symbol);
    }
    return { held, ingested, frozen };
  }

  /** Compares the held ticks of lost symbols with what was stored (see `LostTicks`). */
  async sortOut(read: ReadStored): Promise<void> {
    this.#apply(await this.#lostTicks.sortOut(read, this.#o.timeoutMs));
  }

  /** After a failed round: held for longer than the timeout, the ticks are admitted. */
  giveUpIfLong(): void {
    if (!this.#hold.unconfirmedFor(this.#o.timeoutMs)) return;
    this.#o.logger.warn(
      `The leases stay unconfirmed after ${
        seconds(this.#o.timeoutMs)
      }: admitting the ticks held meanwhile (duplicates are possible)`,
    );
    this.#o.onRelease(this.#hold.end());
  }

  /**
   * Shutdown: admits what is held (duplicates are better than losses; of a symbol known
   * lost, what was stamped before its takeover's second) for the pipeline to write.
   */
  stop(): void {
    this.#holdFrom = undefined;
    this.#settle("Stopping");
    this.#apply(this.#lostTicks.giveUp());
  }

  /** Runs every `renewMs`: notices when the process itself was frozen. */
  beat(round: number, armed: boolean): void {
    this.#hold.beat(round, armed);
  }

  #startHold(round: number): void {
    this.#holdFrom = undefined;
    const symbols = [...this.#watched].filter((s) => this.#unconfirmed.has(s)).sort();
    this.#hold.hold(
      round,
      new Set(symbols),
      holdLine(symbols, { lostMs: Date.now() - this.#lostSince, timeoutMs: this.#o.timeoutMs }),
    );
  }

  /**
   * Ends a hold: held ticks of symbols still owned are admitted; those of symbols lost
   * meanwhile wait to be compared with what their new holder stored.
   */
  #settle(why: string): void {
    const admitted: T[] = [];
    const lost = new Map<string, T[]>();
    for (const item of this.#hold.end()) {
      if (this.#o.owned.has(item.symbol)) admitted.push(item);
      else if (this.#lostAt.has(item.symbol)) {
        lost.set(item.symbol, [...(lost.get(item.symbol) ?? []), item]);
      } else this.notOwned++;
    }
    for (const [symbol, items] of lost) {
      this.#lostTicks.add(symbol, this.#lostAt.get(symbol)!, items);
    }
    if (admitted.length > 0) {
      this.#o.logger.info(`${why}: admitted ${admitted.length} held tick(s)`);
      this.#o.onRelease(admitted);
    }
  }

  #apply(sorted: SortedOut<T>): void {
    this.notOwned += sorted.discarded;
    this.discardedUnverified += sorted.unverified;
    for (const line of sorted.lines) this.#o.logger[line.level](line.text);
    if (sorted.kept.length > 0) this.#o.onRelease(sorted.kept);
  }
}
