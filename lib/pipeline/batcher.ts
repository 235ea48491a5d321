import { type Logger, silentLogger } from "../log.ts";
import { type Batch, newBatch } from "./batch.ts";
import type { Row } from "./sequencer.ts";
import type { Spool } from "./spool.ts";

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
}

/**
 * Defaults, measured on 2 cores with PostgreSQL on the same machine (tasks/_bench_writer.ts,
 * tasks/_bench_pipeline.ts): the unnest write reaches ~100k rows/s at 1000 rows per batch and
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

/**
 * Groups rows into batches (by size or age, whichever first) with bounded memory:
 * `full`/`ready()` for backpressure; past `memoryCap` rows go to the on-disk spool, and
 * once anything is spooled every new row goes there too until the spool is drained, so
 * batches come out in acceptance order (memory first, then spool chunks). Only when the
 * spool is full is a row dropped, counted and logged.
 */
export class Batcher {
  #maxBatch: number;
  #maxWaitMs: number;
  #highWater: number;
  #memoryCap: number;
  #spool: Spool | undefined;
  #logger: Logger;
  #current: Row[] = [];
  #batches: Batch[] = [];
  #held = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #wake: (() => void) | undefined;
  #readyWaiters: (() => void)[] = [];
  #spooling: boolean;
  #closed = false;
  #dropped = 0;

  constructor(options: BatcherOptions = {}) {
    this.#maxBatch = options.maxBatch ?? BATCHER_DEFAULTS.maxBatch;
    this.#maxWaitMs = options.maxWaitMs ?? BATCHER_DEFAULTS.maxWaitMs;
    this.#memoryCap = options.memoryCap ?? BATCHER_DEFAULTS.memoryCap;
    this.#highWater = Math.min(options.highWater ?? BATCHER_DEFAULTS.highWater, this.#memoryCap);
    this.#spool = options.spool;
    this.#logger = options.logger ?? silentLogger;
    if (!(this.#maxBatch >= 1) || !(this.#maxWaitMs >= 0) || !(this.#memoryCap >= 1)) {
      throw new RangeError("Cannot create a batcher: maxBatch and memoryCap must be at least 1");
    }
    // A spool left over by a previous run is older than anything pushed now.
    this.#spooling = (this.#spool?.rows ?? 0) > 0;
  }

  /** Rows in memory: forming, waiting, and taken by `next()` but not yet `done()`. */
  get held(): number {
    return this.#held;
  }

  /** Rows dropped because memory and spool were both full. */
  get dropped(): number {
    return this.#dropped;
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
    if (!this.#spooling) {
      if (this.#held < this.#memoryCap) {
        this.#current.push(row);
        this.#held++;
        if (this.#current.length >= this.#maxBatch) this.#release();
        else if (this.#current.length === 1) {
          this.#timer = setTimeout(this.#onTimer, this.#maxWaitMs);
        }
        return "queued";
      }
      if (!this.#spool) return this.#drop();
      // Keep order: what is in memory is older than anything spooled from now on.
      if (this.#current.length > 0) this.#release();
      this.#spooling = true;
      this.#wakeUp();
      this.#logger.warn(
        `Memory cap reached (${this.#memoryCap.toLocaleString("en-US")} ticks): spooling to disk`,
        { dir: this.#spool.dir },
      );
    }
    return this.#spool!.append(row) ? "spooled" : this.#drop();
  }

  /** Releases the forming batch now (for `flush`). */
  flushNow(): void {
    if (this.#current.length > 0) this.#release();
  }

  /**
   * The next batch to write: memory batches first, then spool chunks; waits while there is
   * nothing; undefined once closed and empty. Call `done` after writing it.
   */
  async next(): Promise<Batch | undefined> {
    while (true) {
      const batch = this.#batches.shift();
      if (batch) return batch;
      if (this.#spooling || (this.#closed && this.#spool && this.#spool.rows > 0)) {
        if (this.#current.length > 0) this.#release();
        const chunk = await this.#spool!.next();
        if (chunk) return chunk;
        if (this.#batches.length > 0) continue;
        // Checked synchronously after the await: nothing was appended meanwhile.
        this.#leaveSpoolIfDrained();
        continue;
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
      this.#leaveSpoolIfDrained();
    } else {
      this.#held -= batch.rows.length;
    }
    this.#notifyReady();
  }

  /** Stops accepting; `next` drains what is left, then returns undefined. */
  close(): void {
    this.#closed = true;
    this.#clearTimer();
    this.#wakeUp();
    for (const resolve of this.#readyWaiters.splice(0)) resolve();
  }

  /** Removes and returns every memory batch not yet handed out (to persist at shutdown). */
  takeAll(): Batch[] {
    if (this.#current.length > 0) this.#release();
    const all = this.#batches.splice(0);
    for (const batch of all) this.#held -= batch.rows.length;
    return all;
  }

  #leaveSpoolIfDrained(): void {
    if (this.#spooling && this.#spool!.rows === 0 && this.#batches.length === 0) {
      this.#spooling = false;
      this.#logger.info("Spool drained: back to memory");
      this.#notifyReady();
    }
  }

  #drop(): "dropped" {
    this.#dropped++;
    this.#logger.limited(
      "batcher-drop",
      "error",
      this.#spool
        ? "Spool full: dropping ticks until the database catches up"
        : "Memory cap reached and no spool: dropping ticks",
      { dropped: this.#dropped, spooledBytes: this.#spool?.bytes },
      { perWindow: 1, windowMs: 5000 },
    );
    return "dropped";
  }

  #onTimer = (): void => {
    this.#timer = undefined;
    if (this.#current.length > 0) this.#release();
  };

  #release(): void {
    this.#clearTimer();
    this.#batches.push(newBatch(this.#current));
    this.#current = [];
    this.#wakeUp();
  }

  #clearTimer(): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
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
