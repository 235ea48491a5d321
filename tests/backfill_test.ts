/**
 * Gaps and backfill end to end: the simulator on a manual clock, real ingest into a real
 * PostgreSQL, the real backfill task. A disconnect is cut exactly at minute boundaries of
 * the simulator's clock, so every minute is either fully streamed or fully missed, and the
 * candles after the fill can be compared with the simulator's own bars, minute for minute.
 */
import assert from "node:assert/strict";
import type { Sql } from "postgres";
import { type Candle, type CandleInterval, fetchCandles } from "../lib/candles/mod.ts";
import { runBackfill } from "../lib/backfill/backfill.ts";
import { CreditGate } from "../lib/backfill/credits.ts";
import { historyGaps } from "../lib/backfill/history.ts";
import { planFill } from "../lib/backfill/plan.ts";
import { listGaps } from "../lib/gaps/log.ts";
import { TwelveDataRest } from "../lib/twelvedata/rest.ts";
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
  yesterdayMidnight,
} from "./_support/gaps.ts";
import { permissionSet, runDeno } from "./_support/run.ts";
import { TEST_KEY, waitFor, withSimulator } from "./_support/sim.ts";
import { databaseUrl } from "./_support/url.ts";

const SYMBOLS = ["BTC/USD", "AAPL"];

/** Runs `deno task backfill ARGS` as a subprocess with its own permissions. */
function backfillTask(db: TestDatabase, sim: SimulatorHandle, args: string[]) {
  return runDeno("tasks/backfill.ts", args, {
    permissions: permissionSet("db"),
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
  await waitFor(() => sim.stats().subscriptions === SYMBOLS.length, "the resubscription");
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
        await waitFor(
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
          assert.match(run.stdout, /^Nothing to fill: no open gap/m);
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

/** Backfill options for in-process runs whose waits advance the simulator's clock. */
function drivenBackfill(sim: SimulatorHandle, waits: number[]) {
  const clock = {
    now: () => sim.now(),
    sleep: (ms: number) => {
      waits.push(ms);
      sim.advance(ms);
      return Promise.resolve();
    },
  };
  const gate = new CreditGate({ clock });
  const rest = new TwelveDataRest({
    apiKey: TEST_KEY,
    apiUrl: sim.apiUrl,
    onResponse: (r) => gate.observe(r),
  });
  return { clock, gate, rest };
}

Deno.test("A 429 in the middle of a backfill is waited out on the plan's clock", async () => {
  const db = await createTestDatabase();
  const start = yesterdayMidnight();
  try {
    await withSimulator({ rate: 1, clock: { startMs: start } }, async (sim) => {
      sim.setCredits({ perMinute: 2 });
      const waits: number[] = [];
      const { clock, gate, rest } = drivenBackfill(sim, waits);
      const symbols = ["BTC/USD", "ETH/USD", "AAPL"];
      const gaps = await historyGaps(db.sql, symbols, {
        from: new Date(start - 10 * MINUTE),
        to: new Date(start),
      });
      const plan = await planFill(db.sql, gaps, { nowMs: clock.now(), live: new Set() });
      assert.equal(plan.requests, 3);
      let spent = false;
      const result = await runBackfill(db.sql, plan, {
        rest,
        gate,
        clock,
        mode: db.mode,
        onProgress: async (p) => {
          // Another client on the same key takes the minute's last credit.
          if (p.requestsDone === 1 && !spent) {
            spent = true;
            await fetch(`${sim.apiUrl}/quote?symbol=AAPL`, {
              headers: { Authorization: `apikey ${TEST_KEY}` },
            }).then((r) => r.body?.cancel());
          }
        },
      });
      assert.equal(result.requests, 3);
      assert.equal(result.bars, 30);
      assert.equal(result.filled, 3);
      const stats = sim.stats();
      assert.equal(stats.rest_rate_limited, 1, "one request met a 429");
      assert.equal(stats.rest_credits_used, 4);
      // It waited once: from the 429 (the simulator's clock at the start of a minute) to the
      // next minute plus a second of margin, on the clock the test drives.
      assert.deepEqual(waits, [61_000]);
      assert.equal(sim.now(), start + 61_000);
      const [rows] = await db.sql<{ n: number }[]>`
        SELECT count(*)::int AS n FROM crypto_ticks WHERE source = 1`;
      assert.equal(rows!.n, 30);

      // One credit a minute: each response says none is left, so the next request waits for
      // the next minute instead of meeting a 429.
      sim.setCredits({ perMinute: 1 });
      waits.length = 0;
      const more = await historyGaps(db.sql, ["SOL/USD", "MSFT"], {
        from: new Date(start - 10 * MINUTE),
        to: new Date(start),
      });
      const second = await runBackfill(
        db.sql,
        await planFill(db.sql, more, { nowMs: clock.now(), live: new Set() }),
        { rest, gate, clock, mode: db.mode },
      );
      assert.equal(second.requests, 2);
      assert.equal(sim.stats().rest_rate_limited, 1, "no new 429");
      // Once for the minute the first phase used up, once between the two requests.
      assert.equal(waits.length, 2);
    });
  } finally {
    await db.drop();
  }
});

Deno.test("An interrupted backfill resumes where it stopped and fetches nothing twice", async () => {
  const db = await createTestDatabase();
  const start = yesterdayMidnight();
  try {
    await withSimulator({ rate: 1, clock: { startMs: start } }, async (sim) => {
      const { clock, gate, rest } = drivenBackfill(sim, []);
      // 6,000 minutes: two requests (4,999 minutes at most each).
      const window = { from: new Date(start - 6000 * MINUTE), to: new Date(start) };
      const first = await historyGaps(db.sql, ["BTC/USD"], window);
      const plan = await planFill(db.sql, first, { nowMs: clock.now(), live: new Set() });
      assert.equal(plan.requests, 2);
      const controller = new AbortController();
      const interrupted = await runBackfill(db.sql, plan, {
        rest,
        gate,
        clock,
        mode: db.mode,
        signal: controller.signal,
        onProgress: (p) => {
          if (p.requestsDone === 1) controller.abort();
        },
      });
      assert.equal(interrupted.interrupted, true);
      assert.equal(interrupted.requests, 1);
      const [gap] = await listGaps(db.sql);
      assert.equal(gap!.state, "open");
      assert.equal(gap!.filledTo!.getTime(), window.from.getTime() + 4999 * MINUTE);
      assert.equal(gap!.bars, 4999);

      const again = await historyGaps(db.sql, ["BTC/USD"], window);
      assert.deepEqual(again.map((g) => g.id), [gap!.id], "the same gap, not a new one");
      const rest2 = await planFill(db.sql, again, { nowMs: clock.now(), live: new Set() });
      assert.equal(rest2.requests, 1, "only the part not yet fetched");
      const resumed = await runBackfill(db.sql, rest2, { rest, gate, clock, mode: db.mode });
      assert.equal(resumed.requests, 1);
      assert.equal(resumed.bars, 1001);
      const [done] = await listGaps(db.sql);
      assert.deepEqual([done!.state, done!.bars], ["filled", 6000]);
      assert.equal(sim.stats().rest_credits_used, 2);
      const [rows] = await db.sql<{ n: number; minutes: number }[]>`
        SELECT count(*)::int AS n, count(DISTINCT "time")::int AS minutes
        FROM crypto_ticks WHERE symbol = 'BTC/USD'`;
      assert.deepEqual({ ...rows }, { n: 24_000, minutes: 6000 });
      const nothing = await planFill(
        db.sql,
        await historyGaps(db.sql, ["BTC/USD"], window),
        { nowMs: clock.now(), live: new Set() },
      );
      assert.equal(nothing.requests, 0);
    });
  } finally {
    await db.drop();
  }
});

/** Whether util-linux `script` (a pseudo-terminal for a command) is available. */
async function hasScript(): Promise<boolean> {
  try {
    const out = await new Deno.Command("script", {
      args: ["--version"],
      stdout: "null",
      stderr: "null",
    })
      .output();
    return out.success;
  } catch {
    return false;
  }
}

Deno.test("backfill --symbols BTC/USD --days 7: the cost first, a progress bar on a terminal, plain lines otherwise", async (t) => {
  await withSimulator({ rate: 1 }, async (sim) => {
    const args = ["--symbols", "BTC/USD", "--days", "7"];
    await t.step(
      "not a terminal: it asks for --yes, then prints plain progress lines",
      async () => {
        const db = await createTestDatabase();
        try {
          const dry = await backfillTask(db, sim, [...args, "--dry-run"]);
          assert.equal(dry.code, 0, dry.stderr);
          assert.match(dry.stdout, /3 request\(s\) to \/time_series = 3 API credit\(s\)/);
          assert.deepEqual(await listGaps(db.sql), [], "a dry run writes nothing");
          const refused = await backfillTask(db, sim, args);
          assert.equal(refused.code, 2);
          assert.match(refused.stderr, /stdin is not a terminal \(pass --yes to go ahead\)/);
          assert.equal(sim.stats().rest_credits_used, 0, "nothing spent before the answer");
          assert.deepEqual(await listGaps(db.sql), [], "nor recorded");
          const run = await backfillTask(db, sim, [...args, "--yes"]);
          assert.equal(run.code, 0, run.stderr);
          assert.ok(!run.stderr.includes("\r"), "no carriage returns in a log");
          assert.match(run.stderr, /^Backfill: 3\/3 requests, [\d,]+ minutes filled/m);
          assert.match(
            run.stdout,
            /^Done: 1 gap\(s\) filled, [\d,]+ minute\(s\) from REST bars, 3 request/m,
          );
          const [row] = await db.sql<{ minutes: number }[]>`
          SELECT count(*)::int AS minutes FROM crypto_ticks WHERE source = 1`;
          assert.ok(row!.minutes > 10_000, `${row!.minutes} minutes`);
          // A symbol the API does not serve: its gap is unfillable, with Twelve Data's reason.
          const unknown = await backfillTask(db, sim, [
            "--symbols",
            "NOPE",
            "--days",
            "1",
            "--yes",
          ]);
          assert.equal(unknown.code, 0, unknown.stderr);
          assert.match(unknown.stdout, /1 unfillable/);
          assert.match(unknown.stdout, /^Unfillable: NOPE \(gap \d+\): .*not found/m);
          const [nope] = await listGaps(db.sql, { symbols: ["NOPE"] });
          assert.equal(nope!.state, "unfillable");
        } finally {
          await db.drop();
        }
      },
    );
    await t.step({
      name: "a terminal (a pty from script): a bar redrawn in place",
      ignore: !(await hasScript()),
      fn: async () => {
        const db = await createTestDatabase();
        try {
          const command = [
            Deno.execPath(),
            "run",
            ...permissionSet("db"),
            "tasks/backfill.ts",
            ...args,
            "--yes",
          ]
            .map((word) => `'${word}'`).join(" ");
          const out = await new Deno.Command("script", {
            args: ["-qec", command, "/dev/null"],
            env: {
              NO_COLOR: "1",
              DATABASE_URL: databaseUrl(db.config),
              TWELVEDATA_API_KEY: TEST_KEY,
              TWELVEDATA_API_URL: sim.apiUrl,
            },
            stdout: "piped",
            stderr: "piped",
          }).output();
          const text = new TextDecoder().decode(out.stdout);
          assert.equal(out.code, 0, text);
          // Each redraw: carriage return, erase the line, the bar.
          const draws = text.split("\r\x1b[2K").slice(1);
          assert.ok(draws.length >= 2, text);
          assert.ok(draws.every((d) => /^\[#*-*\] +\d+% \d\/3 requests/.test(d)), text);
          assert.match(draws.at(-1)!, /^\[#{24}\] 100% 3\/3 requests, [\d,]+ minutes filled/);
          assert.match(text, /Done: 1 gap\(s\) filled/);
          assert.ok(!text.includes(TEST_KEY));
        } finally {
          await db.drop();
        }
      },
    });
  });
});
