import assert from "node:assert/strict";
import { ENV_VARS, loadConfig } from "../lib/config.ts";
import { readEnvironment } from "../lib/cli.ts";
import { UserError } from "../lib/errors.ts";
import { redact } from "../lib/redact.ts";

function configError(env: Record<string, string>): string {
  try {
    loadConfig(env);
  } catch (error) {
    assert.ok(error instanceof UserError, `expected a UserError, got ${error}`);
    assert.equal(error.exitCode, 1);
    assert.doesNotMatch(error.message, /\n/, "one line");
    return error.message;
  }
  assert.fail("loadConfig accepted a bad configuration");
}

Deno.test("Config defaults to the embedded database and Twelve Data's hosts", () => {
  const config = loadConfig({});
  assert.equal(config.database, undefined);
  assert.equal(config.twelveData.wsUrl, "wss://ws.twelvedata.com/v1/quotes/price");
  assert.equal(config.twelveData.apiUrl, "https://api.twelvedata.com");
  assert.equal(config.twelveData.auth, "header");
  assert.equal(config.dataDir, ".data");
  assert.equal(config.log.format, "text");
});

Deno.test("DATABASE_URL is parsed with its TLS mode", async (t) => {
  await t.step("remote hosts default to require", () => {
    const c = loadConfig({ DATABASE_URL: "postgres://app:s3cret@db.example.com/ticks" });
    assert.deepEqual(c.database, {
      host: "db.example.com",
      port: 5432,
      user: "app",
      password: "s3cret",
      database: "ticks",
      tls: "require",
      source: "DATABASE_URL",
    });
  });
  await t.step("local hosts default to disable; sslmode wins", () => {
    assert.equal(
      loadConfig({ DATABASE_URL: "postgresql://u@localhost:6543/d" }).database?.tls,
      "disable",
    );
    const c = loadConfig({ DATABASE_URL: "postgres://u@h/d?sslmode=verify-full" });
    assert.equal(c.database?.tls, "verify-full");
  });
  await t.step("percent-encoded passwords are decoded", () => {
    assert.equal(
      loadConfig({ DATABASE_URL: "postgres://u:p%40ss%3Aw@h/d" }).database?.password,
      "p@ss:w",
    );
  });
});

Deno.test("The standard PG* variables work without DATABASE_URL", () => {
  const c = loadConfig({
    PGHOST: "pg.internal",
    PGPORT: "6432",
    PGUSER: "me",
    PGPASSWORD: "pw12345",
    PGDATABASE: "x",
    PGSSLMODE: "verify-full",
  });
  assert.deepEqual(c.database, {
    host: "pg.internal",
    port: 6432,
    user: "me",
    password: "pw12345",
    database: "x",
    tls: "verify-full",
    source: "PG* variables",
  });
});

Deno.test("A bad value fails with one line naming the variable, never echoing it", async (t) => {
  const cases: [Record<string, string>, RegExp][] = [
    [{ DATABASE_URL: "::not a url hunter2" }, /DATABASE_URL is not a valid URL/],
    [{ DATABASE_URL: "mysql://u:hunter2@h/d" }, /DATABASE_URL must start with postgres:\/\//],
    [
      { DATABASE_URL: "postgres://u:hunter2@h/d?sslmode=prefer" },
      /sslmode must be one of disable, require, verify-full/,
    ],
    [{ PGHOST: "h", PGPORT: "99999" }, /PGPORT must be a port number/],
    [{ PGHOST: "h", PGSSLMODE: "allow" }, /PGSSLMODE must be one of disable, require, verify-full/],
    [
      { TWELVEDATA_WS_URL: "http://x/hunter2" },
      /TWELVEDATA_WS_URL must be a ws:\/\/ or wss:\/\/ URL/,
    ],
    [
      { TWELVEDATA_API_URL: "ftp://x" },
      /TWELVEDATA_API_URL must be an http:\/\/ or https:\/\/ URL/,
    ],
    [{ TWELVEDATA_AUTH: "cookie" }, /TWELVEDATA_AUTH must be header or query/],
    [{ TICKPIPE_LOG_LEVEL: "loud" }, /TICKPIPE_LOG_LEVEL/],
    [{ TICKPIPE_DB_POOL: "0" }, /TICKPIPE_DB_POOL must be a whole number from 1 to 100/],
  ];
  for (const [env, expected] of cases) {
    await t.step(Object.keys(env).join(","), () => {
      const message = configError(env);
      assert.match(message, /^Invalid configuration: /);
      assert.match(message, expected);
      assert.doesNotMatch(message, /hunter2/);
    });
  }
});

Deno.test("Secrets from the configuration are redacted wherever they appear", () => {
  loadConfig({ DATABASE_URL: "postgres://u:TopSecret99@h/d", TWELVEDATA_API_KEY: "td-key-123456" });
  assert.equal(redact("failed with TopSecret99 and td-key-123456"), "failed with *** and ***");
  assert.equal(redact("wss://ws.example/v1?apikey=abc&x=1"), "wss://ws.example/v1?apikey=***&x=1");
  assert.equal(redact("postgres://u:other@h/d"), "postgres://u:***@h/d");
});

Deno.test(".env supplies the variables tickpipe reads; the environment wins", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tickpipe-env-" });
  const file = `${dir}/.env`;
  try {
    await Deno.writeTextFile(
      file,
      "# comment\nexport TICKPIPE_DATA_DIR='/tmp/two words'\nTICKPIPE_LOG_LEVEL=\"debug\"\n" +
        "TICKPIPE_LOG_FORMAT=text # trailing\nNOT_OURS=1\n\nbad line\n",
    );
    const processEnv = new Map([["TICKPIPE_LOG_FORMAT", "json"], ["NOT_OURS_EITHER", "x"]]);
    assert.deepEqual(readEnvironment(file, processEnv), {
      TICKPIPE_DATA_DIR: "/tmp/two words",
      TICKPIPE_LOG_LEVEL: "debug",
      TICKPIPE_LOG_FORMAT: "json",
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("deno.json's permission sets grant exactly the variables the configuration reads", () => {
  const { permissions } = JSON.parse(Deno.readTextFileSync("deno.json")) as {
    permissions: Record<string, { env?: { allow: string[]; ignore: boolean } }>;
  };
  assert.deepEqual(permissions.db?.env, { allow: [...ENV_VARS], ignore: true });
  for (const name of permissions.client?.env?.allow ?? []) {
    assert.ok((ENV_VARS as readonly string[]).includes(name), name);
  }
});
