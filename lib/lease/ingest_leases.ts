import { type Logger, silentLogger } from "../log.ts";
import type { Gated } from "./lease_hold.ts";
import { LeaseHeldError, type LeaseOptions, type LeaseStats } from "./lease_options.ts";
import { listed, lostLine, seconds, standbyLine, takenLines } from "./lease_messages.ts";
import { judge, takenAt } from "./lease_rules.ts";
import {
  type Holder,
  holderName,
  LeaseSession,
  type LockAttempt,
  type Taken,
} from "./lease_session.ts";
import { type Loss, TickGate } from "./tick_gate.ts";
import { errorText } from "../text.ts";

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
  #staleMs: number;
  #session: LeaseSession | undefined;
  #staleBackend: number | undefined;
  #owned = new Set<string>();
  /** Owned, but not yet locked again by the current session. */
  #unconfirmed = new Set<string>();
  #waiting = new Map<string, string>();
  /** Symbols this session saw held: their holder was alive after it began. */
  #seenHeld = new Set<string>();
  /** Symbols this session has said it stands by for (`LeaseSession.standBy`). */
  #standingBy = new Set<string>();
  /** Lock keys of the symbols wanted, as learnt from the attempts. */
  #keys = new Map<string, number>();
  #failures = 0;
  /** Resolved when the round under way (or the next) ends. */
  #roundEnded: (() => void)[] = [];
  #acquiring = true;
  #closed = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #pulse: ReturnType<typeof setInterval> | undefined;
  #running: Promise<void> | undefined;
  #rounds = 0;
  #gate: TickGate<T>;
  #standbyReport = "";
  #sessionLostAt: number | undefined;
  #takeovers = 0;
  #lost = 0;

  constructor(options: LeaseOptions<T>) {
    this.#options = options;
    this.#logger = options.logger ?? silentLogger;
    this.#symbols = [...new Set(options.symbols)];
    this.#timeoutMs = options.timeoutMs ?? 20_000;
    this.#renewMs = options.renewMs ?? Math.min(1_000, Math.floor(this.#timeoutMs / 5));
    this.#graceMs = options.graceMs ?? 5_000;
    this.#staleMs = options.staleMs ?? 3 * this.#renewMs;
    if (!(this.#renewMs > 0 && this.#timeoutMs >= 2 * this.#renewMs)) {
      throw new RangeError(
        `Cannot hold leases: the timeout (${this.#timeoutMs} ms) must be at least twice the renewal interval (${this.#renewMs} ms)`,
      );
    }
    if (!(this.#staleMs >= 2 * this.#renewMs)) {
      throw new RangeError(
        `Cannot hold leases: the staleness limit (${this.#staleMs} ms) must be at least twice the renewal interval (${this.#renewMs} ms)`,
      );
    }
    this.#gate = new TickGate<T>({
      owned: this.#owned,
      timeoutMs: this.#timeoutMs,
      renewMs: this.#renewMs,
      staleMs: this.#staleMs,
      logger: this.#logger,
      onRelease: options.onRelease,
    });
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
   * not hold its symbol (counted) or while its leases are in doubt (then the tick is held
   * and later passed to `onRelease`, or counted). See `TickGate`.
   */
  admit(item: T): boolean {
    return this.#gate.admit(item, this.#rounds);
  }

  /** A snapshot of the counters. */
  stats(): LeaseStats {
    return {
      owned: this.#owned.size,
      standby: this.#waiting.size,
      takeovers: this.#takeovers,
      lost: this.#lost,
      notOwned: this.#gate.notOwned,
      held: this.#gate.held,
      discardedUnverified: this.#gate.discardedUnverified,
      connected: this.#session !== undefined,
    };
  }

  /**
   * Shutdown begins: take nothing more, and admit what is held so the pipeline writes it
   * before it closes: held ticks of a symbol lost meanwhile get up to 3 more rounds to be
   * compared with what its new holder stored, then those stamped before its takeover's
   * second are kept; held ticks of symbols still owned are admitted (duplicates are better
   * than losses).
   */
  async stopAcquiring(): Promise<void> {
    this.#acquiring = false;
    for (let i = 0; i < 3 && this.#gate.sorting && !this.#closed; i++) {
      await new Promise<void>((resolve) => this.#roundEnded.push(resolve));
    }
    this.#gate.stop();
  }

  /** Marks every lease released, gives back the locks and ends the session. Never throws. */
  async close(): Promise<void> {
    this.#acquiring = false;
    this.#closed = true;
    for (const resolve of this.#roundEnded.splice(0)) resolve();
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
    // Right after a failure, at once: a session merely reset is back well before a standby
    // may take its leases.
    const delay = this.#failures === 1 ? 0 : this.#renewMs;
    this.#timer = setTimeout(() => {
      this.#running = this.#guardedRound().finally(() => {
        this.#running = undefined;
        this.#schedule();
      });
    }, delay);
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
      this.#failures = 0;
    } catch (error) {
      this.#failures++;
      const session = this.#session;
      this.#session = undefined;
      if (session) {
        this.#staleBackend = session.backendPid;
        await session.close();
      }
      for (const symbol of this.#owned) this.#unconfirmed.add(symbol);
      if (this.#sessionLostAt === undefined && this.#acquiring) {
        this.#gate.sessionLost(this.#unconfirmed);
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
      this.#gate.giveUpIfLong();
    } finally {
      clearTimeout(timer);
      for (const resolve of this.#roundEnded.splice(0)) resolve();
    }
  }

  async #renew(session: LeaseSession): Promise<void> {
    const alive = this.#unconfirmed.size === 0;
    const sentAt = performance.now();
    const keys = [...this.#owned].map((s) => this.#keys.get(s)!);
    const renewal = await session.renew(this.#holder, alive, keys);
    if (renewal.pid !== session.backendPid) {
      // postgres.js reconnected on its own: the locks went with the old session.
      throw new Error("the lease session was replaced");
    }
    const watched = new Set(renewal.watched);
    this.#gate.renewed(
      sentAt,
      alive,
      new Set([...this.#owned].filter((s) => watched.has(this.#keys.get(s)!))),
    );
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
      this.#standingBy.clear();
      for (const symbol of this.#owned) this.#unconfirmed.add(symbol);
    } else {
      await this.#renew(this.#session);
    }
    const session = this.#session;
    // A round that outlived its timeout must not touch the state of the next session's.
    const current = () => {
      if (this.#session !== session) throw new Error("the lease session was replaced");
    };
    const waiting = this.#symbols.filter((s) => !this.#owned.has(s));
    const attempts = waiting.length + this.#unconfirmed.size === 0
      ? []
      : await session.tryLock([...this.#unconfirmed, ...waiting], {
        graceMs: this.#graceMs,
        staleMs: this.#staleMs,
      });
    current();
    for (const a of attempts) this.#keys.set(a.symbol, a.lockKey);
    const verdict = judge(attempts, {
      holderId: this.#holder.id,
      owned: this.#owned,
      seenHeld: this.#seenHeld,
      acquiring: this.#acquiring,
    });
    for (const symbol of verdict.confirmed) this.#unconfirmed.delete(symbol);
    if (verdict.giveBack.length > 0) await session.unlock(verdict.giveBack);
    if (verdict.stale.length > 0) await this.#endStale(session, verdict.stale, current);
    if (verdict.overlaps.length > 0) await session.recordOverlap(this.#holder, verdict.overlaps);
    if (verdict.lost.length > 0) {
      current();
      await this.#lose(session, verdict.lost);
    }
    if (verdict.take.length > 0) {
      const taken = await session.take(this.#holder, verdict.take);
      current();
      this.#took(taken);
    }
    await this.#standBy(session, [...verdict.standby.keys()]);
    this.#waiting = verdict.standby;
    this.#reportStandby(verdict.deferred.length > 0);
    if (this.#unconfirmed.size === 0) {
      if (this.#sessionLostAt !== undefined) {
        const confirmed = this.#owned.size > 0 ? `: ${this.#owned.size} lease(s) confirmed` : "";
        this.#logger.info(
          `The lease session is back after ${
            seconds(Date.now() - this.#sessionLostAt)
          }${confirmed}`,
        );
        this.#sessionLostAt = undefined;
        // At once, not at the next round: standbys read the renewal to leave the leases alone.
        await this.#renew(session);
        current();
      }
      this.#gate.confirmed(round);
    }
    if (this.#gate.sorting) {
      await this.#gate.sortOut(async (symbol, fromMs, toMs, limit) => {
        const stored = await session.storedBetween(symbol, fromMs, toMs, limit);
        current();
        return stored;
      });
    }
  }

  /**
   * This holder's previous session lingers on the server (half-open after a partition):
   * end it and take its locks back at once, before a standby sees them free.
   */
  async #endStale(
    session: LeaseSession,
    stale: LockAttempt[],
    current: () => void,
  ): Promise<void> {
    const pid = this.#staleBackend;
    if (pid === undefined) return;
    if (await session.endStale(pid, stale.map((a) => a.lockKey)) === 0) return;
    const again = await session.tryLock(stale.map((a) => a.symbol), {
      graceMs: this.#graceMs,
      staleMs: this.#staleMs,
    });
    current();
    for (const a of again) if (a.got) this.#unconfirmed.delete(a.symbol);
    this.#logger.info(
      `Ended this process's previous lease session (server pid ${pid}), which still held ${stale.length} lease(s)`,
    );
  }

  /** Says which symbols this session stands by for, so their holders know (`watched`). */
  async #standBy(session: LeaseSession, symbols: string[]): Promise<void> {
    const want = new Set(symbols);
    const add = symbols.filter((s) => !this.#standingBy.has(s));
    const drop = [...this.#standingBy].filter((s) => !want.has(s));
    if (add.length > 0) await session.standBy(add.map((s) => this.#keys.get(s)!), true);
    if (drop.length > 0) await session.standBy(drop.map((s) => this.#keys.get(s)!), false);
    this.#standingBy = want;
  }

  /**
   * Stops ingesting symbols another process took while this one was cut off (it went on
   * ingesting: an overlap, recorded), or frozen, or without its lease session (it held
   * their ticks: no overlap; what it held is sorted out).
   */
  async #lose(session: LeaseSession, lost: LockAttempt[]): Promise<void> {
    const symbols = lost.map((a) => a.symbol).sort();
    for (const symbol of symbols) {
      this.#owned.delete(symbol);
      this.#unconfirmed.delete(symbol);
    }
    this.#lost += symbols.length;
    const losses = new Map<string, Loss>(
      lost.map((a) => [a.symbol, { sinceMs: takenAt(a), by: holderName(a) }]),
    );
    const { held, ingested, frozen } = this.#gate.lose(losses);
    this.#options.onLose(symbols);
    const holders = [...new Set(lost.map((a) => holderName(a)))];
    if (held.length > 0) {
      this.#logger.warn(lostLine(held.sort(), holders, { why: frozen ? "frozen" : "held" }));
    }
    if (ingested.length > 0) {
      const overlaps = ingested.map((symbol) => ({ symbol, ...losses.get(symbol)! }));
      this.#logger.warn(lostLine(ingested.sort(), holders, {
        why: "cut off",
        sinceMs: Math.min(...overlaps.map((o) => o.sinceMs)),
      }));
      await session.recordOverlap(this.#holder, overlaps);
    }
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
    this.#logger.info(
      standbyLine(this.#waiting, {
        deferring,
        graceMs: this.#graceMs,
        staleMs: this.#staleMs,
      }),
    );
  }

  /** Runs every `renewMs`: notices when the process itself was frozen. */
  #beat(): void {
    this.#gate.beat(this.#rounds, this.#owned.size > 0 && this.#acquiring);
  }
}
