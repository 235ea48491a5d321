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
  reader: SegmentReader;
  /** The chunk `next` returned, until it is acknowledged. */
  current: Batch | undefined;
  /** Rows of this segment acknowledged so far. */
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

const READ_BLOCK = 128 * 1024;
const MAX_INTERNED = 10_000;

/** A copy of `text` that does not keep alive the larger string it was sliced from. */
function detached(text: string): string {
  return JSON.parse(JSON.stringify(text)) as string;
}

/** The number in `line` between `start` and `end`, null when empty. */
function field(line: string, start: number, end: number): number | null {
  return end === start ? null : Number(line.slice(start, end));
}

/**
 * Reads a segment one chunk at a time (a chunk is complete when the next header or the end
 * of the file is reached), so draining a spool holds one chunk and one read block in memory
 * rather than the whole segment. A torn last line (a crash mid-write: no newline) is skipped.
 */
class SegmentReader {
  #file: Deno.FsFile;
  #decoder = new TextDecoder();
  #block = new Uint8Array(READ_BLOCK);
  #symbols: Map<string, string>;
  #text = "";
  #pos = 0;
  #eof = false;
  #pending: Batch | undefined;
  /** Rows read so far. */
  rows = 0;
  /** True once the last chunk has been returned. */
  ended = false;

  private constructor(file: Deno.FsFile, symbols: Map<string, string>) {
    this.#file = file;
    this.#symbols = symbols;
  }

  /** Opens `path`; `symbols` interns symbol strings across readers. */
  static async open(path: string, symbols: Map<string, string>): Promise<SegmentReader> {
    return new SegmentReader(await Deno.open(path, { read: true }), symbols);
  }

  /** The next chunk with at least one row, or undefined at the end of the segment. */
  async next(): Promise<Batch | undefined> {
    while (!this.ended) {
      const nl = this.#text.indexOf("\n", this.#pos);
      if (nl === -1) {
        if (!this.#eof) {
          await this.#fill();
          continue;
        }
        this.ended = true;
        this.#text = "";
        const last = this.#pending;
        this.#pending = undefined;
        if (last && last.rows.length > 0) return last;
        return undefined;
      }
      const start = this.#pos;
      this.#pos = nl + 1;
      if (this.#text.charCodeAt(start) === 64 /* @ */) {
        const done = this.#pending;
        this.#pending = { id: detached(this.#text.slice(start + 1, nl)), rows: [], spooled: true };
        if (done && done.rows.length > 0) return done;
        continue;
      }
      if (this.#pending) this.#parseRow(this.#text.slice(start, nl), this.#pending.rows);
    }
    return undefined;
  }

  /** Closes the file (idempotent). */
  close(): void {
    try {
      this.#file.close();
    } catch {
      // Already closed.
    }
  }

  async #fill(): Promise<void> {
    const n = await this.#file.read(this.#block);
    const rest = this.#text.slice(this.#pos);
    this.#pos = 0;
    if (n === null) {
      this.#eof = true;
      this.#text = rest + this.#decoder.decode();
      this.close();
    } else {
      this.#text = rest + this.#decoder.decode(this.#block.subarray(0, n), { stream: true });
    }
  }

  #parseRow(line: string, into: Row[]): void {
    const t: number[] = [];
    let at = line.indexOf("\t");
    while (at !== -1 && t.length < 8) {
      t.push(at);
      at = line.indexOf("\t", at + 1);
    }
    if (t.length !== 7) return;
    const timeMs = Number(line.slice(0, t[0]));
    const price = Number(line.slice(t[1]! + 1, t[2]));
    const seq = Number(line.slice(t[6]! + 1));
    if (!Number.isFinite(timeMs) || !Number.isFinite(price) || !Number.isFinite(seq)) return;
    const raw = line.slice(t[0]! + 1, t[1]);
    let symbol = this.#symbols.get(raw);
    if (symbol === undefined) {
      if (this.#symbols.size >= MAX_INTERNED) this.#symbols.clear();
      symbol = detached(raw);
      this.#symbols.set(symbol, symbol);
    }
    into.push({
      timeMs,
      symbol,
      price,
      dayVolume: field(line, t[2]! + 1, t[3]!),
      bid: field(line, t[3]! + 1, t[4]!),
      ask: field(line, t[4]! + 1, t[5]!),
      volume: field(line, t[5]! + 1, t[6]!),
      seq,
      receivedAt: NaN,
    });
    this.rows++;
  }
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
  #symbols = new Map<string, string>();
  #active: { file: Deno.FsFile; path: string; rows: number; bytes: number } | undefined;
  /** Write buffer: lines are copied in as bytes (no string concatenation to flatten later). */
  #buf = new Uint8Array(WRITE_THRESHOLD + 64 * 1024);
  #fill = 0;
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
      const { size } = await Deno.stat(path);
      const reader = await SegmentReader.open(path, spool.#symbols);
      try {
        for (let chunk = await reader.next(); chunk; chunk = await reader.next()) {
          if (options.onLeftoverRow) { for (const row of chunk.rows) options.onLeftoverRow(row); }
        }
      } finally {
        reader.close();
      }
      if (reader.rows === 0) {
        await Deno.remove(path);
        continue;
      }
      spool.#sealed.push({ path, rows: reader.rows, bytes: size });
      spool.#rows += reader.rows;
      spool.#bytes += size;
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
      this.#put("@" + crypto.randomUUID() + "\n");
      this.#chunkFill = 0;
    }
    this.#put(line);
    this.#chunkFill++;
    active.rows++;
    active.bytes += size;
    this.#rows++;
    this.#bytes += size;
    if (this.#fill >= WRITE_THRESHOLD) this.#writeBuffer();
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
    this.#put(text);
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
   * Segments are read chunk by chunk: only the chunk handed out is held in memory.
   */
  async next(): Promise<Batch | undefined> {
    while (true) {
      const reading = this.#reading;
      if (reading) {
        if (reading.current) return reading.current;
        const chunk = await reading.reader.next();
        if (chunk) return (reading.current = chunk);
        await this.#finishSegment();
        continue;
      }
      if (this.#sealed.length === 0) {
        if (!this.#active || this.#active.rows === 0) return undefined;
        this.#seal();
      }
      const segment = this.#sealed[0]!;
      const reader = await SegmentReader.open(segment.path, this.#symbols);
      this.#sealed.shift();
      this.#reading = { ...segment, reader, current: undefined, acked: 0 };
    }
  }

  /** Marks the chunk `next` returned as written; removes its segment once all are. */
  async ack(batch: Batch): Promise<void> {
    const reading = this.#reading;
    if (!reading || reading.current !== batch) {
      throw new TypeError("Cannot acknowledge a spool chunk out of order");
    }
    reading.current = undefined;
    reading.acked += batch.rows.length;
    this.#rows -= batch.rows.length;
    if (reading.reader.ended) await this.#finishSegment();
  }

  /** Rows of the spool currently held in memory (the chunk handed out by `next`). */
  get rowsInMemory(): number {
    return this.#reading?.current?.rows.length ?? 0;
  }

  async #finishSegment(): Promise<void> {
    const reading = this.#reading!;
    reading.reader.close();
    // Rows a torn line lost are no longer counted anywhere.
    this.#rows -= reading.rows - reading.acked;
    this.#bytes -= reading.bytes;
    this.#reading = undefined;
    await Deno.remove(reading.path);
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
    this.#reading?.reader.close();
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
    if (!this.#active || this.#fill === 0) return;
    writeAllSync(this.#active.file, this.#buf.subarray(0, this.#fill));
    this.#fill = 0;
  }

  /** Copies `text` into the write buffer (ASCII byte by byte, anything else encoded). */
  #put(text: string): void {
    if (this.#fill + text.length * 3 > this.#buf.length) {
      this.#writeBuffer();
      if (text.length * 3 > this.#buf.length) {
        writeAllSync(this.#active!.file, encoder.encode(text));
        return;
      }
    }
    const buf = this.#buf;
    let at = this.#fill;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c > 127) {
        at += encoder.encodeInto(text.slice(i), buf.subarray(at)).written;
        break;
      }
      buf[at++] = c;
    }
    this.#fill = at;
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
