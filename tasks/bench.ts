import { resolve } from "node:path";
import {
  configFromFlags,
  exitWhenDone,
  loggerFor,
  numberFlag,
  parseFlags,
  runMain,
} from "../lib/cli.ts";
import { UsageError, UserError } from "../lib/errors.ts";
import { openDatabase } from "../lib/db/connection.ts";
import { allVerified, runBench } from "../lib/bench/bench.ts";
import { type BenchOptions, type Measurement, MEASUREMENTS } from "../lib/bench/options.ts";
import { toJson } from "../lib/bench/report_json.ts";
import { toTable } from "../lib/bench/report_table.ts";
import { BATCHER_DEFAULTS } from "../lib/pipeline/batcher.ts";
import type { WriteMethod } from "../lib/pipeline/writer.ts";

const USAGE = `Usage: deno task bench [--ticks 1000000] [--symbols 50] [--rate max|N] [--json]
                      [--insert100-ticks N] [--half-rate-seconds 10]
                      [--steady-rate 1000] [--steady-seconds 60]
                      [--low-rate 20] [--low-rate-seconds 30]
                      [--batch-size 5000] [--flush-ms 100] [--method unnest|copy]
                      [--memory-cap N] [--skip ${MEASUREMENTS.join(",")}]
                      [--cpu-prof DIR]

Measures tickpipe on this machine, each figure in a fresh database on the configured
server (DATABASE_URL, else the embedded PostgreSQL), dropped afterwards. The ingester runs
in a process of its own with the ingest task's permissions and V8 flags; the simulator in
another (--symbols symbols, exactly the ticks asked for).
  end to end  the simulator at --rate (default max) -> client -> pipeline -> database,
              --ticks ticks: rate, CPU per tick, tick -> commit latency, RSS
  copy        the same rows in one COPY ... FROM STDIN (the database's ceiling)
  insert100   the first --insert100-ticks of them (default min(ticks, 200000)) as 100-row
              INSERTs, one COMMIT each (pre-built rows)
  sim         ceiling: simulator -> a socket that only counts frames
  parse       ceiling: simulator -> client -> the pipeline's checks, no database
  db          ceiling: synthetic events -> pipeline -> database, no socket
  half-rate   half the end-to-end rate for --half-rate-seconds: tick -> commit p99
  steady      --steady-rate ticks/s for --steady-seconds: the ingester's RSS at the end
  low-rate    --low-rate ticks/s for --low-rate-seconds: tick -> queryable
--skip leaves the named measurements out. --cpu-prof DIR writes each worker's V8 CPU
profile to DIR/<measurement>.cpuprofile (e2e, sim, parse, db, half, steady, low). Prints a table, or one JSON object with --json.
Exit 1 when any rows do not verify.`;

function positive(name: string, text: string | undefined, fallback: number, integer = true) {
  return numberFlag(name, text, USAGE, integer ? { min: 1, integer } : { min: Number.MIN_VALUE }) ??
    fallback;
}

function methodOf(text: string | undefined): WriteMethod | undefined {
  if (text === undefined || text === "copy" || text === "unnest") return text;
  throw new UsageError(`--method must be copy or unnest\n${USAGE}`);
}

function skipOf(text: string | undefined): Set<Measurement> {
  const names = (text ?? "").split(",").map((s) => s.trim()).filter((s) => s !== "");
  for (const name of names) {
    if (!(MEASUREMENTS as readonly string[]).includes(name)) {
      throw new UsageError(`--skip takes ${MEASUREMENTS.join(", ")}; got "${name}"\n${USAGE}`);
    }
  }
  return new Set(names as Measurement[]);
}

/** `tickpipe bench`: throughput, stage ceilings, latency, CPU and memory of ingest here. */
export function run(args: string[]): Promise<number> {
  return runMain(async () => {
    const { values } = parseFlags(
      args,
      {
        ticks: { type: "string" },
        symbols: { type: "string" },
        json: { type: "boolean" },
        rate: { type: "string" },
        "insert100-ticks": { type: "string" },
        "half-rate-seconds": { type: "string" },
        "steady-rate": { type: "string" },
        "steady-seconds": { type: "string" },
        "low-rate": { type: "string" },
        "low-rate-seconds": { type: "string" },
        "batch-size": { type: "string" },
        "flush-ms": { type: "string" },
        "memory-cap": { type: "string" },
        method: { type: "string" },
        skip: { type: "string" },
        "cpu-prof": { type: "string" },
      },
      USAGE,
      { maxPositionals: 0 },
    );
    const config = configFromFlags(values);
    const ticks = positive("ticks", values.ticks, 1_000_000);
    const options: BenchOptions = {
      ticks,
      symbols: positive("symbols", values.symbols, 50),
      rate: values.rate === undefined || values.rate === "max"
        ? "max"
        : positive("rate", values.rate, 0, false),
      insert100Ticks: Math.min(
        ticks,
        positive("insert100-ticks", values["insert100-ticks"], 200_000),
      ),
      halfRateSeconds: positive("half-rate-seconds", values["half-rate-seconds"], 10, false),
      steadyRate: positive("steady-rate", values["steady-rate"], 1000, false),
      steadySeconds: positive("steady-seconds", values["steady-seconds"], 60, false),
      lowRate: positive("low-rate", values["low-rate"], 20, false),
      lowRateSeconds: positive("low-rate-seconds", values["low-rate-seconds"], 30, false),
      pipeline: {
        maxBatch: positive("batch-size", values["batch-size"], BATCHER_DEFAULTS.maxBatch),
        maxWaitMs: positive("flush-ms", values["flush-ms"], BATCHER_DEFAULTS.maxWaitMs),
        memoryCap: values["memory-cap"] === undefined
          ? undefined
          : positive("memory-cap", values["memory-cap"], 0),
        method: methodOf(values.method),
      },
      poolSize: config.poolSize ?? 4,
      dataDir: config.dataDir,
      // The workers' lines would drown the bench's own: warnings and errors only, unless debugging.
      logLevel: config.log.level === "debug" ? "debug" : "warn",
      skip: skipOf(values.skip),
      cpuProfileDir: values["cpu-prof"] === undefined ? undefined : resolve(values["cpu-prof"]),
    };
    const logger = loggerFor(config);
    const admin = await openDatabase(config, { logger, max: 2 });
    try {
      const results = await runBench(admin, options, logger);
      console.log(values.json ? JSON.stringify(toJson(results)) : toTable(results));
      if (!allVerified(results)) {
        throw new UserError("Bench failed: some rows did not verify (see the table)");
      }
      return 0;
    } finally {
      await admin.close();
    }
  });
}

if (import.meta.main) exitWhenDone(await run(Deno.args));
