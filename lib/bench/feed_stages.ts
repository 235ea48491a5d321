import type { Logger } from "../log.ts";
import type { BenchOptions } from "./options.ts";
import { type StageFigures, stageFigures } from "./stage.ts";
import { feedOf, runWorker, spawnSimulator } from "./subprocess.ts";

/**
 * A feed stage's ceiling: the simulator at max rate sends `ticks` price events to a worker
 * that only counts the frames ("count", `sim_ticks_per_s`) or parses and checks them
 * ("parse", `parse_ticks_per_s`); timed from the simulator's first send to the last tick.
 */
export async function measureFeed(
  kind: "count" | "parse",
  options: BenchOptions,
  logger: Logger,
): Promise<StageFigures> {
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
    const result = await runWorker({
      kind,
      ticks: n,
      logLevel: options.logLevel,
      feed: feedOf(sim, options.symbols),
    });
    const stats = await sim.stats();
    const verified = stats.price_events_sent === n && result.rejected === 0;
    return stageFigures(result, n, stats.first_price_sent_at ?? NaN, verified);
  } finally {
    await sim.stop();
  }
}
