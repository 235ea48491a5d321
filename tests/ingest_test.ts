/**
 * End-to-end ingest: the real simulator over a real WebSocket, the real client,
 * pipeline and writer, into a real PostgreSQL. The simulator's /stats is the
 * ground truth: every tick it counted as sent must be a row, exactly once.
 */
import assert from "node:assert/strict";
import { Logger } from "../lib/log.ts";
import { PRICE_LIMITS } from "../lib/twelvedata/mod.ts";
import { type IngestSummary, runIngest } from "../lib/ingest/mod.ts";
import type { SimulatorHandle } from "../lib/simulator/mod.ts";
import { assertDemoWroteAllSent, createTestDatabase, type TestDatabase } from "./_support/db.ts";
import { captureLogger, ingestEnv, TEST_KEY, waitFor, withSimulator } from "./_support/sim.ts";
import { permissionSet, runDeno, taskDataDir } from "./_support/run.ts";
import { databaseUrl } from "./_support/url.ts";
import { duplicates, rowsBySymbol } from "./_support/rows.ts";

const CLIENT = { heartbeatMs: 500, watchdogMs: 2_000, backoffBaseMs: 100, backoffCapMs: 1_000 };

/** Runs ingest against `sim` until `during` returns, then stops it gracefully. */
async function ingestWhile(
  db: TestDatabase,
  sim: SimulatorHandle,
  symbols: string[],
  during: (summary: () => IngestSummary | undefined) => Promise<void>,
  logger = new Logger({ sink: () => {} }),
): Promise<IngestSummary> {
  const controller = new AbortController();
  const dataDir = await Deno.makeTempDir({ prefix: "tickpipe-ingest-" });
  let last: IngestSummary | undefined;
  try {
    const running = runIngest(db.sql, {
      twelveData: { apiKey: TEST_KEY, wsUrl: sim.wsUrl, apiUrl: sim.apiUrl },
      symbols,
      dataDir,
      signal: controller.signal,
      logger,
      summaryEveryMs: 250,
      client: CLIENT,
      pipeline: { retryInitialMs: 50, retryMaxMs: 500 },
      onSummary: (s) => last = s,
    });
    const stop = during(() => last).finally(() => controller.abort());
    const [summary] = await Promise.all([running, stop]);
    return summary;
  } finally {
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  }
}

Deno.test("After more than 100,000 ticks the rows equal the simulator's count, per symbol", async () => {
  const db = await createTestDatabase();
  try {
    await withSimulator({ rate: "max", generatedSymbols: 20 }, async (sim) => {
      const symbols = Array.from(
        { length: 20 },
        (_, i) => `SYM${String(i + 1).padStart(3, "0")}/USD`,
      );
      const summary = await ingestWhile(db, sim, symbols, async () => {
        await waitFor(
          () => sim.stats().price_events_sent >= 110_000,
          "110,000 ticks sent",
          120_000,
        );
      });
      const stats = sim.stats();
      assert.ok(stats.price_events_sent >= 110_000);
      assert.deepEqual(await rowsBySymbol(db.sql), stats.by_symbol);
      assert.equal(await duplicates(db.sql), 0);
      assert.equal(summary.pipeline.dropped, 0);
      assert.equal(summary.pipeline.written, stats.price_events_sent);
    });
  } finally {
    await db.drop();
  }
});

Deno.test("Killing the database connection mid-run loses nothing and duplicates nothing", async () => {
  const db = await createTestDatabase();
  const admin = (await import("postgres")).default({
    ...db.config,
    ssl: false,
    max: 1,
    onnotice: () => {},
  });
  try {
    await withSimulator({ rate: 20_000, symbols: ["BTC/USD", "ETH/USD", "AAPL"] }, async (sim) => {
      let kills = 0;
      const summary = await ingestWhile(db, sim, ["BTC/USD", "ETH/USD", "AAPL"], async (now) => {
        await waitFor(() => sim.stats().price_events_sent > 5_000, "5,000 ticks sent");
        // Kill the pipeline's connections until a write has had to be retried (a killed
        // connection that was idle costs no retry), then let the stream run on.
        const deadline = Date.now() + 30_000;
        while ((now()?.pipeline.retries ?? 0) === 0 && Date.now() < deadline) {
          const killed = await admin`
            SELECT pg_terminate_backend(pid) FROM pg_stat_activity
            WHERE datname = ${db.config.database} AND pid <> pg_backend_pid()
              AND application_name = 'tickpipe'`;
          kills += killed.length;
          await new Promise((resolve) => setTimeout(resolve, 10 + Math.random() * 30));
        }
        const after = sim.stats().price_events_sent;
        await waitFor(
          () => sim.stats().price_events_sent > after + 20_000,
          "20,000 more ticks sent",
        );
      });
      assert.ok(kills > 0, "some connections were terminated");
      assert.ok(summary.pipeline.retries > 0, "the writer had to retry");
      const stats = sim.stats();
      assert.deepEqual(await rowsBySymbol(db.sql), stats.by_symbol);
      assert.equal(await duplicates(db.sql), 0);
    });
  } finally {
    await admin.end({ timeout: 5 });
    await db.drop();
  }
});

Deno.test("After server-side WebSocket drops the pipeline reconnects and stores every tick sent", async () => {
  const db = await createTestDatabase();
  try {
    await withSimulator({ rate: 2_000, symbols: ["BTC/USD", "EUR/USD", "MSFT"] }, async (sim) => {
      const summary = await ingestWhile(db, sim, ["BTC/USD", "EUR/USD", "MSFT"], async (now) => {
        for (let i = 0; i < 3; i++) {
          const before = sim.stats().price_events_sent;
          await waitFor(() => sim.stats().price_events_sent > before + 500, "500 more ticks sent");
          await sim.drop();
          await waitFor(
            () => (now()?.client.reconnects ?? 0) > i && sim.stats().connections > 0,
            "a reconnect",
          );
        }
        const before = sim.stats().price_events_sent;
        await waitFor(() => sim.stats().price_events_sent > before + 500, "500 more ticks sent");
      });
      assert.equal(summary.client.reconnects, 3);
      const stats = sim.stats();
      assert.deepEqual(await rowsBySymbol(db.sql), stats.by_symbol);
      assert.equal(await duplicates(db.sql), 0);
    });
  } finally {
    await db.drop();
  }
});

Deno.test("Malformed and hostile ticks never reach the table and never stop the stream", async () => {
  const db = await createTestDatabase();
  try {
    await withSimulator({ rate: 500, symbols: ["BTC/USD", "ETH/USD"] }, async (sim) => {
      const { logger, lines } = captureLogger();
      let malformed = 0;
      let edge = 0;
      const summary = await ingestWhile(db, sim, ["BTC/USD", "ETH/USD"], async () => {
        await waitFor(() => sim.stats().price_events_sent > 200, "200 ticks sent");
        malformed = sim.malformed(42);
        edge = sim.edgeCases(40);
        const before = sim.stats().price_events_sent;
        await waitFor(() => sim.stats().price_events_sent > before + 200, "200 more ticks sent");
      }, logger);
      assert.equal(malformed, 42);
      assert.equal(edge, 40);
      // 1 in 4 edge frames is a valid tick with a millisecond timestamp: converted, stored.
      const stats = sim.stats();
      const rows = await rowsBySymbol(db.sql);
      assert.deepEqual(Object.keys(rows).sort(), ["BTC/USD", "ETH/USD"]);
      assert.equal(rows["BTC/USD"], stats.by_symbol["BTC/USD"]! + 10);
      assert.equal(rows["ETH/USD"], stats.by_symbol["ETH/USD"]);
      const [bad] = await db.sql<{ n: number }[]>`
        SELECT count(*)::int AS n FROM crypto_ticks
        WHERE NOT (price > 0 AND price < ${PRICE_LIMITS.maxPrice})
          OR "time" > now() + interval '5 minutes' OR "time" < '2000-01-01'`;
      assert.equal(bad!.n, 0);
      // Every bad frame was counted by the client, with its reason (3 of each malformed kind).
      assert.deepEqual(summary.client.malformedByReason, {
        "invalid JSON": 6,
        "not a JSON object": 3,
        "no event name": 3,
        "missing price": 6,
        "missing symbol": 3,
        "invalid price": 12,
        "invalid symbol": 3 + 30,
        "invalid timestamp": 3,
        "timestamp out of range": 3,
      });
      assert.equal(summary.client.malformed, 42 + 30);
      assert.ok(lines.some((l) => /alformed/.test(l)), "malformed frames are logged");
    });
  } finally {
    await db.drop();
  }
});

Deno.test("At 10 ticks/s every tick is committed within a flush interval or so (p50/p99 reported)", async () => {
  const db = await createTestDatabase();
  try {
    await withSimulator({ rate: 10, symbols: ["BTC/USD"] }, async (sim) => {
      const summary = await ingestWhile(db, sim, ["BTC/USD"], async () => {
        await waitFor(() => sim.stats().price_events_sent >= 30, "30 ticks sent");
      });
      const { latencyP50Ms, latencyP99Ms } = summary.pipeline;
      console.error(
        `[ingest] 10 ticks/s: tick→commit p50 ${latencyP50Ms?.toFixed(1)} ms, p99 ${
          latencyP99Ms?.toFixed(1)
        } ms`,
      );
      assert.ok(latencyP50Ms !== undefined && latencyP99Ms !== undefined);
      assert.deepEqual(await rowsBySymbol(db.sql), sim.stats().by_symbol);
    });
  } finally {
    await db.drop();
  }
});

Deno.test("ingest as a process: SIGTERM mid-stream writes every tick received, then exits 0", async () => {
  const db = await createTestDatabase();
  const dataDir = await taskDataDir("tickpipe-ingest-");
  try {
    await withSimulator(
      { rate: 3_000, symbols: ["BTC/USD", "ETH/USD", "AAPL", "MSFT"] },
      async (sim) => {
        const child = new Deno.Command(Deno.execPath(), {
          args: [
            "run",
            ...permissionSet("db"),
            "tasks/ingest.ts",
            "--log-format",
            "json",
          ],
          env: { NO_COLOR: "1", ...ingestEnv(sim, databaseUrl(db.config), dataDir) },
          stdout: "piped",
          stderr: "piped",
        }).spawn();
        const output = Promise.all([
          new Response(child.stdout).text(),
          new Response(child.stderr).text(),
        ]);
        await waitFor(() => sim.stats().price_events_sent > 5_000, "5,000 ticks sent");
        child.kill("SIGTERM");
        const status = await child.status;
        const [stdout, stderr] = await output;
        assert.equal(status.code, 0, stderr);
        const stats = sim.stats();
        assert.deepEqual(await rowsBySymbol(db.sql), stats.by_symbol);
        const log = (stdout + stderr).trim().split("\n").map((l) => JSON.parse(l));
        assert.ok(log.some((l) => l.msg === "Subscribed to 4 symbol(s)"), stderr);
        assert.ok(log.some((l) => /^Stopped: /.test(l.msg)), stderr);
        assert.ok(!(stdout + stderr).includes(TEST_KEY), "the key is never printed");
        assert.ok(
          !(stdout + stderr).includes(db.config.password!),
          "the password is never printed",
        );
      },
    );
  } finally {
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    await db.drop();
  }
});

Deno.test("ingest exits after SIGTERM even when the server never answers the WebSocket close", async () => {
  const db = await createTestDatabase();
  const dataDir = await taskDataDir("tickpipe-mute-");
  // In a process of its own, as the real server would be.
  const mute = new Deno.Command(Deno.execPath(), {
    args: ["run", "-q", "--allow-net=127.0.0.1", "tests/_support/mute_ws.ts"],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const muteReader = mute.stdout.getReader();
  try {
    const url = new TextDecoder().decode((await muteReader.read()).value).trim();
    await withSimulator({ rate: 10 }, async (sim) => {
      const child = new Deno.Command(Deno.execPath(), {
        args: ["run", ...permissionSet("db"), "tasks/ingest.ts", "--log-format", "json"],
        env: {
          NO_COLOR: "1",
          DATABASE_URL: databaseUrl(db.config),
          TWELVEDATA_API_KEY: TEST_KEY,
          TWELVEDATA_WS_URL: url,
          TWELVEDATA_API_URL: sim.apiUrl,
          TICKPIPE_DATA_DIR: dataDir,
        },
        stdout: "null",
        stderr: "piped",
      }).spawn();
      let log = "";
      const reading = child.stderr.pipeThrough(new TextDecoderStream()).pipeTo(
        new WritableStream({ write: (chunk) => void (log += chunk) }),
      );
      await waitFor(() => log.includes('"msg":"Connected to Twelve Data"'), "a connection");
      child.kill("SIGTERM");
      let timer: ReturnType<typeof setTimeout> | undefined;
      const status = await Promise.race([
        child.status,
        new Promise<undefined>((resolve) => timer = setTimeout(() => resolve(undefined), 60_000)),
      ]);
      clearTimeout(timer);
      if (!status) {
        child.kill("SIGKILL");
        await child.status;
      }
      await reading;
      assert.ok(status, "ingest did not exit within a minute of SIGTERM");
      assert.equal(status.code, 0, log);
      assert.ok(log.includes('"msg":"Stopped: '), "the summary is printed");
    });
  } finally {
    mute.kill();
    await muteReader.cancel().catch(() => {});
    await mute.status;
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    await db.drop();
  }
});

Deno.test("ingest refuses a database without the schema, and a bad key, with one line each", async () => {
  const db = await createTestDatabase({ migrate: false });
  try {
    await withSimulator({ rate: 10 }, async (sim) => {
      const env = {
        DATABASE_URL: databaseUrl(db.config),
        TWELVEDATA_API_KEY: TEST_KEY,
        TWELVEDATA_WS_URL: sim.wsUrl,
        TWELVEDATA_API_URL: sim.apiUrl,
      };
      const noSchema = await runDeno("tasks/ingest.ts", [], { env });
      assert.equal(noSchema.code, 1);
      assert.match(
        noSchema.stderr,
        /^Cannot ingest: the schema is missing \(run `deno task setup` first\)$/m,
      );
      const noKey = await runDeno("tasks/ingest.ts", [], {
        env: { ...env, TWELVEDATA_API_KEY: "" },
      });
      assert.equal(noKey.code, 1);
      assert.match(noKey.stderr, /TWELVEDATA_API_KEY is not set/);
    });
  } finally {
    await db.drop();
  }
});

Deno.test("demo runs setup, ingests from the simulator and prints candles, all rows accounted for", async () => {
  const db = await createTestDatabase({ migrate: false });
  const dataDir = await taskDataDir("tickpipe-demo-");
  try {
    const result = await runDeno("tasks/demo.ts", ["--duration", "2", "--rate", "50"], {
      permissions: permissionSet("db"),
      env: { DATABASE_URL: databaseUrl(db.config), TICKPIPE_DATA_DIR: dataDir },
    });
    assert.equal(result.code, 0, result.stderr);
    assert.match(
      result.stdout,
      /^(PostgreSQL [\d.]+ \(portable mode|TimescaleDB [\d.]+ on PostgreSQL)/,
    );
    assert.match(result.stdout, /Schema created \(ticks, ingest_batches, candles(, \w+)*\)/);
    await assertDemoWroteAllSent(result.stdout, db.sql);
    for (const title of ["daily candles", "hourly candles", "one-minute candles"]) {
      assert.match(
        result.stdout,
        new RegExp(`BTC/USD ${title}.*:\\nbucket \\(UTC\\)\\s+open\\s+high\\s+low\\s+close`),
      );
    }
    assert.match(result.stdout, /deno task candles BTC\/USD 14/);
    assert.match(result.stdout, /deno task chart .*open http:\/\/127\.0\.0\.1:8080\//);
  } finally {
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    await db.drop();
  }
});
