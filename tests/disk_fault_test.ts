/**
 * Disk trouble is loud and loses the least: a full or unwritable spool is detected at once,
 * memory keeps what fits, every tick that cannot be kept is counted as dropped, /healthz
 * fails, writing goes on when the database returns, and a stop is clean. Against a real
 * PostgreSQL behind a proxy that takes it away, the simulator's /stats as ground truth, and
 * a genuinely small or read-only filesystem where one can be mounted.
 */
import assert from "node:assert/strict";
import { connect } from "../lib/db/connection.ts";
import { IngestPipeline } from "../lib/pipeline/pipeline.ts";
import { createTestDatabase } from "./_support/db.ts";
import { assertInsertedInOrder, countAndDuplicates } from "./_support/rows.ts";
import { IngestProcess } from "./_support/ingest_process.ts";
import { startProxy } from "./_support/proxy.ts";
import { taskDataDir } from "./_support/run.ts";
import { startIngest } from "./_support/ingest.ts";
import { captureLogger, waitFor, withSimulator } from "./_support/sim.ts";
import { bypassesPermissions, mountTmpfs } from "./_support/small_fs.ts";
import { priceEvents } from "./_support/ticks.ts";
import { databaseUrl } from "./_support/url.ts";

Deno.test("A full spool during an outage: memory keeps what fits, the rest is counted dropped, writing resumes", async () => {
  const db = await createTestDatabase();
  const proxy = startProxy(db.config);
  const sql = connect({ ...db.config, host: "127.0.0.1", port: proxy.port }, { max: 2 });
  const dataDir = await Deno.makeTempDir({ prefix: "tickpipe-full-" });
  const tmpfs = await mountTmpfs(dataDir, "160k");
  // Without a mount, the spool's writes fail on demand, as ENOSPC would make them.
  let full = false;
  const beforeSpoolWrite = typeof tmpfs === "string"
    ? () => {
      if (full) throw new Error("No space left on device (os error 28)");
    }
    : undefined;
  console.error(
    typeof tmpfs === "string"
      ? `[disk] full spool: injected write failures (${tmpfs})`
      : "[disk] full spool: a 160 KiB tmpfs",
  );
  const symbols = ["BTC/USD", "ETH/USD", "AAPL"];
  try {
    await withSimulator({ rate: 4000, symbols }, async (sim) => {
      const { logger, lines } = captureLogger();
      const ingest = startIngest(sql, sim, {
        symbols,
        dataDir,
        logger,
        lines,
        pipeline: { maxBatch: 500, memoryCap: 3000, beforeSpoolWrite },
      });
      const last = () => ingest.last()?.pipeline;
      await waitFor(() => (last()?.written ?? 0) > 1000, "the first rows");
      proxy.cut();
      await waitFor(() => (last()?.spooled ?? 0) > 1000, "spooling");
      full = true;
      await waitFor(() => (last()?.dropped ?? 0) > 1000, "ticks dropped");
      const health = await fetch(`${ingest.metricsUrl()}/healthz`);
      assert.equal(health.status, 503);
      assert.match(await health.text(), /^spool unwritable for \d+ s \(No space left on device/);
      const metrics = await (await fetch(`${ingest.metricsUrl()}/metrics`)).text();
      assert.match(metrics, /^tickpipe_spool_writable 0$/m);
      assert.match(metrics, /^tickpipe_ticks_dropped_total [1-9]\d*$/m);
      assert.ok(last()!.pendingMemory <= 3000 + 2000, "memory holds about its cap");

      // The database returns: everything kept is written, and writing goes on.
      proxy.restore();
      full = false;
      const at = last()!.written;
      await waitFor(
        () => last()!.failingSince === undefined && last()!.written > at + 5000,
        "writing resumed",
      );
      const summary = await ingest.stop();
      const { rows: stored, duplicates } = await countAndDuplicates(db.sql);
      assert.equal(stored + summary.pipeline.dropped, sim.stats().price_events_sent);
      assert.equal(duplicates, 0);
      await assertInsertedInOrder(db.sql);
      assert.ok(lines.some((l) => /Cannot write the spool in .*No space left on device/.test(l)));
      // Loud, not per tick: one drop line (at most one a minute).
      assert.equal(lines.filter((l) => l.includes("Cannot keep ticks")).length, 1);
      assert.match(lines.find((l) => l.includes("Stopped: "))!, /[1-9][\d,]* dropped/);
    });
  } finally {
    await sql.end({ timeout: 5 });
    await proxy.close();
    if (typeof tmpfs !== "string") await tmpfs.unmount();
    await Deno.remove(dataDir, { recursive: true });
    await db.drop();
  }
});

/** A read-only directory under .data: a read-only tmpfs where root can mount one, else chmod. */
async function readOnlyDir(prefix: string) {
  const dir = await taskDataDir(prefix);
  if (bypassesPermissions()) {
    const tmpfs = await mountTmpfs(dir, "64k", { readOnly: true });
    if (typeof tmpfs === "string") return { dir, kind: `none: root, and ${tmpfs}` };
    return { dir, kind: "a read-only tmpfs", undo: () => tmpfs.unmount() };
  }
  await Deno.chmod(dir, 0o555);
  return { dir, kind: "chmod 555", undo: () => Deno.chmod(dir, 0o755) };
}

Deno.test("An unwritable spool is said in one line at start; an outage then drops what memory cannot hold, counted", async (t) => {
  const ro = await readOnlyDir("test-ro-");
  console.error(`[disk] unwritable spool: ${ro.kind}`);
  if (!ro.undo) {
    await Deno.remove(ro.dir);
    throw new Error(`Cannot make a read-only directory here (${ro.kind})`);
  }
  const db = await createTestDatabase();
  const proxy = startProxy(db.config);
  try {
    await t.step("the pipeline runs memory-only and says why", async () => {
      const { logger, lines } = captureLogger();
      const pipeline = await IngestPipeline.open(db.sql, { dataDir: ro.dir, logger });
      for (const event of priceEvents(100)) pipeline.pushPrice(event);
      await pipeline.flush();
      const stats = pipeline.stats();
      await pipeline.close();
      assert.equal(stats.written, 100);
      assert.ok(stats.spoolFault);
      const said = lines.filter((l) => l.includes("Cannot write the spool in"));
      assert.equal(said.length, 1, lines.join("\n"));
      assert.match(said[0]!, /running memory-only \(up to 50,000 ticks held/);
    });

    await t.step(
      "an ingest process: /healthz fails, drops are counted, SIGTERM prints the summary",
      async () => {
        await withSimulator({ rate: 3000, symbols: ["BTC/USD", "ETH/USD"] }, async (sim) => {
          const url = databaseUrl({ ...db.config, host: "127.0.0.1", port: proxy.port });
          const p = new IngestProcess({
            databaseUrl: url,
            sim,
            dataDir: ro.dir,
            symbols: ["BTC/USD", "ETH/USD"],
          });
          await waitFor(async () => (await p.metric("rows_written_total")) > 1000, "writing");
          const health = await p.health();
          assert.equal(health?.status, 503);
          assert.match(health!.body, /^spool unwritable/);
          proxy.cut();
          // 50,000 ticks fit in memory: at 3,000 a second, drops start after ~17 s. Stop first.
          await waitFor(async () => (await p.metric("ticks_pending_memory")) > 3000, "held");
          p.kill("SIGTERM");
          assert.equal(await p.exited(), 0, p.lines.join("\n"));
          const stop = p.messages().find((m) => m.startsWith("Stopped: "));
          assert.ok(stop, p.lines.join("\n"));
          const dropped = Number(/([\d,]+) dropped/.exec(stop)![1]!.replaceAll(",", ""));
          assert.match(stop, /spool unwritable/);
          assert.ok(
            p.messages().some((m) => /^Cannot keep [\d,]+ ticks at shutdown/.test(m)),
            p.lines.join("\n"),
          );
          proxy.restore();
          const { rows: stored, duplicates } = await countAndDuplicates(db.sql);
          assert.ok(dropped > 0);
          assert.equal(stored - 100 + dropped, sim.stats().price_events_sent);
          assert.equal(duplicates, 0);
        });
      },
    );
  } finally {
    await proxy.close();
    await ro.undo();
    await Deno.remove(ro.dir, { recursive: true });
    await db.drop();
  }
});
