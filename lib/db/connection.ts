import postgres, { type Sql } from "postgres";
import type { Config, DatabaseConfig } from "../config.ts";
import { UserError } from "../errors.ts";
import { type Logger, silentLogger } from "../log.ts";
import { redact } from "../redact.ts";
import { type EmbeddedServer, startEmbedded } from "./embedded.ts";

/** Pool and timeout settings for `connect`. */
export interface ConnectOptions {
  /** Pool size (default 4). */
  max?: number;
  /** Seconds to wait for a connection before failing (default 10). */
  connectTimeout?: number;
  /** Seconds an idle connection stays open (default 60). */
  idleTimeout?: number;
  logger?: Logger;
  /** Shown in pg_stat_activity. */
  applicationName?: string;
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
    max_lifetime: 60 * 60,
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
const CONNECTION_ERRORS = new Set([
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

/** A connected database: the pool, its settings and, if it was started, the embedded server. */
export interface Database {
  sql: Sql;
  config: DatabaseConfig;
  embedded: EmbeddedServer | undefined;
  close(): Promise<void>;
}

/**
 * Connects to the configured database, or, when none is configured, starts (or
 * reuses) the embedded PostgreSQL under the data directory. Checks the connection
 * once, so a wrong password or an unreachable host fails here with one line; with
 * `check: false` it does not (for a server that waits for the database to come back).
 */
export async function openDatabase(
  config: Config,
  options: ConnectOptions & { check?: boolean } = {},
): Promise<Database> {
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
  const { check = true, ...connectOptions } = options;
  const sql = connect(database, { max: config.poolSize, ...connectOptions });
  try {
    if (check) await sql`SELECT 1`;
  } catch (error) {
    await sql.end({ timeout: 1 }).catch(() => {});
    throw new UserError(describeDatabaseError(error, database), { cause: error });
  }
  return {
    sql,
    config: database,
    embedded,
    close: () => sql.end({ timeout: 5 }),
  };
}
