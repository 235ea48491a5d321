import { type Logger, silentLogger } from "../log.ts";
import type { Batcher } from "./batcher.ts";
import type { Batch, Row } from "./batch.ts";
import type { Spool, SpoolFault } from "./spool.ts";
import { adoptOrphansInto, openSlotSpool } from "./spool_slot.ts";
import { errorText, formatCount } from "../text.ts";

/** Settings of `SpoolKeeper`. */
export interface SpoolKeeperOptions {
  maxBytes?: number | undefined;
  segmentBytes?: number | undefined;
  chunkRows: number;
  /** Writes are fsync'd at this interval, in ms (default 500). */
  syncMs?: number | undefined;
  /** For the memory-only warning: how many ticks memory holds. */
  memoryCap: number;
  beforeWrite?: (() => void) | undefined;
  onLeftoverRow?: (row: Row) => void;
  onChunkRead?: (chunk: Batch) => void;
  logger?: Logger;
}

const PROBE_EVERY_MS = 5000;
/** How often a running process looks for slots left by processes that are gone. */
const ADOPT_EVERY_MS = 30_000;

/**
 * Runs a pipeline's spool: takes this process's slot under the spool root (when the
 * directory cannot be written, the pipeline runs memory-only, said in one line, and the slot
 * is tried again every 5 s), and, on the pipeline's housekeeping tick, writes the buffer
 * out, fsyncs every `syncMs`, probes a faulty spool and reports each fault once, and its end.
 * It adopts the slots of processes that are gone (their lock free, segments left): at
 * start, on request (`adoptOrphans`, on a lease takeover) and every 30 s those found
 * orphaned 30 s before (a process restarting gets its own slot back first).
 */
export class SpoolKeeper {
  #root: string;
  #batcher: Batcher;
  #options: SpoolKeeperOptions;
  #logger: Logger;
  #openError: SpoolFault | undefined;
  #reported: SpoolFault | undefined;
  #opening = false;
  #closed = false;
  #lastSync = 0;
  #lastProbe = 0;
  #lastAdopt: number | undefined;
  /** Slots found orphaned at the last periodic look. */
  #orphansSeen = new Set<string>();
  #adopting: Promise<number> = Promise.resolve(0);
  /** Ticks that could not be kept at shutdown. */
  lostAtClose = 0;
  spool: Spool | undefined;

  constructor(root: string, batcher: Batcher, options: SpoolKeeperOptions) {
    this.#root = root;
    this.#batcher = batcher;
    this.#options = options;
    this.#logger = options.logger ?? silentLogger;
  }

  /** Why the spool cannot be written, while it cannot. */
  get fault(): SpoolFault | undefined {
    return this.spool?.fault ?? this.#openError;
  }

  /** Opens this process's spool slot; returns the rows a previous run left there. */
  async open(): Promise<number> {
    const o = this.#options;
    try {
      const spool = await openSlotSpool(this.#root, {
        maxBytes: o.maxBytes,
        segmentBytes: o.segmentBytes,
        chunkRows: o.chunkRows,
        onLeftoverRow: o.onLeftoverRow,
        onChunkRead: o.onChunkRead,
        beforeWrite: o.beforeWrite,
        logger: this.#logger,
      });
      this.spool = spool;
      this.#openError = undefined;
      this.#batcher.attachSpool(spool);
      return spool.rows;
    } catch (error) {
      this.#openError ??= { error: errorText(error), since: Date.now() };
      return 0;
    } finally {
      this.#report();
    }
  }

  /**
   * Adopts, now, the slots of processes that are gone (see `Spool.adopt`), after any
   * adoption under way; resolves with the rows adopted (0 when it failed, logged). The
   * writer drains them first, as at start.
   */
  adoptOrphans(options: { accept?: (dir: string) => boolean } = {}): Promise<number> {
    this.#adopting = this.#adopting.then(async () => {
      const spool = this.spool;
      if (!spool || this.#closed) return 0;
      try {
        const rows = await adoptOrphansInto(this.#root, spool, options);
        // Wakes the writer and, as at start, sends new ticks behind the adopted ones.
        if (rows > 0 && !this.#closed) this.#batcher.attachSpool(spool);
        return rows;
      } catch (error) {
        this.#logger.warn("Cannot adopt the spool left by a process that is gone", {
          error: errorText(error),
        });
        return 0;
      }
    });
    return this.#adopting;
  }

  /** The housekeeping tick: write, fsync, probe, retry the slot, adopt, report. */
  tick(now: number, onOpened: (leftover: number) => void): void {
    const spool = this.spool;
    if (spool) {
      this.#lastAdopt ??= now;
      if (now - this.#lastAdopt >= ADOPT_EVERY_MS) {
        this.#lastAdopt = now;
        const before = this.#orphansSeen;
        const seen = this.#orphansSeen = new Set<string>();
        const accept = (dir: string) => {
          if (before.has(dir)) return true;
          seen.add(dir);
          return false;
        };
        this.adoptOrphans({ accept }).then((rows) => rows > 0 && onOpened(rows));
      }
      spool.flush();
      if (now - this.#lastSync >= (this.#options.syncMs ?? 500)) {
        this.#lastSync = now;
        spool.sync().catch(() => {});
      }
      if (spool.fault && now - this.#lastProbe >= PROBE_EVERY_MS) {
        this.#lastProbe = now;
        spool.probe();
      }
    } else if (!this.#opening && !this.#closed && now - this.#lastProbe >= PROBE_EVERY_MS) {
      this.#lastProbe = now;
      this.#opening = true;
      this.open().then(onOpened).finally(() => this.#opening = false);
    }
    this.#report();
  }

  /**
   * At shutdown: what memory still holds goes to the spool, after its rows; the spool is
   * closed (lock released). What cannot be kept is counted in `lostAtClose` and logged.
   */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#adopting;
    this.#persistMemory();
    const spool = this.spool;
    if (!spool) return;
    await spool.settled();
    spool.close();
    // Rows of a final write that failed came back to memory: nowhere left to keep them.
    this.#lose(this.#batcher.takeAll().reduce((n, b) => n + b.rows.length, 0));
    if (spool.rows > 0) {
      this.#logger.warn(
        `Stopped with ${
          formatCount(spool.rows)
        } ticks in the spool; they are written on the next start`,
        { dir: spool.dir },
      );
    }
  }

  #persistMemory(): void {
    const spool = this.spool;
    let lost = 0;
    for (const batch of this.#batcher.takeAll()) {
      if (!spool || !spool.appendBatch(batch)) lost += batch.rows.length;
    }
    this.#lose(lost);
  }

  #lose(lost: number): void {
    if (lost === 0) return;
    this.lostAtClose += lost;
    const why = this.fault?.error ?? "the spool is full";
    this.#logger.error(
      `Cannot keep ${formatCount(lost)} ticks at shutdown (${why}): they are lost`,
    );
  }

  /** Says once when the spool becomes unwritable, and once when it is writable again. */
  #report(): void {
    const fault = this.fault;
    if (fault === this.#reported) return;
    if (fault) {
      this.#logger.error(
        `Cannot write the spool in ${this.spool?.dir ?? this.#root}: ${fault.error}; ` +
          `running memory-only (up to ${
            formatCount(this.#options.memoryCap)
          } ticks held, newer ones ` +
          "dropped while the database is away) until it is writable, /healthz failing meanwhile",
      );
    } else {
      this.#logger.info("The spool is writable again", { dir: this.spool?.dir });
    }
    this.#reported = fault;
  }
}
