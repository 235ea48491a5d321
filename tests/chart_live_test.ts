import assert from "node:assert/strict";
import {
  addDecimal,
  type Candle,
  type CandleInterval,
  fetchCandles,
  foldCandles,
  listSymbols,
} from "../lib/candles/mod.ts";
import { LiveEvent, LiveFeed, type TimerId } from "../lib/chart/live.ts";
import { connect, describeDatabaseError } from "../lib/db/connection.ts";
import { createTestDatabase, type TestDatabase } from "./_support/db.ts";
import { startProxy } from "./_support/proxy.ts";
import { type CandleTick, insertTicks } from "./_support/ticks.ts";

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

Deno.test("addDecimal adds NUMERIC strings exactly", () => {
  assert.equal(addDecimal("1", "2"), "3");
  assert.equal(addDecimal("0.1", "0.2"), "0.3");
  assert.equal(addDecimal("1.25", "-0.25"), "1");
  assert.equal(addDecimal("-1.5", "0.25"), "-1.25");
  assert.equal(addDecimal("0.005", "-0.5"), "-0.495");
  assert.equal(
    addDecimal("123456789012345678901234567890", "0.000001"),
    "123456789012345678901234567890.000001",
  );
});

/** A tick of `symbol` at `time` (ms), ordinal 0 unless given. */
const tick = (
  symbol: string,
  time: number,
  price: number,
  volume: string | null,
  ordinal = 0,
): CandleTick => ({ symbol, time, ordinal, price, volume, dayVolume: volume });

/** The database's candle of `interval` at `bucket`, for comparison. */
async function dbCandle(
  db: TestDatabase,
  symbol: string,
  interval: CandleInterval,
  bucket: number,
) {
  const width = { "1m": MINUTE, "1h": HOUR, "1d": DAY }[interval];
  const [candle] = await fetchCandles(db.sql, {
    symbol,
    interval,
    from: new Date(bucket),
    to: new Date(bucket + width),
  });
  return candle;
}

/** Equal, VWAP and pv within float rounding (their sums are taken in another order). */
function assertSameCandle(actual: Candle | undefined, expected: Candle | undefined, what: string) {
  assert.ok(actual && expected, `${what}: both candles exist`);
  const { vwap: av, pv: ap, ...a } = actual;
  const { vwap: ev, pv: ep, ...e } = expected;
  assert.deepEqual({ ...a, volume: Number(a.volume) }, { ...e, volume: Number(e.volume) }, what);
  for (const [x, y] of [[av, ev], [ap, ep]]) {
    assert.ok(x === y || Math.abs(x! - y!) <= 1e-9 * Math.abs(y!), `${what}: ${x} ~ ${y}`);
  }
}

Deno.test("foldCandles re-aggregates minute candles into the database's hour and day", async () => {
  const db = await createTestDatabase();
  try {
    const day = Math.floor(Date.now() / DAY) * DAY - DAY;
    const ticks = [
      tick("BTC/USD", day + 5 * HOUR, 100, "1.5"),
      tick("BTC/USD", day + 5 * HOUR, 101, "0.25", 1),
      tick("BTC/USD", day + 5 * HOUR + 61_000, 99, "2"),
      tick("BTC/USD", day + 5 * HOUR + 30 * MINUTE, 102.5, "0"),
      tick("BTC/USD", day + 9 * HOUR, 98, "0.125"),
      tick("EUR/USD", day + 5 * HOUR, 1.08, null),
      tick("EUR/USD", day + 6 * HOUR, 1.09, null),
    ];
    await insertTicks(db.sql, ticks);
    for (const symbol of ["BTC/USD", "EUR/USD"]) {
      const minutes = await fetchCandles(db.sql, {
        symbol,
        interval: "1m",
        from: new Date(day),
        to: new Date(day + DAY),
      });
      const hour = minutes.filter((m) => m.bucket.getTime() < day + 6 * HOUR);
      assertSameCandle(
        foldCandles(hour, new Date(day + 5 * HOUR)),
        await dbCandle(db, symbol, "1h", day + 5 * HOUR),
        `${symbol} 1h`,
      );
      assertSameCandle(
        foldCandles(minutes, new Date(day)),
        await dbCandle(db, symbol, "1d", day),
        `${symbol} 1d`,
      );
    }
    assert.throws(() => foldCandles([], new Date()), /Cannot fold candles: none given/);
  } finally {
    await db.drop();
  }
});

Deno.test("listSymbols lists every symbol with ticks, its name and the span of its candles", async () => {
  const db = await createTestDatabase();
  try {
    assert.deepEqual(await listSymbols(db.sql), []);
    const day = Math.floor(Date.now() / DAY) * DAY - 3 * DAY;
    await insertTicks(db.sql, [
      tick("ETH/USD", day + HOUR + 5_000, 3000, "1"),
      tick("ETH/USD", day + 2 * DAY + 7 * MINUTE + 30_000, 3010, "1"),
      tick("AAPL", day + DAY + 10_000, 190, "5"),
    ]);
    await db
      .sql`INSERT INTO crypto_assets VALUES ('ETH/USD', 'Ethereum/US Dollar'), ('XRP/USD', 'XRP')`;
    assert.deepEqual(await listSymbols(db.sql), [
      { symbol: "AAPL", name: null, first: new Date(day + DAY), last: new Date(day + DAY) },
      {
        symbol: "ETH/USD",
        name: "Ethereum/US Dollar",
        first: new Date(day),
        last: new Date(day + 2 * DAY + 7 * MINUTE),
      },
    ]);
  } finally {
    await db.drop();
  }
});

/** A feed on `db` whose clock the test sets and whose timer never fires on its own. */
function manualFeed(db: TestDatabase, clock: { now: number }, sql = db.sql) {
  return new LiveFeed({
    read: (query) => fetchCandles(sql, query),
    describeError: (error) => describeDatabaseError(error, db.config),
    now: () => clock.now,
    setTimeout: () => 0 as unknown as TimerId,
    clearTimeout: () => {},
  });
}

Deno.test("LiveFeed sends each interval's changing candle, equal to the database's", async () => {
  const db = await createTestDatabase();
  const clock = { now: 0 };
  const feed = manualFeed(db, clock);
  try {
    // A day and hour that have already begun, with history before them.
    const day = Math.floor(Date.now() / DAY) * DAY - DAY;
    const hour = day + 13 * HOUR;
    await insertTicks(db.sql, [
      tick("BTC/USD", day + HOUR, 90, "4"),
      tick("BTC/USD", hour + 2 * MINUTE, 95, "1"),
      tick("BTC/USD", hour + 20 * MINUTE, 100, "2"),
      tick("BTC/USD", hour + 20 * MINUTE + 10_000, 101, "1"),
      tick("ETH/USD", hour + 20 * MINUTE, 3000, "1"),
    ]);
    clock.now = hour + 20 * MINUTE + 30_000;
    const events: Record<string, LiveEvent[]> = { "1m": [], "1h": [], "1d": [] };
    const stops = (["1m", "1h", "1d"] as const).map((interval) =>
      feed.subscribe("BTC/USD", interval, (event) => events[interval]!.push(event))
    );
    const candlesOf = (interval: string) =>
      events[interval]!.flatMap((e) => (e.type === "candle" ? [e.candle] : []));
    const check = async (interval: CandleInterval, bucket: number, what: string) => {
      const sent = candlesOf(interval).at(-1);
      assert.equal(sent?.bucket.getTime(), bucket, `${what}: ${interval} bucket`);
      assertSameCandle(
        sent,
        await dbCandle(db, "BTC/USD", interval, bucket),
        `${what}: ${interval}`,
      );
    };

    await step("first poll: each subscriber gets its current candle", async () => {
      await feed.poll();
      assert.deepEqual(Object.values(events).map((e) => e.length), [1, 1, 1]);
      await check("1m", hour + 20 * MINUTE, "first");
      await check("1h", hour, "first");
      await check("1d", day, "first");
    });

    await step("a poll with nothing new sends nothing", async () => {
      await feed.poll();
      assert.deepEqual(Object.values(events).map((e) => e.length), [1, 1, 1]);
    });

    await step("a tick in the current minute updates all three", async () => {
      await insertTicks(db.sql, [tick("BTC/USD", hour + 20 * MINUTE + 40_000, 107, "3")]);
      await feed.poll();
      assert.deepEqual(Object.values(events).map((e) => e.length), [2, 2, 2]);
      await check("1m", hour + 20 * MINUTE, "update");
      await check("1h", hour, "update");
      await check("1d", day, "update");
      assert.equal(candlesOf("1m").at(-1)!.high, 107);
    });

    await step("a new minute, and a late tick in the one before, are both sent", async () => {
      clock.now = hour + 21 * MINUTE + 5_000;
      await insertTicks(db.sql, [
        tick("BTC/USD", hour + 21 * MINUTE, 80, "1"),
        tick("BTC/USD", hour + 20 * MINUTE + 40_000, 81, "1", 1),
      ]);
      await feed.poll();
      const minutes = candlesOf("1m").slice(-2).map((c) => c.bucket.getTime());
      assert.deepEqual(minutes, [hour + 20 * MINUTE, hour + 21 * MINUTE]);
      assert.equal(candlesOf("1m").at(-2)!.close, 81);
      await check("1m", hour + 21 * MINUTE, "new minute");
      await check("1h", hour, "new minute");
      await check("1d", day, "new minute");
    });

    await step("a new hour starts a new hourly candle", async () => {
      clock.now = hour + HOUR + 2_000;
      await insertTicks(db.sql, [tick("BTC/USD", hour + HOUR + 1_000, 120, "0.5")]);
      await feed.poll();
      await check("1m", hour + HOUR, "new hour");
      await check("1h", hour + HOUR, "new hour");
      await check("1d", day, "new hour");
    });

    await step("ETH/USD's ticks never reach BTC/USD's subscribers", () => {
      for (const candle of Object.keys(events).flatMap(candlesOf)) {
        assert.equal(candle.symbol, "BTC/USD");
      }
    });

    await step("unsubscribing stops the events and the polling of the symbol", async () => {
      for (const stop of stops) stop();
      assert.deepEqual(feed.symbols, []);
      const before = Object.values(events).map((e) => e.length);
      await insertTicks(db.sql, [tick("BTC/USD", hour + HOUR + 1_500, 121, "0.5")]);
      await feed.poll();
      assert.deepEqual(Object.values(events).map((e) => e.length), before);
    });
  } finally {
    await feed.close();
    await db.drop();
  }

  async function step(name: string, fn: () => Promise<void> | void) {
    try {
      await fn();
    } catch (error) {
      throw new Error(`${name}: ${(error as Error).message}`, { cause: error });
    }
  }
});

Deno.test("LiveFeed: a coarser subscriber arriving later reads its bucket once; finer ones get no history", async () => {
  const db = await createTestDatabase();
  const clock = { now: 0 };
  const feed = manualFeed(db, clock);
  try {
    const day = Math.floor(Date.now() / DAY) * DAY - DAY;
    const ticks = Array.from(
      { length: 30 },
      (_, i) => tick("BTC/USD", day + i * 17 * MINUTE, 100 + i, "1"),
    );
    await insertTicks(db.sql, ticks);
    clock.now = ticks.at(-1)!.time + 10_000;
    const minute: LiveEvent[] = [];
    const daily: LiveEvent[] = [];
    feed.subscribe("BTC/USD", "1m", (e) => minute.push(e));
    await feed.poll();
    assert.equal(minute.length, 1);
    feed.subscribe("BTC/USD", "1d", (e) => daily.push(e));
    await feed.poll();
    assert.equal(minute.length, 1, "the day's minutes, read for the daily candle, are not news");
    assert.equal(daily.length, 1);
    const sent = daily[0]!.type === "candle" ? daily[0]!.candle : undefined;
    assertSameCandle(sent, await dbCandle(db, "BTC/USD", "1d", day), "daily");
    assert.equal(sent!.ticks, 30);
  } finally {
    await feed.close();
    await db.drop();
  }
});

Deno.test("LiveFeed tells subscribers when the database goes away and when it returns", async () => {
  const db = await createTestDatabase();
  const proxy = startProxy(db.config);
  const sql = connect({ ...db.config, host: "127.0.0.1", port: proxy.port }, {
    max: 1,
    connectTimeout: 2,
  });
  const clock = { now: Date.now() };
  const feed = manualFeed(db, clock, sql);
  try {
    await insertTicks(db.sql, [tick("BTC/USD", Math.floor(clock.now / 1000) * 1000, 100, "1")]);
    const events: LiveEvent[] = [];
    feed.subscribe("BTC/USD", "1m", (e) => events.push(e));
    await feed.poll();
    assert.equal(events.at(-1)?.type, "candle");

    proxy.cut();
    await feed.poll();
    const down = events.at(-1);
    assert.equal(down?.type, "status");
    assert.ok(down?.type === "status" && !down.ok);
    assert.match(down.error, /^Cannot connect to PostgreSQL at 127\.0\.0\.1:\d+\/\S+: /);
    assert.ok(!down.error.includes(db.config.password!), "no password in the message");
    await feed.poll();
    assert.equal(events.filter((e) => e.type === "status").length, 1, "said once");

    const late: LiveEvent[] = [];
    feed.subscribe("BTC/USD", "1h", (e) => late.push(e));
    assert.equal(late.length, 1, "a new subscriber hears at once that the database is away");
    assert.ok(late[0]?.type === "status" && !late[0].ok);
    assert.match(late[0].error, /^Cannot connect to PostgreSQL at /);

    proxy.restore();
    await feed.poll();
    assert.ok(events.some((e) => e.type === "status" && e.ok), "back");
    assert.ok(late.some((e) => e.type === "candle"), "and gets its candle");
  } finally {
    await feed.close();
    await sql.end({ timeout: 1 });
    await proxy.close();
    await db.drop();
  }
});
