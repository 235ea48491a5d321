import type { Sql } from "postgres";
import { BackgroundBackfiller } from "../backfill/background.ts";
import { readCandleMode } from "../candles/query.ts";
import { RetentionLoop } from "./retention_loop.ts";
import { UserError } from "../errors.ts";
import { GapRecorder } from "../gaps/recorder.ts";
import { IngestLeases, type LeaseOptions } from "../lease/mod.ts";
import { tolerateRejections } from "../last_resort.ts";
import { type Logger, silentLogger } from "../log.ts";
import { type MetricsServer, serveMetrics } from "../metrics.ts";
import { IngestPipeline, type PipelineOptions } from "../pipeline/pipeline.ts";
import { errorText } from "../text.ts";
import type { Clock } from "../timers.ts";
import {
  type ClientOptions,
  normalizeSymbols,
  type PriceEvent,
  type SymbolSpec,
  TwelveDataClient,
  type TwelveDataEvent,
} from "../twelvedata/mod.ts";
import { healthOf } from "./health.ts";
import { metricsOf } from "./metrics.ts";
import { type IngestSummary, summaryLine } from "./summary.ts";

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
  /** /healthz fails when no symbol has been live for this long (default 60 s). */
  healthGraceMs?: number;
  /** Passed to the pipeline (batch size, flush interval, spool bounds...). */
  pipeline?: Partial<PipelineOptions>;
  /** Passed to the client (backoff, watchdog...), mostly for tests. */
  client?: Pick<
    ClientOptions,
    | "heartbeatMs"
    | "watchdogMs"
    | "backoffBaseMs"
    | "backoffCapMs"
    | "authRetryBaseMs"
    | "authRetryCapMs"
  >;
  /** Called with every summary (for tests and the demo). */
  onSummary?: (summary: IngestSummary) => void;
  /**
   * One writer per symbol (docs/one_writer.md): hold a lease per symbol in the database,
   * ingest only the symbols held and stand by for the others. Without it this process
   * ingests every symbol whatever other processes do.
   */
  lease?: Omit<
    LeaseOptions<PriceEvent>,
    "symbols" | "logger" | "onAcquire" | "onLose" | "onRelease"
  >;
  /** The gap log: how often the run records its heartbeat (default 10 s). */
  gaps?: { heartbeatMs?: number };
  /**
   * Backfill on reconnect: fill each gap the stream closes from REST bars in the background,
   * within `perHour` API credits an hour, `delayMs` after the gap (default 60 s). Off when
   * absent (the ingest task turns it on unless `--no-backfill`).
   */
  backfill?: { perHour: number; delayMs?: number; clock?: Clock } | undefined;
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
  // Checked before anything is opened. Leases are per symbol as stored ("RY" for "RY:TSX");
  // subscriptions use the specs given.
  const specs = new Map<string, SymbolSpec[]>();
  for (const spec of normalizeSymbols(options.symbols)) {
    specs.set(spec.symbol, [...(specs.get(spec.symbol) ?? []), spec]);
  }
  const specsOf = (symbols: string[]) => symbols.flatMap((s) => specs.get(s) ?? []);
  const pipeline = await IngestPipeline.open(sql, {
    dataDir: options.dataDir,
    logger,
    ...options.pipeline,
  });
  let client: TwelveDataClient | undefined;
  let backfiller: BackgroundBackfiller | undefined;
  let retention: RetentionLoop | undefined;
  let leases: IngestLeases<PriceEvent> | undefined;
  let recorder: GapRecorder;
  try {
    recorder = await GapRecorder.start(sql, {
      symbols: [...specs.keys()],
      // With leases, the gaps of a symbol are this process's only while it holds it.
      leased: options.lease !== undefined,
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
  const push = (event: PriceEvent) => {
    if (pipeline.pushPrice(event) === "dropped") gaps.dropped(event.symbol, event.timeMs);
    else gaps.tick(event.symbol, event.timeMs);
  };
  const onEvent = (event: TwelveDataEvent) => {
    if (event.event !== "price") return;
    if (leases && !leases.admit(event)) return;
    push(event);
  };
  try {
    client = new TwelveDataClient({
      ...options.twelveData,
      logger,
      onEvent,
      onConnection: (event) => gaps.connection(event),
      ...options.client,
    });
    if (await readCandleMode(sql) === "portable") {
      retention = new RetentionLoop(sql, { logger });
    }
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
    await retention?.stop();
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
      ...(leases ? { leases: leases.stats() } : {}),
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
  const releaseRejections = tolerateRejections((error) => {
    logger.limited("unhandled", "warn", `Ignored an unhandled rejection: ${errorText(error)}`);
  });

  let metrics: MetricsServer | undefined;
  try {
    if (options.metricsPort !== undefined) {
      metrics = serveMetrics(options.metricsPort, {
        collect: () => metricsOf(snapshot()),
        healthy: () => healthOf(snapshot(), options.healthGraceMs ?? 60_000),
      });
      logger.info(`Serving metrics on http://127.0.0.1:${metrics.port}/metrics and /healthz`);
    }

    if (options.lease) {
      const lease = options.lease;
      leases = new IngestLeases<PriceEvent>({
        ...lease,
        symbols: [...specs.keys()],
        logger,
        onAcquire: (taken) => {
          // The previous holder may have left ticks in its spool (on this data directory).
          if (taken.some((t) => t.previous)) void pipeline.adoptOrphans();
          gaps.own(taken.map((t) => ({
            symbol: t.symbol,
            lastTickMs: t.lastTick?.timeMs,
            unreleased: t.previous !== undefined && !t.previous.released,
          })));
          for (const t of taken) {
            pipeline.takeOver(
              t.symbol,
              t.lastTick && { symbol: t.symbol, ...t.lastTick },
              Math.max(t.sinceMs, Date.now()),
            );
          }
          stream.subscribe(specsOf(taken.map((t) => t.symbol)));
        },
        onLose: (symbols) => {
          gaps.disown(symbols);
          stream.unsubscribe(specsOf(symbols));
        },
        onRelease: (events) => {
          for (const event of events) push(event);
        },
      });
      try {
        await leases.start();
      } catch (error) {
        if (error instanceof UserError) throw error;
        throw new UserError(`Cannot take the ingest leases: ${errorText(error)}`, {
          cause: error,
        });
      }
    } else {
      stream.subscribe(options.symbols);
    }
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
    await leases?.stopAcquiring();
    await backfiller?.stop();
    await retention?.stop();
    await stream.close(); // Never throws (see TwelveDataClient.close).
    await pipeline.close();
    // Released only once everything it accepted is written (or spooled): the next owner
    // continues seq from the last stored tick.
    await leases?.close();
    // After the pipeline has written what it held: the stop's gaps start at the last tick.
    await gaps.stop();
    await metrics?.close();
    releaseRejections();
  }
  const summary = snapshot();
  logger.info(`Stopped: ${summaryLine(summary)}`);
  return summary;
}
