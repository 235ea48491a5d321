import type { Sql } from "postgres";
import { UserError } from "../errors.ts";
import { type Logger, silentLogger } from "../log.ts";
import type { ConnectionEvent } from "../twelvedata/client_options.ts";
import { checkGapSchema, closeOngoingGaps, type Gap, type GapReason, recordGap } from "./log.ts";
import {
  findCrashedRuns,
  heartbeat,
  hostName,
  type IngestRun,
  RunLock,
  setRunSymbols,
  startRun,
  stopRun,
} from "./runs.ts";
import { errorText } from "../text.ts";

/** Settings of `GapRecorder.start`. */
export interface GapRecorderOptions {
  /** The symbols this run streams (`SYMBOL:EXCHANGE` keys are logged as `SYMBOL`). */
  symbols: readonly string[];
  /**
   * With per-symbol leases (docs/one_writer.md): a symbol's gaps are this run's only while it
   * holds the symbol's lease (`own`/`disown`); none is held at the start.
   */
  leased?: boolean;
  /** The event time (epoch ms) of the last tick received per symbol (the client's). */
  lastTicks: () => Readonly<Record<string, number>>;
  /** How often the run records a heartbeat, and retries a failed write (default 10 s). */
  heartbeatMs?: number;
  /** Called with the gaps the first tick after them has just closed (for the backfiller). */
  onClosed?: (gaps: Gap[]) => void;
  logger?: Logger;
}

interface Op {
  what: string;
  run: () => Promise<void>;
}

const STOP_TIMEOUT_MS = 5_000;

// A subscription key "RY:TSX" picks a listing; its ticks, and so its rows, say "RY".
const stored = (key: string) => key.includes(":") ? key.slice(0, key.indexOf(":")) : key;

/**
 * The gap log's writer inside ingest: records the run and its heartbeats, finds runs that
 * ended without a clean stop, and turns connection events (drops, stalls, refusals), ticks
 * dropped by the pipeline and the run's own stop into gaps, each closed by the symbol's
 * first tick after it. Writes go through one ordered queue and are retried while the
 * database is away, so recording never blocks or fails the stream; `tick()` is the only
 * call on the hot path and returns at once unless a gap waits for that symbol.
 */
export class GapRecorder {
  #sql: Sql;
  #logger: Logger;
  #run: IngestRun;
  #lastTicks: () => Readonly<Record<string, number>>;
  #onClosed: ((gaps: Gap[]) => void) | undefined;
  #lock: RunLock;
  /**
   * Symbols whose next tick closes an ongoing gap: all of them after the start and after
   * every heartbeat (a gap another process recorded is closed too), one after its gap.
   */
  #unclosed: Set<string>;
  /** The symbols whose gaps this run records: all of them, or with leases those it holds. */
  #owned: Set<string>;
  #dropping = new Set<string>();
  #refused = new Set<string>();
  #queue: Op[] = [];
  #draining: Promise<void> | undefined;
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  #beatTimer: ReturnType<typeof setInterval> | undefined;
  #beatQueued = false;
  #stopped = false;

  private constructor(sql: Sql, options: GapRecorderOptions) {
    this.#sql = sql;
    this.#logger = options.logger ?? silentLogger;
    this.#lastTicks = options.lastTicks;
    this.#onClosed = options.onClosed;
    const symbols = [...new Set(options.symbols.map(stored))];
    this.#owned = new Set(options.leased ? [] : symbols);
    this.#run = {
      runId: crypto.randomUUID(),
      host: hostName(),
      pid: Deno.pid,
      symbols: [...this.#owned],
      heartbeatMs: options.heartbeatMs ?? 10_000,
    };
    this.#unclosed = new Set(this.#owned);
    this.#lock = new RunLock(sql, this.#run.runId);
  }

  /**
   * Records the run, looks for runs that crashed (their gaps are recorded before any tick
   * of this run can close them) and starts the heartbeat. Throws a `UserError` when the
   * schema has no gap log; a database that cannot be reached is retried in the background.
   */
  static async start(sql: Sql, options: GapRecorderOptions): Promise<GapRecorder> {
    const recorder = new GapRecorder(sql, options);
    try {
      await checkGapSchema(sql, "ingest");
    } catch (error) {
      if (error instanceof UserError) throw error;
      recorder.#logger.warn("Cannot check the gap log's schema now; recording anyway", {
        error: errorText(error),
      });
    }
    const run = recorder.#run;
    // The lock first: a run recorded without it would look dead to a concurrent start.
    recorder.#enqueue("the start of this run", async () => {
      await recorder.#lock.hold();
      await startRun(sql, run);
    });
    recorder.#enqueue("runs that ended without a clean stop", async () => {
      await findCrashedRuns(sql, { selfRunId: run.runId, logger: recorder.#logger });
    });
    await recorder.#draining;
    recorder.#beatTimer = setInterval(() => {
      for (const symbol of recorder.#owned) {
        if (!recorder.#refused.has(symbol)) recorder.#unclosed.add(symbol);
      }
      if (recorder.#beatQueued) return;
      recorder.#beatQueued = true;
      recorder.#enqueue("a heartbeat", async () => {
        recorder.#beatQueued = false;
        await recorder.#lock.hold();
        await heartbeat(sql, run.runId);
      });
    }, run.heartbeatMs);
    return recorder;
  }

  /**
   * With leases: this run now holds these symbols. Taken from a holder that did not release
   * them (it died, or was cut off), a symbol has a gap: a run that died is marked crashed
   * first (its `not_running` gap starts at its last stored tick), else a `handover` gap starts
   * at the symbol's last stored tick. Either is closed by this run's first tick.
   */
  own(taken: { symbol: string; lastTickMs: number | undefined; unreleased: boolean }[]): void {
    if (this.#stopped || taken.length === 0) return;
    if (taken.some((t) => t.unreleased)) {
      this.#enqueue("runs that ended without a clean stop", async () => {
        await findCrashedRuns(this.#sql, { selfRunId: this.#run.runId, logger: this.#logger });
      });
    }
    for (const { symbol, lastTickMs, unreleased } of taken) {
      this.#owned.add(symbol);
      if (unreleased && lastTickMs !== undefined) {
        this.#open(symbol, "handover", lastTickMs, "lease taken over from another ingest");
      }
    }
    this.#recordSymbols();
  }

  /** With leases: this run no longer holds these symbols (another process took them over). */
  disown(symbols: string[]): void {
    if (this.#stopped) return;
    for (const symbol of symbols) {
      this.#owned.delete(symbol);
      this.#unclosed.delete(symbol);
    }
    this.#recordSymbols();
  }

  #recordSymbols(): void {
    const symbols = [...this.#owned];
    this.#enqueue(
      "the symbols of this run",
      () => setRunSymbols(this.#sql, this.#run.runId, symbols),
    );
  }

  /** Takes a connection event of the client (see `ClientOptions.onConnection`). */
  connection(event: ConnectionEvent): void {
    if (this.#stopped) return;
    switch (event.type) {
      case "dropped":
      case "stalled": {
        const reason: GapReason = event.type === "stalled" ? "stalled" : "disconnected";
        const last = this.#lastTicks();
        for (const symbol of this.#owned) {
          if (this.#refused.has(symbol)) continue;
          this.#open(symbol, reason, last[symbol] ?? event.atMs, undefined);
        }
        break;
      }
      case "refused": {
        const symbol = stored(event.symbol);
        this.#refused.add(symbol);
        this.#open(
          symbol,
          "refused",
          this.#lastTicks()[symbol] ?? event.atMs,
          `refused at subscribe: ${event.reason}`,
        );
        break;
      }
      case "open":
        break;
    }
  }

  /** Takes a tick the pipeline accepted; the first after a gap closes it. */
  tick(symbol: string, timeMs: number): void {
    if (this.#unclosed.size === 0 || !this.#unclosed.delete(symbol)) return;
    this.#dropping.delete(symbol);
    if (this.#stopped) return;
    const end = new Date(timeMs);
    this.#enqueue(`the end of the gap of ${symbol}`, async () => {
      const closed = await closeOngoingGaps(this.#sql, symbol, end);
      if (closed.length > 0) this.#onClosed?.(closed);
    });
  }

  /** Takes a tick the pipeline dropped (memory and spool full). */
  dropped(symbol: string, timeMs: number): void {
    if (this.#dropping.has(symbol)) return;
    this.#dropping.add(symbol);
    this.#open(symbol, "dropped", timeMs, "ticks dropped: memory and spool were full");
  }

  /**
   * Records the clean stop: a `not_running` gap for every symbol from its last tick (closed
   * by the first tick after the next start), then the run's end. Waits at most 5 s for the
   * database; what is left unwritten is found at the next start as a crash.
   */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    clearInterval(this.#beatTimer);
    const at = Date.now();
    const last = this.#lastTicks();
    for (const symbol of this.#owned) {
      this.#open(symbol, "not_running", last[symbol] ?? at, "ingest stopped (a clean stop)", true);
    }
    this.#enqueue("the end of this run", async () => {
      await stopRun(this.#sql, this.#run.runId);
      await this.#lock.release();
    }, true);
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      this.#settled(),
      new Promise((resolve) => timer = setTimeout(resolve, STOP_TIMEOUT_MS)),
    ]);
    clearTimeout(timer);
    clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    await this.#lock.release();
    if (this.#queue.length > 0) {
      this.#logger.error(
        `Cannot record ${this.#queue.length} gap-log entries: the database is unreachable ` +
          "(the next start finds this run's gaps from its last heartbeat)",
      );
      this.#queue = [];
    }
  }

  #open(
    symbol: string,
    reason: GapReason,
    startMs: number,
    detail: string | undefined,
    final = false,
  ): void {
    if (!final) this.#unclosed.add(symbol);
    const gap = {
      symbol,
      reason,
      start: new Date(startMs),
      detail,
      runId: this.#run.runId,
    };
    this.#enqueue(`a ${reason} gap of ${symbol}`, async () => {
      const recorded = await recordGap(this.#sql, gap);
      if (recorded) {
        this.#logger.info(`Gap recorded: ${symbol} ${reason} since ${gap.start.toISOString()}`);
      }
    }, final);
  }

  #enqueue(what: string, run: () => Promise<void>, final = false): void {
    if (this.#stopped && !final) return;
    this.#queue.push({ what, run });
    if (!this.#draining && this.#retryTimer === undefined) this.#draining = this.#drain();
  }

  async #drain(): Promise<void> {
    try {
      while (this.#queue.length > 0) {
        const op = this.#queue[0]!;
        try {
          await op.run();
        } catch (error) {
          this.#logger.limited(
            "gap-log",
            "warn",
            `Cannot record ${op.what} in the gap log now; retrying`,
            { error: errorText(error) },
            { perWindow: 1, windowMs: 30_000 },
          );
          this.#retryTimer = setTimeout(() => {
            this.#retryTimer = undefined;
            this.#draining ??= this.#drain();
          }, Math.min(this.#run.heartbeatMs, 5_000));
          return;
        }
        this.#queue.shift();
      }
    } finally {
      this.#draining = undefined;
    }
  }

  /** Resolves once the queue is empty (retries included). */
  async #settled(): Promise<void> {
    while (this.#queue.length > 0) {
      if (this.#draining) await this.#draining;
      else await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}
