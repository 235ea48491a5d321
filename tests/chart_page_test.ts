/**
 * The chart page in a real Chromium against a real database with known ticks: what the
 * chart's series hold is compared with what the database returns.
 */
import assert from "node:assert/strict";
import type { Page } from "playwright-core";
import { type CandleInterval, fetchCandles } from "../lib/candles/mod.ts";
import { type ChartServer, serveChart } from "../lib/chart/server.ts";
import { connect } from "../lib/db/connection.ts";
import { distinctColours, launchBrowser, type TestBrowser } from "./_support/browser.ts";
import { createTestDatabase, type TestDatabase } from "./_support/db.ts";
import { startProxy } from "./_support/proxy.ts";
import { type CandleTick, insertTicks } from "./_support/ticks.ts";

const MINUTE = 60_000;
const DAY = 24 * 60 * MINUTE;

/** What `window.__tickpipeChart` gives (see lib/chart/page/chart.js). */
interface ChartState {
  symbol: string;
  interval: CandleInterval;
  from: number;
  to: number;
  status: string;
  loads: number;
  notice?: string;
  banner?: string;
  legend: string;
}
interface Bar {
  time: number;
  open: number;
  high: number;
  low: number;
  close: number;
}

const chartState = (page: Page) =>
  page.evaluate("globalThis.__tickpipeChart.state()") as Promise<ChartState>;
const chartCandles = (page: Page) =>
  page.evaluate("globalThis.__tickpipeChart.candles()") as Promise<Bar[]>;
const chartVolumes = (page: Page) =>
  page.evaluate("globalThis.__tickpipeChart.volumes()") as Promise<
    { time: number; value: number }[]
  >;

/** Waits (polling the page) until `condition` holds for its state; names `what` on timeout. */
async function waitForState(
  page: Page,
  condition: (state: ChartState) => boolean,
  what: string,
  timeoutMs = 20_000,
): Promise<ChartState> {
  const deadline = Date.now() + timeoutMs;
  let state: ChartState | undefined;
  while (Date.now() < deadline) {
    state = await chartState(page).catch(() => undefined);
    if (state && condition(state)) return state;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`Timed out waiting for ${what}; page state: ${JSON.stringify(state)}`);
}

/** The database's candles for what the page shows, as chart bars (UTC seconds). */
async function databaseBars(db: TestDatabase, state: ChartState): Promise<Bar[]> {
  const candles = await fetchCandles(db.sql, {
    symbol: state.symbol,
    interval: state.interval,
    from: new Date(state.from * 1000),
    to: new Date(state.to * 1000),
  });
  return candles.map((c) => ({
    time: c.bucket.getTime() / 1000,
    open: c.open,
    high: c.high,
    low: c.low,
    close: c.close,
  }));
}

/** Known ticks: BTC/USD every 30 s for 3 hours, and 3 days earlier; ETH/USD every 10 min for 2 days. */
function fixture(now: number): CandleTick[] {
  const ticks: CandleTick[] = [];
  const add = (symbol: string, time: number, price: number, volume: number) =>
    ticks.push({
      symbol,
      time: Math.floor(time / 1000) * 1000,
      ordinal: 0,
      price,
      volume: String(volume),
      dayVolume: String(volume),
    });
  for (let i = 0; i < 360; i++) {
    add(
      "BTC/USD",
      now - 3 * 60 * MINUTE + i * 30_000,
      64_000 + 40 * Math.sin(i / 9) + (i % 5),
      1 + (i % 4),
    );
  }
  for (let i = 0; i < 120; i++) {
    add("BTC/USD", now - 3 * DAY + i * 30_000, 61_000 + (i % 11), 2);
  }
  for (let i = 0; i < 288; i++) {
    add(
      "ETH/USD",
      now - 2 * DAY + i * 10 * MINUTE,
      3_200 + 25 * Math.cos(i / 7) + (i % 3),
      0.5 + (i % 3),
    );
  }
  return ticks;
}

async function withPage(
  fn: (page: Page, browser: TestBrowser) => Promise<void>,
  chart: ChartServer,
  path = "/",
) {
  const browser = await launchBrowser();
  try {
    const page = await browser.newPage();
    await page.goto(new URL(path, chart.url).href);
    await fn(page, browser);
    assert.deepEqual(browser.pageErrors, [], "no script errors");
    assert.deepEqual(browser.blocked.map(String), [], "no request outside 127.0.0.1");
    assert.ok(browser.requests.length > 0);
    for (const url of browser.requests) assert.equal(url.hostname, "127.0.0.1", String(url));
  } finally {
    await browser.close();
  }
}

Deno.test("The chart page shows exactly the database's candles, switches symbol and interval, and follows new ticks live", async (t) => {
  const db = await createTestDatabase();
  const now = Date.now();
  await insertTicks(db.sql, fixture(now));
  await db
    .sql`INSERT INTO crypto_assets VALUES ('BTC/USD', 'Bitcoin/US Dollar'), ('ETH/USD', 'Ethereum/US Dollar')`;
  const chart = serveChart({ sql: db.sql, database: db.config, port: 0, pollMs: 100 });
  try {
    await withPage(async (page, browser) => {
      await t.step("the default view: BTC/USD minute candles of the last day", async () => {
        const state = await waitForState(page, (s) => s.loads >= 1, "the first load");
        assert.equal(state.symbol, "BTC/USD");
        assert.equal(state.interval, "1m");
        assert.equal(state.to - state.from, 86_400);
        const expected = await databaseBars(db, state);
        assert.ok(expected.length >= 180 && expected.length <= 181, `${expected.length} candles`);
        assert.deepEqual(await chartCandles(page), expected);
        const volumes = await chartVolumes(page);
        assert.deepEqual(volumes.map((v) => v.time), expected.map((b) => b.time));
        assert.equal(state.notice, undefined);
        assert.match(state.legend, /^BTC\/USD · 1mBitcoin\/US Dollar/);
        assert.equal(await page.locator("#symbol").inputValue(), "BTC/USD");
        assert.match(page.url(), /\?symbol=BTC%2FUSD&interval=1m$/);
      });

      await t.step("the screenshot is a chart, not a blank page", async () => {
        const png = await page.screenshot();
        const colours = await distinctColours(browser, png);
        assert.ok(colours > 30, `${colours} distinct colours`);
      });

      await t.step(
        "the crosshair legend shows O/H/L/C/V/VWAP/ticks of the candle under it",
        async () => {
          const box = (await page.locator("#chart").boundingBox())!;
          await page.mouse.move(box.x + box.width * 0.6, box.y + box.height * 0.5);
          const state = await waitForState(page, (s) => /VWAP/.test(s.legend), "the legend");
          const match =
            /(\d{4}-\d\d-\d\d \d\d:\d\d)O([\d.]+)H([\d.]+)L([\d.]+)C([\d.]+)V([\d.KMB]+)VWAP([\d.]+)Ticks(\d+)$/
              .exec(state.legend);
          assert.ok(match, state.legend);
          const bucket = Date.parse(match[1]!.replace(" ", "T") + "Z");
          const [candle] = await fetchCandles(db.sql, {
            symbol: "BTC/USD",
            interval: "1m",
            from: new Date(bucket),
            to: new Date(bucket + MINUTE),
          });
          assert.ok(candle, `a candle at ${match[1]}`);
          // Shown with the chart's price precision (the decimals of the prices, 2 to 8).
          const places = match[2]!.split(".")[1]?.length ?? 0;
          assert.equal(match[2], candle.open.toFixed(places));
          assert.equal(match[5], candle.close.toFixed(places));
          assert.equal(match[7], candle.vwap!.toFixed(places));
          assert.equal(Number(match[8]), candle.ticks);
        },
      );

      await t.step("switching the interval to 1h and 1d shows those candles", async () => {
        for (const interval of ["1h", "1d"] as const) {
          const loads = (await chartState(page)).loads;
          await page.click(`#intervals button[data-interval="${interval}"]`);
          const state = await waitForState(
            page,
            (s) => s.interval === interval && s.loads > loads,
            `the ${interval} load`,
          );
          const expected = await databaseBars(db, state);
          assert.ok(expected.length >= (interval === "1h" ? 3 : 2), `${interval}: some candles`);
          assert.deepEqual(await chartCandles(page), expected, interval);
        }
      });

      await t.step("switching the symbol to ETH/USD shows its candles", async () => {
        const loads = (await chartState(page)).loads;
        await page.selectOption("#symbol", "ETH/USD");
        const state = await waitForState(
          page,
          (s) => s.symbol === "ETH/USD" && s.loads > loads,
          "the ETH/USD load",
        );
        assert.equal(state.interval, "1d");
        assert.deepEqual(await chartCandles(page), await databaseBars(db, state));
        await page.click('#intervals button[data-interval="1h"]');
        const hourly = await waitForState(
          page,
          (s) => s.interval === "1h" && s.loads > state.loads,
          "1h",
        );
        const expected = await databaseBars(db, hourly);
        assert.ok(expected.length >= 48);
        assert.deepEqual(await chartCandles(page), expected);
        assert.match(page.url(), /\?symbol=ETH%2FUSD&interval=1h$/);
      });

      await t.step("a tick inserted while the page is open moves the last candle", async () => {
        await waitForState(page, (s) => s.status === "live", "the live stream");
        const before = (await chartCandles(page)).at(-1)!;
        const time = Math.floor(Date.now() / 1000) * 1000;
        const price = before.high + 123.25;
        await insertTicks(db.sql, [{
          symbol: "ETH/USD",
          time,
          ordinal: 7,
          price,
          volume: "4",
          dayVolume: "4",
        }]);
        const deadline = Date.now() + 20_000;
        let last = before;
        while (last.high !== price && Date.now() < deadline) {
          await new Promise((resolve) => setTimeout(resolve, 50));
          last = (await chartCandles(page)).at(-1)!;
        }
        assert.equal(last.high, price, "the live candle reached the page");
        assert.equal(last.close, price);
        const state = await chartState(page);
        const expected = await databaseBars(db, {
          ...state,
          to: Math.ceil(Date.now() / 1000) + 3600,
        });
        assert.deepEqual(last, expected.at(-1));
      });

      await t.step("scrolling left loads older candles, across a gap in the history", async () => {
        const loads = (await chartState(page)).loads;
        await page.selectOption("#symbol", "BTC/USD");
        const btc = await waitForState(page, (s) => s.loads > loads, "the BTC/USD load");
        await page.click('#intervals button[data-interval="1m"]');
        const state = await waitForState(
          page,
          (s) => s.interval === "1m" && s.loads > btc.loads && s.notice === undefined,
          "BTC/USD 1m",
        );
        assert.equal(state.symbol, "BTC/USD");
        const box = (await page.locator("#chart").boundingBox())!;
        const y = box.y + box.height / 2;
        await page.mouse.move(box.x + 100, y);
        await page.mouse.down();
        await page.mouse.move(box.x + box.width - 100, y, { steps: 10 });
        await page.mouse.up();
        const older = await waitForState(
          page,
          (s) => s.from <= (now - 3 * DAY) / 1000,
          "the older candles",
        );
        const expected = await databaseBars(db, older);
        const oldDay = expected.filter((b) => b.time < (now - 2 * DAY) / 1000);
        assert.ok(oldDay.length >= 60, "the hour 3 days ago is there");
        assert.deepEqual(await chartCandles(page), expected);
        assert.ok(older.from < state.from);
      });
    }, chart);
  } finally {
    await chart.close();
    await db.drop();
  }
});

Deno.test("The chart page says so when there are no ticks or the database is down, and recovers", async (t) => {
  const db = await createTestDatabase();
  const proxy = startProxy(db.config);
  const via = { ...db.config, host: "127.0.0.1", port: proxy.port };
  const sql = connect(via, { max: 2, connectTimeout: 2 });
  const chart = serveChart({ sql, database: via, port: 0, pollMs: 100 });
  try {
    await withPage(async (page) => {
      await t.step("no ticks: a notice saying how to get some, not an empty chart", async () => {
        const state = await waitForState(page, (s) => s.notice !== undefined, "the notice");
        assert.equal(state.notice, "No ticks yet");
        assert.match(await page.locator("#notice").innerText(), /deno task demo --chart/);
        assert.ok(await page.locator("#notice").isVisible());
      });

      await t.step("ticks arrive: the page finds them by itself", async () => {
        await insertTicks(db.sql, fixture(Date.now()).filter((t) => t.symbol === "ETH/USD"));
        const state = await waitForState(page, (s) => s.loads >= 1, "the chart", 30_000);
        assert.equal(state.notice, undefined);
        assert.equal(state.symbol, "ETH/USD");
        assert.deepEqual(await chartCandles(page), await databaseBars(db, state));
      });

      await t.step(
        "the database goes away: a banner with the reason, the candles stay",
        async () => {
          await waitForState(page, (s) => s.status === "live", "live");
          const candles = await chartCandles(page);
          proxy.cut();
          const state = await waitForState(page, (s) => s.banner !== undefined, "the banner");
          assert.match(
            state.banner!,
            new RegExp(`^Cannot connect to PostgreSQL at 127\\.0\\.0\\.1:${proxy.port}/`),
          );
          assert.ok(!state.banner!.includes(db.config.password!));
          assert.equal(state.status, "down");
          assert.deepEqual(await chartCandles(page), candles);
        },
      );

      await t.step("the database returns: the page reloads and is live again", async () => {
        const loads = (await chartState(page)).loads;
        proxy.restore();
        const state = await waitForState(
          page,
          (s) => s.loads > loads && s.banner === undefined && s.status === "live",
          "the reload",
        );
        assert.deepEqual(await chartCandles(page), await databaseBars(db, state));
      });

      await t.step("opened while the database is down: a clear page, then the chart", async () => {
        proxy.cut();
        await page.reload();
        const state = await waitForState(page, (s) => s.notice !== undefined, "the notice");
        assert.equal(state.notice, "Cannot read the candles");
        assert.match(
          await page.locator("#notice-detail").innerText(),
          /^Cannot connect to PostgreSQL at 127\.0\.0\.1:\d+\/\S+: /,
        );
        assert.ok(await page.locator("#notice").isVisible());
        proxy.restore();
        const back = await waitForState(
          page,
          (s) => s.loads >= 1 && s.notice === undefined,
          "recovery",
          30_000,
        );
        assert.deepEqual(await chartCandles(page), await databaseBars(db, back));
      });
    }, chart);
  } finally {
    await chart.close();
    await sql.end({ timeout: 1 });
    await proxy.close();
    await db.drop();
  }
});
