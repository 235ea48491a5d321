import {
  configFromFlags,
  loggerFor,
  numberFlag,
  parseFlags,
  runMain,
  symbolsFlag,
} from "../lib/cli.ts";
import { openDatabase } from "../lib/db/connection.ts";
import { checkSchema, DEFAULT_SYMBOLS, runIngest } from "../lib/ingest.ts";
import { clientOptionsFromConfig } from "../lib/twelvedata/mod.ts";

const USAGE = `Usage: tickpipe ingest [--symbols BTC/USD,ETH/USD,MSFT,AAPL] [--metrics-port 9464]
                       [--batch-size 5000] [--flush-ms 100] [--log-level L] [--log-format text|json]

Streams Twelve Data prices into crypto_ticks until SIGINT/SIGTERM, then closes the
WebSocket gracefully, writes everything it holds, and exits 0.`;

/** `tickpipe ingest`: the tutorial's WebsocketPipeline, production-grade. */
export function run(args: string[]): Promise<number> {
  return runMain(async () => {
    const { values } = parseFlags(args, {
      symbols: { type: "string" },
      "metrics-port": { type: "string" },
      "batch-size": { type: "string" },
      "flush-ms": { type: "string" },
    }, USAGE);
    const symbols = symbolsFlag(values.symbols, USAGE) ?? DEFAULT_SYMBOLS;
    const metricsPort = numberFlag("metrics-port", values["metrics-port"], USAGE, {
      min: 0,
      max: 65535,
      integer: true,
    });
    const maxBatch = numberFlag("batch-size", values["batch-size"], USAGE, {
      min: 1,
      integer: true,
    });
    const maxWaitMs = numberFlag("flush-ms", values["flush-ms"], USAGE, { min: 1, integer: true });

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
