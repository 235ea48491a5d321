import type { Database } from "../db/connection.ts";
import { chooseMode, type SchemaMode } from "../db/server_info.ts";
import { loadAverage, readProc } from "./proc.ts";

/** The machine and database a bench ran on. */
export interface Machine {
  cpu: string;
  cores: number;
  memoryGb: number;
  os: string;
  postgres: string;
  schemaMode: SchemaMode;
  database: string;
  deno: string;
  /** The 1-minute load average when the bench started: other work on a shared machine. */
  loadBefore: number | undefined;
}

/** Describes this machine and `admin`'s server. */
export async function describeMachine(admin: Database): Promise<Machine> {
  const info = await readProc("/proc/cpuinfo");
  const cpu = /^model name\s*:\s*(.+)$/m.exec(info ?? "")?.[1]?.trim() ?? "unknown";
  const server = admin.server;
  const mode = chooseMode(server);
  return {
    cpu,
    cores: navigator.hardwareConcurrency,
    memoryGb: Math.round(Deno.systemMemoryInfo().total / 1024 ** 3 * 10) / 10,
    os: `${Deno.build.os}/${Deno.build.arch}`,
    postgres: server.postgresVersion +
      (mode === "timescaledb" ? ` + TimescaleDB ${server.timescaleVersion}` : " (portable mode)"),
    schemaMode: mode,
    database: admin.embedded ? "embedded" : `${admin.config.host}:${admin.config.port}`,
    deno: Deno.version.deno,
    loadBefore: await loadAverage(),
  };
}
