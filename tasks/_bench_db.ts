import type { Sql } from "postgres";
import { configFromFlags } from "../lib/cli.ts";
import { connect } from "../lib/db/connection.ts";
import { openDatabase } from "../lib/db/connection.ts";
import { migrate } from "../lib/db/migrations.ts";
import { chooseMode, readServerInfo } from "../lib/db/server_info.ts";

/** A throwaway database for a benchmark, on the configured (or embedded) server. */
export interface ScratchDatabase {
  sql: Sql;
  /** Where it lives, for the report. */
  describe: string;
  drop(): Promise<void>;
}

/** Creates and migrates a scratch database; `drop()` removes it. */
export async function scratchDatabase(options: { max?: number } = {}): Promise<ScratchDatabase> {
  const config = configFromFlags({});
  const db = await openDatabase(config, { max: 1 });
  const name = `bench_${Deno.pid}_${Date.now().toString(36)}`;
  await db.sql.unsafe(`CREATE DATABASE ${name}`);
  const settings = { ...db.config, database: name };
  const sql = connect(settings, { max: options.max ?? 4, applicationName: "tickpipe-bench" });
  const info = await readServerInfo(sql);
  await migrate(sql, { mode: chooseMode(info), timescaleVersion: info.timescaleVersion });
  return {
    sql,
    describe: `PostgreSQL ${info.postgresVersion}${
      info.timescaleVersion ? ` + TimescaleDB ${info.timescaleVersion}` : ""
    } at ${settings.host}:${settings.port}`,
    async drop() {
      await sql.end({ timeout: 5 });
      await db.sql.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await db.close();
    },
  };
}
