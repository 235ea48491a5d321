import type { Batch, Row } from "./batch.ts";

/**
 * The spool's text format: a chunk is a header line `@<batch id>` followed by its rows, one
 * per line, tab-separated in the COPY column order, empty for null. Every line ends in "\n":
 * a last line without one was torn by a crash mid-write.
 */

/** The spool's line for one row. */
export function rowLine(r: Row): string {
  return r.timeMs + "\t" + r.symbol + "\t" + r.price + "\t" + (r.dayVolume ?? "") + "\t" +
    (r.bid ?? "") + "\t" + (r.ask ?? "") + "\t" + (r.volume ?? "") + "\t" + r.seq + "\n";
}

const encoder = new TextEncoder();

/**
 * Copies `text` into `buf` at `at` (ASCII byte by byte, anything else encoded), without a
 * bounds check: the caller leaves room. Returns the position after it.
 */
export function putText(buf: Uint8Array, at: number, text: string): number {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c > 127) return at + encoder.encodeInto(text.slice(i), buf.subarray(at)).written;
    buf[at++] = c;
  }
  return at;
}

/** A chunk's header line. */
export function headerLine(id: string): string {
  return "@" + id + "\n";
}

/** A whole chunk: header and rows. */
export function chunkText(batch: { id: string; rows: Row[] }): string {
  let text = headerLine(batch.id);
  for (const row of batch.rows) text += rowLine(row);
  return text;
}

/** Segment file names: `seg-<12 digits>.tsv`, read in name order. */
export const SEGMENT_RE = /^seg-(\d{12})\.tsv$/;
/** The first segment number (room below it for files that must sort first). */
export const FIRST_SEGMENT = 1_000_000_000;

/** The file name of segment number `n`. */
export function segmentName(n: number): string {
  return `seg-${String(n).padStart(12, "0")}.tsv`;
}

const MAX_INTERNED = 10_000;
const HEADER_RE = /^@[0-9a-f-]{36}$/;

/** A copy of `text` that does not keep alive the larger string it was sliced from. */
function detached(text: string): string {
  return JSON.parse(JSON.stringify(text)) as string;
}

/** The number in `line` between `start` and `end`, null when empty. */
function field(line: string, start: number, end: number): number | null {
  if (end === start) return null;
  const value = Number(line.slice(start, end));
  return Number.isFinite(value) ? value : NaN;
}

/**
 * Parses one row line (without its "\n"); undefined when it is not one (corrupt). `symbols`
 * interns symbol strings, so rows read back share them.
 */
function parseRow(line: string, symbols?: Map<string, string>): Row | undefined {
  const t: number[] = [];
  let at = line.indexOf("\t");
  while (at !== -1 && t.length < 8) {
    t.push(at);
    at = line.indexOf("\t", at + 1);
  }
  if (t.length !== 7) return undefined;
  const timeMs = Number(line.slice(0, t[0]));
  const price = Number(line.slice(t[1]! + 1, t[2]));
  const seq = Number(line.slice(t[6]! + 1));
  if (!Number.isSafeInteger(timeMs) || !Number.isFinite(price) || !Number.isSafeInteger(seq)) {
    return undefined;
  }
  const raw = line.slice(t[0]! + 1, t[1]);
  if (raw === "") return undefined;
  let symbol = symbols?.get(raw);
  if (symbol === undefined) {
    symbol = detached(raw);
    if (symbols) {
      if (symbols.size >= MAX_INTERNED) symbols.clear();
      symbols.set(symbol, symbol);
    }
  }
  const row: Row = {
    timeMs,
    symbol,
    price,
    dayVolume: field(line, t[2]! + 1, t[3]!),
    bid: field(line, t[3]! + 1, t[4]!),
    ask: field(line, t[4]! + 1, t[5]!),
    volume: field(line, t[5]! + 1, t[6]!),
    seq,
    receivedAt: NaN,
  };
  if (
    Number.isNaN(row.dayVolume) || Number.isNaN(row.bid) || Number.isNaN(row.ask) ||
    Number.isNaN(row.volume)
  ) {
    return undefined;
  }
  return row;
}

/** The rows in spool text that may start mid-chunk (headers and bad lines skipped). */
export function parseRows(text: string): Row[] {
  const rows: Row[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.charCodeAt(0) === 64 /* @ */) continue;
    const row = parseRow(line);
    if (row) rows.push(row);
  }
  return rows;
}

/** What a reader skipped: a torn last line (a crash mid-write) and corrupt lines. */
export interface Damage {
  /** Row lines cut short at the end of a file (lost in a crash). */
  torn: number;
  /** Lines that are neither a header nor a row, or rows before any header. */
  corrupt: number;
}

/** Splits spool text (whole lines) into chunks; a chunk without rows is left out. */
export function parseChunks(text: string, damage?: Damage): Batch[] {
  const chunks: Batch[] = [];
  let current: Batch | undefined;
  let pos = 0;
  while (pos < text.length) {
    let nl = text.indexOf("\n", pos);
    const torn = nl === -1;
    if (torn) nl = text.length;
    const line = text.slice(pos, nl);
    pos = nl + 1;
    if (torn) {
      if (damage && line.charCodeAt(0) !== 64 /* @ */) damage.torn++;
      break;
    }
    if (HEADER_RE.test(line)) {
      current = { id: line.slice(1), rows: [], spooled: true };
      chunks.push(current);
      continue;
    }
    const row = current ? parseRow(line) : undefined;
    if (row) current!.rows.push(row);
    else if (damage && line !== "") damage.corrupt++;
  }
  return chunks.filter((c) => c.rows.length > 0);
}

const READ_BLOCK = 128 * 1024;

/**
 * Reads a segment one chunk at a time (a chunk is complete when the next header or the end
 * of the file is reached), so draining a spool holds one chunk and one read block in memory
 * rather than the whole segment. A torn last line (a crash mid-write: no newline) and corrupt
 * lines are skipped and counted in `damage`.
 */
export class SegmentReader {
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
  /** Lines skipped so far. */
  readonly damage: Damage = { torn: 0, corrupt: 0 };
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
        if (this.#pos < this.#text.length && this.#text.charCodeAt(this.#pos) !== 64) {
          this.damage.torn++;
        }
        this.#text = "";
        const last = this.#pending;
        this.#pending = undefined;
        if (last && last.rows.length > 0) return last;
        return undefined;
      }
      const start = this.#pos;
      this.#pos = nl + 1;
      if (this.#text.charCodeAt(start) === 64 /* @ */) {
        const line = this.#text.slice(start, nl);
        if (!HEADER_RE.test(line)) {
          this.damage.corrupt++;
          continue;
        }
        const done = this.#pending;
        this.#pending = { id: detached(line.slice(1)), rows: [], spooled: true };
        if (done && done.rows.length > 0) return done;
        continue;
      }
      const row = this.#pending ? parseRow(this.#text.slice(start, nl), this.#symbols) : undefined;
      if (row) {
        this.#pending!.rows.push(row);
        this.rows++;
      } else if (nl > start) {
        this.damage.corrupt++;
      }
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
}
