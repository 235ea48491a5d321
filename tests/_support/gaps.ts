/**
 * Helpers for the gap and backfill tests: ingest from a simulator on a manual clock (so a
 * disconnect can be cut exactly at minute boundaries), and the simulator's own bars.
 */
import type { Sql } from "postgres";
import { type IngestOptions, type IngestSummary, runIngest } from "../../lib/ingest/mod.ts";
import { Logger } from "../../lib/log.ts";
import type { SimulatorHandle } from "../../lib/simulator/mod.ts";
import { TEST_KEY, waitFor } from "./sim.ts";

/** Milliseconds in a minute, an hour, a day. */
export const MINUTE = 60_000;
export const HOUR = 3_600_000;
export const DAY = 86_400_000;

/**
 * Midnight UTC yesterday: the manual clock starts there, so every minute of that day and
 * hour that the tests touch is one the simulator lived through (its 1h and 1day bars are
 * then the aggregate of exactly those minutes), and tick times stay in the past.
 */
export function yesterdayMidnight(): number {
  return Math.floor(Date.now() / DAY) * DAY - DAY;
}

/** Streamed ticks stored (bar rows excluded), the number the simulator's /stats compares with. */
export async function tickRows(sql: Sql): Promise<number> {
  const [row] = await sql<{ n: number }[]>`
    SELECT count(*)::int AS n FROM crypto_ticks WHERE source = 0`;
  return row!.n;
}

/** A running ingest against `sim`, stopped with `stop()`. */
export interface RunningIngest {
  stop(): Promise<IngestSummary>;
}

/**
 * Starts `runIngest` against `sim` with short test timings; resolves once `subscribed`
 * symbols (default all) are subscribed.
 */
export async function startIngest(
  sql: Sql,
  sim: SimulatorHandle,
  symbols: string[],
  options: Partial<IngestOptions> = {},
  expect: { subscribed?: number } = {},
): Promise<RunningIngest> {
  const controller = new AbortController();
  const dataDir = await Deno.makeTempDir({ prefix: "tickpipe-gaps-" });
  const before = sim.stats().subscriptions;
  const running = runIngest(sql, {
    twelveData: { apiKey: TEST_KEY, wsUrl: sim.wsUrl, apiUrl: sim.apiUrl },
    symbols,
    dataDir,
    signal: controller.signal,
    logger: new Logger({ sink: () => {} }),
    summaryEveryMs: 200,
    client: { heartbeatMs: 500, watchdogMs: 3_000, backoffBaseMs: 100, backoffCapMs: 500 },
    pipeline: { retryInitialMs: 50, retryMaxMs: 500 },
    gaps: { heartbeatMs: 200 },
    ...options,
  });
  running.catch(() => {});
  await Promise.race([
    waitFor(
      () => sim.stats().subscriptions >= before + (expect.subscribed ?? symbols.length),
      "the subscription",
      10_000,
    ),
    running.then(() => {
      throw new Error("ingest ended before it subscribed");
    }),
  ]);
  return {
    async stop() {
      controller.abort();
      try {
        return await running;
      } finally {
        await Deno.remove(dataDir, { recursive: true }).catch(() => {});
      }
    },
  };
}

/** Advances the simulator's manual clock by `seconds`, one second at a time. */
export function advanceSeconds(sim: SimulatorHandle, seconds: number): void {
  for (let i = 0; i < seconds; i++) sim.advance(1000);
}

/** Waits until every tick the simulator sent is stored. */
export async function allStored(sql: Sql, sim: SimulatorHandle): Promise<void> {
  await waitFor(
    async () => await tickRows(sql) === sim.stats().price_events_sent,
    "every tick stored",
  );
}

/** One bar as the simulator serves it, numbers parsed. */
export interface TruthBar {
  time: number;
  open: number;
  high: number;
  low: number;
  close: number;
  volume: number | undefined;
}

/** The simulator's bars of `symbol` over `[fromMs, toMs)` at `interval`, oldest first. */
export async function simBars(
  sim: SimulatorHandle,
  symbol: string,
  interval: "1min" | "1h" | "1day",
  fromMs: number,
  toMs: number,
): Promise<TruthBar[]> {
  const iso = (ms: number) => new Date(ms).toISOString().slice(0, 19).replace("T", " ");
  const url = new URL("/time_series", sim.apiUrl);
  url.searchParams.set("symbol", symbol);
  url.searchParams.set("interval", interval);
  url.searchParams.set("start_date", iso(fromMs));
  url.searchParams.set("end_date", iso(toMs));
  url.searchParams.set("order", "asc");
  url.searchParams.set("timezone", "UTC");
  const response = await fetch(url, { headers: { Authorization: `apikey ${TEST_KEY}` } });
  const body = await response.json() as { values: Record<string, string>[] };
  return body.values.map((v) => ({
    time: Date.parse(
      v.datetime!.length === 10 ? `${v.datetime}T00:00:00Z` : `${v.datetime!.replace(" ", "T")}Z`,
    ),
    open: Number(v.open),
    high: Number(v.high),
    low: Number(v.low),
    close: Number(v.close),
    volume: v.volume === undefined ? undefined : Number(v.volume),
  }));
}
