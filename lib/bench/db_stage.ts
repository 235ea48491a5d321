import type { Database } from "../db/connection.ts";
import type { Logger } from "../log.ts";
import type { BenchOptions } from "./options.ts";
import { countRows, scratchDatabase } from "./scratch.ts";
import { type StageFigures, stageFigures } from "./stage.ts";
import { runWorker, workerOptions } from "./subprocess.ts";

/** The database stage's figures, with the rows found in the table. */
export interface DbStage extends StageFigures {
  rowsInTable: number;
  duplicates: number;
}

/**
 * The database stage's ceiling (`db_ticks_per_s`): `ticks` synthetic price events, made in
 * the worker, through the real pipeline (sequencer, batcher, writer) into a fresh database:
 * no WebSocket, no parsing. Timed from the first push to the last commit.
 */
export async function measureDb(
  admin: Database,
  options: BenchOptions,
  logger: Logger,
): Promise<DbStage> {
  const n = options.ticks;
  logger.info(
    `Database ceiling: ${n.toLocaleString("en-US")} synthetic events through the pipeline`,
  );
  const db = await scratchDatabase(admin, "db", 1);
  await Deno.mkdir(options.dataDir, { recursive: true });
  const dataDir = await Deno.makeTempDir({ dir: options.dataDir, prefix: "bench-" });
  try {
    const result = await runWorker({
      kind: "pipeline",
      ticks: n,
      symbols: options.symbols,
      logLevel: options.logLevel,
      database: db.config,
      poolSize: options.poolSize,
      dataDir,
      pipeline: options.pipeline,
    }, workerOptions(options, "db"));
    const { rows, duplicates } = await countRows(db.sql);
    const verified = rows === n && duplicates === 0 && result.rejected === 0 &&
      result.pipeline?.dropped === 0;
    return { ...stageFigures(result, n, result.firstAt, verified), rowsInTable: rows, duplicates };
  } finally {
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    await db.drop();
  }
}
