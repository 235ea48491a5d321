/**
 * One writer per symbol, in process: several `runIngest` against one real PostgreSQL and
 * one simulator, each with its own pool and lease session, as separate processes would be.
 * The simulator's per-connection record is the ground truth: every tick a holder was sent
 * is stored once, and a hand-over costs only the ticks it is reported to cost.
 */
import assert from "node:assert/strict";
import type { Sql } from "postgres";
import { connect } from "../lib/db/connection.ts";
import { type IngestOptions, type IngestSummary, runIngest } from "../lib/ingest/mod.ts";
import type { SimulatorHandle } from "../lib/simulator/mod.ts";
import { assertEachSentTickOnce, assertHandedOver, connectionIds } from "./_support/accounting.ts";
import { createTestDatabase, type TestDatabase } from "./_support/db.ts";
import { type Proxy, startProxy } from "./_support/proxy.ts";
import { duplicates, rowsBySymbol } from "./_support/rows.ts";
import { captureLogger, sentMore, TEST_KEY, waitFor, withSimulator } from "./_support/sim.ts";

const CLIENT = { heartbeatMs: 500, watchdogMs: 2_000, backoffBaseMs: 100, backoffCapMs: 1_000 };

/** One ingest "process": its own pool, lease session, data directory and log. */
interface Ingest {
  name: string;
  lines: string[];
  summary(): IngestSummary | undefined;
  /** Stops it gracefully; resolves with its final summary. */
  stop(): Promise<IngestSummary>;
  done: Promise<IngestSummary>;
}

/** How a test ingest differs from the default. */
interface StartOptions {
  lease?: Partial<NonNullable<IngestOptions["lease"]>>;
  /** Reach the database through this proxy. */
  via?: Proxy;
  /** Serve metrics and /healthz (on a free port, logged). */
  metrics?: boolean;
}

async function startIngest(
  db: TestDatabase,
  sim: SimulatorHandle,
  name: string,
  symbols: string[],
  options: StartOptions = {},
): Promise<Ingest> {
  const { logger, lines } = captureLogger();
  const config = options.via
    ? { ...db.config, host: "127.0.0.1", port: options.via.port }
    : db.config;
  const sql = connect(config, { max: 4, applicationName: `tickpipe ${name}` });
  const dataDir = await Deno.makeTempDir({ prefix: `tickpipe-lease-${name}-` });
  const controller = new AbortController();
  let last: IngestSummary | undefined;
  const done = runIngest(sql, {
    twelveData: { apiKey: TEST_KEY, wsUrl: sim.wsUrl, apiUrl: sim.apiUrl },
    symbols,
    dataDir,
    signal: controller.signal,
    logger: logger.child({ ingest: name }),
    summaryEveryMs: 50,
    metricsPort: options.metrics ? 0 : undefined,
    client: CLIENT,
    pipeline: { retryInitialMs: 50, retryMaxMs: 300 },
    onSummary: (s) => last = s,
    lease: {
      connect: () =>
        connect(config, {
          max: 1,
          idleTimeout: 0,
          maxLifetime: 0,
          fetchTypes: false,
          connectTimeout: 2,
          applicationName: `tickpipe lease ${name}`,
        }),
      host: name,
      pid: 1,
      renewMs: 100,
      timeoutMs: 5_000,
      graceMs: 500,
      ...options.lease,
    },
  }).finally(async () => {
    await sql.end({ timeout: 5 });
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  });
  done.catch((error) => lines.push(`runIngest failed: ${error.stack ?? error}`));
  return {
    name,
    lines,
    summary: () => last,
    stop: () => {
      controller.abort();
      return done;
    },
    done,
  };
}

/** As `waitFor`, with the logs of `ingests` in the error. */
async function waitOn(
  ingests: Ingest[],
  condition: () => boolean,
  what: string,
  timeoutMs = 15_000,
): Promise<void> {
  try {
    await waitFor(condition, what, timeoutMs);
  } catch (error) {
    const logs = ingests.map((i) => `--- ${i.name}\n${i.lines.join("\n")}`).join("\n");
    throw new Error(`${(error as Error).message}\n${logs}`);
  }
}

const owned = (i: Ingest) => i.summary()?.leases?.owned ?? -1;
const standby = (i: Ingest) => i.summary()?.leases?.standby ?? -1;

/** Starts "a" until it holds every one of `symbols`, then "b" until it stands by for them. */
async function holderAndStandby(
  db: TestDatabase,
  sim: SimulatorHandle,
  symbols: string[],
  options: { a?: StartOptions; b?: StartOptions } = {},
): Promise<[Ingest, Ingest]> {
  const a = await startIngest(db, sim, "a", symbols, options.a);
  await waitOn([a], () => owned(a) === symbols.length, "a to hold its leases");
  const b = await startIngest(db, sim, "b", symbols, options.b);
  await waitOn([a, b], () => standby(b) === symbols.length, "b to stand by");
  return [a, b];
}

/** Every tick the simulator sent is stored once: rows per symbol equal its counts. */
async function assertEveryTickOnce(sql: Sql, sim: SimulatorHandle): Promise<void> {
  assert.deepEqual(await rowsBySymbol(sql), sim.stats().by_symbol);
  assert.equal(await duplicates(sql), 0);
}

async function handovers(sql: Sql) {
  return await sql<{ symbol: string; kind: string; from_holder: string; to_holder: string }[]>`
    SELECT symbol, kind, from_holder, to_holder FROM tickpipe_handovers ORDER BY symbol, id`;
}

Deno.test("Two ingests on the same symbols: one writes, the other stands by, then takes over; every tick once", async () => {
  const db = await createTestDatabase();
  try {
    const symbols = ["BTC/USD", "ETH/USD"];
    await withSimulator({ rate: 2_000, symbols, recordFrames: true }, async (sim) => {
      const [a, b] = await holderAndStandby(db, sim, symbols, { b: { metrics: true } });
      // A hot standby is healthy, and says what it waits for.
      const url = /Serving metrics on (http:\S+)\/metrics/.exec(b.lines.join("\n"))![1];
      const health = await fetch(`${url}/healthz`);
      assert.equal(health.status, 200);
      assert.equal(await health.text(), "standby for 2 symbols\n");
      const metrics = await (await fetch(`${url}/metrics`)).text();
      assert.match(metrics, /^tickpipe_symbols_owned 0$/m);
      assert.match(metrics, /^tickpipe_symbols_standby 2$/m);
      assert.ok(
        b.lines.some((l) =>
          /Standing by for 2 symbol\(s\) held by another ingest process: BTC\/USD \(a:1 since/.test(
            l,
          )
        ),
        b.lines.join("\n"),
      );
      await sentMore(sim, 300);
      const first = await a.stop();
      assert.equal(first.leases?.owned, 2);
      await waitOn([a, b], () => owned(b) === 2, "b to take over");
      await sentMore(sim, 300);
      const second = await b.stop();
      assert.equal(second.leases?.takeovers, 2);
      assert.ok(
        b.lines.some((l) => /Took over 2 symbol\(s\) from a:1 \(it released them\)/.test(l)),
      );

      const [ca, cb] = connectionIds(sim);
      for (const symbol of symbols) {
        const { lost, firstStored, nextStored } = await assertHandedOver(
          db.sql,
          sim,
          symbol,
          ca!,
          cb!,
        );
        // A clean stop writes everything it accepted before it releases: nothing is lost.
        assert.equal(lost, 0, symbol);
        assert.ok(firstStored > 0 && nextStored > 0, `${symbol}: ${firstStored} + ${nextStored}`);
      }
      assert.equal(await duplicates(db.sql), 0);
      const rows = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM crypto_ticks`;
      assert.equal(rows[0]!.n, sim.stats().price_events_sent);
      assert.deepEqual(
        (await handovers(db.sql)).map((h) =>
          `${h.symbol} ${h.kind} ${h.from_holder}→${h.to_holder}`
        ),
        ["BTC/USD handover a:1→b:1", "ETH/USD handover a:1→b:1"],
      );
    });
  } finally {
    await db.drop();
  }
});

Deno.test("Ingests on different symbols run side by side, each symbol complete", async () => {
  const db = await createTestDatabase();
  try {
    await withSimulator(
      { rate: 2_000, symbols: ["BTC/USD", "ETH/USD", "AAPL", "MSFT"] },
      async (sim) => {
        const a = await startIngest(db, sim, "a", ["BTC/USD", "ETH/USD"]);
        const b = await startIngest(db, sim, "b", ["AAPL", "MSFT"]);
        await waitOn([a, b], () => owned(a) === 2 && owned(b) === 2, "both to hold their leases");
        await sentMore(sim, 1_000);
        const [first, second] = await Promise.all([a.stop(), b.stop()]);
        assert.equal(first.leases?.standby, 0);
        assert.equal(second.leases?.standby, 0);
        await assertEveryTickOnce(db.sql, sim);
        assert.deepEqual([...await handovers(db.sql)], []);
      },
    );
  } finally {
    await db.drop();
  }
});

Deno.test("Overlapping symbol sets: the second ingests what is free and stands by for the rest", async () => {
  const db = await createTestDatabase();
  try {
    const all = ["BTC/USD", "ETH/USD", "AAPL"];
    await withSimulator({ rate: 2_000, symbols: all, recordFrames: true }, async (sim) => {
      const a = await startIngest(db, sim, "a", ["BTC/USD", "ETH/USD"]);
      await waitOn([a], () => owned(a) === 2, "a to hold its leases");
      const b = await startIngest(db, sim, "b", ["ETH/USD", "AAPL"]);
      await waitOn([a, b], () => owned(b) === 1 && standby(b) === 1, "b: AAPL held, ETH stood by");
      assert.ok(
        b.lines.some((l) => /Standing by for 1 symbol\(s\).*: ETH\/USD \(a:1 since/.test(l)),
      );
      await sentMore(sim, 600);
      await a.stop();
      await waitOn([a, b], () => owned(b) === 2, "b to take ETH/USD over");
      await sentMore(sim, 600);
      await b.stop();

      const [ca, cb] = connectionIds(sim);
      const eth = await assertHandedOver(db.sql, sim, "ETH/USD", ca!, cb!);
      assert.equal(eth.lost, 0);
      await assertEveryTickOnce(db.sql, sim);
      // Each symbol went to one connection at a time: BTC to a only, AAPL to b only.
      const stats = sim.stats();
      assert.equal(stats.by_connection[cb!]!["BTC/USD"], undefined);
      assert.equal(stats.by_connection[ca!]!["AAPL"], undefined);
      assert.deepEqual(
        (await handovers(db.sql)).map((h) =>
          `${h.symbol} ${h.kind} ${h.from_holder}→${h.to_holder}`
        ),
        ["ETH/USD handover a:1→b:1"],
      );
    });
  } finally {
    await db.drop();
  }
});

/**
 * Stops the standby `b`, then the holder `a`, and asserts that nothing changed hands and
 * every tick was stored once.
 */
async function stopHeldThroughout(
  db: TestDatabase,
  sim: SimulatorHandle,
  a: Ingest,
  b: Ingest,
): Promise<void> {
  // Stopped while its database is still failing, the holder would leave what it kept in its
  // spool for its next start (which this test deletes): first it writes it.
  await waitOn([a, b], () => {
    const pipeline = a.summary()?.pipeline;
    return pipeline !== undefined && pipeline.failingSince === undefined && pipeline.spooled === 0;
  }, "a to write what it kept");
  const second = await b.stop();
  const first = await a.stop();
  assert.equal(first.leases?.lost, 0);
  assert.equal(second.leases?.takeovers, 0);
  await assertEveryTickOnce(db.sql, sim);
  assert.deepEqual([...await handovers(db.sql)], []);
}

/** Runs `fn` with a fresh database and a proxy in front of it, both removed afterwards. */
async function withProxiedDatabase(
  fn: (db: TestDatabase, proxy: Proxy) => Promise<void>,
): Promise<void> {
  const db = await createTestDatabase();
  const proxy = startProxy(db.config);
  try {
    await fn(db, proxy);
  } finally {
    await proxy.close();
    await db.drop();
  }
}

/** Runs `fn` on a one-connection pool to the test server's admin database. */
async function asAdmin<T>(db: TestDatabase, fn: (admin: Sql) => Promise<T>): Promise<T> {
  const admin = connect(db.server.admin, { max: 1 });
  try {
    return await fn(admin);
  } finally {
    await admin.end({ timeout: 5 });
  }
}

Deno.test("A database restart: the holder wins its leases back, the standby does not steal them", async () => {
  const db = await createTestDatabase();
  const name = db.config.database;
  try {
    const symbols = ["BTC/USD", "ETH/USD"];
    await withSimulator({ rate: 2_000, symbols }, async (sim) => {
      // A long grace: the standby could only take a lease if the rule let it.
      const [a, b] = await holderAndStandby(db, sim, symbols, {
        b: { lease: { graceMs: 60_000 } },
      });
      await sentMore(sim, 300);
      // Every session ends and none can start, as while the server restarts.
      await asAdmin(db, async (admin) => {
        await admin`ALTER DATABASE ${admin(name)} ALLOW_CONNECTIONS false`;
        await admin`
          SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE datname = ${name} AND pid <> pg_backend_pid()`;
      });
      const connected = (i: Ingest) => i.summary()?.leases?.connected;
      await waitOn([a, b], () => !connected(a) && !connected(b), "both to lose their session");
      await sentMore(sim, 600);
      await asAdmin(db, (admin) => admin`ALTER DATABASE ${admin(name)} ALLOW_CONNECTIONS true`);
      await waitOn(
        [a, b],
        () =>
          a.lines.some((l) => /The lease session is back after .*: 2 lease\(s\) confirmed/.test(l)),
        "a to confirm its leases",
      );
      await waitOn([a, b], () => connected(b) === true && standby(b) === 2, "b to stand by again");
      await sentMore(sim, 300);
      // The holder kept every tick through the outage and wrote it afterwards.
      await stopHeldThroughout(db, sim, a, b);
    });
  } finally {
    await asAdmin(db, (admin) => admin`ALTER DATABASE ${admin(name)} ALLOW_CONNECTIONS true`)
      .catch(() => {});
    await db.drop();
  }
});

Deno.test("The holder cut off from the database for less than the lease timeout keeps its leases and loses nothing", async () => {
  await withProxiedDatabase(async (db, proxy) => {
    const symbols = ["BTC/USD", "ETH/USD"];
    await withSimulator({ rate: 2_000, symbols }, async (sim) => {
      const [a, b] = await holderAndStandby(db, sim, symbols, {
        a: { via: proxy, lease: { timeoutMs: 60_000 } },
      });
      // A partition: a's sessions stay open on the server, silent.
      proxy.freeze();
      await sentMore(sim, 1_000);
      await waitOn(
        [a, b],
        () => (a.summary()?.pipeline.pendingMemory ?? 0) > 500,
        "a to hold ticks",
      );
      proxy.thaw();
      await sentMore(sim, 300);
      await stopHeldThroughout(db, sim, a, b);
    });
  });
});

Deno.test("The holder whose connections are reset while it goes on: the standby takes over, the holder holds what it receives meanwhile and stores each tick once", async () => {
  await withProxiedDatabase(async (db, proxy) => {
    const symbols = ["BTC/USD", "ETH/USD"];
    await withSimulator({ rate: 2_000, symbols, recordFrames: true }, async (sim) => {
      // A long lease timeout: the holder holds ticks for as long as the test takes.
      const [a, b] = await holderAndStandby(db, sim, symbols, {
        a: { via: proxy, lease: { timeoutMs: 120_000 } },
      });
      await sentMore(sim, 300);
      // a's connections are reset and it cannot reconnect: its sessions end at once, the
      // standby takes over once a's row has gone unrenewed for 3 renewals.
      proxy.cut();
      await waitOn([a, b], () => owned(b) === 2, "b to take over");
      await sentMore(sim, 600);
      assert.ok((a.summary()?.leases?.held ?? 0) > 0, "a holds the ticks it receives");
      proxy.restore();
      await waitOn([a, b], () => owned(a) === 0 && standby(a) === 2, "a to learn it lost them");
      await waitOn([a, b], () => a.summary()?.leases?.held === 0, "a to sort out what it held");
      assert.ok(
        a.lines.some((l) =>
          /Lost the lease of BTC\/USD, ETH\/USD to b:1 while its lease session was lost: stopped ingesting them/
            .test(l)
        ),
        a.lines.join("\n"),
      );
      const sorted = a.lines.find((l) => /Sorted out the ticks held for /.test(l));
      assert.ok(sorted, a.lines.join("\n"));
      await sentMore(sim, 300);
      const first = await a.stop();
      const second = await b.stop();
      assert.equal(first.leases?.lost, 2);
      assert.equal(second.leases?.takeovers, 2);

      // Nothing doubled, nothing lost but what a reported (nothing, once b's rows are there).
      await assertEachSentTickOnce(db.sql, sim, symbols, first.leases!.discardedUnverified);
      assert.deepEqual(
        (await handovers(db.sql)).map((h) =>
          `${h.symbol} ${h.kind} ${h.from_holder}→${h.to_holder}`
        ),
        ["BTC/USD takeover a:1→b:1", "ETH/USD takeover a:1→b:1"],
      );
      console.error(
        `[lease] reset holder: ${/Sorted out .* it stored/.exec(sorted!)![0]}; ${
          first.leases!.discardedUnverified
        } discarded unverified`,
      );
    });
  });
});

Deno.test("The holder's lease session ended by pg_terminate_backend: it reclaims its leases before the standby may take them; every tick once", async () => {
  const db = await createTestDatabase();
  try {
    const symbols = ["BTC/USD", "ETH/USD"];
    await withSimulator({ rate: 2_000, symbols }, async (sim) => {
      // A standby that waits 30 s for a silent holder: it could only take over if a failed
      // to reclaim for that long, or if the rule let it.
      const [a, b] = await holderAndStandby(db, sim, symbols, {
        b: { lease: { staleMs: 30_000 } },
      });
      await sentMore(sim, 300);
      const [ended] = await asAdmin(db, (admin) =>
        admin<{ n: number }[]>`
          SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
          WHERE datname = ${db.config.database} AND application_name = 'tickpipe lease a'`);
      assert.equal(ended!.n, 1);
      await waitOn(
        [a, b],
        () =>
          a.lines.some((l) => /The lease session is back after .*: 2 lease\(s\) confirmed/.test(l)),
        "a to reclaim its leases",
      );
      assert.equal(standby(b), 2);
      await sentMore(sim, 300);
      await stopHeldThroughout(db, sim, a, b);
    });
  } finally {
    await db.drop();
  }
});
