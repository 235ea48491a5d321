import type { Sql } from "postgres";
import type { DatabaseConfig } from "../config.ts";
import { connect, type Database } from "../db/connection.ts";
import { migrate } from "../db/migrations.ts";
import { chooseMode, readServerInfo } from "../db/server_info.ts";

/** A fresh, migrated database on the bench's server. */
export interface Scratch {
  sql: Sql;
  config: DatabaseConfig;
  /** Closes the pool and drops the database. */
  drop(): Promise<void>;
}

let scratchCounter = 0;

/** A new database on the server of `admin`, migrated as `setup` would; `drop()` removes it. */
export async function scratchDatabase(
  admin: Database,
  label: string,
  max: number,
): Promise<Scratch> {
  const name = `bench_${Date.now().toString(36)}_${Deno.pid}_${++scratchCounter}_${label}`;
  await admin.sql`CREATE DATABASE ${admin.sql(name)}`;
  const config = { ...admin.config, database: name };
  const sql = connect(config, { max, applicationName: "tickpipe-bench" });
  const drop = async () => {
    await sql.end({ timeout: 5 }).catch(() => {});
    await admin.sql`DROP DATABASE IF EXISTS ${admin.sql(name)} WITH (FORCE)`;
  };
  try {
    const info = await readServerInfo(sql);
    await migrate(sql, { mode: chooseMode(info), timescaleVersion: info.timescaleVersion });
  } catch (error) {
    await drop();
    throw error;
  }
  return { sql, config, drop };
}

/** The rows of `crypto_ticks`, and how many of them repeat a `(symbol, seq)` already there. */
export async function countRows(sql: Sql): Promise<{ rows: number; duplicates: number }> {
  const [row] = await sql<{ rows: number; duplicates: number }[]>`
    SELECT count(*)::int AS rows, (count(*) - count(DISTINCT (symbol, seq)))::int AS duplicates
    FROM crypto_ticks`;
  return row!;
}
