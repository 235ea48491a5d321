import type { Sql } from "postgres";
import { type LatencySummary, quantile } from "./latency.ts";

/**
 * Tick receipt → queryable: polls `count(*)` of `crypto_ticks` on its own connection every
 * ~5 ms. The pipeline has one write loop, so batches commit in arrival order and row _i_
 * (in commit order) is visible exactly when `count(*) > i`: its latency is the poll's
 * response time minus the row's receipt time (conservative by up to one poll period).
 */
export class QueryablePoller {
  /** Receipt time (`performance.now()`) of each row, in commit order (`record`). */
  #receivedAt: number[] = [];
  #visibleAt: number[] = [];
  #polls = 0;
  #pollingMs = 0;
  #running = true;
  readonly finished: Promise<void>;

  constructor(sql: Sql, target: number, options: { timeoutMs: number }) {
    this.finished = this.#poll(sql, target, options.timeoutMs);
  }

  /** Records the receipt time of the next committed row. */
  record(receivedAt: number): void {
    this.#receivedAt.push(receivedAt);
  }

  /** Stops polling (the run ends early). */
  stop(): void {
    this.#running = false;
  }

  /** The distribution, with the mean poll period. */
  summary(): LatencySummary & { pollPeriodMs: number } {
    const latencies: number[] = [];
    const n = Math.min(this.#receivedAt.length, this.#visibleAt.length);
    for (let i = 0; i < n; i++) {
      const at = this.#receivedAt[i]!;
      if (Number.isFinite(at)) latencies.push(this.#visibleAt[i]! - at);
    }
    latencies.sort((a, b) => a - b);
    return {
      count: latencies.length,
      p50Ms: quantile(latencies, 0.5),
      p99Ms: quantile(latencies, 0.99),
      maxMs: latencies.at(-1) ?? NaN,
      pollPeriodMs: this.#polls > 0 ? this.#pollingMs / this.#polls : NaN,
    };
  }

  async #poll(sql: Sql, target: number, timeoutMs: number): Promise<void> {
    const started = performance.now();
    while (this.#running && this.#visibleAt.length < target) {
      if (performance.now() - started > timeoutMs) break;
      const [row] = await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM crypto_ticks`;
      const now = performance.now();
      this.#polls++;
      while (this.#visibleAt.length < row!.n) this.#visibleAt.push(now);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    this.#pollingMs = performance.now() - started;
  }
}
