/**
 * Gaps and backfill end to end: the simulator on a manual clock, real ingest into a real
 * PostgreSQL, the real backfill task. A disconnect is cut exactly at minute boundaries of
 * the simulator's clock, so every minute is either fully streamed or fully missed, and the
 * candles after the fill can be compared with the simulator's own bars, minute for minute.
 */
import assert from "node:assert/strict";
import type { Sql } from "postgres";
import { type Candle, type CandleInterval, fetchCandles } from "../lib/candles/mod.ts";
import { listGaps } from "../lib/gaps/log.ts";
import type { SimulatorHandle } from "../lib/simulator/mod.ts";
import { createTestDatabase, type TestDatabase } from "./_support/db.ts";
import {
  advanceSeconds,
  allStored,
  DAY,
  HOUR,
  MINUTE,
  simBars,
  startIngest,
  tickRows,
  type TruthBar,
  until,
  yesterdayMidnight,
} from "./_support/gaps.ts";
import { runDeno, taskPermissions } from "./_support/run.ts";
import { TEST_KEY, withSimulator } from "./_support/sim.ts";
import { databaseUrl } from "./_support/url.ts";

const SYMBOLS = ["BTC/USD", "AAPL"];

/** Runs `deno task backfill ARGS` as a subprocess with its own permissions. */
function backfillTask(db: TestDatabase, sim: SimulatorHandle, args: string[]) {
  return runDeno("tasks/backfill.ts", args, {
    permissions: taskPermissions("backfill"),
    env: {
      DATABASE_URL: databaseUrl(db.config),
      TWELVEDATA_API_KEY: TEST_KEY,
      TWELVEDATA_API_URL: sim.apiUrl,
    },
  });
}

/** Streams 2 minutes, drops the connection, lets 3 minutes pass unseen, streams 2 more. */
async function streamWithDisconnect(db: TestDatabase, sim: SimulatorHandle) {
  advanceSeconds(sim, 120);
  await allStored(db.sql, sim);
  await sim.drop();
  // Nobody is connected now: these three minutes are made but not sent.
  sim.advance(3 * MINUTE);
  await until(() => sim.stats().subscriptions === SYMBOLS.length, "the resubscription");
  advanceSeconds(sim, 120);
  await allStored(db.sql, sim);
}

async function firstDayVolume(sql: Sql, symbol: string): Promise<number> {
  const [row] = await sql<{ day_volume: string }[]>`
    SELECT day_volume FROM crypto_ticks WHERE symbol = ${symbol} AND source = 0
    ORDER BY seq LIMIT 1`;
  return Number(row!.day_volume);
}

/**
 * The candles equal the simulator's bars: prices exactly; volume exactly, except that
 * `volumeOffset` is missing from candles that contain the symbol's first tick ever (its own
 * volume is unknowable: volume is the rise of day_volume since the previous tick).
 */
function assertSameBars(
  candles: Candle[],
  bars: TruthBar[],
  label: string,
  volumeOffset: (bar: TruthBar) => number,
) {
  assert.deepEqual(candles.map((c) => c.bucket.getTime()), bars.map((b) => b.time), label);
  for (const [i, bar] of bars.entries()) {
    const c = candles[i]!;
    const at = `${label} ${new Date(bar.time).toISOString()}`;
    assert.deepEqual(
      [c.open, c.high, c.low, c.close],
      [bar.open, bar.high, bar.low, bar.close],
      at,
    );
    assert.equal(Number(c.volume), bar.volume! - volumeOffset(bar), `${at} volume`);
  }
}

async function candles(
  sql: Sql,
  symbol: string,
  interval: CandleInterval,
  from: number,
  to: number,
) {
  return await fetchCandles(sql, { symbol, interval, from: new Date(from), to: new Date(to) });
}

async function snapshot(sql: Sql) {
  return await sql`
    SELECT count(*)::int AS n, sum(price)::text AS prices, sum(volume)::text AS volume,
      sum(seq)::text AS seqs, sum(source)::int AS sources
    FROM crypto_ticks`;
}

Deno.test("A disconnect is recorded as a gap; backfill --gaps fills it and the candles equal the simulator's bars", async (t) => {
  const db = await createTestDatabase();
  const start = yesterdayMidnight();
  try {
    await withSimulator({ rate: 4, clock: { startMs: start }, symbols: SYMBOLS }, async (sim) => {
      const ingest = await startIngest(db.sql, sim, SYMBOLS);
      try {
        await streamWithDisconnect(db, sim);
        await until(
          async () => (await listGaps(db.sql)).filter((g) => g.end !== null).length === 2,
          "both gaps closed",
        );

        await t.step("the gap is recorded with the right bounds", async () => {
          const gaps = await listGaps(db.sql);
          assert.deepEqual(gaps.map((g) => [g.symbol, g.reason, g.state]).sort(), [
            ["AAPL", "disconnected", "open"],
            ["BTC/USD", "disconnected", "open"],
          ]);
          for (const gap of gaps) {
            const [bounds] = await db.sql<{ before: Date; after: Date; inside: number }[]>`
              SELECT
                (SELECT max("time") FROM crypto_ticks
                  WHERE symbol = ${gap.symbol} AND "time" < ${new Date(
              start + 2 * MINUTE,
            )}) AS before,
                (SELECT min("time") FROM crypto_ticks
                  WHERE symbol = ${gap.symbol} AND "time" >= ${new Date(
              start + 2 * MINUTE,
            )}) AS after,
                (SELECT count(*)::int FROM crypto_ticks WHERE symbol = ${gap.symbol}
                  AND "time" >= ${new Date(start + 2 * MINUTE)}
                  AND "time" < ${new Date(start + 5 * MINUTE)}) AS inside`;
            assert.equal(gap.start.getTime(), bounds!.before.getTime(), "last tick before");
            assert.equal(gap.end!.getTime(), bounds!.after.getTime(), "first tick after");
            assert.ok(
              gap.start.getTime() >= start + MINUTE && gap.start.getTime() < start + 2 * MINUTE,
            );
            assert.ok(
              gap.end!.getTime() >= start + 5 * MINUTE && gap.end!.getTime() < start + 6 * MINUTE,
            );
            assert.equal(bounds!.inside, 0, "nothing stored while disconnected");
          }
        });

        await t.step(
          "backfill --gaps fills it; 1m, 1h and 1d candles equal the simulator's bars",
          async () => {
            const sent = sim.stats().price_events_sent;
            const run = await backfillTask(db, sim, ["--gaps", "--yes"]);
            assert.equal(run.code, 0, run.stderr + run.stdout);
            assert.match(run.stdout, /2 request\(s\) to \/time_series = 2 API credit\(s\)/);
            assert.match(run.stdout, /Done: 2 gap\(s\) filled, 6 minute\(s\) from REST bars/);
            assert.ok(!(run.stdout + run.stderr).includes(TEST_KEY), "the key is never printed");
            assert.equal(sim.stats().rest_credits_used, 2);
            const gaps = await listGaps(db.sql);
            assert.deepEqual(gaps.map((g) => [g.state, g.bars]), [["filled", 3], ["filled", 3]]);
            // Streamed ticks are still exactly what the simulator sent; bars are marked rows.
            assert.equal(await tickRows(db.sql), sent);
            for (const symbol of SYMBOLS) {
              const first = await firstDayVolume(db.sql, symbol);
              const minutes = await candles(db.sql, symbol, "1m", start, start + 7 * MINUTE);
              const truth = await simBars(sim, symbol, "1min", start, start + 7 * MINUTE);
              assert.equal(truth.length, 7);
              assertSameBars(minutes, truth, `${symbol} 1m`, (b) => b.time === start ? first : 0);
              assert.deepEqual(minutes.map((c) => c.filled), [0, 0, 1, 1, 1, 0, 0]);
              assert.ok(minutes.every((c) => (c.filled === 1) === (c.ticks === 0)));
              assertSameBars(
                await candles(db.sql, symbol, "1h", start, start + HOUR),
                await simBars(sim, symbol, "1h", start, start + HOUR),
                `${symbol} 1h`,
                () => first,
              );
              const days = await candles(db.sql, symbol, "1d", start, start + DAY);
              assertSameBars(
                days,
                await simBars(sim, symbol, "1day", start, start + DAY),
                `${symbol} 1d`,
                () => first,
              );
              assert.equal(days[0]!.filled, 3);
            }
          },
        );

        if (db.mode === "timescaledb") {
          await t.step("TimescaleDB: the refresh materialized the filled window", async () => {
            // The materialized rows alone give the same candles up to the first tick after
            // the gap (the later minutes are above the watermark: real-time, as they should).
            for (const view of ["one_minute_candle", "one_hour_candle", "one_day_candle"]) {
              await db.sql`ALTER MATERIALIZED VIEW ${db.sql(view)}
                SET (timescaledb.materialized_only = true)`;
            }
            for (const symbol of SYMBOLS) {
              const rows = await candles(db.sql, symbol, "1m", start, start + 6 * MINUTE);
              assert.deepEqual(rows.map((c) => c.filled), [0, 0, 1, 1, 1, 0], symbol);
              const [day] = await candles(db.sql, symbol, "1d", start, start + DAY);
              assert.equal(day?.filled, 3, symbol);
            }
            for (const view of ["one_minute_candle", "one_hour_candle", "one_day_candle"]) {
              await db.sql`ALTER MATERIALIZED VIEW ${db.sql(view)}
                SET (timescaledb.materialized_only = false)`;
            }
          });
        }

        await t.step("a second run changes nothing and costs nothing", async () => {
          const before = await snapshot(db.sql);
          const credits = sim.stats().rest_credits_used;
          const run = await backfillTask(db, sim, ["--gaps", "--yes"]);
          assert.equal(run.code, 0, run.stderr);
          assert.match(run.stdout, /^Nothing to request/m);
          assert.deepEqual(await snapshot(db.sql), before);
          assert.equal(sim.stats().rest_credits_used, credits);
          const history = await backfillTask(db, sim, [
            "--symbols",
            "BTC/USD",
            "--from",
            new Date(start).toISOString(),
            "--to",
            new Date(start + 7 * MINUTE).toISOString(),
            "--yes",
          ]);
          assert.equal(history.code, 0, history.stderr);
          assert.match(history.stdout, /^Nothing to request/m, "every minute already has data");
          assert.deepEqual(await snapshot(db.sql), before);
        });
      } finally {
        await ingest.stop();
      }
    });
  } finally {
    await db.drop();
  }
});
