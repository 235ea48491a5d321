/**
 * The test database, chosen once per test process, in order: TEST_DATABASE_URL if
 * set; else a TimescaleDB container (@testcontainers/postgresql) where a Docker
 * engine answers; else the embedded PostgreSQL under .data/test. Each test gets a
 * fresh database of its own on that server.
 */
import assert from "node:assert/strict";
import type { Sql } from "postgres";
import type { DatabaseConfig } from "../../lib/config.ts";
import { loadConfig } from "../../lib/config.ts";
import { connect } from "../../lib/db/connection.ts";
import { type EmbeddedServer, startEmbedded } from "../../lib/db/embedded.ts";
import { errorText } from "../../lib/text.ts";
import { freePort } from "./run.ts";
import { migrate } from "../../lib/db/migrations.ts";
import { chooseMode, readServerInfo, type SchemaMode } from "../../lib/db/server_info.ts";

/** The server all tests of this process use. */
export interface TestServer {
  /** Settings of the server's admin database. */
  admin: DatabaseConfig;
  /** What it is: "TEST_DATABASE_URL", "testcontainers (timescale/timescaledb)" or "embedded". */
  kind: string;
  /** True when TimescaleDB is available on it. */
  timescale: boolean;
  timescaleVersion: string | undefined;
}

const TEST_DATA_DIR = ".data/test";
const TEST_EMBEDDED_PORT = Number(Deno.env.get("TICKPIPE_TEST_PORT") ?? 54339);
let serverPromise: Promise<TestServer> | undefined;

/**
 * Starts (or finds) the embedded test server under `.data/test`, one test module at a time:
 * `deno test --parallel` runs modules side by side, and two of them must not both start it.
 */
async function startTestServer(): Promise<EmbeddedServer> {
  await Deno.mkdir(".data", { recursive: true });
  using lock = await Deno.open(".data/test.lock", { create: true, write: true });
  await lock.lock(true);
  try {
    return await startEmbedded(TEST_DATA_DIR, { port: TEST_EMBEDDED_PORT });
  } catch (error) {
    // The port is taken (another checkout's test server, say): any free port will do.
    if (!/on port \d+/.test(errorText(error))) throw error;
    return await startEmbedded(TEST_DATA_DIR, { port: freePort() });
  }
}

async function dockerAnswers(): Promise<boolean> {
  if (Deno.env.get("TICKPIPE_TEST_DOCKER") === "0") return false;
  try {
    const out = await new Deno.Command("docker", {
      args: ["info", "--format", "{{.ServerVersion}}"],
      stdout: "null",
      stderr: "null",
    }).output();
    return out.code === 0;
  } catch {
    return false;
  }
}

async function chooseServer(): Promise<TestServer> {
  let admin: DatabaseConfig;
  let kind: string;
  const url = Deno.env.get("TEST_DATABASE_URL");
  if (url) {
    const config = loadConfig({ DATABASE_URL: url });
    admin = config.database!;
    kind = "TEST_DATABASE_URL";
  } else if (await dockerAnswers()) {
    const { PostgreSqlContainer } = await import("@testcontainers/postgresql");
    const container = await new PostgreSqlContainer("timescale/timescaledb:latest-pg17").start();
    admin = {
      host: container.getHost(),
      port: container.getPort(),
      user: container.getUsername(),
      password: container.getPassword(),
      database: container.getDatabase(),
      tls: "disable",
      source: "testcontainers",
    };
    kind = "testcontainers (timescale/timescaledb)";
  } else {
    const embedded = await startTestServer();
    admin = embedded.database;
    kind = `embedded PostgreSQL (${embedded.dataDir})`;
  }
  const sql = connect(admin, { max: 1 });
  try {
    const info = await readServerInfo(sql);
    const server = {
      admin,
      kind,
      timescale: info.timescaleVersion !== undefined,
      timescaleVersion: info.timescaleVersion,
    };
    console.error(
      `[tests] database: ${kind}; PostgreSQL ${info.postgresVersion}` +
        (info.timescaleVersion ? `, TimescaleDB ${info.timescaleVersion}` : ", no TimescaleDB"),
    );
    return server;
  } finally {
    await sql.end({ timeout: 5 });
  }
}

/** The test server (started or found on first use). */
export function testServer(): Promise<TestServer> {
  serverPromise ??= chooseServer();
  return serverPromise;
}

/** A fresh, empty database for one test. */
export interface TestDatabase {
  config: DatabaseConfig;
  sql: Sql;
  mode: SchemaMode;
  server: TestServer;
  /** Drops the database (closes `sql` first). */
  drop(): Promise<void>;
}

/** Runs `fn` on a one-connection pool to the server's admin database, then closes it. */
async function onAdmin(server: TestServer, fn: (admin: Sql) => Promise<unknown>): Promise<void> {
  const admin = connect(server.admin, { max: 1 });
  try {
    await fn(admin);
  } finally {
    await admin.end({ timeout: 5 });
  }
}

/**
 * Creates a fresh database on the test server; with `migrate: true` (default) the
 * schema is applied in the server's mode (or `mode`).
 */
export async function createTestDatabase(
  options: { migrate?: boolean; mode?: SchemaMode; max?: number } = {},
): Promise<TestDatabase> {
  const server = await testServer();
  const name = uniqueName("t");
  await onAdmin(server, (admin) => admin`CREATE DATABASE ${admin(name)}`);
  const config: DatabaseConfig = { ...server.admin, database: name };
  const sql = connect(config, { max: options.max ?? 4 });
  const mode = options.mode ?? (server.timescale ? "timescaledb" : "portable");
  if (options.migrate ?? true) {
    const info = await readServerInfo(sql);
    await migrate(sql, {
      mode: options.mode ?? chooseMode(info),
      timescaleVersion: info.timescaleVersion,
    });
  }
  return {
    config,
    sql,
    mode,
    server,
    async drop() {
      await sql.end({ timeout: 5 });
      await onAdmin(
        server,
        (admin) => admin`DROP DATABASE IF EXISTS ${admin(name)} WITH (FORCE)`,
      );
    },
  };
}

/**
 * A database or role name no other test uses, in this process or another (test modules
 * share a process under --parallel; roles are global to the server).
 */
export function uniqueName(prefix: string): string {
  return `${prefix}_${Date.now().toString(36)}_${crypto.randomUUID().slice(0, 8)}`;
}

/** Drops `name` from the test server (after the databases it had grants in are dropped). */
export async function dropRole(server: TestServer, name: string): Promise<void> {
  await onAdmin(server, (admin) => admin`DROP ROLE IF EXISTS ${admin(name)}`);
}

/**
 * Checks a demo run's own accounting against the database: it says the simulator sent N
 * ticks and N rows were written, and crypto_ticks holds N rows.
 */
export async function assertDemoWroteAllSent(stdout: string, sql: Sql): Promise<void> {
  const [, sent, written] =
    /The simulator sent (\d+) ticks; (\d+) rows were written\./.exec(stdout) ?? [];
  assert.ok(Number(sent) > 0, stdout);
  assert.equal(written, sent);
  const [row] = await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM crypto_ticks`;
  assert.equal(row!.n, Number(sent));
}
