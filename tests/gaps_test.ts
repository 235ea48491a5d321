/**
 * The gap log as ingest writes it: drops, stalls, refusals, clean stops and crashes, each
 * with its bounds; backfill on reconnect; and `deno task gaps`.
 */
import assert from "node:assert/strict";
import type { Sql } from "postgres";
import { fetchCandles } from "../lib/candles/mod.ts";
import { listGaps } from "../lib/gaps/log.ts";
import { createTestDatabase } from "./_support/db.ts";
import {
  advanceSeconds,
  allStored,
  MINUTE,
  simBars,
  startIngest,
  tickRows,
  yesterdayMidnight,
} from "./_support/gaps.ts";
import { permissionSet, runDeno, taskDataDir } from "./_support/run.ts";
import { ingestEnv, waitFor, withSimulator } from "./_support/sim.ts";
import { databaseUrl } from "./_support/url.ts";

/** The time of the symbol's tick number `n` (from 0) in seq order, once it is stored. */
async function nthTick(sql: Sql, n: number): Promise<number> {
  let time: Date | undefined;
  await waitFor(async () => {
    [{ time } = { time: undefined }] = await sql<{ time: Date }[]>`
      SELECT "time" FROM crypto_ticks WHERE symbol = 'BTC/USD' ORDER BY seq OFFSET ${n} LIMIT 1`;
    return time !== undefined;
  }, `tick ${n} stored`);
  return time!.getTime();
}

Deno.test("Backfill on reconnect fills a short drop by itself", async () => {
  const db = await createTestDatabase();
  const start = yesterdayMidnight();
  try {
    await withSimulator({ rate: 3, clock: { startMs: start } }, async (sim) => {
      const ingest = await startIngest(db.sql, sim, ["ETH/USD"], {
        backfill: { perHour: 5, delayMs: 0 },
      });
      try {
        advanceSeconds(sim, 90);
        await allStored(db.sql, sim);
        await sim.drop();
        sim.advance(2 * MINUTE + 30_000);
        await waitFor(() => sim.stats().subscriptions === 1, "the resubscription");
        advanceSeconds(sim, 90);
        await allStored(db.sql, sim);
        // Nobody runs backfill: ingest fills the gap it just had.
        await waitFor(
          async () => (await listGaps(db.sql)).some((g) => g.state === "filled"),
          "the gap filled in the background",
        );
        const [gap] = await listGaps(db.sql);
        assert.equal(gap!.reason, "disconnected");
        // The drop at 1:30 and the return at 4:00 leave minutes 2 and 3 without a tick.
        assert.equal(gap!.bars, 2);
        assert.equal(sim.stats().rest_credits_used, 1);
        const minutes = await fetchCandles(db.sql, {
          symbol: "ETH/USD",
          interval: "1m",
          from: new Date(start + 2 * MINUTE),
          to: new Date(start + 4 * MINUTE),
        });
        const truth = await simBars(sim, "ETH/USD", "1min", start + 2 * MINUTE, start + 4 * MINUTE);
        assert.deepEqual(
          minutes.map((c) => [c.bucket.getTime(), c.open, c.high, c.low, c.close, c.filled]),
          truth.map((b) => [b.time, b.open, b.high, b.low, b.close, 1]),
        );
        assert.equal(await tickRows(db.sql), sim.stats().price_events_sent);
      } finally {
        await ingest.stop();
      }
    });
  } finally {
    await db.drop();
  }
});

Deno.test("Stalls, refused symbols and clean stops are gaps; the next start closes them", async () => {
  const db = await createTestDatabase();
  try {
    await withSimulator({ rate: 50, unauthorized: ["MSFT"] }, async (sim) => {
      const first = await startIngest(db.sql, sim, ["BTC/USD", "MSFT"], {
        client: { heartbeatMs: 100, watchdogMs: 400, backoffBaseMs: 50, backoffCapMs: 200 },
      }, { subscribed: 1 });
      await waitFor(async () => await tickRows(db.sql) > 10, "ticks");
      const connections = sim.stats().connection_attempts;
      sim.stall(1_500);
      await waitFor(
        () => sim.stats().connection_attempts > connections,
        "the watchdog's reconnect",
      );
      await waitFor(
        async () => (await listGaps(db.sql)).some((g) => g.reason === "stalled" && g.end),
        "the stall closed",
      );
      const stopped = await first.stop();
      const lastTick = stopped.client.lastTickMs["BTC/USD"]!;
      const gaps = await listGaps(db.sql);
      const by = (reason: string) => gaps.filter((g) => g.reason === reason);
      assert.deepEqual(by("refused").map((g) => [g.symbol, g.end]), [["MSFT", null]]);
      assert.match(by("refused")[0]!.detail!, /not authorized/);
      const [stall] = by("stalled");
      assert.equal(stall!.symbol, "BTC/USD");
      assert.ok(stall!.end!.getTime() >= stall!.start.getTime());
      const [stop] = by("not_running");
      assert.deepEqual([stop!.symbol, stop!.end, stop!.start.getTime()], [
        "BTC/USD",
        null,
        lastTick,
      ]);
      const [run] = await db.sql<{ stop_kind: string }[]>`SELECT stop_kind FROM tickpipe_runs`;
      assert.equal(run!.stop_kind, "clean");

      const before = await tickRows(db.sql);
      const second = await startIngest(db.sql, sim, ["BTC/USD"]);
      try {
        await waitFor(
          async () => (await listGaps(db.sql)).every((g) => g.end !== null || g.symbol === "MSFT"),
          "the stop's gap closed by the first tick after the start",
        );
        const [closed] = (await listGaps(db.sql)).filter((g) => g.reason === "not_running");
        assert.equal(closed!.end!.getTime(), await nthTick(db.sql, before), "the first tick after");
      } finally {
        await second.stop();
      }
    });
  } finally {
    await db.drop();
  }
});

Deno.test("A kill -9 of ingest is found at the next start as a not_running gap", async () => {
  const db = await createTestDatabase();
  const dataDir = await taskDataDir("tickpipe-kill-");
  try {
    await withSimulator({ rate: 100, symbols: ["BTC/USD"] }, async (sim) => {
      const child = new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          ...permissionSet("db"),
          "tasks/ingest.ts",
          "--symbols",
          "BTC/USD",
          "--no-backfill",
        ],
        env: { NO_COLOR: "1", ...ingestEnv(sim, databaseUrl(db.config), dataDir) },
        stdout: "null",
        stderr: "null",
      }).spawn();
      await waitFor(async () => await tickRows(db.sql) > 50, "the child's ticks", 30_000);
      child.kill("SIGKILL");
      await child.status;
      const [dead] = await db.sql<{ pid: number; stopped_at: Date | null }[]>`
        SELECT pid, stopped_at FROM tickpipe_runs`;
      assert.equal(dead!.pid, child.pid);
      assert.equal(dead!.stopped_at, null, "a killed run says nothing");
      const [last] = await db.sql<{ time: Date }[]>`SELECT max("time") AS time FROM crypto_ticks`;
      const stored = await tickRows(db.sql);

      const next = await startIngest(db.sql, sim, ["BTC/USD"]);
      try {
        await waitFor(
          async () => (await listGaps(db.sql)).some((g) => g.end !== null),
          "the gap closed by the first tick after the start",
        );
        const [gap] = await listGaps(db.sql);
        assert.equal(gap!.reason, "not_running");
        assert.equal(gap!.start.getTime(), last!.time.getTime(), "from the last stored tick");
        assert.match(gap!.detail!, /without a clean stop/);
        assert.equal(gap!.end!.getTime(), await nthTick(db.sql, stored), "to the first tick after");
        const runs = await db.sql<{ stop_kind: string | null }[]>`
          SELECT stop_kind FROM tickpipe_runs ORDER BY started_at`;
        assert.deepEqual(runs.map((r) => r.stop_kind), ["crashed", null]);
      } finally {
        await next.stop();
      }
    });
  } finally {
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    await db.drop();
  }
});

Deno.test("deno task gaps prints the log as a table, CSV and JSON", async () => {
  const db = await createTestDatabase();
  try {
    await db.sql`
      INSERT INTO tickpipe_gaps (symbol, reason, gap_start, gap_end, state, bars, detail)
      VALUES ('BTC/USD', 'disconnected', '2026-03-01T10:00:05Z', '2026-03-01T10:03:02Z',
              'filled', 2, '2 minute(s) filled from REST bars'),
             ('AAPL', 'refused', '2026-03-01T10:00:00Z', NULL, 'open', 0,
              'refused at subscribe: not authorized, "plan"')`;
    const env = { DATABASE_URL: databaseUrl(db.config) };
    const gaps = (args: string[]) =>
      runDeno("tasks/gaps.ts", args, { permissions: permissionSet("db"), env });
    const table = await gaps([]);
    assert.equal(table.code, 0, table.stderr);
    const lines = table.stdout.trimEnd().split("\n");
    assert.match(
      lines[0]!,
      /^id\s+symbol\s+reason\s+start\s+end\s+duration\s+state\s+bars\s+detail$/,
    );
    assert.match(lines[2]!, /AAPL\s+refused\s+2026-03-01T10:00:00Z\s+ongoing\s+\S.*open\s+0/);
    assert.match(
      lines[3]!,
      /BTC\/USD\s+disconnected\s+.*2026-03-01T10:03:02Z\s+2m 57s\s+filled\s+2/,
    );
    const csv = await gaps(["--symbol", "AAPL", "--format", "csv"]);
    assert.equal(csv.code, 0, csv.stderr);
    assert.deepEqual(csv.stdout.trimEnd().split("\n").slice(0, 1), [
      "id,symbol,reason,start,end,duration_s,state,bars,detail",
    ]);
    assert.match(csv.stdout, /,"refused at subscribe: not authorized, ""plan"""$/m);
    const json = await gaps(["--state", "filled", "--format", "json"]);
    const rows = JSON.parse(json.stdout);
    assert.deepEqual(
      rows.map((r: { symbol: string; duration_s: number }) => [r.symbol, r.duration_s]),
      [
        ["BTC/USD", 177],
      ],
    );
    const range = await gaps(["--from", "2026-03-02", "--format", "json"]);
    assert.deepEqual(JSON.parse(range.stdout).map((r: { symbol: string }) => r.symbol), ["AAPL"]);
    const bad = await gaps(["--state", "closed"]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--state must be open, filled or unfillable/);
  } finally {
    await db.drop();
  }
});

Deno.test("A crash found late (stale heartbeat) is bounded by the next run's start", async () => {
  const db = await createTestDatabase();
  try {
    const t = (s: number) => new Date(Date.UTC(2026, 2, 1, 10, 0, s));
    // A run that died at 10:00:20 without a word, a run started at 10:01:00 after it.
    await db.sql`
      INSERT INTO tickpipe_runs (run_id, host, pid, symbols, heartbeat_ms, started_at, heartbeat_at)
      VALUES (${crypto.randomUUID()}, 'h', 1, ${["BTC/USD"]}::text[], 1000, ${t(0)}, ${t(20)}),
             (${crypto.randomUUID()}, 'h', 2, ${["BTC/USD"]}::text[], 1000, ${t(60)}, ${t(60)})`;
    await db.sql`
      INSERT INTO crypto_ticks ("time", symbol, price, seq)
      SELECT ${t(0)}::timestamptz + s * INTERVAL '1 second', 'BTC/USD', 100, s
      FROM unnest(ARRAY[5, 19, 61, 62, 90]) AS s`;
    const run = await runDeno("tasks/gaps.ts", ["--format", "json"], {
      permissions: permissionSet("db"),
      env: { DATABASE_URL: databaseUrl(db.config) },
    });
    assert.equal(run.code, 0, run.stderr);
    const gaps = JSON.parse(run.stdout) as { reason: string; start: string; end: string }[];
    // Both runs are stale here: the first one's gap ends where the second one's ticks begin,
    // the second one's is ongoing from its last tick.
    assert.deepEqual(gaps.map((g) => [g.reason, g.start, g.end]), [
      ["not_running", t(19).toISOString(), t(61).toISOString()],
      ["not_running", t(90).toISOString(), null],
    ]);
  } finally {
    await db.drop();
  }
});
