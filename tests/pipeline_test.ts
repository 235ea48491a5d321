import assert from "node:assert/strict";
import { join } from "node:path";
import postgres from "postgres";
import { connect } from "../lib/db/connection.ts";
import { startEmbedded, stopEmbedded } from "../lib/db/embedded.ts";
import { migrate } from "../lib/db/migrations.ts";
import { IngestPipeline } from "../lib/pipeline/pipeline.ts";
import { TickSequencer } from "../lib/pipeline/sequencer.ts";
import { checkPriceFields, type PriceFields, validateTick } from "../lib/pipeline/tick.ts";
import { createTestDatabase } from "./_support/db.ts";
import { makeTicks } from "./_support/ticks.ts";
import { assertInsertedInOrder, countAndDuplicates } from "./_support/rows.ts";

async function tempDir(prefix: string): Promise<string> {
  return await Deno.makeTempDir({ prefix });
}

Deno.test("validateTick rejects malformed ticks and converts millisecond timestamps", () => {
  const now = Date.UTC(2026, 0, 1, 12);
  const good = { symbol: "BTC/USD", timestamp: now / 1000, price: 42000.5, day_volume: 12.5 };
  const ok = validateTick(good, { nowMs: now, receivedAt: 1 });
  assert.ok(ok.ok);
  assert.equal(ok.tick.timeMs, now);
  assert.equal(ok.tick.dayVolume, 12.5);
  const ms = validateTick({ ...good, timestamp: now + 123 }, { nowMs: now });
  assert.ok(ms.ok && ms.tick.timeMs === now + 123);
  const camel = validateTick({ symbol: "EUR/USD", timeMs: now, price: 1.1 }, { nowMs: now });
  assert.ok(camel.ok && camel.tick.dayVolume === undefined);
  for (const symbol of ["^GSPC", "BRK.B", "EUR=X", "XETR:SAP", "BTC-USD", "A_B"]) {
    assert.ok(validateTick({ ...good, symbol }, { nowMs: now }).ok, symbol);
  }
  const cases: [unknown, string][] = [
    [null, "not an object"],
    ["BTC", "not an object"],
    [{ ...good, symbol: undefined }, "missing symbol"],
    [{ ...good, symbol: "'; DROP TABLE crypto_ticks;--" }, "invalid symbol"],
    [{ ...good, symbol: "BTC\tUSD" }, "invalid symbol"],
    [{ ...good, symbol: "X".repeat(33) }, "invalid symbol"],
    [{ ...good, symbol: 42 }, "invalid symbol"],
    [{ ...good, price: undefined }, "missing price"],
    [{ ...good, price: "42000" }, "invalid price"],
    [{ ...good, price: NaN }, "invalid price"],
    [{ ...good, price: Infinity }, "invalid price"],
    [{ ...good, price: -1 }, "invalid price"],
    [{ ...good, price: 0 }, "invalid price"],
    [{ ...good, price: 2e9 }, "invalid price"],
    [{ ...good, timestamp: undefined }, "missing timestamp"],
    [{ ...good, timestamp: "now" }, "invalid timestamp"],
    [{ ...good, timestamp: now / 1000 + 3600 }, "timestamp out of range"],
    [{ ...good, timestamp: 1 }, "timestamp out of range"],
    [{ ...good, bid: -5 }, "invalid bid"],
    [{ ...good, ask: NaN }, "invalid ask"],
    [{ ...good, day_volume: "12" }, "invalid day_volume"],
  ];
  for (const [raw, reason] of cases) {
    const result = validateTick(raw, { nowMs: now });
    assert.deepEqual(result, { ok: false, reason }, JSON.stringify(raw));
  }
});

Deno.test("The price-event fast path keeps validateTick's rules and builds the same rows", () => {
  const now = Date.UTC(2026, 0, 1, 12);
  // As the client delivers it: its schema has checked types, finiteness and signs.
  const good: PriceFields = {
    symbol: "BTC/USD",
    timeMs: now,
    price: 42000.5,
    bid: 42000,
    ask: 42001,
    day_volume: 12.5,
    currency_base: "Bitcoin",
    currency_quote: "US Dollar",
  };
  assert.equal(checkPriceFields(good, now), undefined);
  for (const symbol of ["^GSPC", "BRK.B", "EUR=X", "XETR:SAP", "BTC-USD", "A_B"]) {
    assert.equal(checkPriceFields({ ...good, symbol }, now), undefined, symbol);
  }
  const cases: [Partial<PriceFields>, string][] = [
    [{ symbol: "'; DROP TABLE crypto_ticks;--" }, "invalid symbol"],
    [{ symbol: "BTC\tUSD" }, "invalid symbol"],
    [{ symbol: "X".repeat(33) }, "invalid symbol"],
    [{ price: 2e9 }, "invalid price"],
    [{ timeMs: now + 3600_000 }, "timestamp out of range"],
  ];
  for (const [change, reason] of cases) {
    const event = { ...good, ...change };
    assert.equal(checkPriceFields(event, now), reason, JSON.stringify(change));
    // validateTick, on the same event in its wire shape, agrees.
    const wire = { ...event, timestamp: event.timeMs / 1000 };
    assert.deepEqual(validateTick(wire, { nowMs: now }), { ok: false, reason });
  }
  const slow = new TickSequencer();
  const fast = new TickSequencer();
  for (let i = 0; i < 5; i++) {
    const event = { ...good, timeMs: now + (i >> 1) * 1000, day_volume: 12.5 + i };
    const checked = validateTick({ ...event, timestamp: event.timeMs / 1000, receivedAt: i });
    assert.ok(checked.ok);
    assert.deepEqual(fast.assignPrice(event, i), slow.assign(checked.tick));
  }
  assert.equal(fast.name("BTC/USD"), "Bitcoin/US Dollar");
  assert.equal(fast.name("BTC/USD"), slow.name("BTC/USD"));
});

Deno.test("Pipeline pushPrice rejects by reason and writes the valid events", async () => {
  const db = await createTestDatabase();
  const dataDir = await tempDir("tickpipe-pipe-");
  try {
    const pipeline = await IngestPipeline.open(db.sql, { dataDir });
    const now = Date.now();
    const event = { symbol: "BTC/USD", timeMs: now, price: 1, day_volume: 5 };
    assert.equal(pipeline.pushPrice(event), "queued");
    assert.equal(pipeline.pushPrice({ ...event, price: 1e10 }), "rejected");
    assert.equal(pipeline.pushPrice({ ...event, symbol: "x'--" }), "rejected");
    assert.equal(pipeline.pushPrice({ ...event, timeMs: now + 3600_000 }), "rejected");
    await pipeline.flush();
    const stats = pipeline.stats();
    await pipeline.close();
    assert.equal(stats.received, 4);
    assert.equal(stats.written, 1);
    assert.deepEqual(stats.rejectedByReason, {
      "invalid price": 1,
      "invalid symbol": 1,
      "timestamp out of range": 1,
    });
    const [row] = await db.sql`SELECT (extract(epoch FROM "time") * 1000)::bigint::text AS ms,
      day_volume::float8 AS dv FROM crypto_ticks`;
    assert.equal(row!.ms, String(now));
    assert.equal(row!.dv, 5);
  } finally {
    await db.drop();
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("Pipeline counts rejected ticks by reason and writes the valid ones", async () => {
  const db = await createTestDatabase();
  const dataDir = await tempDir("tickpipe-pipe-");
  try {
    const pipeline = await IngestPipeline.open(db.sql, { dataDir });
    const now = Date.now();
    assert.equal(pipeline.pushRaw({ symbol: "BTC/USD", timestamp: now, price: 1 }), "queued");
    assert.equal(
      pipeline.pushRaw({ symbol: "BTC/USD", timestamp: now / 1000, price: NaN }),
      "rejected",
    );
    assert.equal(pipeline.pushRaw({ symbol: "x'--", timestamp: now / 1000, price: 1 }), "rejected");
    assert.equal(pipeline.pushRaw({ symbol: "BTC/USD", price: 1 }), "rejected");
    pipeline.reject("invalid JSON");
    await pipeline.flush();
    const stats = pipeline.stats();
    await pipeline.close();
    assert.equal(stats.received, 5);
    assert.equal(stats.written, 1);
    assert.equal(stats.rejected, 4);
    assert.deepEqual(stats.rejectedByReason, {
      "invalid price": 1,
      "invalid symbol": 1,
      "missing timestamp": 1,
      "invalid JSON": 1,
    });
    const [row] = await db.sql`SELECT (extract(epoch FROM "time") * 1000)::bigint::text AS ms
      FROM crypto_ticks`;
    assert.equal(row!.ms, String(now));
  } finally {
    await db.drop();
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("Exactly once while connections are killed mid-run", async () => {
  const db = await createTestDatabase();
  const dataDir = await tempDir("tickpipe-pipe-");
  const appName = `tickpipe-kill-${crypto.randomUUID().slice(0, 8)}`;
  // fetch_types: false because postgres.js 3.4.9 never awaits the array-type query it runs
  // on each new connection: a kill landing during it is an unhandled rejection.
  const sql = postgres({
    host: db.config.host,
    port: db.config.port,
    user: db.config.user,
    password: db.config.password,
    database: db.config.database,
    max: 2,
    fetch_types: false,
    connection: { application_name: appName },
    onnotice: () => {},
  });
  try {
    const pipeline = await IngestPipeline.open(sql, {
      dataDir,
      maxBatch: 2000,
      maxWaitMs: 20,
      retryInitialMs: 5,
      retryMaxMs: 50,
    });
    let killing = true;
    let kills = 0;
    const killer = (async () => {
      while (killing) {
        await new Promise((r) => setTimeout(r, 15 + Math.random() * 30));
        const killed = await db.sql`
          SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = ${appName}`;
        kills += killed.length;
      }
    })();
    const ticks = makeTicks(100_000, { symbols: 20, perSecond: 400 });
    for (const t of ticks) {
      if (pipeline.full) await pipeline.ready();
      pipeline.push(t);
    }
    await pipeline.flush();
    killing = false;
    await killer;
    const stats = pipeline.stats();
    await pipeline.close();
    assert.ok(kills > 0, "some connections were killed");
    assert.ok(stats.retries > 0, "some writes were retried");
    assert.deepEqual(await countAndDuplicates(db.sql), { rows: 100_000, duplicates: 0 });
    assert.equal(stats.written, 100_000);
    assert.equal(stats.dropped, 0);
  } finally {
    await sql.end({ timeout: 5 });
    await db.drop();
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("A COMMIT whose outcome was lost is detected on retry and not repeated", async () => {
  const db = await createTestDatabase();
  const dataDir = await tempDir("tickpipe-pipe-");
  try {
    let commits = 0;
    const pipeline = await IngestPipeline.open(db.sql, {
      dataDir,
      maxBatch: 100,
      retryInitialMs: 5,
      afterCommit: () => {
        // The second batch commits, then the client "loses" the answer.
        if (++commits === 2) throw new Error("Connection terminated during COMMIT");
      },
    });
    for (const t of makeTicks(1000)) pipeline.push(t);
    await pipeline.flush();
    const stats = pipeline.stats();
    await pipeline.close();
    assert.equal(stats.recovered, 1);
    assert.equal(stats.retries, 1);
    assert.equal(stats.batches, 10);
    assert.deepEqual(await countAndDuplicates(db.sql), { rows: 1000, duplicates: 0 });
    const [b] = await db.sql`SELECT count(*)::int AS n FROM tickpipe_batches`;
    assert.equal(b!.n, 10);
  } finally {
    await db.drop();
    await Deno.remove(dataDir, { recursive: true });
  }
});

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

async function waitFor(condition: () => boolean, timeoutMs = 30_000): Promise<void> {
  const start = performance.now();
  while (!condition()) {
    if (performance.now() - start > timeoutMs) throw new Error("Timed out waiting");
    await new Promise((r) => setTimeout(r, 20));
  }
}

Deno.test("Database outage: ticks wait in memory and the spool, then land exactly once, in order", async (t) => {
  // A server of its own: this test stops it.
  const serverDir = await Deno.makeTempDir({ dir: ".data", prefix: "test-outage-" });
  const dataDir = await tempDir("tickpipe-outage-");
  const port = freePort();
  const server = await startEmbedded(serverDir, { port });
  const sql = connect(server.database, { max: 2, connectTimeout: 2 });
  const logLines: string[] = [];
  const { Logger } = await import("../lib/log.ts");
  const logger = new Logger({ sink: (line) => logLines.push(line) });
  const options = {
    dataDir,
    maxBatch: 200,
    maxWaitMs: 20,
    memoryCap: 1000,
    retryInitialMs: 20,
    retryMaxMs: 200,
    logger,
  };
  try {
    await migrate(sql, { mode: "portable" });
    let ticks = makeTicks(500, { symbols: 5, perSecond: 40 });
    let offset = 500;
    const more = (n: number) => {
      ticks = makeTicks(n, { symbols: 5, perSecond: 40, offset });
      offset += n;
      return ticks;
    };

    await t.step("ticks pushed during an outage are held, spooled, then written", async () => {
      const pipeline = await IngestPipeline.open(sql, options);
      for (const tick of ticks) pipeline.push(tick);
      await pipeline.flush();
      assert.equal(await stopEmbedded(serverDir), true);
      const results = more(5000).map((tick) => pipeline.push(tick));
      assert.ok(results.includes("spooled"), "some ticks went to the spool");
      assert.ok(!results.includes("dropped"));
      await waitFor(() => pipeline.stats().retries >= 3);
      const during = pipeline.stats();
      // The first failed write sent everything held in memory to the spool.
      assert.equal(during.spooled, 5000);
      assert.equal(during.pendingMemory, 0);
      assert.ok(during.failingSince !== undefined);
      await startEmbedded(serverDir, { port });
      more(300).forEach((tick) => pipeline.push(tick));
      await pipeline.flush();
      const after = pipeline.stats();
      await pipeline.close();
      assert.equal(after.spooled, 0);
      assert.equal(after.written, 5800);
      assert.equal(after.dropped, 0);
      assert.deepEqual(await countAndDuplicates(sql), { rows: 5800, duplicates: 0 });
      await assertInsertedInOrder(sql);
      assert.ok(
        logLines.some((l) =>
          /Database unreachable: [\d,]+ ticks waiting \([\d,]+ in memory, [\d,]+ spooled\); retrying in/
            .test(l)
        ),
        logLines.join("\n"),
      );
      assert.ok(logLines.some((l) => l.includes("Database reachable again")));
    });

    await t.step(
      "a spool left by a stopped pipeline is drained first on the next start",
      async () => {
        await stopEmbedded(serverDir);
        const first = await IngestPipeline.open(sql, options);
        more(3000).forEach((tick) => first.push(tick));
        await waitFor(() => first.stats().retries >= 1);
        // The database never came back: what is left in memory goes to the spool.
        await first.close({ timeoutMs: 50 });
        const segments = () =>
          [...Deno.readDirSync(join(dataDir, "spool", "0"))].filter((e) =>
            e.name.startsWith("seg-")
          );
        assert.ok(segments().length > 0);

        await startEmbedded(serverDir, { port });
        const second = await IngestPipeline.open(sql, options);
        assert.equal(second.stats().spooled, 3000);
        // New ticks continue in the same seconds: their seq follows the spooled ones.
        more(400).forEach((tick) => second.push(tick));
        await second.flush();
        const stats = second.stats();
        await second.close();
        assert.equal(stats.written, 3400);
        assert.deepEqual(await countAndDuplicates(sql), { rows: 9200, duplicates: 0 });
        await assertInsertedInOrder(sql);
        assert.deepEqual(segments(), []);
      },
    );
  } finally {
    await sql.end({ timeout: 5 });
    await stopEmbedded(serverDir);
    const cluster = await Deno.realPath(join(serverDir, "postgres")).catch(() => undefined);
    await Deno.remove(serverDir, { recursive: true });
    if (cluster && !cluster.startsWith(await Deno.realPath(".data"))) {
      await Deno.remove(cluster, { recursive: true }).catch(() => {});
    }
    await Deno.remove(dataDir, { recursive: true });
  }
});
