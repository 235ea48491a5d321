import { type Logger, silentLogger } from "../log.ts";
import { type Batch, newBatch, type Row } from "./batch.ts";
import type { Spool } from "./spool.ts";
import { formatCount } from "../text.ts";
import { systemTimers, type TimerId, type Timers } from "../timers.ts";

/** Settings of `Batcher`; the defaults are explained in docs of `BATCHER_DEFAULTS`. */
export interface BatcherOptions {
  /** A batch is released when it holds this many rows (default 5000). */
  maxBatch?: number;
  /** ...or when its oldest row has waited this long, in ms (default 100). */
  maxWaitMs?: number;
  /** Rows held in memory at which `full` turns true: producers should wait on `ready()`. */
  highWater?: number;
  /** Hard cap on rows in memory; beyond it rows go to the spool (default 50,000). */
  memoryCap?: number;
  /** Where rows go beyond `memoryCap`; without one they are dropped (counted, logged). */
  spool?: Spool | undefined;
  logger?: Logger;
  /** The flush timer's (tests drive time with their own). */
  timers?: Timers;
}

/**
 * Defaults, measured on 2 cores with PostgreSQL on the same machine (`deno task bench
 * --batch-size N`, its `db_ticks_per_s`): the unnest write reaches ~100k rows/s at 1000 rows per batch and
 * flattens at ~110k from 5000 (20,000 gains nothing, costs latency); 100 ms keeps a quiet
 * feed's latency low while a busy one fills batches by size first. 50,000 rows in memory
 * (~12 MB of Row objects, ~0.4 s of writing) before ticks go to the spool: with 200,000 the
 * ingester's peak RSS under overload was ~400 MB against ~250 MB (`deno task bench
 * --memory-cap N`), as rows that wait seconds all end up in V8's old generation.
 */
export const BATCHER_DEFAULTS = {
  maxBatch: 5000,
  maxWaitMs: 100,
  highWater: 20_000,
  memoryCap: 50_000,
} as const;

/** Where `push` put a row. */
export type PushResult = "queued" | "spooled" | "dropped";

const SPILL_RETRY_MS = 1000;

/**
 * Groups rows into batches (by size or age, whichever first) with bounded memory, and moves
 * them to the on-disk spool when they must not wait in memory any longer: `spill` writes
 * every row held (the batch being written included, as a copy under its id) to the spool,
 * and from then on new rows go there too until it is drained. The spool's rows are always
 * older than the memory's, so `next` hands out spool chunks first: order is acceptance
 * order. When the spool cannot take rows (full, or a failed write) rows stay in memory up to
 * `memoryCap`; only beyond it is a row dropped, counted and logged.
 */
export class Batcher {
  #maxBatch: number;
  #maxWaitMs: number;
  #highWater: number;
  #memoryCap: number;
  #spool: Spool | undefined;
  #logger: Logger;
  #current: Row[] = [];
  #currentBornAt = 0;
  #batches: Batch[] = [];
  /** The memory batch `next` handed out, until `done` or `abandon`. */
  #inFlight: Batch | undefined;
  #held = 0;
  #timers: Timers;
  #timer: TimerId | undefined;
  #wake: (() => void) | undefined;
  #readyWaiters: (() => void)[] = [];
  #spooling = false;
  #drained = 0;
  #closed = false;
  #dropped = 0;
  #spillRetryAt = 0;
  #lastDropAt: number | undefined;

  constructor(options: BatcherOptions = {}) {
    this.#maxBatch = options.maxBatch ?? BATCHER_DEFAULTS.maxBatch;
    this.#maxWaitMs = options.maxWaitMs ?? BATCHER_DEFAULTS.maxWaitMs;
    this.#memoryCap = options.memoryCap ?? BATCHER_DEFAULTS.memoryCap;
    this.#highWater = Math.min(options.highWater ?? BATCHER_DEFAULTS.highWater, this.#memoryCap);
    this.#logger = options.logger ?? silentLogger;
    this.#timers = options.timers ?? systemTimers;
    if (!(this.#maxBatch >= 1) || !(this.#maxWaitMs >= 0) || !(this.#memoryCap >= 1)) {
      throw new RangeError("Cannot create a batcher: maxBatch and memoryCap must be at least 1");
    }
    if (options.spool) this.attachSpool(options.spool);
  }

  /** Gives the batcher a spool (at construction, or later once one could be opened). */
  attachSpool(spool: Spool): void {
    this.#spool = spool;
    spool.onReturn((rows) => this.#takeBack(rows));
    // A spool left over by a previous run is older than anything pushed now.
    if (spool.rows > 0 && spool.canTake()) this.#spooling = true;
    this.#wakeUp();
  }

  /** Rows in memory: forming, waiting, and taken by `next()` but not yet `done()`. */
  get held(): number {
    return this.#held;
  }

  /** Rows dropped because memory was full and the spool could not take them. */
  get dropped(): number {
    return this.#dropped;
  }

  /** When a row was last dropped (`Date.now()`), if ever. */
  get lastDropAt(): number | undefined {
    return this.#lastDropAt;
  }

  /** True while new rows go to the spool. */
  get spooling(): boolean {
    return this.#spooling;
  }

  /** True when producers should hold back (memory at the high-water mark, or spooling). */
  get full(): boolean {
    return this.#held >= this.#highWater || this.#spooling;
  }

  /** Resolves when `full` is false. */
  ready(): Promise<void> {
    if (!this.full || this.#closed) return Promise.resolve();
    return new Promise((resolve) => this.#readyWaiters.push(resolve));
  }

  /** Accepts one row; synchronous, allocation-free except when a batch is released. */
  push(row: Row): PushResult {
    if (this.#closed) throw new TypeError("Cannot push to a closed batcher");
    if (!this.#spooling && this.#held >= this.#memoryCap && this.spill()) {
      this.#logger.limited(
        "batcher-cap",
        "warn",
        `Memory cap reached (${formatCount(this.#memoryCap)} ticks): spooling to disk`,
        { dir: this.#spool!.dir },
        { perWindow: 1, windowMs: 60_000 },
      );
    }
    if (this.#spooling) {
      if (this.#spool!.append(row)) {
        if (this.#wake) this.#wakeUp();
        return "spooled";
      }
      this.#stopSpooling();
    }
    if (this.#held >= this.#memoryCap) return this.#drop();
    this.#current.push(row);
    this.#held++;
    if (this.#current.length >= this.#maxBatch) this.#release();
    else if (this.#current.length === 1) {
      this.#currentBornAt = performance.now();
      this.#timer = this.#timers.setTimeout(this.#onTimer, this.#maxWaitMs);
    }
    return "queued";
  }

  /**
   * Writes every row held in memory to the spool, in order — the batch being written
   * included, as a copy under its own id (`Batch.spilled`) — and sends new rows there from
   * now on. False when the spool cannot take them (what did not fit stays in memory; no new
   * attempt for a second).
   */
  spill(): boolean {
    const spool = this.#spool;
    if (!spool || this.#closed || !spool.canTake()) return false;
    // A spool too full for what memory holds is not tried again at every row.
    if (performance.now() < this.#spillRetryAt) return false;
    if (!this.#spillAll(spool)) {
      this.#spillRetryAt = performance.now() + SPILL_RETRY_MS;
      return false;
    }
    if (!this.#spooling) {
      this.#spooling = true;
      this.#drained = 0;
    }
    return true;
  }

  #spillAll(spool: Spool): boolean {
    if (this.#current.length > 0) this.#release();
    const inFlight = this.#inFlight;
    if (inFlight && !inFlight.spilled) {
      if (!spool.appendBatch(inFlight)) return false;
      inFlight.spilled = true;
      this.#held -= inFlight.rows.length;
    }
    while (this.#batches.length > 0) {
      const batch = this.#batches[0]!;
      if (!spool.appendBatch(batch)) return false;
      this.#batches.shift();
      this.#held -= batch.rows.length;
    }
    return true;
  }

  /** When the oldest row held in memory (and not spilled) arrived, `performance.now()`. */
  oldestBornAt(): number | undefined {
    const inFlight = this.#inFlight;
    if (inFlight && !inFlight.spilled) return inFlight.bornAt;
    if (this.#batches.length > 0) return this.#batches[0]!.bornAt;
    return this.#current.length > 0 ? this.#currentBornAt : undefined;
  }

  /** Releases the forming batch now (for `flush`). */
  flushNow(): void {
    if (this.#current.length > 0) this.#release();
  }

  /**
   * The next batch to write: spool chunks first (older), then memory batches; waits while
   * there is nothing; undefined once closed and empty. Call `done` (or `abandon`) after.
   */
  async next(): Promise<Batch | undefined> {
    while (true) {
      const spool = this.#spool;
      if (spool && spool.rows > 0) {
        const chunk = await spool.next();
        if (chunk) return chunk;
      }
      // Checked synchronously after the await: nothing was appended meanwhile.
      this.#leaveSpoolIfDrained();
      const batch = this.#batches.shift();
      if (batch) {
        this.#inFlight = batch;
        return batch;
      }
      if (this.#closed) {
        if (this.#current.length > 0) {
          this.#release();
          continue;
        }
        return undefined;
      }
      await new Promise<void>((resolve) => (this.#wake = resolve));
    }
  }

  /** Acknowledges a batch from `next` as committed (or set aside): frees its memory or spool. */
  async done(batch: Batch): Promise<void> {
    if (batch.spooled) {
      await this.#spool!.ack(batch);
      this.#drained += batch.rows.length;
      this.#leaveSpoolIfDrained();
    } else {
      if (!batch.spilled) this.#held -= batch.rows.length;
      if (this.#inFlight === batch) this.#inFlight = undefined;
    }
    this.#notifyReady();
  }

  /** Gives up a spilled memory batch from `next`: its spool copy is written instead. */
  abandon(batch: Batch): void {
    if (!batch.spilled) throw new TypeError("Cannot abandon a batch that is not in the spool");
    if (this.#inFlight === batch) this.#inFlight = undefined;
  }

  /** Puts the memory batch handed out back at the head of the queue (after a failure). */
  requeueInFlight(): void {
    const inFlight = this.#inFlight;
    this.#inFlight = undefined;
    if (inFlight && !inFlight.spilled) this.#batches.unshift(inFlight);
  }

  /** Stops accepting; `next` drains what is left, then returns undefined. */
  close(): void {
    this.#closed = true;
    this.#clearTimer();
    this.#wakeUp();
    for (const resolve of this.#readyWaiters.splice(0)) resolve();
  }

  /**
   * Removes and returns every memory batch not yet written and not in the spool, the one
   * handed out included, oldest first (to persist at shutdown).
   */
  takeAll(): Batch[] {
    if (this.#current.length > 0) this.#release();
    const all = this.#batches.splice(0);
    const inFlight = this.#inFlight;
    this.#inFlight = undefined;
    if (inFlight && !inFlight.spilled) all.unshift(inFlight);
    for (const batch of all) this.#held -= batch.rows.length;
    return all;
  }

  /** Rows a failed spool write handed back: older than any memory batch, so they go first. */
  #takeBack(rows: Row[]): void {
    this.#spooling = false;
    const now = performance.now();
    const batches: Batch[] = [];
    for (let i = 0; i < rows.length; i += this.#maxBatch) {
      batches.push(newBatch(rows.slice(i, i + this.#maxBatch), now));
    }
    this.#batches.unshift(...batches);
    this.#held += rows.length;
    this.#wakeUp();
  }

  /** The spool cannot take more (full, or a write failed): new rows stay in memory. */
  #stopSpooling(): void {
    this.#spooling = false;
    this.#spool!.flush();
    if (!this.#spool!.fault) {
      this.#logger.limited(
        "batcher-spool-full",
        "warn",
        `The spool is full (${formatCount(this.#spool!.bytes)} bytes): new ticks stay in memory`,
        { dir: this.#spool!.dir },
        { perWindow: 1, windowMs: 60_000 },
      );
    }
    this.#notifyReady();
  }

  #leaveSpoolIfDrained(): void {
    if (!this.#spooling || this.#spool!.rows > 0) return;
    this.#spooling = false;
    if (this.#drained > 0) {
      this.#logger.info(`Spool drained (${formatCount(this.#drained)} ticks): back to memory`);
    }
    this.#drained = 0;
    this.#notifyReady();
  }

  #drop(): "dropped" {
    this.#dropped++;
    this.#lastDropAt = Date.now();
    // Called for every tick dropped: the line is built only when it is written.
    this.#logger.limited(
      "batcher-drop",
      "error",
      () => {
        const spool = this.#spool;
        const why = !spool
          ? "no spool"
          : spool.fault
          ? `the spool cannot be written (${spool.fault.error})`
          : "the spool is full";
        return `Cannot keep ticks: ${
          formatCount(this.#memoryCap)
        } held in memory and ${why}; dropping new ticks until the database catches up`;
      },
      { dropped: this.#dropped },
      { perWindow: 1, windowMs: 60_000 },
    );
    return "dropped";
  }

  #onTimer = (): void => {
    this.#timer = undefined;
    if (this.#current.length > 0) this.#release();
  };

  #release(): void {
    this.#clearTimer();
    this.#batches.push(newBatch(this.#current, this.#currentBornAt));
    this.#current = [];
    this.#wakeUp();
  }

  #clearTimer(): void {
    if (this.#timer !== undefined) {
      this.#timers.clearTimeout(this.#timer);
      this.#timer = undefined;
    }
  }

  #wakeUp(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  #notifyReady(): void {
    if (this.full || this.#readyWaiters.length === 0) return;
    for (const resolve of this.#readyWaiters.splice(0)) resolve();
  }
}
