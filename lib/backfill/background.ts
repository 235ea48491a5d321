import type { Sql } from "postgres";
import type { SchemaMode } from "../db/server_info.ts";
import { type Gap, listGaps } from "../gaps/log.ts";
import { type Logger, silentLogger } from "../log.ts";
import { AuthError } from "../twelvedata/errors.ts";
import { TwelveDataRest } from "../twelvedata/rest.ts";
import { runBackfill } from "./backfill.ts";
import { type Clock, systemClock } from "../timers.ts";
import { CreditGate, DailyLimitError } from "./credits.ts";
import { planFill } from "./plan.ts";
import { errorText } from "../text.ts";

/** Settings of `BackgroundBackfiller`. */
export interface BackgroundBackfillOptions {
  twelveData: { apiKey: string; apiUrl: string };
  mode: SchemaMode;
  /** At most this many API credits an hour (1 credit fills up to 4,999 minutes of a symbol). */
  perHour: number;
  /**
   * How long after a gap's end to ask for its bars (default 60 s): Twelve Data publishes a
   * minute's bar once the minute is over, and the gap's last missing minute just ended.
   */
  delayMs?: number;
  clock?: Clock;
  logger?: Logger;
}

/** What the background backfill has done. */
export interface BackgroundStats {
  gapsFilled: number;
  bars: number;
  requests: number;
  /** Gaps waiting for their turn. */
  pending: number;
}

const RETRY_MS = 5 * 60_000;
const DAY_MS = 86_400_000;

/**
 * Ingest's backfill on reconnect: takes the gaps the stream has just closed and fills them
 * from REST bars in the background, one at a time, within a credit budget per hour, after
 * a short delay. It never blocks the live stream: its writes are small transactions of
 * their own, and a failure is logged and retried later (the gap stays open in the log, for
 * `deno task backfill --gaps` too).
 */
export class BackgroundBackfiller {
  #sql: Sql;
  #options: BackgroundBackfillOptions;
  #logger: Logger;
  #clock: Clock;
  #gate: CreditGate;
  #rest: TwelveDataRest;
  #queue: { gap: Gap; notBefore: number }[] = [];
  #abort = new AbortController();
  #loop: Promise<void> | undefined;
  #wake: (() => void) | undefined;
  #disabled = false;
  #stats: BackgroundStats = { gapsFilled: 0, bars: 0, requests: 0, pending: 0 };

  constructor(sql: Sql, options: BackgroundBackfillOptions) {
    this.#sql = sql;
    this.#options = options;
    this.#logger = options.logger ?? silentLogger;
    this.#clock = options.clock ?? systemClock;
    this.#gate = new CreditGate({ clock: this.#clock, perHour: options.perHour });
    this.#rest = new TwelveDataRest({
      ...options.twelveData,
      onResponse: (response) => this.#gate.observe(response),
    });
  }

  /** A snapshot of the counters. */
  stats(): BackgroundStats {
    return { ...this.#stats, pending: this.#queue.length };
  }

  /** Queues gaps that have just closed; each is filled `delayMs` after its end. */
  enqueue(gaps: readonly Gap[]): void {
    if (this.#disabled || this.#abort.signal.aborted) return;
    const delay = this.#options.delayMs ?? 60_000;
    for (const gap of gaps) {
      if (gap.end === null || gap.state !== "open") continue;
      this.#queue.push({ gap, notBefore: gap.end.getTime() + delay });
    }
    this.#loop ??= this.#run();
    this.#wake?.();
  }

  /** Stops after the request in progress; what is stored stays, the rest waits in the log. */
  async stop(): Promise<void> {
    this.#abort.abort();
    this.#wake?.();
    await this.#loop;
  }

  async #run(): Promise<void> {
    const signal = this.#abort.signal;
    while (!signal.aborted && !this.#disabled) {
      const next = this.#queue.sort((a, b) => a.notBefore - b.notBefore)[0];
      if (!next) {
        await new Promise<void>((resolve) => this.#wake = resolve);
        this.#wake = undefined;
        continue;
      }
      const wait = next.notBefore - this.#clock.now();
      if (wait > 0) {
        await Promise.race([
          this.#clock.sleep(wait, signal),
          new Promise<void>((resolve) => this.#wake = resolve),
        ]);
        this.#wake = undefined;
        continue;
      }
      this.#queue.splice(this.#queue.indexOf(next), 1);
      await this.#fill(next.gap, signal);
    }
    this.#loop = undefined;
  }

  async #fill(queued: Gap, signal: AbortSignal): Promise<void> {
    try {
      const [gap] = await listGaps(this.#sql, { ids: [queued.id], states: ["open"] });
      if (!gap) return;
      const plan = await planFill(this.#sql, [gap], {
        nowMs: this.#clock.now(),
        live: new Set(),
      });
      const result = await runBackfill(this.#sql, plan, {
        rest: this.#rest,
        gate: this.#gate,
        mode: this.#options.mode,
        clock: this.#clock,
        logger: this.#logger,
        signal,
      });
      this.#stats.requests += result.requests;
      this.#stats.bars += result.bars;
      this.#stats.gapsFilled += result.filled;
      if (result.filled > 0) {
        this.#logger.info(
          `Backfilled the ${gap.reason} gap of ${gap.symbol}: ${result.bars} minute(s) from REST bars, ${result.requests} credit(s)`,
          { from: gap.start.toISOString(), to: gap.end?.toISOString() },
        );
      }
    } catch (error) {
      if (error instanceof AuthError) {
        this.#disabled = true;
        this.#logger.error(`Backfill on reconnect stops: ${error.message}`);
        return;
      }
      const retryAt = error instanceof DailyLimitError
        ? Math.floor(this.#clock.now() / DAY_MS) * DAY_MS + DAY_MS + 60_000
        : this.#clock.now() + RETRY_MS;
      this.#logger.warn(`Cannot backfill the gap of ${queued.symbol} now; retrying later`, {
        error: errorText(error),
        retry_at: new Date(retryAt).toISOString(),
      });
      this.#queue.push({ gap: queued, notBefore: retryAt });
    }
  }
}
