import assert from "node:assert/strict";
import { join } from "node:path";
import type { Row } from "../lib/pipeline/batch.ts";
import { Spool } from "../lib/pipeline/spool.ts";
import { rowLine } from "../lib/pipeline/spool_format.ts";
import { acquireSlot, adoptOrphans, openSlotSpool } from "../lib/pipeline/spool_slot.ts";
import { makeRows } from "./_support/ticks.ts";

function strip(rows: Row[]) {
  return rows.map(({ receivedAt: _, ...rest }) => rest);
}

async function drain(spool: Spool): Promise<{ ids: string[]; rows: Row[] }> {
  const ids: string[] = [];
  const rows: Row[] = [];
  for (let chunk = await spool.next(); chunk; chunk = await spool.next()) {
    ids.push(chunk.id);
    rows.push(...chunk.rows);
    await spool.ack(chunk);
  }
  return { ids, rows };
}

Deno.test("Spool keeps rows across a restart, in order, with stable chunk ids", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tickpipe-spool-" });
  try {
    const rows = makeRows(25);
    rows[3]!.dayVolume = null;
    rows[3]!.volume = null;
    rows[4]!.bid = null;
    const first = await Spool.open(dir, { chunkRows: 10, segmentBytes: 1000 });
    for (const row of rows) assert.equal(first.append(row), true);
    assert.equal(first.rows, 25);
    const peek = await first.next();
    first.close();
    assert.ok([...Deno.readDirSync(dir)].length >= 2, "several segments");

    const seen: Row[] = [];
    const second = await Spool.open(dir, { onLeftoverRow: (r) => seen.push(r) });
    assert.equal(second.rows, 25);
    assert.deepEqual(strip(seen), strip(rows));
    const { ids, rows: drained } = await drain(second);
    assert.equal(ids[0], peek!.id);
    assert.equal(new Set(ids).size, ids.length);
    assert.deepEqual(strip(drained), strip(rows));
    assert.equal(second.rows, 0);
    assert.equal(second.bytes, 0);
    second.close();
    assert.deepEqual([...Deno.readDirSync(dir)], []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Spool refuses appends beyond maxBytes", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tickpipe-spool-" });
  try {
    const spool = await Spool.open(dir, { maxBytes: 1000 });
    const results = makeRows(50).map((r) => spool.append(r));
    const accepted = results.filter(Boolean).length;
    assert.ok(accepted > 0 && accepted < 50);
    assert.deepEqual(results.slice(accepted), new Array(50 - accepted).fill(false));
    assert.ok(spool.bytes <= 1000);
    spool.close();
    let onDisk = 0;
    for (const e of Deno.readDirSync(dir)) onDisk += Deno.statSync(join(dir, e.name)).size;
    assert.equal(onDisk, spool.bytes);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Spool skips a torn last line left by a crash mid-write", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tickpipe-spool-" });
  try {
    const spool = await Spool.open(dir);
    const rows = makeRows(3);
    for (const r of rows) spool.append(r);
    spool.close();
    const [entry] = [...Deno.readDirSync(dir)];
    await Deno.writeTextFile(join(dir, entry!.name), "1700000000000\tBTC/US", { append: true });
    const again = await Spool.open(dir);
    assert.equal(again.rows, 3);
    assert.equal(again.lostInCrash, 1, "the torn line is counted as lost in a crash");
    const { rows: drained } = await drain(again);
    assert.deepEqual(strip(drained), strip(rows));
    again.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Spool drains a large segment one chunk at a time, reading only the next ahead", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tickpipe-spool-" });
  try {
    const rows = makeRows(20_000, { symbols: 7 });
    const spool = await Spool.open(dir, { chunkRows: 500, segmentBytes: 1024 ** 3 });
    for (const row of rows) assert.equal(spool.append(row), true);
    spool.close();
    const files = [...Deno.readDirSync(dir)];
    assert.equal(files.length, 1, "one segment");

    const read: string[] = [];
    const again = await Spool.open(dir, {
      chunkRows: 500,
      onChunkRead: (chunk) => read.push(chunk.id),
    });
    assert.equal(again.rows, 20_000);
    const ids = new Set<string>();
    const drained: Row[] = [];
    let chunks = 0;
    for (let chunk = await again.next(); chunk; chunk = await again.next()) {
      assert.equal(chunk.rows.length, 500);
      assert.equal(await again.next(), chunk, "the same chunk until it is acknowledged");
      // The next chunk is read while this one would be written.
      const ahead = chunks < 39 ? 500 : 0;
      const expected = chunks + 1 + (ahead ? 1 : 0);
      for (let i = 0; i < 2000 && read.length < expected; i++) {
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
      assert.equal(again.rowsInMemory, 500 + ahead, "the chunk handed out and the next");
      assert.equal(read.length, expected, "each chunk read once, in order");
      ids.add(chunk.id);
      drained.push(...chunk.rows);
      chunks++;
      await again.ack(chunk);
      assert.equal(again.rowsInMemory, ahead);
      assert.equal(again.rows, 20_000 - chunks * 500);
    }
    assert.deepEqual(read, [...ids], "onChunkRead saw each chunk before it was handed out");
    assert.equal(chunks, 40);
    assert.equal(ids.size, 40);
    assert.deepEqual(strip(drained), strip(rows));
    // Symbols read back are shared strings, not one copy per row.
    assert.equal(new Set(drained.map((r) => r.symbol)).size, 7);
    assert.equal(again.bytes, 0);
    assert.deepEqual([...Deno.readDirSync(dir)], [], "the segment is removed after its last ack");
    again.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Spool buffers appends, writes them out on flush and fsyncs on sync", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tickpipe-spool-" });
  try {
    const spool = await Spool.open(dir);
    const size = () =>
      [...Deno.readDirSync(dir)].filter((e) => e.name.startsWith("seg-"))
        .reduce((n, e) => n + Deno.statSync(join(dir, e.name)).size, 0);
    for (const row of makeRows(10)) spool.append(row);
    assert.equal(spool.buffered, 10);
    assert.equal(size(), 0);
    assert.equal(spool.flush(), true);
    assert.equal(spool.buffered, 0);
    assert.equal(size(), spool.bytes);
    await spool.sync();
    spool.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Spool: a failed write cuts the file back to whole lines and hands the rows back", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tickpipe-spool-" });
  try {
    let failing = false;
    const spool = await Spool.open(dir, {
      beforeWrite: () => {
        if (failing) throw new Error("No space left on device (os error 28)");
      },
    });
    const returned: Row[] = [];
    spool.onReturn((rows) => returned.push(...rows));
    const rows = makeRows(20);
    for (const row of rows.slice(0, 10)) spool.append(row);
    assert.equal(spool.flush(), true);
    for (const row of rows.slice(10)) spool.append(row);
    failing = true;
    assert.equal(spool.flush(), false);
    assert.equal(spool.fault?.error, "No space left on device (os error 28)");
    assert.deepEqual(strip(returned), strip(rows.slice(10)));
    assert.equal(spool.rows, 10);
    assert.equal(spool.append(rows[0]!), false, "nothing is appended while it fails");
    assert.equal(spool.appendBatch({ id: crypto.randomUUID(), rows, spooled: false }), false);
    assert.equal(spool.probe(), false);
    failing = false;
    assert.equal(spool.probe(), true);
    assert.equal(spool.fault, undefined);
    const { rows: drained } = await drain(spool);
    assert.deepEqual(strip(drained), strip(rows.slice(0, 10)));
    spool.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Spool slots: one process per slot, and a free slot's leftovers are adopted", async () => {
  const root = await Deno.makeTempDir({ prefix: "tickpipe-slots-" });
  try {
    // A flat spool of the layout before slots, and slot 1 left by a process that died.
    const legacy = await Spool.open(root);
    for (const row of makeRows(3)) legacy.append(row);
    legacy.close();
    const dead = await Spool.open(join(root, "1"));
    const deadRows = makeRows(5, { offset: 3 });
    for (const row of deadRows) dead.append(row);
    dead.close();

    const first = await openSlotSpool(root);
    assert.equal(first.dir, join(root, "0"));
    assert.equal(first.rows, 8, "adopted the flat spool and slot 1");
    // Slot 0 is held: the next process gets slot 1, now empty.
    const second = await openSlotSpool(root);
    assert.equal(second.dir, join(root, "1"));
    assert.equal(second.rows, 0);
    // A held slot is not adopted.
    for (const row of makeRows(2, { offset: 8 })) second.append(row);
    second.close();
    const third = await acquireSlot(root);
    assert.equal(third.index, 1);
    assert.equal(await adoptOrphans(root, third), 0, "slot 0 is held");
    third.lock.close();
    const { rows: drained } = await drain(first);
    assert.deepEqual(strip(drained), strip([...makeRows(3), ...deadRows]));
    first.close();
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("Spool writes each row as rowLine does, byte for byte, whatever its numbers", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tickpipe-spool-" });
  try {
    // Whole numbers are written in halves of 8 digits: the edges of both halves, too.
    const values = [
      0,
      7,
      10,
      99_999_999,
      100_000_000,
      100_000_007,
      1_000_000_000_000_005,
      9_007_199_254_740_991,
      1e21,
      0.1,
      1e-7,
      65432.123456789,
      12.5e6,
    ];
    const rows = makeRows(values.length, { symbols: 2 });
    rows.forEach((row, i) => {
      row.price = values[i]!;
      row.volume = values[i]!;
      row.dayVolume = i % 2 ? null : values[values.length - 1 - i]!;
      row.bid = i % 3 ? null : values[i]! / 3;
    });
    rows[0]!.symbol = "ÉUR/¥€N";
    const spool = await Spool.open(dir, { chunkRows: 100 });
    for (const row of rows) assert.equal(spool.append(row), true);
    spool.close();
    const [file] = [...Deno.readDirSync(dir)];
    const text = await Deno.readTextFile(join(dir, file!.name));
    assert.equal(text.slice(text.indexOf("\n") + 1), rows.map(rowLine).join(""));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
