import type { Logger } from "../log.ts";
import type { BenchOptions } from "./options.ts";
import { cpuMark } from "./proc.ts";
import { type StageFigures, stageFigures } from "./stage.ts";
import { feedOf, runWorker, spawnSimulator, workerOptions } from "./subprocess.ts";

/** A feed stage's figures, with the simulator's own CPU per tick. */
export interface FeedStage extends StageFigures {
  /** The simulator process's user + system CPU per tick sent (from /proc; undefined off Linux). */
  simulatorCpuUsPerTick: number | undefined;
}

/**
 * A feed stage's ceiling: the simulator at max rate sends `ticks` price events to a worker
 * that only counts the frames ("count", `sim_ticks_per_s`) or parses and checks them
 * ("parse", `parse_ticks_per_s`); timed from the simulator's first send to the last tick.
 */
export async function measureFeed(
  kind: "count" | "parse",
  options: BenchOptions,
  logger: Logger,
): Promise<FeedStage> {
  const n = options.ticks;
  logger.info(
    kind === "count"
      ? `Simulator ceiling: ${n.toLocaleString("en-US")} frames to a socket that counts them`
      : `Parse ceiling: ${n.toLocaleString("en-US")} frames through the client and checks`,
  );
  const sim = await spawnSimulator([
    "--rate",
    "max",
    "--symbols",
    String(options.symbols),
    "--max-ticks",
    String(n),
  ]);
  try {
    const before = await cpuMark(sim.pid, undefined);
    const result = await runWorker({
      kind,
      ticks: n,
      logLevel: options.logLevel,
      feed: feedOf(sim, options.symbols),
    }, workerOptions(options, kind === "count" ? "sim" : "parse"));
    const after = await cpuMark(sim.pid, undefined);
    const stats = await sim.stats();
    const verified = stats.price_events_sent === n && result.rejected === 0;
    const simulatorCpuS = before.simulator === undefined || after.simulator === undefined
      ? undefined
      : after.simulator - before.simulator;
    return {
      ...stageFigures(result, n, stats.first_price_sent_at ?? NaN, verified),
      simulatorCpuUsPerTick: simulatorCpuS === undefined ? undefined : simulatorCpuS * 1e6 / n,
    };
  } finally {
    await sim.stop();
  }
}
