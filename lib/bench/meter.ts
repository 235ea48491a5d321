import process from "node:process";

const MB = 1024 * 1024;

/** One memory sample of the measured process. */
export interface MemorySample {
  /** ms since the meter started. */
  atMs: number;
  rssMb: number;
  /** V8 heap in use, and reserved (used + free). */
  heapMb: number;
  heapTotalMb: number;
  /** Memory outside the V8 heap (ArrayBuffers, socket buffers). */
  externalMb: number;
  /** Ticks done when it was taken. */
  done: number;
}

/** What a `Meter` saw between `start` and `stop`. */
export interface MeterReading {
  /** User + system CPU of this process over the measurement, in µs. */
  cpuUs: number;
  samples: MemorySample[];
}

/**
 * Watches the process a measurement runs in: its memory every `everyMs` (and at start and
 * stop), its CPU (user + system, `process.cpuUsage`) from `start` to `stop`, and progress;
 * `onStall` runs once when nothing was done for `stallMs`.
 */
export class Meter {
  #everyMs: number;
  #stallMs: number;
  #onStall: () => void;
  #samples: MemorySample[] = [];
  #timer: ReturnType<typeof setInterval> | undefined;
  #started = 0;
  #cpu: NodeJS.CpuUsage | undefined;
  #done = 0;
  #lastProgress = 0;
  #stalled = false;

  constructor(options: { everyMs?: number; stallMs?: number; onStall?: () => void } = {}) {
    this.#everyMs = options.everyMs ?? 100;
    this.#stallMs = options.stallMs ?? 30_000;
    this.#onStall = options.onStall ?? (() => {});
  }

  /** True once `onStall` has run. */
  get stalled(): boolean {
    return this.#stalled;
  }

  /** Starts sampling and the CPU count. */
  start(): void {
    this.#started = performance.now();
    this.#lastProgress = this.#started;
    this.#sample();
    this.#cpu = process.cpuUsage();
    this.#timer = setInterval(() => {
      this.#sample();
      if (!this.#stalled && performance.now() - this.#lastProgress > this.#stallMs) {
        this.#stalled = true;
        this.#onStall();
      }
    }, this.#everyMs);
  }

  /** Records that `done` ticks are done so far. */
  progress(done: number): void {
    this.#done = done;
    this.#lastProgress = performance.now();
  }

  /** Stops: the CPU used since `start` and every memory sample, the last one taken now. */
  stop(): MeterReading {
    const cpu = process.cpuUsage(this.#cpu);
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#sample();
    return { cpuUs: cpu.user + cpu.system, samples: this.#samples };
  }

  #sample(): void {
    const memory = Deno.memoryUsage();
    this.#samples.push({
      atMs: performance.now() - this.#started,
      rssMb: memory.rss / MB,
      heapMb: memory.heapUsed / MB,
      heapTotalMb: memory.heapTotal / MB,
      externalMb: memory.external / MB,
      done: this.#done,
    });
  }
}
