/**
 * A poison row poisons only itself: rows the database refuses are found by splitting their
 * batch, quarantined one by one, the rest written; `deno task quarantine replay` stores
 * them exactly once after the cause is fixed.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { newBatch } from "../lib/pipeline/batch.ts";
import { Delivery } from "../lib/pipeline/delivery.ts";
import {
  importQuarantineFiles,
  quarantineSummary,
  replayQuarantine,
} from "../lib/pipeline/quarantine_admin.ts";
import { TickWriter } from "../lib/pipeline/writer.ts";
import { formatCount } from "../lib/text.ts";
import quarantineSql from "../sql/005_quarantine.sql" with { type: "text" };
import { createTestDatabase } from "./_support/db.ts";
import { permissionSet, runDeno, taskDataDir } from "./_support/run.ts";
import { startIngest } from "./_support/ingest.ts";
import { captureLogger, waitFor, withSimulator } from "./_support/sim.ts";
import { makeRows } from "./_support/ticks.ts";
import { databaseUrl } from "./_support/url.ts";
import { assertInsertedInOrder, duplicates, rowsBySymbol } from "./_support/rows.ts";

Deno.test("A CHECK constraint refusing one symbol quarantines only its rows; replay stores them once", async () => {
  const db = await createTestDatabase();
  const dataDir = await taskDataDir("tickpipe-quarantine-");
  const symbols = ["BTC/USD", "ETH/USD", "AAPL"];
  try {
    await db.sql`ALTER TABLE crypto_ticks ADD CONSTRAINT no_eth CHECK (symbol <> 'ETH/USD')`;
    await withSimulator({ rate: 600, symbols }, async (sim) => {
      const { logger, lines } = captureLogger();
      const ingest = startIngest(db.sql, sim, { symbols, dataDir, logger, lines });
      await waitFor(
        () => (ingest.last()?.pipeline.quarantined ?? 0) >= 300,
        "300 quarantined",
        30_000,
      );
      // Degraded, not failing: nothing is lost, the rows wait in the quarantine.
      const health = await fetch(`${ingest.metricsUrl()}/healthz`);
      assert.equal(health.status, 200);
      assert.match(
        await health.text(),
        /^degraded: \d+ rows quarantined \(check_violation no_eth: /,
      );
      const metrics = await (await fetch(`${ingest.metricsUrl()}/metrics`)).text();
      assert.match(
        metrics,
        /^tickpipe_ticks_quarantined_by_reason_total\{reason="check_violation no_eth"\} \d+$/m,
      );
      const summary = await ingest.stop();
      const sent = sim.stats().by_symbol;
      const stored = await rowsBySymbol(db.sql);
      assert.deepEqual(stored, { "BTC/USD": sent["BTC/USD"], AAPL: sent["AAPL"] });
      assert.equal(summary.pipeline.quarantined, sent["ETH/USD"]);
      assert.deepEqual(summary.pipeline.quarantinedByReason, {
        "check_violation no_eth": sent["ETH/USD"],
      });
      assert.equal(summary.pipeline.dropped, 0);
      assert.equal(await duplicates(db.sql), 0);
      await assertInsertedInOrder(db.sql);
      const groups = await quarantineSummary(db.sql);
      assert.deepEqual(groups.map((g) => [g.symbol, g.reason, g.rows]), [
        ["ETH/USD", "check_violation no_eth", sent["ETH/USD"]],
      ]);
      assert.match(groups[0]!.message, /violates check constraint "no_eth"/);
      assert.ok(
        lines.some((l) => /The database refused [\d,]+ ticks \(check_violation no_eth/.test(l)),
      );
      assert.match(
        lines.find((l) => l.includes("Stopped: "))!,
        /[\d,]+ quarantined \(check_violation no_eth: [\d,]+\)/,
      );

      // Still refused: replay keeps them, with one more attempt each.
      const env = { DATABASE_URL: databaseUrl(db.config), TICKPIPE_DATA_DIR: dataDir };
      const permissions = permissionSet("db");
      const again = await runDeno("tasks/quarantine.ts", ["replay"], { env, permissions });
      assert.equal(again.code, 0, again.stderr);
      assert.match(
        again.stdout,
        new RegExp(
          `0 rows stored, 0 already stored, ${formatCount(sent["ETH/USD"]!)} refused again`,
        ),
      );

      await db.sql`ALTER TABLE crypto_ticks DROP CONSTRAINT no_eth`;
      const list = await runDeno("tasks/quarantine.ts", ["list", "--reason", "check_violation"], {
        env,
        permissions,
      });
      assert.equal(list.code, 0, list.stderr);
      assert.match(
        list.stdout,
        new RegExp(`^${formatCount(sent["ETH/USD"]!)} quarantined rows`, "m"),
      );
      const replay = await runDeno("tasks/quarantine.ts", ["replay"], { env, permissions });
      assert.equal(replay.code, 0, replay.stderr);
      assert.match(
        replay.stdout,
        new RegExp(`Replayed: ${formatCount(sent["ETH/USD"]!)} rows stored`),
      );
      const twice = await runDeno("tasks/quarantine.ts", ["replay"], { env, permissions });
      assert.match(twice.stdout, /Replayed: 0 rows stored, 0 already stored, 0 refused again/);
      assert.deepEqual(await rowsBySymbol(db.sql), sent);
      assert.equal(await duplicates(db.sql), 0);
      await assertInsertedInOrder(db.sql);
    });
  } finally {
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    await db.drop();
  }
});

Deno.test("A refused batch split again (a spool chunk drained twice) writes nothing twice", async () => {
  const db = await createTestDatabase();
  const dir = await Deno.makeTempDir({ prefix: "tickpipe-quarantine-" });
  try {
    await db.sql`ALTER TABLE crypto_ticks ADD CONSTRAINT cheap CHECK (price < 103.5)`;
    const writer = new TickWriter(db.sql);
    const delivery = new Delivery(db.sql, writer, { quarantineDir: join(dir, "quarantine") });
    const rows = makeRows(400, { symbols: 4 });
    const refused = rows.filter((r) => r.price >= 103.5).length;
    assert.ok(refused > 0 && refused < 400);
    const batch = newBatch(rows);
    assert.equal(await delivery.deliver(batch), "done");
    assert.equal(delivery.quarantined, refused);
    // The same chunk again: its parts are recognised, its refused rows quarantined once.
    assert.equal(await delivery.deliver({ ...batch, spooled: true }), "done");
    const [q] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM tickpipe_quarantine`;
    assert.equal(q!.n, refused);
    assert.equal(delivery.quarantined, refused);
    assert.deepEqual(delivery.quarantinedByReason(), { "check_violation cheap": refused });
    const [t] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM crypto_ticks`;
    assert.equal(t!.n, 400 - refused);

    // Fixed, then drained once more before anyone replays: the refused rows land under
    // their one-row ids, and the replay recognises them.
    await db.sql`ALTER TABLE crypto_ticks DROP CONSTRAINT cheap`;
    assert.equal(await delivery.deliver({ ...batch, spooled: true }), "done");
    assert.deepEqual(await replayQuarantine(db.sql), {
      stored: 0,
      alreadyStored: refused,
      refused: 0,
    });
    assert.equal(await duplicates(db.sql), 0);
    const [all] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM crypto_ticks`;
    assert.equal(all!.n, 400);

    // Without the quarantine table, refused rows go to a file, moved in once it is back.
    await db.sql`DROP TABLE tickpipe_quarantine`;
    await db.sql`ALTER TABLE crypto_ticks ADD CONSTRAINT cheap CHECK (price < 103.5) NOT VALID`;
    const more = makeRows(800, { symbols: 4 }).slice(400);
    const poisoned = more.filter((r) => r.price >= 103.5).length;
    assert.equal(await delivery.deliver(newBatch(more)), "done");
    const files = [...Deno.readDirSync(join(dir, "quarantine"))].map((e) => e.name);
    assert.equal(files.length, 1);
    assert.equal(delivery.quarantined, refused + poisoned);
    await db.sql.unsafe(quarantineSql);
    assert.deepEqual(await importQuarantineFiles(db.sql, dir), { files: 1, rows: poisoned });
    assert.deepEqual([...Deno.readDirSync(join(dir, "quarantine"))], []);
    await db.sql`ALTER TABLE crypto_ticks DROP CONSTRAINT cheap`;
    assert.equal((await replayQuarantine(db.sql)).stored, poisoned);
    const [end] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM crypto_ticks`;
    assert.equal(end!.n, 800);
    assert.equal(await duplicates(db.sql), 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
    await db.drop();
  }
});
