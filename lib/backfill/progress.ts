import type { BackfillProgress } from "./backfill.ts";
import { type Clock, systemClock } from "../timers.ts";
import { duration, formatCount } from "../text.ts";

/** Settings of `ProgressReporter`. */
export interface ProgressOptions {
  /** Where the text goes (e.g. stderr). */
  write: (text: string) => void;
  /** A terminal gets a bar redrawn in place; anything else plain lines. */
  terminal: boolean;
  /** The terminal's width (default, and when it reports 0, 80). */
  columns?: () => number;
  /** Plain lines at most this often (default 5 s), plus the first and the last. */
  plainEveryMs?: number;
  clock?: Clock;
}

const BAR_WIDTH = 24;
const REDRAW_MS = 100;

/**
 * Shows a backfill's progress: on a terminal a bar with counts and ETA, redrawn in place
 * (carriage return and erase-line, at most ten times a second); elsewhere (a log, CI) a
 * plain line every few seconds. Takes its output as a function, so it prints nothing itself.
 */
export class ProgressReporter {
  #options: ProgressOptions;
  #clock: Clock;
  #started: number;
  #lastDraw = -Infinity;
  #drawn = false;
  #last: BackfillProgress | undefined;
  #pending = false;

  constructor(options: ProgressOptions) {
    this.#options = options;
    this.#clock = options.clock ?? systemClock;
    this.#started = this.#clock.now();
  }

  /** Takes the latest progress; draws when due. */
  update(progress: BackfillProgress): void {
    const first = this.#last === undefined;
    const waitChanged = Boolean(progress.waiting) !== Boolean(this.#last?.waiting);
    this.#last = progress;
    this.#pending = true;
    const now = this.#clock.now();
    const every = this.#options.terminal ? REDRAW_MS : this.#options.plainEveryMs ?? 5_000;
    if (!first && !waitChanged && now - this.#lastDraw < every) return;
    this.#lastDraw = now;
    this.#draw(progress, now);
  }

  /** Draws the final state (unless it is already shown) and ends the bar's line. */
  done(): void {
    if (this.#last && this.#pending) this.#draw(this.#last, this.#clock.now());
    if (this.#options.terminal && this.#drawn) this.#options.write("\n");
    this.#drawn = false;
  }

  #eta(p: BackfillProgress, now: number): string {
    if (p.requests === 0 || p.requestsDone >= p.requests) return "";
    if (p.requestsDone === 0) return p.waiting ? `, ETA ${duration(p.waiting.ms)}+` : "";
    const per = (now - this.#started) / p.requestsDone;
    return `, ETA ${duration(per * (p.requests - p.requestsDone))}`;
  }

  #draw(p: BackfillProgress, now: number): void {
    this.#pending = false;
    const where = p.current
      ? ` ${p.current.gap.symbol} ${new Date(p.current.fromMs).toISOString().slice(0, 16)}`
      : "";
    const waiting = p.waiting ? `, waiting ${duration(p.waiting.ms)} for API credits` : "";
    const counts = `${formatCount(p.requestsDone)}/${formatCount(p.requests)} requests, ${
      formatCount(p.bars)
    } minutes filled`;
    if (!this.#options.terminal) {
      this.#options.write(`Backfill: ${counts}${this.#eta(p, now)}${waiting}${where}\n`);
      return;
    }
    const share = p.chunks === 0 ? 1 : p.chunksDone / p.chunks;
    const full = Math.round(share * BAR_WIDTH);
    const bar = `[${"#".repeat(full)}${"-".repeat(BAR_WIDTH - full)}] ${
      String(Math.floor(share * 100)).padStart(3)
    }%`;
    // A pseudo-terminal without a size reports 0 columns.
    const columns = this.#options.columns?.() || 80;
    const line = `${bar} ${counts}${this.#eta(p, now)}${waiting}${where}`;
    this.#options.write(`\r\x1b[2K${line.slice(0, Math.max(20, columns - 1))}`);
    this.#drawn = true;
  }
}
