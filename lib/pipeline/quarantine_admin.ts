import { join } from "node:path";
import type { Sql } from "postgres";
import { subBatchId } from "./batch.ts";
import {
  insertQuarantine,
  quarantineDir,
  type QuarantineRecord,
  quarantineRecord,
  refusalOf,
} from "./quarantine.ts";
import { parseChunks } from "./spool_format.ts";

/** Which quarantined rows a command acts on; both optional. */
export interface QuarantineFilter {
  /** A reason ("check_violation no_doge"), its condition name, a SQLSTATE or a constraint. */
  reason?: string | undefined;
  symbol?: string | undefined;
}

/** One group of `quarantineSummary`. */
export interface QuarantineGroup {
  reason: string;
  symbol: string;
  rows: number;
  first: Date;
  last: Date;
  message: string;
}

/** What `replayQuarantine` did. */
export interface ReplayResult {
  /** Rows now in crypto_ticks. */
  stored: number;
  /** Rows that were already stored (their one-row batch had committed): removed only. */
  alreadyStored: number;
  /** Rows refused again: they stay, with the new refusal and one more attempt. */
  refused: number;
}

function filterSql(sql: Sql, filter: QuarantineFilter) {
  const reason = filter.reason ?? null;
  const symbol = filter.symbol ?? null;
  return sql`
    (${reason}::text IS NULL OR reason = ${reason} OR sqlstate = ${reason}
      OR constraint_name = ${reason} OR reason LIKE ${reason} || ' %')
    AND (${symbol}::text IS NULL OR symbol = ${symbol})`;
}

async function filesIn(dir: string, suffix: string): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) {
      if (entry.isFile && entry.name.endsWith(suffix)) names.push(join(dir, entry.name));
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return names.sort();
}

/**
 * Moves quarantined rows kept in files into the table: those the pipeline wrote under
 * `<spool root>/quarantine/` when the table refused them, and the whole batches earlier
 * versions set aside under `<spool root>/failed/` (reason "set_aside_whole": a replay
 * stores their good rows and quarantines the others with their own reasons). Each file
 * is removed once its rows are in; importing twice adds nothing (batch ids are unique).
 */
export async function importQuarantineFiles(
  sql: Sql,
  spoolRoot: string,
): Promise<{ files: number; rows: number }> {
  let files = 0;
  let rows = 0;
  for (const path of await filesIn(quarantineDir(spoolRoot), ".jsonl")) {
    const text = await Deno.readTextFile(path);
    const records = text.split("\n").filter((l) => l.trim() !== "").map((l) =>
      JSON.parse(l) as QuarantineRecord
    );
    rows += (await insertQuarantine(sql, records)).size;
    await Deno.remove(path);
    files++;
  }
  for (const path of await filesIn(join(spoolRoot, "failed"), ".tsv")) {
    const text = await Deno.readTextFile(path);
    const message = text.startsWith("# ") ? text.slice(2, text.indexOf("\n")) : "unknown";
    const refusal = {
      sqlstate: null,
      reason: "set_aside_whole",
      constraint: null,
      message,
      detail: "a whole batch set aside by an earlier version of tickpipe",
    };
    const records: QuarantineRecord[] = [];
    for (const chunk of parseChunks(text)) {
      for (let i = 0; i < chunk.rows.length; i++) {
        const batchId = await subBatchId(chunk.id, i, i + 1);
        records.push(quarantineRecord({ batchId, row: chunk.rows[i]!, refusal }));
      }
    }
    rows += (await insertQuarantine(sql, records)).size;
    await Deno.remove(path);
    files++;
  }
  return { files, rows };
}

/** Quarantined rows grouped by reason and symbol, largest groups first. */
export async function quarantineSummary(
  sql: Sql,
  filter: QuarantineFilter = {},
): Promise<QuarantineGroup[]> {
  return await sql<QuarantineGroup[]>`
    SELECT reason, symbol, count(*)::int AS rows, min("time") AS first, max("time") AS last,
           min(message) AS message
    FROM tickpipe_quarantine WHERE ${filterSql(sql, filter)}
    GROUP BY reason, symbol ORDER BY rows DESC, reason, symbol`;
}

/** The first `limit` quarantined rows, oldest first. */
export async function quarantinedRows(sql: Sql, filter: QuarantineFilter, limit: number) {
  return await sql<
    {
      id: string;
      time: Date;
      symbol: string;
      price: number | null;
      seq: string;
      reason: string;
      attempts: number;
    }[]
  >`
    SELECT id, "time", symbol, price, seq, reason, attempts FROM tickpipe_quarantine
    WHERE ${filterSql(sql, filter)} ORDER BY id LIMIT ${limit}`;
}

/** Deletes quarantined rows for good; returns how many. */
export async function discardQuarantine(sql: Sql, filter: QuarantineFilter): Promise<number> {
  const result = await sql`DELETE FROM tickpipe_quarantine WHERE ${filterSql(sql, filter)}`;
  return result.count;
}

/**
 * Moves rows `ids` to crypto_ticks in one statement: each row's one-row batch id goes into
 * tickpipe_batches with it, so a row the pipeline has meanwhile stored (the same batch id)
 * is only removed, and a row is never stored twice, whoever replays it and how often.
 */
async function move(sql: Sql, ids: string[]): Promise<{ moved: number; stored: number }> {
  const [result] = await sql<{ moved: number; stored: number }[]>`
    WITH moved AS (
      DELETE FROM tickpipe_quarantine WHERE id = ANY(${`{${ids.join(",")}}`}::int8[])
      RETURNING *
    ), guard AS (
      INSERT INTO tickpipe_batches (batch_id, rows)
      SELECT batch_id, 1 FROM moved
      ON CONFLICT (batch_id) DO NOTHING RETURNING batch_id
    ), assets AS (
      INSERT INTO crypto_assets (symbol)
      SELECT DISTINCT m.symbol FROM moved m JOIN guard g USING (batch_id)
      ON CONFLICT (symbol) DO NOTHING
    ), ticks AS (
      INSERT INTO crypto_ticks ("time", symbol, price, day_volume, bid, ask, volume, seq)
      SELECT m."time", m.symbol, m.price, m.day_volume, m.bid, m.ask, m.volume, m.seq
      FROM moved m JOIN guard g USING (batch_id) ORDER BY m.id
      RETURNING 1
    )
    SELECT (SELECT count(*) FROM moved)::int AS moved, (SELECT count(*) FROM ticks)::int AS stored`;
  return result!;
}

/**
 * Writes quarantined rows to crypto_ticks, exactly once (see `move`), oldest first: in
 * chunks of up to 5000; a chunk refused for a data reason is split in halves down to the
 * rows still refused, which stay quarantined with the new refusal. Safe to run again, and
 * while ingest runs.
 */
export async function replayQuarantine(
  sql: Sql,
  filter: QuarantineFilter = {},
): Promise<ReplayResult> {
  const result: ReplayResult = { stored: 0, alreadyStored: 0, refused: 0 };
  const replay = async (ids: string[]): Promise<void> => {
    try {
      const { moved, stored } = await move(sql, ids);
      result.stored += stored;
      result.alreadyStored += moved - stored;
    } catch (error) {
      const refusal = refusalOf(error);
      if (!refusal) throw error;
      if (ids.length > 1) {
        const mid = Math.ceil(ids.length / 2);
        await replay(ids.slice(0, mid));
        await replay(ids.slice(mid));
        return;
      }
      await sql`
        UPDATE tickpipe_quarantine
        SET attempts = attempts + 1, sqlstate = ${refusal.sqlstate}, reason = ${refusal.reason},
            constraint_name = ${refusal.constraint}, message = ${refusal.message},
            detail = ${refusal.detail}
        WHERE id = ${ids[0]!}`;
      result.refused++;
    }
  };
  let after = "0";
  while (true) {
    const rows = await sql<{ id: string }[]>`
      SELECT id FROM tickpipe_quarantine WHERE id > ${after} AND ${filterSql(sql, filter)}
      ORDER BY id LIMIT 5000`;
    if (rows.length === 0) return result;
    after = rows.at(-1)!.id;
    await replay(rows.map((r) => r.id));
  }
}
