/** Migrations outlive a transient failure (a deadlock with a TimescaleDB job, say). */
import assert from "node:assert/strict";
import { migrate, type Migration, MIGRATIONS } from "../lib/db/migrations.ts";
import { createTestDatabase } from "./_support/db.ts";

Deno.test("A migration that meets a deadlock is rolled back and tried again", async () => {
  const db = await createTestDatabase();
  try {
    // A sequence is not rolled back: it counts the attempts across the rolled-back ones.
    await db.sql`CREATE SEQUENCE attempts`;
    const text = `
      DO $$ BEGIN
        IF nextval('attempts') < 3 THEN
          RAISE EXCEPTION 'deadlock detected' USING ERRCODE = '40P01';
        END IF;
      END $$;
      CREATE TABLE retried (x int);`;
    const flaky: Migration = { version: 901, name: "flaky", portable: text, timescaledb: text };
    const waits: number[] = [];
    const result = await migrate(db.sql, {
      mode: db.mode,
      migrations: [...MIGRATIONS, flaky],
      sleep: (ms) => {
        waits.push(ms);
        return Promise.resolve();
      },
    });
    assert.deepEqual(result.applied.map((m) => m.name), ["flaky"]);
    assert.deepEqual(waits, [250, 500]);
    const [row] = await db.sql<{ n: string }[]>`SELECT last_value::text AS n FROM attempts`;
    assert.equal(row!.n, "3");
    // A failure that is not transient is not retried.
    const broken: Migration = {
      version: 902,
      name: "broken",
      portable: "SELECT nextval('attempts'); SELECT 1/0;",
      timescaledb: "SELECT nextval('attempts'); SELECT 1/0;",
    };
    await assert.rejects(
      migrate(db.sql, { mode: db.mode, migrations: [...MIGRATIONS, flaky, broken] }),
      /902_broken failed and was rolled back: division by zero/,
    );
    const [after] = await db.sql<{ n: string }[]>`SELECT last_value::text AS n FROM attempts`;
    assert.equal(after!.n, "4");
  } finally {
    await db.drop();
  }
});
