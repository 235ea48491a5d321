import assert from "node:assert/strict";
import {
  AuthError,
  type ConnectionEvent,
  parseFrame,
  PRICE_LIMITS,
  type PriceEvent,
  type SubscribeStatusEvent,
  TwelveDataClient,
  TwelveDataError,
  type TwelveDataEvent,
  TwelveDataRest,
} from "../lib/twelvedata/mod.ts";
import { run as wsTest } from "../tasks/ws_test.ts";
import { ManualTimers } from "./_support/manual_timers.ts";
import { freePort, permissionSet } from "./_support/run.ts";
import {
  captureLogger,
  TEST_KEY,
  testClientOptions,
  waitFor,
  withSimulator,
} from "./_support/sim.ts";

function prices(events: TwelveDataEvent[], symbol: string): PriceEvent[] {
  return events.filter((e): e is PriceEvent => e.event === "price" && e.symbol === symbol);
}

Deno.test("parseFrame accepts every documented variant", () => {
  const now = Date.UTC(2024, 4, 13, 12);
  const seconds = parseFrame(
    '{"event":"price","symbol":"BTC/USD","timestamp":1715601600,"price":30361.2,"bid":1,"extra":true}',
    now,
  );
  assert.equal(seconds.event, "price");
  assert.equal((seconds as PriceEvent).timeMs, 1715601600_000);
  const millis = parseFrame(
    '{"event":"price","symbol":"X","timestamp":1715601600123,"price":1}',
    now,
  );
  assert.equal((millis as PriceEvent).timeMs, 1715601600123);

  const nulls = parseFrame(
    '{"event":"subscribe-status","status":"ok","success":null,"fails":null}',
  );
  assert.deepEqual((nulls as SubscribeStatusEvent).success, []);
  assert.deepEqual((nulls as SubscribeStatusEvent).fails, []);
  const messages = parseFrame('{"event":"subscribe-status","status":"error","messages":["No"]}');
  assert.deepEqual((messages as SubscribeStatusEvent).messages, ["No"]);
  const fail = parseFrame(
    '{"event":"subscribe-status","status":"warning","success":["AAPL"],"fails":[{"symbol":"1211","message":"You are not authorized"}]}',
  ) as SubscribeStatusEvent;
  assert.equal(fail.status, "warning");
  assert.deepEqual(fail.success, [{ symbol: "AAPL" }]);
  assert.equal(fail.fails[0]?.message, "You are not authorized");

  assert.equal(parseFrame('{"event":"reset-status","anything":[1]}').event, "reset-status");
  assert.equal(parseFrame('{"event":"unsubscribe-status"}').event, "unsubscribe-status");
  assert.deepEqual(parseFrame('{"event":"news","x":1}'), {
    event: "unknown",
    name: "news",
    payload: { event: "news", x: 1 },
  });
});

Deno.test("A price frame is a tick only within PRICE_LIMITS, and a refusal names its reason", () => {
  const now = Date.UTC(2024, 4, 13, 12);
  const t = now / 1000;
  const frame = (fields: Record<string, unknown>) =>
    JSON.stringify({ event: "price", symbol: "BTC/USD", timestamp: t, price: 1, ...fields });
  const ahead = PRICE_LIMITS.maxAheadMs / 1000;
  for (
    const good of [
      {},
      { price: PRICE_LIMITS.maxPrice * 0.999, day_volume: 0, bid: 0 },
      { timestamp: t + ahead },
      { timestamp: now + PRICE_LIMITS.maxAheadMs }, // milliseconds
      ...["^GSPC", "BRK.B", "EUR=X", "XETR:SAP", "BTC-USD", "A_B", "X".repeat(32)].map((
        symbol,
      ) => ({ symbol })),
    ]
  ) {
    assert.equal(parseFrame(frame(good), now).event, "price", JSON.stringify(good));
  }
  const cases: [string, string][] = [
    ["{", "invalid JSON"],
    ["[]", "not a JSON object"],
    ['{"price":1}', "no event name"],
    [frame({ price: "1" }), "invalid price"],
    [frame({ price: undefined }), "missing price"],
    [frame({ price: null }), "missing price"],
    ['{"event":"price","symbol":"X","timestamp":1715601600,"price":1e400}', "invalid price"],
    [frame({ price: -1 }), "invalid price"],
    [frame({ price: 0 }), "invalid price"],
    [frame({ price: PRICE_LIMITS.maxPrice }), "invalid price"],
    [frame({ symbol: undefined }), "missing symbol"],
    [frame({ symbol: 42 }), "invalid symbol"],
    [frame({ symbol: "" }), "invalid symbol"],
    [frame({ symbol: "'; DROP TABLE crypto_ticks;--" }), "invalid symbol"],
    [frame({ symbol: "BTC\tUSD" }), "invalid symbol"],
    [frame({ symbol: "X".repeat(33) }), "invalid symbol"],
    [frame({ symbol: "ÆØÅ/€" }), "invalid symbol"],
    [frame({ timestamp: "now" }), "invalid timestamp"],
    [frame({ timestamp: undefined }), "missing timestamp"],
    [frame({ timestamp: t + ahead + 1 }), "timestamp out of range"],
    [frame({ timestamp: 1 }), "timestamp out of range"],
    [frame({ bid: -5 }), "invalid bid"],
    [frame({ day_volume: "12" }), "invalid day_volume"],
    [frame({ currency_base: 7 }), "invalid currency_base"],
    ['{"event":"subscribe-status","success":[]}', "invalid subscribe-status"],
  ];
  for (const [text, reason] of cases) {
    const result = parseFrame(text, now);
    assert.equal(result.event, "malformed", text);
    assert.equal(result.event === "malformed" && result.reason, reason, text);
    // A frame with a key the schema strips takes the schema's path: the same verdict.
    if (text.startsWith('{"event":"price"')) {
      const extra = parseFrame(text.replace("{", '{"extra":1,'), now);
      assert.equal(extra.event === "malformed" && extra.reason, reason, `${text} (extra key)`);
    }
  }
});

Deno.test("Client subscribes and receives ticks for crypto, stocks and forex", async (t) => {
  await withSimulator({ rate: 300 }, async (sim) => {
    for (const auth of ["header", "query"] as const) {
      await t.step(`with the key in the ${auth}`, async () => {
        const events: TwelveDataEvent[] = [];
        const client = new TwelveDataClient(
          testClientOptions(sim, { auth, onEvent: (e) => events.push(e) }),
        );
        try {
          client.subscribe("BTC/USD,AAPL");
          client.subscribe([{ symbol: "EUR/USD", type: "Physical Currency" }]);
          await client.start();
          await waitFor(
            () => ["BTC/USD", "AAPL", "EUR/USD"].every((s) => prices(events, s).length >= 3),
            "ticks of every symbol",
          );
          assert.ok(client.connected);
          const status = events.filter((e) => e.event === "subscribe-status");
          assert.equal(status.length, 1, "one subscribe for everything wanted before connecting");

          const btc = prices(events, "BTC/USD")[0]!;
          assert.equal(btc.currency_base, "Bitcoin");
          assert.equal(btc.currency_quote, "US Dollar");
          assert.equal(btc.type, "Digital Currency");
          assert.ok(btc.bid! > 0 && btc.ask! >= btc.bid!);
          assert.ok(btc.day_volume! > 0);
          assert.equal(btc.timeMs, btc.timestamp * 1000);
          assert.ok(Math.abs(btc.timeMs - Date.now()) < 5_000);

          const aapl = prices(events, "AAPL")[0]!;
          assert.equal(aapl.currency, "USD");
          assert.equal(aapl.type, "Common Stock");
          assert.ok(aapl.day_volume! > 0);
          assert.equal(aapl.bid, undefined);

          const eur = prices(events, "EUR/USD")[0]!;
          assert.equal(eur.currency_base, "Euro");
          assert.ok(eur.bid! > 0 && eur.ask! > 0);
          assert.equal(eur.day_volume, undefined);

          const stats = client.stats();
          assert.deepEqual(Object.keys(stats.lastTickMs).sort(), ["AAPL", "BTC/USD", "EUR/USD"]);
          assert.equal(stats.malformed, 0);
        } finally {
          await client.close();
        }
      });
    }
  });
});

Deno.test("Client reconnects after a server-side drop, resubscribes and ticks resume", async () => {
  await withSimulator({ rate: 200 }, async (sim) => {
    const events: TwelveDataEvent[] = [];
    const { logger, lines } = captureLogger();
    const client = new TwelveDataClient(
      testClientOptions(sim, { logger, onEvent: (e) => events.push(e) }),
    );
    try {
      client.subscribe("BTC/USD,ETH/USD");
      await client.start();
      await waitFor(() => client.stats().ticks >= 10, "first ticks");
      const droppedAt = Date.now();
      await sim.drop();
      await waitFor(() => client.stats().reconnects === 1 && client.connected, "a reconnect");
      // The first retry waits at most backoffBaseMs (100 ms), jittered from half of it.
      const waits = lines.map((l) => /Reconnecting to Twelve Data in (\d+) ms/.exec(l)?.[1])
        .filter((ms) => ms !== undefined).map(Number);
      assert.equal(waits.length, 1, lines.join("\n"));
      assert.ok(waits[0]! >= 50 && waits[0]! <= 100, `${waits}`);
      await waitFor(
        () =>
          ["BTC/USD", "ETH/USD"].every((s) =>
            prices(events, s).some((e) => e.timeMs >= droppedAt - 1000)
          ) &&
          sim.stats().connections === 1 && client.stats().ticks > 40,
        "ticks after the reconnect",
      );
      assert.equal(events.filter((e) => e.event === "subscribe-status").length, 2);
      assert.deepEqual(client.stats().subscribed.sort(), ["BTC/USD", "ETH/USD"]);
    } finally {
      await client.close();
    }
  });
});

Deno.test("Client watchdog heals a stalled connection but tolerates a quiet one", async (t) => {
  await withSimulator({ rate: 100 }, async (sim) => {
    await t.step("a stall is detected and healed", async () => {
      const { logger, lines } = captureLogger();
      const timers = new ManualTimers();
      const changes: ConnectionEvent[] = [];
      const client = new TwelveDataClient(
        testClientOptions(sim, { logger, timers, onConnection: (e) => changes.push(e) }),
      );
      try {
        client.subscribe("BTC/USD");
        await client.start();
        await waitFor(() => client.stats().ticks >= 5, "first ticks");
        sim.stall(30_000);
        // The watchdog checks every 200 ms: the first check after the last frame starts the
        // silence, the fifth after it reaches watchdogMs (1 s) and gives up.
        timers.advance(1_000);
        assert.equal(client.state, "open");
        timers.advance(200);
        assert.equal(client.state, "waiting");
        assert.ok(lines.some((l) => l.includes("No data from Twelve Data for 1000 ms")));
        assert.deepEqual(changes.map((e) => e.type), ["open", "stalled"]);
        assert.equal(changes[1]!.type === "stalled" && changes[1]!.silentMs, 1_000);
        // The reconnect waits at most backoffBaseMs (100 ms); the stall was the old socket's.
        timers.advance(100);
        await waitFor(() => client.stats().reconnects === 1 && client.connected, "a reconnect");
        const ticks = client.stats().ticks;
        await waitFor(() => client.stats().ticks > ticks + 5, "ticks after healing");
      } finally {
        await client.close();
      }
    });

    await t.step("heartbeat replies keep a quiet connection alive", async () => {
      const timers = new ManualTimers();
      const client = new TwelveDataClient(
        testClientOptions(sim, { heartbeatMs: 100, watchdogMs: 400, timers }),
      );
      try {
        await client.start(); // no subscriptions: only heartbeat replies arrive
        // 2 s of the client's time, five times the watchdog's limit; each heartbeat is
        // answered before time moves on.
        for (let i = 1; i <= 20; i++) {
          timers.advance(100);
          await waitFor(() => client.stats().heartbeats === i, `heartbeat reply ${i}`);
        }
        assert.equal(client.stats().reconnects, 0);
        assert.ok(client.connected);
      } finally {
        await client.close();
      }
    });
  });
});

Deno.test("Client counts malformed frames and unknown events without losing the stream", async () => {
  await withSimulator({ rate: 100 }, async (sim) => {
    const events: TwelveDataEvent[] = [];
    const { logger, lines } = captureLogger();
    const client = new TwelveDataClient(
      testClientOptions(sim, { logger, onEvent: (e) => events.push(e) }),
    );
    try {
      client.subscribe("BTC/USD");
      await client.start();
      await waitFor(() => client.stats().ticks >= 3, "first ticks");
      const sent = sim.malformed(28);
      assert.equal(sent, 28);
      sim.edgeCases(4); // one valid tick with a millisecond timestamp, three hostile symbols
      sim.sendRaw('{"event":"message-processing","status":"error","messages":["x"]}');
      await waitFor(() => client.stats().malformed === 28 + 3, "malformed frames counted");
      await waitFor(() => client.stats().unknown === 1, "the unknown event");
      const ticks = client.stats().ticks;
      await waitFor(() => client.stats().ticks > ticks + 5, "ticks after the garbage");
      assert.equal(client.stats().reconnects, 0);
      assert.equal(client.stats().malformedByReason["invalid symbol"], 2 + 3);
      // Rate-limited: 31 malformed frames give at most 5 log lines.
      assert.ok(lines.filter((l) => l.includes("malformed frame")).length <= 5);
      assert.ok(!events.some((e) => e.event === "price" && e.symbol.includes("DROP TABLE")));
      // A millisecond timestamp is converted.
      const ms = prices(events, "BTC/USD").find((e) => e.timestamp > 1e12);
      assert.ok(ms && Math.abs(ms.timeMs - Date.now()) < 5_000);
      const unknown = events.find((e) => e.event === "unknown");
      assert.deepEqual(
        unknown && unknown.event === "unknown" && unknown.name,
        "message-processing",
      );
    } finally {
      await client.close();
    }
  });
});

Deno.test("A bad key ends with one AuthError and no retry storm", async (t) => {
  await withSimulator({ rate: 50 }, async (sim) => {
    await t.step("at the first connect", async () => {
      const badKey = "wrong-key-0a1b2c3d";
      const { logger, lines } = captureLogger();
      const timers = new ManualTimers();
      const client = new TwelveDataClient(
        testClientOptions(sim, { apiKey: badKey, logger, auth: "query", timers }),
      );
      try {
        client.subscribe("BTC/USD");
        const error = await client.start().then(() => undefined, (e) => e);
        assert.ok(error instanceof AuthError, String(error));
        assert.match(error.message, /^Twelve Data rejected the API key \(401\): /);
        assert.ok(!error.message.includes(badKey));
        await assert.rejects(client.closed, AuthError);
        assert.equal(client.state, "failed");
        assert.equal(sim.stats().connection_attempts, 1);
        // Nothing is left to retry: no timer waits, however long time runs.
        assert.equal(timers.pending, 0);
        timers.advance(3_600_000);
        assert.equal(sim.stats().connection_attempts, 1);
        assert.ok(lines.every((line) => !line.includes(badKey)));
      } finally {
        await client.close();
      }
    });

    await t.step("a network fault is retried, not reported as a bad key", async () => {
      const port = freePort(); // nothing listens there any more
      const client = new TwelveDataClient({
        ...testClientOptions(sim),
        wsUrl: `ws://127.0.0.1:${port}/v1/quotes/price`,
        apiUrl: `http://127.0.0.1:${port}`,
        backoffBaseMs: 50,
        backoffCapMs: 100,
      });
      try {
        client.start().catch(() => {});
        await waitFor(() => client.stats().connectAttempts >= 3, "retries");
        assert.notEqual(client.state, "failed");
      } finally {
        await client.close();
      }
      await client.closed;
    });
  });
});

Deno.test("A key refused after it worked is retried with a long capped backoff, one line per attempt", async () => {
  await withSimulator({ rate: 100 }, async (sim) => {
    const { logger, lines } = captureLogger();
    const client = new TwelveDataClient(
      testClientOptions(sim, { logger, authRetryBaseMs: 100, authRetryCapMs: 400 }),
    );
    try {
      client.subscribe("BTC/USD");
      await client.start();
      await waitFor(() => client.stats().ticks >= 5, "ticks");
      assert.equal(client.stats().keyRefusedSince, undefined);

      sim.refuseKey(true);
      await sim.drop();
      const refusals = () => lines.filter((l) => l.includes("refuses the API key"));
      await waitFor(() => refusals().length >= 4, "four refused attempts");
      assert.notEqual(client.state, "failed");
      assert.ok(client.stats().keyRefusedSince! <= Date.now());
      // Waits double from the base up to the cap, jittered within [ceiling / 2, ceiling].
      const waits = refusals().slice(0, 4).map((l) => Number(/retrying in (\d+) ms/.exec(l)![1]));
      [100, 200, 400, 400].forEach((ceiling, i) => {
        assert.ok(waits[i]! >= ceiling / 2 && waits[i]! <= ceiling, `${waits}`);
      });
      // One line per attempt: between two refusals nothing else at info level or above.
      const first = lines.indexOf(refusals()[0]!);
      const last = lines.indexOf(refusals()[3]!);
      const between = lines.slice(first, last + 1).filter((l) => !/ DEBUG /.test(l));
      assert.deepEqual(between, refusals().slice(0, 4));
      assert.ok(sim.stats().auth_failures >= 4);

      sim.refuseKey(false);
      await waitFor(() => client.connected && client.stats().keyRefusedSince === undefined, "ok");
      const ticks = client.stats().ticks;
      await waitFor(() => client.stats().ticks > ticks + 5, "ticks again");
      assert.ok(lines.some((l) => l.includes("accepts the API key again")));
    } finally {
      sim.refuseKey(false);
      await client.close();
    }
    await client.closed;
  });
});

Deno.test("A partial subscribe failure keeps the connection and refused symbols stay refused", async (t) => {
  await t.step("fails listed with reasons", async () => {
    await withSimulator({ rate: 100, unauthorized: ["MSFT"] }, async (sim) => {
      const events: TwelveDataEvent[] = [];
      const client = new TwelveDataClient(
        testClientOptions(sim, { onEvent: (e) => events.push(e) }),
      );
      try {
        client.subscribe("BTC/USD,NOPE/XYZ,MSFT");
        await client.start();
        await waitFor(() => Object.keys(client.stats().refused).length === 2, "refused symbols");
        const { refused, subscribed } = client.stats();
        assert.match(refused["NOPE/XYZ"]!, /not found/);
        assert.match(refused["MSFT"]!, /not authorized/);
        assert.deepEqual(subscribed, ["BTC/USD"]);
        await waitFor(() => client.stats().ticks >= 5, "ticks of the accepted symbol");
        assert.ok(client.connected);

        await sim.drop();
        await waitFor(() => client.stats().reconnects === 1, "a reconnect");
        await waitFor(
          () => events.filter((e) => e.event === "subscribe-status").length === 2,
          "the second subscribe-status",
        );
        const second = events.filter((e): e is SubscribeStatusEvent =>
          e.event === "subscribe-status"
        )[1]!;
        assert.deepEqual(second.success.map((s) => s.symbol), ["BTC/USD"]);
        assert.deepEqual(second.fails, []);
      } finally {
        await client.close();
      }
    });
  });

  await t.step("the messages variant, null arrays and graded status", async () => {
    await withSimulator(
      { rate: 50, subscribeStatus: { messagesVariant: true, nullArrays: true, graded: true } },
      async (sim) => {
        const client = new TwelveDataClient(testClientOptions(sim));
        try {
          client.subscribe("BTC/USD");
          await client.start();
          client.subscribe("NOPE1,NOPE2");
          await waitFor(() => Object.keys(client.stats().refused).length === 2, "refused symbols");
          assert.match(client.stats().refused["NOPE1"]!, /not found/);
          assert.deepEqual(client.stats().subscribed, ["BTC/USD"]);
          assert.ok(client.connected);
        } finally {
          await client.close();
        }
      },
    );
  });
});

Deno.test("A graceful close loses no frame the simulator sent", async () => {
  await withSimulator({ rate: 3_000 }, async (sim) => {
    let ticks = 0;
    const client = new TwelveDataClient(
      testClientOptions(sim, { onEvent: (e) => e.event === "price" && ticks++ }),
    );
    client.subscribe("BTC/USD,ETH/USD,AAPL,EUR/USD");
    await client.start();
    await waitFor(() => ticks > 1_000, "a thousand ticks");
    await client.close();
    const stats = sim.stats();
    assert.ok(stats.price_events_sent > 1_000);
    assert.equal(ticks, stats.price_events_sent);
    assert.equal(client.stats().ticks, stats.price_events_sent);
    assert.equal(client.state, "closed");
  });
});

Deno.test("The API key never appears in logs, errors or ws-test output", async () => {
  await withSimulator({ rate: 200 }, async (sim) => {
    const { logger, lines } = captureLogger();
    const client = new TwelveDataClient(testClientOptions(sim, { logger, auth: "query" }));
    try {
      client.subscribe("BTC/USD,NOPE");
      await client.start();
      await waitFor(() => client.stats().ticks > 3, "ticks");
      sim.malformed(3);
      sim.edgeCases(4);
      await sim.drop();
      await waitFor(() => client.stats().reconnects === 1, "a reconnect");
    } finally {
      await client.close();
    }
    assert.ok(lines.length > 5);
    assert.ok(lines.some((line) => line.includes("apikey=***")));
    for (const line of lines) assert.ok(!line.includes(TEST_KEY), line);
  });
});

Deno.test("ws-test prints events and exits 0 on SIGINT", async () => {
  await withSimulator({ rate: 50 }, async (sim) => {
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        ...permissionSet("client"),
        "tasks/ws_test.ts",
        "--symbols",
        "BTC/USD,AAPL,NOPE",
      ],
      cwd: new URL("..", import.meta.url),
      env: {
        TWELVEDATA_WS_URL: sim.wsUrl,
        TWELVEDATA_API_URL: sim.apiUrl,
        TWELVEDATA_API_KEY: TEST_KEY,
        TWELVEDATA_AUTH: "query",
        TICKPIPE_LOG_LEVEL: "debug",
      },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const decoder = new TextDecoder();
    let stdout = "";
    const reader = child.stdout.getReader();
    const stderrText = new Response(child.stderr).text();
    while (!stdout.includes("price  AAPL")) {
      const { value, done } = await reader.read();
      if (done) break;
      stdout += decoder.decode(value);
    }
    child.kill("SIGINT");
    while (true) {
      const { value, done } = await reader.read();
      if (done) break;
      stdout += decoder.decode(value);
    }
    const status = await child.status;
    const stderr = await stderrText;
    assert.equal(status.code, 0, stderr);
    assert.match(stdout, /subscribe-status ok {2}success: BTC\/USD, AAPL {2}fails: NOPE/);
    assert.match(stdout, /price {2}BTC\/USD +\d/);
    assert.match(stdout, /^counts {2}connected=no frames=\d+ ticks=\d+/m);
    assert.match(stderr, /Closed the Twelve Data connection/);
    assert.ok(!stdout.includes(TEST_KEY) && !stderr.includes(TEST_KEY));
  });
});

Deno.test("ws-test exits 2 with usage on bad arguments", async () => {
  assert.equal(await wsTest(["--bogus"]), 2);
  assert.equal(await wsTest(["--duration", "0"]), 2);
  assert.equal(await wsTest(["stray"]), 2);
});

Deno.test("REST client parses bodies and turns error bodies into errors", async (t) => {
  for (const httpErrorStatus of [false, true]) {
    await t.step(`errors sent with HTTP ${httpErrorStatus ? "status" : "200"}`, async () => {
      await withSimulator({ rate: 1, httpErrorStatus, restLimitPerMinute: 4 }, async (sim) => {
        const rest = new TwelveDataRest({ apiKey: TEST_KEY, apiUrl: sim.apiUrl });
        const usage = await rest.apiUsage();
        assert.equal(usage.plan_limit, 4);
        const assets = await rest.cryptocurrencies();
        assert.deepEqual(assets.find((a) => a.symbol === "BTC/USD")?.currency_base, "Bitcoin");
        const quote = await rest.quote("AAPL");
        assert.equal(quote.name, "Apple Inc.");
        assert.equal(typeof quote.close, "number");

        const end = new Date(Math.floor(Date.now() / 3_600_000) * 3_600_000);
        const start = new Date(end.getTime() - 3 * 3_600_000);
        const series = await rest.timeSeries("BTC/USD", {
          interval: "1h",
          startDate: start,
          endDate: end,
        });
        assert.deepEqual(
          series.bars.map((b) => b.timeMs),
          [0, 1, 2].map((i) => start.getTime() + i * 3_600_000),
        );
        assert.equal(series.meta.currency_base, "Bitcoin");
        assert.ok(
          series.bars.every((b) =>
            b.low <= Math.min(b.open, b.close) && b.high >= Math.max(b.open, b.close)
          ),
        );
        assert.equal(series.bars[0]!.volume, undefined);

        await assert.rejects(
          rest.quote("NOPE"),
          (e) => e instanceof TwelveDataError && e.code === 404,
        );
        await assert.rejects(
          rest.quote("AAPL"),
          (e) =>
            e instanceof TwelveDataError && e.code === 429 && e.retryable &&
            /run out of API credits/.test(e.message),
        );

        const bad = new TwelveDataRest({ apiKey: "another-bad-key", apiUrl: sim.apiUrl });
        await assert.rejects(
          bad.apiUsage(),
          (e) =>
            e instanceof AuthError && !e.message.includes("another-bad-key") &&
            /^Twelve Data rejected the API key \(401\)/.test(e.message),
        );
      });
    });
  }
});
