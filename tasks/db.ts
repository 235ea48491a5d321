import { configFromFlags, exitWhenDone, loggerFor, parseFlags, runMain } from "../lib/cli.ts";
import { UsageError } from "../lib/errors.ts";
import { startEmbedded, stopEmbedded } from "../lib/db/embedded.ts";

const USAGE = `Usage: tickpipe db <start|stop|psql>

  start   start (or reuse) the embedded PostgreSQL under the data directory
  stop    stop it (its data stays in the data directory)
  psql    print a psql command line that connects to it (no password shown)`;

/** `tickpipe db`: manages the embedded PostgreSQL used when no DATABASE_URL is set. */
export function run(args: string[]): Promise<number> {
  return runMain(async () => {
    const { values, positionals } = parseFlags(args, {}, USAGE);
    const config = configFromFlags(values);
    const logger = loggerFor(config);
    switch (positionals[0]) {
      case "start": {
        const server = await startEmbedded(config.dataDir, { port: config.embeddedPort, logger });
        console.log(`${server.started ? "Started" : "Already running"}: ${server.dataDir}`);
        console.log(`Connect with: ${server.psql}`);
        return 0;
      }
      case "psql": {
        const server = await startEmbedded(config.dataDir, { port: config.embeddedPort, logger });
        console.log(server.psql);
        return 0;
      }
      case "stop": {
        const stopped = await stopEmbedded(config.dataDir);
        console.log(
          stopped ? "Stopped the embedded PostgreSQL" : "The embedded PostgreSQL was not running",
        );
        return 0;
      }
      default:
        throw new UsageError(USAGE);
    }
  });
}

if (import.meta.main) exitWhenDone(await run(Deno.args));
