import { exitWhenDone, numberFlag, parseFlags, runMain, stopSignal } from "../lib/cli.ts";
import { UsageError } from "../lib/errors.ts";
import { type LogFormat, Logger, type LogLevel } from "../lib/log.ts";
import { type SimulatorOptions, startSimulator } from "../lib/simulator/mod.ts";
import { splitSymbols } from "../lib/twelvedata/symbols.ts";

const USAGE = `Usage: deno task simulate [--port 8765] [--api-key demo] [--rate 20|max] [--seed 1]
                         [--symbols BTC/USD,AAPL,...|N] [--drop-every SEC] [--stall-every SEC]
                         [--stall-ms MS] [--malformed-every SEC] [--malformed-count N]
                         [--null-arrays] [--graded-status] [--messages-variant] [--refuse-key]
                         [--rest-limit N] [--rest-limit-day N] [--max-ticks N] [--log-level LEVEL]
                         [--log-format text|json]

Serves a Twelve Data look-alike on 127.0.0.1: the WebSocket at /v1/quotes/price, REST
(/time_series, /quote, /cryptocurrencies, /api_usage), GET /stats, and faults by flag or
by POST /control/drop, /control/stall?ms=5000, /control/malformed?count=10,
/control/edge?count=4, /control/refuse-key?on=1, /control/rate?value=max,
/control/credits?per_minute=8&per_day=800&as=http|body (REST credit limits: a 429, as
HTTP 429 or as an error body with HTTP 200, past them; --rest-limit, --rest-limit-day).
/time_series serves the 1-minute bars of every tick the market made since the start
(sent or not: the market goes on while a client is disconnected), synthetic before.
--symbols adds symbols to the built-in catalog; a number N adds SYM001/USD..SYMnnn/USD.
--max-ticks N stops sending price events after N in total (benchmarks: exactly N ticks).`;

/** `simulate`: runs the Twelve Data simulator until Ctrl-C. */
export function run(args: string[]): Promise<number> {
  return runMain(async () => {
    const { values } = parseFlags(
      args,
      {
        port: { type: "string" },
        "api-key": { type: "string" },
        rate: { type: "string" },
        seed: { type: "string" },
        symbols: { type: "string" },
        "drop-every": { type: "string" },
        "stall-every": { type: "string" },
        "stall-ms": { type: "string" },
        "malformed-every": { type: "string" },
        "malformed-count": { type: "string" },
        "null-arrays": { type: "boolean" },
        "graded-status": { type: "boolean" },
        "messages-variant": { type: "boolean" },
        "refuse-key": { type: "boolean" },
        "rest-limit": { type: "string" },
        "rest-limit-day": { type: "string" },
        "max-ticks": { type: "string" },
      },
      USAGE,
      { maxPositionals: 0 },
    );
    const level = values["log-level"] ?? "info";
    const format = values["log-format"] ?? "text";
    if (!["debug", "info", "warn", "error"].includes(level)) {
      throw new UsageError(`--log-level must be debug, info, warn or error\n${USAGE}`);
    }
    if (format !== "text" && format !== "json") {
      throw new UsageError(`--log-format must be text or json\n${USAGE}`);
    }
    const logger = new Logger({ level: level as LogLevel, format: format as LogFormat });
    const rate = values.rate === "max"
      ? "max"
      : numberFlag("rate", values.rate ?? "20", USAGE, { min: 0.001 });
    const options: SimulatorOptions = {
      port: numberFlag("port", values.port ?? "8765", USAGE, { min: 0, max: 65535 }),
      apiKey: values["api-key"] ?? "demo",
      rate: rate ?? 20,
      seed: numberFlag("seed", values.seed ?? "1", USAGE, { min: 0 }),
      subscribeStatus: {
        nullArrays: values["null-arrays"] ?? false,
        graded: values["graded-status"] ?? false,
        messagesVariant: values["messages-variant"] ?? false,
      },
      refuseKey: values["refuse-key"] ?? false,
      logger,
    };
    const restLimit = numberFlag("rest-limit", values["rest-limit"], USAGE, { min: 1 });
    if (restLimit !== undefined) options.restLimitPerMinute = restLimit;
    const restLimitDay = numberFlag("rest-limit-day", values["rest-limit-day"], USAGE, {
      min: 1,
      integer: true,
    });
    if (restLimitDay !== undefined) options.restLimitPerDay = restLimitDay;
    const maxTicks = numberFlag("max-ticks", values["max-ticks"], USAGE, { min: 0, integer: true });
    if (maxTicks !== undefined) options.maxTicks = maxTicks;
    if (values.symbols !== undefined) {
      if (/^\d+$/.test(values.symbols)) options.generatedSymbols = Number(values.symbols);
      else options.symbols = splitSymbols(values.symbols);
    }
    const dropEvery = numberFlag("drop-every", values["drop-every"], USAGE, { min: 0.1 });
    const stallEvery = numberFlag("stall-every", values["stall-every"], USAGE, { min: 0.1 });
    const stallMs = numberFlag("stall-ms", values["stall-ms"], USAGE, { min: 0 }) ?? 15_000;
    const malformedEvery = numberFlag("malformed-every", values["malformed-every"], USAGE, {
      min: 0.1,
    });
    const malformedCount =
      numberFlag("malformed-count", values["malformed-count"], USAGE, { min: 1 }) ?? 5;

    let sim;
    try {
      sim = await startSimulator(options);
    } catch (error) {
      if (error instanceof Deno.errors.AddrInUse) {
        throw new UsageError(
          `Cannot listen on port ${options.port}: already in use (try --port 0)`,
        );
      }
      throw error;
    }
    logger.info("Simulator listening", { ws: sim.wsUrl, api: sim.apiUrl, rate: options.rate });
    const timers: ReturnType<typeof setInterval>[] = [];
    if (dropEvery) timers.push(setInterval(() => void sim.drop(), dropEvery * 1000));
    if (stallEvery) timers.push(setInterval(() => sim.stall(stallMs), stallEvery * 1000));
    if (malformedEvery) {
      timers.push(setInterval(() => sim.malformed(malformedCount), malformedEvery * 1000));
    }
    let previous = 0;
    timers.push(setInterval(() => {
      const stats = sim.stats();
      logger.info("Simulator stats", {
        connections: stats.connections,
        price_events_sent: stats.price_events_sent,
        per_second: Math.round((stats.price_events_sent - previous) / 10),
        malformed_sent: stats.malformed_sent,
      });
      previous = stats.price_events_sent;
    }, 10_000));

    {
      using stop = stopSignal();
      await stop.stopped;
    }
    for (const timer of timers) clearInterval(timer);
    await sim.close();
    logger.info("Simulator stopped", { price_events_sent: sim.stats().price_events_sent });
    return 0;
  });
}

if (import.meta.main) exitWhenDone(await run(Deno.args));
