import { type Logger, silentLogger } from "../log.ts";
import type { Batch, Row } from "./batch.ts";
import { type Damage, SegmentReader } from "./spool_format.ts";
import { errorText } from "../text.ts";

/** A spool segment file: its rows and size. */
export interface Segment {
  path: string;
  rows: number;
  bytes: number;
}

interface ReadingSegment extends Segment {
  reader: SegmentReader;
  /** The chunk `next` returned, until it is acknowledged. */
  current: Batch | undefined;
  /** The chunk after it, being read while `current` is written (see `next`). */
  ahead: Promise<Batch | undefined> | undefined;
  /** Rows of `ahead` once it has been read. */
  aheadRows: number;
  /** Rows of this segment acknowledged so far. */
  acked: number;
}

/**
 * A spool's sealed segments, oldest first, read back one chunk at a time: the chunk handed
 * out, and the next one, read ahead while the first is being written (so reading and
 * parsing overlap the database's commit), are all that is held in memory. A segment is
 * removed once all its chunks are acknowledged.
 */
export class SegmentQueue {
  #sealed: Segment[] = [];
  #reading: ReadingSegment | undefined;
  #symbols = new Map<string, string>();
  #logger: Logger;
  #onRead: (chunk: Batch) => void;
  /** Rows not yet acknowledged. */
  rows = 0;
  /** Bytes of the segments not yet removed. */
  bytes = 0;
  /** Rows of segments that vanished or could not be read. */
  lost = 0;

  /** `onRead` sees each chunk once it is read (to prepare its write ahead of time). */
  constructor(logger: Logger = silentLogger, onRead: (chunk: Batch) => void = () => {}) {
    this.#logger = logger;
    this.#onRead = onRead;
  }

  /** Segments waiting, the one being read included. */
  get segments(): number {
    return this.#sealed.length + (this.#reading ? 1 : 0);
  }

  /** Rows held in memory: the chunk handed out by `next` and the one read ahead. */
  get rowsInMemory(): number {
    const reading = this.#reading;
    return (reading?.current?.rows.length ?? 0) + (reading?.aheadRows ?? 0);
  }

  /** Queues a sealed segment (the newest). */
  push(segment: Segment): void {
    this.#sealed.push({ path: segment.path, rows: segment.rows, bytes: segment.bytes });
    this.rows += segment.rows;
    this.bytes += segment.bytes;
  }

  /**
   * Reads a segment left by a previous run, calling `onRow` for each row, and queues it
   * (removes it when it holds none). Returns the lines it had to skip.
   */
  async takeStock(path: string, onRow?: (row: Row) => void): Promise<Damage> {
    const { size } = await Deno.stat(path);
    const reader = await SegmentReader.open(path, this.#symbols);
    try {
      for (let chunk = await reader.next(); chunk; chunk = await reader.next()) {
        if (onRow) { for (const row of chunk.rows) onRow(row); }
      }
    } finally {
      reader.close();
    }
    if (reader.rows === 0) await Deno.remove(path).catch(() => {});
    else this.push({ path, rows: reader.rows, bytes: size });
    return reader.damage;
  }

  /** The oldest chunk not yet acknowledged (the same one until it is), or undefined. */
  async next(): Promise<Batch | undefined> {
    while (true) {
      const reading = this.#reading;
      if (reading) {
        if (reading.current) return reading.current;
        let chunk: Batch | undefined;
        try {
          chunk = await (reading.ahead ?? this.#read(reading));
        } catch (error) {
          this.#lose(reading, error);
          continue;
        } finally {
          reading.ahead = undefined;
          reading.aheadRows = 0;
        }
        if (!chunk) {
          await this.#finish();
          continue;
        }
        reading.current = chunk;
        if (!reading.reader.ended) {
          reading.ahead = this.#read(reading);
          // Its failure is reported by the `next` that awaits it.
          reading.ahead.catch(() => {});
        }
        return chunk;
      }
      const segment = this.#sealed.shift();
      if (!segment) return undefined;
      try {
        const reader = await SegmentReader.open(segment.path, this.#symbols);
        this.#reading = {
          ...segment,
          reader,
          current: undefined,
          ahead: undefined,
          aheadRows: 0,
          acked: 0,
        };
      } catch (error) {
        this.#lose({ ...segment, acked: 0 }, error);
      }
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
    this.rows -= batch.rows.length;
    if (!reading.reader.ended) return;
    // The reader is past its end: the chunk read ahead (if any) is the segment's last.
    const ahead = await reading.ahead?.catch(() => null);
    if (ahead === undefined && this.#reading === reading && !reading.current) {
      reading.ahead = undefined;
      await this.#finish();
    }
  }

  /** Closes the file being read. */
  close(): void {
    this.#reading?.reader.close();
  }

  async #read(reading: ReadingSegment): Promise<Batch | undefined> {
    const chunk = await reading.reader.next();
    if (chunk) {
      reading.aheadRows = chunk.rows.length;
      this.#onRead(chunk);
    }
    return chunk;
  }

  /** Drops a segment that cannot be read (vanished, I/O error): its rows are lost, counted. */
  #lose(segment: Segment & { acked: number; reader?: SegmentReader }, error: unknown): void {
    segment.reader?.close();
    const rows = segment.rows - segment.acked;
    this.lost += rows;
    this.rows -= rows;
    this.bytes -= segment.bytes;
    if (this.#reading === segment) this.#reading = undefined;
    this.#logger.error(`Cannot read the spool segment ${segment.path}: ${errorText(error)}`, {
      lost: rows,
    });
  }

  async #finish(): Promise<void> {
    const reading = this.#reading!;
    reading.reader.close();
    // Rows a torn line lost are no longer counted anywhere.
    this.rows -= reading.rows - reading.acked;
    this.bytes -= reading.bytes;
    this.#reading = undefined;
    await Deno.remove(reading.path).catch((error) => {
      // Drained twice at the next start at worst: the batch ids make that harmless.
      this.#logger.warn(`Cannot remove the drained spool segment ${reading.path}`, {
        error: errorText(error),
      });
    });
  }
}
