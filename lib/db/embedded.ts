import { dirname, join } from "node:path";
import { UserError } from "../errors.ts";
import { type Logger, silentLogger } from "../log.ts";
import type { DatabaseConfig } from "../config.ts";
import { locateBinaries, locateBinariesFor } from "./embedded_binaries.ts";
import { choosePort, DEFAULT_EMBEDDED_PORT, portInUse } from "./embedded_port.ts";
import { ensureDir, exists, lastLine, run, symlink } from "./embedded_shell.ts";
import { isRoot, ownerName, prepareServiceUser } from "./embedded_user.ts";

/** The embedded server's database and role. */
const EMBEDDED_DB = "tickpipe";
const EMBEDDED_USER = "tickpipe";

/** A running embedded PostgreSQL. */
export interface EmbeddedServer {
  /** Connection settings for postgres.js. */
  database: DatabaseConfig;
  /** The cluster's data directory. */
  dataDir: string;
  /** The server log file. */
  logFile: string;
  /** True when this call started the server, false when it was already running. */
  started: boolean;
  /** A psql command line that connects to it (the password comes from a pgpass file). */
  psql: string;
}

async function readPassword(file: string): Promise<string | undefined> {
  try {
    return (await Deno.readTextFile(file)).trim() || undefined;
  } catch {
    return undefined;
  }
}

function randomPassword(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(18));
  return btoa(String.fromCharCode(...bytes)).replace(/[+/=]/g, "x");
}

/**
 * Starts (or reuses) the embedded PostgreSQL whose cluster lives in
 * `<dataDir>/postgres`: initialises it on first use with a random password kept in
 * `<dataDir>/pgpass` (mode 0600), starts it on 127.0.0.1, and leaves it running so psql
 * and the next task can use it (`tickpipe db stop` stops it).
 *
 * The port: `options.port` when given (TICKPIPE_EMBEDDED_PORT), and an error naming the
 * variable when another program holds it; else the port remembered in `<dataDir>/port`,
 * else 54329, moving on to the next free port when that one is busy (a second checkout's
 * server, say). The port it starts on is remembered for the next start.
 */
export async function startEmbedded(
  dataDir: string,
  options: { port?: number | undefined; logger?: Logger } = {},
): Promise<EmbeddedServer> {
  const logger = options.logger ?? silentLogger;
  const root = await Deno.realPath(await ensureDir(dataDir));
  const portFile = join(root, "port");
  const cluster = join(root, "postgres");
  const logFile = join(root, "postgres.log");
  const pgpass = join(root, "pgpass");
  const passwordFile = join(root, "password");
  let binaries = await locateBinaries();

  let asUser: string | undefined;
  await ensureDir(cluster);
  if (isRoot()) {
    ({ user: asUser, binaries } = await prepareServiceUser(binaries, root, cluster, logger));
  }

  // Files the server itself opens live beside the cluster, where its user can reach them.
  const serverHome = dirname(await Deno.realPath(cluster));
  const serverLog = join(serverHome, "postgres.log");
  if (asUser) {
    // pg_ctl opens the log file as the service user: create it and hand it over.
    await Deno.writeTextFile(serverLog, "", { append: true });
    await run("chown", [asUser, serverLog]);
    if (serverLog !== logFile && !(await exists(logFile))) await symlink(serverLog, logFile);
  }
  const pgCtl = join(binaries.bin, "pg_ctl");
  const env = { LD_LIBRARY_PATH: binaries.lib };
  let password = await readPassword(passwordFile);
  const initialised = await exists(join(cluster, "PG_VERSION"));
  if (!initialised) {
    password = randomPassword();
    const pwfile = join(serverHome, ".initpw");
    await Deno.writeTextFile(pwfile, password + "\n", { mode: 0o600 });
    if (asUser) await run("chown", [asUser, pwfile]);
    const init = await run(join(binaries.bin, "initdb"), [
      `--pgdata=${await Deno.realPath(cluster)}`,
      "--auth=scram-sha-256",
      `--username=${EMBEDDED_USER}`,
      `--pwfile=${pwfile}`,
      "--encoding=UTF8",
      "--no-locale",
    ], { asUser, env });
    await Deno.remove(pwfile).catch(() => {});
    if (init.code !== 0) {
      throw new UserError(
        `Cannot initialise the embedded PostgreSQL in ${cluster}: ${lastLine(init.output)}`,
      );
    }
    await Deno.writeTextFile(passwordFile, password + "\n", { mode: 0o600 });
    logger.info("Initialised the embedded PostgreSQL", { dir: cluster });
  }
  if (!password) {
    throw new UserError(`Cannot read the embedded PostgreSQL's password from ${passwordFile}`);
  }
  await Deno.writeTextFile(pgpass, `127.0.0.1:*:*:${EMBEDDED_USER}:${password}\n`, {
    mode: 0o600,
  });

  const status = await run(pgCtl, ["status", "-D", await Deno.realPath(cluster)], { asUser, env });
  let started = false;
  let runningPort: number;
  if (status.code !== 0) {
    const port = await choosePort(options.port, portFile, logger);
    runningPort = port;
    const start = await run(pgCtl, [
      "start",
      "-D",
      await Deno.realPath(cluster),
      "-l",
      serverLog,
      "-w",
      "-t",
      "60",
      "-o",
      `-p ${port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c max_connections=100`,
    ], { asUser, env });
    if (start.code !== 0) {
      const log = await Deno.readTextFile(serverLog).catch(() => "");
      const lines = log.split("\n").reverse();
      const reason = lines.some((l) => /Address already in use/.test(l))
        ? portInUse(port, options.port !== undefined)
        : (lines.find((l) => /FATAL|ERROR/.test(l)) ?? lastLine(start.output)).trim();
      throw new UserError(`Cannot start the embedded PostgreSQL on port ${port}: ${reason}`);
    }
    started = true;
    await Deno.writeTextFile(portFile, `${port}\n`);
    logger.info("Started the embedded PostgreSQL", { port, dir: cluster });
  } else {
    // A server started earlier may listen on another port than asked now: use its own.
    runningPort = await postmasterPort(cluster) ?? options.port ?? DEFAULT_EMBEDDED_PORT;
    logger.debug("Reusing the running embedded PostgreSQL", { port: runningPort, dir: cluster });
  }

  const database: DatabaseConfig = {
    host: "127.0.0.1",
    port: runningPort,
    user: EMBEDDED_USER,
    password,
    database: EMBEDDED_DB,
    tls: "disable",
    source: "embedded",
  };
  await ensureDatabase(database);
  return {
    database,
    dataDir: cluster,
    logFile,
    started,
    psql:
      `PGPASSFILE=${pgpass} psql -h 127.0.0.1 -p ${runningPort} -U ${EMBEDDED_USER} ${EMBEDDED_DB}`,
  };
}

/** Stops the embedded server of `dataDir` if it runs; returns whether it was running. */
export async function stopEmbedded(dataDir: string): Promise<boolean> {
  const cluster = join(dataDir, "postgres");
  if (!(await exists(join(cluster, "postmaster.pid")))) return false;
  const binaries = await locateBinariesFor(dataDir);
  const asUser = isRoot() ? (await ownerName(cluster)) : undefined;
  const result = await run(join(binaries.bin, "pg_ctl"), [
    "stop",
    "-D",
    await Deno.realPath(cluster),
    "-m",
    "fast",
    "-w",
  ], {
    asUser,
    env: { LD_LIBRARY_PATH: binaries.lib },
  });
  return result.code === 0;
}

async function ensureDatabase(database: DatabaseConfig): Promise<void> {
  const { default: postgres } = await import("postgres");
  const sql = postgres({
    host: database.host,
    port: database.port,
    user: database.user,
    password: database.password,
    database: "postgres",
    max: 1,
    connect_timeout: 10,
    onnotice: () => {},
  });
  try {
    const rows = await sql`SELECT 1 FROM pg_database WHERE datname = ${database.database}`;
    if (rows.length === 0) await sql`CREATE DATABASE ${sql(database.database)}`;
  } finally {
    await sql.end({ timeout: 5 });
  }
}

/** The port a running cluster listens on: line 4 of its postmaster.pid. */
async function postmasterPort(cluster: string): Promise<number | undefined> {
  try {
    const line = (await Deno.readTextFile(join(cluster, "postmaster.pid"))).split("\n")[3];
    const value = Number(line);
    return Number.isInteger(value) && value > 0 ? value : undefined;
  } catch {
    return undefined;
  }
}
