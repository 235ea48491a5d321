import { parseArgs } from "node:util";
import { IngestPipeline } from "../lib/pipeline/pipeline.ts";
import type { WriteMethod } from "../lib/pipeline/writer.ts";
import { scratchDatabase } from "./_bench_db.ts";

/**
 * Benchmark: pushes synthetic ticks (default 1,000,000 over 50 symbols) through an
 * `IngestPipeline` into a scratch database as fast as backpressure allows; prints ticks/s,
 * peak RSS and tick→commit latency. `--ticks N --symbols N --method copy|unnest --batch N`.
 */
export async function run(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      ticks: { type: "string", default: "1000000" },
      symbols: { type: "string", default: "50" },
      method: { type: "string", default: "unnest" },
      batch: { type: "string", default: "5000" },
      wait: { type: "string", default: "100" },
    },
  });
  const total = Number(values.ticks);
  const symbols = Array.from({ length: Number(values.symbols) }, (_, i) => `SYM${i}/USD`);
  const db = await scratchDatabase();
  const dataDir = await Deno.makeTempDir({ prefix: "tickpipe-bench-" });
  let peakRss = Deno.memoryUsage().rss;
  const sampler = setInterval(() => {
    peakRss = Math.max(peakRss, Deno.memoryUsage().rss);
  }, 50);
  try {
    const pipeline = await IngestPipeline.open(db.sql, {
      dataDir,
      method: values.method as WriteMethod,
      maxBatch: Number(values.batch),
      maxWaitMs: Number(values.wait),
    });
    const base = Math.floor(Date.now() / 1000) * 1000 - 3600_000;
    const perSecond = 1000;
    const t0 = performance.now();
    for (let i = 0; i < total; i++) {
      if (pipeline.full) await pipeline.ready();
      const s = i % symbols.length;
      pipeline.push({
        symbol: symbols[s]!,
        timeMs: base + Math.floor(i / perSecond) * 1000,
        price: 100 + s + (i % 1000) / 100,
        bid: 99 + s,
        ask: 101 + s,
        dayVolume: 1_000_000 + i * 0.5,
        currencyBase: `Coin ${s}`,
        currencyQuote: "US Dollar",
        receivedAt: performance.now(),
      });
    }
    const pushed = performance.now() - t0;
    await pipeline.flush();
    const elapsed = performance.now() - t0;
    const stats = pipeline.stats();
    await pipeline.close();
    const [row] = await db.sql<{ count: string }[]>`SELECT count(*) FROM crypto_ticks`;
    const count = row?.count;
    const mb = (n: number) => `${(n / 1024 ** 2).toFixed(0)} MB`;
    console.log(`${db.describe}; method=${values.method} batch=${values.batch}`);
    console.log(
      `${total.toLocaleString("en-US")} ticks, ${symbols.length} symbols: ${
        Math.round(total / (elapsed / 1000)).toLocaleString("en-US")
      } ticks/s end to end (${(elapsed / 1000).toFixed(2)} s; pushing done after ${
        (pushed / 1000).toFixed(2)
      } s)`,
    );
    console.log(
      `rows in table ${count}, batches ${stats.batches}, retries ${stats.retries}, spooled ${stats.spooled}, dropped ${stats.dropped}`,
    );
    console.log(
      `peak RSS ${mb(peakRss)}; latency p50 ${stats.latencyP50Ms?.toFixed(0)} ms, p99 ${
        stats.latencyP99Ms?.toFixed(0)
      } ms`,
    );
    return 0;
  } finally {
    clearInterval(sampler);
    await db.drop();
    await Deno.remove(dataDir, { recursive: true });
  }
}

if (import.meta.main) Deno.exitCode = await run(Deno.args);
