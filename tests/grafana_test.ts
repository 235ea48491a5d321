import assert from "node:assert/strict";
import type { Sql } from "postgres";
import { connect } from "../lib/db/connection.ts";
import { grantReader } from "../lib/db/reader.ts";
import type { SchemaMode } from "../lib/db/server_info.ts";
import { createTestDatabase, dropRole, type TestDatabase, uniqueName } from "./_support/db.ts";

interface Target {
  rawSql: string;
  format: string;
}
interface Dashboard {
  uid: string;
  panels: { type: string; targets: Target[] }[];
  templating: { list: { name: string; query: string; options?: { value: string }[] }[] };
}

const readDashboard = async (file: string): Promise<Dashboard> =>
  JSON.parse(await Deno.readTextFile(new URL(`../grafana/${file}`, import.meta.url)));

/** Interpolates what Grafana would: the macros and variables these dashboards use. */
function interpolate(
  sql: string,
  vars: { relation: string; symbol: string; from: string; to: string },
) {
  return sql
    .replaceAll("${candle:raw}", vars.relation)
    .replaceAll("${unit:raw}", vars.relation)
    .replaceAll("${symbol:sqlstring}", `'${vars.symbol.replaceAll("'", "''")}'`)
    .replaceAll("$__timeFrom()", `'${vars.from}'`)
    .replaceAll("$__timeTo()", `'${vars.to}'`)
    .replace(/\$__timeFilter\(([^)]+)\)/g, `$1 BETWEEN '${vars.from}' AND '${vars.to}'`);
}

/** Known ticks: two a minute for an hour, BTC/USD, with a name in crypto_assets. */
async function seed(db: TestDatabase) {
  const base = Date.UTC(2026, 0, 5, 10, 0, 0);
  for (let i = 0; i < 120; i++) {
    const t = new Date(base + i * 30_000);
    await db.sql`
      INSERT INTO crypto_ticks ("time", symbol, price, day_volume, volume, seq)
      VALUES (${t}, 'BTC/USD', ${100 + (i % 7)}, ${i * 2}, 2, ${t.getTime() * 1000})`;
  }
  await db.sql`INSERT INTO crypto_assets (symbol, name) VALUES ('BTC/USD', 'Bitcoin/US Dollar')`;
}

/** Runs `fn` with a pool logged in as a fresh `setup --reader` role of `db`. */
async function asReader(db: TestDatabase, mode: SchemaMode, fn: (reader: Sql) => Promise<void>) {
  const name = uniqueName("grafana");
  await grantReader(db.sql, name, { mode });
  await db.sql`ALTER ROLE ${db.sql(name)} PASSWORD 'Grafana-Reader-81'`;
  const reader = connect({ ...db.config, user: name, password: "Grafana-Reader-81" }, { max: 1 });
  try {
    await fn(reader);
  } finally {
    await reader.end({ timeout: 5 });
    await db.drop();
    await dropRole(db.server, name);
  }
}

const dashboards = [
  // The TimescaleDB one filters the continuous aggregates on bucket; the same names exist
  // in portable mode, where it still runs (slowly over a long history).
  { file: "tickpipe-candles.json", variable: "candle", portable: false },
  { file: "tickpipe-candles-portable.json", variable: "unit", portable: true },
];

for (const { file, variable, portable } of dashboards) {
  Deno.test(`Grafana dashboard ${file}: its queries run as the reader role and return OHLCV`, async () => {
    const dashboard = await readDashboard(file);
    const db = await createTestDatabase(portable ? { mode: "portable" } : {});
    await seed(db);
    await asReader(db, portable ? "portable" : db.mode, async (reader) => {
      const variables = dashboard.templating.list;
      const symbolQuery = variables.find((v) => v.name === "symbol")!.query;
      assert.deepEqual((await reader.unsafe(symbolQuery)).map((r) => r.symbol), ["BTC/USD"]);
      const relations = variables.find((v) => v.name === variable)!.options!.map((o) => o.value);
      assert.deepEqual(
        relations,
        portable
          ? ["minute", "hour", "day"]
          : ["one_minute_candle", "one_hour_candle", "one_day_candle"],
      );

      const candlestick = dashboard.panels.find((p) => p.type === "candlestick")!;
      const vars = { symbol: "BTC/USD", from: "2026-01-05T00:00:00Z", to: "2026-01-06T00:00:00Z" };
      const expectedBuckets = [60, 1, 1];
      for (const [i, relation] of relations.entries()) {
        const rows = await reader.unsafe(
          interpolate(candlestick.targets[0]!.rawSql, { ...vars, relation }),
        );
        assert.equal(rows.length, expectedBuckets[i], relation);
        assert.deepEqual(Object.keys(rows[0]!), ["time", "open", "high", "low", "close", "volume"]);
        const volume = rows.reduce((n, r) => n + Number(r.volume), 0);
        assert.equal(volume, 240, `${relation}: every tick's volume is in some candle`);
      }
      for (const panel of dashboard.panels) {
        for (const target of panel.targets) {
          const rows = await reader.unsafe(
            interpolate(target.rawSql, { ...vars, relation: relations[1]! }),
          );
          assert.ok(rows.length > 0, `${panel.type}: ${target.rawSql}`);
        }
      }
      // A hostile symbol is a quoted literal, not SQL.
      const hostile = interpolate(candlestick.targets[0]!.rawSql, {
        ...vars,
        relation: relations[2]!,
        symbol: "x'; DROP TABLE crypto_ticks; --",
      });
      assert.equal((await reader.unsafe(hostile)).length, 0);
      assert.ok((await db.sql`SELECT to_regclass('crypto_ticks') AS t`)[0]?.t);

      if (portable) {
        // Never the views filtered on bucket (that reads all of a symbol's ticks): the
        // function, whose range becomes an index condition on "time".
        for (const panel of dashboard.panels.filter((p) => p.type !== "table")) {
          for (const target of panel.targets) {
            assert.doesNotMatch(
              target.rawSql,
              /one_(minute|hour|day)_candle|\$__timeFilter\(bucket\)/,
            );
            assert.match(
              target.rawSql,
              /FROM tickpipe_candles\('\$\{unit:raw\}', \$__timeFrom\(\), \$__timeTo\(\)\)/,
            );
          }
        }
        const plan = await reader.begin(async (tx) => {
          await tx`SET LOCAL enable_seqscan = off`;
          const sql = interpolate(candlestick.targets[0]!.rawSql, { ...vars, relation: "minute" });
          return (await tx.unsafe(`EXPLAIN ${sql}`)).map((r) => r["QUERY PLAN"]).join("\n");
        });
        assert.match(
          plan,
          /Index Cond: \(\(unit = 'minute'::text\) AND \(symbol = 'BTC\/USD'::text\) AND \(bucket >= /,
          plan,
        );
        assert.doesNotMatch(plan, /crypto_ticks/, plan);
      }
    });
  });
}

Deno.test("grafana/datasource.yaml logs in as the reader role, password from the environment", async () => {
  const text = await Deno.readTextFile(new URL("../grafana/datasource.yaml", import.meta.url));
  assert.match(text, /^\s+user: tickpipe_reader$/m);
  assert.match(text, /^\s+password: \$TICKPIPE_GRAFANA_PASSWORD$/m);
  assert.match(text, /setup --reader tickpipe_reader/);
  assert.doesNotMatch(text, /^\s+password: (?!\$)/m, "no literal password");
});
