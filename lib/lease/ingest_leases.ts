import type { Sql } from "postgres";
import { UserError } from "../errors.ts";
import { type Logger, silentLogger } from "../log.ts";
import {
  type Holder,
  holderName,
  LeaseSession,
  type LockAttempt,
  type Taken,
} from "./lease_session.ts";

/** Settings of `IngestLeases`. */
export interface LeaseOptions<T> {
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

const MAX_HELD = 200_000;
const LISTED = 10;

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

/** "A, B, C and 12 more". */
function listed(items: string[]): string {
  const shown = items.slice(0, LISTED).join(", ");
  return items.length > LISTED ? `${shown} and ${items.length - LISTED} more` : shown;
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * One writer per symbol: a lease in the database per symbol, held by at most one ingest
 * process, which alone subscribes to it and admits its ticks. Others stand by and take a
 * lease over as soon as its holder's session ends (see docs/one_writer.md).
 *
 * `admit(symbol, item)` is the gate on the hot path: true when the tick may be pushed now.
 */
export class IngestLeases<T> {
  #options: LeaseOptions<T>;
  #logger: Logger;
  #holder: Holder;
  #symbols: string[];
  #timeoutMs: number;
  #renewMs: number;
  #graceMs: number;
  #stallMs: number;
  #session: LeaseSession | undefined;
  #staleBackend: number | undefined;
  #owned = new Set<string>();
  /** Owned, but not yet locked again by the current session. */
  #unconfirmed = new Set<string>();
  #waiting = new Map<string, string>();
  #acquiring = true;
  #closed = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #pulse: ReturnType<typeof setInterval> | undefined;
  #running: Promise<void> | undefined;
  #rounds = 0;
  #aliveAt = performance.now();
  #suspect: { since: number; round: number } | undefined;
  #held: { symbol: string; item: T }[] = [];
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
    // A freeze this long may have let the server end the silent session: see `admit`.
    this.#stallMs = Math.max(this.#renewMs, this.#timeoutMs - 2 * this.#renewMs);
    this.#holder = {
      id: crypto.randomUUID(),
      host: options.host ?? Deno.hostname(),
      pid: options.pid ?? Deno.pid,
    };
  }

  /** "host:pid" of this process. */
  get name(): string {
    return holderName(this.#holder);
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
   * The gate for one tick of `symbol`: true when it may be pushed now; false when this
   * process does not hold the symbol (counted) or when, after a freeze, the lease must be
   * confirmed first (then `item` is held and later passed to `onRelease`, or counted).
   */
  admit(symbol: string, item: T): boolean {
    if (!this.#owned.has(symbol)) {
      this.#notOwned++;
      return false;
    }
    if (this.#suspect === undefined) {
      if (performance.now() - this.#aliveAt <= this.#stallMs) return true;
      // Frozen (the socket's backlog arrives before the timers run): see `#beat`.
      this.#beat();
    }
    if (this.#held.length >= MAX_HELD) {
      this.#logger.warn(
        `Holding ${MAX_HELD} ticks while the leases are unconfirmed: admitting them (duplicates are possible)`,
      );
      this.#releaseHeld(true);
      return true;
    }
    this.#held.push({ symbol, item });
    return false;
  }

  /** Symbols held now. */
  owned(): string[] {
    return [...this.#owned];
  }

  /** A snapshot of the counters. */
  stats(): LeaseStats {
    return {
      owned: this.#owned.size,
      standby: this.#waiting.size,
      takeovers: this.#takeovers,
      lost: this.#lost,
      notOwned: this.#notOwned,
      held: this.#held.length,
      connected: this.#session !== undefined,
    };
  }

  /**
   * Shutdown begins: take nothing more, and admit what a freeze left held (duplicates are
   * better than losses) so the pipeline writes it before it closes.
   */
  stopAcquiring(): void {
    this.#acquiring = false;
    if (this.#held.length > 0) this.#releaseHeld(true);
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
      if (this.#suspect && performance.now() - this.#suspect.since > this.#timeoutMs) {
        this.#logger.warn(
          "The leases stay unconfirmed: admitting the ticks held since the freeze (duplicates are possible)",
        );
        this.#releaseHeld(true);
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
      for (const symbol of this.#owned) this.#unconfirmed.add(symbol);
    } else if ((await this.#session.renew(this.#holder)) !== this.#session.backendPid) {
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
    const stale: number[] = [];
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
          stale.push(a.lockKey);
        } else {
          lost.push(a);
        }
      } else if (!a.got) {
        standby.set(a.symbol, `${holderName(a)} since ${a.since?.toISOString() ?? "?"}`);
      } else if (
        this.#acquiring && (mine || a.holder === null || a.renewedSinceOurs || a.graceOver)
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
      const ended = await session.endStale(this.#staleBackend, stale);
      if (ended > 0) {
        this.#logger.info(
          `Ended this process's previous lease session (server pid ${this.#staleBackend}), still holding ${stale.length} lease(s)`,
        );
      }
    }
    if (overlaps.length > 0) await session.recordOverlap(this.#holder, overlaps);
    if (lost.length > 0) {
      current();
      this.#lose(lost);
      await session.recordOverlap(this.#holder, this.#overlapsOf(lost));
    }
    if (take.length > 0) {
      const taken = await session.take(this.#holder, take);
      current();
      this.#took(taken);
    }
    this.#waiting = standby;
    this.#reportStandby(deferred);
    if (this.#unconfirmed.size === 0 && this.#sessionLostAt !== undefined) {
      this.#logger.info(
        `The lease session is back after ${
          seconds(Date.now() - this.#sessionLostAt)
        }: ${this.#owned.size} lease(s) confirmed`,
      );
      this.#sessionLostAt = undefined;
    }
    if (this.#suspect && round > this.#suspect.round && this.#unconfirmed.size === 0) {
      this.#releaseHeld(false);
    }
  }

  #sinceMs(a: LockAttempt): number {
    return a.since?.getTime() ?? a.releasedAt?.getTime() ?? Date.now();
  }

  #overlapsOf(lost: LockAttempt[]): { symbol: string; by: string; sinceMs: number }[] {
    return lost.map((a) => ({ symbol: a.symbol, by: holderName(a), sinceMs: this.#sinceMs(a) }));
  }

  /** Stops ingesting symbols another process took while this one was cut off. */
  #lose(lost: LockAttempt[]): void {
    const symbols = lost.map((a) => a.symbol).sort();
    for (const symbol of symbols) {
      this.#owned.delete(symbol);
      this.#unconfirmed.delete(symbol);
    }
    this.#lost += symbols.length;
    this.#options.onLose(symbols);
    const overlaps = this.#overlapsOf(lost);
    const earliest = Math.min(...overlaps.map((o) => o.sinceMs));
    this.#logger.warn(
      `Lost the lease of ${listed(symbols)} to ${
        listed([...new Set(overlaps.map((o) => o.by))])
      } while cut off from the database: stopped ingesting ${
        symbols.length === 1 ? "it" : "them"
      }; rows since ${iso(earliest)} may be stored twice (recorded in tickpipe_handovers)`,
    );
  }

  #took(taken: Taken[]): void {
    for (const t of taken) {
      this.#owned.add(t.symbol);
      this.#unconfirmed.delete(t.symbol);
    }
    this.#options.onAcquire(taken);
    const fresh = taken.filter((t) => t.previous === undefined).map((t) => t.symbol);
    if (fresh.length > 0) {
      this.#logger.info(`Holding the lease of ${fresh.length} symbol(s): ${listed(fresh)}`);
    }
    const byHolder = new Map<string, Taken[]>();
    for (const t of taken) {
      if (!t.previous) continue;
      const key = `${t.previous.holder}|${t.previous.released}`;
      byHolder.set(key, [...(byHolder.get(key) ?? []), t]);
    }
    for (const group of byHolder.values()) {
      this.#takeovers += group.length;
      const previous = group[0]!.previous!;
      const gaps = group.map((t) =>
        t.lastTick
          ? `${t.symbol}: ${iso(t.lastTick.timeMs)} → ${iso(t.sinceMs)}, ${
            seconds(t.sinceMs - t.lastTick.timeMs)
          }`
          : `${t.symbol}: nothing stored in the last 48 h`
      );
      this.#logger.info(
        `Took over ${group.length} symbol(s) from ${previous.holder} (${
          previous.released ? "it released them" : "its session ended without releasing"
        }); no ticks stored between its last one and this subscription: ${
          listed(gaps)
        } (recorded in tickpipe_handovers)`,
      );
    }
  }

  #reportStandby(deferred: string[]): void {
    const report = [...this.#waiting].sort(([a], [b]) => a < b ? -1 : 1).map(([s, by]) =>
      `${s} (${by})`
    );
    const text = report.join(", ");
    if (text === this.#standbyReport) return;
    this.#standbyReport = text;
    if (report.length === 0) return;
    this.#logger.info(
      `Standing by for ${report.length} symbol(s) held by another ingest process: ${
        listed(report)
      }; taking over when it stops${
        deferred.length > 0
          ? ` (waiting ${
            seconds(this.#graceMs)
          } after connecting before taking a lease whose holder may be reconnecting)`
          : ""
      }`,
    );
  }

  /** Runs every `renewMs`: notices when the process itself was frozen. */
  #beat(): void {
    const now = performance.now();
    const gap = now - this.#aliveAt;
    this.#aliveAt = now;
    if (gap <= this.#stallMs || this.#suspect || this.#owned.size === 0 || !this.#acquiring) {
      return;
    }
    this.#suspect = { since: now, round: this.#rounds };
    this.#logger.warn(
      `This process was frozen for ${
        seconds(gap)
      }, long enough to lose its leases: holding ticks until they are confirmed`,
    );
  }

  /** Ends a suspicion: held ticks of symbols still owned are admitted, others counted. */
  #releaseHeld(all: boolean): void {
    this.#suspect = undefined;
    const held = this.#held;
    this.#held = [];
    const admitted: T[] = [];
    for (const h of held) {
      if (all || this.#owned.has(h.symbol)) admitted.push(h.item);
      else this.#notOwned++;
    }
    if (held.length > 0) {
      this.#logger.info(
        `Leases confirmed after the freeze: admitted ${admitted.length} held tick(s), discarded ${
          held.length - admitted.length
        } of symbols now held elsewhere`,
      );
    }
    if (admitted.length > 0) this.#options.onRelease(admitted);
  }
}
