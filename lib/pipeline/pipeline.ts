import { join } from "node:path";
import type { Sql } from "postgres";
import { type Logger, silentLogger } from "../log.ts";
import type { Batch } from "./batch.ts";
import { Batcher, BATCHER_DEFAULTS, type PushResult } from "./batcher.ts";
import { type SeedRow, seedState, TickSequencer } from "./sequencer.ts";
import { Spool } from "./spool.ts";
import {
  checkPriceFields,
  type PriceFields,
  RejectCounter,
  type Tick,
  validateTick,
} from "./tick.ts";
import { TickWriter, type WriteMethod } from "./writer.ts";

/** Settings of `IngestPipeline.open`. */
export interface PipelineOptions {
  /** The spool lives in `<dataDir>/spool`. */
  dataDir: string;
  /** Default "unnest" (see `WriterOptions.method`). */
  method?: WriteMethod;
  /** Rows per batch (default 5000). */
  maxBatch?: number;
  /** Longest a row waits for its batch to fill, in ms (default 100). */
  maxWaitMs?: number;
  /** Rows in memory at which `full` turns true (default 20,000). */
  highWater?: number;
  /** Rows in memory beyond which ticks go to the spool (default 50,000). */
  memoryCap?: number;
  /** Bound on the spool's size on disk (default 1 GiB). */
  spoolMaxBytes?: number;
  /** Spool segment size (default 16 MiB). */
  spoolSegmentBytes?: number;
  /** First retry delay in ms (default 250); doubles per attempt up to `retryMaxMs`. */
  retryInitialMs?: number;
  /** Longest retry delay in ms (default 30,000). */
  retryMaxMs?: number;
  /** Seed seq/volume state from the database at open (default true). */
  seed?: boolean;
  logger?: Logger;
  /** Test hook, see `WriterOptions.afterCommit`. */
  afterCommit?: (batch: Batch) => void;
}

/** Counters and gauges of a running pipeline. */
export interface PipelineStats {
  /** Ticks handed to `push`/`pushRaw`, including rejected and dropped ones. */
  received: number;
  rejected: number;
  rejectedByReason: Record<string, number>;
  /** Rows committed (including batches found to have landed on an earlier attempt). */
  written: number;
  /** Rows held in memory (forming, queued, being written). */
  pendingMemory: number;
  /** Rows waiting in the on-disk spool. */
  spooled: number;
  /** Rows dropped because memory and spool were both full. */
  dropped: number;
  /** Rows the database refused as invalid, set aside under `<dataDir>/spool/failed/`. */
  quarantined: number;
  /** Batches committed. */
  batches: number;
  /** Failed write attempts that were retried. */
  retries: number;
  /** Retried batches found already committed (COMMIT outcome lost). */
  recovered: number;
  lastError: string | undefined;
  /** Since when the database has been failing (epoch ms), undefined when healthy. */
  failingSince: number | undefined;
  /** Tick receipt → COMMIT, over recent sampled rows, in ms. */
  latencyP50Ms: number | undefined;
  latencyP99Ms: number | undefined;
}

const LATENCY_SAMPLES = 8192;
const SAMPLES_PER_BATCH = 32;
const PRUNE_EVERY_MS = 3600_000;

/** SQLSTATE classes 22 (data exception) and 23 (constraint): retrying cannot succeed. */
function isDataError(error: unknown): boolean {
  const code = (error as { code?: unknown })?.code;
  return typeof code === "string" && /^2[23][0-9A-Z]{3}$/.test(code);
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

const fmt = (n: number) => n.toLocaleString("en-US");

/**
 * The ingest pipeline: validated ticks in, rows in PostgreSQL out, exactly once, nothing
 * lost while the database is away. `push` is synchronous and cheap: it assigns seq and
 * volume (once, in arrival order) and hands the row to the `Batcher`; one loop writes
 * batches with the `TickWriter`, retrying with capped exponential backoff and jitter, and
 * checking `tickpipe_batches` before each retry so a COMMIT whose outcome was lost is never
 * repeated. Beyond the memory cap ticks go to the spool under `<dataDir>/spool`, which is
 * drained in order when the database is back, and first thing on the next start.
 */
export class IngestPipeline {
  #logger: Logger;
  #sequencer: TickSequencer;
  #spool: Spool;
  #batcher: Batcher;
  #writer: TickWriter;
  #rejects = new RejectCounter();
  #retryInitialMs: number;
  #retryMaxMs: number;
  #loop: Promise<void> | undefined;
  #closing = false;
  #abort = false;
  #sleepTimer: ReturnType<typeof setTimeout> | undefined;
  #sleepWake: (() => void) | undefined;
  #received = 0;
  #accepted = 0;
  #doneRows = 0;
  #leftoverRows: number;
  #written = 0;
  #quarantined = 0;
  #batches = 0;
  #retries = 0;
  #recovered = 0;
  #lastError: string | undefined;
  #failingSince: number | undefined;
  #lastPrune = -Infinity;
  #latency = new Float64Array(LATENCY_SAMPLES);
  #latencyCount = 0;
  #unwritten: Batch[] = [];
  #flushWaiters: { target: number; resolve: () => void; reject: (e: Error) => void }[] = [];

  private constructor(
    sql: Sql,
    options: PipelineOptions,
    parts: { sequencer: TickSequencer; spool: Spool },
  ) {
    this.#logger = options.logger ?? silentLogger;
    this.#sequencer = parts.sequencer;
    this.#spool = parts.spool;
    this.#leftoverRows = parts.spool.rows;
    this.#retryInitialMs = options.retryInitialMs ?? 250;
    this.#retryMaxMs = options.retryMaxMs ?? 30_000;
    this.#batcher = new Batcher({
      maxBatch: options.maxBatch,
      maxWaitMs: options.maxWaitMs,
      highWater: options.highWater,
      memoryCap: options.memoryCap,
      spool: parts.spool,
      logger: this.#logger,
    });
    const sequencer = parts.sequencer;
    this.#writer = new TickWriter(sql, {
      method: options.method,
      assetName: (symbol) => sequencer.name(symbol),
      afterCommit: options.afterCommit,
    });
  }

  /**
   * Opens the spool (taking stock of ticks a previous run left there), seeds seq/volume
   * state from the database (best effort: while it is unreachable, from the spool alone)
   * and starts the write loop.
   */
  static async open(sql: Sql, options: PipelineOptions): Promise<IngestPipeline> {
    const logger = options.logger ?? silentLogger;
    const sequencer = new TickSequencer();
    if (options.seed ?? true) {
      try {
        sequencer.seed(await seedState(sql));
      } catch (error) {
        logger.warn(
          "Cannot read the last stored ticks (seq and volume start fresh for each symbol)",
          { error: errorText(error) },
        );
      }
    }
    const spool = await Spool.open(join(options.dataDir, "spool"), {
      maxBytes: options.spoolMaxBytes,
      segmentBytes: options.spoolSegmentBytes,
      chunkRows: options.maxBatch ?? BATCHER_DEFAULTS.maxBatch,
      onLeftoverRow: (row) => sequencer.observe(row),
      logger,
    });
    const pipeline = new IngestPipeline(sql, options, { sequencer, spool });
    pipeline.#loop = pipeline.#run();
    return pipeline;
  }

  /** Accepts one validated tick: assigns seq and volume and queues (or spools) its row. */
  push(tick: Tick): PushResult {
    this.#received++;
    if (this.#closing) throw new TypeError("Cannot push to a closed pipeline");
    const result = this.#batcher.push(this.#sequencer.assign(tick));
    if (result !== "dropped") this.#accepted++;
    return result;
  }

  /** Validates `raw` (see `validateTick`) and pushes it; rejections are counted by reason. */
  pushRaw(raw: unknown): PushResult | "rejected" {
    const result = validateTick(raw);
    if (!result.ok) {
      this.#received++;
      this.#rejects.add(result.reason);
      return "rejected";
    }
    return this.push(result.tick);
  }

  /**
   * Pushes a `price` event the Twelve Data client has already parsed and checked with its
   * schema: only the rules that schema does not enforce are checked here (`checkPriceFields`),
   * and the row is built straight from the event. Rejections are counted by reason.
   */
  pushPrice(event: PriceFields): PushResult | "rejected" {
    const reason = checkPriceFields(event, Date.now());
    if (reason !== undefined) {
      this.#received++;
      this.#rejects.add(reason);
      return "rejected";
    }
    this.#received++;
    if (this.#closing) throw new TypeError("Cannot push to a closed pipeline");
    const result = this.#batcher.push(this.#sequencer.assignPrice(event, performance.now()));
    if (result !== "dropped") this.#accepted++;
    return result;
  }

  /**
   * Continues seq and volume of each symbol from `rows` (e.g. the last tick stored by the
   * process whose lease this one took over): seq only ever rises.
   */
  seed(rows: Iterable<SeedRow>): void {
    this.#sequencer.seed(rows);
  }

  /** Counts a tick rejected upstream (e.g. a malformed frame) with its reason. */
  reject(reason: string): void {
    this.#received++;
    this.#rejects.add(reason);
  }

  /** True when producers that can wait should (`await ready()`). */
  get full(): boolean {
    return this.#batcher.full;
  }

  /** Resolves when the pipeline has room in memory again. */
  ready(): Promise<void> {
    return this.#batcher.ready();
  }

  /**
   * Resolves once every tick accepted before the call, and any a previous run left in the
   * spool, is committed (however long that takes).
   */
  flush(): Promise<void> {
    const target = this.#leftoverRows + this.#accepted;
    if (this.#doneRows >= target) return Promise.resolve();
    if (this.#closing && !this.#loop) {
      return Promise.reject(new Error("Cannot flush: the pipeline is closed"));
    }
    return new Promise((resolve, reject) => {
      this.#flushWaiters.push({ target, resolve, reject });
      this.#batcher.flushNow();
    });
  }

  /**
   * Writes everything held, then stops. When that takes longer than `timeoutMs` (default
   * 10 s, e.g. the database is down), what is still in memory goes to the spool, for the
   * next start. Does not close `sql`.
   */
  async close(options: { timeoutMs?: number } = {}): Promise<void> {
    if (this.#closing) return await this.#loop;
    this.#closing = true;
    this.#batcher.close();
    const timeoutMs = options.timeoutMs ?? 10_000;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = await Promise.race([
      this.#loop!.then(() => false),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), timeoutMs))),
    ]);
    clearTimeout(timer);
    if (timedOut) {
      this.#abort = true;
      this.#wakeSleep();
      await this.#loop;
    }
    // Held in memory, so older than anything spooled: they go ahead of it.
    const unwritten = this.#unwritten.concat(this.#batcher.takeAll()).filter((b) => !b.spooled);
    const persisted = unwritten.reduce((n, b) => n + b.rows.length, 0);
    if (!this.#spool.prependBatches(unwritten)) {
      this.#logger.error(`Cannot persist ${fmt(persisted)} ticks at shutdown: spool full`);
    }
    this.#spool.close();
    if (persisted > 0 || this.#spool.rows > 0) {
      this.#logger.warn(
        `Stopped with ${
          fmt(this.#spool.rows)
        } ticks in the spool; they are written on the next start`,
        { dir: this.#spool.dir },
      );
    }
    for (const waiter of this.#flushWaiters.splice(0)) {
      waiter.reject(new Error("Cannot flush: the pipeline closed before the database came back"));
    }
    this.#loop = undefined;
  }

  /** A snapshot of the counters. */
  stats(): PipelineStats {
    const n = Math.min(this.#latencyCount, LATENCY_SAMPLES);
    let p50: number | undefined;
    let p99: number | undefined;
    if (n > 0) {
      const sorted = this.#latency.slice(0, n).sort();
      p50 = sorted[Math.floor((n - 1) * 0.5)];
      p99 = sorted[Math.floor((n - 1) * 0.99)];
    }
    return {
      received: this.#received,
      rejected: this.#rejects.total,
      rejectedByReason: this.#rejects.byReason(),
      written: this.#written,
      pendingMemory: this.#batcher.held,
      spooled: this.#spool.rows,
      dropped: this.#batcher.dropped,
      quarantined: this.#quarantined,
      batches: this.#batches,
      retries: this.#retries,
      recovered: this.#recovered,
      lastError: this.#lastError,
      failingSince: this.#failingSince,
      latencyP50Ms: p50,
      latencyP99Ms: p99,
    };
  }

  async #run(): Promise<void> {
    while (true) {
      const batch = await this.#batcher.next();
      if (!batch) return;
      const ok = await this.#writeWithRetry(batch);
      if (!ok) {
        this.#unwritten.push(batch);
        return;
      }
      await this.#batcher.done(batch);
      this.#doneRows += batch.rows.length;
      if (this.#flushWaiters.length > 0) {
        const done = this.#doneRows;
        this.#flushWaiters = this.#flushWaiters.filter((w) => {
          if (w.target > done) return true;
          w.resolve();
          return false;
        });
      }
      if (performance.now() - this.#lastPrune > PRUNE_EVERY_MS) await this.#prune();
    }
  }

  /** Writes `batch` until it is committed or set aside (true), or the pipeline aborts (false). */
  async #writeWithRetry(batch: Batch): Promise<boolean> {
    let attempt = 0;
    while (true) {
      try {
        // Before a retry, ask whether the failed attempt committed after all.
        const outcome = attempt > 0 && (await this.#writer.landed(batch.id))
          ? "landed"
          : await this.#writer.write(batch);
        if (outcome === "landed") this.#recovered++;
        this.#batches++;
        this.#written += batch.rows.length;
        this.#sampleLatency(batch);
        if (this.#failingSince !== undefined) {
          const seconds = Math.round((Date.now() - this.#failingSince) / 1000);
          this.#logger.info(
            `Database reachable again after ${seconds}s: draining ${
              fmt(this.#waiting())
            } waiting ticks`,
          );
          this.#failingSince = undefined;
        }
        return true;
      } catch (error) {
        this.#lastError = errorText(error);
        if (isDataError(error)) {
          const path = await this.#spool.quarantine(batch, this.#lastError);
          this.#quarantined += batch.rows.length;
          this.#logger.error(
            `The database refused a batch of ${fmt(batch.rows.length)} ticks; set aside in ${path}`,
            { error: this.#lastError },
          );
          return true;
        }
        if (this.#abort) return false;
        this.#failingSince ??= Date.now();
        attempt++;
        this.#retries++;
        const cap = Math.min(this.#retryMaxMs, this.#retryInitialMs * 2 ** Math.min(attempt, 20));
        const delay = Math.round(cap / 2 + Math.random() * cap / 2);
        const memory = this.#batcher.held;
        const spooled = this.#spool.rows;
        this.#logger.limited(
          "pipeline-retry",
          "warn",
          `Database unreachable: ${fmt(memory + spooled)} ticks waiting (${
            fmt(memory)
          } in memory, ${fmt(spooled)} spooled); retrying in ${
            delay >= 1000 ? `${Math.round(delay / 1000)}s` : `${delay}ms`
          }`,
          { error: this.#lastError },
          { perWindow: 1, windowMs: 5000 },
        );
        await this.#sleep(delay);
        if (this.#abort) return false;
      }
    }
  }

  #waiting(): number {
    return this.#batcher.held + this.#spool.rows;
  }

  async #prune(): Promise<void> {
    this.#lastPrune = performance.now();
    try {
      const n = await this.#writer.prune();
      if (n > 0) this.#logger.debug(`Pruned ${fmt(n)} old batch records`);
    } catch (error) {
      this.#logger.debug("Cannot prune old batch records", { error: errorText(error) });
    }
  }

  #sampleLatency(batch: Batch): void {
    const rows = batch.rows;
    if (rows.length === 0 || batch.spooled) return;
    const wall = Date.now();
    const mono = performance.now();
    const step = Math.max(1, Math.floor(rows.length / SAMPLES_PER_BATCH));
    for (let i = 0; i < rows.length; i += step) {
      const at = rows[i]!.receivedAt;
      if (!Number.isFinite(at)) continue;
      this.#latency[this.#latencyCount++ % LATENCY_SAMPLES] = (at > 1e12 ? wall : mono) - at;
    }
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.#sleepWake = resolve;
      this.#sleepTimer = setTimeout(() => this.#wakeSleep(), ms);
    });
  }

  #wakeSleep(): void {
    clearTimeout(this.#sleepTimer);
    this.#sleepTimer = undefined;
    const wake = this.#sleepWake;
    this.#sleepWake = undefined;
    wake?.();
  }
}
