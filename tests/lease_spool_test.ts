/**
 * The spool a dead holder leaves on a shared data directory: a running ingest adopts the
 * slots nobody holds, at once when asked (a lease takeover) and on its own every 30 s,
 * with the keeper's time driven by the test.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { Batcher } from "../lib/pipeline/batcher.ts";
import type { Row } from "../lib/pipeline/batch.ts";
import { SpoolKeeper } from "../lib/pipeline/spool_keeper.ts";
import { openSlotSpool } from "../lib/pipeline/spool_slot.ts";
import { makeRows } from "./_support/ticks.ts";

function strip(rows: Row[]) {
  return rows.map(({ receivedAt: _, ...rest }) => rest);
}

/** Leaves `rows` in a slot of `root` as a process that died would: segments, lock free. */
async function leaveSlot(root: string, rows: Row[]): Promise<string> {
  const spool = await openSlotSpool(root);
  for (const row of rows) spool.append(row);
  spool.close();
  return spool.dir;
}

function segments(dir: string): string[] {
  return [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.endsWith(".tsv"));
}

/** Everything the batcher hands out (spool chunks first), acknowledged. */
async function drain(batcher: Batcher): Promise<Row[]> {
  const rows: Row[] = [];
  batcher.close();
  for (let batch = await batcher.next(); batch; batch = await batcher.next()) {
    rows.push(...batch.rows);
    await batcher.done(batch);
  }
  return rows;
}

Deno.test("A running ingest adopts the spool slots of processes that are gone: at once on request, on its own after 30 s", async (t) => {
  const root = await Deno.makeTempDir({ prefix: "tickpipe-adopt-" });
  const batcher = new Batcher({ maxBatch: 100 });
  const keeper = new SpoolKeeper(root, batcher, { chunkRows: 100, memoryCap: 1_000 });
  const found: number[] = [];
  const onFound = (rows: number) => found.push(rows);
  try {
    assert.equal(await keeper.open(), 0);
    const own = keeper.spool!.dir;
    assert.equal(own, join(root, "0"));

    await t.step("a slot left while running is adopted at once on request", async () => {
      const rows = makeRows(7);
      const dead = await leaveSlot(root, rows);
      assert.equal(await keeper.adoptOrphans(), 7);
      assert.deepEqual(segments(dead), []);
      assert.equal(keeper.spool!.rows, 7);
    });

    await t.step("a held slot is never adopted", async () => {
      const live = await openSlotSpool(root);
      for (const row of makeRows(3, { offset: 100 })) live.append(row);
      live.flush();
      assert.equal(await keeper.adoptOrphans(), 0);
      assert.ok(segments(live.dir).length > 0);
      live.close();
      // Stopped now, with its rows left: an orphan for the next step.
    });

    await t.step("periodically, a slot found orphaned twice 30 s apart", async () => {
      keeper.tick(0, onFound);
      keeper.tick(29_999, onFound);
      keeper.tick(30_000, onFound);
      // The look at 30 s only notes the orphan: a process restarting gets its slot back.
      await keeper.adoptOrphans({ accept: () => false });
      assert.equal(keeper.spool!.rows, 7);
      keeper.tick(60_000, onFound);
      await keeper.adoptOrphans({ accept: () => false });
      assert.equal(keeper.spool!.rows, 10);
      assert.deepEqual(found, [3]);
    });

    await t.step("the writer gets the adopted rows", async () => {
      const rows = await drain(batcher);
      assert.deepEqual(
        strip(rows),
        strip([...makeRows(7), ...makeRows(3, { offset: 100 })]),
      );
      assert.deepEqual(segments(own), []);
    });
  } finally {
    await keeper.close();
    await Deno.remove(root, { recursive: true });
  }
});
