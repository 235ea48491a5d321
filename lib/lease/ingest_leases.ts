import type { Sql } from "postgres";
import { UserError } from "../errors.ts";
import { type Logger, silentLogger } from "../log.ts";
import { FreezeGuard, type Gated } from "./freeze_guard.ts";
import { listed, lostLine, seconds, standbyLine, takenLines } from "./lease_messages.ts";
import {
  type Holder,
  holderName,
  LeaseSession,
  type LockAttempt,
  type Taken,
} from "./lease_session.ts";

/** Settings of `IngestLeases`. */
export interface LeaseOptions<T extends Gated> {
  /** Opens a fresh one-connection client for the lease session (ended by the lease). */
  connect: () => Sql;
  /** The symbols wanted, as stored in `crypto_ticks`. */
  symbols: readonly string[];
  logger?: Logger;
  /**
   * How long the server keeps a silent lease session (so its locks) before ending it: a
   * vanished host, a frozen process or one cut off from the database loses its leases
   * after this long (default 20 s). A process that dies or stops loses them at once.
   */
  timeoutMs?: number;
  /** Interval of renewals and standby attempts (default 1 s, at most timeoutMs / 5). */
  renewMs?: number;
  /**
   * How long a new lease session leaves alone a lease whose holder's session ended before
   * it began, as all do when the database restarts: its holder may be reconnecting
   * (default 5 s).
   */
  graceMs?: number;
  /** Stand by for symbols held elsewhere (default true); false: `start` fails instead. */
  standby?: boolean;
  /** Names this process in the table and in logs (default: hostname and pid). */
  host?: string;
  pid?: number;
  /** Symbols just taken, before any of their ticks is admitted (seed, subscribe). */
  onAcquire: (taken: Taken[]) => void;
  /** Symbols lost to another process: none of their ticks is admitted any more (unsubscribe). */
  onLose: (symbols: string[]) => void;
  /** Ticks held while a freeze was resolved, now admitted, in arrival order. */
  onRelease: (items: T[]) => void;
}

/** Counters and gauges of the leases. */
export interface LeaseStats {
  /** Symbols this process holds (and ingests). */
  owned: number;
  /** Symbols it waits for, held by another process. */
  standby: number;
  /** Symbols taken from another process, dead or stopped, since start. */
  takeovers: number;
  /** Symbols lost to another process since start. */
  lost: number;
  /** Ticks not admitted because this process does not hold their symbol. */
  notOwned: number;
  /** Ticks held while a freeze is resolved. */
  held: number;
  /** The lease session is up. */
  connected: boolean;
}

/** Thrown by `start` without `standby` when another process holds some of the symbols. */
export class LeaseHeldError extends UserError {
  override name = "LeaseHeldError";
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * One writer per symbol: a lease in the database per symbol, held by at most one ingest
 * process, which alone subscribes to it and admits its ticks. Others stand by and take a
 * lease over as soon as its holder's session ends (see docs/one_writer.md).
 *
 * `admit(tick)` is the gate on the hot path: true when the tick may be pushed now.
 */
export class IngestLeases<T extends Gated> {
  #options: LeaseOptions<T>;
  #logger: Logger;
  #holder: Holder;
  #symbols: string[];
  #timeoutMs: number;
  #renewMs: number;
  #graceMs: number;
  #session: LeaseSession | undefined;
  #staleBackend: number | undefined;
  #owned = new Set<string>();
  /** Owned, but not yet locked again by the current session. */
  #unconfirmed = new Set<string>();
  #waiting = new Map<string, string>();
  /** Symbols this session saw held: their holder was alive after it began. */
  #seenHeld = new Set<string>();
  #acquiring = true;
  #closed = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #pulse: ReturnType<typeof setInterval> | undefined;
  #running: Promise<void> | undefined;
  #rounds = 0;
  #freeze: FreezeGuard<T>;
  /** Symbols lost, with when the process that took them did (epoch ms). */
  #lostAt = new Map<string, number>();
  #standbyReport = "";
  #sessionLostAt: number | undefined;
  #takeovers = 0;
  #lost = 0;
  #notOwned = 0;

  constructor(options: LeaseOptions<T>) {
    this.#options = options;
    this.#logger = options.logger ?? silentLogger;
    this.#symbols = [...new Set(options.symbols)];
    this.#timeoutMs = options.timeoutMs ?? 20_000;
    this.#renewMs = options.renewMs ?? Math.min(1_000, Math.floor(this.#timeoutMs / 5));
    this.#graceMs = options.graceMs ?? 5_000;
    if (!(this.#renewMs > 0 && this.#timeoutMs >= 2 * this.#renewMs)) {
      throw new RangeError(
        `Cannot hold leases: the timeout (${this.#timeoutMs} ms) must be at least twice the renewal interval (${this.#renewMs} ms)`,
      );
    }
    // A freeze this long may have let the server end the silent session.
    this.#freeze = new FreezeGuard<T>(
      Math.max(this.#renewMs, this.#timeoutMs - 2 * this.#renewMs),
      this.#logger,
      options.onRelease,
    );
    this.#holder = {
      id: crypto.randomUUID(),
      host: options.host ?? Deno.hostname(),
      pid: options.pid ?? Deno.pid,
    };
  }

  /**
   * Opens the lease session and takes every free lease; the others are stood by for
   * (or, without `standby`, `LeaseHeldError` names their holders). Then renews and retries
   * every `renewMs` until `close`.
   */
  async start(): Promise<void> {
    try {
      await this.#round();
    } catch (error) {
      await this.close();
      throw error;
    }
    if (this.#options.standby === false && this.#waiting.size > 0) {
      await this.close();
      const held = [...this.#waiting].map(([symbol, by]) => `${symbol} (${by})`);
      throw new LeaseHeldError(
        `Cannot ingest ${listed(held)}: another ingest process holds ${
          held.length === 1 ? "it" : "them"
        }; stop it, leave ${
          held.length === 1 ? "that symbol" : "those symbols"
        } out, or drop --no-standby to stand by`,
      );
    }
    this.#pulse = setInterval(() => this.#beat(), this.#renewMs);
    this.#schedule();
  }

  /**
   * The gate for one tick: true when it may be pushed now; false when this process does
   * not hold its symbol (counted) or when, after a freeze, the lease must be confirmed
   * first (then the tick is held and later passed to `onRelease`, or counted).
   */
  admit(item: T): boolean {
    if (this.#owned.has(item.symbol)) return this.#freeze.pass(item, this.#rounds);
    this.#notOwned++;
    return false;
  }

  /** A snapshot of the counters. */
  stats(): LeaseStats {
    return {
      owned: this.#owned.size,
      standby: this.#waiting.size,
      takeovers: this.#takeovers,
      lost: this.#lost,
      notOwned: this.#notOwned,
      held: this.#freeze.held,
      connected: this.#session !== undefined,
    };
  }

  /**
   * Shutdown begins: take nothing more, and admit what a freeze left held (duplicates are
   * better than losses) so the pipeline writes it before it closes.
   */
  stopAcquiring(): void {
    this.#acquiring = false;
    this.#freeze.settle(() => true);
  }

  /** Marks every lease released, gives back the locks and ends the session. Never throws. */
  async close(): Promise<void> {
    this.#acquiring = false;
    this.#closed = true;
    clearTimeout(this.#timer);
    clearInterval(this.#pulse);
    await this.#running;
    const session = this.#session;
    this.#session = undefined;
    if (!session) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([
        session.release(this.#holder),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error("no answer")), this.#timeoutMs);
        }),
      ]);
      if (this.#owned.size > 0) {
        this.#logger.info(`Released the leases of ${this.#owned.size} symbol(s)`);
      }
    } catch (error) {
      // Ending the session releases the locks anyway; a standby sees a takeover.
      this.#logger.warn("Cannot mark the leases released", { error: errorText(error) });
    } finally {
      clearTimeout(timer);
      await session.close();
    }
  }

  #schedule(): void {
    if (this.#closed) return;
    this.#timer = setTimeout(() => {
      this.#running = this.#guardedRound().finally(() => {
        this.#running = undefined;
        this.#schedule();
      });
    }, this.#renewMs);
  }

  /** One round, bounded by the timeout; a failure means the session is gone. */
  async #guardedRound(): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([
        this.#round(),
        new Promise((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`no answer within ${this.#timeoutMs} ms`)),
            this.#timeoutMs,
          );
        }),
      ]);
    } catch (error) {
      const session = this.#session;
      this.#session = undefined;
      if (session) {
        this.#staleBackend = session.backendPid;
        await session.close();
      }
      this.#sessionLostAt ??= Date.now();
      const owned = this.#owned.size;
      this.#logger.limited(
        "lease-session",
        "warn",
        owned > 0
          ? `Cannot renew the leases (still ingesting ${owned} symbol(s), retrying)`
          : "Cannot reach the database for the leases (retrying)",
        { error: errorText(error) },
        { perWindow: 1, windowMs: 30_000 },
      );
      if (this.#freeze.unconfirmedFor(this.#timeoutMs)) {
        this.#logger.warn(
          "The leases stay unconfirmed: admitting the ticks held since the freeze (duplicates are possible)",
        );
        this.#freeze.settle(() => true);
      }
    } finally {
      clearTimeout(timer);
    }
  }

  async #round(): Promise<void> {
    const round = ++this.#rounds;
    if (!this.#session) {
      const session = await LeaseSession.open(this.#options.connect, this.#holder, {
        timeoutMs: this.#timeoutMs,
      });
      try {
        await session.ensure(this.#symbols);
      } catch (error) {
        await session.close();
        throw error;
      }
      this.#session = session;
      this.#seenHeld.clear();
      for (const symbol of this.#owned) this.#unconfirmed.add(symbol);
    } else if (
      (await this.#session.renew(this.#holder, this.#unconfirmed.size === 0)) !==
        this.#session.backendPid
    ) {
      // postgres.js reconnected on its own: the locks went with the old session.
      throw new Error("the lease session was replaced");
    }
    const session = this.#session;
    // A round that outlived its timeout must not touch the state of the next session's.
    const current = () => {
      if (this.#session !== session) throw new Error("the lease session was replaced");
    };
    const waiting = this.#symbols.filter((s) => !this.#owned.has(s));
    const attempts = waiting.length + this.#unconfirmed.size === 0
      ? []
      : await session.tryLock([...this.#unconfirmed, ...waiting], this.#graceMs);
    current();
    const take: string[] = [];
    const giveBack: number[] = [];
    const stale: LockAttempt[] = [];
    const lost: LockAttempt[] = [];
    const overlaps: { symbol: string; by: string; sinceMs: number }[] = [];
    const deferred: string[] = [];
    const standby = new Map<string, string>();
    for (const a of attempts) {
      const mine = a.holder === this.#holder.id;
      if (this.#owned.has(a.symbol)) {
        if (a.got) {
          this.#unconfirmed.delete(a.symbol);
          if (!mine) {
            // Someone held it while this process, cut off, went on ingesting.
            overlaps.push({ symbol: a.symbol, by: holderName(a), sinceMs: this.#sinceMs(a) });
            take.push(a.symbol);
          }
        } else if (mine) {
          stale.push(a);
        } else {
          lost.push(a);
        }
      } else if (!a.got) {
        this.#seenHeld.add(a.symbol);
        standby.set(a.symbol, `${holderName(a)} since ${a.since?.toISOString() ?? "?"}`);
      } else if (
        this.#acquiring &&
        (mine || a.holder === null || a.renewedSinceOurs || this.#seenHeld.has(a.symbol) ||
          a.graceOver)
      ) {
        take.push(a.symbol);
      } else {
        giveBack.push(a.lockKey);
        if (this.#acquiring) {
          deferred.push(a.symbol);
          standby.set(a.symbol, `${holderName(a)}, which may be reconnecting`);
        }
      }
    }
    if (giveBack.length > 0) await session.unlock(giveBack);
    if (stale.length > 0 && this.#staleBackend !== undefined) {
      // This holder's previous session lingers on the server (half-open after a partition):
      // end it and take its locks back at once, before a standby sees them free.
      const pid = this.#staleBackend;
      if (await session.endStale(pid, stale.map((a) => a.lockKey)) > 0) {
        const again = await session.tryLock(stale.map((a) => a.symbol), this.#graceMs);
        current();
        for (const a of again) if (a.got) this.#unconfirmed.delete(a.symbol);
        this.#logger.info(
          `Ended this process's previous lease session (server pid ${pid}), which still held ${stale.length} lease(s)`,
        );
      }
    }
    if (overlaps.length > 0) await session.recordOverlap(this.#holder, overlaps);
    if (lost.length > 0) {
      current();
      await this.#lose(session, lost);
    }
    if (take.length > 0) {
      const taken = await session.take(this.#holder, take);
      current();
      this.#took(taken);
    }
    this.#waiting = standby;
    this.#reportStandby(deferred.length > 0);
    if (this.#unconfirmed.size === 0 && this.#sessionLostAt !== undefined) {
      const confirmed = this.#owned.size > 0 ? `: ${this.#owned.size} lease(s) confirmed` : "";
      this.#logger.info(
        `The lease session is back after ${seconds(Date.now() - this.#sessionLostAt)}${confirmed}`,
      );
      this.#sessionLostAt = undefined;
    }
    if (this.#unconfirmed.size === 0 && this.#freeze.confirms(round)) {
      // Held ticks of a symbol lost meanwhile are kept if stamped before the second it was
      // taken: its new holder, subscribed then, never received them.
      this.#notOwned += this.#freeze.settle((item) => {
        if (this.#owned.has(item.symbol)) return true;
        const lostAt = this.#lostAt.get(item.symbol);
        return lostAt !== undefined && item.timeMs < Math.floor(lostAt / 1000) * 1000;
      });
    }
  }

  #sinceMs(a: LockAttempt): number {
    return a.since?.getTime() ?? a.releasedAt?.getTime() ?? Date.now();
  }

  #overlapsOf(lost: LockAttempt[]): { symbol: string; by: string; sinceMs: number }[] {
    return lost.map((a) => ({ symbol: a.symbol, by: holderName(a), sinceMs: this.#sinceMs(a) }));
  }

  /**
   * Stops ingesting symbols another process took while this one was cut off (it went on
   * ingesting: an overlap, recorded) or frozen (it held what came: no overlap).
   */
  async #lose(session: LeaseSession, lost: LockAttempt[]): Promise<void> {
    const symbols = lost.map((a) => a.symbol).sort();
    for (const symbol of symbols) {
      this.#owned.delete(symbol);
      this.#unconfirmed.delete(symbol);
    }
    this.#lost += symbols.length;
    const overlaps = this.#overlapsOf(lost);
    for (const o of overlaps) this.#lostAt.set(o.symbol, o.sinceMs);
    this.#options.onLose(symbols);
    const frozen = this.#freeze.frozen;
    this.#logger.warn(lostLine(symbols, [...new Set(overlaps.map((o) => o.by))], {
      frozen,
      sinceMs: Math.min(...overlaps.map((o) => o.sinceMs)),
    }));
    if (!frozen) await session.recordOverlap(this.#holder, overlaps);
  }

  #took(taken: Taken[]): void {
    for (const t of taken) {
      this.#owned.add(t.symbol);
      this.#unconfirmed.delete(t.symbol);
      if (t.previous) this.#takeovers++;
    }
    this.#options.onAcquire(taken);
    for (const line of takenLines(taken)) this.#logger.info(line);
  }

  #reportStandby(deferring: boolean): void {
    const text = [...this.#waiting].join(";");
    if (text === this.#standbyReport) return;
    this.#standbyReport = text;
    if (this.#waiting.size === 0) return;
    this.#logger.info(standbyLine(this.#waiting, { deferring, graceMs: this.#graceMs }));
  }

  /** Runs every `renewMs`: notices when the process itself was frozen. */
  #beat(): void {
    this.#freeze.beat(this.#rounds, this.#owned.size > 0 && this.#acquiring);
  }
}
