import assert from "node:assert/strict";
import { newBatch, type Row } from "../lib/pipeline/batch.ts";
import { seedState, TickSequencer } from "../lib/pipeline/sequencer.ts";
import type { PriceEvent } from "../lib/twelvedata/mod.ts";
import { TickWriter, type WriteMethod } from "../lib/pipeline/writer.ts";
import { createTestDatabase } from "./_support/db.ts";
import { baseTimeMs, makeRows, parsePriceFrame } from "./_support/ticks.ts";

type Sql = Awaited<ReturnType<typeof createTestDatabase>>["sql"];

async function storedRows(sql: Sql) {
  return await sql`
    SELECT "time", symbol, price, day_volume::text, bid, ask, volume::text, seq::text
    FROM crypto_ticks ORDER BY symbol, seq`;
}

/** A price event as the client parses it (a millisecond timestamp), checked against its own time. */
function tick(symbol: string, timeMs: number, fields: Record<string, unknown> = {}): PriceEvent {
  return parsePriceFrame(
    { event: "price", symbol, timestamp: timeMs, price: 100, ...fields },
    timeMs,
  );
}

Deno.test("COPY, unnest and unnest encoded ahead write identical rows, nulls and fractions included", async () => {
  const db = await createTestDatabase();
  try {
    const rows = makeRows(500, { symbols: 7 });
    rows[1]!.dayVolume = null;
    rows[1]!.volume = null;
    rows[2]!.bid = null;
    rows[2]!.ask = null;
    rows[3]!.price = 0.000012345678901;
    rows[4]!.price = 65432.123456789;
    rows[5]!.dayVolume = 12345678.123456;
    const results: Record<string, unknown> = {};
    for (const method of ["copy", "unnest"] as WriteMethod[]) {
      await db.sql`TRUNCATE crypto_ticks`;
      const writer = new TickWriter(db.sql, { method });
      assert.equal(await writer.write(newBatch(rows.slice(0, 200))), "written");
      assert.equal(await writer.write(newBatch(rows.slice(200))), "written");
      results[method] = await storedRows(db.sql);
    }
    // Encoded ahead (`prepare`, as the write loop does for the next spool chunk): the
    // encoding serves its own batch only, once.
    await db.sql`TRUNCATE crypto_ticks`;
    const writer = new TickWriter(db.sql);
    const first = newBatch(rows.slice(0, 200));
    const second = newBatch(rows.slice(200));
    writer.prepare(second);
    assert.equal(await writer.write(first), "written");
    assert.equal(await writer.write(second), "written");
    results.prepared = await storedRows(db.sql);
    assert.equal((results.copy as unknown[]).length, 500);
    assert.deepEqual(results.copy, results.unnest);
    assert.deepEqual(results.prepared, results.unnest);
    const [r4] = await db.sql`SELECT price FROM crypto_ticks WHERE seq = ${rows[4]!.seq}
      AND symbol = ${rows[4]!.symbol}`;
    assert.equal(r4!.price, 65432.123456789);
  } finally {
    await db.drop();
  }
});

Deno.test("Sequencer orders ticks sharing a timestamp and derives volume from day_volume", async () => {
  const db = await createTestDatabase();
  try {
    const midnight = Date.UTC(2026, 0, 2);
    const s = new TickSequencer();
    const rows: Row[] = [
      // First tick ever seen: its own volume is unknowable.
      s.assignPrice(tick("BTC/USD", midnight - 2000, { day_volume: 100 }), 0),
      s.assignPrice(tick("BTC/USD", midnight - 1000, { day_volume: 150 }), 0),
      s.assignPrice(tick("BTC/USD", midnight - 1000, { day_volume: 150.3 }), 0),
      s.assignPrice(tick("BTC/USD", midnight - 1000, { day_volume: 151 }), 0),
      // Daily reset at midnight UTC.
      s.assignPrice(tick("BTC/USD", midnight, { day_volume: 20 }), 0),
      s.assignPrice(tick("BTC/USD", midnight + 1000, { day_volume: 25 }), 0),
      // Same-day decrease: a correction.
      s.assignPrice(tick("BTC/USD", midnight + 1000, { day_volume: 24 }), 0),
      s.assignPrice(tick("BTC/USD", midnight + 2000, { day_volume: 30 }), 0),
      // Late tick, earlier than the last: seq = its own time.
      s.assignPrice(tick("BTC/USD", midnight - 5000, { day_volume: 30 }), 0),
      // Forex: no day volume.
      s.assignPrice(tick("EUR/USD", midnight, {}), 0),
      s.assignPrice(tick("EUR/USD", midnight, {}), 0),
      // Millisecond stamps tie within the millisecond.
      s.assignPrice(tick("ETH/USD", midnight + 5, { day_volume: 1 }), 0),
      s.assignPrice(tick("ETH/USD", midnight + 5, { day_volume: 1 }), 0),
      s.assignPrice(tick("ETH/USD", midnight + 6, { day_volume: 1 }), 0),
    ];
    const us = (ms: number) => ms * 1000;
    assert.deepEqual(rows.map((r) => r.seq), [
      us(midnight - 2000),
      us(midnight - 1000),
      us(midnight - 1000) + 1,
      us(midnight - 1000) + 2,
      us(midnight),
      us(midnight + 1000),
      us(midnight + 1000) + 1,
      us(midnight + 2000),
      us(midnight - 5000),
      us(midnight),
      us(midnight) + 1,
      us(midnight + 5),
      us(midnight + 5) + 1,
      us(midnight + 6),
    ]);
    assert.deepEqual(rows.map((r) => r.volume), [
      0,
      50,
      0.3,
      0.7,
      20,
      5,
      0,
      6,
      0,
      null,
      null,
      0,
      0,
      0,
    ]);
    const writer = new TickWriter(db.sql);
    await writer.write(newBatch(rows));
    const stored = await db.sql<{ volume: string | null; seq: string }[]>`
      SELECT volume::text, seq::text FROM crypto_ticks WHERE symbol = 'BTC/USD' ORDER BY seq`;
    assert.deepEqual(stored.map((r) => r.volume), [
      "0",
      "0",
      "50",
      "0.3",
      "0.7",
      "20",
      "5",
      "0",
      "6",
    ]);
  } finally {
    await db.drop();
  }
});

Deno.test("Writer fills crypto_assets once per symbol, names from currency_base/quote", async () => {
  const db = await createTestDatabase();
  try {
    const t = baseTimeMs();
    const s = new TickSequencer();
    const rows = [
      s.assignPrice(
        tick("BTC/USD", t, { currency_base: "Bitcoin", currency_quote: "US Dollar" }),
        0,
      ),
      s.assignPrice(tick("AAPL", t), 0),
      s.assignPrice(
        tick("BTC/USD", t + 1000, { currency_base: "Bitcoin", currency_quote: "US Dollar" }),
        0,
      ),
    ];
    await db.sql`INSERT INTO crypto_assets (symbol, name) VALUES ('ETH/USD', NULL)`;
    const s2 = new TickSequencer();
    const eth = s2.assignPrice(
      tick("ETH/USD", t, { currency_base: "Ethereum", currency_quote: "US Dollar" }),
      0,
    );
    const w1 = new TickWriter(db.sql, { assetName: (sym) => s.name(sym) });
    await w1.write(newBatch(rows.slice(0, 2)));
    await w1.write(newBatch(rows.slice(2)));
    // A second process (fresh writer) sees the same symbols again.
    const w2 = new TickWriter(db.sql, { assetName: (sym) => s2.name(sym) ?? s.name(sym) });
    await w2.write(newBatch([eth, ...makeRows(1).map((r) => ({ ...r, symbol: "BTC/USD" }))]));
    const assets = await db.sql`SELECT symbol, name FROM crypto_assets ORDER BY symbol`;
    assert.deepEqual(assets.map((a) => [a.symbol, a.name]), [
      ["AAPL", null],
      ["BTC/USD", "Bitcoin/US Dollar"],
      ["ETH/USD", "Ethereum/US Dollar"],
    ]);
  } finally {
    await db.drop();
  }
});

Deno.test("Writing a batch that already landed changes nothing", async () => {
  const db = await createTestDatabase();
  try {
    const writer = new TickWriter(db.sql, { method: "copy" });
    const batch = newBatch(makeRows(100));
    assert.equal(await writer.write(batch), "written");
    assert.equal(await writer.committedRows(batch.id), 100);
    assert.equal(await writer.write(batch), "landed");
    assert.equal(await new TickWriter(db.sql, { method: "unnest" }).write(batch), "landed");
    const [c] = await db.sql`SELECT count(*)::int AS n FROM crypto_ticks`;
    assert.equal(c!.n, 100);
    assert.equal(await writer.committedRows(crypto.randomUUID()), undefined);
    // A split mark is 0 rows under the batch's id; it does not replace a committed batch.
    const split = crypto.randomUUID();
    assert.equal(await writer.markSplit(split), 0);
    assert.equal(await writer.markSplit(split), 0);
    assert.equal(await writer.committedRows(split), 0);
    assert.equal(await writer.markSplit(batch.id), 100);
    await db.sql`UPDATE tickpipe_batches SET committed_at = now() - interval '8 days'`;
    assert.equal(await writer.prune(), 2);
  } finally {
    await db.drop();
  }
});

Deno.test("seedState lets a restarted sequencer continue seq and volume", async () => {
  const db = await createTestDatabase();
  try {
    const t = baseTimeMs();
    const s = new TickSequencer();
    const rows = [
      s.assignPrice(tick("BTC/USD", t, { day_volume: 10 }), 0),
      s.assignPrice(tick("BTC/USD", t, { day_volume: 12 }), 0),
      s.assignPrice(tick("EUR/USD", t), 0),
    ];
    await new TickWriter(db.sql).write(newBatch(rows));
    const seeded = new TickSequencer();
    seeded.seed(await seedState(db.sql));
    const next = seeded.assignPrice(tick("BTC/USD", t, { day_volume: 15 }), 0);
    assert.equal(next.seq, t * 1000 + 2);
    assert.equal(next.volume, 3);
    assert.equal(seeded.assignPrice(tick("EUR/USD", t), 0).seq, t * 1000 + 1);
  } finally {
    await db.drop();
  }
});
