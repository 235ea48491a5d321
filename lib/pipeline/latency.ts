import type { Batch } from "./batch.ts";

const SAMPLES = 8192;
const SAMPLES_PER_BATCH = 32;

/** Tick receipt → COMMIT latency over the last 8192 sampled rows (32 per batch). */
export class LatencySampler {
  #samples = new Float64Array(SAMPLES);
  #count = 0;

  /** Samples rows of a batch committed now (rows read back from the spool carry no time). */
  sample(batch: Batch): void {
    const rows = batch.rows;
    if (rows.length === 0 || batch.spooled) return;
    const now = performance.now();
    const step = Math.max(1, Math.floor(rows.length / SAMPLES_PER_BATCH));
    for (let i = 0; i < rows.length; i += step) {
      const at = rows[i]!.receivedAt;
      if (!Number.isFinite(at)) continue;
      this.#samples[this.#count++ % SAMPLES] = now - at;
    }
  }

  /** The median and 99th percentile in ms, undefined before the first sample. */
  quantiles(): { p50: number | undefined; p99: number | undefined } {
    const n = Math.min(this.#count, SAMPLES);
    if (n === 0) return { p50: undefined, p99: undefined };
    const sorted = this.#samples.slice(0, n).sort();
    return { p50: sorted[Math.floor((n - 1) * 0.5)], p99: sorted[Math.floor((n - 1) * 0.99)] };
  }
}
