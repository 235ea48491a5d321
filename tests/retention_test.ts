/**
 * `setup --retain-ticks` and `prune`: ticks older than the retention go, every candle stays,
 * in both modes; a refresh afterwards (which recomputes from ticks) leaves them too.
 */
import assert from "node:assert/strict";
import type { Sql } from "postgres";
import { createTestDatabase, type TestDatabase } from "./_support/db.ts";
import { permissionSet, runDeno } from "./_support/run.ts";
import { databaseUrl } from "./_support/url.ts";
import { CANDLE_RELATIONS, refreshCandles } from "../lib/candles/mod.ts";

const DAY = 86_400_000;

function task(db: TestDatabase, script: string, args: string[]) {
  return runDeno(script, args, {
    permissions: permissionSet("db"),
    env: { DATABASE_URL: databaseUrl(db.config) },
  });
}

/** Every candle of every level, as text: any change to any field shows. */
async function allCandles(sql: Sql): Promise<string[]> {
  const out: string[] = [];
  for (const relation of Object.values(CANDLE_RELATIONS)) {
    const rows = await sql`
      SELECT bucket, symbol, open, high, low, close, volume, vwap, ticks, day_volume, filled
      FROM ${sql(relation)} ORDER BY symbol, bucket`;
    for (const r of rows) out.push(`${relation} ${JSON.stringify(r)}`);
  }
  return out;
}

Deno.test("--retain-ticks deletes old ticks and changes no candle", async () => {
  const db = await createTestDatabase();
  try {
    // 20 days of two symbols, a tick every 20 minutes, ending now.
    const end = Math.floor(Date.now() / 60_000) * 60_000;
    await db.sql`
      INSERT INTO crypto_ticks ("time", symbol, price, day_volume, volume, seq)
      SELECT tm, s, 100 + (i % 37) + length(s), i, 1 + i % 3,
        (extract(epoch FROM tm) * 1000000)::bigint
      FROM generate_series(0, 20 * 72) AS i
      CROSS JOIN unnest(ARRAY['BTC/USD', 'AAPL']) AS s
      CROSS JOIN LATERAL (
        SELECT ${new Date(end)}::timestamptz - i * INTERVAL '20 minutes' AS tm) AS x`;
    if (db.mode === "timescaledb") await refreshCandles(db.sql, {});
    const before = await allCandles(db.sql);
    assert.ok(before.length > 1000);

    const refused = await task(db, "tasks/setup.ts", ["--retain-ticks", "3d"]);
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /--retain-ticks must be off or a number of days .* at least 7/);

    const set = await task(db, "tasks/setup.ts", ["--retain-ticks", "10d"]);
    assert.equal(set.code, 0, set.stderr);
    assert.match(
      set.stdout,
      /Keeping 10 days of ticks; older ones are deleted, their candles kept/,
    );

    const pruned = await task(db, "tasks/prune.ts", []);
    assert.equal(pruned.code, 0, pruned.stderr);
    assert.match(pruned.stdout, /^[\d,]+ (ticks deleted|chunks of ticks dropped): ticks before /);
    const cutoff = Math.floor((Date.now() - 10 * DAY) / DAY) * DAY;
    const [left] = await db.sql<{ old: number; recent: number }[]>`
      SELECT count(*) FILTER (WHERE "time" < ${new Date(cutoff)})::int AS old,
        count(*) FILTER (WHERE "time" >= ${new Date(cutoff)})::int AS recent
      FROM crypto_ticks`;
    assert.equal(left!.old, 0, "no tick older than the cutoff");
    assert.ok(left!.recent > 500);
    assert.deepEqual(await allCandles(db.sql), before, "every candle as before");

    // A refresh recomputes candles from the ticks: never those whose ticks are gone.
    const refreshed = await task(db, "tasks/refresh.ts", []);
    assert.equal(refreshed.code, 0, refreshed.stderr);
    assert.deepEqual(await allCandles(db.sql), before, "every candle after a refresh");

    const again = await task(db, "tasks/prune.ts", []);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /^0 /);

    const off = await task(db, "tasks/setup.ts", ["--retain-ticks", "off"]);
    assert.equal(off.code, 0, off.stderr);
    const none = await task(db, "tasks/prune.ts", []);
    assert.match(none.stdout, /No retention set/);
  } finally {
    await db.drop();
  }
});
