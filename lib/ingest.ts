import type { Sql } from "postgres";
import { BackgroundBackfiller } from "./backfill/background.ts";
import type { Clock } from "./backfill/clock.ts";
import { readCandleMode } from "./candles/query.ts";
import { UserError } from "./errors.ts";
import { GapRecorder } from "./gaps/recorder.ts";
import { type Logger, silentLogger } from "./log.ts";
import { type Metric, type MetricsServer, serveMetrics } from "./metrics.ts";
import { IngestPipeline, type PipelineOptions, type PipelineStats } from "./pipeline/pipeline.ts";
import { type ClientStats, TwelveDataClient, type TwelveDataEvent } from "./twelvedata/mod.ts";

/** The tutorial's symbols: what `ingest` subscribes to without `--symbols`. */
export const DEFAULT_SYMBOLS = ["BTC/USD", "ETH/USD", "MSFT", "AAPL"];

/** Settings of `runIngest`. */
export interface IngestOptions {
  /** Where to connect: key, WebSocket and REST URLs, auth mode. */
  twelveData: { apiKey: string; wsUrl: string; apiUrl: string; auth?: "header" | "query" };
  symbols: string[];
  /** The spool lives under `<dataDir>/spool`. */
  dataDir: string;
  /** Resolves (or aborts) when ingest should stop gracefully. */
  signal: AbortSignal;
  logger?: Logger;
  /** Serve Prometheus metrics and /healthz on 127.0.0.1:port. */
  metricsPort?: number | undefined;
  /** Interval of the summary line (default 10 s). */
  summaryEveryMs?: number;
  /** Passed to the pipeline (batch size, flush interval, spool bounds...). */
  pipeline?: Partial<PipelineOptions>;
  /** Passed to the client (backoff, watchdog...), mostly for tests. */
  client?: {
    heartbeatMs?: number;
    watchdogMs?: number;
    backoffBaseMs?: number;
    backoffCapMs?: number;
  };
  /** Called with every summary (for tests and the demo). */
  onSummary?: (summary: IngestSummary) => void;
  /** The gap log: how often the run records its heartbeat (default 10 s). */
  gaps?: { heartbeatMs?: number };
  /**
   * Backfill on reconnect: fill each gap the stream closes from REST bars in the background,
   * within `perHour` API credits an hour, `delayMs` after the gap (default 60 s). Off when
   * absent (the ingest task turns it on unless `--no-backfill`).
   */
  backfill?: { perHour: number; delayMs?: number; clock?: Clock } | undefined;
}

/** What an ingest run did, as of the moment it is taken. */
export interface IngestSummary {
  client: ClientStats;
  pipeline: PipelineStats;
  /** Seconds since start. */
  uptimeS: number;
  /** Ticks received per second over the last summary interval. */
  ticksPerS: number;
}

const fmt = (n: number) => Math.round(n).toLocaleString("en-US");

/** The one-line summary logged every 10 s. */
export function summaryLine(s: IngestSummary): string {
  const p = s.pipeline;
  const parts = [
    `${fmt(s.ticksPerS)} ticks/s`,
    `${fmt(p.written)} rows written`,
    `${fmt(p.pendingMemory + p.spooled)} pending` +
    (p.spooled > 0 ? ` (${fmt(p.spooled)} spooled)` : ""),
    `${s.client.reconnects} reconnects`,
    `${fmt(p.dropped)} dropped`,
    `${fmt(p.rejected + s.client.malformed)} rejected`,
  ];
  if (p.latencyP99Ms !== undefined) {
    parts.push(`commit p50 ${fmt(p.latencyP50Ms ?? 0)} ms / p99 ${fmt(p.latencyP99Ms)} ms`);
  }
  return parts.join(", ");
}

function metricsOf(s: IngestSummary): Metric[] {
  const c = s.client;
  const p = s.pipeline;
  const m = (name: string, type: Metric["type"], help: string, value: number): Metric => ({
    name: `tickpipe_${name}`,
    type,
    help,
    value,
  });
  const metrics: Metric[] = [
    m("ws_connected", "gauge", "1 while the Twelve Data WebSocket is open", c.connected ? 1 : 0),
    m("ws_frames_total", "counter", "WebSocket frames received", c.frames),
    m("ws_ticks_total", "counter", "Valid price events received", c.ticks),
    m("ws_malformed_total", "counter", "Malformed frames received", c.malformed),
    m("ws_reconnects_total", "counter", "Reconnections after the first connection", c.reconnects),
    m("ws_refused_symbols", "gauge", "Symbols the server refused", Object.keys(c.refused).length),
    m("rows_written_total", "counter", "Tick rows committed", p.written),
    m("ticks_rejected_total", "counter", "Ticks rejected as invalid", p.rejected),
    m("ticks_dropped_total", "counter", "Ticks dropped (memory and spool full)", p.dropped),
    m("ticks_pending_memory", "gauge", "Ticks held in memory", p.pendingMemory),
    m("ticks_spooled", "gauge", "Ticks waiting in the on-disk spool", p.spooled),
    m("batches_total", "counter", "Batches committed", p.batches),
    m("write_retries_total", "counter", "Failed batch writes that were retried", p.retries),
    m("commit_latency_p50_ms", "gauge", "Tick receipt to commit, median", p.latencyP50Ms ?? 0),
    m("commit_latency_p99_ms", "gauge", "Tick receipt to commit, 99th pct", p.latencyP99Ms ?? 0),
    m("uptime_seconds", "gauge", "Seconds since ingest started", s.uptimeS),
  ];
  for (const [symbol, ms] of Object.entries(c.lastTickMs)) {
    metrics.push({
      name: "tickpipe_last_tick_timestamp_seconds",
      type: "gauge",
      help: "Event time of the last tick per symbol",
      value: ms / 1000,
      labels: { symbol },
    });
  }
  for (const [reason, n] of Object.entries(p.rejectedByReason)) {
    metrics.push({
      name: "tickpipe_ticks_rejected_by_reason_total",
      type: "counter",
      help: "Ticks rejected, by reason",
      value: n,
      labels: { reason },
    });
  }
  return metrics;
}

/** Fails with a clear line when the schema has not been set up (a write could never succeed). */
export async function checkSchema(sql: Sql): Promise<void> {
  const [row] = await sql<{ ticks: string | null; batches: string | null }[]>`
    SELECT to_regclass('crypto_ticks')::text AS ticks, to_regclass('tickpipe_batches')::text AS batches`;
  if (!row?.ticks || !row.batches) {
    throw new UserError("Cannot ingest: the schema is missing (run `deno task setup` first)");
  }
}

/**
 * The ingest job: the Twelve Data client feeding the pipeline until `signal` aborts,
 * then a graceful stop — the client unsubscribes and drains what the server already sent,
 * the pipeline writes everything it holds — before it resolves with the final summary.
 * Rejects with `AuthError` when the key is refused.
 */
export async function runIngest(sql: Sql, options: IngestOptions): Promise<IngestSummary> {
  const logger = options.logger ?? silentLogger;
  const started = performance.now();
  const pipeline = await IngestPipeline.open(sql, {
    dataDir: options.dataDir,
    logger,
    ...options.pipeline,
  });
  let client: TwelveDataClient | undefined;
  let backfiller: BackgroundBackfiller | undefined;
  let recorder: GapRecorder;
  try {
    recorder = await GapRecorder.start(sql, {
      symbols: options.symbols,
      lastTicks: () => client?.stats().lastTickMs ?? {},
      heartbeatMs: options.gaps?.heartbeatMs,
      onClosed: (gaps) => backfiller?.enqueue(gaps),
      logger,
    });
  } catch (error) {
    await pipeline.close();
    throw error;
  }
  const gaps = recorder;
  const onEvent = (event: TwelveDataEvent) => {
    // The client's schema has checked the event: the pipeline's fast path does the rest.
    if (event.event === "price") {
      const result = pipeline.pushPrice(event);
      if (result === "dropped") gaps.dropped(event.symbol, event.timeMs);
      else if (result !== "rejected") gaps.tick(event.symbol, event.timeMs);
    }
  };
  try {
    client = new TwelveDataClient({
      ...options.twelveData,
      logger,
      onEvent,
      onConnection: (event) => gaps.connection(event),
      ...options.client,
    });
    if (options.backfill) {
      backfiller = new BackgroundBackfiller(sql, {
        twelveData: options.twelveData,
        mode: await readCandleMode(sql),
        perHour: options.backfill.perHour,
        delayMs: options.backfill.delayMs,
        clock: options.backfill.clock,
        logger,
      });
    }
  } catch (error) {
    // Bad client options: release what the pipeline and the gap log opened before failing.
    await gaps.stop();
    await pipeline.close();
    throw error;
  }
  const stream = client;

  let lastTicks = 0;
  let lastAt = started;
  const snapshot = (): IngestSummary => {
    const now = performance.now();
    const clientStats = stream.stats();
    const ticksPerS = now > lastAt ? (clientStats.ticks - lastTicks) / ((now - lastAt) / 1000) : 0;
    return {
      client: clientStats,
      pipeline: pipeline.stats(),
      uptimeS: (now - started) / 1000,
      ticksPerS,
    };
  };
  const summaryTimer = setInterval(() => {
    const summary = snapshot();
    lastTicks = summary.client.ticks;
    lastAt = performance.now();
    logger.info(summaryLine(summary));
    options.onSummary?.(summary);
  }, options.summaryEveryMs ?? 10_000);

  // A stray rejection from a dependency must not end a process that holds unwritten ticks:
  // postgres.js 3.4.9 runs an array-type query on each new connection without awaiting it,
  // so a connection killed at that moment rejects with nobody listening. Log it, go on.
  const onUnhandled = (event: PromiseRejectionEvent) => {
    event.preventDefault();
    const reason = event.reason instanceof Error ? event.reason.message : String(event.reason);
    logger.limited("unhandled", "warn", `Ignored an unhandled rejection: ${reason}`);
  };
  globalThis.addEventListener("unhandledrejection", onUnhandled);

  let metrics: MetricsServer | undefined;
  try {
    if (options.metricsPort !== undefined) {
      metrics = serveMetrics(options.metricsPort, {
        collect: () => metricsOf(snapshot()),
        healthy: () => {
          const s = snapshot();
          const dbDownS = s.pipeline.failingSince === undefined
            ? 0
            : (Date.now() - s.pipeline.failingSince) / 1000;
          if (s.client.state === "failed") return { ok: false, detail: "twelve data: failed" };
          if (dbDownS > 60) {
            return { ok: false, detail: `database failing for ${Math.round(dbDownS)} s` };
          }
          return {
            ok: true,
            detail: `ok: websocket ${s.client.state}, ${s.pipeline.written} rows written`,
          };
        },
      });
      logger.info(`Serving metrics on http://127.0.0.1:${metrics.port}/metrics and /healthz`);
    }

    stream.subscribe(options.symbols);
    const stopped = new Promise<void>((resolve) => {
      if (options.signal.aborted) resolve();
      options.signal.addEventListener("abort", () => resolve(), { once: true });
    });
    // start() rejects only for a refused key; network faults are retried inside.
    await Promise.race([stream.start(), stopped]);
    await Promise.race([stopped, stream.closed]);
    logger.info("Stopping: closing the WebSocket gracefully, then writing everything held");
  } finally {
    clearInterval(summaryTimer);
    await backfiller?.stop();
    await stream.close().catch((error) => logger.warn(`WebSocket close: ${error.message}`));
    await pipeline.close();
    // After the pipeline has written what it held: the stop's gaps start at the last tick.
    await gaps.stop();
    await metrics?.close();
    globalThis.removeEventListener("unhandledrejection", onUnhandled);
  }
  const summary = snapshot();
  logger.info(`Stopped: ${summaryLine(summary)}`);
  return summary;
}
