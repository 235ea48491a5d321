/**
 * The simulator's REST truth: /time_series serves the 1-minute bars of every tick the market
 * made, those a disconnected client missed included, and limits credits like a plan.
 */
import assert from "node:assert/strict";
import type { SimulatorHandle } from "../lib/simulator/mod.ts";
import { TEST_KEY, waitFor, withSimulator } from "./_support/sim.ts";

const MINUTE = 60_000;

/** An hour boundary a day ago: valid tick times, well in the past, far from midnight's reset. */
function pastHour(): number {
  return Math.floor((Date.now() - 86_400_000) / 3_600_000) * 3_600_000;
}

interface Frame {
  event: string;
  symbol: string;
  timestamp: number;
  price: number;
  day_volume?: number;
}

async function listen(sim: SimulatorHandle, symbols: string) {
  const ticks: Frame[] = [];
  const ws = new WebSocket(sim.wsUrl, { headers: { "X-TD-APIKEY": TEST_KEY } });
  ws.onmessage = (e) => {
    const frame = JSON.parse(e.data) as Frame;
    if (frame.event === "price") ticks.push(frame);
  };
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = reject;
  });
  const closed = new Promise((resolve) => ws.onclose = resolve);
  ws.send(JSON.stringify({ action: "subscribe", params: { symbols } }));
  await waitFor(() => sim.stats().subscriptions === symbols.split(",").length, "subscribed");
  return {
    ticks,
    close: async () => {
      ws.close();
      await closed;
    },
  };
}

async function series(sim: SimulatorHandle, query: string) {
  const response = await fetch(`${sim.apiUrl}/time_series?${query}`, {
    headers: { Authorization: `apikey ${TEST_KEY}` },
  });
  return {
    headers: response.headers,
    body: await response.json() as {
      status: string;
      code?: number;
      message?: string;
      meta: Record<string, string>;
      values: Record<string, string>[];
    },
  };
}

const iso = (ms: number) => new Date(ms).toISOString().slice(0, 19).replace("T", " ");

Deno.test("Simulator bars are the ticks it made, sent or not, on a clock the test drives", async () => {
  const start = pastHour();
  await withSimulator({ rate: 5, clock: { startMs: start } }, async (sim) => {
    const first = await listen(sim, "BTC/USD,AAPL");
    for (let s = 0; s < 120; s++) sim.advance(1000);
    await waitFor(() => first.ticks.length === sim.stats().price_events_sent, "the first ticks");
    await first.close();
    await waitFor(() => sim.stats().connections === 0, "the close");
    // Nobody listens for three minutes: the market goes on.
    sim.advance(3 * MINUTE);
    const second = await listen(sim, "BTC/USD,AAPL");
    for (let s = 0; s < 120; s++) sim.advance(1000);
    await waitFor(
      () => second.ticks.length + first.ticks.length === sim.stats().price_events_sent,
      "the second ticks",
    );
    await second.close();
    assert.equal(sim.now(), start + 7 * MINUTE);

    const received = [...first.ticks, ...second.ticks];
    const { body, headers } = await series(
      sim,
      `symbol=AAPL&interval=1min&start_date=${iso(start)}&end_date=${
        iso(start + 7 * MINUTE)
      }&order=asc&timezone=UTC`,
    );
    assert.equal(body.status, "ok");
    assert.equal(headers.get("api-credits-used"), "1");
    assert.deepEqual(
      body.values.map((v) => v.datetime),
      [0, 1, 2, 3, 4, 5, 6].map((i) => iso(start + i * MINUTE)),
      "every minute has a bar, the missed ones included",
    );
    const inMinute = (i: number) =>
      received.filter((t) =>
        t.symbol === "AAPL" && t.timestamp * 1000 >= start + i * MINUTE &&
        t.timestamp * 1000 < start + (i + 1) * MINUTE
      );
    const lastDayVolume = (i: number) => i < 0 ? 0 : inMinute(i).at(-1)!.day_volume!;
    for (const [i, value] of body.values.entries()) {
      assert.ok(Object.values(value).every((v) => typeof v === "string"));
      const ticks = inMinute(i);
      if (i >= 2 && i < 5) {
        assert.equal(ticks.length, 0, "a minute nobody received");
        continue;
      }
      const prices = ticks.map((t) => t.price);
      assert.ok(prices.length > 0);
      assert.deepEqual(
        [value.open, value.high, value.low, value.close].map(Number),
        [prices[0], Math.max(...prices), Math.min(...prices), prices.at(-1)],
      );
      // A minute's volume is the rise of day_volume across it.
      if (i !== 5) assert.equal(Number(value.volume), lastDayVolume(i) - lastDayVolume(i - 1));
    }
    const missed = body.values.slice(2, 6).reduce((n, v) => n + Number(v.volume), 0);
    assert.equal(missed, lastDayVolume(5) - lastDayVolume(1), "the missed minutes' volume");
    // Coarser bars are aggregates of the minutes.
    const hour = await series(
      sim,
      `symbol=AAPL&interval=1h&start_date=${iso(start - 3_600_000)}&end_date=${
        iso(start + 3_600_000)
      }&order=asc`,
    );
    const minutes = body.values;
    const last = hour.body.values.at(-1)!;
    assert.ok(Number(last.high) >= Math.max(...minutes.map((v) => Number(v.high))));
    assert.equal(last.close, minutes.at(-1)!.close);
  });
});

Deno.test("Simulator REST credits: headers, 429 bodies past the minute's limit, reset on the next", async (t) => {
  for (const httpErrorStatus of [false, true]) {
    await t.step(`429 as ${httpErrorStatus ? "HTTP status" : "a body with HTTP 200"}`, async () => {
      const start = pastHour();
      await withSimulator({ rate: 1, clock: { startMs: start } }, async (sim) => {
        const as = httpErrorStatus ? "http" : "body";
        const set = await fetch(`${sim.apiUrl}/control/credits?per_minute=3&per_day=5&as=${as}`, {
          method: "POST",
        });
        assert.deepEqual(await set.json(), { ok: true, per_minute: 3, per_day: 5 });
        const query = `symbol=BTC/USD&interval=1min&outputsize=2`;
        const lefts: (string | null)[] = [];
        for (let i = 0; i < 3; i++) {
          const { body, headers } = await series(sim, query);
          assert.equal(body.status, "ok");
          lefts.push(headers.get("api-credits-left"));
        }
        assert.deepEqual(lefts, ["2", "1", "0"]);
        const response = await fetch(`${sim.apiUrl}/time_series?${query}`, {
          headers: { Authorization: `apikey ${TEST_KEY}` },
        });
        assert.equal(response.status, httpErrorStatus ? 429 : 200);
        const limited = await response.json();
        assert.equal(limited.code, 429);
        assert.equal(limited.status, "error");
        assert.match(limited.message, /run out of API credits for the current minute/);
        sim.advance(MINUTE);
        assert.equal((await series(sim, query)).body.status, "ok");
        assert.equal((await series(sim, query)).body.status, "ok");
        const daily = await series(sim, query);
        assert.equal(daily.body.code, 429);
        assert.match(daily.body.message!, /for the day/);
        const stats = sim.stats();
        assert.equal(stats.rest_credits_used, 5);
        assert.equal(stats.rest_rate_limited, 2);
      });
    });
  }
});
