/**
 * Candles over REST bars (migration 008), in the server's mode: an existing database keeps
 * every candle through the migration, a tick beats a bar in the same minute, and the
 * candles task shows which minutes are bars.
 */
import assert from "node:assert/strict";
import type { Sql } from "postgres";
import { fetchCandles, refreshCandles } from "../lib/candles/mod.ts";
import { migrate, MIGRATIONS } from "../lib/db/migrations.ts";
import { readServerInfo } from "../lib/db/server_info.ts";
import { storeChunk } from "../lib/backfill/store.ts";
import { recordGap } from "../lib/gaps/log.ts";
import { createTestDatabase } from "./_support/db.ts";
import { DAY, MINUTE, yesterdayMidnight } from "./_support/gaps.ts";
import { permissionSet, runDeno } from "./_support/run.ts";
import { databaseUrl } from "./_support/url.ts";

/** Ticks every 7 s over two hours of yesterday, two symbols (one without volume). */
async function seedTicks(sql: Sql, start: number): Promise<void> {
  await sql`
    INSERT INTO crypto_ticks ("time", symbol, price, day_volume, volume, seq)
    SELECT t, s.symbol, 100 + (i % 13) * 0.5 + s.k, CASE WHEN s.k = 0 THEN i END,
      CASE WHEN s.k = 0 THEN 1 END, (extract(epoch FROM t) * 1000000)::bigint
    FROM generate_series(0, 1028) AS i,
      LATERAL (SELECT ${new Date(start)}::timestamptz + i * INTERVAL '7 seconds' AS t) AS x,
      (VALUES ('BTC/USD', 0), ('EUR/USD', 1)) AS s(symbol, k)`;
}

Deno.test("Migration 008 keeps every candle of an existing database (setup rebuilds the aggregates)", async () => {
  const db = await createTestDatabase({ migrate: false });
  const start = yesterdayMidnight() + 10 * 3_600_000;
  try {
    const info = await readServerInfo(db.sql);
    const mode = db.mode;
    await migrate(db.sql, {
      mode,
      timescaleVersion: info.timescaleVersion,
      migrations: MIGRATIONS.filter((m) => m.version <= 3),
    });
    await seedTicks(db.sql, start);
    if (mode === "timescaledb") await refreshCandles(db.sql, {});
    const before = await db.sql`
      SELECT bucket, symbol, open, high, low, close, volume, vwap, ticks, day_volume, pv
      FROM one_day_candle ORDER BY symbol, bucket`;
    const minutesBefore = await db.sql`
      SELECT * FROM one_minute_candle ORDER BY symbol, bucket`;

    const setup = await runDeno("tasks/setup.ts", [], {
      permissions: permissionSet("db"),
      env: { DATABASE_URL: databaseUrl(db.config) },
    });
    assert.equal(setup.code, 0, setup.stderr);
    assert.match(setup.stdout, /Applied \d+ migration\(s\): .*007_gaps, 008_candle_provenance/);
    if (mode === "timescaledb") {
      assert.match(setup.stdout, /Rebuilt the candle aggregates over the whole history/);
      // Materialized rows alone, not the real-time tail: the rebuild really happened.
      await db
        .sql`ALTER MATERIALIZED VIEW one_day_candle SET (timescaledb.materialized_only = true)`;
    }
    const after = await db.sql`
      SELECT bucket, symbol, open, high, low, close, volume, vwap, ticks, day_volume, pv, filled
      FROM one_day_candle ORDER BY symbol, bucket`;
    assert.deepEqual(
      after.map((r) => ({ ...r, filled: undefined })),
      before.map((r) => ({ ...r, filled: undefined })),
    );
    assert.ok(after.length >= 2 && after.every((r) => r.filled === 0));
    const minutesAfter = await db.sql`
      SELECT bucket, symbol, open, high, low, close, volume, vwap, ticks, day_volume, pv
      FROM one_minute_candle ORDER BY symbol, bucket`;
    assert.deepEqual(minutesAfter, minutesBefore);
  } finally {
    await db.drop();
  }
});

Deno.test("A tick that arrives in a filled minute wins over the bar; candles show what is filled", async () => {
  const db = await createTestDatabase();
  const start = yesterdayMidnight() + 10 * 3_600_000;
  try {
    await seedTicks(db.sql, start);
    // A gap: remove three minutes of BTC/USD ticks, then fill them with bars.
    await db.sql`
      DELETE FROM crypto_ticks WHERE symbol = 'BTC/USD'
        AND "time" >= ${new Date(start + 20 * MINUTE)} AND "time" < ${new Date(
      start + 23 * MINUTE,
    )}`;
    const gap = (await recordGap(db.sql, {
      symbol: "BTC/USD",
      reason: "disconnected",
      start: new Date(start + 20 * MINUTE - 7000),
      end: new Date(start + 23 * MINUTE),
    }))!;
    const bar = (i: number, open: number, high: number, low: number, close: number) => ({
      datetime: "",
      timeMs: start + (20 + i) * MINUTE,
      open,
      high,
      low,
      close,
      volume: 8,
    });
    const stored = await storeChunk(db.sql, {
      gap,
      fromMs: start + 20 * MINUTE,
      toMs: start + 24 * MINUTE,
      missing: 3,
      last: true,
    }, [
      bar(0, 101, 150, 99, 102),
      bar(1, 102, 103, 50, 101),
      bar(2, 101, 102, 100, 100.5),
      bar(3, 1, 1, 1, 1),
    ]);
    assert.equal(stored.stored, 3, "the minute with ticks keeps its ticks");
    assert.equal(stored.ignored, 0);
    // The first tick after the gap had counted the gap's volume (here only 1, less than the
    // bars' 24): what it had moves to the bars, and it is left with none, never below 0.
    assert.equal(stored.volumeMoved, 1);
    const [after] = await db.sql<{ volume: string }[]>`
      SELECT volume FROM crypto_ticks WHERE symbol = 'BTC/USD' AND source = 0
        AND "time" >= ${new Date(start + 23 * MINUTE)} ORDER BY seq LIMIT 1`;
    assert.equal(Number(after!.volume), 0);
    if (db.mode === "timescaledb") await refreshCandles(db.sql, { to: new Date(start + DAY) });
    const minute = async (i: number) =>
      (await fetchCandles(db.sql, {
        symbol: "BTC/USD",
        interval: "1m",
        from: new Date(start + i * MINUTE),
        to: new Date(start + (i + 1) * MINUTE),
      }))[0]!;
    const filled = await minute(21);
    assert.deepEqual(
      [
        filled.open,
        filled.high,
        filled.low,
        filled.close,
        Number(filled.volume),
        filled.ticks,
        filled.filled,
      ],
      [102, 103, 50, 101, 8, 0, 1],
    );
    assert.equal(
      filled.vwap,
      (102 + 103 + 50 + 101) / 4,
      "pv: the bar's volume at its OHLC average",
    );
    const hour = (await fetchCandles(db.sql, {
      symbol: "BTC/USD",
      interval: "1h",
      from: new Date(start),
      to: new Date(start + 3_600_000),
    }))[0]!;
    assert.equal(hour.low, 50);
    assert.equal(hour.filled, 3);

    // A late tick lands in minute 21: the minute is the tick's now, the bar no longer counts.
    await db.sql`
      INSERT INTO crypto_ticks ("time", symbol, price, day_volume, volume, seq)
      VALUES (${new Date(start + 21 * MINUTE + 5000)}, 'BTC/USD', 104, NULL, 2,
        ${(start + 21 * MINUTE + 5000) * 1000})`;
    if (db.mode === "timescaledb") await refreshCandles(db.sql, { to: new Date(start + DAY) });
    const won = await minute(21);
    assert.deepEqual(
      [won.open, won.high, won.low, won.close, Number(won.volume), won.ticks, won.filled],
      [104, 104, 104, 104, 2, 1, 0],
    );
    const hourAfter = (await fetchCandles(db.sql, {
      symbol: "BTC/USD",
      interval: "1h",
      from: new Date(start),
      to: new Date(start + 3_600_000),
    }))[0]!;
    assert.equal(hourAfter.low, 99, "the bar's low of 50 is gone with it");
    assert.equal(hourAfter.filled, 2);

    const table = await runDeno("tasks/candles.ts", [
      "BTC/USD",
      "--interval",
      "1m",
      "--from",
      new Date(start + 19 * MINUTE).toISOString(),
      "--to",
      new Date(start + 24 * MINUTE).toISOString(),
    ], { permissions: permissionSet("db"), env: { DATABASE_URL: databaseUrl(db.config) } });
    assert.equal(table.code, 0, table.stderr);
    const lines = table.stdout.trimEnd().split("\n");
    assert.match(lines[0]!, /\s+ticks\s+filled$/);
    assert.deepEqual(lines.slice(2).map((l) => l.split(/\s+/).at(-1)), ["0", "1", "0", "1", "0"]);
  } finally {
    await db.drop();
  }
});
