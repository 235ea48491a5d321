/**
 * The database stages, in a worker: synthetic events through the pipeline alone, and the
 * real ingest job (`runIngest`) from the simulator to the database.
 */
import { connect } from "../db/connection.ts";
import { runIngest } from "../ingest/mod.ts";
import type { Logger } from "../log.ts";
import type { Batch } from "../pipeline/batch.ts";
import { IngestPipeline, type PipelineOptions } from "../pipeline/pipeline.ts";
import { databaseOf, type JobOf, type WorkerResult } from "./jobs.ts";
import { LatencyHistogram, toWall, wallNow } from "./latency.ts";
import { Meter, type MeterReading } from "./meter.ts";
import { QueryablePoller } from "./queryable.ts";
import { syntheticEvents } from "./synthetic.ts";

type Settings = JobOf<"pipeline">["pipeline"];
type PipelineCounters = NonNullable<WorkerResult["pipeline"]>;

function pipelineOptions(settings: Settings): Partial<PipelineOptions> {
  return {
    maxBatch: settings.maxBatch,
    maxWaitMs: settings.maxWaitMs,
    ...(settings.memoryCap ? { memoryCap: settings.memoryCap } : {}),
    ...(settings.method ? { method: settings.method } : {}),
  };
}

/**
 * Follows commits through the pipeline's `afterCommit` hook: receipt → commit latency of
 * every row, progress, and the end of the measurement when `target` rows are committed
 * (the meter stops there, before any shutdown work) or nothing was committed for 30 s.
 */
class CommitTracker {
  readonly hist = new LatencyHistogram();
  readonly finished = Promise.withResolvers<void>();
  readonly meter = new Meter({ onStall: () => this.#finish() });
  done = 0;
  firstReceived = Infinity;
  lastAt = NaN;
  hookUs = 0;
  reading: MeterReading | undefined;
  #target: number;
  #poller: QueryablePoller | undefined;

  constructor(target: number, poller?: QueryablePoller) {
    this.#target = target;
    this.#poller = poller;
  }

  readonly afterCommit = (batch: Batch): void => {
    const now = performance.now();
    for (const row of batch.rows) {
      const at = row.receivedAt;
      this.#poller?.record(at);
      if (!Number.isFinite(at)) continue;
      if (at < this.firstReceived) this.firstReceived = at;
      this.hist.add(now - at);
    }
    this.done += batch.rows.length;
    this.meter.progress(this.done);
    if (this.done >= this.#target) {
      this.lastAt = toWall(now);
      this.#finish();
    }
    this.hookUs += (performance.now() - now) * 1000;
  };

  #finish(): void {
    this.reading ??= this.meter.stop();
    this.finished.resolve();
  }

  result(rejected: number, pipeline: PipelineCounters): WorkerResult {
    const reading = this.reading ?? this.meter.stop();
    return {
      done: this.done,
      rejected,
      firstAt: Number.isFinite(this.firstReceived) ? toWall(this.firstReceived) : NaN,
      lastAt: this.lastAt,
      cpuUs: reading.cpuUs,
      hookUs: this.hookUs,
      stalled: this.meter.stalled,
      samples: reading.samples,
      latency: this.hist.summary(),
      queryable: this.#poller?.summary() ?? null,
      pipeline,
    };
  }
}

/**
 * Synthetic price events (`syntheticEvents`) pushed as fast as the pipeline takes them:
 * sequencer, batcher, writer and the database, without a WebSocket or any parsing.
 */
export async function loadPipeline(job: JobOf<"pipeline">, logger: Logger): Promise<WorkerResult> {
  const sql = connect(databaseOf(job), { max: job.poolSize, applicationName: "tickpipe-bench" });
  try {
    const tracker = new CommitTracker(job.ticks);
    const pipeline = await IngestPipeline.open(sql, {
      dataDir: job.dataDir,
      logger,
      ...pipelineOptions(job.pipeline),
      afterCommit: tracker.afterCommit,
    });
    const next = syntheticEvents(job.symbols, job.ticks);
    tracker.meter.start();
    const firstAt = wallNow();
    for (let i = 0; i < job.ticks && !tracker.meter.stalled; i++) {
      if (pipeline.full) await pipeline.ready();
      pipeline.pushPrice(next());
    }
    await Promise.race([pipeline.flush(), tracker.finished.promise]);
    tracker.lastAt = Number.isNaN(tracker.lastAt) ? wallNow() : tracker.lastAt;
    const result = tracker.result(0, { batches: 0, spooled: 0, dropped: 0, written: 0 });
    await pipeline.close();
    const stats = pipeline.stats();
    result.firstAt = firstAt;
    result.pipeline = {
      batches: stats.batches,
      spooled: stats.spooled,
      dropped: stats.dropped,
      written: stats.written,
    };
    return result;
  } finally {
    await sql.end({ timeout: 5 });
  }
}

/**
 * The ingest job as `deno task ingest` runs it (`runIngest`: client, pipeline, gap log),
 * stopped gracefully once `ticks` rows are committed; with `queryable`, once they are all
 * visible to another connection.
 */
export async function ingest(job: JobOf<"ingest">, logger: Logger): Promise<WorkerResult> {
  const sql = connect(databaseOf(job), { max: job.poolSize, applicationName: "tickpipe-bench" });
  const pollSql = job.queryable
    ? connect(databaseOf(job), { max: 1, applicationName: "tickpipe-bench-poller" })
    : undefined;
  const poller = pollSql
    ? new QueryablePoller(pollSql, job.ticks, { timeoutMs: job.ticks * 1000 + 60_000 })
    : undefined;
  const tracker = new CommitTracker(job.ticks, poller);
  const controller = new AbortController();
  void tracker.finished.promise.then(async () => {
    if (tracker.meter.stalled) poller?.stop();
    await poller?.finished;
    controller.abort();
  });
  try {
    tracker.meter.start();
    const summary = await runIngest(sql, {
      twelveData: { apiKey: job.feed.apiKey, wsUrl: job.feed.wsUrl, apiUrl: job.feed.apiUrl },
      symbols: job.feed.symbols,
      dataDir: job.dataDir,
      signal: controller.signal,
      logger,
      summaryEveryMs: 5_000,
      pipeline: { ...pipelineOptions(job.pipeline), afterCommit: tracker.afterCommit },
    });
    const p = summary.pipeline;
    return tracker.result(summary.client.malformed, {
      batches: p.batches,
      spooled: p.spooled,
      dropped: p.dropped,
      written: p.written,
    });
  } finally {
    poller?.stop();
    await poller?.finished;
    await pollSql?.end({ timeout: 5 });
    await sql.end({ timeout: 5 });
  }
}
