import assert from "node:assert/strict";
import { join } from "node:path";
import postgres from "postgres";
import { startEmbedded, stopEmbedded } from "../lib/db/embedded.ts";
import { freePort } from "./_support/run.ts";

Deno.test("The embedded PostgreSQL starts on first use, is reused, and keeps its data across restarts", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tickpipe-embedded-" });
  const port = freePort();
  try {
    const first = await startEmbedded(dir, { port });
    assert.equal(first.started, true);
    assert.equal(first.database.host, "127.0.0.1");
    assert.equal(first.database.port, port);
    assert.match(
      first.psql,
      new RegExp(`PGPASSFILE=.*pgpass psql -h 127\\.0\\.0\\.1 -p ${port} -U tickpipe tickpipe`),
    );
    assert.ok(!first.psql.includes(first.database.password!), "the psql line carries no password");
    assert.equal((await Deno.stat(join(dir, "pgpass"))).mode! & 0o777, 0o600);

    const sql = postgres({ ...first.database, ssl: false, max: 1, onnotice: () => {} });
    await sql`CREATE TABLE kept (v int)`;
    await sql`INSERT INTO kept VALUES (42)`;
    await sql.end({ timeout: 5 });

    const second = await startEmbedded(dir, { port });
    assert.equal(second.started, false, "a running server is reused");
    assert.equal(second.database.password, first.database.password);

    assert.equal(await stopEmbedded(dir), true);
    const third = await startEmbedded(dir, { port });
    assert.equal(third.started, true, "a stopped server is started again on the same cluster");
    const sql2 = postgres({ ...third.database, ssl: false, max: 1, onnotice: () => {} });
    const [row] = await sql2`SELECT v FROM kept`;
    assert.equal(row?.v, 42);
    await sql2.end({ timeout: 5 });

    // psql, where installed, connects with the printed command line.
    const psql = await new Deno.Command("sh", {
      args: ["-c", `command -v psql >/dev/null || exit 77; ${third.psql} -tAc 'select 40+2'`],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (psql.code !== 77) assert.equal(new TextDecoder().decode(psql.stdout).trim(), "42");
  } finally {
    await stopEmbedded(dir);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

Deno.test("A port held by another program gives one clear error", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tickpipe-embedded-" });
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  try {
    await assert.rejects(
      startEmbedded(dir, { port }),
      (error: Error) => {
        assert.match(
          error.message,
          new RegExp(`^Cannot start the embedded PostgreSQL on port ${port}: `),
        );
        assert.doesNotMatch(error.message, /\n/);
        return true;
      },
    );
  } finally {
    listener.close();
    await stopEmbedded(dir);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

Deno.test("A running embedded server is reused on the port it listens on, whatever port is asked", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tickpipe-embedded-" });
  const port = freePort();
  try {
    const first = await startEmbedded(dir, { port });
    const again = await startEmbedded(dir, { port: freePort() });
    assert.equal(again.started, false);
    assert.equal(again.database.port, port);
    const sql = postgres({ ...again.database, ssl: false, max: 1, onnotice: () => {} });
    assert.equal((await sql`SELECT 1 AS one`)[0]?.one, 1);
    await sql.end({ timeout: 5 });
    assert.equal(first.database.password, again.database.password);
  } finally {
    await stopEmbedded(dir);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
