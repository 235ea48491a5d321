/**
 * What the bench asks of a worker process (`tasks/_bench_worker.ts`, one measurement each)
 * and what the worker answers: JSON on its stdin and stdout, parsed with these schemas.
 */
import { z } from "zod";
import type { DatabaseConfig } from "../config.ts";

const count = z.number().int().nonnegative();
/** JSON has no NaN: a figure that could not be taken travels as null. */
const figure = z.number().nullable().transform((v) => v ?? NaN);

const Feed = z.object({
  wsUrl: z.string(),
  apiUrl: z.string(),
  apiKey: z.string(),
  symbols: z.array(z.string()).min(1),
});

const Database = z.object({
  host: z.string(),
  port: z.number().int(),
  user: z.string(),
  password: z.string().optional(),
  database: z.string(),
  tls: z.enum(["disable", "require", "verify-full"]),
  source: z.string(),
});

/** The connection settings of a job (a password absent from the JSON is undefined). */
export function databaseOf(job: { database: z.output<typeof Database> }): DatabaseConfig {
  return { ...job.database, password: job.database.password };
}

const Pipeline = z.object({
  maxBatch: z.number().int().positive(),
  maxWaitMs: z.number().positive(),
  memoryCap: z.number().int().positive().optional(),
  method: z.enum(["copy", "unnest"]).optional(),
});

const Common = {
  ticks: z.number().int().positive(),
  logLevel: z.enum(["debug", "info", "warn", "error"]),
};

/** One measurement for a worker. */
export const Job = z.discriminatedUnion("kind", [
  /** Simulator → a WebSocket that only counts price frames. */
  z.object({ kind: z.literal("count"), feed: Feed, ...Common }),
  /** Simulator → the Twelve Data client → the pipeline's checks → nothing. */
  z.object({ kind: z.literal("parse"), feed: Feed, ...Common }),
  /** Synthetic price events, made in process → the pipeline (sequencer, batcher, writer). */
  z.object({
    kind: z.literal("pipeline"),
    symbols: count,
    database: Database,
    poolSize: z.number().int().positive(),
    dataDir: z.string(),
    pipeline: Pipeline,
    ...Common,
  }),
  /** The real ingest job (`runIngest`): simulator → client → pipeline → database. */
  z.object({
    kind: z.literal("ingest"),
    feed: Feed,
    database: Database,
    poolSize: z.number().int().positive(),
    dataDir: z.string(),
    pipeline: Pipeline,
    /** Also poll `count(*)` to time tick receipt → queryable (low rates only). */
    queryable: z.boolean(),
    ...Common,
  }),
]);
export type Job = z.output<typeof Job>;
export type JobOf<K extends Job["kind"]> = Extract<Job, { kind: K }>;

const MemorySample = z.object({
  atMs: z.number(),
  rssMb: z.number(),
  heapMb: z.number(),
  heapTotalMb: z.number(),
  externalMb: z.number(),
  done: count,
});

const Latency = z.object({ count, p50Ms: figure, p99Ms: figure, maxMs: figure });

/** What a worker measured. */
export const WorkerResult = z.object({
  /** Ticks done: frames counted, events checked, or rows committed. */
  done: count,
  /** Events the checks refused, or frames the client found malformed. */
  rejected: count,
  /** Epoch ms (sub-ms) of the first tick received or pushed, and of the moment the last was done. */
  firstAt: figure,
  lastAt: figure,
  /** User + system CPU of the worker from just before it connected to the last tick done, µs. */
  cpuUs: z.number(),
  /** Time spent in the bench's own per-batch hook inside that CPU time, µs. */
  hookUs: z.number(),
  /** Nothing was done for 30 s: the worker gave up. */
  stalled: z.boolean(),
  samples: z.array(MemorySample),
  /** Tick receipt (or push) → COMMIT, for every row. */
  latency: Latency.nullable(),
  /** Tick receipt → visible to `count(*)` on another connection, with the poll period. */
  queryable: Latency.extend({ pollPeriodMs: figure }).nullable(),
  /** The pipeline's own counters at the end. */
  pipeline: z.object({ batches: count, spooled: count, dropped: count, written: count }).nullable(),
});
export type WorkerResult = z.output<typeof WorkerResult>;
