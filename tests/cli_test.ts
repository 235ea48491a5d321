import assert from "node:assert/strict";
import { createTestDatabase } from "./_support/db.ts";
import { freePort, permissionSet, runDeno } from "./_support/run.ts";
import { databaseUrl } from "./_support/url.ts";

const SETUP_PERMISSIONS = permissionSet("db");

Deno.test("main.ts dispatches commands and rejects unknown ones with usage", async () => {
  const help = await runDeno("main.ts", ["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /Usage: tickpipe <command>/);
  assert.match(help.stdout, /setup\s+create or update the schema/);
  const unknown = await runDeno("main.ts", ["frobnicate"]);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /Unknown command "frobnicate"/);
  const badFlag = await runDeno("main.ts", ["setup", "--no-such-flag"]);
  assert.equal(badFlag.code, 2);
  assert.match(badFlag.stderr, /Unknown option '--no-such-flag'/);
});

Deno.test("setup through main.ts creates the schema, and a second run changes nothing", async () => {
  const db = await createTestDatabase({ migrate: false });
  try {
    const env = { DATABASE_URL: databaseUrl(db.config) };
    const first = await runDeno("main.ts", ["setup"], { env, permissions: SETUP_PERMISSIONS });
    assert.equal(first.code, 0, first.stderr);
    const [line1, line2] = first.stdout.trim().split("\n");
    assert.match(
      line1!,
      /^(PostgreSQL [\d.]+ \(portable mode: no TimescaleDB\)|TimescaleDB [\d.]+ on PostgreSQL [\d.]+)$/,
    );
    assert.match(line2!, /^Applied \d+ migration\(s\): 001_ticks, 002_ingest_batches/);
    const before = await db
      .sql`SELECT version, applied_at FROM tickpipe_migrations ORDER BY version`;
    const second = await runDeno("main.ts", ["setup"], { env, permissions: SETUP_PERMISSIONS });
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stdout, /Schema up to date \(\d+ migrations already applied\)/);
    const after = await db
      .sql`SELECT version, applied_at FROM tickpipe_migrations ORDER BY version`;
    assert.deepEqual(after, before);
    assert.ok(
      !first.stdout.includes(db.config.password!) && !first.stderr.includes(db.config.password!),
    );
  } finally {
    await db.drop();
  }
});

Deno.test("Database failures end with one clear line, exit 1, no stack trace and no password", async (t) => {
  const db = await createTestDatabase({ migrate: false });
  try {
    const good = db.config;
    const cases: [string, string, RegExp][] = [
      [
        "wrong password",
        databaseUrl({ ...good, password: "Wrong-Pass-777" }),
        /^Cannot connect to PostgreSQL at .*: password authentication failed for user "/,
      ],
      [
        "unreachable port",
        databaseUrl({ ...good, host: "127.0.0.1", port: freePort(), password: "Wrong-Pass-777" }),
        /^Cannot connect to PostgreSQL at 127\.0\.0\.1:\d+\/.*: connection refused/,
      ],
      [
        "unknown host",
        "postgres://u:Wrong-Pass-777@no-such-host.invalid:5432/x",
        /^Cannot connect to PostgreSQL at no-such-host\.invalid:5432\/x: host "no-such-host\.invalid" not found/,
      ],
      ["malformed URL", "postgres//u:Wrong-Pass-777@@", /^Invalid configuration: DATABASE_URL /],
    ];
    for (const [name, url, expected] of cases) {
      await t.step(name, async () => {
        const result = await runDeno("main.ts", ["setup"], {
          env: { DATABASE_URL: url },
          permissions: SETUP_PERMISSIONS,
        });
        assert.equal(result.code, 1);
        const lines = result.stderr.trim().split("\n");
        assert.equal(lines.length, 1, result.stderr);
        assert.match(lines[0]!, expected);
        assert.doesNotMatch(result.stderr + result.stdout, /Wrong-Pass-777|at .*\.ts:\d+/);
      });
    }
  } finally {
    await db.drop();
  }
});

Deno.test("compile either builds the binary or explains why it cannot", async () => {
  const out = await Deno.makeTempDir();
  try {
    const result = await runDeno("tasks/compile.ts", ["--output", `${out}/tickpipe`]);
    if (result.code === 0) {
      const help = await new Deno.Command(`${out}/tickpipe`, { args: ["--help"], stdout: "piped" })
        .output();
      assert.match(new TextDecoder().decode(help.stdout), /Usage: tickpipe <command>/);
    } else {
      assert.equal(result.code, 1);
      assert.match(
        result.stderr,
        /^Cannot compile: deno compile downloads its runtime \(denort\)/m,
      );
    }
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});
