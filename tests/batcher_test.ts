import assert from "node:assert/strict";
import { Batcher } from "../lib/pipeline/batcher.ts";
import { Spool } from "../lib/pipeline/spool.ts";
import type { Batch } from "../lib/pipeline/batch.ts";
import { ManualTimers } from "./_support/manual_timers.ts";
import { makeRows } from "./_support/ticks.ts";

/** Lets every promise that can settle now do so (one macrotask turn). */
function settle(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

async function tempDir(): Promise<string> {
  return await Deno.makeTempDir({ prefix: "tickpipe-batcher-" });
}

Deno.test("Batcher releases a batch as soon as it reaches maxBatch rows", async () => {
  const batcher = new Batcher({ maxBatch: 3, maxWaitMs: 60_000 });
  for (const row of makeRows(7)) assert.equal(batcher.push(row), "queued");
  assert.equal((await batcher.next())!.rows.length, 3);
  assert.equal((await batcher.next())!.rows.length, 3);
  assert.equal(batcher.held, 7);
  batcher.close();
  const last = await batcher.next();
  assert.equal(last!.rows.length, 1);
  assert.equal(await batcher.next(), undefined);
});

Deno.test("Batcher releases a partial batch when its oldest row has waited maxWaitMs", async () => {
  const timers = new ManualTimers();
  const batcher = new Batcher({ maxBatch: 1000, maxWaitMs: 50, timers });
  const [first, second] = makeRows(2);
  batcher.push(first!);
  timers.advance(30);
  batcher.push(second!); // the age that counts is the oldest row's
  let batch: Batch | undefined;
  const next = batcher.next().then((b) => batch = b);
  timers.advance(19);
  await settle();
  assert.equal(batch, undefined, "released before maxWaitMs");
  timers.advance(1);
  await next;
  assert.deepEqual(batch!.rows, [first, second]);
  batcher.close();
  assert.equal(await batcher.next(), undefined);
});

Deno.test("Batcher keeps rows in order across batches with distinct ids", async () => {
  const batcher = new Batcher({ maxBatch: 4, maxWaitMs: 10 });
  const rows = makeRows(10);
  for (const row of rows) batcher.push(row);
  batcher.close();
  const out = [];
  const ids = new Set<string>();
  for (let b = await batcher.next(); b; b = await batcher.next()) {
    ids.add(b.id);
    out.push(...b.rows);
  }
  assert.deepEqual(out, rows);
  assert.equal(ids.size, 3);
});

Deno.test("Batcher signals backpressure at highWater and ready() resolves when rows are written", async () => {
  const batcher = new Batcher({ maxBatch: 5, maxWaitMs: 60_000, highWater: 5, memoryCap: 100 });
  for (const row of makeRows(5)) batcher.push(row);
  assert.equal(batcher.full, true);
  let ready = false;
  const waiting = batcher.ready().then(() => (ready = true));
  await settle();
  assert.equal(ready, false);
  const batch = await batcher.next();
  await batcher.done(batch!);
  await waiting;
  assert.equal(ready, true);
  assert.equal(batcher.full, false);
  batcher.close();
});

Deno.test("Batcher moves memory to the spool at memoryCap and hands out the spool first, in order", async () => {
  const dir = await tempDir();
  const spool = await Spool.open(dir, { chunkRows: 3 });
  const batcher = new Batcher({ maxBatch: 2, maxWaitMs: 60_000, memoryCap: 4, spool });
  const rows = makeRows(10);
  const results = rows.map((row) => batcher.push(row));
  assert.deepEqual(results.filter((r) => r === "queued").length, 4);
  assert.deepEqual(results.filter((r) => r === "spooled").length, 6);
  assert.equal(batcher.spooling, true);
  assert.equal(batcher.full, true);
  // The two memory batches went to the spool ahead of the rows that followed them.
  assert.equal(batcher.held, 0);
  assert.equal(spool.rows, 10);
  const out = [];
  const sizes = [];
  while (out.length < 10) {
    const batch = (await batcher.next())!;
    assert.equal(batch.spooled, true);
    out.push(...batch.rows.map((r) => r.seq));
    sizes.push(batch.rows.length);
    await batcher.done(batch);
  }
  assert.deepEqual(out, rows.map((r) => r.seq));
  assert.deepEqual(sizes, [2, 2, 3, 3]);
  // Empty spool: the next row goes to memory again.
  const more = makeRows(11).slice(10);
  batcher.close();
  assert.equal(await batcher.next(), undefined);
  assert.equal(batcher.spooling, false);
  assert.equal(spool.rows, 0);
  assert.throws(() => batcher.push(more[0]!), TypeError);
  spool.close();
  assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), []);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("Batcher spills the batch being written as a copy under its id, then hands out its spool copy", async () => {
  const dir = await tempDir();
  const spool = await Spool.open(dir, { chunkRows: 100 });
  const batcher = new Batcher({ maxBatch: 2, maxWaitMs: 60_000, spool });
  const rows = makeRows(5);
  for (const row of rows) batcher.push(row);
  const inFlight = (await batcher.next())!;
  assert.equal(batcher.oldestBornAt(), inFlight.bornAt);
  assert.equal(batcher.spill(), true);
  assert.equal(inFlight.spilled, true);
  assert.equal(batcher.held, 0);
  assert.equal(batcher.oldestBornAt(), undefined);
  assert.equal(spool.rows, 5);
  assert.equal(batcher.push(makeRows(6)[5]!), "spooled");
  // Its write failed: the spool copy, same id, comes first, then the rest in order.
  batcher.abandon(inFlight);
  const ids = [];
  const out = [];
  for (let i = 0; i < 4; i++) {
    const batch = (await batcher.next())!;
    ids.push(batch.id);
    out.push(...batch.rows.map((r) => r.seq));
    await batcher.done(batch);
  }
  assert.equal(ids[0], inFlight.id);
  assert.deepEqual(out, makeRows(6).map((r) => r.seq));
  batcher.close();
  assert.equal(await batcher.next(), undefined);
  spool.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("Batcher returns to memory once the spool is drained", async () => {
  const dir = await tempDir();
  const spool = await Spool.open(dir, { chunkRows: 100 });
  const batcher = new Batcher({ maxBatch: 2, maxWaitMs: 5, memoryCap: 2, spool });
  const rows = makeRows(6);
  for (const row of rows.slice(0, 4)) batcher.push(row);
  assert.equal(batcher.spooling, true);
  for (let i = 0; i < 2; i++) await batcher.done((await batcher.next())!);
  assert.equal(batcher.spooling, false);
  assert.equal(batcher.push(rows[4]!), "queued");
  batcher.close();
  await batcher.done((await batcher.next())!);
  assert.equal(await batcher.next(), undefined);
  spool.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("Batcher drops (and counts) only when memory and spool are both full", async () => {
  const dir = await tempDir();
  const spool = await Spool.open(dir, { maxBytes: 400, chunkRows: 100 });
  const batcher = new Batcher({ maxBatch: 100, maxWaitMs: 60_000, memoryCap: 3, spool });
  const results = makeRows(20).map((row) => batcher.push(row));
  const count = (kind: string) => results.filter((r) => r === kind).length;
  assert.ok(count("queued") >= 3, `queued ${count("queued")}`);
  assert.ok(count("spooled") > 0, `spooled ${count("spooled")}`);
  assert.ok(count("dropped") > 0);
  assert.equal(count("queued") + count("spooled") + count("dropped"), 20);
  assert.equal(batcher.dropped, count("dropped"));
  assert.ok(batcher.held <= 3);
  assert.equal(batcher.held + spool.rows, 20 - count("dropped"));
  assert.ok(spool.bytes <= 400);
  batcher.close();
  spool.close();
  await Deno.remove(dir, { recursive: true });

  const noSpool = new Batcher({ maxBatch: 100, maxWaitMs: 60_000, memoryCap: 3 });
  const r2 = makeRows(5).map((row) => noSpool.push(row));
  assert.deepEqual(r2, ["queued", "queued", "queued", "dropped", "dropped"]);
  assert.equal(noSpool.dropped, 2);
  noSpool.close();
});
