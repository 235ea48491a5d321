import { Logger } from "../../lib/log.ts";
import {
  type SimulatorHandle,
  type SimulatorOptions,
  startSimulator,
} from "../../lib/simulator/mod.ts";
import type { ClientOptions } from "../../lib/twelvedata/mod.ts";

/** The key the test simulators accept: long enough to be registered as a secret. */
export const TEST_KEY = "td-test-key-5f3a9c27";

/** Starts a simulator on a random port with `TEST_KEY`, runs `fn`, and always closes it. */
export async function withSimulator(
  options: SimulatorOptions,
  fn: (sim: SimulatorHandle) => Promise<void>,
): Promise<void> {
  const sim = await startSimulator({ apiKey: TEST_KEY, ...options });
  try {
    await fn(sim);
  } finally {
    await sim.close();
  }
}

/** Client options for tests: the simulator's URLs and short timings. */
export function testClientOptions(
  sim: SimulatorHandle,
  overrides: Partial<ClientOptions> = {},
): ClientOptions {
  return {
    apiKey: TEST_KEY,
    wsUrl: sim.wsUrl,
    apiUrl: sim.apiUrl,
    heartbeatMs: 200,
    watchdogMs: 1_000,
    backoffBaseMs: 100,
    backoffCapMs: 1_000,
    connectTimeoutMs: 2_000,
    closeTimeoutMs: 1_000,
    ...overrides,
  };
}

/** The environment of an `ingest` task run against `sim` and the database at `databaseUrl`. */
export function ingestEnv(
  sim: SimulatorHandle,
  databaseUrl: string,
  dataDir: string,
): Record<string, string> {
  return {
    DATABASE_URL: databaseUrl,
    TWELVEDATA_API_KEY: TEST_KEY,
    TWELVEDATA_WS_URL: sim.wsUrl,
    TWELVEDATA_API_URL: sim.apiUrl,
    TICKPIPE_DATA_DIR: dataDir,
  };
}

/** A debug-level logger whose lines are collected in `lines`. */
export function captureLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  return { logger: new Logger({ level: "debug", sink: (line) => lines.push(line) }), lines };
}

/**
 * Polls `condition` (sync or async) every 10 ms until it holds; throws after `timeoutMs`
 * (a bound for a broken run, not a timing) naming `what`. The one way tests wait.
 */
export async function waitFor(
  condition: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 30_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) {
      throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await sleep(10);
  }
}

/** Waits until the simulator has sent `more` price events beyond now. */
export async function sentMore(sim: SimulatorHandle, more: number): Promise<void> {
  const target = sim.stats().price_events_sent + more;
  await waitFor(() => sim.stats().price_events_sent >= target, `${more} more ticks`, 30_000);
}

/** Resolves after `ms`. */
function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
