import postgres, { type Sql } from "postgres";
import type { Config, DatabaseConfig } from "../config.ts";
import { UserError } from "../errors.ts";
import { type Logger, silentLogger } from "../log.ts";
import { redact } from "../redact.ts";
import { type EmbeddedServer, startEmbedded } from "./embedded.ts";
import { assertTimescaleLoadable, readServerInfo, type ServerInfo } from "./server_info.ts";

/** Pool and timeout settings for `connect`. */
export interface ConnectOptions {
  /** Pool size (default 4). */
  max?: number;
  /** Seconds to wait for a connection before failing (default 10). */
  connectTimeout?: number;
  /** Seconds an idle connection stays open (default 60; 0: for ever). */
  idleTimeout?: number;
  /** Seconds before a connection is replaced by a fresh one (default 3600; 0: never). */
  maxLifetime?: number;
  logger?: Logger;
  /** Shown in pg_stat_activity. */
  applicationName?: string;
  /**
   * Fetch the array types on connect (default true): needed to pass JS arrays as
   * parameters; postgres.js 3.4.9 does not await that query, so a connection killed
   * meanwhile rejects with nobody listening.
   */
  fetchTypes?: boolean;
}

/** Opens a postgres.js pool on `database` with explicit pool size and timeouts. */
export function connect(database: DatabaseConfig, options: ConnectOptions = {}): Sql {
  const logger = options.logger ?? silentLogger;
  return postgres({
    host: database.host,
    port: database.port,
    user: database.user,
    password: database.password,
    database: database.database,
    ssl: database.tls === "disable"
      ? false
      : database.tls === "require"
      ? "require"
      : "verify-full",
    max: options.max ?? 4,
    connect_timeout: options.connectTimeout ?? 10,
    idle_timeout: options.idleTimeout ?? 60,
    max_lifetime: options.maxLifetime ?? 60 * 60,
    fetch_types: options.fetchTypes ?? true,
    connection: { application_name: options.applicationName ?? "tickpipe" },
    onnotice: (notice) => logger.debug(`PostgreSQL notice: ${notice.message}`),
  });
}

/** Where a database error came from, for `describeDatabaseError`. */
function target(database: DatabaseConfig): string {
  return `${database.host}:${database.port}/${database.database}`;
}

/**
 * Turns a connection or query error into one clear line naming the cause
 * (never the password), e.g. `Cannot connect to PostgreSQL at db:5432/x: password
 * authentication failed for user "app"`.
 */
export function describeDatabaseError(error: unknown, database: DatabaseConfig): string {
  const e = error as { code?: string; message?: string; errno?: string };
  const where = `Cannot connect to PostgreSQL at ${target(database)}`;
  const message = e?.message ?? String(error);
  switch (e?.code) {
    case "ECONNREFUSED":
      return `${where}: connection refused (is the server running and listening on that port?)`;
    case "ENOTFOUND":
    case "EAI_AGAIN":
      return `${where}: host "${database.host}" not found`;
    case "ETIMEDOUT":
    case "CONNECT_TIMEOUT":
      return `${where}: timed out (unreachable host or blocked port)`;
    case "ECONNRESET":
      return `${where}: the connection was reset (TLS mismatch or server restart?)`;
    case "CONNECTION_CLOSED":
    case "CONNECTION_ENDED":
    case "CONNECTION_DESTROYED":
      return `${where}: the connection was closed (server restart or network cut?)`;
    case "28P01":
      return `${where}: password authentication failed for user "${database.user}"`;
    case "28000":
      return `${where}: not allowed in (${redact(message)})`;
    case "3D000":
      return `${where}: database "${database.database}" does not exist`;
    case "57P03":
      return `${where}: the server is starting up or shutting down`;
  }
  if (/ssl|tls|certificate/i.test(message)) return `${where}: TLS failed (${redact(message)})`;
  if (/connection refused/i.test(message)) return `${where}: connection refused`;
  return `${where}: ${redact(message)}`;
}

/**
 * True when `error` says the database cannot be reached or used at all (refused, timed
 * out, reset, shutting down, wrong password, missing database), as opposed to one
 * statement failing: the errors `describeDatabaseError` is meant for.
 */
export function isConnectionFailure(error: unknown): boolean {
  const code = (error as { code?: unknown })?.code;
  if (typeof code !== "string") return false;
  // Else SQLSTATE classes 08 (connection), 57 (shutdown), 28 (authorization), 3D (database).
  return CONNECTION_ERRORS.has(code) || /^(08|57|28|3D)[0-9A-Z]{3}$/.test(code);
}

/** Socket errors, and postgres.js' own codes for a connection it lost or could not open. */
export const CONNECTION_ERRORS: ReadonlySet<string> = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EPIPE",
  "CONNECT_TIMEOUT",
  "CONNECTION_CLOSED",
  "CONNECTION_ENDED",
  "CONNECTION_DESTROYED",
]);

/** An open pool, its settings and, if it was started, the embedded server. */
export interface Pool {
  sql: Sql;
  config: DatabaseConfig;
  embedded: EmbeddedServer | undefined;
  close(): Promise<void>;
}

/** A checked database: a `Pool` and what its server offers. */
export interface Database extends Pool {
  /** What the server offers (versions, TimescaleDB), read when connecting. */
  server: ServerInfo;
}

/**
 * Opens a pool on the configured database, or, when none is configured, starts (or reuses)
 * the embedded PostgreSQL under the data directory; does not check the connection (for a
 * server that waits for the database to come back, like the chart).
 */
export async function openPool(config: Config, options: ConnectOptions = {}): Promise<Pool> {
  const logger = options.logger ?? silentLogger;
  let embedded: EmbeddedServer | undefined;
  let database = config.database;
  if (!database) {
    embedded = await startEmbedded(config.dataDir, { port: config.embeddedPort, logger });
    database = embedded.database;
    // Said once when the server starts; a reused server is only mentioned at debug level.
    (embedded.started ? logger.info : logger.debug).call(
      logger,
      `Using the embedded PostgreSQL in ${embedded.dataDir} (no DATABASE_URL set); connect with: ${embedded.psql}`,
    );
  }
  const sql = connect(database, { max: config.poolSize, ...options });
  return { sql, config: database, embedded, close: () => sql.end({ timeout: 5 }) };
}

/**
 * As `openPool`, then checks the connection once, so a wrong password or an unreachable host
 * fails here with one line, and so does a database whose TimescaleDB the server cannot load.
 */
export async function openDatabase(
  config: Config,
  options: ConnectOptions = {},
): Promise<Database> {
  const pool = await openPool(config, options);
  let server: ServerInfo;
  try {
    server = await readServerInfo(pool.sql);
    assertTimescaleLoadable(server, `database "${pool.config.database}"`);
  } catch (error) {
    await pool.sql.end({ timeout: 1 }).catch(() => {});
    if (error instanceof UserError) throw error;
    throw new UserError(describeDatabaseError(error, pool.config), { cause: error });
  }
  return { ...pool, server };
}
