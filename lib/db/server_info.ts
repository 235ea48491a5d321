import type { Sql } from "postgres";

/** How the schema is built: TimescaleDB features, or plain PostgreSQL with the same names. */
export type SchemaMode = "timescaledb" | "portable";

/** What the server offers, read once before migrating. */
export interface ServerInfo {
  /** e.g. "18.4". */
  postgresVersion: string;
  /** Installed TimescaleDB version, else the version available to install, else undefined. */
  timescaleVersion: string | undefined;
  /** True when the extension is already installed in this database. */
  timescaleInstalled: boolean;
}

/** Reads the server's PostgreSQL version and its TimescaleDB availability. */
export async function readServerInfo(sql: Sql): Promise<ServerInfo> {
  const [row] = await sql<
    { server_version: string; installed: string | null; available: string | null }[]
  >`
    SELECT current_setting('server_version') AS server_version,
           (SELECT extversion FROM pg_extension WHERE extname = 'timescaledb') AS installed,
           (SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb') AS available
  `;
  return {
    postgresVersion: (row?.server_version ?? "unknown").split(" ")[0]!,
    timescaleVersion: row?.installed ?? row?.available ?? undefined,
    timescaleInstalled: row?.installed != null,
  };
}

/** The mode the server supports: TimescaleDB when installed or installable. */
export function defaultMode(info: ServerInfo): SchemaMode {
  return info.timescaleVersion ? "timescaledb" : "portable";
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
