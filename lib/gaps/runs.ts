import postgres, { type Sql } from "postgres";
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

// Advisory locks of ingest runs: (namespace, hashtext(run_id)). A run holds its lock for as
// long as its database session lives, and a session ends with its process, kill -9 included.
const LOCK_NAMESPACE = 7317;

/** Records the start of an ingest run. */
export async function startRun(sql: Sql, run: IngestRun): Promise<void> {
  await sql`
    INSERT INTO tickpipe_runs (run_id, host, pid, symbols, heartbeat_ms)
    VALUES (${run.runId}, ${run.host}, ${run.pid}, ${[...run.symbols]}::text[], ${run.heartbeatMs})
    ON CONFLICT (run_id) DO UPDATE SET heartbeat_at = now(), stopped_at = NULL, stop_kind = NULL`;
}

/**
 * Records that the run is alive. A run another process took for dead (say its lock's
 * connection was lost while the database restarted) is alive again.
 */
export async function heartbeat(sql: Sql, runId: string): Promise<void> {
  await sql`
    UPDATE tickpipe_runs SET heartbeat_at = now(), stopped_at = NULL, stop_kind = NULL
    WHERE run_id = ${runId}`;
}

/** Records the symbols the run streams now (with leases: the ones it holds). */
export async function setRunSymbols(
  sql: Sql,
  runId: string,
  symbols: readonly string[],
): Promise<void> {
  await sql`UPDATE tickpipe_runs SET symbols = ${[...symbols]}::text[] WHERE run_id = ${runId}`;
}

/** Records a clean stop. */
export async function stopRun(sql: Sql, runId: string): Promise<void> {
  await sql`
    UPDATE tickpipe_runs SET stopped_at = now(), stop_kind = 'clean', heartbeat_at = now()
    WHERE run_id = ${runId}`;
}

/**
 * A run's proof of life: a session-level advisory lock held on a connection of its own (a
 * one-connection client with the pool's settings, never closed for idleness or age), which
 * PostgreSQL releases the moment the session ends — at once when the process dies, whatever
 * killed it. If that connection is lost, the next `hold()` reconnects and takes the lock
 * again. Behind a pooler in transaction mode session locks mean nothing: the heartbeat
 * still decides there.
 */
export class RunLock {
  #sql: Sql;
  #runId: string;
  #client: Sql | undefined;
  #held = false;

  constructor(sql: Sql, runId: string) {
    this.#sql = sql;
    this.#runId = runId;
  }

  /** Takes the lock unless this session already holds it; true when held. */
  async hold(): Promise<boolean> {
    if (this.#held) return true;
    // A client of its own, not a connection reserved from the pool: postgres.js 3.4.9 writes
    // to the dead socket of a reserved connection that the server closed, which throws where
    // nothing can catch it; a client's pool reconnects instead.
    this.#client ??= postgres({
      ...(this.#sql.options as unknown as postgres.Options<Record<string, never>>),
      max: 1,
      idle_timeout: undefined,
      max_lifetime: null,
      onclose: () => this.#held = false,
    });
    const [row] = await this.#client<{ held: boolean }[]>`
      SELECT pg_try_advisory_lock(${LOCK_NAMESPACE}, hashtext(${this.#runId})) AS held`;
    // Not taken only on a hash collision with another live run: the heartbeat decides then.
    this.#held = row?.held ?? false;
    return this.#held;
  }

  /** Ends the lock's session, which releases it. Never throws. */
  async release(): Promise<void> {
    const client = this.#client;
    this.#client = undefined;
    this.#held = false;
    await client?.end({ timeout: 2 }).catch(() => {});
  }
}

/** Options of `findCrashedRuns`. */
export interface CrashCheckOptions {
  /** The caller's own run, never taken for dead. */
  selfRunId?: string | undefined;
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
  free: boolean;
}

/**
 * Finds ingest runs that ended without a clean stop — their lock is free (their session is
 * gone: a kill -9 is found at once) or their heartbeat is three beats old — marks them
 * crashed, and records a `not_running` gap for each of their symbols: from the symbol's last
 * tick before the next run started after the crashed run's last heartbeat (or its last tick,
 * when none has) to the first tick after it, or ongoing until one comes. (A run that started
 * earlier, e.g. a hot standby or one streaming other symbols, says nothing of when this one
 * died.) Safe from several processes at once: only the one that
 * marks a run records its gaps.
 */
export async function findCrashedRuns(sql: Sql, options: CrashCheckOptions = {}): Promise<Gap[]> {
  const logger = options.logger ?? silentLogger;
  // pg_try_advisory_xact_lock: taken and released within the statement if the run's own
  // session no longer holds it. Only runs not yet judged stale are probed.
  const runs = await sql<RunRow[]>`
    SELECT run_id, host, pid, symbols, started_at, heartbeat_at, stale,
      stale OR pg_try_advisory_xact_lock(${LOCK_NAMESPACE}, hashtext(run_id::text)) AS free
    FROM (
      SELECT *, heartbeat_at < now() - 3 * heartbeat_ms * INTERVAL '1 millisecond' AS stale
      FROM tickpipe_runs
      WHERE stopped_at IS NULL AND run_id <> ${options.selfRunId ?? crypto.randomUUID()}
    ) AS r`;
  const gaps: Gap[] = [];
  for (const run of runs) {
    if (!run.free) continue;
    const recorded = await sql.begin(async (tx) => {
      const marked = await tx<{ next: Date | null }[]>`
        UPDATE tickpipe_runs SET stopped_at = heartbeat_at, stop_kind = 'crashed'
        WHERE run_id = ${run.run_id} AND stopped_at IS NULL
        RETURNING (SELECT min(later.started_at) FROM tickpipe_runs AS later
          WHERE later.started_at > tickpipe_runs.heartbeat_at) AS next`;
      if (marked.length === 0) return [];
      const next = marked[0]!.next;
      const found: Gap[] = [];
      for (const symbol of run.symbols) {
        const [bounds] = await tx<{ last: Date | null; after: Date | null }[]>`
          WITH last AS (
            SELECT max("time") AS time FROM crypto_ticks
            WHERE symbol = ${symbol} AND source = 0
              AND (${next}::timestamptz IS NULL OR "time" < ${next})
          )
          SELECT last.time AS last,
            (SELECT min("time") FROM crypto_ticks
              WHERE symbol = ${symbol} AND source = 0 AND "time" > last.time) AS after
          FROM last`;
        const gap = await recordGap(tx, {
          symbol,
          reason: "not_running",
          start: bounds?.last ?? run.started_at,
          end: bounds?.after ?? null,
          detail: `ingest run on ${run.host} (pid ${run.pid}) ended without a clean stop ` +
            `(crash or kill); last heartbeat ${run.heartbeat_at.toISOString()}`,
          runId: run.run_id,
        });
        if (gap) found.push(gap);
      }
      return found;
    });
    if (recorded.length > 0) {
      logger.warn(
        `Found an ingest run that ended without a clean stop (${
          run.stale ? "no heartbeat for three beats" : "its database session is gone"
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

/** This machine's name (recorded with a run, for people), or "" when it cannot be read. */
export function hostName(): string {
  try {
    return Deno.hostname();
  } catch {
    return "";
  }
}
