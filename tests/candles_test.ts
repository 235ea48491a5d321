import assert from "node:assert/strict";
import type { Sql } from "postgres";
import { createTestDatabase, type TestDatabase } from "./_support/db.ts";
import { type CandleTick as Tick, insertTicks, seqOf } from "./_support/ticks.ts";
import { MIGRATIONS, renderMigration } from "../lib/db/migrations.ts";
import {
  CANDLE_RELATIONS,
  type CandleInterval,
  type CandleQuery,
  candleStatement,
  fetchCandles,
  refreshCandles,
} from "../lib/candles/mod.ts";
import { permissionSet, runDeno } from "./_support/run.ts";
import { databaseUrl } from "./_support/url.ts";

// ---------------------------------------------------------------------------------------
// The fixture: a known set of ticks, and candles computed from it independently.

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/** Midnight UTC two days ago: the fixture straddles the midnight starting that day. */
const startOfTodayUtc = () => Math.floor(Date.now() / DAY) * DAY;

interface Fixture {
  /** In time order of arrival: the first batch. */
  early: Tick[];
  /** Ticks that arrive after the first batch was aggregated, with earlier timestamps. */
  late: Tick[];
  /** Ticks of the last two minutes (today's partial candles). */
  today: Tick[];
  midnight: number;
}

function fixture(): Fixture {
  const d = startOfTodayUtc() - 2 * DAY;
  const s = 1000;
  const btc = (
    offset: number,
    ordinal: number,
    price: number,
    volume: string,
    dayVolume: string,
  ): Tick => ({ symbol: "BTC/USD", time: d + offset * s, ordinal, price, volume, dayVolume });
  const eth = (
    offset: number,
    ordinal: number,
    price: number,
    volume: string,
    dayVolume: string,
  ): Tick => ({ symbol: "ETH/USD", time: d + offset * s, ordinal, price, volume, dayVolume });
  const eur = (offset: number, ordinal: number, price: number): Tick => ({
    symbol: "EUR/USD",
    time: d + offset * s,
    ordinal,
    price,
    volume: null,
    dayVolume: null,
  });
  const early = [
    // Three ticks in the same second before midnight: seq orders them (open 100, close 99.5).
    btc(-2, 0, 100, "2", "1000"),
    btc(-2, 1, 101, "1.5", "1001.5"),
    btc(-2, 2, 99.5, "1.5", "1003"),
    btc(-1, 0, 100.25, "0.25", "1003.25"),
    // Midnight: day_volume resets.
    btc(0, 0, 100.5, "0.5", "0.5"),
    btc(0, 1, 100.75, "1", "1.5"),
    btc(30, 0, 101, "0.2", "1.7"),
    btc(70, 0, 102, "0.3", "2"),
    // A minute whose only tick has zero volume: volume 0, vwap NULL.
    btc(2 * 3600, 0, 102.5, "0", "2"),
    btc(3.5 * 3600, 0, 103, "0.125", "2.125"),
    btc(4.5 * 3600, 0, 102.25, "0.375", "2.5"),
    btc(5.5 * 3600, 0, 101.5, "1.25", "3.75"),
    btc(13 * 3600, 0, 104, "0.25", "4"),
    btc(13 * 3600, 1, 103.5, "0.75", "4.75"),
    eth(-1, 0, 3000, "1", "50"),
    eth(0, 0, 3001, "2", "2"),
    eth(0, 1, 2999, "1", "3"),
    eth(5, 0, 3002, "0.5", "3.5"),
    eth(2 * 3600, 0, 3010, "1", "4.5"),
    // Forex: no volume at all.
    eur(-10, 0, 1.0851),
    eur(0, 0, 1.0852),
    eur(0, 1, 1.0849),
    eur(45, 0, 1.0855),
    eur(3 * 3600, 0, 1.086),
  ];
  const late = [
    // Same second as an earlier tick, arriving later: second by seq, a new high of its minute.
    btc(30, 1, 104.5, "0.1", "1.8"),
    // Ninety minutes before midnight, arriving after everything above.
    btc(-5400, 0, 98, "0.4", "900"),
  ];
  const now = Math.floor(Date.now() / s) * s;
  const today = [
    { ...btc(0, 0, 105, "0.5", "5"), time: now - 90 * s },
    { ...btc(0, 1, 105.5, "0.25", "5.25"), time: now - 90 * s },
    { ...btc(0, 0, 106, "0.5", "5.75"), time: now - 30 * s },
  ];
  return { early, late, today, midnight: d };
}

interface Expected {
  bucket: number;
  symbol: string;
  open: number;
  high: number;
  low: number;
  close: number;
  volume: number | null;
  vwap: number | null;
  ticks: number;
  dayVolume: number | null;
}

/** Candles from raw ticks, computed here without SQL: the reference the database must match. */
function expectedCandles(ticks: Tick[], bucketOf: (time: number) => number): Expected[] {
  const groups = new Map<string, Tick[]>();
  for (const t of ticks) {
    const key = `${t.symbol}|${bucketOf(t.time)}`;
    groups.set(key, [...(groups.get(key) ?? []), t]);
  }
  const out: Expected[] = [];
  for (const group of groups.values()) {
    group.sort((a, b) => (seqOf(a) < seqOf(b) ? -1 : 1));
    const withVolume = group.filter((t) => t.volume !== null);
    const volume = withVolume.length
      ? withVolume.reduce((sum, t) => sum + Number(t.volume), 0)
      : null;
    const pv = withVolume.reduce((sum, t) => sum + t.price * Number(t.volume), 0);
    const last = group[group.length - 1]!;
    out.push({
      bucket: bucketOf(group[0]!.time),
      symbol: group[0]!.symbol,
      open: group[0]!.price,
      high: Math.max(...group.map((t) => t.price)),
      low: Math.min(...group.map((t) => t.price)),
      close: last.price,
      volume,
      vwap: volume ? pv / volume : null,
      ticks: group.length,
      dayVolume: last.dayVolume === null ? null : Number(last.dayVolume),
    });
  }
  return out.sort((a, b) => a.symbol.localeCompare(b.symbol) || a.bucket - b.bucket);
}

const floorTo = (width: number) => (time: number) => Math.floor(time / width) * width;
const BUCKETS: Record<CandleInterval, (time: number) => number> = {
  "1m": floorTo(MINUTE),
  "1h": floorTo(HOUR),
  "1d": floorTo(DAY),
};

/** Local midnight in `timeZone` of the day containing `time`, found by trying each offset. */
function zonedDayStart(timeZone: string) {
  const fmt = new Intl.DateTimeFormat("en-CA", {
    timeZone,
    hourCycle: "h23",
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
  });
  return (time: number) => {
    const date = fmt.format(time).slice(0, 10);
    const [y, m, d] = date.split("-").map(Number) as [number, number, number];
    for (let h = -15; h <= 15; h++) {
      const candidate = Date.UTC(y, m - 1, d) - h * HOUR;
      if (fmt.format(candidate) === `${date}, 00:00`) return candidate;
    }
    throw new Error(`No midnight found for ${date} in ${timeZone}`);
  };
}

function close(actual: number | null, expected: number | null, what: string): void {
  if (expected === null || actual === null) {
    assert.equal(actual, expected, what);
    return;
  }
  assert.ok(
    Math.abs(actual - expected) <= 1e-9 * Math.max(1, Math.abs(expected)),
    `${what}: ${actual} != ${expected}`,
  );
}

interface Row {
  bucket: Date | string;
  symbol: string;
  open: number;
  high: number;
  low: number;
  close: number;
  volume: string | number | null;
  vwap: number | null;
  ticks: number;
  day_volume?: string | number | null;
}

function assertCandles(rows: Row[], expected: Expected[], label: string): void {
  assert.deepEqual(
    rows.map((r) => `${r.symbol} ${new Date(r.bucket).toISOString()}`),
    expected.map((e) => `${e.symbol} ${new Date(e.bucket).toISOString()}`),
    `${label}: buckets`,
  );
  rows.forEach((r, i) => {
    const e = expected[i]!;
    const what = `${label} ${e.symbol} ${new Date(e.bucket).toISOString()}`;
    assert.equal(r.open, e.open, `${what} open`);
    assert.equal(r.high, e.high, `${what} high`);
    assert.equal(r.low, e.low, `${what} low`);
    assert.equal(r.close, e.close, `${what} close`);
    close(r.volume === null ? null : Number(r.volume), e.volume, `${what} volume`);
    close(r.vwap, e.vwap, `${what} vwap`);
    assert.equal(r.ticks, e.ticks, `${what} ticks`);
    if (r.day_volume !== undefined) {
      close(r.day_volume === null ? null : Number(r.day_volume), e.dayVolume, `${what} day_volume`);
    }
  });
}

function readRelation(sql: Sql, interval: CandleInterval) {
  return sql<Row[]>`
    SELECT bucket, symbol, open, high, low, close, volume, vwap, ticks, day_volume
    FROM ${sql(CANDLE_RELATIONS[interval])} ORDER BY symbol, bucket`;
}

/**
 * Loads the fixture. In TimescaleDB mode the first batch is materialized, the late ticks
 * are inserted and refreshed (invalidation), and today's ticks are left to real-time
 * aggregation; in portable mode the views are always current.
 */
async function seed(db: TestDatabase): Promise<Fixture> {
  const f = fixture();
  const window = { from: new Date(f.midnight - 2 * DAY), to: new Date(startOfTodayUtc()) };
  await insertTicks(db.sql, f.early);
  if (db.mode === "timescaledb") await refreshCandles(db.sql, window);
  await insertTicks(db.sql, f.late);
  if (db.mode === "timescaledb") await refreshCandles(db.sql, window);
  await insertTicks(db.sql, f.today);
  await db.sql`INSERT INTO crypto_assets (symbol, name) VALUES ('BTC/USD', 'Bitcoin'),
    ('ETH/USD', 'Ethereum'), ('EUR/USD', 'Euro / US Dollar'), ('SOL/USD', 'Solana')`;
  return f;
}

const allTicks = (f: Fixture) => [...f.early, ...f.late, ...f.today];

// ---------------------------------------------------------------------------------------

Deno.test("Candles at every interval match an independent computation from the ticks", async (t) => {
  const db = await createTestDatabase();
  try {
    const f = await seed(db);
    const ticks = allTicks(f);
    for (const interval of ["1m", "1h", "1d"] as const) {
      await t.step(`${CANDLE_RELATIONS[interval]} (${db.mode})`, async () => {
        assertCandles(
          await readRelation(db.sql, interval),
          expectedCandles(ticks, BUCKETS[interval]),
          interval,
        );
      });
    }
    await t.step(
      "ties, the day_volume reset and the late ticks land where seq puts them",
      async () => {
        const [minute] = await db.sql<Row[]>`
        SELECT * FROM one_minute_candle WHERE symbol = 'BTC/USD'
          AND bucket = ${new Date(f.midnight - MINUTE)}`;
        assert.equal(minute?.open, 100);
        assert.equal(minute?.close, 100.25);
        assert.equal(minute?.ticks, 4);
        const [late] = await db.sql<Row[]>`
        SELECT * FROM one_minute_candle WHERE symbol = 'BTC/USD'
          AND bucket = ${new Date(f.midnight)}`;
        assert.equal(late?.high, 104.5);
        assert.equal(late?.close, 104.5);
        const days = await db.sql<Row[]>`
        SELECT * FROM one_day_candle WHERE symbol = 'BTC/USD' ORDER BY bucket`;
        assert.equal(Number(days[0]?.day_volume), 1003.25);
        assert.equal(days[0]?.open, 98);
        assert.equal(Number(days[1]?.day_volume), 4.75);
        const [forex] = await db.sql<Row[]>`
        SELECT * FROM one_day_candle WHERE symbol = 'EUR/USD' AND bucket = ${new Date(f.midnight)}`;
        assert.equal(forex?.volume, null);
        assert.equal(forex?.vwap, null);
        assert.equal(forex?.ticks, 4);
      },
    );
    await t.step("today's partial candle appears without a refresh", async () => {
      const today = await db.sql<Row[]>`
        SELECT * FROM one_day_candle WHERE symbol = 'BTC/USD'
          AND bucket = ${new Date(BUCKETS["1d"](f.today[0]!.time))}`;
      assert.equal(today.length, 1);
      assert.ok(today[0]!.ticks >= 3);
      const minutes = await db.sql<Row[]>`
        SELECT * FROM one_minute_candle WHERE symbol = 'BTC/USD'
          AND bucket >= ${new Date(f.today[0]!.time - MINUTE)}`;
      assert.equal(minutes.reduce((n, m) => n + m.ticks, 0), 3);
    });
    await t.step("the tutorial's query works unchanged", async () => {
      const rows = await db.sql.unsafe(
        `SELECT * FROM one_day_candle WHERE symbol = 'BTC/USD' AND bucket >= NOW() - INTERVAL '14 days' ORDER BY bucket;`,
      );
      for (const column of ["bucket", "open", "high", "low", "close", "volume", "day_volume"]) {
        assert.ok(column in rows[0]!, `column ${column}`);
      }
      assertCandles(
        rows as unknown as Row[],
        expectedCandles(ticks, BUCKETS["1d"]).filter((e) => e.symbol === "BTC/USD"),
        "tutorial",
      );
    });
  } finally {
    await db.drop();
  }
});

/** Runs a task in-process with DATABASE_URL pointing at `db`, capturing what it prints. */
/** Runs `script` as its task runs (own process, the task's permissions) against `db`. */
async function runTask(
  db: TestDatabase,
  script: string,
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const result = await runDeno(script, args, {
    permissions: permissionSet("db"),
    env: { DATABASE_URL: databaseUrl(db.config) },
  });
  return { ...result, stdout: result.stdout.trimEnd(), stderr: result.stderr.trimEnd() };
}

Deno.test("The candles task prints tables, CSV and JSON, and explains empty results", async (t) => {
  const db = await createTestDatabase();
  try {
    const f = await seed(db);
    const ticks = allTicks(f);
    const daily = expectedCandles(ticks, BUCKETS["1d"]).filter((e) => e.symbol === "BTC/USD");

    await t.step("table: the last 14 days of daily candles, aligned", async () => {
      const r = await runTask(db, "tasks/candles.ts", ["BTC/USD", "14"]);
      assert.equal(r.code, 0, r.stderr);
      const lines = r.stdout.split("\n");
      assert.match(
        lines[0]!,
        /^bucket \(UTC\)\s+open\s+high\s+low\s+close\s+volume\s+vwap\s+ticks$/,
      );
      assert.match(lines[1]!, /^-+( +-+){7}$/);
      assert.equal(lines.length, 2 + daily.length);
      const widths = new Set(lines.map((l) => l.length));
      assert.equal(widths.size, 1, "every line has the same width");
      const first = lines[2]!.trim().split(/\s+/);
      const e = daily[0]!;
      assert.equal(first[0], new Date(e.bucket).toISOString().slice(0, 10));
      assert.deepEqual(first.slice(1, 5).map(Number), [e.open, e.high, e.low, e.close]);
      assert.equal(Number(first[5]), e.volume);
      close(Number(first[6]), Number(e.vwap!.toFixed(2)), "vwap shown");
      assert.equal(Number(first[7]), e.ticks);
    });

    await t.step("csv: every field of every daily candle", async () => {
      const r = await runTask(db, "tasks/candles.ts", ["BTC/USD", "--format", "csv"]);
      assert.equal(r.code, 0, r.stderr);
      const [header, ...lines] = r.stdout.split("\n");
      assert.equal(
        header,
        "bucket,symbol,open,high,low,close,volume,vwap,ticks,day_volume,filled",
      );
      const rows = lines.map((line) => {
        const [bucket, symbol, open, high, low, close, volume, vwap, ticks, dayVolume] = line
          .split(",");
        return {
          bucket: bucket!,
          symbol: symbol!,
          open: Number(open),
          high: Number(high),
          low: Number(low),
          close: Number(close),
          volume: volume === "" ? null : Number(volume),
          vwap: vwap === "" ? null : Number(vwap),
          ticks: Number(ticks),
          day_volume: dayVolume === "" ? null : Number(dayVolume),
        };
      });
      assertCandles(rows, daily, "csv");
    });

    await t.step("json: minute candles over an explicit range, forex without volume", async () => {
      const from = new Date(f.midnight - HOUR).toISOString();
      const to = new Date(f.midnight + HOUR).toISOString();
      const r = await runTask(db, "tasks/candles.ts", [
        "EUR/USD",
        "--interval",
        "1m",
        "--from",
        from,
        "--to",
        to,
        "--format",
        "json",
      ]);
      assert.equal(r.code, 0, r.stderr);
      const expected = expectedCandles(ticks, BUCKETS["1m"]).filter((e) =>
        e.symbol === "EUR/USD" && e.bucket >= f.midnight - HOUR && e.bucket < f.midnight + HOUR
      );
      assert.equal(expected.length, 2);
      const rows = JSON.parse(r.stdout) as Row[];
      assertCandles(rows, expected, "json");
      assert.equal(rows[0]!.volume, null);
    });

    await t.step("--tz America/New_York cuts days at New York midnight", async () => {
      const zone = "America/New_York";
      const r = await runTask(db, "tasks/candles.ts", [
        "BTC/USD",
        "--tz",
        zone,
        "--from",
        new Date(f.midnight - 3 * DAY).toISOString(),
        "--format",
        "json",
      ]);
      assert.equal(r.code, 0, r.stderr);
      const expected = expectedCandles(ticks, zonedDayStart(zone)).filter((e) =>
        e.symbol === "BTC/USD"
      );
      assertCandles(JSON.parse(r.stdout) as Row[], expected, "tz");
      // The UTC day of the fixture's midnight is split across two New York days.
      assert.notDeepEqual(
        expected.map((e) => e.ticks),
        daily.map((e) => e.ticks),
      );
      const table = await runTask(db, "tasks/candles.ts", ["BTC/USD", "--tz", zone]);
      assert.equal(table.code, 0, table.stderr);
      assert.match(table.stdout, /^bucket \(America\/New_York\)/);
    });

    await t.step("an unknown symbol or an empty range is one clear line, exit 1", async () => {
      const unknown = await runTask(db, "tasks/candles.ts", ["NOPE/USD"]);
      assert.equal(unknown.code, 1);
      assert.equal(unknown.stdout, "");
      assert.equal(
        unknown.stderr,
        'Unknown symbol "NOPE/USD": it has no ticks and is not in crypto_assets',
      );
      const empty = await runTask(db, "tasks/candles.ts", [
        "BTC/USD",
        "--from",
        "2001-01-01",
        "--to",
        "2001-02-01",
      ]);
      assert.equal(empty.code, 1);
      assert.equal(
        empty.stderr,
        'No 1d candles for "BTC/USD" from 2001-01-01 00:00 to 2001-02-01 00:00 UTC',
      );
      // Listed in crypto_assets but without ticks: known, just empty.
      const listed = await runTask(db, "tasks/candles.ts", ["SOL/USD"]);
      assert.equal(listed.code, 1);
      assert.match(listed.stderr, /^No 1d candles for "SOL\/USD"/);
    });

    await t.step("bad arguments exit 2 with the usage", async () => {
      for (
        const args of [
          [],
          ["BTC/USD", "--interval", "5m"],
          ["BTC/USD", "zero"],
          ["BTC/USD", "0"],
          ["BTC/USD", "--format", "xml"],
          ["BTC/USD", "--from", "yesterday"],
          ["BTC/USD", "--from", "2026-02-30"],
          ["BTC/USD", "--from", "2026-03-02", "--to", "2026-03-01"],
          ["BTC/USD", "--tz", "Mars/Olympus_Mons"],
          ["BTC/USD", "--tz", "America/New_York", "--interval", "1h"],
          ["BTC/USD", "--bogus"],
          ["BTC/USD", "14", "extra"],
        ]
      ) {
        const r = await runTask(db, "tasks/candles.ts", args);
        assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
        assert.match(r.stderr, /Usage: tickpipe candles/, args.join(" "));
      }
    });
  } finally {
    await db.drop();
  }
});

Deno.test("In portable mode a candle read is a primary key range scan of the candle table, never of the ticks", async (t) => {
  const db = await createTestDatabase({ mode: "portable" });
  try {
    const f = await seed(db);
    const sameAsView = async (query: CandleQuery, label: string) => {
      const viewRows = await db.sql<Row[]>`
        SELECT bucket, symbol, open, high, low, close, volume, vwap, ticks, day_volume
        FROM ${db.sql(CANDLE_RELATIONS[query.interval])}
        WHERE symbol = ${query.symbol}
          AND bucket >= ${query.from}::timestamptz AND bucket < ${query.to}::timestamptz
        ORDER BY bucket`;
      const candles = await fetchCandles(db.sql, query);
      const rows: Row[] = candles.map((c) => ({ ...c, day_volume: c.dayVolume }));
      const expected: Expected[] = viewRows.map((r) => ({
        ...r,
        bucket: new Date(r.bucket).getTime(),
        volume: r.volume === null ? null : Number(r.volume),
        dayVolume: r.day_volume == null ? null : Number(r.day_volume),
      }));
      assertCandles(rows, expected, label);
      assert.deepEqual(rows.map((r) => r.volume), viewRows.map((r) => r.volume), label);
      return viewRows.length;
    };

    await t.step("crypto_ticks has no index but (symbol, time)", async () => {
      const indexes = await db.sql<{ indexname: string }[]>`
        SELECT indexname FROM pg_indexes WHERE tablename = 'crypto_ticks'`;
      assert.deepEqual(indexes.map((i) => i.indexname), ["crypto_ticks_symbol_time_idx"]);
    });

    await t.step("same rows as the view, for aligned and unaligned ranges", async () => {
      const m = f.midnight;
      const ranges: [number, number][] = [
        [m - 2 * DAY, Date.now() + DAY],
        [m - 90 * MINUTE, m + 2 * HOUR],
        [m - 90 * MINUTE + 17_000, m + 30_000],
        [m - 1, m + 13 * HOUR + 1],
        [m + 1, m + 13 * HOUR],
        [m - HOUR - 1, m - 1],
      ];
      let rows = 0;
      for (const symbol of ["BTC/USD", "ETH/USD", "EUR/USD", "SOL/USD"]) {
        for (const interval of ["1m", "1h", "1d"] as const) {
          for (const [from, to] of ranges) {
            rows += await sameAsView(
              { symbol, interval, from: new Date(from), to: new Date(to) },
              `${symbol} ${interval} ${new Date(from).toISOString()}..${
                new Date(to).toISOString()
              }`,
            );
          }
        }
      }
      assert.ok(rows > 50, `compared ${rows} rows`);
    });

    await t.step("EXPLAIN: an index range scan on tickpipe_candle_pkey", async () => {
      // Enough ticks for the planner to prefer the index: 5 symbols over 30 days.
      await db.sql`
        INSERT INTO crypto_ticks ("time", symbol, price, day_volume, volume, seq)
        SELECT tm, 'S' || (i % 5) || '/USD', 100 + i % 7, i, 1,
          (extract(epoch FROM tm) * 1000000)::bigint
        FROM generate_series(0, 149999) AS i,
          LATERAL (SELECT date_trunc('second', now() - INTERVAL '30 days'
            + (i / 5) * INTERVAL '86 seconds') AS tm) AS x`;
      await db.sql`ANALYZE crypto_ticks`;
      const now = new Date();
      const queries: CandleQuery[] = [
        { symbol: "S1/USD", interval: "1d", from: new Date(now.getTime() - 14 * DAY), to: now },
        { symbol: "S1/USD", interval: "1h", from: new Date(now.getTime() - 14 * DAY), to: now },
        { symbol: "S1/USD", interval: "1m", from: new Date(now.getTime() - DAY), to: now },
        {
          symbol: "S1/USD",
          interval: "1d",
          from: new Date(now.getTime() - 14 * DAY),
          to: now,
          timeZone: "America/New_York",
        },
      ];
      for (const query of queries) {
        const label = `${query.interval}${query.timeZone ? ` ${query.timeZone}` : ""}`;
        const plan = (await db.sql<{ "QUERY PLAN": string }[]>`
          EXPLAIN ${candleStatement(db.sql, query)}`)
          .map((r) => r["QUERY PLAN"]).join("\n");
        assert.match(plan, /Index Scan using tickpipe_candle_pkey/, `${label}:\n${plan}`);
        assert.match(
          plan,
          /Index Cond: \(\(unit = '(minute|hour|day)'::text\) AND \(symbol = (\$\d+|'S1\/USD'::text)\) AND \(bucket >= .*\) AND \(bucket < .*\)\)/,
          `${label}:\n${plan}`,
        );
        assert.doesNotMatch(plan, /Seq Scan|crypto_ticks/, `${label}:\n${plan}`);
        if (!query.timeZone) {
          await sameAsView(query, `bulk ${label}`);
        }
      }
      // The tutorial's query on the view: the symbol still reaches the index.
      const tutorial = (await db.sql.unsafe(
        `EXPLAIN SELECT * FROM one_day_candle WHERE symbol = 'S1/USD' AND bucket >= NOW() - INTERVAL '14 days'`,
      )).map((r) => r["QUERY PLAN"]).join("\n");
      assert.match(
        tutorial,
        /Index Cond: \(\(unit = 'day'::text\) AND \(symbol = 'S1\/USD'::text\)/,
        tutorial,
      );
      assert.doesNotMatch(tutorial, /Seq Scan|crypto_ticks/, tutorial);
    });
  } finally {
    await db.drop();
  }
});

Deno.test("The refresh task refreshes 1m, 1h, 1d in TimescaleDB mode and rebuilds days in portable mode", async () => {
  const db = await createTestDatabase();
  try {
    await seed(db);
    const r = await runTask(db, "tasks/refresh.ts", ["--from", "2020-01-01", "--to", "2100-01-01"]);
    assert.equal(r.code, 0, r.stderr);
    if (db.mode === "portable") {
      assert.match(r.stdout, /^Rebuilt the candles of \d+ symbol-days of 3 symbols from the ticks/);
    } else {
      assert.match(r.stdout, /^Refreshed one_minute_candle, one_hour_candle, one_day_candle/);
    }
    const bad = await runTask(db, "tasks/refresh.ts", ["--from", "soon"]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /Usage: tickpipe refresh/);
  } finally {
    await db.drop();
  }
});

Deno.test("The candle migration renders hierarchical real-time aggregates for TimescaleDB", () => {
  const candles = MIGRATIONS.find((m) => m.name === "candles")!;
  assert.equal(candles.version, 3);
  for (const version of ["2.28.3", "2.15.2"]) {
    // Statements only: the comments name the other version's API on purpose.
    const text = renderMigration(candles, "timescaledb", version).replace(/--.*$/gm, "");
    const views = [...text.matchAll(
      /CREATE MATERIALIZED VIEW (\w+)\s+WITH \(([^)]*)\) AS([\s\S]*?)WITH NO DATA;/g,
    )];
    assert.deepEqual(views.map((v) => v[1]), [
      "one_minute_candle",
      "one_hour_candle",
      "one_day_candle",
    ]);
    for (const [, name, options, body] of views) {
      assert.match(options!, /timescaledb\.continuous/, name);
      assert.match(options!, /timescaledb\.materialized_only = false/, name);
      for (const column of ["open", "high", "low", "close", "volume", "vwap", "ticks", "pv"]) {
        assert.match(body!, new RegExp(` AS ${column},?\\n`), `${name}.${column}`);
      }
    }
    // Hierarchical: minutes from the ticks, hours from the minutes, days from the hours.
    assert.match(
      views[0]![3]!,
      /first\(price, seq\)[\s\S]*last\(price, seq\)[\s\S]*FROM crypto_ticks/,
    );
    assert.match(views[1]![3]!, /first\(open, bucket\)[\s\S]*FROM one_minute_candle/);
    assert.match(views[2]![3]!, /last\(close, bucket\)[\s\S]*FROM one_hour_candle/);
    assert.match(views[2]![3]!, /last\(day_volume, bucket\) AS day_volume/);
    for (const name of Object.values(CANDLE_RELATIONS)) {
      assert.match(text, new RegExp(`add_continuous_aggregate_policy\\('${name}'`), name);
    }
    if (version === "2.28.3") {
      assert.match(text, /timescaledb\.enable_columnstore = true/);
      assert.match(text, /CALL add_columnstore_policy\('one_minute_candle'/);
      assert.doesNotMatch(text, /add_compression_policy/);
    } else {
      assert.match(text, /timescaledb\.compress = true/);
      assert.match(text, /add_compression_policy\('one_minute_candle'/);
      assert.doesNotMatch(text, /enable_columnstore|add_columnstore_policy/);
    }
    // Each level's columnstore starts after its refresh window ends.
    const offset = (re: RegExp) => {
      const m = re.exec(text);
      assert.ok(m, String(re));
      return m[1]!;
    };
    const days = (v: string) => Number(/(\d+) days?/.exec(v)?.[1]);
    assert.ok(
      days(offset(/'one_minute_candle',\s+start_offset => INTERVAL '([^']+)'/)) <
        days(offset(/'one_minute_candle', (?:after|compress_after) => INTERVAL '([^']+)'/)),
    );
    assert.ok(
      days(offset(/'one_hour_candle',\s+start_offset => INTERVAL '([^']+)'/)) <
        days(offset(/'one_hour_candle', (?:after|compress_after) => INTERVAL '([^']+)'/)),
    );
  }
  const portable = renderMigration(candles, "portable").replace(/--.*$/gm, "");
  assert.doesNotMatch(portable, /timescaledb\.|time_bucket\(|\bfirst\(|\blast\(/);
  for (const name of Object.values(CANDLE_RELATIONS)) {
    assert.match(portable, new RegExp(`CREATE VIEW ${name} AS`));
  }
});
