import {
  configFromFlags,
  exitWhenDone,
  loggerFor,
  numberFlag,
  parseFlags,
  runMain,
  stopSignal,
} from "../lib/cli.ts";
import { describeDatabaseError, openPool } from "../lib/db/connection.ts";
import { serveChart } from "../lib/chart/server.ts";

const USAGE = `Usage: tickpipe chart [--port 8080] [--host 127.0.0.1]

Serves a live candlestick chart of the candles (and its JSON API) until Ctrl-C:
open the URL it prints. It reads the database the other tasks use (DATABASE_URL, or
the embedded PostgreSQL).

  --port P    port to listen on (default 8080; 0 picks a free one)
  --host H    address to listen on (default 127.0.0.1, this machine only; 0.0.0.0
              shows the chart, and its API, to your whole network)`;

/** `tickpipe chart`: the candlestick page and its API, until SIGINT/SIGTERM. */
export function run(args: string[]): Promise<number> {
  return runMain(async () => {
    const { values } = parseFlags(args, {
      port: { type: "string", default: "8080" },
      host: { type: "string", default: "127.0.0.1" },
    }, USAGE);
    const port = numberFlag("port", values.port, USAGE, { min: 0, max: 65535, integer: true })!;
    const config = configFromFlags(values);
    const logger = loggerFor(config);
    // The chart waits for a database that is down, so that the page can say so and recover.
    const db = await openPool(config, { logger });
    try {
      await db.sql`SELECT 1`.catch((error) =>
        logger.warn(
          `${
            describeDatabaseError(error, db.config)
          }; serving the chart anyway: it shows this and recovers when the database answers`,
        )
      );
      const chart = serveChart({
        sql: db.sql,
        database: db.config,
        hostname: values.host,
        port,
        logger,
      });
      console.log(`Chart on ${chart.url} (Ctrl-C to stop)`);
      using stop = stopSignal();
      await stop.stopped;
      await chart.close();
      return 0;
    } finally {
      await db.close();
    }
  });
}

if (import.meta.main) exitWhenDone(await run(Deno.args));
