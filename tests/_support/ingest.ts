import type { Sql } from "postgres";
import { type IngestSummary, runIngest } from "../../lib/ingest/mod.ts";
import type { Logger } from "../../lib/log.ts";
import type { PipelineOptions } from "../../lib/pipeline/pipeline.ts";
import type { SimulatorHandle } from "../../lib/simulator/mod.ts";
import { TEST_KEY } from "./sim.ts";

/** An ingest run in this process (see `startIngest`). */
export interface RunningIngest {
  /** The latest summary (every 100 ms). */
  last(): IngestSummary | undefined;
  /** Its metrics server, e.g. `${url}/healthz`. */
  metricsUrl(): string;
  /** Stops it gracefully; resolves with the final summary. */
  stop(): Promise<IngestSummary>;
}

/**
 * `runIngest` against the simulator, with short client timings, metrics on a free port and a
 * summary every 100 ms, until `stop()`.
 */
export function startIngest(
  sql: Sql,
  sim: SimulatorHandle,
  options: {
    symbols: string[];
    dataDir: string;
    logger: Logger;
    lines: string[];
    pipeline?: Partial<PipelineOptions>;
  },
): RunningIngest {
  const controller = new AbortController();
  let last: IngestSummary | undefined;
  const running = runIngest(sql, {
    twelveData: { apiKey: TEST_KEY, wsUrl: sim.wsUrl, apiUrl: sim.apiUrl },
    symbols: options.symbols,
    dataDir: options.dataDir,
    signal: controller.signal,
    logger: options.logger,
    summaryEveryMs: 100,
    metricsPort: 0,
    client: { heartbeatMs: 500, watchdogMs: 2_000, backoffBaseMs: 100, backoffCapMs: 1_000 },
    pipeline: { retryInitialMs: 20, retryMaxMs: 200, ...options.pipeline },
    onSummary: (s) => last = s,
  });
  return {
    last: () => last,
    metricsUrl: () => {
      const port = /127\.0\.0\.1:(\d+)\/metrics/.exec(options.lines.join("\n"))?.[1];
      if (!port) throw new Error("Cannot find the metrics port in the log");
      return `http://127.0.0.1:${port}`;
    },
    stop: () => {
      controller.abort();
      return running;
    },
  };
}
