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
import { openDatabase } from "../lib/db/connection.ts";
import { migrate, recordedMode } from "../lib/db/migrations.ts";
import { chooseMode, describeServer } from "../lib/db/server_info.ts";
import { type CandleInterval, fetchCandles, formatCandles } from "../lib/candles/mod.ts";
import { DEFAULT_SYMBOLS, runIngest, summaryLine } from "../lib/ingest/mod.ts";
import { startSimulator } from "../lib/simulator/mod.ts";
import { type ChartServer, serveChart } from "../lib/chart/server.ts";

const USAGE =
  `Usage: tickpipe demo [--duration 20] [--rate 40] [--symbols BTC/USD,ETH/USD,MSFT,AAPL]
                    [--chart [--port 8080] [--host 127.0.0.1]]

The whole pipeline with no account and no database server: starts the embedded
PostgreSQL (unless DATABASE_URL is set) and the Twelve Data simulator, runs setup,
ingests for --duration seconds, then prints BTC/USD's candles.

  --chart     also serve the live chart (as \`tickpipe chart\` does) and keep ingesting
              until Ctrl-C (or --duration, when given): open the URL it prints and
              watch the minute candles form`;

/** `tickpipe demo`: setup, simulator, ingest for a while, then the candles. */
export function run(args: string[]): Promise<number> {
  return runMain(async () => {
    const { values } = parseFlags(args, {
      duration: { type: "string" },
      rate: { type: "string", default: "40" },
      symbols: { type: "string" },
      chart: { type: "boolean", default: false },
      port: { type: "string", default: "8080" },
      host: { type: "string", default: "127.0.0.1" },
    }, USAGE);
    // With --chart the demo runs until Ctrl-C unless told otherwise.
    const durationS = numberFlag("duration", values.duration, USAGE, { min: 1, max: 86_400 }) ??
      (values.chart ? undefined : 20);
    const port = numberFlag("port", values.port, USAGE, { min: 0, max: 65535, integer: true })!;
    const rate = numberFlag("rate", values.rate, USAGE, { min: 1, max: 100_000 })!;
    const symbols = symbolsFlag(values.symbols, USAGE) ?? DEFAULT_SYMBOLS;
    const config = configFromFlags(values);
    const logger = loggerFor(config);

    const db = await openDatabase(config, { logger });
    const simulator = await startSimulator({ apiKey: "demo", rate, seed: 1, symbols, logger });
    let chart: ChartServer | undefined;
    try {
      const info = db.server;
      const mode = chooseMode(info, { recorded: await recordedMode(db.sql) });
      console.log(describeServer(info, mode));
      const migrated = await migrate(db.sql, {
        mode,
        timescaleVersion: info.timescaleVersion,
        logger,
      });
      console.log(
        migrated.applied.length > 0
          ? `Schema created (${migrated.applied.map((m) => m.name).join(", ")})`
          : "Schema up to date",
      );
      const symbol = symbols.includes("BTC/USD") ? "BTC/USD" : symbols[0]!;
      if (values.chart) {
        chart = serveChart({
          sql: db.sql,
          database: db.config,
          hostname: values.host,
          port,
          logger,
        });
      }
      console.log(
        `Simulator on ${simulator.wsUrl} at ${rate} ticks/s; ingesting ${symbols.join(", ")} ${
          durationS === undefined ? "until Ctrl-C" : `for ${durationS} s`
        }...`,
      );
      if (chart) {
        console.log(
          `Chart on ${chart.url}?symbol=${encodeURIComponent(symbol)}&interval=1m ` +
            `(open it: ${symbol} minute candles form live; Ctrl-C stops)`,
        );
      }
      let summary;
      try {
        using stop = stopSignal({
          afterMs: durationS === undefined ? undefined : durationS * 1000,
        });
        summary = await runIngest(db.sql, {
          twelveData: { apiKey: "demo", wsUrl: simulator.wsUrl, apiUrl: simulator.apiUrl },
          symbols,
          dataDir: config.dataDir,
          signal: stop.signal,
          logger,
          summaryEveryMs: 5_000,
        });
      } finally {
        await chart?.close();
        chart = undefined;
      }
      const sent = simulator.stats().price_events_sent;
      console.log(`\nIngested: ${summaryLine(summary)}`);
      console.log(
        `The simulator sent ${sent} ticks; ${summary.pipeline.written} rows were written.`,
      );

      const now = Date.now();
      const views: [CandleInterval, number, string][] = [
        ["1d", 14 * 86_400_000, "daily candles, last 14 days"],
        ["1h", 86_400_000, "hourly candles, last 24 hours"],
        ["1m", 10 * 60_000, "one-minute candles, last 10 minutes"],
      ];
      for (const [interval, span, title] of views) {
        const from = new Date(Math.floor((now - span) / 60_000) * 60_000);
        const candles = await fetchCandles(db.sql, {
          symbol,
          interval,
          from,
          to: new Date(now + 60_000),
        });
        console.log(`\n${symbol} ${title}:`);
        console.log(formatCandles(candles, { format: "table", interval }).trimEnd());
      }
      console.log(`
Look further:
  deno task chart                               the candles on a live chart: open http://127.0.0.1:8080/
                                                (deno task demo --chart: ingest and chart until Ctrl-C)
  deno task candles ${symbol} 14                  daily candles (also --interval 1h|1m, --format csv|json)
  deno task candles ETH/USD --interval 1m       minute candles of another symbol${
        db.embedded
          ? `\n  ${db.embedded.psql}\n      then: SELECT * FROM one_day_candle WHERE symbol = 'BTC/USD' ORDER BY bucket;`
          : ""
      }
  deno task simulate & TWELVEDATA_WS_URL=ws://127.0.0.1:8765/v1/quotes/price \\
    TWELVEDATA_API_URL=http://127.0.0.1:8765 TWELVEDATA_API_KEY=demo deno task ingest
  deno task db stop                             stop the embedded PostgreSQL (its data stays in ${config.dataDir}/)`);
      return 0;
    } finally {
      await chart?.close();
      await simulator.close();
      await db.close();
    }
  });
}

if (import.meta.main) exitWhenDone(await run(Deno.args));
