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

/** Bound on the symbols a reader interns or a writer keeps as bytes. */
const MAX_INTERNED = 10_000;
const TAB = 9;
const NEWLINE = 10;

/**
 * Copies `row`'s line (the bytes of `rowLine`) into `buf` at `at`, field by field: whole
 * numbers digit by digit, symbols as bytes encoded once (cached in `symbolBytes`), no line
 * string built. No bounds check: the caller leaves room (symbols are at most 32 characters).
 * Returns the position after it.
 */
export function putRow(
  buf: Uint8Array,
  at: number,
  r: Row,
  symbolBytes: Map<string, Uint8Array>,
): number {
  at = putNumber(buf, at, r.timeMs);
  buf[at++] = TAB;
  let symbol = symbolBytes.get(r.symbol);
  if (symbol === undefined) {
    if (symbolBytes.size >= MAX_INTERNED) symbolBytes.clear();
    symbol = encoder.encode(r.symbol);
    symbolBytes.set(r.symbol, symbol);
  }
  buf.set(symbol, at);
  at += symbol.length;
  buf[at++] = TAB;
  at = putNumber(buf, at, r.price);
  buf[at++] = TAB;
  if (r.dayVolume !== null) at = putNumber(buf, at, r.dayVolume);
  buf[at++] = TAB;
  if (r.bid !== null) at = putNumber(buf, at, r.bid);
  buf[at++] = TAB;
  if (r.ask !== null) at = putNumber(buf, at, r.ask);
  buf[at++] = TAB;
  if (r.volume !== null) at = putNumber(buf, at, r.volume);
  buf[at++] = TAB;
  at = putNumber(buf, at, r.seq);
  buf[at++] = NEWLINE;
  return at;
}

/**
 * `String(n)` as bytes at `at`; a whole number below 2^53 without making the string, in
 * two halves of at most 8 digits (small-integer arithmetic: twice as fast as one loop).
 */
function putNumber(buf: Uint8Array, at: number, n: number): number {
  if (!(n >= 0 && n <= Number.MAX_SAFE_INTEGER && Math.floor(n) === n)) {
    return putText(buf, at, String(n));
  }
  if (n < 1e8) return putDigits(buf, at, n, 1);
  const high = Math.floor(n / 1e8); // below 1e8, as n < 2^53
  return putDigits(buf, putDigits(buf, at, high, 1), n - high * 1e8, 8);
}

/** The digits of `n` (a whole number below 1e8) at `at`, left-padded with 0 to `width`. */
function putDigits(buf: Uint8Array, at: number, n: number, width: number): number {
  let digits = 1;
  for (let x = n; x >= 10; x = (x / 10) | 0) digits++;
  for (; digits < width; width--) buf[at++] = 48;
  const end = at + digits;
  let pos = end;
  let x = n;
  do {
    const q = (x / 10) | 0;
    buf[--pos] = 48 + (x - q * 10);
    x = q;
  } while (x > 0);
  return end;
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

const HEADER_RE = /^@[0-9a-f-]{36}$/;

/** A copy of `text` that does not keep alive the larger string it was sliced from. */
function detached(text: string): string {
  return JSON.parse(JSON.stringify(text)) as string;
}

/** The number in `text` between `start` and `end`, null when empty. */
function field(text: string, start: number, end: number): number | null {
  if (end === start) return null;
  const value = Number(text.slice(start, end));
  return Number.isFinite(value) ? value : NaN;
}

/** The tab in `text` after `from` and before `end`, -1 when none. */
function tab(text: string, from: number, end: number): number {
  const at = text.indexOf("\t", from);
  return at < end ? at : -1;
}

/**
 * Parses the row line `text[start, end)` (without its "\n"); undefined when it is not one
 * (corrupt). `symbols` interns symbol strings, so rows read back share them.
 */
function parseRow(
  text: string,
  start: number,
  end: number,
  symbols?: Map<string, string>,
): Row | undefined {
  const t0 = tab(text, start, end);
  const t1 = t0 === -1 ? -1 : tab(text, t0 + 1, end);
  const t2 = t1 === -1 ? -1 : tab(text, t1 + 1, end);
  const t3 = t2 === -1 ? -1 : tab(text, t2 + 1, end);
  const t4 = t3 === -1 ? -1 : tab(text, t3 + 1, end);
  const t5 = t4 === -1 ? -1 : tab(text, t4 + 1, end);
  const t6 = t5 === -1 ? -1 : tab(text, t5 + 1, end);
  if (t6 === -1 || tab(text, t6 + 1, end) !== -1) return undefined;
  const timeMs = Number(text.slice(start, t0));
  const price = Number(text.slice(t1 + 1, t2));
  const seq = Number(text.slice(t6 + 1, end));
  if (!Number.isSafeInteger(timeMs) || !Number.isFinite(price) || !Number.isSafeInteger(seq)) {
    return undefined;
  }
  if (t1 === t0 + 1) return undefined;
  let symbol = symbols?.get(text.slice(t0 + 1, t1));
  if (symbol === undefined) {
    symbol = detached(text.slice(t0 + 1, t1));
    if (symbols) {
      if (symbols.size >= MAX_INTERNED) symbols.clear();
      symbols.set(symbol, symbol);
    }
  }
  const row: Row = {
    timeMs,
    symbol,
    price,
    dayVolume: field(text, t2 + 1, t3),
    bid: field(text, t3 + 1, t4),
    ask: field(text, t4 + 1, t5),
    volume: field(text, t5 + 1, t6),
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
    const row = parseRow(line, 0, line.length);
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
    const row = current ? parseRow(line, 0, line.length) : undefined;
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
      const row = this.#pending ? parseRow(this.#text, start, nl, this.#symbols) : undefined;
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
