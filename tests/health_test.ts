/**
 * An unattended ingester keeps trying, and says so on /healthz: a key refused after it
 * had worked is retried (not fatal), no symbol subscribed fails the check. Against the
 * real simulator, client, pipeline and PostgreSQL; rows are compared with /stats.
 */
import assert from "node:assert/strict";
import { Logger } from "../lib/log.ts";
import { type IngestOptions, runIngest } from "../lib/ingest/mod.ts";
import { createTestDatabase } from "./_support/db.ts";
import { countAndDuplicates } from "./_support/rows.ts";
import { freePort } from "./_support/run.ts";
import { TEST_KEY, waitFor, withSimulator } from "./_support/sim.ts";

const CLIENT = {
  heartbeatMs: 200,
  watchdogMs: 1_000,
  backoffBaseMs: 50,
  backoffCapMs: 200,
  authRetryBaseMs: 100,
  authRetryCapMs: 300,
};

/** Runs ingest with a metrics port until `during` returns; `health()` reads /healthz. */
async function withIngest(
  options: Omit<IngestOptions, "signal" | "dataDir" | "metricsPort" | "logger">,
  sql: Parameters<typeof runIngest>[0],
  during: (health: () => Promise<{ status: number; body: string }>) => Promise<void>,
): Promise<void> {
  const controller = new AbortController();
  const dataDir = await Deno.makeTempDir({ prefix: "tickpipe-health-" });
  const lines: string[] = [];
  const logger = new Logger({ sink: (line) => lines.push(line) });
  const metricsPort = freePort();
  const health = async () => {
    const response = await fetch(`http://127.0.0.1:${metricsPort}/healthz`);
    return { status: response.status, body: (await response.text()).trim() };
  };
  try {
    const running = runIngest(sql, {
      ...options,
      dataDir,
      signal: controller.signal,
      logger,
      metricsPort,
    });
    running.catch(() => {}); // awaited below; a failure must not go unhandled meanwhile
    await waitFor(() => lines.some((l) => l.includes("Serving metrics")), "the metrics server");
    try {
      await during(health);
    } finally {
      controller.abort();
      await running;
    }
  } finally {
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  }
}

/** Polls /healthz until `check` accepts its answer. */
async function healthUntil(
  health: () => Promise<{ status: number; body: string }>,
  check: (h: { status: number; body: string }) => boolean,
  what: string,
): Promise<{ status: number; body: string }> {
  let last = await health();
  const deadline = Date.now() + 20_000;
  while (!check(last)) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}: ${last.body}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
    last = await health();
  }
  return last;
}

Deno.test("A key refused after hours of running fails /healthz, is retried, and no tick is lost", async () => {
  const db = await createTestDatabase();
  try {
    await withSimulator({ rate: 200 }, async (sim) => {
      await withIngest(
        {
          twelveData: { apiKey: TEST_KEY, wsUrl: sim.wsUrl, apiUrl: sim.apiUrl },
          symbols: ["BTC/USD", "ETH/USD"],
          client: CLIENT,
          pipeline: { retryInitialMs: 50, retryMaxMs: 500 },
        },
        db.sql,
        async (health) => {
          await healthUntil(health, (h) => h.status === 200, "a healthy start");
          await waitFor(() => sim.stats().price_events_sent > 50, "ticks", 20_000);

          sim.refuseKey(true);
          await sim.drop();
          const refused = await healthUntil(health, (h) => h.status === 503, "an unhealthy check");
          assert.match(
            refused.body,
            /^twelve data refuses the API key \(for \d+ s, since .*\); retrying$/,
          );
          await waitFor(() => sim.stats().auth_failures >= 3, "several refused attempts", 20_000);

          sim.refuseKey(false);
          await healthUntil(health, (h) => h.status === 200, "health again");
          const sent = sim.stats().price_events_sent;
          await waitFor(() => sim.stats().price_events_sent > sent + 50, "ticks again", 20_000);
        },
      );
      const { rows, duplicates } = await countAndDuplicates(db.sql);
      assert.equal(rows, sim.stats().price_events_sent);
      assert.equal(duplicates, 0);
    });
  } finally {
    await db.drop();
  }
});

Deno.test("/healthz fails when no symbol is subscribed", async (t) => {
  const db = await createTestDatabase();
  try {
    await t.step("every symbol refused", async () => {
      await withSimulator({ rate: 50 }, async (sim) => {
        await withIngest(
          {
            twelveData: { apiKey: TEST_KEY, wsUrl: sim.wsUrl, apiUrl: sim.apiUrl },
            symbols: ["NOPE1/USD", "NOPE2/USD"],
            client: CLIENT,
          },
          db.sql,
          async (health) => {
            const h = await healthUntil(health, (h) => h.status === 503, "an unhealthy check");
            assert.equal(h.body, "no symbol subscribed: twelve data refused all 2");
          },
        );
      });
    });

    await t.step("none live after the grace period (the feed unreachable)", async () => {
      const port = freePort(); // nothing listens there
      await withIngest(
        {
          twelveData: {
            apiKey: TEST_KEY,
            wsUrl: `ws://127.0.0.1:${port}/v1/quotes/price`,
            apiUrl: `http://127.0.0.1:${port}`,
          },
          symbols: ["BTC/USD"],
          client: CLIENT,
          healthGraceMs: 300,
        },
        db.sql,
        async (health) => {
          const h = await healthUntil(health, (h) => h.status === 503, "an unhealthy check");
          assert.match(
            h.body,
            /^no symbol subscribed for \d+ s \(websocket (waiting|connecting)\)$/,
          );
        },
      );
    });
  } finally {
    await db.drop();
  }
});
