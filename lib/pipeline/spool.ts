import { join } from "node:path";
import { type Logger, silentLogger } from "../log.ts";
import type { Batch, Row } from "./batch.ts";
import {
  chunkText,
  FIRST_SEGMENT,
  headerLine,
  parseRows,
  putRow,
  putText,
  SEGMENT_RE,
  segmentName,
} from "./spool_format.ts";
import { type Segment, SegmentQueue } from "./spool_queue.ts";
import { closeQuietly, removeQuietly, syncDir, syncDirSync, writeAllSync } from "./files.ts";
import { errorText, formatCount } from "../text.ts";

/** Settings of `Spool.open`. */
export interface SpoolOptions {
  /** Bound on the spool's total size on disk (default 1 GiB); beyond it `append` refuses. */
  maxBytes?: number;
  /** A segment is sealed (no more appends; read once its turn comes) at this size (16 MiB). */
  segmentBytes?: number;
  /** Rows per chunk; each chunk is written as one batch when drained (default 5000). */
  chunkRows?: number;
  /** The write buffer is written out (write(2)) when it reaches this size (default 64 KiB). */
  bufferBytes?: number;
  /** Called for every row of a leftover spool found at open, oldest first. */
  onLeftoverRow?: (row: Row) => void;
  /** Called for every chunk read back for writing, before `next` hands it out. */
  onChunkRead?: (chunk: Batch) => void;
  /** A lock the spool holds for its lifetime (see `acquireSlot`), released by `close`. */
  lock?: Deno.FsFile;
  logger?: Logger;
  /**
   * Runs before every write to a spool file; what it throws is taken as the write's error.
   * For machines where a genuinely full filesystem cannot be set up (tests).
   */
  beforeWrite?: () => void;
}

/** Why the spool cannot be written to, and since when (epoch ms). */
export interface SpoolFault {
  error: string;
  since: number;
}

interface ActiveSegment extends Segment {
  file: Deno.FsFile;
  /** Bytes on disk (the rest of `bytes` is in the write buffer). */
  written: number;
}

const PROBE_BYTES = 4096;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * A bounded on-disk queue of sequenced rows in one directory (a slot, see `acquireSlot`):
 * append-only segment files of chunks that each carry a batch id, so a chunk drained twice
 * (a crash between its COMMIT and the segment's removal) is recognised by
 * `tickpipe_batches`. Appends go to a write buffer that `flush` writes out (write(2)) and
 * `sync` fsyncs; the owner calls both on a short timer. A failed write (a full or read-only
 * disk) cuts the file back to its last whole line, hands the buffered rows back
 * (`onReturn`) and sets `fault` until `probe` finds the directory writable again.
 * Read order is append order.
 */
export class Spool {
  readonly dir: string;
  #maxBytes: number;
  #segmentBytes: number;
  #chunkRows: number;
  #bufferBytes: number;
  #logger: Logger;
  #lock: Deno.FsFile | undefined;
  #beforeWrite: (() => void) | undefined;
  #queue: SegmentQueue;
  #active: ActiveSegment | undefined;
  #buf: Uint8Array;
  #fill = 0;
  #bufRows = 0;
  /** Symbols as bytes, encoded once, for `putRow`. */
  #symbolBytes = new Map<string, Uint8Array>();
  #chunkFill = 0;
  #counter = FIRST_SEGMENT - 1;
  #closed = false;
  #dirty = false;
  #newSegment = false;
  /** Sealed (or abandoned) segments written since the last fsync, open until it is done. */
  #unsynced: Deno.FsFile[] = [];
  #syncing: Promise<void> | undefined;
  #fault: SpoolFault | undefined;
  #onReturn: (rows: Row[]) => void = () => {};
  /** Ticks lost in a crash: torn or corrupt lines found in leftover segments at open. */
  lostInCrash = 0;

  private constructor(dir: string, options: SpoolOptions) {
    this.dir = dir;
    this.#maxBytes = options.maxBytes ?? 1024 ** 3;
    this.#segmentBytes = options.segmentBytes ?? 16 * 1024 ** 2;
    this.#chunkRows = options.chunkRows ?? 5000;
    this.#bufferBytes = options.bufferBytes ?? 64 * 1024;
    this.#logger = options.logger ?? silentLogger;
    this.#lock = options.lock;
    this.#beforeWrite = options.beforeWrite;
    if (!(this.#segmentBytes > 0) || !(this.#maxBytes > 0) || !(this.#chunkRows > 0)) {
      throw new RangeError("Cannot open the spool: sizes must be positive");
    }
    this.#buf = new Uint8Array(this.#bufferBytes + 64 * 1024);
    this.#queue = new SegmentQueue(this.#logger, options.onChunkRead);
  }

  /**
   * Opens (creating) the spool in `dir`, takes stock of what a previous run left (torn and
   * corrupt lines are skipped and counted in `lostInCrash`) and checks that it can write
   * there: when it cannot, `fault` says why and nothing is appended until `probe` succeeds.
   */
  static async open(dir: string, options: SpoolOptions = {}): Promise<Spool> {
    const spool = new Spool(dir, options);
    await Deno.mkdir(dir, { recursive: true });
    const names: string[] = [];
    for await (const entry of Deno.readDir(dir)) {
      if (entry.isFile && SEGMENT_RE.test(entry.name)) names.push(entry.name);
    }
    names.sort();
    for (const name of names) {
      spool.#counter = Math.max(spool.#counter, Number(SEGMENT_RE.exec(name)![1]));
      const damage = await spool.#queue.takeStock(join(dir, name), options.onLeftoverRow);
      spool.lostInCrash += damage.torn + damage.corrupt;
    }
    if (spool.rows > 0 || spool.lostInCrash > 0) {
      const lost = spool.lostInCrash > 0
        ? `; ${formatCount(spool.lostInCrash)} lost in a crash (torn or corrupt lines skipped)`
        : "";
      (spool.lostInCrash > 0 ? spool.#logger.warn : spool.#logger.info).call(
        spool.#logger,
        `Found ${
          formatCount(spool.rows)
        } spooled ticks from a previous run${lost}; draining them first`,
        { dir, segments: spool.#queue.segments },
      );
    }
    spool.#probeNow();
    return spool;
  }

  /** Rows waiting on disk or in the write buffer. */
  get rows(): number {
    return this.#queue.rows + (this.#active?.rows ?? 0);
  }

  /** Bytes the spool occupies, counting the write buffer. */
  get bytes(): number {
    return this.#queue.bytes + (this.#active?.bytes ?? 0);
  }

  /**
   * Takes the segments `names` of the directory `from` (a slot nobody holds, locked by the
   * caller) into this spool, after everything in it: each is moved here under this spool's
   * next number (rename: nothing copied), read once (torn and corrupt lines skipped and
   * counted in `lostInCrash`) and queued. Returns the rows adopted.
   */
  async adopt(from: string, names: readonly string[]): Promise<number> {
    if (this.#closed || names.length === 0) return 0;
    // Numbered before any await: a segment opened meanwhile gets the next number.
    const targets = names.map(() => join(this.dir, segmentName(++this.#counter)));
    for (const [i, name] of names.entries()) await Deno.rename(join(from, name), targets[i]!);
    await syncDir(from);
    await syncDir(this.dir);
    let rows = 0;
    let lost = 0;
    for (const target of targets) {
      const damage = await this.#queue.takeStock(target, () => rows++);
      lost += damage.torn + damage.corrupt;
    }
    this.lostInCrash += lost;
    (lost > 0 ? this.#logger.warn : this.#logger.info).call(
      this.#logger,
      `Adopted ${formatCount(rows)} spooled ticks left in ${from} by a process that is gone${
        lost > 0 ? `; ${formatCount(lost)} lost in a crash (torn or corrupt lines skipped)` : ""
      }; writing them`,
      { into: this.dir, segments: names.length },
    );
    return rows;
  }

  /** Rows in the write buffer, not yet written to the file. */
  get buffered(): number {
    return this.#bufRows;
  }

  /** Set while the spool cannot be written to. */
  get fault(): SpoolFault | undefined {
    return this.#fault;
  }

  /** Rows lost at run time: segments that vanished or could not be read. */
  get lost(): number {
    return this.#queue.lost;
  }

  /** True when `append` would take a row of `size` bytes (no fault, room left). */
  canTake(size = 0): boolean {
    return !this.#fault && this.bytes + size <= this.#maxBytes;
  }

  /** Sets who takes back the rows of a failed write (they are no longer in the spool). */
  onReturn(handler: (rows: Row[]) => void): void {
    this.#onReturn = handler;
  }

  /**
   * Appends one row to the write buffer; false (nothing kept) when the spool has a fault or
   * is full. A write the row triggers may fail: the buffered rows then go to `onReturn`.
   */
  append(row: Row): boolean {
    if (this.#closed) throw new TypeError("Cannot append to a closed spool");
    if (this.#fault) return false;
    // Put in the buffer first (it has 64 KiB of room beyond `bufferBytes`), taken back if
    // it does not fit.
    const start = this.#fill;
    const header = this.#chunkFill === 0 || this.#chunkFill >= this.#chunkRows;
    if (header) this.#fill = putText(this.#buf, this.#fill, headerLine(crypto.randomUUID()));
    this.#fill = putRow(this.#buf, this.#fill, row, this.#symbolBytes);
    const size = this.#fill - start;
    const active = this.bytes + size <= this.#maxBytes
      ? this.#active ?? this.#openActive()
      : undefined;
    if (!active) {
      this.#fill = start;
      return false;
    }
    if (header) this.#chunkFill = 0;
    this.#bufRows++;
    this.#chunkFill++;
    active.rows++;
    active.bytes += size;
    if (this.#fill >= this.#bufferBytes) this.flush();
    if (this.#active && this.#active.bytes >= this.#segmentBytes) this.#seal();
    return true;
  }

  /**
   * Writes a whole batch under its own id, at once (for rows held in memory that must reach
   * the disk now); false when it could not be written (the caller still holds it).
   */
  appendBatch(batch: Batch): boolean {
    if (this.#closed) throw new TypeError("Cannot append to a closed spool");
    if (this.#fault || !this.flush()) return false;
    const data = encoder.encode(chunkText(batch));
    if (this.bytes + data.length > this.#maxBytes) return false;
    const active = this.#active ?? this.#openActive();
    if (!active) return false;
    try {
      this.#beforeWrite?.();
      writeAllSync(active.file, data);
    } catch (error) {
      this.#abandonActive(error);
      return false;
    }
    this.#dirty = true;
    this.#chunkFill = 0;
    active.written += data.length;
    active.rows += batch.rows.length;
    active.bytes += data.length;
    if (active.bytes >= this.#segmentBytes) this.#seal();
    return true;
  }

  /** Writes the buffer to the file (write(2)); false when that failed (see `onReturn`). */
  flush(): boolean {
    if (this.#fill === 0) return true;
    const active = this.#active!;
    try {
      this.#beforeWrite?.();
      writeAllSync(active.file, this.#buf.subarray(0, this.#fill));
    } catch (error) {
      const rows = parseRows(decoder.decode(this.#buf.subarray(0, this.#fill)));
      active.rows -= rows.length;
      active.bytes = active.written;
      this.#fill = 0;
      this.#bufRows = 0;
      this.#abandonActive(error);
      this.#onReturn(rows);
      return false;
    }
    active.written += this.#fill;
    this.#fill = 0;
    this.#bufRows = 0;
    this.#dirty = true;
    return true;
  }

  /** fsyncs what was written since the last call (one at a time; a failure sets `fault`). */
  async sync(): Promise<void> {
    if (this.#syncing) return;
    const files = this.#unsynced.splice(0);
    if (this.#dirty && this.#active) files.push(this.#active.file);
    const newSegment = this.#newSegment;
    if (files.length === 0 && !newSegment) return;
    this.#dirty = false;
    this.#newSegment = false;
    const sealed = files.filter((f) => f !== this.#active?.file);
    this.#syncing = (async () => {
      try {
        await Promise.all(files.map((f) => f.syncData()));
        if (newSegment) await syncDir(this.dir);
      } catch (error) {
        this.#setFault(error);
      } finally {
        for (const file of sealed) closeQuietly(file);
        this.#syncing = undefined;
      }
    })();
    await this.#syncing;
  }

  /** Resolves once no fsync is under way (call before `close`). */
  async settled(): Promise<void> {
    await this.#syncing;
  }

  /** While `fault` is set, checks whether the directory can be written again; true if so. */
  probe(): boolean {
    if (!this.#fault) return true;
    this.#probeNow();
    return !this.#fault;
  }

  /**
   * The oldest chunk not yet acknowledged, or undefined when the spool is empty. Returns the
   * same chunk until it is acknowledged. Seals the active segment when it is all that is left.
   */
  async next(): Promise<Batch | undefined> {
    while (true) {
      const chunk = await this.#queue.next();
      if (chunk || !this.#active?.rows) return chunk;
      this.#seal();
    }
  }

  /** Marks the chunk `next` returned as written; removes its segment once all are. */
  async ack(batch: Batch): Promise<void> {
    await this.#queue.ack(batch);
  }

  /** Rows of the spool held in memory (the chunk handed out by `next`, the next read ahead). */
  get rowsInMemory(): number {
    return this.#queue.rowsInMemory;
  }

  /**
   * Writes the buffer out, fsyncs and closes the active segment and releases the lock.
   * Rows of a final write that failed go to `onReturn` first.
   */
  close(): void {
    if (this.#closed) return;
    this.#queue.close();
    if (this.#active) this.#seal();
    try {
      for (const file of this.#unsynced) file.syncDataSync();
      if (this.#newSegment) syncDirSync(this.dir);
    } catch (error) {
      this.#setFault(error);
    }
    for (const file of this.#unsynced.splice(0)) closeQuietly(file);
    this.#closed = true;
    if (this.#lock) {
      try {
        this.#lock.close();
      } catch {
        // Already closed.
      }
    }
  }

  /** Writes, fsyncs and removes a small file: sets or clears `fault`. */
  #probeNow(): void {
    const path = join(this.dir, "probe.tmp");
    try {
      this.#beforeWrite?.();
      const file = Deno.openSync(path, { write: true, create: true, truncate: true });
      try {
        writeAllSync(file, new Uint8Array(PROBE_BYTES));
        file.syncDataSync();
      } finally {
        file.close();
        Deno.removeSync(path);
      }
      this.#fault = undefined;
    } catch (error) {
      this.#setFault(error);
    }
  }

  /** The owner reports faults (once each, see `fault`); a spool only records them. */
  #setFault(error: unknown): void {
    this.#fault ??= { error: errorText(error), since: Date.now() };
  }

  /** After a failed write: cut the file back to whole lines, keep what it holds, start anew. */
  #abandonActive(error: unknown): void {
    const active = this.#active!;
    this.#active = undefined;
    this.#chunkFill = 0;
    try {
      active.file.truncateSync(active.written);
    } catch {
      // A torn last line, then: the reader skips it.
    }
    // What it holds still wants its fsync.
    this.#unsynced.push(active.file);
    this.#dirty = false;
    if (active.rows > 0) this.#queue.push(active);
    else removeQuietly(active.path);
    this.#setFault(error);
  }

  #openActive(): ActiveSegment | undefined {
    const path = join(this.dir, segmentName(++this.#counter));
    try {
      this.#beforeWrite?.();
      const file = Deno.openSync(path, { write: true, create: true, append: true });
      this.#active = { file, path, rows: 0, bytes: 0, written: 0 };
      this.#newSegment = true;
    } catch (error) {
      this.#setFault(error);
      return undefined;
    }
    this.#chunkFill = 0;
    return this.#active;
  }

  /**
   * Closes the active segment to appends and queues it for reading. Its fsync is left to
   * the next `sync` (which closes it), so sealing never blocks on the disk.
   */
  #seal(): void {
    if (!this.flush()) return;
    const active = this.#active;
    if (!active) return;
    this.#active = undefined;
    this.#chunkFill = 0;
    if (this.#dirty) this.#unsynced.push(active.file);
    else closeQuietly(active.file);
    this.#dirty = false;
    if (active.rows > 0) this.#queue.push(active);
    else removeQuietly(active.path);
  }
}
