import assert from "node:assert/strict";
import { createTestDatabase } from "./_support/db.ts";

interface Target {
  rawSql: string;
  format: string;
}
interface Dashboard {
  panels: { type: string; targets: Target[] }[];
  templating: { list: { name: string; query: string; options?: { value: string }[] }[] };
}

const dashboard: Dashboard = JSON.parse(
  await Deno.readTextFile(new URL("../grafana/tickpipe-candles.json", import.meta.url)),
);

/** Interpolates what Grafana would: the macros and variables this dashboard uses. */
function interpolate(
  sql: string,
  vars: { candle: string; symbol: string; from: string; to: string },
) {
  return sql
    .replaceAll("${candle:raw}", vars.candle)
    .replaceAll("${symbol:sqlstring}", `'${vars.symbol.replaceAll("'", "''")}'`)
    .replace(/\$__timeFilter\(([^)]+)\)/g, `$1 BETWEEN '${vars.from}' AND '${vars.to}'`);
}

Deno.test("The Grafana dashboard's queries run against the candle relations and return OHLCV", async () => {
  const db = await createTestDatabase();
  try {
    const base = Date.UTC(2026, 0, 5, 10, 0, 0);
    for (let i = 0; i < 120; i++) {
      const t = new Date(base + i * 30_000);
      await db.sql`
        INSERT INTO crypto_ticks ("time", symbol, price, day_volume, volume, seq)
        VALUES (${t}, 'BTC/USD', ${100 + (i % 7)}, ${i * 2}, 2, ${t.getTime() * 1000})`;
    }
    await db.sql`INSERT INTO crypto_assets (symbol, name) VALUES ('BTC/USD', 'Bitcoin/US Dollar')`;

    const variables = dashboard.templating.list;
    const symbolQuery = variables.find((v) => v.name === "symbol")!.query;
    assert.deepEqual((await db.sql.unsafe(symbolQuery)).map((r) => r.symbol), ["BTC/USD"]);
    const relations = variables.find((v) => v.name === "candle")!.options!.map((o) => o.value);
    assert.deepEqual(relations, ["one_minute_candle", "one_hour_candle", "one_day_candle"]);

    const candlestick = dashboard.panels.find((p) => p.type === "candlestick")!;
    const vars = { symbol: "BTC/USD", from: "2026-01-05T00:00:00Z", to: "2026-01-06T00:00:00Z" };
    const expectedBuckets = { one_minute_candle: 60, one_hour_candle: 1, one_day_candle: 1 };
    for (const candle of relations) {
      const rows = await db.sql.unsafe(
        interpolate(candlestick.targets[0]!.rawSql, { ...vars, candle }),
      );
      assert.equal(rows.length, expectedBuckets[candle as keyof typeof expectedBuckets], candle);
      assert.deepEqual(Object.keys(rows[0]!), ["time", "open", "high", "low", "close", "volume"]);
      const ticks = rows.reduce((n, r) => n + Number(r.volume), 0);
      assert.equal(ticks, 240, `${candle}: every tick's volume is in some candle`);
    }
    for (const panel of dashboard.panels) {
      for (const target of panel.targets) {
        const rows = await db.sql.unsafe(
          interpolate(target.rawSql, { ...vars, candle: "one_hour_candle" }),
        );
        assert.ok(rows.length > 0, `${panel.type}: ${target.rawSql}`);
      }
    }
    // A hostile symbol is a quoted literal, not SQL.
    const hostile = interpolate(candlestick.targets[0]!.rawSql, {
      ...vars,
      candle: "one_day_candle",
      symbol: "x'; DROP TABLE crypto_ticks; --",
    });
    assert.equal((await db.sql.unsafe(hostile)).length, 0);
    assert.ok((await db.sql`SELECT to_regclass('crypto_ticks') AS t`)[0]?.t);
  } finally {
    await db.drop();
  }
});
