/**
 * Rows from other writers: the tutorial's own statements (its four columns, no seq) next
 * to tickpipe's rows, in the server's schema mode, and the candles that include them.
 */
import assert from "node:assert/strict";
import { finished } from "node:stream/promises";
import { type Candle, fetchCandles, refreshCandles } from "../lib/candles/mod.ts";
import { newBatch } from "../lib/pipeline/batch.ts";
import { TickSequencer } from "../lib/pipeline/sequencer.ts";
import { TickWriter } from "../lib/pipeline/writer.ts";
import { createTestDatabase } from "./_support/db.ts";
import { duplicates } from "./_support/rows.ts";
import { parsePriceFrame } from "./_support/ticks.ts";

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/**
 * The tutorial's row, a tuple as execute_values takes it: (time, symbol, price, day_volume);
 * psycopg2 sends the datetime as a text literal.
 */
type TutorialRow = [time: string, symbol: string, price: number, dayVolume: number];

Deno.test("The tutorial's INSERTs work next to tickpipe's rows and land in the candles", async (t) => {
  const db = await createTestDatabase();
  try {
    // 12:10 UTC two days ago: everything below stays within one minute (BTC), the next
    // one (ETH), one hour and one UTC day, and that day is complete (so it can be refreshed).
    const today = Math.floor(Date.now() / DAY) * DAY;
    const base = today - 2 * DAY + 12 * HOUR + 10 * MINUTE;
    const at = (seconds: number) => new Date(base + seconds * 1000);

    await t.step("crypto_assets as the tutorial fills it, before tickpipe", async () => {
      await db.sql`INSERT INTO crypto_assets (symbol, name) VALUES ('ETH/USD', 'Ethereum USD')`;
    });

    await t.step("tickpipe's own rows (seq and volume assigned by the pipeline)", async () => {
      const sequencer = new TickSequencer();
      const tick = (symbol: string, seconds: number, price: number, dayVolume: number) =>
        sequencer.assignPrice(
          parsePriceFrame({
            event: "price",
            symbol,
            timestamp: (base + seconds * 1000) / 1000,
            price,
            day_volume: dayVolume,
            currency_base: symbol === "BTC/USD" ? "Bitcoin" : "Ethereum",
            currency_quote: "US Dollar",
          }),
          performance.now(),
        );
      const rows = [
        tick("BTC/USD", 0, 100, 1000), // volume 0 (first tick seen), seq T
        tick("BTC/USD", 0, 101, 1001), // volume 1, seq T + 1
        tick("BTC/USD", 30, 102, 1003), // volume 2
        tick("ETH/USD", 120, 2010, 60), // a later minute; its asset row exists already
      ];
      const writer = new TickWriter(db.sql, { assetName: (s) => sequencer.name(s) });
      assert.equal(await writer.write(newBatch(rows)), "written");
    });

    await t.step("the tutorial's execute_values INSERT, 100 rows per statement", async () => {
      const rows: TutorialRow[] = [
        // Same timestamp as two tickpipe rows, inserted after them: it sorts after them.
        [at(0).toISOString(), "BTC/USD", 99, 1002],
        // Two rows sharing a timestamp in one statement: they keep the statement's order.
        [at(59).toISOString(), "BTC/USD", 105, 1010],
        [at(59).toISOString(), "BTC/USD", 104, 1011],
      ];
      // The tutorial's statement: INSERT INTO crypto_ticks (time, symbol, price, day_volume)
      // VALUES %s through psycopg2's execute_values (one (...) per tuple), then commit().
      await db.sql`
        INSERT INTO crypto_ticks (time, symbol, price, day_volume) VALUES ${db.sql(rows)}`;
    });

    await t.step("a one-row INSERT as typed in psql", async () => {
      await db.sql`
        INSERT INTO crypto_ticks (time, symbol, price, day_volume)
        VALUES (${at(10)}, 'BTC/USD', 98, 1005)`;
    });

    await t.step("COPY with the four columns (psql's \\copy of the tutorial's CSV)", async () => {
      const stream = await db.sql`
        COPY crypto_ticks (time, symbol, price, day_volume) FROM STDIN WITH (FORMAT csv)`
        .writable();
      stream.write(`${at(60).toISOString()},ETH/USD,2000,50\n`);
      stream.write(`${at(60).toISOString()},ETH/USD,2001,51\n`);
      stream.end();
      await finished(stream);
    });

    await t.step("every external row has a seq after the rows stored before it", async () => {
      const rows = await db.sql<{ price: number; seq: string; volume: string | null }[]>`
        SELECT price, seq::text, volume::text FROM crypto_ticks
        WHERE symbol = 'BTC/USD' AND "time" = ${at(0)} ORDER BY seq`;
      const t0 = BigInt(base) * 1000n;
      assert.deepEqual([...rows], [
        { price: 100, seq: String(t0), volume: "0" },
        { price: 101, seq: String(t0 + 1n), volume: "1" },
        { price: 99, seq: String(t0 + 2n), volume: null },
      ]);
      assert.equal(await duplicates(db.sql), 0);
    });

    // BTC's minute, by (time, seq): 100, 101, 99 | 98 | 102 | 105, 104. Volume: tickpipe's
    // rows only (0 + 1 + 2); day_volume: the last row's, an external one.
    const btc = {
      symbol: "BTC/USD",
      open: 100,
      high: 105,
      low: 98,
      close: 104,
      volume: "3",
      ticks: 7,
      dayVolume: "1011",
      pv: 101 * 1 + 102 * 2,
      filled: 0,
    };
    // ETH's first minute holds external rows only: no volume, no VWAP.
    const eth = {
      symbol: "ETH/USD",
      open: 2000,
      high: 2001,
      low: 2000,
      close: 2001,
      volume: null,
      vwap: null,
      ticks: 2,
      dayVolume: "51",
      pv: null,
      filled: 0,
    };
    const check = async (label: string, coarse: boolean) => {
      const read = (symbol: string, interval: "1m" | "1h" | "1d") =>
        fetchCandles(db.sql, {
          symbol,
          interval,
          from: new Date(today - 3 * DAY),
          to: new Date(today),
        });
      const pick = (c: Candle | undefined) => c && { ...c, vwap: c.vwap };
      const [btcMinute] = await read("BTC/USD", "1m");
      assert.deepEqual({ ...pick(btcMinute), vwap: undefined }, {
        ...btc,
        bucket: new Date(base),
        vwap: undefined,
      }, label);
      assert.ok(Math.abs(btcMinute!.vwap! - (101 * 1 + 102 * 2) / 3) < 1e-9, label);
      const ethMinutes = await read("ETH/USD", "1m");
      assert.deepEqual(ethMinutes[0], { ...eth, bucket: new Date(base + MINUTE) }, label);
      for (const interval of coarse ? ["1h", "1d"] as const : []) {
        const [btcCoarse] = await read("BTC/USD", interval);
        assert.equal(btcCoarse?.open, 100, `${label} ${interval}`);
        assert.equal(btcCoarse?.close, 104, `${label} ${interval}`);
        assert.equal(btcCoarse?.ticks, 7, `${label} ${interval}`);
        assert.equal(btcCoarse?.volume, "3", `${label} ${interval}`);
        assert.equal(btcCoarse?.dayVolume, "1011", `${label} ${interval}`);
        const [ethCoarse] = await read("ETH/USD", interval);
        assert.equal(ethCoarse?.open, 2000, `${label} ${interval}`);
        assert.equal(ethCoarse?.close, 2010, `${label} ${interval}`); // tickpipe's later tick
        assert.equal(ethCoarse?.ticks, 3, `${label} ${interval}`);
        assert.equal(ethCoarse?.volume, "0", `${label} ${interval}`);
      }
    };

    await t.step(`the 1m, 1h and 1d candles include them (${db.mode} mode)`, async () => {
      if (db.mode === "portable") return await check("views", true);
      // Real time at the minute level (its refresh policy starts one day back, so it has
      // materialized nothing here). Not above it: the hourly policy (three days back) may
      // already have run, and a level's real-time part starts at its own watermark, so it
      // is only as fresh as the minutes materialized below it, for tickpipe's rows alike.
      await check("real time", false);
      await refreshCandles(db.sql, { from: new Date(today - 3 * DAY), to: new Date(today) });
      await check("materialized", true);
    });

    await t.step("crypto_assets: the tutorial's name is kept; a later load upserts", async () => {
      const names = await db.sql<{ symbol: string; name: string }[]>`
        SELECT symbol, name FROM crypto_assets ORDER BY symbol`;
      assert.deepEqual([...names], [
        { symbol: "BTC/USD", name: "Bitcoin/US Dollar" },
        { symbol: "ETH/USD", name: "Ethereum USD" },
      ]);
      // tickpipe added BTC/USD: the tutorial's plain INSERT of it now meets the UNIQUE
      // constraint (as it would in the tutorial's own table); ON CONFLICT loads it.
      await assert.rejects(
        db.sql`INSERT INTO crypto_assets (symbol, name) VALUES ('BTC/USD', 'Bitcoin USD')`,
        /duplicate key/,
      );
      await db.sql`
        INSERT INTO crypto_assets (symbol, name) VALUES ('BTC/USD', 'Bitcoin USD')
        ON CONFLICT (symbol) DO UPDATE SET name = EXCLUDED.name`;
      const [btcName] = await db.sql<{ name: string }[]>`
        SELECT name FROM crypto_assets WHERE symbol = 'BTC/USD'`;
      assert.equal(btcName!.name, "Bitcoin USD");
    });
  } finally {
    await db.drop();
  }
});
