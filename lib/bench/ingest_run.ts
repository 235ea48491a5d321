import type { Buffer } from "node:buffer";
import type { Database } from "../db/connection.ts";
import type { Logger } from "../log.ts";
import type { MemorySample } from "./meter.ts";
import type { LatencySummary } from "./latency.ts";
import { readBack } from "./loads.ts";
import type { BenchOptions } from "./options.ts";
import { cpuDelta, type CpuMark, cpuMark, postmasterOf } from "./proc.ts";
import { countRows, scratchDatabase } from "./scratch.ts";
import { type StageFigures, stageFigures } from "./stage.ts";
import { feedOf, runWorker, spawnSimulator, workerOptions } from "./subprocess.ts";

/** One run of the real ingest job in a worker, and what it measured. */
export interface IngestRun extends StageFigures {
  /** The simulator's rate: "max" or ticks/s. */
  rate: number | "max";
  rowsInTable: number;
  duplicates: number;
  simulatorSent: number;
  /** Ticks/s from the first tick received rather than the first sent. */
  ticksPerSFromReceipt: number;
  /** Tick receipt → COMMIT, every row. */
  commit: LatencySummary;
  /** Tick receipt → visible to another connection (`queryable` runs). */
  queryable: (LatencySummary & { pollPeriodMs: number }) | undefined;
  batches: number;
  spooled: number;
  dropped: number;
  /** The ingester's memory every 100 ms, the first before it connected. */
  samples: MemorySample[];
  /** CPU seconds of the ingester, the simulator and PostgreSQL over the run. */
  cpu: CpuMark & { ingester: number };
  /** CPU time of the bench's own per-batch hook in the ingester (subtracted), ms. */
  hookMs: number;
  /** The rows as COPY text (`readBack` runs), for COPY and the 100-row INSERTs. */
  copyText: Buffer[] | undefined;
}

/** A run of `ticks` ticks with the simulator at `rate`. */
export interface IngestRunSpec {
  label: string;
  rate: number | "max";
  ticks: number;
  /** Also time tick receipt → queryable (a poller on another connection). */
  queryable?: boolean;
  /** Keep the rows, as COPY text, for the load measurements. */
  readBack?: boolean;
}

/**
 * Runs the real ingest job (`runIngest`) in a worker against a simulator in its own
 * process sending exactly `ticks` ticks at `rate`, into a fresh database; checks the rows
 * (count = sent = ticks, no duplicate `(symbol, seq)`, nothing dropped). Timed from the
 * simulator's first send to the last commit.
 */
export async function measureIngest(
  admin: Database,
  options: BenchOptions,
  spec: IngestRunSpec,
  logger: Logger,
): Promise<IngestRun> {
  const n = spec.ticks;
  const sim = await spawnSimulator([
    "--rate",
    String(spec.rate),
    "--symbols",
    String(options.symbols),
    "--max-ticks",
    String(n),
  ]);
  const db = await scratchDatabase(admin, spec.label, 1);
  await Deno.mkdir(options.dataDir, { recursive: true });
  const dataDir = await Deno.makeTempDir({ dir: options.dataDir, prefix: "bench-" });
  try {
    const [backend] = await db.sql<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`;
    const postmaster = await postmasterOf(backend!.pid);
    const before = await cpuMark(sim.pid, postmaster);
    const result = await runWorker({
      kind: "ingest",
      ticks: n,
      logLevel: options.logLevel,
      feed: feedOf(sim, options.symbols),
      database: db.config,
      poolSize: options.poolSize,
      dataDir,
      pipeline: options.pipeline,
      queryable: spec.queryable ?? false,
    }, workerOptions(options, spec.label));
    const cpu = cpuDelta(before, await cpuMark(sim.pid, postmaster));
    const stats = await sim.stats();
    await sim.stop();
    const { rows, duplicates } = await countRows(db.sql);
    const pipeline = result.pipeline!;
    const verified = rows === n && duplicates === 0 && stats.price_events_sent === n &&
      pipeline.dropped === 0 && result.rejected === 0 &&
      (!spec.queryable || result.queryable?.count === n);
    const figures = stageFigures(result, n, stats.first_price_sent_at ?? NaN, verified);
    if (spec.readBack) {
      logger.info(`Reading back ${rows.toLocaleString("en-US")} rows as COPY text`);
    }
    return {
      ...figures,
      rate: spec.rate,
      rowsInTable: rows,
      duplicates,
      simulatorSent: stats.price_events_sent,
      ticksPerSFromReceipt: n / ((result.lastAt - result.firstAt) / 1000),
      commit: result.latency!,
      queryable: result.queryable ?? undefined,
      batches: pipeline.batches,
      spooled: pipeline.spooled,
      dropped: pipeline.dropped,
      samples: result.samples,
      cpu: { ...cpu, ingester: result.cpuUs / 1e6 },
      hookMs: result.hookUs / 1000,
      copyText: spec.readBack ? await readBack(db.sql) : undefined,
    };
  } finally {
    await sim.stop();
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    await db.drop();
  }
}
