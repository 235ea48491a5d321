import type { Sql } from "postgres";
import { pruneTicks, readRetention } from "../candles/retention.ts";
import { type Logger, silentLogger } from "../log.ts";
import { errorText } from "../text.ts";
import { systemTimers, type TimerId, type Timers } from "../timers.ts";

/** Settings of `RetentionLoop`. */
export interface RetentionLoopOptions {
  /** Delay before the first pass (default 60 s: the stream comes first). */
  firstMs?: number;
  /** Between passes (default 1 hour). */
  everyMs?: number;
  timers?: Timers;
  logger?: Logger;
}

/**
 * Portable mode's tick retention inside ingest: a pass a minute after start and then every
 * hour reads the setting (`setup --retain-ticks`) and, when there is one, deletes the ticks
 * older than it (`pruneTicks`, which lets one process of a fleet do it at a time). A failed
 * pass is logged and tried again at the next one; it never touches the stream.
 */
export class RetentionLoop {
  #sql: Sql;
  #timers: Timers;
  #logger: Logger;
  #everyMs: number;
  #timer: TimerId | undefined;
  #pass: Promise<void> | undefined;
  #stopped = false;

  constructor(sql: Sql, options: RetentionLoopOptions = {}) {
    this.#sql = sql;
    this.#timers = options.timers ?? systemTimers;
    this.#logger = options.logger ?? silentLogger;
    this.#everyMs = options.everyMs ?? 3_600_000;
    this.#schedule(options.firstMs ?? 60_000);
  }

  #schedule(ms: number): void {
    this.#timer = this.#timers.setTimeout(() => {
      this.#pass = this.#run().finally(() => {
        this.#pass = undefined;
        if (!this.#stopped) this.#schedule(this.#everyMs);
      });
    }, ms);
  }

  async #run(): Promise<void> {
    try {
      if ((await readRetention(this.#sql)).days === null) return;
      await pruneTicks(this.#sql, "portable", { logger: this.#logger });
    } catch (error) {
      this.#logger.warn(`Cannot delete ticks older than the retention now: ${errorText(error)}`);
    }
  }

  /** Stops the loop, waiting for a pass in progress. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#timers.clearTimeout(this.#timer);
    await this.#pass;
  }
}
