import assert from "node:assert/strict";
import type { SimulatorHandle } from "../lib/simulator/mod.ts";
import { TEST_KEY, waitFor, withSimulator } from "./_support/sim.ts";

/** A raw WebSocket to the simulator that records every parsed frame. */
async function rawSocket(sim: SimulatorHandle) {
  const frames: Record<string, unknown>[] = [];
  const raw: string[] = [];
  const ws = new WebSocket(sim.wsUrl, { headers: { "X-TD-APIKEY": TEST_KEY } });
  ws.onmessage = (e) => {
    raw.push(e.data);
    try {
      frames.push(JSON.parse(e.data));
    } catch {
      frames.push({ event: "(invalid JSON)" });
    }
  };
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = reject;
  });
  const closed = new Promise((resolve) => ws.onclose = resolve);
  return {
    frames,
    raw,
    send: (message: unknown) => ws.send(JSON.stringify(message)),
    of: (event: string) => frames.filter((f) => f.event === event),
    close: async () => {
      ws.close();
      await closed;
    },
  };
}

Deno.test("Simulator refuses a wrong key like Twelve Data: HTTP 200 and a JSON error", async () => {
  await withSimulator({}, async (sim) => {
    const response = await fetch(sim.wsUrl.replace("ws:", "http:") + "?apikey=nope");
    assert.equal(response.status, 200);
    const body = await response.json();
    assert.equal(body.code, 401);
    assert.equal(body.status, "error");
    const ws = new WebSocket(sim.wsUrl, { headers: { "X-TD-APIKEY": "nope" } });
    const code = await new Promise((resolve) => {
      ws.onclose = (e) => resolve(e.code);
    });
    assert.notEqual(code, 1000);
    assert.equal(sim.stats().auth_failures, 2);
    assert.equal(sim.stats().connection_attempts, 2);
  });
});

Deno.test("Simulator speaks the subscribe, heartbeat, unsubscribe and reset protocol", async () => {
  await withSimulator({ rate: 400, clock: { startMs: Date.now() } }, async (sim) => {
    const ws = await rawSocket(sim);
    // Every frame the simulator counted as sent has arrived.
    const allArrived = (what: string) =>
      waitFor(() => ws.of("price").length === sim.stats().price_events_sent, what);
    try {
      ws.send({
        action: "subscribe",
        params: {
          symbols: [{ symbol: "BTC/USD" }, { symbol: "AAPL", mic_code: "XNGS" }, { symbol: "ZZZ" }],
        },
      });
      ws.send({ action: "heartbeat" });
      await waitFor(() => ws.of("heartbeat").length === 1, "the heartbeat reply");
      for (let i = 0; i < 10; i++) sim.advance(100);
      await allArrived("ticks");
      const status = ws.of("subscribe-status")[0]!;
      assert.equal(status.status, "ok");
      assert.deepEqual((status.success as { symbol: string }[]).map((s) => s.symbol), [
        "BTC/USD",
        "AAPL",
      ]);
      assert.match((status.fails as { message: string }[])[0]!.message, /not found/);
      assert.deepEqual(ws.of("heartbeat"), [{ event: "heartbeat", status: "ok" }]);
      const ticks = ws.of("price");
      assert.equal(ticks.length, 400);
      assert.ok(ticks.every((t) => Number.isInteger(t.timestamp)));
      const perSecond = new Map<unknown, number>();
      for (const t of ticks) perSecond.set(t.timestamp, (perSecond.get(t.timestamp) ?? 0) + 1);
      assert.ok([...perSecond.values()].some((n) => n > 1), "several ticks share a second");
      const volumes = ticks.filter((t) => t.symbol === "BTC/USD").map((t) =>
        t.day_volume as number
      );
      assert.ok(
        volumes.every((v, i) => i === 0 || v > volumes[i - 1]!),
        "day_volume is a running total",
      );

      ws.send({ action: "unsubscribe", params: { symbols: "BTC/USD" } });
      await waitFor(() => ws.of("unsubscribe-status").length === 1, "unsubscribe-status");
      const after = ws.frames.length;
      sim.advance(1000);
      await allArrived("the ticks after the unsubscribe");
      const later = ws.frames.slice(after);
      assert.ok(later.some((f) => f.symbol === "AAPL"), "AAPL still ticks");
      assert.ok(later.every((f) => f.symbol !== "BTC/USD"), "BTC/USD is no longer sent");

      ws.send({ action: "reset" });
      await waitFor(() => ws.of("reset-status").length === 1, "reset-status");
      const sent = sim.stats().price_events_sent;
      // The market goes on (the symbols stay live) but nobody is sent anything.
      sim.advance(1000);
      assert.equal(sim.stats().price_events_sent, sent);
      assert.equal(ws.of("price").length, sent);
      assert.equal(sim.stats().connections, 1);
    } finally {
      await ws.close();
    }
  });
});

Deno.test("Simulator price paths are deterministic for a seed", async () => {
  const run = async (seed: number) => {
    let prices: unknown[] = [];
    await withSimulator({ rate: 500, seed }, async (sim) => {
      const ws = await rawSocket(sim);
      ws.send({ action: "subscribe", params: { symbols: "ETH/USD" } });
      await waitFor(() => ws.of("price").length >= 20, "ticks");
      prices = ws.of("price").slice(0, 20).map((t) => t.price);
      await ws.close();
    });
    return prices;
  };
  const [a, b, c] = [await run(7), await run(7), await run(8)];
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
});

/** The market's BTC/USD ticks among `raw` frames (not the injected malformed or edge ones). */
const regularTicks = (raw: string[]) =>
  raw.filter((f) => f.startsWith('{"event":"price","symbol":"BTC/USD","currency_base"'));

Deno.test("Simulator control endpoint injects faults and /stats counts them", async () => {
  await withSimulator({ rate: 100, clock: { startMs: Date.now() } }, async (sim) => {
    const ws = await rawSocket(sim);
    try {
      ws.send({ action: "subscribe", params: { symbols: "BTC/USD" } });
      await waitFor(() => ws.of("subscribe-status").length === 1, "subscribe-status");
      sim.advance(100);
      await waitFor(() => ws.of("price").length === 10, "ticks");
      const post = async (path: string) => {
        const response = await fetch(sim.apiUrl + path, { method: "POST" });
        return await response.json();
      };
      assert.deepEqual(await post("/control/malformed?count=5"), { ok: true, sent: 5 });
      assert.deepEqual(await post("/control/edge?count=2"), { ok: true, sent: 2 });
      assert.equal((await post("/control/refuse-key?on=1")).refusing, true);
      assert.equal((await post("/control/refuse-key?on=0")).refusing, false);
      await waitFor(() => ws.frames.length === 1 + 10 + 5 + 2, "every frame sent so far");

      assert.deepEqual(await post("/control/stall?ms=300"), { ok: true });
      const received = sim.stats().messages_received;
      ws.send({ action: "heartbeat" });
      await waitFor(() => sim.stats().messages_received === received + 1, "the heartbeat read");
      sim.advance(200);
      assert.equal(sim.stats().price_events_sent, 10, "a stalled connection is sent no ticks");
      // The stall ends 300 ms after it began: the next 100 ms of ticks are sent again.
      sim.advance(100);
      assert.equal(sim.stats().price_events_sent, 20);
      ws.send({ action: "heartbeat" });
      await waitFor(() => ws.of("heartbeat").length > 0, "a heartbeat reply after the stall");
      // Frames arrive in order: a reply to the first heartbeat would have come first.
      assert.equal(ws.of("heartbeat").length, 1, "the heartbeat during the stall got no reply");
      assert.equal(regularTicks(ws.raw).length, 20);

      const stats = await (await fetch(sim.apiUrl + "/stats")).json();
      assert.equal(stats.malformed_sent, 5);
      assert.equal(stats.edge_sent, 2);
      assert.equal(stats.connections, 1);
      assert.equal(stats.by_symbol["BTC/USD"], stats.price_events_sent);
      assert.deepEqual(await post("/control/drop"), { ok: true });
      await waitFor(() => sim.stats().connections === 0, "the drop");
      // Every tick counted as sent arrived before the close.
      assert.equal(regularTicks(ws.raw).length, sim.stats().price_events_sent);
    } finally {
      await ws.close();
    }
  });
});

Deno.test("Simulator counts, and with recordFrames keeps, what each connection was sent", async () => {
  await withSimulator({ rate: 500, recordFrames: true }, async (sim) => {
    const first = await rawSocket(sim);
    const second = await rawSocket(sim);
    try {
      first.send({ action: "subscribe", params: { symbols: "BTC/USD,ETH/USD" } });
      await waitFor(() => first.of("price").length >= 50, "ticks on the first connection");
      second.send({ action: "subscribe", params: { symbols: "ETH/USD" } });
      await waitFor(() => second.of("price").length >= 20, "ticks on the second connection");
      first.send({ action: "reset" });
      second.send({ action: "reset" });
      await waitFor(
        () => first.of("reset-status").length + second.of("reset-status").length === 2,
        "resets",
      );
      const stats = sim.stats();
      const [a, b] = Object.keys(stats.by_connection).map(Number).sort((x, y) => x - y);
      const perConnection = (id: number, symbol: string) => stats.by_connection[id]?.[symbol] ?? 0;
      assert.equal(perConnection(b!, "BTC/USD"), 0);
      for (const symbol of ["BTC/USD", "ETH/USD"]) {
        assert.equal(
          perConnection(a!, symbol) + perConnection(b!, symbol),
          stats.by_symbol[symbol],
        );
      }
      // The record is the frames each socket received, in order.
      for (const [id, ws] of [[a!, first], [b!, second]] as const) {
        const received = ws.raw.filter((f) => f.startsWith('{"event":"price","symbol":"ETH/USD"'));
        assert.deepEqual(sim.framesSent(id, "ETH/USD"), received);
        assert.equal(received.length, perConnection(id, "ETH/USD"));
      }
    } finally {
      await first.close();
      await second.close();
    }
  });
});

Deno.test("Simulator REST serves time series windows with Twelve Data's shapes", async () => {
  await withSimulator({}, async (sim) => {
    const get = async (query: string) =>
      await (await fetch(`${sim.apiUrl}/time_series?apikey=${TEST_KEY}&${query}`)).json();
    const asc = await get(
      "symbol=AAPL&interval=1min&start_date=2024-05-13 10:00:00&end_date=2024-05-13 10:05:00&order=asc&timezone=UTC",
    );
    assert.equal(asc.status, "ok");
    assert.equal(asc.meta.currency, "USD");
    assert.deepEqual(asc.values.map((v: { datetime: string }) => v.datetime), [
      "2024-05-13 10:00:00",
      "2024-05-13 10:01:00",
      "2024-05-13 10:02:00",
      "2024-05-13 10:03:00",
      "2024-05-13 10:04:00",
    ]);
    assert.equal(typeof asc.values[0].close, "string");
    assert.equal(typeof asc.values[0].volume, "string");
    const desc = await get(
      "symbol=AAPL&interval=1min&start_date=2024-05-13 10:00:00&end_date=2024-05-13 10:05:00",
    );
    assert.deepEqual(desc.values, [...asc.values].reverse(), "same bars, newest first by default");
    const big = await get("symbol=BTC/USD&interval=1min&start_date=2024-01-01&end_date=2024-02-01");
    assert.equal(big.values.length, 5000);
    const daily = await get("symbol=EUR/USD&interval=1day&outputsize=3");
    assert.match(daily.values[0].datetime, /^\d{4}-\d{2}-\d{2}$/);
    assert.equal(daily.values[0].volume, undefined);

    for (
      const [query, code] of [
        ["interval=1min", 400],
        ["symbol=NOPE&interval=1min", 404],
        ["symbol=AAPL&interval=3min", 400],
        ["symbol=AAPL&interval=1min&outputsize=6000", 400],
        ["symbol=AAPL&interval=1min&start_date=2030-01-01&end_date=2030-01-02", 400],
      ] as const
    ) {
      const body = await get(query);
      assert.equal(body.status, "error", query);
      assert.equal(body.code, code, query);
    }
  });
});

Deno.test("Simulator with maxTicks sends exactly that many price events, then stops", async (t) => {
  for (const rate of ["max", 2000] as const) {
    await t.step(`at rate ${rate}`, async () => {
      const options = { rate, generatedSymbols: 5, maxTicks: 777, clock: { startMs: Date.now() } };
      await withSimulator(options, async (sim) => {
        const ws = await rawSocket(sim);
        try {
          const symbols = ["SYM001/USD", "SYM002/USD", "SYM003/USD", "SYM004/USD", "SYM005/USD"];
          ws.send({ action: "subscribe", params: { symbols: symbols.join(",") } });
          await waitFor(() => ws.of("subscribe-status").length === 1, "subscribe-status");
          // Rate mode makes 2000 a second of its clock; max mode sends on its own.
          if (rate !== "max") sim.advance(1000);
          await waitFor(() => ws.of("price").length >= 777, "777 ticks", 10_000);
          if (rate !== "max") sim.advance(10_000);
          assert.equal(sim.stats().price_events_sent, 777);
          // Frames arrive in order: once the reply is in, so is every tick sent before it.
          ws.send({ action: "heartbeat" });
          await waitFor(() => ws.of("heartbeat").length === 1, "the heartbeat reply");
          assert.equal(ws.of("price").length, 777);
          const stats = await (await fetch(sim.apiUrl + "/stats")).json();
          assert.equal(stats.price_events_sent, 777);
          assert.equal(typeof stats.first_price_sent_at, "number");
          assert.ok(stats.last_price_sent_at >= stats.first_price_sent_at);
        } finally {
          await ws.close();
        }
      });
    });
  }
});
