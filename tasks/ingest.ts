import {
  configFromFlags,
  exitWhenDone,
  loggerFor,
  numberFlag,
  parseFlags,
  runMain,
  stopSignal,
  symbolsFlag,
} from "../lib/cli.ts";
import { connect, openDatabase } from "../lib/db/connection.ts";
import { checkSchema, DEFAULT_SYMBOLS, runIngest } from "../lib/ingest/mod.ts";
import { clientOptionsFromConfig } from "../lib/twelvedata/mod.ts";

const USAGE = `Usage: tickpipe ingest [--symbols BTC/USD,ETH/USD,MSFT,AAPL] [--metrics-port 9464]
                       [--batch-size 5000] [--flush-ms 100] [--no-standby] [--lease-timeout 20]
                       [--no-backfill] [--backfill-budget 30] [--log-level L] [--log-format text|json]

Streams Twelve Data prices into crypto_ticks until SIGINT/SIGTERM, then closes the
WebSocket gracefully, writes everything it holds, and exits 0.

One writer per symbol: a symbol another ingest process holds is stood by for and taken
over when that process stops (--no-standby: exit 1 instead). --lease-timeout: seconds
after which a silent holder (vanished host, frozen process) loses its leases.

Every gap in the stream (a drop, a stall, a refused symbol, a stop, a hand-over) goes to
the gap log (deno task gaps); after a reconnect the gap is filled from REST 1-minute bars
in the background, within --backfill-budget API credits an hour (default 30; 1 credit
fills up to 4,999 minutes of one symbol), unless --no-backfill.`;

const DEFAULT_BACKFILL_BUDGET = 30;

/** `tickpipe ingest`: the tutorial's WebsocketPipeline, production-grade. */
export function run(args: string[]): Promise<number> {
  return runMain(async () => {
    const { values } = parseFlags(args, {
      symbols: { type: "string" },
      "metrics-port": { type: "string" },
      "batch-size": { type: "string" },
      "flush-ms": { type: "string" },
      "no-standby": { type: "boolean" },
      "lease-timeout": { type: "string" },
      "no-backfill": { type: "boolean" },
      "backfill-budget": { type: "string" },
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
    const leaseTimeoutS = numberFlag("lease-timeout", values["lease-timeout"], USAGE, {
      min: 2,
      max: 3600,
    });
    const budget = numberFlag("backfill-budget", values["backfill-budget"], USAGE, {
      min: 1,
      integer: true,
    }) ?? DEFAULT_BACKFILL_BUDGET;

    const config = configFromFlags(values);
    const logger = loggerFor(config);
    const twelveData = clientOptionsFromConfig(config.twelveData);
    const db = await openDatabase(config, { logger });
    using stop = stopSignal();
    try {
      await checkSchema(db.sql);
      await runIngest(db.sql, {
        twelveData,
        symbols,
        dataDir: config.dataDir,
        signal: stop.signal,
        logger,
        metricsPort,
        pipeline: {
          ...(maxBatch ? { maxBatch } : {}),
          ...(maxWaitMs ? { maxWaitMs } : {}),
        },
        lease: {
          // A session of its own, never replaced behind the lease's back.
          connect: () =>
            connect(db.config, {
              max: 1,
              idleTimeout: 0,
              maxLifetime: 0,
              fetchTypes: false,
              connectTimeout: 5,
              applicationName: "tickpipe lease",
              logger,
            }),
          standby: !values["no-standby"],
          ...(leaseTimeoutS ? { timeoutMs: leaseTimeoutS * 1000 } : {}),
        },
        backfill: values["no-backfill"] ? undefined : { perHour: budget },
      });
      return 0;
    } finally {
      await db.close();
    }
  });
}

if (import.meta.main) exitWhenDone(await run(Deno.args));
