import { configFromFlags, loggerFor, parseFlags, runMain } from "../lib/cli.ts";
import { UsageError } from "../lib/errors.ts";
import { startSimulator } from "../lib/simulator/mod.ts";
import { clientOptionsFromConfig, TwelveDataClient } from "../lib/twelvedata/mod.ts";

const USAGE = `Usage: deno run --allow-net --allow-env --allow-read=.env tasks/ws_bench.ts
         [--seconds 10] [--symbols BTC/USD,ETH/USD,...] [--in-process]

Measures how many price events per second the client parses. Point TWELVEDATA_WS_URL at a
simulator started with --rate max (run it in another process for a fair figure), or pass
--in-process to start one here (both then share one core).`;

/** `ws_bench`: prints the client's parse throughput against a simulator at --rate max. */
export function run(args: string[]): Promise<number> {
  return runMain(async () => {
    const { values } = parseFlags(args, {
      seconds: { type: "string" },
      symbols: { type: "string" },
      "in-process": { type: "boolean" },
    }, USAGE);
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    const seconds = Number(values.seconds ?? "10");
    if (!(seconds > 0)) throw new UsageError(`--seconds must be a number > 0\n${USAGE}`);
    const symbols = values.symbols ?? "BTC/USD,ETH/USD,ETH/BTC,SOL/USD,AAPL,MSFT,EUR/USD,GBP/USD";
    const sim = values["in-process"] ? await startSimulator({ rate: "max" }) : undefined;
    const extra = sim
      ? { TWELVEDATA_WS_URL: sim.wsUrl, TWELVEDATA_API_URL: sim.apiUrl, TWELVEDATA_API_KEY: "demo" }
      : {};
    const config = configFromFlags(values, extra);
    let ticks = 0;
    const client = new TwelveDataClient({
      ...clientOptionsFromConfig(config.twelveData),
      logger: loggerFor(config),
      onEvent: (event) => {
        if (event.event === "price") ticks++;
      },
    });
    client.subscribe(symbols);
    await client.start();
    await new Promise((resolve) => setTimeout(resolve, 1000)); // warm up
    const startTicks = ticks;
    const started = performance.now();
    await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
    const elapsed = (performance.now() - started) / 1000;
    const counted = ticks - startTicks;
    await client.close();
    await sim?.close();
    const stats = client.stats();
    console.log(
      `${Math.round(counted / elapsed)} price events/s parsed over ${elapsed.toFixed(1)} s ` +
        `(${counted} events, malformed ${stats.malformed}, ${Deno.build.os}/${Deno.build.arch}, ` +
        `${navigator.hardwareConcurrency} cores, simulator ${
          sim ? "in-process" : "separate process"
        })`,
    );
    return 0;
  });
}

if (import.meta.main) Deno.exitCode = await run(Deno.args);
