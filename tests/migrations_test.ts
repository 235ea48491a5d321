import assert from "node:assert/strict";
import { createTestDatabase } from "./_support/db.ts";
import { connect } from "../lib/db/connection.ts";
import {
  connectionLost,
  migrate,
  type Migration,
  MigrationError,
  MIGRATIONS,
  renderMigration,
} from "../lib/db/migrations.ts";

Deno.test("Migrations apply on a fresh database and a re-run changes nothing", async () => {
  const db = await createTestDatabase({ migrate: false });
  try {
    const first = await migrate(db.sql, {
      mode: db.mode,
      timescaleVersion: db.server.timescaleVersion,
    });
    assert.deepEqual(first.applied.map((m) => m.version), MIGRATIONS.map((m) => m.version));
    const cols = await db.sql<{ column_name: string; data_type: string }[]>`
      SELECT column_name, data_type FROM information_schema.columns
      WHERE table_name = 'crypto_ticks' ORDER BY ordinal_position`;
    assert.deepEqual(cols.map((c) => `${c.column_name}:${c.data_type}`).slice(0, 4), [
      "time:timestamp with time zone",
      "symbol:text",
      "price:double precision",
      "day_volume:numeric",
    ]);
    const second = await migrate(db.sql, {
      mode: db.mode,
      timescaleVersion: db.server.timescaleVersion,
    });
    assert.equal(second.applied.length, 0);
    assert.equal(second.alreadyApplied, MIGRATIONS.length);
    const [{ count }] = await db
      .sql`SELECT count(*)::int AS count FROM tickpipe_migrations` as unknown as [
        { count: number },
      ];
    assert.equal(count, MIGRATIONS.length);
  } finally {
    await db.drop();
  }
});

Deno.test("A failing migration rolls back entirely and is not recorded", async () => {
  const db = await createTestDatabase({ migrate: false });
  try {
    const broken: Migration = {
      version: 900,
      name: "broken",
      portable: "CREATE TABLE half_done (id int); SELECT no_such_function();",
      timescaledb: "CREATE TABLE half_done (id int); SELECT no_such_function();",
    };
    await assert.rejects(
      migrate(db.sql, { mode: db.mode, migrations: [...MIGRATIONS, broken] }),
      /Migration 900_broken failed and was rolled back: .*no_such_function/,
    );
    const [row] = await db.sql`SELECT to_regclass('half_done') AS t,
      (SELECT count(*)::int FROM tickpipe_migrations WHERE version = 900) AS recorded`;
    assert.equal(row?.t, null);
    assert.equal(row?.recorded, 0);
    // The migrations before it landed, and a corrected run goes on from there.
    const fixed = {
      ...broken,
      portable: "CREATE TABLE half_done (id int);",
      timescaledb: "CREATE TABLE half_done (id int);",
    };
    const again = await migrate(db.sql, { mode: db.mode, migrations: [...MIGRATIONS, fixed] });
    assert.deepEqual(again.applied.map((m) => m.version), [900]);
  } finally {
    await db.drop();
  }
});

Deno.test("A migration that loses its connection fails with one error, and setup can run again", async () => {
  // The nearest real situation to `CREATE EXTENSION timescaledb` on a server that does not
  // preload it: the backend ends with a FATAL error in the middle of a migration. Before,
  // migrate then sent ROLLBACK and the unlock on the dead reserved connection, and
  // postgres.js threw "Cannot read properties of null (reading 'write')" from a timer.
  const db = await createTestDatabase({ migrate: false });
  try {
    const fatal = "SELECT pg_terminate_backend(pg_backend_pid());";
    const killed: Migration = { version: 901, name: "killed", portable: fatal, timescaledb: fatal };
    // Its own pool: ending a pool that holds a dead connection waits for the end timeout.
    const pool = connect(db.config, { max: 1 });
    const error = await migrate(pool, { mode: db.mode, migrations: [killed] }).then(
      () => undefined,
      (e) => e,
    );
    await pool.end({ timeout: 0.1 });
    assert.ok(error instanceof MigrationError, String(error));
    assert.match(
      error.message,
      /^Migration 901_killed failed and was rolled back: (terminating connection|the connection closed)/,
    );
    assert.ok(connectionLost(error.cause));
    // The pool still answers, the server released the lock, and a fixed run goes on.
    const fixed = { ...killed, portable: "SELECT 1;", timescaledb: "SELECT 1;" };
    const again = await migrate(db.sql, { mode: db.mode, migrations: [fixed] });
    assert.deepEqual(again.applied.map((m) => m.version), [901]);
  } finally {
    await db.drop();
  }
});

Deno.test("Portable mode creates the tutorial tables with (symbol, time) indexes", async () => {
  const db = await createTestDatabase({ mode: "portable" });
  try {
    const indexes = await db.sql<{ indexdef: string }[]>`
      SELECT indexdef FROM pg_indexes WHERE tablename = 'crypto_ticks'`;
    assert.ok(
      indexes.some((i) => /\(symbol, "time" DESC\)/.test(i.indexdef)),
      JSON.stringify(indexes),
    );
    await db.sql`INSERT INTO crypto_assets (symbol, name) VALUES ('BTC/USD', 'Bitcoin')`;
    await assert.rejects(
      db.sql`INSERT INTO crypto_assets (symbol, name) VALUES ('BTC/USD', 'again')`,
      /duplicate key/,
    );
  } finally {
    await db.drop();
  }
});

Deno.test("TimescaleDB migrations render the hypertable, columnstore and policy for each version", () => {
  const ticks = MIGRATIONS.find((m) => m.name === "ticks")!;
  const modern = renderMigration(ticks, "timescaledb", "2.28.3");
  assert.match(modern, /CREATE EXTENSION IF NOT EXISTS timescaledb/);
  assert.match(modern, /tsdb\.hypertable/);
  assert.match(modern, /tsdb\.segmentby\s*=\s*'symbol'/);
  assert.match(modern, /tsdb\.orderby\s*=\s*'time DESC'/);
  assert.match(modern, /CALL add_columnstore_policy\('crypto_ticks'/);
  const legacy = renderMigration(ticks, "timescaledb", "2.15.2");
  assert.match(legacy, /create_hypertable\('crypto_ticks'/);
  assert.match(legacy, /timescaledb\.compress_segmentby = 'symbol'/);
  assert.match(legacy, /timescaledb\.compress_orderby = 'time DESC'/);
  assert.match(legacy, /add_compression_policy\('crypto_ticks'/);
  assert.doesNotMatch(legacy, /tsdb\./);
  assert.doesNotMatch(
    renderMigration(ticks, "portable"),
    /CREATE EXTENSION|tsdb\.|create_hypertable/i,
  );
});

Deno.test("TimescaleDB mode builds a hypertable with columnstore settings (where TimescaleDB is reachable)", async (t) => {
  const probe = await createTestDatabase({ migrate: false });
  const available = probe.server.timescale;
  await probe.drop();
  if (!available) {
    await t.step({
      name: "skipped: no TimescaleDB on the test server",
      ignore: true,
      fn: () => {},
    });
    return;
  }
  const db = await createTestDatabase({ mode: "timescaledb" });
  try {
    const [ht] = await db
      .sql`SELECT hypertable_name FROM timescaledb_information.hypertables WHERE hypertable_name = 'crypto_ticks'`;
    assert.equal(ht?.hypertable_name, "crypto_ticks");
    const settings = await db
      .sql`SELECT * FROM timescaledb_information.hypertable_columnstore_settings WHERE hypertable = 'crypto_ticks'::regclass`;
    assert.equal(settings[0]?.segmentby, "symbol");
    // TimescaleDB 2.28 quotes the column: "time" DESC.
    assert.match(String(settings[0]?.orderby), /^"?time"? DESC$/);
    const jobs = await db
      .sql`SELECT proc_name FROM timescaledb_information.jobs WHERE hypertable_name = 'crypto_ticks'`;
    assert.ok(jobs.some((j) => j.proc_name === "policy_compression"), JSON.stringify(jobs));
  } finally {
    await db.drop();
  }
});
