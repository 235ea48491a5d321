/**
 * One `crypto_ticks` row, final: `seq` and `volume` are assigned once, when the tick is
 * accepted (`TickSequencer`), so a retried or spooled batch writes identical rows.
 */
export interface Row {
  timeMs: number;
  symbol: string;
  price: number;
  dayVolume: number | null;
  bid: number | null;
  ask: number | null;
  /** This tick's own traded volume (null without a day volume). */
  volume: number | null;
  /** Microseconds since epoch plus the arrival ordinal within the timestamp. */
  seq: number;
  /**
   * When the pipeline accepted the tick (`performance.now()`), for tick→commit latency;
   * NaN for rows read back from the spool (another process's clock, or this one's restarted).
   */
  receivedAt: number;
}

/** A group of rows written in one transaction under one id (`tickpipe_batches.batch_id`). */
export interface Batch {
  id: string;
  rows: Row[];
  /** True when read back from the on-disk spool. */
  spooled: boolean;
  /** When its first row arrived (`performance.now()`), for memory batches. */
  bornAt?: number;
  /**
   * True for a memory batch also written to the spool while it was being written to the
   * database: the spool's copy (same id) is what counts; this one is only a cache.
   */
  spilled?: boolean;
}

/** A new batch with a fresh id. */
export function newBatch(rows: Row[], bornAt?: number): Batch {
  return { id: crypto.randomUUID(), rows, spooled: false, bornAt };
}

const encoder = new TextEncoder();

/**
 * The id of rows `start`..`end` (exclusive) of batch `parentId`: a UUID (version 8, from
 * SHA-256) that depends only on those three values, so splitting the same batch again (a
 * spool chunk drained twice) gives the same ids and `tickpipe_batches` recognises them.
 */
export async function subBatchId(parentId: string, start: number, end: number): Promise<string> {
  const digest = await crypto.subtle.digest(
    "SHA-256",
    encoder.encode(`${parentId}:${start}-${end}`),
  );
  const b = new Uint8Array(digest).slice(0, 16);
  b[6] = (b[6]! & 0x0f) | 0x80;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const hex = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${
    hex.slice(20)
  }`;
}
