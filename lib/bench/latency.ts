/** Latencies in 0.1 ms bins up to 60 s (exact max kept aside): every row, fixed memory. */
export class LatencyHistogram {
  static readonly BIN_MS = 0.1;
  #bins = new Uint32Array(600_000);
  count = 0;
  max = 0;

  /** Records one latency in ms. */
  add(ms: number): void {
    const bin = Math.min(
      this.#bins.length - 1,
      Math.max(0, Math.floor(ms / LatencyHistogram.BIN_MS)),
    );
    this.#bins[bin]!++;
    this.count++;
    if (ms > this.max) this.max = ms;
  }

  /** The q-quantile (0..1), to the bin's upper edge; NaN when empty. */
  quantile(q: number): number {
    if (this.count === 0) return NaN;
    const rank = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (let i = 0; i < this.#bins.length; i++) {
      seen += this.#bins[i]!;
      if (seen >= rank) return Math.min(this.max, (i + 1) * LatencyHistogram.BIN_MS);
    }
    return this.max;
  }

  /** p50, p99 and max, as reported. */
  summary(): LatencySummary {
    return {
      count: this.count,
      p50Ms: this.quantile(0.5),
      p99Ms: this.quantile(0.99),
      maxMs: this.max,
    };
  }
}

/** A latency distribution as the bench reports it. */
export interface LatencySummary {
  count: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** The q-quantile of ascending `sorted` values (nearest rank); NaN when empty. */
export function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

/** Epoch ms with sub-millisecond precision, comparable across processes on one machine. */
export function wallNow(): number {
  return performance.timeOrigin + performance.now();
}

/** A `performance.now()` reading of this process as epoch ms. */
export function toWall(monotonicMs: number): number {
  return performance.timeOrigin + monotonicMs;
}
