import type { Sql } from "postgres";
import { BackgroundBackfiller } from "./backfill/background.ts";
import type { Clock } from "./backfill/clock.ts";
import { readCandleMode } from "./candles/query.ts";
import { UserError } from "./errors.ts";
import { GapRecorder } from "./gaps/recorder.ts";
import { IngestLeases, type LeaseOptions, type LeaseStats, type Taken } from "./lease/mod.ts";
import { tolerateRejections } from "./last_resort.ts";
import { type Logger, silentLogger } from "./log.ts";
import { type Metric, type MetricsServer, serveMetrics } from "./metrics.ts";
import { IngestPipeline, type PipelineOptions, type PipelineStats } from "./pipeline/pipeline.ts";
import type { SeedRow } from "./pipeline/sequencer.ts";
import {
  type ClientStats,
  normalizeSymbols,
  type PriceEvent,
  streamProblem,
  type SymbolSpec,
  TwelveDataClient,
  type TwelveDataEvent,
} from "./twelvedata/mod.ts";

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
  client?: {
    heartbeatMs?: number;
    watchdogMs?: number;
    backoffBaseMs?: number;
    backoffCapMs?: number;
    authRetryBaseMs?: number;
    authRetryCapMs?: number;
  };
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

/** What an ingest run did, as of the moment it is taken. */
export interface IngestSummary {
  client: ClientStats;
  pipeline: PipelineStats;
  /** Seconds since start. */
  uptimeS: number;
  /** Ticks received per second over the last summary interval. */
  ticksPerS: number;
  /** With `lease`: symbols held and stood by for. */
  leases?: LeaseStats;
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
    `${fmt(s.client.malformed)} rejected`,
  ];
  if (p.quarantined > 0) {
    const reasons = Object.entries(p.quarantinedByReason).map(([r, n]) => `${r}: ${fmt(n)}`);
    parts.push(`${fmt(p.quarantined)} quarantined (${reasons.join(", ")})`);
  }
  if (p.lostInCrash > 0) parts.push(`${fmt(p.lostInCrash)} lost in a crash`);
  if (p.spoolFault) parts.push(`spool unwritable (${p.spoolFault.error})`);
  if (p.latencyP99Ms !== undefined) {
    parts.push(`commit p50 ${fmt(p.latencyP50Ms ?? 0)} ms / p99 ${fmt(p.latencyP99Ms)} ms`);
  }
  if (s.leases && s.leases.standby > 0) {
    parts.push(`${s.leases.owned} symbol(s) held, standby for ${s.leases.standby}`);
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
    m("ws_malformed_total", "counter", "Frames rejected as malformed or invalid", c.malformed),
    m("ws_reconnects_total", "counter", "Reconnections after the first connection", c.reconnects),
    m("ws_refused_symbols", "gauge", "Symbols the server refused", Object.keys(c.refused).length),
    m("rows_written_total", "counter", "Tick rows committed", p.written),
    m(
      "ticks_dropped_total",
      "counter",
      "Ticks dropped (memory full and the spool full or unwritable)",
      p.dropped,
    ),
    m("ticks_quarantined_total", "counter", "Ticks the database refused", p.quarantined),
    m(
      "ticks_lost_in_crash_total",
      "counter",
      "Spooled ticks found torn or corrupt at start",
      p.lostInCrash,
    ),
    m("ticks_pending_memory", "gauge", "Ticks held in memory", p.pendingMemory),
    m("ticks_spooled", "gauge", "Ticks waiting in the on-disk spool", p.spooled),
    m(
      "ticks_spool_buffered",
      "gauge",
      "Spooled ticks not yet written to the file",
      p.spoolBuffered,
    ),
    m("spool_writable", "gauge", "1 while the spool can be written", p.spoolFault ? 0 : 1),
    m("batches_total", "counter", "Batches committed", p.batches),
    m("write_retries_total", "counter", "Failed batch writes that were retried", p.retries),
    m("commit_latency_p50_ms", "gauge", "Tick receipt to commit, median", p.latencyP50Ms ?? 0),
    m("commit_latency_p99_ms", "gauge", "Tick receipt to commit, 99th pct", p.latencyP99Ms ?? 0),
    m("uptime_seconds", "gauge", "Seconds since ingest started", s.uptimeS),
  ];
  const l = s.leases;
  if (l) {
    metrics.push(
      m("symbols_owned", "gauge", "Symbols whose lease this process holds", l.owned),
      m("symbols_standby", "gauge", "Symbols held by another process, stood by for", l.standby),
      m("lease_takeovers_total", "counter", "Symbols taken over from another process", l.takeovers),
      m("leases_lost_total", "counter", "Symbols lost to another process", l.lost),
      m("ticks_not_owned_total", "counter", "Ticks of symbols not held, not stored", l.notOwned),
      m("lease_session_up", "gauge", "1 while the lease session is connected", l.connected ? 1 : 0),
    );
  }
  for (const [symbol, ms] of Object.entries(c.lastTickMs)) {
    metrics.push({
      name: "tickpipe_last_tick_timestamp_seconds",
      type: "gauge",
      help: "Event time of the last tick per symbol",
      value: ms / 1000,
      labels: { symbol },
    });
  }
  for (const [reason, n] of Object.entries(c.malformedByReason)) {
    metrics.push({
      name: "tickpipe_ws_malformed_by_reason_total",
      type: "counter",
      help: "Malformed frames (ticks outside the limits included), by reason",
      value: n,
      labels: { reason },
    });
  }
  for (const [reason, n] of Object.entries(p.quarantinedByReason)) {
    metrics.push({
      name: "tickpipe_ticks_quarantined_by_reason_total",
      type: "counter",
      help: "Ticks the database refused, by reason",
      value: n,
      labels: { reason },
    });
  }
  return metrics;
}

/**
 * /healthz: fails while the feed failed, the key is refused, no symbol is subscribed (see
 * `streamProblem`), the spool cannot be written, ticks were dropped in the last minute, or the
 * database has failed for over a minute; "degraded" (still 200) while rows were quarantined in
 * the last 5 minutes; a pure hot standby is healthy.
 */
function healthOf(s: IngestSummary, graceMs: number): { ok: boolean; detail: string } {
  const p = s.pipeline;
  const now = Date.now();
  const dbDownS = p.failingSince === undefined ? 0 : (now - p.failingSince) / 1000;
  if (s.client.state === "failed") return { ok: false, detail: "twelve data: failed" };
  // A hot standby subscribes to nothing until it takes a lease over: it is healthy.
  const standby = s.leases !== undefined && s.leases.owned === 0 && s.leases.standby > 0
    ? s.leases.standby
    : 0;
  const problem = streamProblem(s.client, now, graceMs, { expectSymbols: standby === 0 });
  if (problem) return { ok: false, detail: problem };
  if (p.spoolFault) {
    return {
      ok: false,
      detail: `spool unwritable for ${
        Math.round((now - p.spoolFault.since) / 1000)
      } s (${p.spoolFault.error}): memory-only, ${p.dropped} ticks dropped`,
    };
  }
  if (p.lastDropAt !== undefined && now - p.lastDropAt < 60_000) {
    return { ok: false, detail: `dropping ticks: ${p.dropped} dropped (memory and spool full)` };
  }
  if (dbDownS > 60) return { ok: false, detail: `database failing for ${Math.round(dbDownS)} s` };
  if (standby > 0) return { ok: true, detail: `standby for ${standby} symbols` };
  const ok = `websocket ${s.client.state}, ${p.written} rows written`;
  if (p.lastQuarantineAt !== undefined && now - p.lastQuarantineAt < 300_000) {
    const reasons = Object.entries(p.quarantinedByReason).map(([r, n]) => `${r}: ${n}`);
    return {
      ok: true,
      detail: `degraded: ${p.quarantined} rows quarantined (${
        reasons.join(", ")
      }; deno task quarantine list); ${ok}`,
    };
  }
  return { ok: true, detail: `ok: ${ok}` };
}

/** Fails with a clear line when the schema has not been set up (a write could never succeed). */
export async function checkSchema(sql: Sql): Promise<void> {
  const [row] = await sql<
    { ticks: string | null; batches: string | null; leases: string | null }[]
  >`
    SELECT to_regclass('crypto_ticks')::text AS ticks, to_regclass('tickpipe_batches')::text AS batches,
           to_regclass('tickpipe_lease_holders')::text AS leases`;
  if (!row?.ticks || !row.batches) {
    throw new UserError("Cannot ingest: the schema is missing (run `deno task setup` first)");
  }
  if (!row.leases) {
    throw new UserError(
      "Cannot ingest: the schema predates ingest leases (run `deno task setup` to update it)",
    );
  }
}

/**
 * Where a symbol taken over continues: from the last stored tick (seq, volume), and above
 * any seq its previous owner may still write (a batch in flight when it died, its spool).
 * That owner received no tick stamped later than the second of the takeover, and seq within
 * a second is its µs plus an arrival ordinal (far below 500,000 ticks a second): seq goes on
 * from the middle of that second, which leaves room for this second's own ordinals.
 */
function seedRowsOf(taken: Taken[]): SeedRow[] {
  const rows: SeedRow[] = [];
  for (const t of taken) {
    if (t.lastTick) rows.push({ symbol: t.symbol, ...t.lastTick });
    const at = Math.max(t.sinceMs, Date.now());
    rows.push({
      symbol: t.symbol,
      seq: Math.floor(at / 1000) * 1_000_000 + 500_000,
      timeMs: at,
      dayVolume: null,
    });
  }
  return rows;
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
    const reason = error instanceof Error ? error.message : String(error);
    logger.limited("unhandled", "warn", `Ignored an unhandled rejection: ${reason}`);
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
          gaps.own(taken.map((t) => ({
            symbol: t.symbol,
            lastTickMs: t.lastTick?.timeMs,
            unreleased: t.previous !== undefined && !t.previous.released,
          })));
          pipeline.seed(seedRowsOf(taken));
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
        const message = error instanceof Error ? error.message : String(error);
        throw new UserError(`Cannot take the ingest leases: ${message}`, { cause: error });
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
    leases?.stopAcquiring();
    await backfiller?.stop();
    await stream.close().catch((error) => logger.warn(`WebSocket close: ${error.message}`));
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
