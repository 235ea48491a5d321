import { configFromFlags, loggerFor, parseFlags, runMain } from "../lib/cli.ts";
import { UsageError } from "../lib/errors.ts";
import { openDatabase } from "../lib/db/connection.ts";
import { checkSchema, DEFAULT_SYMBOLS, runIngest } from "../lib/ingest.ts";
import { clientOptionsFromConfig } from "../lib/twelvedata/mod.ts";

const USAGE = `Usage: tickpipe ingest [--symbols BTC/USD,ETH/USD,MSFT,AAPL] [--metrics-port 9464]
                       [--batch-size 5000] [--flush-ms 100] [--log-level L] [--log-format text|json]

Streams Twelve Data prices into crypto_ticks until SIGINT/SIGTERM, then closes the
WebSocket gracefully, writes everything it holds, and exits 0.`;

function positiveInt(name: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) {
    throw new UsageError(`--${name} must be a positive whole number\n${USAGE}`);
  }
  return n;
}

/** `tickpipe ingest`: the tutorial's WebsocketPipeline, production-grade. */
export function run(args: string[]): Promise<number> {
  return runMain(async () => {
    const { values } = parseFlags(args, {
      symbols: { type: "string" },
      "metrics-port": { type: "string" },
      "batch-size": { type: "string" },
      "flush-ms": { type: "string" },
    }, USAGE);
    const symbols = values.symbols
      ? values.symbols.split(",").map((s) => s.trim()).filter(Boolean)
      : DEFAULT_SYMBOLS;
    if (symbols.length === 0) throw new UsageError(`--symbols needs at least one symbol\n${USAGE}`);
    const metricsPort = values["metrics-port"] === undefined
      ? undefined
      : Number(values["metrics-port"]);
    if (
      metricsPort !== undefined &&
      !(Number.isInteger(metricsPort) && metricsPort >= 0 && metricsPort <= 65535)
    ) {
      throw new UsageError(`--metrics-port must be a port number\n${USAGE}`);
    }
    const maxBatch = positiveInt("batch-size", values["batch-size"]);
    const maxWaitMs = positiveInt("flush-ms", values["flush-ms"]);

    const config = configFromFlags(values);
    const logger = loggerFor(config);
    const twelveData = clientOptionsFromConfig(config.twelveData);
    const db = await openDatabase(config, { logger });
    const controller = new AbortController();
    const stop = () => controller.abort();
    Deno.addSignalListener("SIGINT", stop);
    Deno.addSignalListener("SIGTERM", stop);
    try {
      await checkSchema(db.sql);
      await runIngest(db.sql, {
        twelveData,
        symbols,
        dataDir: config.dataDir,
        signal: controller.signal,
        logger,
        metricsPort,
        pipeline: {
          ...(maxBatch ? { maxBatch } : {}),
          ...(maxWaitMs ? { maxWaitMs } : {}),
        },
      });
      return 0;
    } finally {
      Deno.removeSignalListener("SIGINT", stop);
      Deno.removeSignalListener("SIGTERM", stop);
      await db.close();
    }
  });
}

if (import.meta.main) Deno.exitCode = await run(Deno.args);
