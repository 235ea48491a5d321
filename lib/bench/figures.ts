import type { BenchResults } from "./bench.ts";
import type { IngestRun } from "./ingest_run.ts";

/** Targets of issue #13 (2 cores, simulator and database on the same machine). */
export const TARGET = {
  e2eTicksPerS: 150_000,
  e2eVsCopy: 0.4,
  cpuUsPerTick: 5,
  peakRssMb: 160,
  steadyRssMb: 100,
  /** p99 at half rate and at the low rate: at most the flush interval plus this. */
  latencySlackMs: 100,
  /** RSS growth over the end-to-end run. */
  rssGrowthMb: 20,
} as const;

/** The stage ceilings measured, by their JSON name. */
export function ceilings(r: BenchResults): { stage: string; ticksPerS: number }[] {
  const all = [
    { stage: "sim", ticksPerS: r.sim?.ticksPerS },
    { stage: "parse", ticksPerS: r.parse?.ticksPerS },
    { stage: "db", ticksPerS: r.db?.ticksPerS },
    { stage: "copy", ticksPerS: r.copy?.ticksPerS },
  ];
  return all.filter((c): c is { stage: string; ticksPerS: number } =>
    c.ticksPerS !== undefined && Number.isFinite(c.ticksPerS)
  );
}

/** The slowest stage ceiling: what bounds the end-to-end rate (each stage measured alone). */
export function boundBy(r: BenchResults): { stage: string; ticksPerS: number } | undefined {
  return ceilings(r).sort((a, b) => a.ticksPerS - b.ticksPerS)[0];
}

/** The ingester's RSS when 25/50/75/100 % of the rows were committed. */
export function rssAt(run: IngestRun): { q25: number; q50: number; q75: number; q100: number } {
  const samples = run.samples;
  const at = (q: number) =>
    (samples.find((s) => s.done >= q * run.ticks) ?? samples[samples.length - 1]!).rssMb;
  return { q25: at(0.25), q50: at(0.5), q75: at(0.75), q100: at(1) };
}

/** The last memory sample of a run: its RSS when the last row was committed. */
export function finalRssMb(run: IngestRun): number {
  return run.samples[run.samples.length - 1]!.rssMb;
}

/** The peak of one memory figure over a run. */
export function peak(run: IngestRun, figure: "heapMb" | "externalMb"): number {
  return Math.max(...run.samples.map((s) => s[figure]));
}
