import assert from "node:assert/strict";
import type { Sql } from "postgres";
import { serveChart } from "../lib/chart/server.ts";
import { connect } from "../lib/db/connection.ts";
import { createTestDatabase, dropRole, type TestDatabase, uniqueName } from "./_support/db.ts";
import { permissionSet, runDeno } from "./_support/run.ts";
import { insertTicks } from "./_support/ticks.ts";
import { databaseUrl } from "./_support/url.ts";

const SETUP = permissionSet("db");
/** Runs `fn` with a database and a role name, then drops both (the role after the database). */
async function withReader(fn: (db: TestDatabase, name: string) => Promise<void>) {
  const db = await createTestDatabase({ migrate: false });
  const name = uniqueName("reader");
  try {
    await fn(db, name);
  } finally {
    await db.drop();
    await dropRole(db.server, name);
  }
}

/** The SQLSTATE `statement` fails with as the reader, or "ok". */
async function outcome(sql: Sql, statement: string): Promise<string> {
  try {
    await sql.unsafe(statement);
    return "ok";
  } catch (error) {
    return (error as { code?: string }).code ?? String(error);
  }
}

Deno.test("setup --reader creates a role that can read the candles and nothing else of tickpipe's", async () => {
  await withReader(async (db, name) => {
    const env = { DATABASE_URL: databaseUrl(db.config) };
    const first = await runDeno("main.ts", ["setup", "--reader", name], {
      env,
      permissions: SETUP,
    });
    assert.equal(first.code, 0, first.stderr);
    assert.match(
      first.stdout,
      new RegExp(`Created the reader role "${name}": it can log in and SELECT`),
    );
    assert.match(
      first.stdout,
      new RegExp(`^  psql "\\$DATABASE_URL" -c '\\\\password ${name}'$`, "m"),
    );
    for (const output of [first.stdout, first.stderr]) {
      assert.ok(!output.includes(db.config.password!), "the database password is never printed");
    }

    // The test sets the password itself (a person would use the printed psql line).
    await db.sql`ALTER ROLE ${db.sql(name)} PASSWORD 'Reader-Pass-4417'`;
    await insertTicks(db.sql, [{
      symbol: "BTC/USD",
      time: Math.floor(Date.now() / 1000) * 1000 - 60_000,
      ordinal: 0,
      price: 100,
      volume: "1",
      dayVolume: "1",
    }]);
    await db.sql`INSERT INTO crypto_assets VALUES ('BTC/USD', 'Bitcoin/US Dollar')`;
    const reader = connect({ ...db.config, user: name, password: "Reader-Pass-4417" }, { max: 1 });
    try {
      // Spelled out, not READER_RELATIONS: a relation dropped from the grant must fail here.
      const readable = [
        "crypto_ticks",
        "crypto_assets",
        "one_minute_candle",
        "one_hour_candle",
        "one_day_candle",
      ];
      for (const relation of readable) {
        assert.equal(await outcome(reader, `SELECT * FROM ${relation} LIMIT 1`), "ok", relation);
      }
      if (db.mode === "portable") {
        assert.equal(
          await outcome(
            reader,
            "SELECT * FROM tickpipe_candles('hour', now() - interval '1 day', now())",
          ),
          "ok",
        );
      }
      const denied = [
        "SELECT * FROM tickpipe_batches",
        "SELECT * FROM tickpipe_migrations",
        "INSERT INTO crypto_ticks (\"time\", symbol, price, seq) VALUES (now(), 'X', 1, 1)",
        "INSERT INTO crypto_assets VALUES ('X', 'x')",
        "UPDATE crypto_assets SET name = 'x'",
        "DELETE FROM crypto_ticks",
        "TRUNCATE crypto_assets",
        "DELETE FROM tickpipe_batches",
      ];
      for (const statement of denied) {
        assert.equal(await outcome(reader, statement), "42501", statement);
      }
      const [version] = await db.sql<{ n: number }[]>`
        SELECT current_setting('server_version_num')::int AS n`;
      if (version!.n >= 150000) {
        assert.equal(await outcome(reader, "CREATE TABLE reader_was_here (x int)"), "42501");
      }

      // The chart works as the reader: it needs nothing more.
      const chart = serveChart({ sql: reader, database: { ...db.config, user: name }, port: 0 });
      try {
        const symbols = await (await fetch(new URL("/api/symbols", chart.url))).json();
        assert.deepEqual(symbols.symbols.map((s: { symbol: string }) => s.symbol), ["BTC/USD"]);
        const candles = await fetch(new URL("/api/candles?symbol=BTC/USD&interval=1h", chart.url));
        assert.equal(candles.status, 200);
        assert.equal((await candles.json()).candles[0].ticks, 1);
      } finally {
        await chart.close();
      }
    } finally {
      await reader.end({ timeout: 5 });
    }

    // Again, after someone granted it more: idempotent, and back to read-only.
    await db.sql`GRANT INSERT, DELETE ON crypto_ticks, tickpipe_batches TO ${db.sql(name)}`;
    const second = await runDeno("main.ts", ["setup", "--reader", name], {
      env,
      permissions: SETUP,
    });
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stdout, new RegExp(`Updated the reader role "${name}"`));
    const [privileges] = await db.sql<{ insert: boolean; batches: boolean; select: boolean }[]>`
      SELECT has_table_privilege(${name}, 'crypto_ticks', 'INSERT') AS insert,
        has_table_privilege(${name}, 'tickpipe_batches', 'DELETE') AS batches,
        has_table_privilege(${name}, 'one_day_candle', 'SELECT') AS select`;
    assert.deepEqual(privileges, { insert: false, batches: false, select: true });
  });
});

Deno.test("setup --reader refuses bad names, superusers and its own role with one line", async () => {
  await withReader(async (db, name) => {
    const env = { DATABASE_URL: databaseUrl(db.config) };
    for (const bad of ["Grafana", "pg_reader", "a-b", "x; DROP TABLE crypto_ticks", ""]) {
      const result = await runDeno("main.ts", ["setup", "--reader", bad], {
        env,
        permissions: SETUP,
      });
      assert.equal(result.code, 2, bad);
      assert.match(result.stderr, /^--reader must be a role name of lower-case letters/, bad);
    }
    const self = await runDeno("main.ts", ["setup", "--reader", db.config.user], {
      env,
      permissions: SETUP,
    });
    assert.equal(self.code, 2);
    assert.match(
      self.stderr,
      /^--reader must name another role than "[^"]+", the one setup connects as$/m,
    );
    const [tables] = await db.sql`SELECT to_regclass('crypto_ticks') AS t`;
    assert.equal(tables!.t, null, "refused before any migration");
    await db.sql`CREATE ROLE ${db.sql(name)} SUPERUSER`;
    const superuser = await runDeno("main.ts", ["setup", "--reader", name], {
      env,
      permissions: SETUP,
    });
    assert.equal(superuser.code, 1);
    assert.match(
      superuser.stderr.trim().split("\n").at(-1)!,
      new RegExp(`^Cannot make "${name}" a reader: it is a superuser, which reads everything`),
    );
  });
});
