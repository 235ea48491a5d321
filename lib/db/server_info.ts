import type { Sql } from "postgres";
import { UsageError, UserError } from "../errors.ts";

/** How the schema is built: TimescaleDB features, or plain PostgreSQL with the same names. */
export type SchemaMode = "timescaledb" | "portable";

/** What `setup --mode` accepts: a mode, or `auto` (TimescaleDB when usable). */
export type RequestedMode = "auto" | SchemaMode;

/** The oldest TimescaleDB the schema supports: hierarchical continuous aggregates need 2.9. */
const MIN_TIMESCALEDB = "2.9.0";

/** What the server offers, read once before migrating. */
export interface ServerInfo {
  /** e.g. "18.4". */
  postgresVersion: string;
  /** Installed TimescaleDB version, else the version available to install, else undefined. */
  timescaleVersion: string | undefined;
  /** True when the extension is already installed in this database. */
  timescaleInstalled: boolean;
  /**
   * True when the server loads TimescaleDB's library at start (shared_preload_libraries).
   * Without it, `CREATE EXTENSION timescaledb`, or any use of an installed extension, ends
   * the connection with `FATAL: extension "timescaledb" must be preloaded`.
   */
  timescalePreloaded: boolean;
}

/**
 * Reads the server's PostgreSQL version and its TimescaleDB availability. The preload test
 * reads a setting only TimescaleDB's loader defines (any role may read it), since
 * shared_preload_libraries itself is readable by superusers only.
 */
export async function readServerInfo(sql: Sql): Promise<ServerInfo> {
  const [row] = await sql<
    {
      server_version: string;
      installed: string | null;
      available: string | null;
      preloaded: boolean;
    }[]
  >`
    SELECT current_setting('server_version') AS server_version,
           (SELECT extversion FROM pg_extension WHERE extname = 'timescaledb') AS installed,
           (SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb') AS available,
           current_setting('timescaledb.bgw_launcher_poll_time', true) IS NOT NULL AS preloaded
  `;
  return {
    postgresVersion: (row?.server_version ?? "unknown").split(" ")[0]!,
    timescaleVersion: row?.installed ?? row?.available ?? undefined,
    timescaleInstalled: row?.installed != null,
    timescalePreloaded: row?.preloaded ?? false,
  };
}

const PRELOAD_FIX = "add shared_preload_libraries = 'timescaledb' to postgresql.conf " +
  "and restart PostgreSQL";

/**
 * Fails with one line when TimescaleDB is installed in the database but its library is not
 * preloaded: every query touching a hypertable or a continuous aggregate would end its
 * connection with a FATAL error.
 */
export function assertTimescaleLoadable(info: ServerInfo, where: string): void {
  if (info.timescaleInstalled && !info.timescalePreloaded) {
    throw new UserError(
      `Cannot use ${where}: TimescaleDB is installed in this database but the server does ` +
        `not preload its library; ${PRELOAD_FIX}`,
    );
  }
}

/**
 * The schema mode to build. `auto` takes the mode a database was set up in before
 * (`recorded`), else TimescaleDB when the server has it, else portable. TimescaleDB that is
 * present but unusable (not preloaded, older than `MIN_TIMESCALEDB`) is an error naming
 * the fix, not a silent fall back: the mode is recorded and kept by every later setup.
 */
export function chooseMode(
  info: ServerInfo,
  options: { requested?: RequestedMode; recorded?: SchemaMode | undefined } = {},
): SchemaMode {
  const requested = options.requested ?? "auto";
  if (requested === "auto" && options.recorded) return options.recorded;
  if (requested === "portable") return "portable";
  const version = info.timescaleVersion;
  if (!version) {
    if (requested === "auto") return "portable";
    throw new UsageError("--mode timescaledb: this server has no TimescaleDB extension available");
  }
  const alternative = "or run setup --mode portable for plain PostgreSQL tables";
  if (!info.timescalePreloaded) {
    throw new UserError(
      `Cannot set up TimescaleDB mode: the server has TimescaleDB ${version} but does not ` +
        `preload its library; ${PRELOAD_FIX}, ${alternative}`,
    );
  }
  if (compareVersions(version, MIN_TIMESCALEDB) < 0) {
    throw new UserError(
      `Cannot set up TimescaleDB mode: TimescaleDB ${version} is older than ${MIN_TIMESCALEDB}, ` +
        `which the candles need (hierarchical continuous aggregates); install a newer ` +
        `package and run ALTER EXTENSION timescaledb UPDATE, ${alternative}`,
    );
  }
  return "timescaledb";
}

/** One line describing the server and mode, e.g. `TimescaleDB 2.28.3 on PostgreSQL 15.18`. */
export function describeServer(info: ServerInfo, mode: SchemaMode): string {
  if (mode === "timescaledb") {
    return `TimescaleDB ${info.timescaleVersion ?? "?"} on PostgreSQL ${info.postgresVersion}`;
  }
  return `PostgreSQL ${info.postgresVersion} (portable mode: ${
    info.timescaleVersion ? "TimescaleDB not used" : "no TimescaleDB"
  })`;
}

/** Compares dotted versions: negative when a < b. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split(/[.-]/).map((p) => Number.parseInt(p, 10) || 0);
  const pb = b.split(/[.-]/).map((p) => Number.parseInt(p, 10) || 0);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}
