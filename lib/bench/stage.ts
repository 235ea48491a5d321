import type { WorkerResult } from "./jobs.ts";

/** The figures every measurement taken in a worker has. */
export interface StageFigures {
  /** Ticks asked for, and done (counted, parsed, or committed). */
  ticks: number;
  done: number;
  /** Everything asked for was done, exactly once, nothing refused or dropped. */
  verified: boolean;
  ticksPerS: number;
  seconds: number;
  /** The worker's user + system CPU per tick, the bench's own hook subtracted. */
  cpuUsPerTick: number;
  peakRssMb: number;
}

/** The common figures of `result`, timed from `startAt` (epoch ms) to its last tick. */
export function stageFigures(
  result: WorkerResult,
  ticks: number,
  startAt: number,
  verified: boolean,
): StageFigures {
  const seconds = (result.lastAt - startAt) / 1000;
  return {
    ticks,
    done: result.done,
    verified: verified && result.done === ticks && !result.stalled,
    ticksPerS: ticks / seconds,
    seconds,
    cpuUsPerTick: (result.cpuUs - result.hookUs) / ticks,
    peakRssMb: Math.max(...result.samples.map((s) => s.rssMb)),
  };
}
