import { join } from "node:path";
import type { Sql } from "postgres";
import { type Logger, silentLogger } from "../log.ts";
import type { Batch } from "./batch.ts";
import { Batcher, BATCHER_DEFAULTS, type PushResult } from "./batcher.ts";
import { Delivery } from "./delivery.ts";
import { LatencySampler } from "./latency.ts";
import { quarantineDir } from "./quarantine.ts";
import { type SeedRow, seedState, TickSequencer } from "./sequencer.ts";
import type { SpoolFault } from "./spool.ts";
import { SpoolKeeper } from "./spool_keeper.ts";
import type { PriceEvent } from "../twelvedata/price.ts";
import { TickWriter, type WriteMethod } from "./writer.ts";
import { errorText, formatCount } from "../text.ts";

/** Settings of `IngestPipeline.open`. */
export interface PipelineOptions {
  /** The spool lives in a slot of `<dataDir>/spool` (see docs/durability.md). */
  dataDir: string;
  /** Default "unnest" (see `WriterOptions.method`). */
  method?: WriteMethod;
  /** Rows per batch (default 5000). */
  maxBatch?: number;
  /** Longest a row waits for its batch to fill, in ms (default 100). */
  maxWaitMs?: number;
  /** Rows in memory at which `full` turns true (default 20,000). */
  highWater?: number;
  /** Rows in memory beyond which ticks go to the spool, or are dropped without one (50,000). */
  memoryCap?: number;
  /** Rows waiting in memory longer than this (ms) go to the spool (default 900). */
  spoolAfterMs?: number;
  /** The spool's writes are fsync'd at this interval, in ms (default 500). */
  spoolSyncMs?: number;
  /** Bound on the spool's size on disk (default 1 GiB). */
  spoolMaxBytes?: number;
  /** Spool segment size (default 16 MiB). */
  spoolSegmentBytes?: number;
  /** See `SpoolOptions.beforeWrite` (tests, where no small filesystem can be mounted). */
  beforeSpoolWrite?: () => void;
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
  /** Ticks handed to `pushPrice`, dropped ones included. */
  received: number;
  /** Rows committed (including batches found to have landed on an earlier attempt). */
  written: number;
  /** Rows held in memory (forming, queued, being written). */
  pendingMemory: number;
  /** Rows waiting in the on-disk spool (`spoolBuffered` of them not yet written to it). */
  spooled: number;
  spoolBuffered: number;
  /** Rows dropped: memory full and the spool full or unwritable, or lost at shutdown. */
  dropped: number;
  /** When a row was last dropped (epoch ms). */
  lastDropAt: number | undefined;
  /** Rows the database refused, set aside in `tickpipe_quarantine` (or files). */
  quarantined: number;
  quarantinedByReason: Record<string, number>;
  lastQuarantineAt: number | undefined;
  /** Spooled rows lost in a crash (torn or corrupt lines found at start, unreadable files). */
  lostInCrash: number;
  /** Why the spool cannot be written, while it cannot (the pipeline keeps rows in memory). */
  spoolFault: SpoolFault | undefined;
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

/** The housekeeping period: spool writes, the age check, fsync and probes run on it. */
const TICK_MS = 50;
/** How long a stop waits for a write stuck on a dead connection once it gave up. */
const ABORT_WAIT_MS = 2000;

/**
 * The ingest pipeline: price events in, rows in PostgreSQL out, exactly once, at most
 * the last second of ticks at risk (docs/durability.md). `pushPrice` is synchronous and cheap: it
 * assigns seq and volume (once, in arrival order) and hands the row to the `Batcher`; one
 * loop writes batches through `Delivery`. Rows that wait in memory longer than
 * `spoolAfterMs`, past `memoryCap`, or while the database fails, go to this process's spool
 * slot under `<dataDir>/spool`, written within 50 ms and fsync'd every `spoolSyncMs`; it is
 * drained in order when the database is back, and first thing on the next start.
 */
export class IngestPipeline {
  #logger: Logger;
  #sequencer: TickSequencer;
  #keeper: SpoolKeeper;
  #batcher: Batcher;
  #delivery: Delivery;
  #spoolAfterMs: number;
  #loop: Promise<void> | undefined;
  #tick: ReturnType<typeof setInterval> | undefined;
  #closing = false;
  #closed: Promise<void> | undefined;
  #received = 0;
  #accepted = 0;
  #doneRows = 0;
  #leftoverRows: number;
  #latency = new LatencySampler();
  /** Spilled batches committed from memory: their spool copies are acknowledged unwritten. */
  #committedSpilled = new Set<string>();
  #flushWaiters: { target: number; resolve: () => void; reject: (e: Error) => void }[] = [];

  private constructor(sql: Sql, options: PipelineOptions, sequencer: TickSequencer) {
    this.#logger = options.logger ?? silentLogger;
    this.#spoolAfterMs = options.spoolAfterMs ?? 900;
    this.#sequencer = sequencer;
    const spoolRoot = join(options.dataDir, "spool");
    this.#leftoverRows = 0;
    this.#batcher = new Batcher({
      maxBatch: options.maxBatch,
      maxWaitMs: options.maxWaitMs,
      highWater: options.highWater,
      memoryCap: options.memoryCap,
      logger: this.#logger,
    });
    const writer = new TickWriter(sql, {
      method: options.method,
      assetName: (symbol) => sequencer.name(symbol),
      afterCommit: options.afterCommit,
    });
    this.#keeper = new SpoolKeeper(spoolRoot, this.#batcher, {
      maxBytes: options.spoolMaxBytes,
      segmentBytes: options.spoolSegmentBytes,
      chunkRows: options.maxBatch ?? BATCHER_DEFAULTS.maxBatch,
      syncMs: options.spoolSyncMs,
      memoryCap: options.memoryCap ?? BATCHER_DEFAULTS.memoryCap,
      beforeWrite: options.beforeSpoolWrite,
      onLeftoverRow: (row) => sequencer.observe(row),
      // A spool chunk read ahead is encoded while the batch before it commits.
      onChunkRead: (chunk) => writer.prepare(chunk),
      logger: this.#logger,
    });
    this.#delivery = new Delivery(sql, writer, {
      retryInitialMs: options.retryInitialMs,
      retryMaxMs: options.retryMaxMs,
      quarantineDir: quarantineDir(spoolRoot),
      logger: this.#logger,
      // One failure is often a connection that died, the retry succeeds: spool from two.
      onFailure: (failures) => failures >= 2 && this.#spill("the database is unreachable"),
      waiting: () => ({ memory: this.#batcher.held, spooled: this.#keeper.spool?.rows ?? 0 }),
    });
  }

  /**
   * Opens the spool (taking stock of ticks a previous run left there; memory-only, said in
   * one line, when it cannot be written), seeds seq/volume state from the database (best
   * effort: while it is unreachable, from the spool alone) and starts the write loop.
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
    const pipeline = new IngestPipeline(sql, options, sequencer);
    pipeline.#leftoverRows = await pipeline.#keeper.open();
    pipeline.#loop = pipeline.#run();
    pipeline.#tick = setInterval(() => pipeline.#housekeeping(), TICK_MS);
    return pipeline;
  }

  /**
   * The one way in: takes a tick the Twelve Data client has parsed (a `PriceEvent` is valid
   * by `PRICE_LIMITS`), assigns its seq and volume, and queues (or spools) its row.
   */
  pushPrice(event: PriceEvent): PushResult {
    if (this.#closing) throw new TypeError("Cannot push to a closed pipeline");
    this.#received++;
    const result = this.#batcher.push(this.#sequencer.assignPrice(event, performance.now()));
    if (result !== "dropped") this.#accepted++;
    return result;
  }

  /** Continues a symbol taken over from another process (see `TickSequencer.takeOver`). */
  takeOver(symbol: string, lastTick: SeedRow | undefined, atMs: number): void {
    this.#sequencer.takeOver(symbol, lastTick, atMs);
  }

  /**
   * Adopts the spool slots of processes that are gone (e.g. the holder whose lease this
   * process just took over, killed with ticks in its spool): the writer drains them first.
   * Resolves with the rows adopted.
   */
  async adoptOrphans(): Promise<number> {
    const rows = await this.#keeper.adoptOrphans();
    this.#leftoverRows += rows;
    return rows;
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
   * spool, is committed or quarantined (however long that takes).
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
   * Writes everything held, then stops: waits up to `timeoutMs` (default 10 s; not at all
   * while the database is failing), then gives up, persists what is left in memory to the
   * spool for the next start (counted as dropped when it cannot), and closes the spool.
   * Bounded: never longer than `timeoutMs` plus 2 s. Does not close `sql`.
   */
  close(options: { timeoutMs?: number } = {}): Promise<void> {
    this.#closed ??= this.#close(options.timeoutMs ?? 10_000);
    return this.#closed;
  }

  async #close(timeoutMs: number): Promise<void> {
    this.#closing = true;
    this.#batcher.close();
    const drain = this.#delivery.failingSince !== undefined ? 0 : timeoutMs;
    if (!(await this.#settles(drain))) {
      this.#delivery.abort();
      await this.#settles(ABORT_WAIT_MS);
    }
    clearInterval(this.#tick);
    await this.#keeper.close();
    for (const waiter of this.#flushWaiters.splice(0)) {
      waiter.reject(new Error("Cannot flush: the pipeline closed before the database came back"));
    }
    this.#loop = undefined;
  }

  /** A snapshot of the counters. */
  stats(): PipelineStats {
    const { p50, p99 } = this.#latency.quantiles();
    const d = this.#delivery;
    const spool = this.#keeper.spool;
    return {
      received: this.#received,
      written: d.written,
      pendingMemory: this.#batcher.held,
      spooled: spool?.rows ?? 0,
      spoolBuffered: spool?.buffered ?? 0,
      dropped: this.#batcher.dropped + this.#keeper.lostAtClose + d.lost,
      lastDropAt: this.#batcher.lastDropAt,
      quarantined: d.quarantined,
      quarantinedByReason: d.quarantinedByReason(),
      lastQuarantineAt: d.lastQuarantineAt,
      lostInCrash: (spool?.lostInCrash ?? 0) + (spool?.lost ?? 0),
      spoolFault: this.#keeper.fault,
      batches: d.batches,
      retries: d.retries,
      recovered: d.recovered,
      lastError: d.lastError,
      failingSince: d.failingSince,
      latencyP50Ms: p50,
      latencyP99Ms: p99,
    };
  }

  /** Moves what memory holds to the spool (logged once per cause and minute). */
  #spill(why: string): void {
    const held = this.#batcher.held;
    if (!this.#batcher.spill() || held === 0) return;
    this.#logger.limited(
      `spill:${why}`,
      "warn",
      `Spooling to disk: ${why} (${formatCount(held)} ticks held in memory written to the spool)`,
      { dir: this.#keeper.spool?.dir },
      { perWindow: 1, windowMs: 60_000 },
    );
  }

  /** Every `TICK_MS`: the age limit, spool writes and fsyncs, fault probes. */
  #housekeeping(): void {
    const now = performance.now();
    const born = this.#batcher.oldestBornAt();
    if (born !== undefined && now - born > this.#spoolAfterMs) {
      this.#spill("ticks waited too long for the database");
    }
    this.#keeper.tick(now, (leftover) => this.#leftoverRows += leftover);
  }

  /** Resolves true once the write loop has ended, false after `ms`. */
  async #settles(ms: number): Promise<boolean> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const ended = await Promise.race([
      this.#loop!.then(() => true),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms))),
    ]);
    clearTimeout(timer);
    return ended;
  }

  /** The write loop; a failure it did not expect is logged and the loop goes on. */
  async #run(): Promise<void> {
    while (true) {
      try {
        await this.#writeAll();
        return;
      } catch (error) {
        if (this.#closing) return;
        this.#logger.error(`The write loop failed: ${errorText(error)}; going on in 1 s`);
        this.#batcher.requeueInFlight();
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
    }
  }

  async #writeAll(): Promise<void> {
    while (true) {
      const batch = await this.#batcher.next();
      if (!batch) return;
      const rows = batch.rows.length;
      if (batch.spooled && this.#committedSpilled.delete(batch.id)) {
        await this.#batcher.done(batch);
      } else {
        const result = await this.#delivery.deliver(batch, (b) => this.#latency.sample(b));
        if (result === "aborted") return;
        if (result === "abandoned") {
          this.#batcher.abandon(batch);
          continue;
        }
        await this.#batcher.done(batch);
        // A spilled batch's rows are done when its spool copy is acknowledged.
        if (batch.spilled) {
          this.#committedSpilled.add(batch.id);
          continue;
        }
      }
      this.#doneRows += rows;
      if (this.#flushWaiters.length > 0) {
        const done = this.#doneRows;
        this.#flushWaiters = this.#flushWaiters.filter((w) => {
          if (w.target > done) return true;
          w.resolve();
          return false;
        });
      }
      await this.#delivery.pruneHourly();
    }
  }
}
