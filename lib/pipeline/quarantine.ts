import { join } from "node:path";
import type { Sql } from "postgres";
import type { Row } from "./batch.ts";
import { errorText } from "../text.ts";

/** Why the database refused a row, from the error it returned. */
export interface Refusal {
  /** The SQLSTATE, e.g. 23514 (null for batches set aside whole by earlier versions). */
  sqlstate: string | null;
  /** The condition name and constraint, e.g. "check_violation no_doge": what counts group by. */
  reason: string;
  constraint: string | null;
  message: string;
  detail: string | null;
}

/** A refused row and the id of its one-row batch (unique: quarantining twice is a no-op). */
export interface QuarantinedRow {
  batchId: string;
  row: Row;
  refusal: Refusal;
}

/** PostgreSQL's names of the data errors a row can cause (appendix A of its manual). */
const CONDITIONS: Record<string, string> = {
  "22000": "data_exception",
  "22001": "string_data_right_truncation",
  "22003": "numeric_value_out_of_range",
  "22007": "invalid_datetime_format",
  "22008": "datetime_field_overflow",
  "22021": "character_not_in_repertoire",
  "22023": "invalid_parameter_value",
  "22P02": "invalid_text_representation",
  "22P05": "untranslatable_character",
  "23000": "integrity_constraint_violation",
  "23502": "not_null_violation",
  "23503": "foreign_key_violation",
  "23505": "unique_violation",
  "23514": "check_violation",
  "23P01": "exclusion_violation",
};

/**
 * The refusal in `error` when it is a data error — SQLSTATE class 22 (data exception, which
 * includes encoding errors) or 23 (integrity constraint): retrying the same rows cannot
 * succeed — else undefined.
 */
export function refusalOf(error: unknown): Refusal | undefined {
  const e = error as {
    code?: unknown;
    constraint_name?: unknown;
    message?: unknown;
    detail?: unknown;
  };
  const code = e?.code;
  if (typeof code !== "string" || !/^2[23][0-9A-Z]{3}$/.test(code)) return undefined;
  const constraint = typeof e.constraint_name === "string" ? e.constraint_name : null;
  const condition = CONDITIONS[code] ?? `sqlstate_${code}`;
  return {
    sqlstate: code,
    reason: constraint ? `${condition} ${constraint}` : condition,
    constraint,
    message: typeof e.message === "string" ? e.message : String(error),
    detail: typeof e.detail === "string" ? e.detail : null,
  };
}

/**
 * True for an error that says the statement itself cannot work (a SQLSTATE outside the
 * connection, resource and shutdown classes: a missing table, a privilege), as opposed to
 * a database that is away for now.
 */
function isPermanent(error: unknown): boolean {
  const code = (error as { code?: unknown })?.code;
  return typeof code === "string" && /^[0-9A-Z]{5}$/.test(code) && !/^(08|40|53|57|58)/.test(code);
}

/** One quarantined row as JSON: the insert's parameter and a fallback file's line. */
export interface QuarantineRecord {
  batch_id: string;
  time_ms: number;
  symbol: string;
  price: number;
  day_volume: number | null;
  bid: number | null;
  ask: number | null;
  volume: number | null;
  seq: number;
  sqlstate: string | null;
  reason: string;
  constraint_name: string | null;
  message: string;
  detail: string | null;
}

/** The record of a refused row. */
export function quarantineRecord(item: QuarantinedRow): QuarantineRecord {
  const { row, refusal } = item;
  return {
    batch_id: item.batchId,
    time_ms: row.timeMs,
    symbol: row.symbol,
    price: row.price,
    day_volume: row.dayVolume,
    bid: row.bid,
    ask: row.ask,
    volume: row.volume,
    seq: row.seq,
    sqlstate: refusal.sqlstate,
    reason: refusal.reason,
    constraint_name: refusal.constraint,
    message: refusal.message,
    detail: refusal.detail,
  };
}

/**
 * Inserts records into `tickpipe_quarantine`, in order; a batch id already there is left
 * alone (a spool chunk drained twice). Returns the batch ids that were new.
 */
export async function insertQuarantine(
  sql: Sql,
  records: QuarantineRecord[],
): Promise<Set<string>> {
  if (records.length === 0) return new Set();
  const inserted = await sql<{ batch_id: string }[]>`
    INSERT INTO tickpipe_quarantine (batch_id, "time", symbol, price, day_volume, bid, ask,
      volume, seq, sqlstate, reason, constraint_name, message, detail)
    SELECT (e->>'batch_id')::uuid,
           timestamptz 'epoch' + (e->>'time_ms')::int8 * interval '1 millisecond',
           e->>'symbol', (e->>'price')::float8, (e->>'day_volume')::numeric,
           (e->>'bid')::float8, (e->>'ask')::float8, (e->>'volume')::numeric,
           (e->>'seq')::int8, e->>'sqlstate', e->>'reason', e->>'constraint_name',
           e->>'message', e->>'detail'
    FROM jsonb_array_elements(${JSON.stringify(records)}::text::jsonb) WITH ORDINALITY AS t(e, n)
    ORDER BY n
    ON CONFLICT (batch_id) DO NOTHING
    RETURNING batch_id`;
  return new Set(inserted.map((r) => r.batch_id));
}

/** Where quarantined rows go when the table cannot take them: `<spool root>/quarantine`. */
export function quarantineDir(spoolRoot: string): string {
  return join(spoolRoot, "quarantine");
}

/**
 * Writes records to `<dir>/<first batch id>.jsonl` (fsync'd, then renamed into place, so a
 * file is whole or absent; written again with the same content when a chunk is drained
 * twice). `deno task quarantine` moves them into the table. Returns the path.
 */
async function writeQuarantineFile(
  dir: string,
  records: QuarantineRecord[],
): Promise<string> {
  await Deno.mkdir(dir, { recursive: true });
  const path = join(dir, `${records[0]!.batch_id}.jsonl`);
  const tmp = `${path}.tmp`;
  const file = await Deno.open(tmp, { write: true, create: true, truncate: true });
  try {
    const text = records.map((r) => JSON.stringify(r)).join("\n") + "\n";
    const data = new TextEncoder().encode(text);
    let offset = 0;
    while (offset < data.length) offset += await file.write(data.subarray(offset));
    await file.sync();
  } finally {
    file.close();
  }
  await Deno.rename(tmp, path);
  return path;
}

/**
 * Stores refused rows, returning those that were new: in `tickpipe_quarantine`, or, when the
 * table refuses them too (it is
 * missing, a privilege, a value even it cannot hold), in files under `dir`. Throws when the
 * database is away for now (the caller retries), `QuarantineError` when neither works.
 */
export async function quarantine(
  sql: Sql,
  items: QuarantinedRow[],
  dir: string,
): Promise<{ added: QuarantinedRow[]; file?: string }> {
  const records = items.map(quarantineRecord);
  try {
    const added = await insertQuarantine(sql, records);
    return { added: items.filter((item) => added.has(item.batchId)) };
  } catch (error) {
    if (!isPermanent(error)) throw error;
    try {
      return { added: items, file: await writeQuarantineFile(dir, records) };
    } catch (fileError) {
      throw new QuarantineError(
        `Cannot quarantine ${records.length} refused rows: ${errorText(error)}; ` +
          `nor write them under ${dir}: ${(fileError as Error).message}`,
        { cause: fileError },
      );
    }
  }
}

/** Refused rows could be stored neither in the table nor in a file: they are lost. */
export class QuarantineError extends Error {
  override name = "QuarantineError";
}
