import type { LogLevel } from "../log.ts";
import type { WriteMethod } from "../pipeline/writer.ts";

/** The measurements besides end to end, by the name `--skip` takes. */
export const MEASUREMENTS = [
  "sim",
  "parse",
  "db",
  "copy",
  "insert100",
  "half-rate",
  "steady",
  "low-rate",
] as const;
export type Measurement = (typeof MEASUREMENTS)[number];

/** What `deno task bench` measures, and how. */
export interface BenchOptions {
  /** Ticks of the end-to-end run and of each stage ceiling. */
  ticks: number;
  /** Symbols SYM001/USD... the simulator serves. */
  symbols: number;
  /** The simulator's rate in the end-to-end run: "max", or ticks per second. */
  rate: number | "max";
  /** Rows of the 100-row INSERT measurement (a sample of the end-to-end rows). */
  insert100Ticks: number;
  /** Length of the run at half the end-to-end rate. */
  halfRateSeconds: number;
  /** The steady run: its rate (ticks/s) and length; its RSS at the end is `steady_rss_mb`. */
  steadyRate: number;
  steadySeconds: number;
  /** The low-rate run (tick receipt → queryable): its rate and length. */
  lowRate: number;
  lowRateSeconds: number;
  /** The pipeline's settings in every run. */
  pipeline: {
    maxBatch: number;
    maxWaitMs: number;
    /** Rows in memory before the spool (the pipeline's default when undefined). */
    memoryCap?: number | undefined;
    method?: WriteMethod | undefined;
  };
  /** Connections of each ingester's pool. */
  poolSize: number;
  /** Spool directories of the runs go under this (and are removed). */
  dataDir: string;
  /** The workers' log level. */
  logLevel: LogLevel;
  skip: ReadonlySet<Measurement>;
  /** Each worker writes its V8 CPU profile here, `<measurement>.cpuprofile` (`--cpu-prof`). */
  cpuProfileDir?: string | undefined;
}
