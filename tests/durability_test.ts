/**
 * The faults of a real deployment, against real processes, a real PostgreSQL (behind a
 * proxy that takes it away) and the simulator, whose /stats is the ground truth: rows
 * stored plus ticks reported dropped or lost equal the ticks sent, with no duplicates.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import type { Sql } from "postgres";
import { createTestDatabase } from "./_support/db.ts";
import { IngestProcess } from "./_support/ingest_process.ts";
import { startProxy } from "./_support/proxy.ts";
import { taskDataDir } from "./_support/run.ts";
import { waitFor, withSimulator } from "./_support/sim.ts";
import { databaseUrl } from "./_support/url.ts";
import { assertInsertedInOrder, duplicates, rowsBySymbol } from "./_support/rows.ts";

async function stored(sql: Sql): Promise<number> {
  const [row] = await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM crypto_ticks`;
  return row!.n;
}

function segments(slot: string): string[] {
  try {
    return [...Deno.readDirSync(slot)].map((e) => e.name).filter((n) => n.startsWith("seg-"))
      .sort();
  } catch {
    return [];
  }
}

Deno.test("kill -9 during a database outage loses nothing spooled; the restart drains it and reports a torn line", async () => {
  const db = await createTestDatabase();
  const proxy = startProxy(db.config);
  const dataDir = await taskDataDir("test-kill9-");
  const symbols = ["BTC/USD", "ETH/USD", "AAPL"];
  const total = 6000;
  try {
    await withSimulator({ rate: 3000, symbols, maxTicks: total }, async (sim) => {
      const url = databaseUrl({ ...db.config, host: "127.0.0.1", port: proxy.port });
      const first = new IngestProcess({ databaseUrl: url, sim, dataDir, symbols });
      await waitFor(async () => (await stored(db.sql)) > 500, "the first rows");
      proxy.cut();
      // Every tick sent has been received, and is in the spool's files, not in memory.
      await waitFor(async () => {
        const m = await first.metrics();
        return sim.stats().price_events_sent === total && m?.ws_ticks_total === total &&
          m.ticks_pending_memory === 0 && m.ticks_spool_buffered === 0 &&
          (m.ticks_spooled ?? 0) > 0;
      }, "every tick spooled");
      first.kill("SIGKILL");
      assert.equal(await first.exited(), 137);

      // A crash mid-write leaves a torn last line: skipped and reported, never silently.
      const slot = join(dataDir, "spool", "0");
      const last = segments(slot).at(-1)!;
      await Deno.writeTextFile(join(slot, last), "1700000000000\tBTC/US", { append: true });

      proxy.restore();
      const second = new IngestProcess({ databaseUrl: url, sim, dataDir, symbols });
      await waitFor(async () => (await stored(db.sql)) >= total, "the spool drained");
      second.kill("SIGTERM");
      assert.equal(await second.exited(), 0, second.lines.join("\n"));
      const log = second.messages();
      assert.ok(
        log.some((m) =>
          /^Found [\d,]+ spooled ticks from a previous run; 1 lost in a crash/.test(m)
        ),
        log.join("\n"),
      );
      assert.match(log.find((m) => m.startsWith("Stopped: "))!, /, 1 lost in a crash/);
      assert.deepEqual(await rowsBySymbol(db.sql), sim.stats().by_symbol);
      assert.equal(await duplicates(db.sql), 0);
      await assertInsertedInOrder(db.sql);
      assert.deepEqual(segments(slot), []);
    });
  } finally {
    await proxy.close();
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    await db.drop();
  }
});

Deno.test("Two processes on one data directory spool apart; a stopped one's spool is drained by the next start", async () => {
  const db = await createTestDatabase();
  const proxy = startProxy(db.config);
  const dataDir = await taskDataDir("test-two-");
  const mine = ["BTC/USD", "ETH/USD"];
  const theirs = ["AAPL", "MSFT"];
  try {
    await withSimulator({ rate: 2000, symbols: [...mine, ...theirs] }, async (sim) => {
      const url = databaseUrl({ ...db.config, host: "127.0.0.1", port: proxy.port });
      const a = new IngestProcess({ databaseUrl: url, sim, dataDir, symbols: mine });
      // Slot 0 is a's: b, started once a holds it, takes slot 1.
      await waitFor(async () => (await a.metrics()) !== undefined, "a serving metrics");
      const b = new IngestProcess({ databaseUrl: url, sim, dataDir, symbols: theirs });
      await waitFor(async () => (await b.metric("rows_written_total")) > 0, "b writing");
      proxy.cut();
      const slots = [join(dataDir, "spool", "0"), join(dataDir, "spool", "1")];
      await waitFor(
        async () =>
          (await a.metric("ticks_spooled")) > 500 && (await b.metric("ticks_spooled")) > 500,
        "both spooling",
      );
      assert.ok(segments(slots[0]!).length > 0 && segments(slots[1]!).length > 0);
      // a stops during the outage: within its bounds, with its summary, its ticks kept.
      a.kill("SIGINT");
      assert.equal(await a.exited(), 0, a.lines.join("\n"));
      const aLog = a.messages();
      assert.ok(aLog.some((m) => /^Stopped: /.test(m)), aLog.join("\n"));
      assert.ok(aLog.some((m) => /^Stopped with [\d,]+ ticks in the spool/.test(m)));
      assert.ok(segments(slots[0]!).length > 0);

      proxy.restore();
      // The next start takes the free slot 0 and drains what a left there first, before it
      // even holds a's leases (the lease tests cover the takeover); b goes on.
      const c = new IngestProcess({ databaseUrl: url, sim, dataDir, symbols: mine });
      await waitFor(() => segments(slots[0]!).length === 0, "a's spool drained");
      await waitFor(async () => (await c.metric("rows_written_total")) > 0, "c wrote a's spool");
      await waitFor(async () => (await b.metric("ticks_spooled")) === 0, "b's spool drained");
      c.kill("SIGTERM");
      b.kill("SIGTERM");
      assert.equal(await c.exited(), 0, c.lines.join("\n"));
      assert.equal(await b.exited(), 0, b.lines.join("\n"));
      for (const p of [b, c]) assert.ok(p.messages().some((m) => /^Stopped: /.test(m)));
      assert.deepEqual(await rowsBySymbol(db.sql), sim.stats().by_symbol);
      assert.equal(await duplicates(db.sql), 0);
      await assertInsertedInOrder(db.sql);
    });
  } finally {
    await proxy.close();
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    await db.drop();
  }
});
