import { newBatch } from "../lib/pipeline/batch.ts";
import { type Row, TickSequencer } from "../lib/pipeline/sequencer.ts";
import { TickWriter, type WriteMethod } from "../lib/pipeline/writer.ts";
import { scratchDatabase } from "./_bench_db.ts";

const SIZES = [100, 1000, 5000, 20000];
const ROWS_PER_RUN = 200_000;
const SYMBOLS = Array.from({ length: 50 }, (_, i) => `SYM${i}/USD`);

function syntheticRows(n: number, sequencer: TickSequencer, startMs: number): Row[] {
  const rows: Row[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const symbol = SYMBOLS[i % SYMBOLS.length]!;
    rows[i] = sequencer.assign({
      symbol,
      timeMs: startMs + Math.floor(i / 500) * 1000,
      price: 100 + (i % 997) / 7,
      bid: 99.5,
      ask: 100.5,
      dayVolume: 1000 + i,
      receivedAt: performance.now(),
    });
  }
  return rows;
}

/**
 * Benchmark: COPY vs INSERT ... unnest for batch sizes 100 to 20,000, rows/s into a
 * scratch database on the configured (default: embedded) PostgreSQL. Prints a table.
 */
export async function run(_args: string[]): Promise<number> {
  const db = await scratchDatabase();
  try {
    console.log(
      `COPY vs unnest, ${ROWS_PER_RUN.toLocaleString("en-US")} rows per run, ${db.describe}`,
    );
    console.log("batch    copy rows/s   unnest rows/s");
    for (const size of SIZES) {
      const result: Record<WriteMethod, number> = { copy: 0, unnest: 0 };
      for (const method of ["copy", "unnest", "copy", "unnest"] as WriteMethod[]) {
        await db.sql`TRUNCATE crypto_ticks, tickpipe_batches`;
        const writer = new TickWriter(db.sql, { method });
        const rows = syntheticRows(ROWS_PER_RUN, new TickSequencer(), Date.now() - 3600_000);
        const batches = [];
        for (let i = 0; i < rows.length; i += size) batches.push(newBatch(rows.slice(i, i + size)));
        await writer.write(batches.shift()!); // warm up: prepare statements, assets
        const t0 = performance.now();
        let n = 0;
        for (const batch of batches) {
          await writer.write(batch);
          n += batch.rows.length;
        }
        const rate = n / ((performance.now() - t0) / 1000);
        result[method] = Math.max(result[method], rate);
      }
      console.log(
        `${String(size).padStart(5)}  ${
          Math.round(result.copy).toLocaleString("en-US").padStart(12)
        }  ${Math.round(result.unnest).toLocaleString("en-US").padStart(14)}`,
      );
    }
    return 0;
  } finally {
    await db.drop();
  }
}

if (import.meta.main) Deno.exitCode = await run(Deno.args);
