import type { Sql } from "postgres";

/** The advisory lock class of ingest leases ("tick" in ASCII); the object id is `lock_key`. */
export const LEASE_LOCK_CLASS = 1952801643;

/**
 * The advisory lock class of standbys: a standby holds a shared lock on (this, `lock_key`)
 * for each symbol it waits for, so the holder can tell which of its symbols another process
 * would take over (and hold their ticks back when its own lease session is lost).
 */
export const STANDBY_LOCK_CLASS = LEASE_LOCK_CLASS + 1;

/** Who holds leases: one ingest run. */
export interface Holder {
  /** A random UUID per run. */
  id: string;
  host: string;
  pid: number;
}

/** "host:pid", as holders are named in logs and in `tickpipe_handovers`. */
export function holderName(holder: { host: string | null; pid: number | null }): string {
  return `${holder.host ?? "?"}:${holder.pid ?? "?"}`;
}

/** One answer of `tryLock`: whether the lock was free, and what the table says of it. */
export interface LockAttempt {
  symbol: string;
  lockKey: number;
  /** This session now holds the lock. */
  got: boolean;
  holder: string | null;
  host: string | null;
  pid: number | null;
  since: Date | null;
  releasedAt: Date | null;
  /**
   * The recorded holder renewed after this session began: had the server restarted, this
   * session would be younger than that renewal, so the holder's session ended on its own.
   */
  renewedSinceOurs: boolean;
  /** This session is older than the grace period. */
  graceOver: boolean;
  /** The recorded holder has not renewed its row for `staleMs` (or has no row). */
  stale: boolean;
}

/** What a renewal found: the server process that answered, and who stands by. */
export interface Renewal {
  /** See `LeaseSession.backendPid`. */
  pid: number;
  /** Of the lock keys asked about, those another session stands by for. */
  watched: number[];
}

/** One stored row of a symbol, as compared with the ticks a holder held back. */
export interface StoredTick {
  timeMs: number;
  price: number;
  dayVolume: number | null;
}

/** One symbol taken by `take`: who had it, and the last tick stored for it. */
export interface Taken {
  symbol: string;
  previous: { holder: string; released: boolean } | undefined;
  lastTick: { timeMs: number; seq: number; dayVolume: number | null } | undefined;
  /** Database time of the take, epoch ms. */
  sinceMs: number;
}

const json = (symbols: readonly string[]) => JSON.stringify(symbols);

/**
 * The lease connection: one PostgreSQL session of its own (never a pooled one, whose
 * locks would be lost or shared), and the statements on it. Advisory locks taken here
 * last as long as the session: they vanish at once when the process dies, and when the
 * server stops hearing from it for `timeoutMs` (`idle_session_timeout`).
 */
export class LeaseSession {
  #sql: Sql;
  /** The server process of this session; a different one means the session was replaced. */
  readonly backendPid: number;
  #version: number;

  private constructor(sql: Sql, backendPid: number, version: number) {
    this.#sql = sql;
    this.backendPid = backendPid;
    this.#version = version;
  }

  /**
   * Opens a session with `connect` (a fresh one-connection client, which this session
   * ends), asks the server to end it after `timeoutMs` of silence, and registers `holder`.
   */
  static async open(
    connect: () => Sql,
    holder: Holder,
    options: { timeoutMs: number },
  ): Promise<LeaseSession> {
    const sql = connect();
    try {
      const [row] = await sql<{ pid: number; version: number }[]>`
        SELECT pg_backend_pid() AS pid, current_setting('server_version_num')::int AS version`;
      const seconds = Math.max(1, Math.round(options.timeoutMs / 1000));
      // A vanished host sends no FIN: TCP keepalives (all versions) and, from PostgreSQL
      // 14, idle_session_timeout end its session, hence its locks, within about timeoutMs.
      await sql`
        SELECT set_config('tcp_keepalives_idle', ${
        String(Math.max(1, Math.floor(seconds / 2)))
      }, false),
               set_config('tcp_keepalives_interval', ${
        String(Math.max(1, Math.floor(seconds / 8)))
      }, false),
               set_config('tcp_keepalives_count', '4', false)`;
      if (row!.version >= 140000) {
        await sql`SELECT set_config('idle_session_timeout', ${String(options.timeoutMs)}, false)`;
      }
      await sql`
        WITH pruned AS (
          DELETE FROM tickpipe_lease_holders WHERE renewed_at < now() - interval '7 days'
        )
        INSERT INTO tickpipe_lease_holders (holder, host, pid)
        VALUES (${holder.id}::uuid, ${holder.host}, ${holder.pid})
        ON CONFLICT (holder) DO NOTHING`;
      return new LeaseSession(sql, row!.pid, row!.version);
    } catch (error) {
      await sql.end({ timeout: 0 }).catch(() => {});
      throw error;
    }
  }

  /** Creates the lease rows of `symbols` that do not exist yet. */
  async ensure(symbols: readonly string[]): Promise<void> {
    await this.#sql`
      INSERT INTO tickpipe_leases (symbol)
      SELECT jsonb_array_elements_text(${json(symbols)}::text::jsonb)
      ON CONFLICT (symbol) DO NOTHING`;
  }

  /**
   * Marks `holder` alive, if `alive`; returns the server process that answered (see
   * `backendPid`) and which of `lockKeys` (the leases held) other processes stand by for. A
   * holder renews only while this session holds all its locks: a standby reads a renewal
   * after its own session began as proof that a free lock's holder died, and the renewal's
   * age as how long the holder has been unable to reclaim it.
   */
  async renew(holder: Holder, alive: boolean, lockKeys: readonly number[]): Promise<Renewal> {
    const [row] = await this.#sql<{ pid: number; watched: number[] }[]>`
      WITH renewed AS (
        UPDATE tickpipe_lease_holders SET renewed_at = now()
        WHERE holder = ${holder.id}::uuid AND ${alive}::boolean
      )
      SELECT pg_backend_pid() AS pid, coalesce((
        SELECT jsonb_agg(DISTINCT l.objid::int) FROM pg_locks l
        WHERE l.locktype = 'advisory' AND l.classid = ${STANDBY_LOCK_CLASS}::oid
          AND l.objsubid = 2 AND l.granted AND l.pid <> pg_backend_pid()
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND l.objid::int IN (
            SELECT k::int FROM jsonb_array_elements_text(${
      JSON.stringify(lockKeys)
    }::text::jsonb) AS k
          )
      ), '[]'::jsonb) AS watched`;
    return { pid: row!.pid, watched: row!.watched };
  }

  /**
   * Says this session stands by for `lockKeys` (a shared lock each, see
   * `STANDBY_LOCK_CLASS`), or, with `waiting` false, no longer does.
   */
  async standBy(lockKeys: readonly number[], waiting: boolean): Promise<void> {
    if (lockKeys.length === 0) return;
    await this.#sql`
      SELECT CASE WHEN ${waiting}::boolean
                  THEN pg_try_advisory_lock_shared(${STANDBY_LOCK_CLASS}, k::int)
                  ELSE pg_advisory_unlock_shared(${STANDBY_LOCK_CLASS}, k::int) END
      FROM jsonb_array_elements_text(${JSON.stringify(lockKeys)}::text::jsonb) AS k`;
  }

  /** Tries the lock of each symbol (held until `unlock`, `release` or the session's end). */
  async tryLock(
    symbols: readonly string[],
    options: { graceMs: number; staleMs: number },
  ): Promise<LockAttempt[]> {
    const rows = await this.#sql<
      {
        symbol: string;
        lock_key: number;
        got: boolean;
        holder: string | null;
        host: string | null;
        pid: number | null;
        since: Date | null;
        released_at: Date | null;
        renewed_since_ours: boolean;
        grace_over: boolean;
        stale: boolean;
      }[]
    >`
      WITH me AS (
        SELECT backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()
      )
      SELECT l.symbol, l.lock_key, pg_try_advisory_lock(${LEASE_LOCK_CLASS}, l.lock_key) AS got,
             l.holder::text AS holder, l.host, l.pid, l.since, l.released_at,
             coalesce(h.renewed_at > me.backend_start, false) AS renewed_since_ours,
             now() - me.backend_start >= make_interval(secs => ${
      options.graceMs / 1000
    }) AS grace_over,
             coalesce(now() - h.renewed_at > make_interval(secs => ${
      options.staleMs / 1000
    }), true) AS stale
      FROM tickpipe_leases l
      CROSS JOIN me
      LEFT JOIN tickpipe_lease_holders h ON h.holder = l.holder
      WHERE l.symbol IN (SELECT jsonb_array_elements_text(${json(symbols)}::text::jsonb))`;
    return rows.map((r) => ({
      symbol: r.symbol,
      lockKey: r.lock_key,
      got: r.got,
      holder: r.holder,
      host: r.host,
      pid: r.pid,
      since: r.since,
      releasedAt: r.released_at,
      renewedSinceOurs: r.renewed_since_ours,
      graceOver: r.grace_over,
      stale: r.stale,
    }));
  }

  /** Gives back locks taken by `tryLock` that this session will not keep. */
  async unlock(lockKeys: readonly number[]): Promise<void> {
    await this.#sql`
      SELECT pg_advisory_unlock(${LEASE_LOCK_CLASS}, k::int)
      FROM jsonb_array_elements_text(${JSON.stringify(lockKeys)}::text::jsonb) AS k`;
  }

  /**
   * Records `holder` as the owner of `symbols` (whose locks this session holds), and each
   * change of owner in `tickpipe_handovers` with the gap it leaves: from the last tick
   * stored to now. Returns, per symbol, the previous owner and that last tick.
   */
  async take(holder: Holder, symbols: readonly string[]): Promise<Taken[]> {
    const me = holderName(holder);
    const rows = await this.#sql<
      {
        symbol: string;
        holder: string | null;
        host: string | null;
        pid: number | null;
        released_at: Date | null;
        last_ms: number | null;
        last_seq: string | null;
        last_day_volume: string | null;
        now_ms: number;
      }[]
    >`
      WITH wanted AS (
        SELECT jsonb_array_elements_text(${json(symbols)}::text::jsonb) AS symbol
      ), prev AS (
        SELECT l.symbol, l.holder, l.host, l.pid, l.released_at
        FROM tickpipe_leases l JOIN wanted w ON w.symbol = l.symbol
      ), last AS (
        SELECT p.symbol, t."time", t.seq, t.day_volume
        FROM prev p
        LEFT JOIN LATERAL (
          SELECT c."time", c.seq, c.day_volume FROM crypto_ticks c
          WHERE c.symbol = p.symbol AND c."time" > now() - interval '48 hours'
          ORDER BY c."time" DESC, c.seq DESC
          LIMIT 1
        ) t ON true
      ), taken AS (
        UPDATE tickpipe_leases l
        SET holder = ${holder.id}::uuid, host = ${holder.host}, pid = ${holder.pid},
            since = now(), released_at = NULL
        FROM wanted w WHERE l.symbol = w.symbol
      ), recorded AS (
        INSERT INTO tickpipe_handovers (symbol, kind, from_holder, to_holder, start_at, end_at)
        SELECT p.symbol, CASE WHEN p.holder IS NULL THEN 'handover' ELSE 'takeover' END,
               p.host || ':' || p.pid, ${me}, t."time", now()
        FROM prev p JOIN last t ON t.symbol = p.symbol
        WHERE p.holder IS DISTINCT FROM ${holder.id}::uuid
          AND (p.holder IS NOT NULL OR p.released_at IS NOT NULL)
      )
      SELECT p.symbol, p.holder::text AS holder, p.host, p.pid, p.released_at,
             (extract(epoch FROM t."time") * 1000)::float8 AS last_ms,
             t.seq::text AS last_seq, t.day_volume::text AS last_day_volume,
             (extract(epoch FROM now()) * 1000)::float8 AS now_ms
      FROM prev p JOIN last t ON t.symbol = p.symbol`;
    return rows.map((r) => ({
      symbol: r.symbol,
      previous: r.holder === holder.id || (r.holder === null && r.released_at === null)
        ? undefined
        : { holder: holderName(r), released: r.holder === null },
      lastTick: r.last_ms === null || r.last_seq === null ? undefined : {
        timeMs: r.last_ms,
        seq: Number(r.last_seq),
        dayVolume: r.last_day_volume === null ? null : Number(r.last_day_volume),
      },
      sinceMs: r.now_ms,
    }));
  }

  /**
   * Records that this holder kept ingesting `symbol` from `sinceMs` (when another process
   * took its lease) until now: rows of that interval may be stored twice.
   */
  async recordOverlap(
    holder: Holder,
    overlaps: readonly { symbol: string; by: string; sinceMs: number }[],
  ): Promise<void> {
    if (overlaps.length === 0) return;
    await this.#sql`
      INSERT INTO tickpipe_handovers (symbol, kind, from_holder, to_holder, start_at, end_at)
      SELECT o.symbol, 'overlap', ${holderName(holder)}, o.by,
             timestamptz 'epoch' + o.since_ms * interval '1 millisecond', now()
      FROM jsonb_to_recordset(${
      JSON.stringify(overlaps.map((o) => ({
        symbol: o.symbol,
        by: o.by,
        since_ms: o.sinceMs,
      })))
    }::text::jsonb) AS o(symbol text, by text, since_ms float8)`;
  }

  /**
   * The rows of `symbol` stamped from `fromMs` to `toMs` (at most `limit`), and the stamp
   * of the latest row stored from `fromMs` on (epoch ms), to compare held ticks with.
   */
  async storedBetween(
    symbol: string,
    fromMs: number,
    toMs: number,
    limit: number,
  ): Promise<{ rows: StoredTick[]; latestMs: number | undefined }> {
    const rows = await this.#sql<{ time_ms: number; price: number; day_volume: string | null }[]>`
      SELECT (extract(epoch FROM "time") * 1000)::float8 AS time_ms, price,
             day_volume::text AS day_volume
      FROM crypto_ticks
      WHERE symbol = ${symbol} AND "time" >= to_timestamp(${fromMs / 1000})
        AND "time" <= to_timestamp(${toMs / 1000})
      LIMIT ${limit}`;
    const [latest] = await this.#sql<{ ms: number | null }[]>`
      SELECT (extract(epoch FROM max("time")) * 1000)::float8 AS ms FROM crypto_ticks
      WHERE symbol = ${symbol} AND "time" >= to_timestamp(${fromMs / 1000})`;
    return {
      rows: rows.map((r) => ({
        timeMs: r.time_ms,
        price: r.price,
        dayVolume: r.day_volume === null ? null : Number(r.day_volume),
      })),
      latestMs: latest?.ms ?? undefined,
    };
  }

  /**
   * Ends the server process `backendPid` if, and only if, it holds the lock of one of
   * `lockKeys`: the previous session of this very holder, still alive on the server after
   * the client gave it up. Returns how many were ended.
   */
  async endStale(backendPid: number, lockKeys: readonly number[]): Promise<number> {
    // From PostgreSQL 14, wait (up to 2 s) until it is gone, so its locks can be taken now.
    const wait = this.#version >= 140000 ? 2000 : 0;
    const rows = await this.#sql`
      SELECT DISTINCT CASE WHEN ${wait}::int > 0 THEN pg_terminate_backend(l.pid, ${wait}::int)
                           ELSE pg_terminate_backend(l.pid) END
      FROM pg_locks l
      WHERE l.locktype = 'advisory' AND l.classid = ${LEASE_LOCK_CLASS}::oid AND l.objsubid = 2
        AND l.objid IN (
          SELECT k::oid FROM jsonb_array_elements_text(${
      JSON.stringify(lockKeys)
    }::text::jsonb) AS k
        )
        AND l.pid = ${backendPid} AND l.granted`;
    return rows.length;
  }

  /** Marks every lease of `holder` released and gives back its locks. */
  async release(holder: Holder): Promise<void> {
    await this.#sql`
      WITH released AS (
        UPDATE tickpipe_leases SET holder = NULL, released_at = now()
        WHERE holder = ${holder.id}::uuid
      ), gone AS (
        DELETE FROM tickpipe_lease_holders WHERE holder = ${holder.id}::uuid
      )
      SELECT 1`;
    await this.#sql`SELECT pg_advisory_unlock_all()`;
  }

  /** Ends the session (its locks go with it). */
  async close(): Promise<void> {
    await this.#sql.end({ timeout: 0 }).catch(() => {});
  }
}
