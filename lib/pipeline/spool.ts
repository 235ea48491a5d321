import { join } from "node:path";
import { type Logger, silentLogger } from "../log.ts";
import type { Batch } from "./batch.ts";
import type { Row } from "./sequencer.ts";

/** Settings of `Spool.open`. */
export interface SpoolOptions {
  /** Bound on the spool's total size on disk (default 1 GiB); beyond it `append` refuses. */
  maxBytes?: number;
  /** A segment is sealed (fsync'd, closed) at this size (default 16 MiB). */
  segmentBytes?: number;
  /** Rows per chunk; each chunk is written as one batch when drained (default 5000). */
  chunkRows?: number;
  /** Called for every row of a leftover spool found at open, oldest first. */
  onLeftoverRow?: (row: Row) => void;
  logger?: Logger;
}

interface Segment {
  path: string;
  rows: number;
  bytes: number;
}

interface ReadingSegment extends Segment {
  chunks: Batch[];
  acked: number;
}

const SEGMENT_RE = /^seg-(\d{12})\.tsv$/;
const WRITE_THRESHOLD = 256 * 1024;
// Segment numbers start high, leaving room below for `prependBatches`.
const FIRST_SEGMENT = 1_000_000_000;
const encoder = new TextEncoder();

/** The spool's line for one row: tab-separated, empty for null (the COPY column order). */
function rowLine(r: Row): string {
  return r.timeMs + "\t" + r.symbol + "\t" + r.price + "\t" + (r.dayVolume ?? "") + "\t" +
    (r.bid ?? "") + "\t" + (r.ask ?? "") + "\t" + (r.volume ?? "") + "\t" + r.seq + "\n";
}

function num(field: string | undefined): number | null {
  return field === undefined || field === "" ? null : Number(field);
}

/** Parses a segment's text into its chunks; a torn last line (a crash mid-write) is skipped. */
function parseSegment(text: string): Batch[] {
  const chunks: Batch[] = [];
  let current: Batch | undefined;
  for (const line of text.split("\n")) {
    if (line.startsWith("@")) {
      current = { id: line.slice(1), rows: [], spooled: true };
      chunks.push(current);
      continue;
    }
    const f = line.split("\t");
    if (f.length !== 8 || !current) continue;
    const timeMs = Number(f[0]);
    const price = Number(f[2]);
    const seq = Number(f[7]);
    if (!Number.isFinite(timeMs) || !Number.isFinite(price) || !Number.isFinite(seq)) continue;
    current.rows.push({
      timeMs,
      symbol: f[1]!,
      price,
      dayVolume: num(f[3]),
      bid: num(f[4]),
      ask: num(f[5]),
      volume: num(f[6]),
      seq,
      receivedAt: NaN,
    });
  }
  return chunks.filter((c) => c.rows.length > 0);
}

function writeAllSync(file: Deno.FsFile, data: Uint8Array): void {
  let offset = 0;
  while (offset < data.length) offset += file.writeSync(data.subarray(offset));
}

/**
 * A bounded on-disk queue of sequenced rows under one directory: append-only segment files
 * of tab-separated lines, grouped in chunks that each carry a batch id, so a chunk drained
 * twice (a crash between its COMMIT and the segment's removal) is recognised by
 * `tickpipe_batches`. Appends are synchronous and buffered; a segment is fsync'd when sealed.
 * Read order is append order.
 */
export class Spool {
  readonly dir: string;
  #maxBytes: number;
  #segmentBytes: number;
  #chunkRows: number;
  #logger: Logger;
  #sealed: Segment[] = [];
  #reading: ReadingSegment | undefined;
  #active: { file: Deno.FsFile; path: string; rows: number; bytes: number } | undefined;
  #buf = "";
  #chunkFill = 0;
  #counter = FIRST_SEGMENT - 1;
  #rows = 0;
  #bytes = 0;
  #closed = false;

  private constructor(dir: string, options: SpoolOptions) {
    this.dir = dir;
    this.#maxBytes = options.maxBytes ?? 1024 ** 3;
    this.#segmentBytes = options.segmentBytes ?? 16 * 1024 ** 2;
    this.#chunkRows = options.chunkRows ?? 5000;
    this.#logger = options.logger ?? silentLogger;
    if (!(this.#segmentBytes > 0) || !(this.#maxBytes > 0) || !(this.#chunkRows > 0)) {
      throw new RangeError("Cannot open the spool: sizes must be positive");
    }
  }

  /** Opens (creating) the spool in `dir` and takes stock of what a previous run left. */
  static async open(dir: string, options: SpoolOptions = {}): Promise<Spool> {
    const spool = new Spool(dir, options);
    await Deno.mkdir(dir, { recursive: true });
    const names: string[] = [];
    for await (const entry of Deno.readDir(dir)) {
      if (entry.isFile && SEGMENT_RE.test(entry.name)) names.push(entry.name);
    }
    names.sort();
    for (const name of names) {
      const path = join(dir, name);
      spool.#counter = Math.max(spool.#counter, Number(SEGMENT_RE.exec(name)![1]));
      const text = await Deno.readTextFile(path);
      const chunks = parseSegment(text);
      let rows = 0;
      for (const chunk of chunks) {
        rows += chunk.rows.length;
        if (options.onLeftoverRow) { for (const row of chunk.rows) options.onLeftoverRow(row); }
      }
      if (rows === 0) {
        await Deno.remove(path);
        continue;
      }
      spool.#sealed.push({ path, rows, bytes: text.length });
      spool.#rows += rows;
      spool.#bytes += text.length;
    }
    if (spool.#rows > 0) {
      spool.#logger.info(
        `Found ${
          spool.#rows.toLocaleString("en-US")
        } spooled ticks from a previous run; draining them first`,
        { dir, segments: spool.#sealed.length },
      );
    }
    return spool;
  }

  /** Rows waiting on disk (or in the write buffer). */
  get rows(): number {
    return this.#rows;
  }

  /** Bytes the spool occupies, counting the write buffer. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Appends one row; false when the spool is full (the caller counts the drop). */
  append(row: Row): boolean {
    if (this.#closed) throw new TypeError("Cannot append to a closed spool");
    const line = rowLine(row);
    let size = line.length;
    const header = this.#chunkFill === 0 || this.#chunkFill >= this.#chunkRows;
    if (header) size += 38;
    if (this.#bytes + size > this.#maxBytes) return false;
    const active = this.#active ?? this.#openActive();
    if (header) {
      this.#buf += "@" + crypto.randomUUID() + "\n";
      this.#chunkFill = 0;
    }
    this.#buf += line;
    this.#chunkFill++;
    active.rows++;
    active.bytes += size;
    this.#rows++;
    this.#bytes += size;
    if (this.#buf.length >= WRITE_THRESHOLD) this.#writeBuffer();
    if (active.bytes >= this.#segmentBytes) this.#seal();
    return true;
  }

  /** Appends a whole batch under its own id (to persist unwritten batches at shutdown). */
  appendBatch(batch: Batch): boolean {
    if (this.#closed) throw new TypeError("Cannot append to a closed spool");
    let text = "@" + batch.id + "\n";
    for (const row of batch.rows) text += rowLine(row);
    if (this.#bytes + text.length > this.#maxBytes) return false;
    const active = this.#active ?? this.#openActive();
    this.#buf += text;
    this.#chunkFill = 0;
    active.rows += batch.rows.length;
    active.bytes += text.length;
    this.#rows += batch.rows.length;
    this.#bytes += text.length;
    this.#writeBuffer();
    if (active.bytes >= this.#segmentBytes) this.#seal();
    return true;
  }

  /**
   * Persists `batches` (under their own ids) ahead of everything spooled, for rows that were
   * held in memory, hence older than the spool's, when the pipeline stops. Call before
   * `close`; returns false (writing nothing) when they do not fit.
   */
  prependBatches(batches: Batch[]): boolean {
    if (this.#closed) throw new TypeError("Cannot append to a closed spool");
    if (batches.length === 0) return true;
    let text = "";
    let rows = 0;
    for (const batch of batches) {
      text += "@" + batch.id + "\n";
      for (const row of batch.rows) text += rowLine(row);
      rows += batch.rows.length;
    }
    if (this.#bytes + text.length > this.#maxBytes) return false;
    let lowest = FIRST_SEGMENT;
    for (const entry of Deno.readDirSync(this.dir)) {
      const match = SEGMENT_RE.exec(entry.name);
      if (match) lowest = Math.min(lowest, Number(match[1]));
    }
    const path = join(this.dir, `seg-${String(lowest - 1).padStart(12, "0")}.tsv`);
    const file = Deno.openSync(path, { write: true, createNew: true });
    try {
      writeAllSync(file, encoder.encode(text));
      file.syncSync();
    } finally {
      file.close();
    }
    this.#sealed.unshift({ path, rows, bytes: text.length });
    this.#rows += rows;
    this.#bytes += text.length;
    return true;
  }

  /**
   * The oldest chunk not yet acknowledged, or undefined when the spool is empty. Returns the
   * same chunk until it is acknowledged. Seals the active segment when it is all that is left.
   */
  async next(): Promise<Batch | undefined> {
    if (!this.#reading) {
      if (this.#sealed.length === 0) {
        if (!this.#active || this.#active.rows === 0) return undefined;
        this.#seal();
      }
      const segment = this.#sealed[0]!;
      const chunks = parseSegment(await Deno.readTextFile(segment.path));
      this.#sealed.shift();
      this.#reading = { ...segment, chunks, acked: 0 };
    }
    return this.#reading.chunks[this.#reading.acked];
  }

  /** Marks the chunk `next` returned as written; removes its segment once all are. */
  async ack(batch: Batch): Promise<void> {
    const reading = this.#reading;
    if (!reading || reading.chunks[reading.acked] !== batch) {
      throw new TypeError("Cannot acknowledge a spool chunk out of order");
    }
    reading.acked++;
    this.#rows -= batch.rows.length;
    if (reading.acked === reading.chunks.length) {
      // Rows a torn line lost are no longer counted anywhere.
      this.#rows -= reading.rows - reading.chunks.reduce((n, c) => n + c.rows.length, 0);
      this.#bytes -= reading.bytes;
      this.#reading = undefined;
      await Deno.remove(reading.path);
    }
  }

  /** Sets a batch the database refuses aside in `failed/` with the reason, instead of retrying forever. */
  async quarantine(batch: Batch, reason: string): Promise<string> {
    const dir = join(this.dir, "failed");
    await Deno.mkdir(dir, { recursive: true });
    const path = join(dir, `${batch.id}.tsv`);
    const file = await Deno.open(path, { write: true, create: true, truncate: true });
    try {
      let text = `# ${reason.replaceAll("\n", " ")}\n@${batch.id}\n`;
      for (const row of batch.rows) text += rowLine(row);
      writeAllSync(file, encoder.encode(text));
      await file.sync();
    } finally {
      file.close();
    }
    return path;
  }

  /** Writes the buffer out, fsyncs and closes the active segment; nothing is lost. */
  close(): void {
    if (this.#closed) return;
    if (this.#active) this.#seal();
    this.#closed = true;
  }

  #openActive() {
    const path = join(this.dir, `seg-${String(++this.#counter).padStart(12, "0")}.tsv`);
    const file = Deno.openSync(path, { write: true, create: true, append: true });
    this.#active = { file, path, rows: 0, bytes: 0 };
    this.#chunkFill = 0;
    return this.#active;
  }

  #writeBuffer(): void {
    if (!this.#active || this.#buf.length === 0) return;
    writeAllSync(this.#active.file, encoder.encode(this.#buf));
    this.#buf = "";
  }

  #seal(): void {
    const active = this.#active;
    if (!active) return;
    this.#writeBuffer();
    active.file.syncSync();
    active.file.close();
    this.#active = undefined;
    this.#chunkFill = 0;
    if (active.rows > 0) {
      this.#sealed.push({ path: active.path, rows: active.rows, bytes: active.bytes });
    } else {
      Deno.removeSync(active.path);
    }
  }
}
