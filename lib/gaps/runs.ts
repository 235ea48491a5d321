import type { Sql } from "postgres";
import { type Logger, silentLogger } from "../log.ts";
import { type Gap, recordGap } from "./log.ts";

/** A run of `ingest`, as recorded in `tickpipe_runs`. */
export interface IngestRun {
  runId: string;
  host: string;
  pid: number;
  symbols: readonly string[];
  /** How often the run beats; three silent beats and it counts as stopped. */
  heartbeatMs: number;
}

/** Records the start of an ingest run. */
export async function startRun(sql: Sql, run: IngestRun): Promise<void> {
  await sql`
    INSERT INTO tickpipe_runs (run_id, host, pid, symbols, heartbeat_ms)
    VALUES (${run.runId}, ${run.host}, ${run.pid}, ${[...run.symbols]}::text[], ${run.heartbeatMs})
    ON CONFLICT (run_id) DO UPDATE SET heartbeat_at = now(), stopped_at = NULL, stop_kind = NULL`;
}

/**
 * Records that the run is alive. A run another process took for dead (its heartbeats were
 * lost to a long database outage) is alive again.
 */
export async function heartbeat(sql: Sql, runId: string): Promise<void> {
  await sql`
    UPDATE tickpipe_runs SET heartbeat_at = now(), stopped_at = NULL, stop_kind = NULL
    WHERE run_id = ${runId}`;
}

/** Records a clean stop. */
export async function stopRun(sql: Sql, runId: string): Promise<void> {
  await sql`
    UPDATE tickpipe_runs SET stopped_at = now(), stop_kind = 'clean', heartbeat_at = now()
    WHERE run_id = ${runId}`;
}

/**
 * Whether process `pid` of this host still exists: true, false, or undefined when that
 * cannot be known here (no /proc, no permission). Linux only.
 */
export function processAlive(pid: number): boolean | undefined {
  if (Deno.build.os !== "linux") return undefined;
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch (error) {
    return error instanceof Deno.errors.NotFound ? false : undefined;
  }
}

/** This machine's name, or "" when it cannot be read. */
export function hostName(): string {
  try {
    return Deno.hostname();
  } catch {
    return "";
  }
}

/** Options of `findCrashedRuns`. */
export interface CrashCheckOptions {
  /** The caller's own run, never taken for dead. */
  selfRunId?: string | undefined;
  /** This host's name (default `hostName()`): runs of this host are checked by pid too. */
  host?: string;
  /** Default `processAlive`. */
  alive?: (pid: number) => boolean | undefined;
  logger?: Logger;
}

interface RunRow {
  run_id: string;
  host: string;
  pid: number;
  symbols: string[];
  started_at: Date;
  heartbeat_at: Date;
  stale: boolean;
}

/**
 * Finds ingest runs that ended without a clean stop — their heartbeat is older than three
 * beats, or they ran on this host and their process is gone (a kill -9 is found at once) —
 * marks them crashed, and records a `not_running` gap for each of their symbols from the
 * symbol's last stored tick (closed by the first tick after the next start). Safe to run
 * from several processes at once: only the one that marks a run records its gaps.
 */
export async function findCrashedRuns(sql: Sql, options: CrashCheckOptions = {}): Promise<Gap[]> {
  const logger = options.logger ?? silentLogger;
  const host = options.host ?? hostName();
  const alive = options.alive ?? processAlive;
  const runs = await sql<RunRow[]>`
    SELECT run_id, host, pid, symbols, started_at, heartbeat_at,
      heartbeat_at < now() - 3 * heartbeat_ms * INTERVAL '1 millisecond' AS stale
    FROM tickpipe_runs
    WHERE stopped_at IS NULL`;
  const gaps: Gap[] = [];
  for (const run of runs) {
    if (run.run_id === options.selfRunId) continue;
    const gone = host !== "" && run.host === host && alive(run.pid) === false;
    if (!run.stale && !gone) continue;
    const recorded = await sql.begin(async (tx) => {
      const marked = await tx`
        UPDATE tickpipe_runs SET stopped_at = heartbeat_at, stop_kind = 'crashed'
        WHERE run_id = ${run.run_id} AND stopped_at IS NULL RETURNING 1`;
      if (marked.length === 0) return [];
      const found: Gap[] = [];
      for (const symbol of run.symbols) {
        const [last] = await tx<{ time: Date | null }[]>`
          SELECT max("time") AS time FROM crypto_ticks WHERE symbol = ${symbol} AND source = 0`;
        const gap = await recordGap(tx, {
          symbol,
          reason: "not_running",
          start: last?.time ?? run.started_at,
          detail: `ingest run on ${run.host} (pid ${run.pid}) ended without a clean stop ` +
            `(crash or kill); last heartbeat ${run.heartbeat_at.toISOString()}`,
          runId: run.run_id,
        });
        if (gap) found.push(gap);
      }
      return found;
    });
    if (recorded.length > 0 || gone || run.stale) {
      logger.warn(
        `Found an ingest run that ended without a clean stop (${
          gone ? "its process is gone" : "no heartbeat for three beats"
        }): recorded ${recorded.length} gap(s)`,
        { run: run.run_id, host: run.host, pid: run.pid },
      );
    }
    gaps.push(...recorded);
  }
  return gaps;
}

/**
 * The symbols a live ingest run streams (heartbeat within three beats, not stopped): their
 * ongoing gaps are closed by that run, so a backfill leaves them alone.
 */
export async function liveSymbols(sql: Sql): Promise<Set<string>> {
  const rows = await sql<{ symbol: string }[]>`
    SELECT DISTINCT unnest(symbols) AS symbol FROM tickpipe_runs
    WHERE stopped_at IS NULL
      AND heartbeat_at >= now() - 3 * heartbeat_ms * INTERVAL '1 millisecond'`;
  return new Set(rows.map((r) => r.symbol));
}
