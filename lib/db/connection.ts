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

/** A connected database: the pool, its settings and, if it was started, the embedded server. */
export interface Database {
  sql: Sql;
  config: DatabaseConfig;
  /** What the server offers (versions, TimescaleDB), read when connecting. */
  server: ServerInfo;
  embedded: EmbeddedServer | undefined;
  close(): Promise<void>;
}

/**
 * Connects to the configured database, or, when none is configured, starts (or
 * reuses) the embedded PostgreSQL under the data directory. Checks the connection
 * once, so a wrong password or an unreachable host fails here with one line, and so does
 * a database whose TimescaleDB the server cannot load.
 */
export async function openDatabase(
  config: Config,
  options: ConnectOptions = {},
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
  const sql = connect(database, { max: config.poolSize, ...options });
  let server: ServerInfo;
  try {
    server = await readServerInfo(sql);
    assertTimescaleLoadable(server, `database "${database.database}"`);
  } catch (error) {
    await sql.end({ timeout: 1 }).catch(() => {});
    if (error instanceof UserError) throw error;
    throw new UserError(describeDatabaseError(error, database), { cause: error });
  }
  return {
    sql,
    config: database,
    server,
    embedded,
    close: () => sql.end({ timeout: 5 }),
  };
}
