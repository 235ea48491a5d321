/**
 * The database's own figures for the rows of the end-to-end run, without tickpipe: one
 * COPY (`copy_ticks_per_s`) and 100-row INSERTs with a COMMIT each (`insert100_ticks_per_s`).
 */
import { Buffer } from "node:buffer";
import { Readable } from "node:stream";
import { pipeline as pipe } from "node:stream/promises";
import type { Sql } from "postgres";
import type { Database } from "../db/connection.ts";
import { countRows, scratchDatabase } from "./scratch.ts";

const MB = 1024 * 1024;
const COLUMNS = ["time", "symbol", "price", "day_volume", "bid", "ask", "volume", "seq"] as const;

/** A load of pre-built rows and its rate. */
export interface Load {
  rows: number;
  seconds: number;
  ticksPerS: number;
  verified: boolean;
}

/** The rows of `crypto_ticks` as COPY text, in ~1 MB chunks of whole lines. */
export async function readBack(sql: Sql): Promise<Buffer[]> {
  const chunks: Buffer[] = [];
  // One CopyData message per row: gathered into chunks.
  const readable = await sql`
    COPY (SELECT "time", symbol, price, day_volume, bid, ask, volume, seq FROM crypto_ticks)
    TO STDOUT`.readable();
  let pending: Buffer[] = [];
  let size = 0;
  for await (const chunk of readable) {
    pending.push(chunk as Buffer);
    size += (chunk as Buffer).length;
    if (size >= MB) {
      chunks.push(Buffer.concat(pending));
      pending = [];
      size = 0;
    }
  }
  if (pending.length > 0) chunks.push(Buffer.concat(pending));
  return chunks;
}

/**
 * Times `load` into a fresh, fully indexed `crypto_ticks` (database `label`), then checks
 * that it holds `expected` rows and no duplicate `(symbol, seq)`.
 */
async function timedLoad(
  admin: Database,
  label: string,
  expected: number,
  load: (sql: Sql) => Promise<void>,
): Promise<Load> {
  const db = await scratchDatabase(admin, label, 1);
  try {
    const started = performance.now();
    await load(db.sql);
    const seconds = (performance.now() - started) / 1000;
    const { rows, duplicates } = await countRows(db.sql);
    return {
      rows,
      seconds,
      ticksPerS: rows / seconds,
      verified: rows === expected && duplicates === 0,
    };
  } finally {
    await db.drop();
  }
}

/** `text` loaded with one `COPY ... FROM STDIN`. */
export function copyLoad(admin: Database, text: Buffer[], expected: number): Promise<Load> {
  return timedLoad(admin, "copy", expected, async (sql) => {
    const stream = await sql`
      COPY crypto_ticks ("time", symbol, price, day_volume, bid, ask, volume, seq) FROM STDIN`
      .writable();
    await pipe(Readable.from(text), stream);
  });
}

type TickRecord = Record<(typeof COLUMNS)[number], string | null>;

/** The first `limit` rows of COPY text as records (COPY escapes cannot occur in these columns). */
function parseCopyText(text: Buffer[], limit: number): TickRecord[] {
  const records: TickRecord[] = [];
  const value = (s: string | undefined) => s === undefined || s === "\\N" ? null : s;
  for (const chunk of text) {
    for (const line of chunk.toString("utf8").split("\n")) {
      if (line === "") continue;
      if (records.length >= limit) return records;
      const f = line.split("\t");
      records.push(Object.fromEntries(COLUMNS.map((c, i) => [c, value(f[i])])) as TickRecord);
    }
  }
  return records;
}

const INSERT_ROWS = 100;

/**
 * The first `limit` rows of `text` as 100-row multi-row INSERTs with bound parameters,
 * each in its own transaction (BEGIN, INSERT, COMMIT), into a fresh `crypto_ticks`: the
 * statement pattern of a simple batching ingester, with the rows already built.
 */
export function insert100Load(admin: Database, text: Buffer[], limit: number): Promise<Load> {
  const records = parseCopyText(text, limit);
  return timedLoad(admin, "insert100", records.length, async (sql) => {
    for (let i = 0; i < records.length; i += INSERT_ROWS) {
      const batch = records.slice(i, i + INSERT_ROWS);
      await sql.begin((tx) => tx`INSERT INTO crypto_ticks ${tx(batch, ...COLUMNS)}`);
    }
  });
}
