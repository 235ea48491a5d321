import assert from "node:assert/strict";
import { fetchCandles } from "../lib/candles/mod.ts";
import { type ChartServer, serveChart } from "../lib/chart/server.ts";
import { connect } from "../lib/db/connection.ts";
import { assertDemoWroteAllSent, createTestDatabase, type TestDatabase } from "./_support/db.ts";
import { startProxy } from "./_support/proxy.ts";
import { freePort, permissionSet, taskDataDir } from "./_support/run.ts";
import { waitFor } from "./_support/sim.ts";
import { type CandleTick, insertTicks } from "./_support/ticks.ts";
import { databaseUrl } from "./_support/url.ts";

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

/** Whole-second ticks over the last `minutes` minutes, a few per minute. */
function recentTicks(symbol: string, minutes: number, base: number): CandleTick[] {
  const now = Math.floor(Date.now() / 1000) * 1000;
  return Array.from({ length: minutes * 3 }, (_, i) => {
    const time = now - minutes * MINUTE + i * 20_000;
    return {
      symbol,
      time,
      ordinal: 0,
      price: base + (i % 7) - 3 + i / 100,
      volume: String((i % 5) + 0.5),
      dayVolume: String(i),
    };
  });
}

async function withChart(
  db: TestDatabase,
  fn: (chart: ChartServer) => Promise<void>,
  options: { sql?: typeof db.sql; pollMs?: number } = {},
) {
  const chart = serveChart({
    sql: options.sql ?? db.sql,
    database: db.config,
    port: 0,
    pollMs: options.pollMs ?? 50,
  });
  try {
    await fn(chart);
  } finally {
    await chart.close();
  }
}

async function get(chart: ChartServer, path: string) {
  const response = await fetch(new URL(path, chart.url));
  const text = await response.text();
  return { status: response.status, type: response.headers.get("content-type"), text };
}

Deno.test("chart API: bad parameters get a 400 with one line of JSON, never a stack trace", async () => {
  const db = await createTestDatabase();
  try {
    await insertTicks(db.sql, recentTicks("BTC/USD", 5, 100));
    await withChart(db, async (chart) => {
      const cases: [string, number, RegExp][] = [
        ["/api/candles", 400, /^Cannot read candles: symbol is required, e\.g\. symbol=BTC\/USD$/],
        ["/api/candles?symbol=", 400, /symbol must be 1 to 32 letters/],
        ["/api/candles?symbol=x%27;%20DROP%20TABLE%20crypto_ticks;--", 400, /symbol must be/],
        [`/api/candles?symbol=${"A".repeat(33)}`, 400, /symbol must be/],
        ["/api/candles?symbol=BTC/USD&interval=5m", 400, /interval must be 1m, 1h or 1d$/],
        [
          "/api/candles?symbol=BTC/USD&from=yesterday",
          400,
          /^Cannot read candles: from must be an ISO 8601/,
        ],
        [
          "/api/candles?symbol=BTC/USD&to=2026-02-30",
          400,
          /^Cannot read candles: to must be an ISO 8601/,
        ],
        [
          "/api/candles?symbol=BTC/USD&from=2026-03-02&to=2026-03-01",
          400,
          /from must be before to$/,
        ],
        [
          "/api/candles?symbol=BTC/USD&interval=1m&from=2026-01-01&to=2026-02-01",
          400,
          /the range holds up to 44640 1m candles; ask for at most 10000 at a time$/,
        ],
        ["/api/candles?symbol=NOPE/USD", 404, /^Cannot read candles: unknown symbol "NOPE\/USD"/],
        ["/api/live", 400, /^Cannot stream candles: symbol is required/],
        ["/api/live?symbol=BTC/USD", 400, /^Cannot stream candles: interval must be 1m, 1h or 1d$/],
        ["/api/live?symbol=BTC/USD&interval=1w", 400, /interval must be/],
        ["/api/nothing", 404, /^Cannot find \/api\/nothing: the chart serves \//],
      ];
      for (const [path, status, message] of cases) {
        const response = await get(chart, path);
        assert.equal(response.status, status, path);
        assert.equal(response.type, "application/json; charset=utf-8", path);
        assert.equal(response.text.trimEnd().split("\n").length, 1, `${path}: one line`);
        const body = JSON.parse(response.text);
        assert.deepEqual(Object.keys(body), ["error"], path);
        assert.match(body.error, message, path);
        assert.doesNotMatch(body.error, /\bat .*\.ts:\d+/, `${path}: no stack trace`);
      }
      const post = await fetch(new URL("/api/candles?symbol=BTC/USD", chart.url), {
        method: "POST",
      });
      assert.equal(post.status, 405);
      assert.match(
        (await post.json()).error,
        /^Cannot POST \/api\/candles: the chart serves GET only$/,
      );
      const [row] = await db.sql`SELECT count(*)::int AS n FROM crypto_ticks`;
      assert.equal(row!.n, 15, "the hostile symbol reached no SQL");
    });
  } finally {
    await db.drop();
  }
});

Deno.test("chart API: symbols and candles are the database's, in the documented shape", async () => {
  const db = await createTestDatabase();
  try {
    await insertTicks(db.sql, [
      ...recentTicks("BTC/USD", 30, 100),
      ...recentTicks("EUR/USD", 3, 1.08).map((t) => ({ ...t, volume: null, dayVolume: null })),
    ]);
    await db.sql`INSERT INTO crypto_assets VALUES ('BTC/USD', 'Bitcoin/US Dollar')`;
    await withChart(db, async (chart) => {
      const symbols = JSON.parse((await get(chart, "/api/symbols")).text);
      assert.deepEqual(
        symbols.symbols.map((s: { symbol: string; name: string | null }) => [s.symbol, s.name]),
        [
          ["BTC/USD", "Bitcoin/US Dollar"],
          ["EUR/USD", null],
        ],
      );
      assert.match(symbols.symbols[0].first, /^\d{4}-\d\d-\d\dT00:00:00\.000Z$/);

      const from = new Date(Math.floor((Date.now() - 20 * MINUTE) / MINUTE) * MINUTE);
      const to = new Date(from.getTime() + 10 * MINUTE);
      const response = await get(
        chart,
        `/api/candles?symbol=BTC/USD&interval=1m&from=${from.toISOString()}&to=${to.toISOString()}`,
      );
      assert.equal(response.status, 200);
      const body = JSON.parse(response.text);
      const expected = await fetchCandles(db.sql, { symbol: "BTC/USD", interval: "1m", from, to });
      assert.equal(expected.length, 10);
      assert.deepEqual(body, {
        symbol: "BTC/USD",
        interval: "1m",
        from: from.toISOString(),
        to: to.toISOString(),
        candles: expected.map((c) => ({
          bucket: c.bucket.toISOString(),
          symbol: c.symbol,
          open: c.open,
          high: c.high,
          low: c.low,
          close: c.close,
          volume: Number(c.volume),
          vwap: c.vwap,
          ticks: c.ticks,
          day_volume: Number(c.dayVolume),
          filled: c.filled,
        })),
      });

      // Defaults: interval 1m, the last day up to the end of the current minute.
      const defaults = JSON.parse((await get(chart, "/api/candles?symbol=BTC/USD")).text);
      assert.equal(defaults.interval, "1m");
      assert.equal(Date.parse(defaults.to) - Date.parse(defaults.from), 24 * HOUR);
      const window = { from: new Date(defaults.from), to: new Date(defaults.to) };
      const inWindow = await fetchCandles(db.sql, { symbol: "BTC/USD", interval: "1m", ...window });
      assert.ok(inWindow.length >= 30);
      assert.equal(defaults.candles.length, inWindow.length);
      const hourly = JSON.parse((await get(chart, "/api/candles?symbol=EUR/USD&interval=1h")).text);
      assert.equal(Date.parse(hourly.to) - Date.parse(hourly.from), 30 * 24 * HOUR);
      assert.equal(hourly.candles[0].volume, null, "forex has no volume");
      // A known symbol with nothing in the range is an empty list, not an error.
      const empty = await get(chart, "/api/candles?symbol=BTC/USD&from=2020-01-01&to=2020-01-02");
      assert.equal(empty.status, 200);
      assert.deepEqual(JSON.parse(empty.text).candles, []);
    });
  } finally {
    await db.drop();
  }
});

Deno.test("chart API: the live stream sends the newest candle as ticks arrive", async () => {
  const db = await createTestDatabase();
  try {
    await insertTicks(db.sql, recentTicks("BTC/USD", 2, 100));
    await withChart(db, async (chart) => {
      const controller = new AbortController();
      const response = await fetch(new URL("/api/live?symbol=BTC/USD&interval=1m", chart.url), {
        signal: controller.signal,
      });
      assert.equal(response.headers.get("content-type"), "text/event-stream; charset=utf-8");
      const events: { event: string; data: Record<string, unknown> }[] = [];
      const reading = (async () => {
        let buffer = "";
        for await (const chunk of response.body!.pipeThrough(new TextDecoderStream())) {
          buffer += chunk;
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            const event = /^event: (.*)$/m.exec(block)?.[1];
            const data = /^data: (.*)$/m.exec(block)?.[1];
            if (event && data) events.push({ event, data: JSON.parse(data) });
          }
        }
      })().catch(() => {});
      await waitFor(() => events.length > 0, "the current candle", 10_000);
      assert.equal(events[0]!.event, "candle");
      const now = Math.floor(Date.now() / 1000) * 1000;
      await insertTicks(db.sql, [{
        symbol: "BTC/USD",
        time: now,
        ordinal: 5,
        price: 555.5,
        volume: "1",
        dayVolume: "999",
      }]);
      await waitFor(
        () => events.some((e) => e.event === "candle" && e.data.high === 555.5),
        "the candle with the new tick",
        10_000,
      );
      const latest = events.findLast((e) => e.data.high === 555.5)!.data;
      const bucket = new Date(Math.floor(now / MINUTE) * MINUTE);
      const [expected] = await fetchCandles(db.sql, {
        symbol: "BTC/USD",
        interval: "1m",
        from: bucket,
        to: new Date(bucket.getTime() + MINUTE),
      });
      assert.equal(latest.bucket, bucket.toISOString());
      assert.equal(latest.close, expected!.close);
      assert.equal(latest.ticks, expected!.ticks);
      controller.abort();
      await reading;
    });
  } finally {
    await db.drop();
  }
});

Deno.test("chart API: a database that is down or not set up gets a 503 with one line, then recovers", async () => {
  const db = await createTestDatabase({ migrate: false });
  const proxy = startProxy(db.config);
  const sql = connect({ ...db.config, host: "127.0.0.1", port: proxy.port }, {
    max: 2,
    connectTimeout: 2,
  });
  try {
    const via = { ...db.config, host: "127.0.0.1", port: proxy.port };
    const chart = serveChart({ sql, database: via, port: 0, pollMs: 50 });
    try {
      const noSchema = await get(chart, "/api/symbols");
      assert.equal(noSchema.status, 503);
      assert.equal(
        JSON.parse(noSchema.text).error,
        "Cannot read candles: this database has no candle schema yet (run `deno task setup`)",
      );
      const { migrate } = await import("../lib/db/migrations.ts");
      await migrate(db.sql, { mode: "portable" });
      await insertTicks(db.sql, recentTicks("BTC/USD", 2, 100));

      proxy.cut();
      for (const path of ["/api/symbols", "/api/candles?symbol=BTC/USD"]) {
        const down = await get(chart, path);
        assert.equal(down.status, 503, path);
        const error = JSON.parse(down.text).error as string;
        assert.match(
          error,
          new RegExp(`^Cannot connect to PostgreSQL at 127\\.0\\.0\\.1:${proxy.port}/`),
        );
        assert.ok(!error.includes(db.config.password!), "no password");
        assert.equal(down.text.trimEnd().split("\n").length, 1);
      }
      proxy.restore();
      const back = await get(chart, "/api/symbols");
      assert.equal(back.status, 200);
      assert.equal(JSON.parse(back.text).symbols[0].symbol, "BTC/USD");
    } finally {
      await chart.close();
    }
  } finally {
    await sql.end({ timeout: 1 });
    await proxy.close();
    await db.drop();
  }
});

/**
 * Runs `tasks/<task>.ts` with the task's permissions from deno.json until it prints the
 * chart's URL (`Chart on <url>`); `stop()` sends `signal` and collects the rest.
 */
async function startTask(task: string, args: string[], env: Record<string, string>) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...permissionSet("db"), `tasks/${task}.ts`, ...args],
    env: { NO_COLOR: "1", ...env },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stdout = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const stderr = Array.fromAsync(child.stderr.pipeThrough(new TextDecoderStream()));
  let output = "";
  while (!/Chart on (\S+)/.test(output)) {
    const { value, done } = await stdout.read();
    if (done) break;
    output += value;
  }
  const url = /Chart on (\S+)/.exec(output)?.[1];
  return {
    url,
    output,
    async stop(signal: Deno.Signal = "SIGTERM") {
      child.kill(signal);
      for (let r = await stdout.read(); !r.done; r = await stdout.read()) output += r.value;
      const status = await child.status;
      return { code: status.code, stdout: output, stderr: (await stderr).join("") };
    },
  };
}

const startChartTask = (env: Record<string, string>) => startTask("chart", ["--port", "0"], env);

Deno.test("deno task chart serves on 127.0.0.1, starts while the database is down, stops on SIGTERM", async () => {
  const db = await createTestDatabase();
  try {
    await insertTicks(db.sql, recentTicks("BTC/USD", 2, 100));
    const up = await startChartTask({ DATABASE_URL: databaseUrl(db.config) });
    assert.match(up.url ?? "", /^http:\/\/127\.0\.0\.1:\d+\/$/, up.output);
    const page = await fetch(up.url!);
    assert.match(page.headers.get("content-security-policy")!, /default-src 'none'/);
    assert.match(await page.text(), /<title>tickpipe chart<\/title>/);
    const symbols = await (await fetch(new URL("/api/symbols", up.url))).json();
    assert.equal(symbols.symbols[0].symbol, "BTC/USD");
    const stopped = await up.stop();
    assert.equal(stopped.code, 0, stopped.stderr);

    const port = freePort();
    const down = await startChartTask({
      DATABASE_URL: databaseUrl({ ...db.config, host: "127.0.0.1", port }),
    });
    assert.ok(down.url, "serves although the database is down");
    const answer = await fetch(new URL("/api/symbols", down.url));
    assert.equal(answer.status, 503);
    assert.match((await answer.json()).error, /connection refused/);
    const result = await down.stop();
    assert.equal(result.code, 0);
    assert.match(
      result.stderr,
      /Cannot connect to PostgreSQL at 127\.0\.0\.1:\d+\/\S+: connection refused.*; serving the chart anyway/,
    );
    assert.ok(!result.stderr.includes(db.config.password!));
  } finally {
    await db.drop();
  }
});

Deno.test("deno task demo --chart ingests and serves live candles until Ctrl-C, all rows accounted for", async () => {
  const db = await createTestDatabase({ migrate: false });
  const dataDir = await taskDataDir("tickpipe-demo-chart-");
  try {
    const demo = await startTask("demo", ["--chart", "--port", "0", "--rate", "50"], {
      DATABASE_URL: databaseUrl(db.config),
      TICKPIPE_DATA_DIR: dataDir,
    });
    assert.match(
      demo.url ?? "",
      /^http:\/\/127\.0\.0\.1:\d+\/\?symbol=BTC%2FUSD&interval=1m$/,
      demo.output,
    );
    assert.match(demo.output, /ingesting BTC\/USD, ETH\/USD, MSFT, AAPL until Ctrl-C/);
    const controller = new AbortController();
    const live = await fetch(new URL("/api/live?symbol=BTC/USD&interval=1m", demo.url), {
      signal: controller.signal,
    });
    // Two candle events of the same minute with more ticks in the second: a candle forming.
    const seen: { bucket: string; ticks: number }[] = [];
    let buffer = "";
    const decoder = new TextDecoderStream();
    assert.equal(live.status, 200);
    const reader = live.body!.pipeThrough(decoder).getReader();
    const forming = () =>
      seen.some((a, i) =>
        seen.slice(i + 1).some((b) => b.bucket === a.bucket && b.ticks > a.ticks)
      );
    const deadline = Date.now() + 30_000;
    while (!forming() && Date.now() < deadline) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      const blocks = buffer.split("\n\n");
      buffer = blocks.pop()!; // an incomplete event waits for the rest
      for (const block of blocks) {
        const data = /^event: candle\ndata: (.*)$/m.exec(block)?.[1];
        if (data) seen.push(JSON.parse(data));
      }
    }
    assert.ok(forming(), `a BTC/USD minute candle formed live: ${JSON.stringify(seen)}`);
    controller.abort();
    await reader.cancel().catch(() => {});

    const result = await demo.stop("SIGINT");
    assert.equal(result.code, 0, result.stderr);
    await assertDemoWroteAllSent(result.stdout, db.sql);
  } finally {
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    await db.drop();
  }
});
