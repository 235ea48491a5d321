/**
 * Materialized candles stay exact after every kind of write: each step writes ticks one
 * way, then every candle of every level is compared, field by field, with the same candles
 * computed from the raw ticks by an independent query (008's definition over crypto_ticks).
 * Portable mode reads its trigger-kept table; TimescaleDB mode its aggregates, refreshed.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import type { Sql } from "postgres";
import { createTestDatabase, type TestDatabase } from "./_support/db.ts";
import { makeRows } from "./_support/ticks.ts";
import { CANDLE_RELATIONS, type CandleInterval, refreshCandles } from "../lib/candles/mod.ts";
import { newBatch } from "../lib/pipeline/batch.ts";
import { Delivery } from "../lib/pipeline/delivery.ts";
import { TickWriter } from "../lib/pipeline/writer.ts";
import { replayQuarantine } from "../lib/pipeline/quarantine_admin.ts";
import { migrate, MIGRATIONS } from "../lib/db/migrations.ts";

const UNITS: Record<CandleInterval, string> = { "1m": "minute", "1h": "hour", "1d": "day" };

interface CandleRow {
  bucket: Date;
  symbol: string;
  open: number;
  high: number;
  low: number;
  close: number;
  volume: string | null;
  vwap: number | null;
  ticks: number;
  day_volume: string | null;
  pv: number | null;
  filled: number;
}

/** The candles of `interval` computed from the raw ticks (bar rows only where no tick is). */
function fromTicks(sql: Sql, interval: CandleInterval) {
  const unit = UNITS[interval];
  return sql<CandleRow[]>`
    SELECT date_trunc(${unit}, t."time", 'UTC') AS bucket, t.symbol,
      (array_agg(t.price ORDER BY t.seq))[1] AS open, max(t.price) AS high,
      min(t.price) AS low, (array_agg(t.price ORDER BY t.seq DESC))[1] AS close,
      sum(t.volume) AS volume, sum(t.price * t.volume) / NULLIF(sum(t.volume), 0) AS vwap,
      (count(*) FILTER (WHERE t.source = 0))::integer AS ticks,
      (array_agg(t.day_volume ORDER BY t.seq DESC) FILTER (WHERE t.day_volume IS NOT NULL))[1]
        AS day_volume,
      sum(t.price * t.volume) AS pv,
      (count(*) FILTER (WHERE t.source = 1))::integer AS filled
    FROM crypto_ticks AS t
    WHERE t.source = 0 OR NOT EXISTS (
      SELECT 1 FROM crypto_ticks AS k
      WHERE k.symbol = t.symbol AND k.source = 0
        AND k."time" >= date_trunc('minute', t."time", 'UTC')
        AND k."time" < date_trunc('minute', t."time", 'UTC') + INTERVAL '1 minute')
    GROUP BY 1, 2
    ORDER BY 2, 1`;
}

function stored(sql: Sql, interval: CandleInterval) {
  return sql<CandleRow[]>`
    SELECT bucket, symbol, open, high, low, close, volume, vwap, ticks, day_volume, pv, filled
    FROM ${sql(CANDLE_RELATIONS[interval])} ORDER BY symbol, bucket`;
}

/** Sums of floats in another order differ in the last bits: 1e-12 relative. */
function close(a: number | null, b: number | null): boolean {
  if (a === null || b === null) return a === b;
  return Math.abs(a - b) <= 1e-12 * Math.max(1, Math.abs(a), Math.abs(b));
}

/** Every candle of every level equals the one computed from the ticks. */
async function assertExact(db: TestDatabase, label: string): Promise<number> {
  if (db.mode === "timescaledb") await refreshCandles(db.sql, {});
  let compared = 0;
  for (const interval of ["1m", "1h", "1d"] as const) {
    const want = await fromTicks(db.sql, interval);
    const got = await stored(db.sql, interval);
    const key = (r: CandleRow) => `${r.symbol} ${r.bucket.toISOString()}`;
    assert.deepEqual(got.map(key), want.map(key), `${label}, ${interval}: buckets`);
    for (let i = 0; i < want.length; i++) {
      const w = want[i]!;
      const g = got[i]!;
      const where = `${label}, ${interval} ${key(w)}`;
      const { pv: gpv, vwap: gvwap, ...gExact } = g;
      const { pv: wpv, vwap: wvwap, ...wExact } = w;
      assert.deepEqual(
        { ...gExact, volume: norm(g.volume), day_volume: norm(g.day_volume) },
        { ...wExact, volume: norm(w.volume), day_volume: norm(w.day_volume) },
        where,
      );
      assert.ok(close(gpv, wpv), `${where}: pv ${gpv} != ${wpv}`);
      assert.ok(close(gvwap, wvwap), `${where}: vwap ${gvwap} != ${wvwap}`);
    }
    compared += want.length;
  }
  return compared;
}

/** A NUMERIC as a number-equal string ("1.50" and "1.5" are the same volume). */
const norm = (v: string | null) => v === null ? null : String(Number(v));

const MINUTE = 60_000;
/** The start of a minute two hours ago: every write below lands in closed buckets. */
const T0 = Math.floor((Date.now() - 2 * 3600_000) / MINUTE) * MINUTE;
const iso = (ms: number) => new Date(ms).toISOString();

/** REST-bar rows as `deno task backfill` stores them (source 1..4 at the minute's start). */
async function insertBar(sql: Sql, symbol: string, minuteMs: number, ohlc: number[], v: string) {
  await sql`
    INSERT INTO crypto_ticks ("time", symbol, price, volume, seq, source)
    SELECT ${iso(minuteMs)}::timestamptz, ${symbol}, p.price, ${v}::numeric / 4,
      ${minuteMs * 1000} + p.n - 1, p.n
    FROM unnest(${ohlc}::float8[]) WITH ORDINALITY AS p(price, n)`;
}

Deno.test("Candles equal the candles of the raw ticks after every kind of write", async (t) => {
  const db = await createTestDatabase();
  const dir = await Deno.makeTempDir({ prefix: "tickpipe-candles-" });
  try {
    const writer = new TickWriter(db.sql);

    await t.step("ingest batches, several per minute", async () => {
      const rows = makeRows(6000, { symbols: 4 });
      for (let i = 0; i < rows.length; i += 500) {
        await writer.write(newBatch(rows.slice(i, i + 500)));
      }
      assert.ok(await assertExact(db, "batches") > 10);
    });

    await t.step("the tutorial's INSERT, a multi-row INSERT and COPY from psql", async () => {
      await db.sql`
        INSERT INTO crypto_ticks ("time", symbol, price, day_volume)
        VALUES (${iso(T0 + 5_000)}, 'BTC/USD', 60000.5, 10)`;
      await db.sql`
        INSERT INTO crypto_ticks ("time", symbol, price, day_volume) VALUES
          (${iso(T0 + 5_000)}, 'BTC/USD', 60001, 11),
          (${iso(T0 + 5_000)}, 'BTC/USD', 59999, 12),
          (${iso(T0 + 65_000)}, 'BTC/USD', 60010, 13),
          (${iso(T0 + 3 * 3600_000)}, 'ETH/USD', 3000, NULL)`;
      const copy = await db.sql`
        COPY crypto_ticks ("time", symbol, price, day_volume, volume) FROM STDIN`.writable();
      copy.write(`${iso(T0 + 7_000)}\tBTC/USD\t60020\t14\t0.5\n`);
      copy.write(`${iso(T0 + 7_000)}\tEUR/USD\t1.08123\t\\N\t\\N\n`);
      copy.end();
      await new Promise((resolve, reject) => copy.on("finish", resolve).on("error", reject));
      await assertExact(db, "external writers");
    });

    await t.step(
      "a late tick with an earlier timestamp opens its minute, hour and day",
      async () => {
        await db.sql`
        INSERT INTO crypto_ticks ("time", symbol, price, day_volume, volume, seq)
        VALUES (${iso(T0 + 1_000)}, 'BTC/USD', 1, 1, 2, ${(T0 + 1_000) * 1000})`;
        await assertExact(db, "late tick");
      },
    );

    await t.step(
      "REST bars fill empty minutes; a tick arriving later wins its minute",
      async () => {
        await insertBar(db.sql, "BTC/USD", T0 + 10 * MINUTE, [100, 110, 90, 105], "8");
        await insertBar(db.sql, "BTC/USD", T0 + 11 * MINUTE, [105, 120, 95, 96], "4");
        await assertExact(db, "bars");
        await db.sql`
        INSERT INTO crypto_ticks ("time", symbol, price, day_volume, volume, seq)
        VALUES (${iso(T0 + 11 * MINUTE + 30_000)}, 'BTC/USD', 70000, 99, 1,
          ${(T0 + 11 * MINUTE + 30_000) * 1000})`;
        await assertExact(db, "tick after bars");
        // A bar for a minute that has ticks (another tool's backfill): the ticks win.
        await insertBar(db.sql, "BTC/USD", T0, [1e6, 2e6, 1, 1.5e6], "1000");
        await assertExact(db, "bar in a minute with ticks");
      },
    );

    await t.step("UPDATE and DELETE of ticks (the backfill moves volume)", async () => {
      await db.sql`
        UPDATE crypto_ticks SET volume = volume / 2
        WHERE symbol = 'BTC/USD' AND "time" < ${iso(T0 + 10 * MINUTE)} AND volume IS NOT NULL`;
      await assertExact(db, "update");
      await db.sql`DELETE FROM crypto_ticks WHERE symbol = 'BTC/USD' AND price = 70000`;
      await db.sql`DELETE FROM crypto_ticks WHERE symbol = 'ETH/USD'`;
      await assertExact(db, "delete");
    });

    await t.step("a quarantined row replayed", async () => {
      await db.sql`ALTER TABLE crypto_ticks ADD CONSTRAINT no_sol CHECK (symbol <> 'SOL/USD')`;
      const delivery = new Delivery(db.sql, writer, { quarantineDir: join(dir, "quarantine") });
      const rows = makeRows(40, { symbols: 4 }).map((r, i) =>
        i % 4 === 0 ? { ...r, symbol: "SOL/USD" } : r
      );
      assert.equal(await delivery.deliver(newBatch(rows)), "done");
      assert.equal(delivery.quarantined, 10);
      await db.sql`ALTER TABLE crypto_ticks DROP CONSTRAINT no_sol`;
      assert.equal((await replayQuarantine(db.sql)).stored, 10);
      await assertExact(db, "replay");
    });

    await t.step("two writers of one symbol at once, bars among them", async () => {
      const base = T0 + 20 * MINUTE;
      const writes = Array.from(
        { length: 8 },
        (_, w) =>
          w === 3 ? insertBar(db.sql, "ADA/USD", base + 5 * MINUTE, [1, 2, 0.5, 1.5], "6") : db.sql`
          INSERT INTO crypto_ticks ("time", symbol, price, day_volume, volume)
          SELECT ${iso(base)}::timestamptz + ((8 * i + ${w}) * INTERVAL '1 second'), 'ADA/USD',
            1 + ${w} + i / 100.0, i, 1
          FROM generate_series(1, 200) AS i`,
      );
      await Promise.all(writes);
      await assertExact(db, "concurrent");
    });

    if (db.mode === "portable") {
      await t.step("TRUNCATE empties the candles", async () => {
        await db.sql`TRUNCATE crypto_ticks`;
        assert.equal(await assertExact(db, "truncate"), 0);
      });
    }
  } finally {
    await db.drop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("The candle table migration turns the ticks already stored into candles", async () => {
  const db = await createTestDatabase({ migrate: false, mode: "portable" });
  try {
    await migrate(db.sql, {
      mode: "portable",
      migrations: MIGRATIONS.filter((m) => m.version < 10),
    });
    const writer = new TickWriter(db.sql);
    const rows = makeRows(3000, { symbols: 3 });
    for (let i = 0; i < rows.length; i += 1000) {
      await writer.write(newBatch(rows.slice(i, i + 1000)));
    }
    await insertBar(db.sql, "T0/USD", T0 - 30 * MINUTE, [10, 12, 9, 11], "2");
    const result = await migrate(db.sql, { mode: "portable" });
    assert.deepEqual(result.applied.map((m) => m.name), ["candle_tables"]);
    assert.ok(await assertExact(db, "migrated") > 3);
  } finally {
    await db.drop();
  }
});
