import assert from "node:assert/strict";
import { join } from "node:path";
import postgres from "postgres";
import { connect } from "../lib/db/connection.ts";
import { startEmbedded, stopEmbedded } from "../lib/db/embedded.ts";
import { migrate } from "../lib/db/migrations.ts";
import { IngestPipeline } from "../lib/pipeline/pipeline.ts";
import { createTestDatabase } from "./_support/db.ts";
import { freePort, taskDataDir } from "./_support/run.ts";
import { waitFor } from "./_support/sim.ts";
import { parsePriceFrame, priceEvents } from "./_support/ticks.ts";
import { assertInsertedInOrder, countAndDuplicates } from "./_support/rows.ts";

async function tempDir(prefix: string): Promise<string> {
  return await Deno.makeTempDir({ prefix });
}

Deno.test("Price frames parsed as the client does are written exactly as sent", async () => {
  const db = await createTestDatabase();
  const dataDir = await tempDir("tickpipe-pipe-");
  try {
    const pipeline = await IngestPipeline.open(db.sql, { dataDir });
    const now = Math.floor(Date.now() / 1000) * 1000;
    const frames = [
      { event: "price", symbol: "BTC/USD", timestamp: now / 1000, price: 64000.5, day_volume: 5 },
      // A millisecond timestamp, bid and ask, and a key the schema strips.
      {
        event: "price",
        symbol: "EUR/USD",
        timestamp: now + 250,
        price: 1.1,
        bid: 1,
        ask: 1.2,
        x: 1,
      },
      { event: "price", symbol: "BTC/USD", timestamp: now / 1000, price: 64001, day_volume: 7.5 },
    ];
    for (const frame of frames) assert.equal(pipeline.pushPrice(parsePriceFrame(frame)), "queued");
    await pipeline.flush();
    const stats = pipeline.stats();
    await pipeline.close();
    assert.equal(stats.received, 3);
    assert.equal(stats.written, 3);
    const rows = await db.sql`
      SELECT symbol, (extract(epoch FROM "time") * 1000)::bigint::text AS ms, price, bid, ask,
             day_volume::float8 AS dv, volume::float8 AS volume, seq::text AS seq
      FROM crypto_ticks ORDER BY seq`;
    assert.deepEqual(rows.map((r) => ({ ...r })), [
      {
        symbol: "BTC/USD",
        ms: String(now),
        price: 64000.5,
        bid: null,
        ask: null,
        dv: 5,
        volume: 0,
        seq: String(now * 1000),
      },
      {
        symbol: "BTC/USD",
        ms: String(now),
        price: 64001,
        bid: null,
        ask: null,
        dv: 7.5,
        volume: 2.5,
        seq: String(now * 1000 + 1),
      },
      {
        symbol: "EUR/USD",
        ms: String(now + 250),
        price: 1.1,
        bid: 1,
        ask: 1.2,
        dv: null,
        volume: null,
        seq: String((now + 250) * 1000),
      },
    ]);
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
    // Each new connection's first batch also compiles the candle trigger (~20 ms on 2
    // cores): kills come often, but not so often that no batch could ever commit.
    const killer = (async () => {
      while (killing) {
        await new Promise((r) => setTimeout(r, 40 + Math.random() * 60));
        const killed = await db.sql`
          SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = ${appName}`;
        kills += killed.length;
      }
    })();
    for (const event of priceEvents(100_000, { symbols: 20, perSecond: 400 })) {
      if (pipeline.full) await pipeline.ready();
      pipeline.pushPrice(event);
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
    for (const event of priceEvents(1000)) pipeline.pushPrice(event);
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

Deno.test("Database outage: ticks wait in memory and the spool, then land exactly once, in order", async (t) => {
  // A server of its own: this test stops it.
  const serverDir = await taskDataDir("test-outage-");
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
    let offset = 0;
    const more = (n: number) => {
      const events = priceEvents(n, { symbols: 5, perSecond: 40, offset });
      offset += n;
      return events;
    };

    await t.step("ticks pushed during an outage are held, spooled, then written", async () => {
      const pipeline = await IngestPipeline.open(sql, options);
      for (const event of more(500)) pipeline.pushPrice(event);
      await pipeline.flush();
      assert.equal(await stopEmbedded(serverDir), true);
      const results = more(5000).map((event) => pipeline.pushPrice(event));
      assert.ok(results.includes("spooled"), "some ticks went to the spool");
      assert.ok(!results.includes("dropped"));
      await waitFor(() => pipeline.stats().retries >= 3, "three retries");
      const during = pipeline.stats();
      // The first failed write sent everything held in memory to the spool.
      assert.equal(during.spooled, 5000);
      assert.equal(during.pendingMemory, 0);
      assert.ok(during.failingSince !== undefined);
      await startEmbedded(serverDir, { port });
      more(300).forEach((event) => pipeline.pushPrice(event));
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
        more(3000).forEach((event) => first.pushPrice(event));
        await waitFor(() => first.stats().retries >= 1, "a retry");
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
        more(400).forEach((event) => second.pushPrice(event));
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
