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

/**
 * The stage ceilings measured, by their JSON name. The simulator's is the larger of `sim`
 * and `parse`: the parse stage's frames come from the same simulator, so it sustained at
 * least that rate (a reader that only counts takes each frame as it comes, and the
 * simulator then writes one frame per system call: more CPU per tick than when frames queue).
 */
export function ceilings(r: BenchResults): { stage: string; ticksPerS: number }[] {
  const sim = r.sim && r.parse ? Math.max(r.sim.ticksPerS, r.parse.ticksPerS) : r.sim?.ticksPerS;
  const all = [
    { stage: "sim", ticksPerS: sim },
    { stage: "parse", ticksPerS: r.parse?.ticksPerS },
    { stage: "db", ticksPerS: r.db?.ticksPerS },
    { stage: "copy", ticksPerS: r.copy?.ticksPerS },
  ];
  return all.filter((c): c is { stage: string; ticksPerS: number } =>
    c.ticksPerS !== undefined && Number.isFinite(c.ticksPerS)
  );
}

/**
 * The slowest stage ceiling (each stage measured alone): what bounds the end-to-end rate.
 * On a tie the later stage is named (parse before sim: the simulator did at least as well).
 */
export function boundBy(r: BenchResults): { stage: string; ticksPerS: number } | undefined {
  return ceilings(r).reverse().sort((a, b) => a.ticksPerS - b.ticksPerS)[0];
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
