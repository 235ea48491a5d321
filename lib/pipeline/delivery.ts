import type { Sql } from "postgres";
import { backoffDelay } from "../backoff.ts";
import { type Logger, silentLogger } from "../log.ts";
import { type Batch, type Row, subBatchId } from "./batch.ts";
import {
  quarantine,
  type QuarantinedRow,
  QuarantineError,
  type Refusal,
  refusalOf,
} from "./quarantine.ts";
import type { TickWriter } from "./writer.ts";
import { errorText, formatCount } from "../text.ts";

/** Settings of `Delivery`. */
export interface DeliveryOptions {
  /** First retry delay in ms (default 250); doubles per attempt up to `retryMaxMs`. */
  retryInitialMs?: number;
  /** Longest retry delay in ms (default 30,000). */
  retryMaxMs?: number;
  /** Where refused rows go when `tickpipe_quarantine` cannot take them. */
  quarantineDir: string;
  /**
   * Called on every failed attempt that will be retried, with the number of failures in a
   * row (the pipeline spools from the second on).
   */
  onFailure?: (failures: number) => void;
  /** Ticks waiting, for the retry log line. */
  waiting?: () => { memory: number; spooled: number };
  logger?: Logger;
}

/** What became of a batch: committed or set aside, given up for its spool copy, or aborted. */
export type Delivered = "done" | "abandoned" | "aborted";

type Attempt =
  | { kind: "written" | "landed" | "split" | "abandoned" | "aborted" }
  | { kind: "refused"; refusal: Refusal };

const PRUNE_EVERY_MS = 3600_000;

/**
 * Delivers batches to the database, exactly once: retries transient failures with capped
 * exponential backoff and jitter (checking `tickpipe_batches` first, so a COMMIT whose
 * outcome was lost is not repeated), and, when the database refuses a batch for a data
 * reason, writes it in parts — by symbol, then halves — down to the single rows it refuses,
 * which go to `tickpipe_quarantine`. Part ids derive from the batch id and the part's range,
 * and a refused batch is marked as split before any part commits (`TickWriter.markSplit`),
 * so splitting the same batch again gives the same ids and writes nothing twice.
 */
export class Delivery {
  #sql: Sql;
  #writer: TickWriter;
  #logger: Logger;
  #retryInitialMs: number;
  #retryMaxMs: number;
  #quarantineDir: string;
  #onFailure: (failures: number) => void;
  #waiting: () => { memory: number; spooled: number };
  #aborted = false;
  #sleepTimer: ReturnType<typeof setTimeout> | undefined;
  #sleepWake: (() => void) | undefined;
  #quarantinedBy = new Map<string, number>();
  #lastPrune = -Infinity;
  /** Rows committed (including batches found to have landed on an earlier attempt). */
  written = 0;
  batches = 0;
  retries = 0;
  recovered = 0;
  quarantined = 0;
  /** Refused rows that could be stored nowhere. */
  lost = 0;
  lastError: string | undefined;
  /** Since when the database has been failing (epoch ms), undefined when healthy. */
  failingSince: number | undefined;
  /** When rows were last quarantined (epoch ms). */
  lastQuarantineAt: number | undefined;

  constructor(sql: Sql, writer: TickWriter, options: DeliveryOptions) {
    this.#sql = sql;
    this.#writer = writer;
    this.#logger = options.logger ?? silentLogger;
    this.#retryInitialMs = options.retryInitialMs ?? 250;
    this.#retryMaxMs = options.retryMaxMs ?? 30_000;
    this.#quarantineDir = options.quarantineDir;
    this.#onFailure = options.onFailure ?? (() => {});
    this.#waiting = options.waiting ?? (() => ({ memory: 0, spooled: 0 }));
  }

  /** Quarantined rows by reason. */
  quarantinedByReason(): Record<string, number> {
    return Object.fromEntries(this.#quarantinedBy);
  }

  /** Deletes batch records older than a week, once an hour (best effort). */
  async pruneHourly(): Promise<void> {
    if (performance.now() - this.#lastPrune < PRUNE_EVERY_MS) return;
    this.#lastPrune = performance.now();
    try {
      const n = await this.#writer.prune();
      if (n > 0) this.#logger.debug(`Pruned ${formatCount(n)} old batch records`);
    } catch (error) {
      this.#logger.debug("Cannot prune old batch records", { error: errorText(error) });
    }
  }

  /** Stops retrying: the batch being delivered resolves "aborted" at the next failure. */
  abort(): void {
    this.#aborted = true;
    this.#wake();
  }

  /**
   * Writes `batch` until it is committed (its refused rows quarantined), "abandoned" (a
   * spilled batch whose write failed: its spool copy takes over) or "aborted".
   */
  async deliver(batch: Batch, sample?: (batch: Batch) => void): Promise<Delivered> {
    const outcome = await this.#attempt(batch, true);
    switch (outcome.kind) {
      case "written":
      case "landed":
        sample?.(batch);
        return "done";
      case "abandoned":
      case "aborted":
        return outcome.kind;
    }
    if (outcome.kind === "refused") {
      const marked = await this.#retrying(() => this.#writer.markSplit(batch.id));
      if (marked === undefined) return "aborted";
      if (marked > 0) return "done";
    }
    const rows = [...batch.rows].sort((
      a,
      b,
    ) => (a.symbol < b.symbol ? -1 : a.symbol > b.symbol ? 1 : 0));
    const refused: QuarantinedRow[] = [];
    if (!(await this.#split(batch.id, rows, 0, rows.length, refused))) return "aborted";
    return (await this.#quarantine(refused)) ? "done" : "aborted";
  }

  /** Writes the parts of rows[start, end), refused as a whole; false when aborted. */
  async #split(
    rootId: string,
    rows: Row[],
    start: number,
    end: number,
    refused: QuarantinedRow[],
  ): Promise<boolean> {
    for (const [s, e] of parts(rows, start, end)) {
      const id = await subBatchId(rootId, s, e);
      const outcome = await this.#attempt({ id, rows: rows.slice(s, e), spooled: false }, false);
      if (outcome.kind === "aborted") return false;
      if (outcome.kind === "written" || outcome.kind === "landed") continue;
      if (outcome.kind === "refused") {
        if (e - s === 1) {
          refused.push({ batchId: id, row: rows[s]!, refusal: outcome.refusal });
          continue;
        }
        const marked = await this.#retrying(() => this.#writer.markSplit(id));
        if (marked === undefined) return false;
        if (marked > 0) continue;
      }
      if (!(await this.#split(rootId, rows, s, e, refused))) return false;
    }
    return true;
  }

  /** Stores refused rows (retrying while the database is away); false when aborted. */
  async #quarantine(refused: QuarantinedRow[]): Promise<boolean> {
    if (refused.length === 0) return true;
    let stored: { added: QuarantinedRow[]; file?: string } | undefined;
    try {
      stored = await this.#retrying(() => quarantine(this.#sql, refused, this.#quarantineDir));
    } catch (error) {
      if (!(error instanceof QuarantineError)) throw error;
      this.lost += refused.length;
      this.#logger.error(error.message);
      return true;
    }
    if (!stored) return false;
    // Only rows new to the quarantine count: a chunk drained twice was counted the first time.
    this.quarantined += stored.added.length;
    for (const { refusal } of stored.added) {
      this.#quarantinedBy.set(refusal.reason, (this.#quarantinedBy.get(refusal.reason) ?? 0) + 1);
    }
    this.lastQuarantineAt = Date.now();
    const first = refused[0]!.refusal;
    this.#logger.limited(
      "quarantine",
      "error",
      `The database refused ${
        formatCount(refused.length)
      } ticks (${first.reason}: ${first.message}); ` +
        `quarantined ${stored.file ? `in ${stored.file}` : "in tickpipe_quarantine"}, the rest ` +
        "of their batches written (inspect: deno task quarantine list; once fixed: deno task " +
        "quarantine replay)",
      { quarantined: this.quarantined },
      { perWindow: 1, windowMs: 60_000 },
    );
    return true;
  }

  /**
   * One batch (or part) until it is written, found landed (or split before), refused,
   * abandoned (`root` only) or aborted.
   */
  async #attempt(batch: Batch, root: boolean): Promise<Attempt> {
    let attempt = 0;
    while (true) {
      try {
        // Before a retry, ask whether the failed attempt committed after all.
        const before = attempt > 0 ? await this.#writer.committedRows(batch.id) : undefined;
        let kind: "written" | "landed" | "split" = before === undefined
          ? await this.#writer.write(batch)
          : "landed";
        if (kind === "landed") {
          const rows = before ?? await this.#writer.committedRows(batch.id);
          if (rows === 0 && batch.rows.length > 0) kind = "split";
        }
        this.#healthy();
        if (kind === "split") return { kind };
        if (kind === "landed") this.recovered++;
        this.batches++;
        this.written += batch.rows.length;
        return { kind };
      } catch (error) {
        this.lastError = errorText(error);
        const refusal = refusalOf(error);
        if (refusal) {
          this.#healthy();
          return { kind: "refused", refusal };
        }
        if (this.#aborted) return { kind: "aborted" };
        this.failingSince ??= Date.now();
        attempt++;
        this.retries++;
        this.#onFailure(attempt);
        if (root && batch.spilled) return { kind: "abandoned" };
        await this.#backoff(attempt);
        if (this.#aborted) return { kind: "aborted" };
      }
    }
  }

  /** Runs `fn` until it succeeds, retrying while the database is away; undefined if aborted. */
  async #retrying<T>(fn: () => Promise<T>): Promise<T | undefined> {
    let attempt = 0;
    while (true) {
      try {
        const result = await fn();
        this.#healthy();
        return result;
      } catch (error) {
        if (error instanceof QuarantineError) throw error;
        this.lastError = errorText(error);
        if (this.#aborted) return undefined;
        this.failingSince ??= Date.now();
        attempt++;
        this.retries++;
        this.#onFailure(attempt);
        await this.#backoff(attempt);
        if (this.#aborted) return undefined;
      }
    }
  }

  #healthy(): void {
    if (this.failingSince === undefined) return;
    const seconds = Math.round((Date.now() - this.failingSince) / 1000);
    const { memory, spooled } = this.#waiting();
    this.#logger.info(
      `Database reachable again after ${seconds}s: draining ${
        formatCount(memory + spooled)
      } waiting ticks`,
    );
    this.failingSince = undefined;
  }

  async #backoff(attempt: number): Promise<void> {
    const delay = backoffDelay(attempt, this.#retryInitialMs, this.#retryMaxMs);
    const { memory, spooled } = this.#waiting();
    this.#logger.limited(
      "pipeline-retry",
      "warn",
      `Database unreachable: ${formatCount(memory + spooled)} ticks waiting (${
        formatCount(memory)
      } in memory, ${formatCount(spooled)} spooled); retrying in ${
        delay >= 1000 ? `${Math.round(delay / 1000)}s` : `${delay}ms`
      }`,
      { error: this.lastError },
      { perWindow: 1, windowMs: 5000 },
    );
    await new Promise<void>((resolve) => {
      this.#sleepWake = resolve;
      this.#sleepTimer = setTimeout(() => this.#wake(), delay);
    });
  }

  #wake(): void {
    clearTimeout(this.#sleepTimer);
    this.#sleepTimer = undefined;
    const wake = this.#sleepWake;
    this.#sleepWake = undefined;
    wake?.();
  }
}

/**
 * The parts a refused range of symbol-sorted rows is written in: one per symbol when it
 * holds several (a constraint often concerns one symbol), else two halves.
 */
function parts(rows: Row[], start: number, end: number): [number, number][] {
  if (rows[start]!.symbol !== rows[end - 1]!.symbol) {
    const out: [number, number][] = [];
    let from = start;
    for (let i = start + 1; i <= end; i++) {
      if (i === end || rows[i]!.symbol !== rows[from]!.symbol) {
        out.push([from, i]);
        from = i;
      }
    }
    return out;
  }
  const mid = start + Math.ceil((end - start) / 2);
  return [[start, mid], [mid, end]];
}
