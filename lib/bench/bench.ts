import type { Database } from "../db/connection.ts";
import type { Logger } from "../log.ts";
import { type DbStage, measureDb } from "./db_stage.ts";
import { type FeedStage, measureFeed } from "./feed_stages.ts";
import { type IngestRun, measureIngest } from "./ingest_run.ts";
import { copyLoad, insert100Load, type Load } from "./loads.ts";
import { describeMachine, type Machine } from "./machine.ts";
import type { BenchOptions } from "./options.ts";
import { loadAverage } from "./proc.ts";

/** Everything one bench run measured (a measurement skipped is undefined). */
export interface BenchResults {
  options: BenchOptions;
  machine: Machine;
  /** The 1-minute load average when the bench ended. */
  loadAfter: number | undefined;
  e2e: IngestRun;
  /** Stage ceilings, each measured alone. */
  sim: FeedStage | undefined;
  parse: FeedStage | undefined;
  db: DbStage | undefined;
  copy: Load | undefined;
  insert100: Load | undefined;
  /** The real ingest at half the end-to-end rate, at `steadyRate`, and at `lowRate`. */
  halfRate: IngestRun | undefined;
  steady: IngestRun | undefined;
  low: IngestRun | undefined;
}

const int = (x: number) => Math.round(x).toLocaleString("en-US");

/**
 * Measures tickpipe on the server of `admin`, each figure in a fresh database dropped
 * afterwards: end to end first, the loads of its rows, the stage ceilings, then the runs
 * below saturation (half the end-to-end rate, the steady rate, the low rate).
 */
export async function runBench(
  admin: Database,
  options: BenchOptions,
  logger: Logger,
): Promise<BenchResults> {
  const skip = options.skip;
  const machine = await describeMachine(admin);
  logger.info(
    `End to end: ${
      int(options.ticks)
    } ticks over ${options.symbols} symbols, simulator rate ${options.rate}`,
  );
  const e2e = await measureIngest(admin, options, {
    label: "e2e",
    rate: options.rate,
    ticks: options.ticks,
    readBack: !skip.has("copy") || !skip.has("insert100"),
  }, logger);
  const text = e2e.copyText ?? [];
  e2e.copyText = undefined;
  let copy: Load | undefined;
  if (!skip.has("copy")) {
    logger.info(`COPY: ${int(e2e.rowsInTable)} rows in one COPY ... FROM STDIN`);
    copy = await copyLoad(admin, text, e2e.rowsInTable);
  }
  let insert100: Load | undefined;
  if (!skip.has("insert100")) {
    logger.info(`100-row INSERT + COMMIT: the first ${int(options.insert100Ticks)} rows`);
    insert100 = await insert100Load(admin, text, options.insert100Ticks);
  }
  text.length = 0;
  const sim = skip.has("sim") ? undefined : await measureFeed("count", options, logger);
  const parse = skip.has("parse") ? undefined : await measureFeed("parse", options, logger);
  const db = skip.has("db") ? undefined : await measureDb(admin, options, logger);

  let halfRate: IngestRun | undefined;
  const half = Math.round(e2e.ticksPerS / 2);
  if (!skip.has("half-rate") && half >= 1) {
    const ticks = Math.max(1, Math.round(half * options.halfRateSeconds));
    logger.info(`Half rate: ${int(half)} ticks/s for ${options.halfRateSeconds} s`);
    halfRate = await measureIngest(admin, options, { label: "half", rate: half, ticks }, logger);
  }
  let steady: IngestRun | undefined;
  if (!skip.has("steady")) {
    const ticks = Math.max(1, Math.round(options.steadyRate * options.steadySeconds));
    logger.info(`Steady: ${int(options.steadyRate)} ticks/s for ${options.steadySeconds} s`);
    steady = await measureIngest(admin, options, {
      label: "steady",
      rate: options.steadyRate,
      ticks,
    }, logger);
  }
  let low: IngestRun | undefined;
  if (!skip.has("low-rate")) {
    const ticks = Math.max(1, Math.round(options.lowRate * options.lowRateSeconds));
    logger.info(
      `Low rate: ${options.lowRate} ticks/s for ${options.lowRateSeconds} s, polling count(*) every ~5 ms`,
    );
    low = await measureIngest(admin, options, {
      label: "low",
      rate: options.lowRate,
      ticks,
      queryable: true,
    }, logger);
  }
  return {
    options,
    machine,
    loadAfter: await loadAverage(),
    e2e,
    sim,
    parse,
    db,
    copy,
    insert100,
    halfRate,
    steady,
    low,
  };
}

/** True when every measurement's rows (or frames) verified. */
export function allVerified(r: BenchResults): boolean {
  const parts = [r.e2e, r.sim, r.parse, r.db, r.copy, r.insert100, r.halfRate, r.steady, r.low];
  return parts.every((part) => part === undefined || part.verified);
}
