/**
 * Every misconfigured server or machine gets one clear line, never a stack trace: the real
 * tasks run as subprocesses with the permissions their deno.json task grants, and each
 * test checks the exit code, the one stderr line, and that no stack or secret shows.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import postgres from "postgres";
import { chooseMode, type ServerInfo } from "../lib/db/server_info.ts";
import { connectionLost, migrate } from "../lib/db/migrations.ts";
import { loadConfig } from "../lib/config.ts";
import { createTestDatabase, uniqueName } from "./_support/db.ts";
import { permissionSet, runDeno, taskDataDir } from "./_support/run.ts";
import { ingestEnv, TEST_KEY, withSimulator } from "./_support/sim.ts";
import { UNCAUGHT_SECRET } from "./_support/uncaught_task.ts";
import { databaseUrl } from "./_support/url.ts";

type Result = { code: number; stdout: string; stderr: string };

const STACK = /\bat .+:\d+:\d+|Uncaught|Stack backtrace|^\s+at /m;

/** Exit `code`, exactly one stderr line matching `pattern`, no stack, none of `secrets`. */
function assertOneLine(result: Result, code: number, pattern: RegExp, secrets: string[] = []) {
  assert.equal(result.code, code, result.stderr);
  const lines = result.stderr.trim().split("\n");
  assert.equal(lines.length, 1, result.stderr);
  assert.match(lines[0]!, pattern);
  assert.doesNotMatch(result.stderr, STACK);
  for (const secret of secrets) {
    assert.ok(!(result.stdout + result.stderr).includes(secret), `${secret} was printed`);
  }
}

Deno.test("--symbols with no symbol is a usage error (exit 2), not a silent default", async () => {
  for (const task of ["ingest", "demo", "ws_test"]) {
    for (const value of ["", ",", " , "]) {
      const result = await runDeno(`tasks/${task}.ts`, ["--symbols", value], {
        permissions: permissionSet(task === "ws_test" ? "client" : "db"),
        env: { TWELVEDATA_API_KEY: TEST_KEY },
      });
      assert.equal(result.code, 2, `${task} --symbols "${value}": ${result.stderr}`);
      assert.match(result.stderr, /^--symbols needs at least one symbol, e\.g\. --symbols BTC/);
      assert.match(result.stderr, /\nUsage: /);
      assert.doesNotMatch(result.stderr, STACK);
    }
  }
});

Deno.test("A malformed %-escape in DATABASE_URL names the variable, never the value", async () => {
  const secret = "pa%zz-Secret-913";
  for (const url of [`postgres://u:${secret}@db.example.com/x`, "postgres://u@h/db%E0%A4%A"]) {
    const result = await runDeno("tasks/setup.ts", [], {
      permissions: permissionSet("db"),
      env: { DATABASE_URL: url },
    });
    assertOneLine(
      result,
      1,
      /^Invalid configuration: DATABASE_URL has a malformed %-escape in its (password|database name) \(a literal % must be written %25/,
      [secret, "zz-Secret"],
    );
  }
  assert.throws(
    () => loadConfig({ DATABASE_URL: "postgres://us%er@h/db" }),
    /DATABASE_URL has a malformed %-escape in its user name/,
  );
});

Deno.test("A metrics port held by another program: ingest names it and the flag, exit 1", async () => {
  const db = await createTestDatabase();
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const dataDir = await taskDataDir("tickpipe-metrics-");
  try {
    await withSimulator({ rate: 10 }, async (sim) => {
      const result = await runDeno("tasks/ingest.ts", ["--metrics-port", String(port)], {
        permissions: permissionSet("db"),
        env: { ...ingestEnv(sim, databaseUrl(db.config), dataDir), TICKPIPE_LOG_LEVEL: "warn" },
      });
      assertOneLine(
        result,
        1,
        new RegExp(
          `^Cannot serve metrics on 127\\.0\\.0\\.1:${port}: the port is in use \\(--metrics-port ${port}\\); choose another port, or --metrics-port 0`,
        ),
        [TEST_KEY, db.config.password!],
      );
    });
  } finally {
    listener.close();
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    await db.drop();
  }
});

Deno.test("A key refused at the first connection ends ingest with one line, exit 1", async () => {
  const db = await createTestDatabase();
  const dataDir = await taskDataDir("tickpipe-badkey-");
  const badKey = "td-wrong-key-77c1e0";
  try {
    await withSimulator({ rate: 10 }, async (sim) => {
      const result = await runDeno("tasks/ingest.ts", [], {
        permissions: permissionSet("db"),
        env: {
          ...ingestEnv(sim, databaseUrl(db.config), dataDir),
          TWELVEDATA_API_KEY: badKey,
          TICKPIPE_LOG_LEVEL: "error",
        },
      });
      assertOneLine(result, 1, /^Twelve Data rejected the API key \(401\): /, [badKey]);
      assert.equal(sim.stats().connection_attempts, 1);
    });
  } finally {
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    await db.drop();
  }
});

Deno.test("setup as a role without CREATE privilege says which grant is missing", async () => {
  const db = await createTestDatabase({ migrate: false });
  const role = uniqueName("tp_nocreate");
  const password = "NoCreate-Pass-4471";
  try {
    // A utility statement takes no parameters: the server quotes the role and the password.
    const [create] = await db.sql<{ ddl: string }[]>`
      SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', ${role}::text, ${password}::text) AS ddl`;
    await db.sql.unsafe(create!.ddl);
    // PostgreSQL 15+ already denies CREATE on public to other roles; older versions grant it.
    await db.sql`REVOKE CREATE ON SCHEMA public FROM PUBLIC`;
    const result = await runDeno("tasks/setup.ts", ["--mode", "portable"], {
      permissions: permissionSet("db"),
      env: { DATABASE_URL: databaseUrl({ ...db.config, user: role, password }) },
    });
    assert.equal(result.code, 1, result.stderr);
    const lines = result.stderr.trim().split("\n");
    assert.equal(lines.length, 1, result.stderr);
    assert.match(
      lines[0]!,
      new RegExp(
        `^Cannot set up the schema as role "${role}" in database "${db.config.database}": permission denied for schema public; run setup as the database owner or a superuser, or have one run: GRANT CREATE ON SCHEMA public TO ${role}$`,
      ),
    );
    assert.doesNotMatch(result.stderr, STACK);
    assert.ok(!(result.stdout + result.stderr).includes(password));
  } finally {
    await db.sql`DROP OWNED BY ${db.sql(role)}`.catch(() => {});
    await db.drop();
    const admin = postgres({ ...db.server.admin, ssl: false, max: 1, onnotice: () => {} });
    await admin`DROP ROLE IF EXISTS ${admin(role)}`.catch(() => {});
    await admin.end({ timeout: 5 });
  }
});

Deno.test("The embedded port taken by another program: the next free one, remembered", async (t) => {
  const dataDir = await taskDataDir("tickpipe-port-");
  const permissions = permissionSet("db");
  // Hold the default port (unless another program already does: then it is taken anyway).
  let holder: Deno.Listener | undefined;
  try {
    holder = Deno.listen({ hostname: "127.0.0.1", port: 54329 });
  } catch (error) {
    if (!(error instanceof Deno.errors.AddrInUse)) throw error;
  }
  const env = { TICKPIPE_DATA_DIR: dataDir, TICKPIPE_EMBEDDED_PORT: "" };
  const portOf = (text: string) => Number(/ -p (\d+) /.exec(text)?.[1]);
  try {
    let chosen = 0;
    await t.step("db start takes the next free port and says so", async () => {
      const start = await runDeno("tasks/db.ts", ["start"], { permissions, env });
      assert.equal(start.code, 0, start.stderr);
      chosen = portOf(start.stdout);
      assert.ok(chosen > 0 && chosen !== 54329, start.stdout);
      assert.match(
        start.stderr,
        new RegExp(
          `Port 54329 is in use by another program: the embedded PostgreSQL takes ${chosen}`,
        ),
      );
      assert.equal(Number(await Deno.readTextFile(join(dataDir, "port"))), chosen);
      const psql = await runDeno("tasks/db.ts", ["psql"], { permissions, env });
      assert.equal(portOf(psql.stdout), chosen);
      assert.equal((await runDeno("tasks/db.ts", ["stop"], { permissions, env })).code, 0);
    });

    await t.step("the next start uses the remembered port", async () => {
      holder?.close();
      holder = undefined;
      const start = await runDeno("tasks/db.ts", ["start"], { permissions, env });
      assert.equal(start.code, 0, start.stderr);
      assert.equal(portOf(start.stdout), chosen);
      assert.equal((await runDeno("tasks/db.ts", ["stop"], { permissions, env })).code, 0);
    });

    await t.step(
      "an explicit TICKPIPE_EMBEDDED_PORT that is taken: one line naming it",
      async () => {
        const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
        const port = (listener.addr as Deno.NetAddr).port;
        try {
          const result = await runDeno("tasks/db.ts", ["start"], {
            permissions,
            env: { ...env, TICKPIPE_EMBEDDED_PORT: String(port) },
          });
          assertOneLine(
            result,
            1,
            new RegExp(
              `^Cannot start the embedded PostgreSQL on port ${port}: the port is in use by another program \\(TICKPIPE_EMBEDDED_PORT=${port}\\); set TICKPIPE_EMBEDDED_PORT to a free port, or unset it`,
            ),
          );
        } finally {
          listener.close();
        }
      },
    );
  } finally {
    holder?.close();
    await runDeno("tasks/db.ts", ["stop"], { permissions, env });
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  }
});

Deno.test("Thousands of refused symbols give one short summarised line", async () => {
  await withSimulator({ rate: 10 }, async (sim) => {
    const symbols = Array.from({ length: 3000 }, (_, i) => `NOPE${i}/USD`);
    const result = await runDeno(
      "tasks/ws_test.ts",
      ["--symbols", ["BTC/USD", ...symbols].join(","), "--duration", "1"],
      {
        permissions: permissionSet("client"),
        env: {
          TWELVEDATA_API_KEY: TEST_KEY,
          TWELVEDATA_WS_URL: sim.wsUrl,
          TWELVEDATA_API_URL: sim.apiUrl,
        },
      },
    );
    assert.equal(result.code, 0, result.stderr.slice(0, 2000));
    for (const line of (result.stdout + result.stderr).split("\n")) {
      assert.ok(line.length < 600, `a ${line.length}-character line: ${line.slice(0, 200)}`);
    }
    assert.match(
      result.stderr,
      /WARN {2}Twelve Data refused 3,000 symbols: 3,000 × Symbol "…" is not found or is not available on your plan \(NOPE0\/USD, NOPE1\/USD, NOPE2\/USD and 2,997 more\)\n/,
    );
    assert.match(result.stdout, /fails: 3,000 × Symbol "…" is not found/);
  });
});

Deno.test("An uncaught exception or unhandled rejection ends a task with one line, exit 1", async (t) => {
  for (const kind of ["throw", "reject"]) {
    await t.step(kind, async () => {
      const result = await runDeno("tests/_support/uncaught_task.ts", [kind], {
        env: { TICKPIPE_DEBUG: "0" },
      });
      assertOneLine(result, 1, /^Error: (boom|rejected) near \*\*\*$/, [UNCAUGHT_SECRET]);
    });
  }
  await t.step("TICKPIPE_DEBUG=1 adds the stack", async () => {
    const result = await runDeno("tests/_support/uncaught_task.ts", ["throw"], {
      env: { TICKPIPE_DEBUG: "1" },
    });
    assert.equal(result.code, 1);
    assert.match(
      result.stderr,
      /^Error: boom near \*\*\*\nError: boom near \*\*\*\n\s+at .*uncaught_task\.ts/,
    );
    assert.ok(!result.stderr.includes(UNCAUGHT_SECRET));
  });
  await t.step("postgres.js writing to a terminated reserved connection", async () => {
    const db = await createTestDatabase({ migrate: false });
    try {
      const result = await runDeno("tests/_support/uncaught_task.ts", ["postgres"], {
        env: { DATABASE_URL: databaseUrl(db.config), TICKPIPE_DEBUG: "0" },
      });
      assertOneLine(
        result,
        1,
        /^Error: the connection to PostgreSQL closed during the task \(postgres\.js: Cannot read properties of null \(reading 'write'\)\); see the PostgreSQL server log$/,
        [db.config.password!],
      );
    } finally {
      await db.drop();
    }
  });
});

// --- TimescaleDB present but unusable ---------------------------------------------------

/** `assert.throws` on the message alone (String(error) would prefix the class name). */
function throwsMessage(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (error: Error) => {
    assert.match(error.message, pattern);
    return true;
  });
}

const info = (overrides: Partial<ServerInfo>): ServerInfo => ({
  postgresVersion: "17.2",
  timescaleVersion: "2.28.3",
  timescaleInstalled: false,
  timescalePreloaded: true,
  ...overrides,
});

Deno.test("The schema mode: TimescaleDB when usable, a line naming the fix when not", () => {
  assert.equal(chooseMode(info({})), "timescaledb");
  assert.equal(chooseMode(info({ timescaleVersion: undefined })), "portable");
  assert.equal(chooseMode(info({}), { requested: "portable" }), "portable");
  // A database set up before keeps its mode, whatever the server offers now.
  assert.equal(
    chooseMode(info({ timescalePreloaded: false }), { recorded: "portable" }),
    "portable",
  );
  for (const requested of ["auto", "timescaledb"] as const) {
    throwsMessage(
      () => chooseMode(info({ timescalePreloaded: false }), { requested }),
      /^Cannot set up TimescaleDB mode: the server has TimescaleDB 2\.28\.3 but does not preload its library; add shared_preload_libraries = 'timescaledb' to postgresql\.conf and restart PostgreSQL, or run setup --mode portable/,
    );
    throwsMessage(
      () => chooseMode(info({ timescaleVersion: "2.8.1" }), { requested }),
      /^Cannot set up TimescaleDB mode: TimescaleDB 2\.8\.1 is older than 2\.9\.0, which the candles need \(hierarchical continuous aggregates\); install a newer package and run ALTER EXTENSION timescaledb UPDATE, or run setup --mode portable/,
    );
  }
  assert.equal(chooseMode(info({ timescaleVersion: "2.9.0" })), "timescaledb");
  throwsMessage(
    () => chooseMode(info({ timescaleVersion: undefined }), { requested: "timescaledb" }),
    /no TimescaleDB extension available/,
  );
});

const NOT_PRELOADED_URL = Deno.env.get("TEST_DATABASE_URL_NOT_PRELOADED");

Deno.test({
  name: "On a server with TimescaleDB installed but not preloaded, setup says what to do",
  ignore: !NOT_PRELOADED_URL,
  async fn() {
    const admin = postgres(NOT_PRELOADED_URL!, { max: 1, onnotice: () => {} });
    const name = uniqueName("t_unpreloaded");
    await admin`CREATE DATABASE ${admin(name)}`;
    const url = new URL(NOT_PRELOADED_URL!);
    url.pathname = `/${name}`;
    const env = { DATABASE_URL: url.href };
    const permissions = permissionSet("db");
    try {
      for (const mode of ["auto", "timescaledb"]) {
        const result = await runDeno("tasks/setup.ts", ["--mode", mode], { env, permissions });
        assertOneLine(
          result,
          1,
          /^Cannot set up TimescaleDB mode: the server has TimescaleDB [\d.]+ but does not preload its library; add shared_preload_libraries = 'timescaledb'/,
          [url.password],
        );
      }
      const portable = await runDeno("tasks/setup.ts", ["--mode", "portable"], {
        env,
        permissions,
      });
      assert.equal(portable.code, 0, portable.stderr);
      const again = await runDeno("tasks/setup.ts", [], { env, permissions });
      assert.equal(again.code, 0, again.stderr);
      assert.match(again.stdout, /Schema up to date/);

      // What an older tickpipe did: migrate in TimescaleDB mode anyway. CREATE EXTENSION ends
      // the connection (FATAL, whose message postgres.js drops when no ReadyForQuery
      // follows); the migration fails with one error instead of a crash.
      const sql = postgres(url.href, { max: 2, onnotice: () => {} });
      try {
        await sql`DROP TABLE tickpipe_migrations`;
        const error = await migrate(sql, { mode: "timescaledb", timescaleVersion: "2.28.3" })
          .then(() => undefined, (e) => e);
        assert.match(
          String(error?.message),
          /^Migration 001_ticks failed and was rolled back: the connection closed \(.*\); see the PostgreSQL server log$/,
        );
        assert.ok(connectionLost(error.cause));
      } finally {
        await sql.end({ timeout: 5 });
      }
    } finally {
      await admin`DROP DATABASE IF EXISTS ${admin(name)} WITH (FORCE)`;
      await admin.end({ timeout: 5 });
    }
  },
});
