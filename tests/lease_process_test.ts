/**
 * One writer per symbol with real processes: `tasks/ingest.ts` run twice with the task's
 * own permissions against one database and one simulator, the holder killed with SIGKILL
 * or frozen with SIGSTOP. The simulator's record of what each connection was sent is the
 * ground truth for what the hand-over cost.
 */
import assert from "node:assert/strict";
import type { SimulatorHandle } from "../lib/simulator/mod.ts";
import { assertHandedOver, connectionIds, duplicates, sentTicks } from "./_support/accounting.ts";
import { createTestDatabase, type TestDatabase } from "./_support/db.ts";
import { permissionSet, runDeno } from "./_support/run.ts";
import { ingestEnv, waitFor, withSimulator } from "./_support/sim.ts";
import { databaseUrl } from "./_support/url.ts";

/** An ingest process and the messages it logged so far (JSON lines). */
interface IngestProcess {
  child: Deno.ChildProcess;
  /** "host:pid", as it names itself in leases. */
  name: string;
  messages(): string[];
  /** Waits for a log message matching `pattern`. */
  logged(pattern: RegExp, timeoutMs?: number): Promise<void>;
  /** SIGTERM, then its exit code. */
  stop(): Promise<number>;
  cleanup(): Promise<void>;
}

function spawnIngest(
  db: TestDatabase,
  sim: SimulatorHandle,
  symbols: string[],
  args: string[] = [],
): Promise<IngestProcess> {
  return (async () => {
    await Deno.mkdir(".data", { recursive: true });
    const dataDir = await Deno.makeTempDir({ dir: ".data", prefix: "tickpipe-lease-" });
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        ...permissionSet("db"),
        "tasks/ingest.ts",
        "--symbols",
        symbols.join(","),
        "--log-format",
        "json",
        ...args,
      ],
      env: { NO_COLOR: "1", ...ingestEnv(sim, databaseUrl(db.config), dataDir) },
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const lines: string[] = [];
    let rest = "";
    const reading = child.stderr.pipeThrough(new TextDecoderStream()).pipeTo(
      new WritableStream({
        write(chunk) {
          const parts = (rest + chunk).split("\n");
          rest = parts.pop()!;
          lines.push(...parts);
        },
      }),
    ).catch(() => {});
    const messages = () =>
      lines.map((line) => {
        try {
          return String(JSON.parse(line).msg);
        } catch {
          return line;
        }
      });
    return {
      child,
      name: `${Deno.hostname()}:${child.pid}`,
      messages,
      async logged(pattern, timeoutMs = 20_000) {
        try {
          await waitFor(() => messages().some((m) => pattern.test(m)), String(pattern), timeoutMs);
        } catch (error) {
          throw new Error(`${(error as Error).message}\n${lines.join("\n")}`);
        }
      },
      async stop() {
        child.kill("SIGTERM");
        return (await child.status).code;
      },
      async cleanup() {
        try {
          child.kill("SIGKILL");
        } catch {
          // already gone
        }
        await child.status;
        await reading;
        await Deno.remove(dataDir, { recursive: true }).catch(() => {});
      },
    };
  })();
}

async function sentMore(sim: SimulatorHandle, more: number): Promise<void> {
  const target = sim.stats().price_events_sent + more;
  await waitFor(() => sim.stats().price_events_sent >= target, `${more} more ticks`, 30_000);
}

Deno.test("kill -9 of the holder: the standby process takes over, and only the holder's last ticks are missing, in the window it reports", async () => {
  const db = await createTestDatabase();
  const symbols = ["BTC/USD", "ETH/USD"];
  const started: IngestProcess[] = [];
  try {
    await withSimulator({ rate: 2_000, symbols, recordFrames: true }, async (sim) => {
      const a = await spawnIngest(db, sim, symbols);
      started.push(a);
      await a.logged(/^Holding the lease of 2 symbol\(s\): BTC\/USD, ETH\/USD$/);
      const b = await spawnIngest(db, sim, symbols);
      started.push(b);
      await b.logged(/^Standing by for 2 symbol\(s\) held by another ingest process/);
      await sentMore(sim, 1_000);
      const killedAt = Date.now();
      a.child.kill("SIGKILL");
      await a.child.status;
      await b.logged(/^Took over 2 symbol\(s\) from .* \(its session ended without releasing\)/);
      await sentMore(sim, 1_000);
      assert.equal(await b.stop(), 0, b.messages().join("\n"));

      const [ca, cb] = connectionIds(sim);
      const gaps = await db.sql<
        {
          symbol: string;
          kind: string;
          from_holder: string;
          to_holder: string;
          start_at: Date;
          end_at: Date;
        }[]
      >`SELECT symbol, kind, from_holder, to_holder, start_at, end_at FROM tickpipe_handovers ORDER BY symbol`;
      assert.deepEqual(gaps.map((g) => `${g.symbol} ${g.kind} ${g.from_holder}→${g.to_holder}`), [
        `BTC/USD takeover ${a.name}→${b.name}`,
        `ETH/USD takeover ${a.name}→${b.name}`,
      ]);
      for (const gap of gaps) {
        const { lost, firstStored } = await assertHandedOver(db.sql, sim, gap.symbol, ca!, cb!);
        // What is missing is the holder's tail: ticks stamped within the reported window.
        const missing = sentTicks(sim, ca!, gap.symbol).slice(firstStored);
        const from = Math.floor(gap.start_at.getTime() / 1000);
        const to = gap.end_at.getTime() / 1000;
        for (const tick of missing) {
          const ts = Number(tick.split("|")[0]);
          assert.ok(ts >= from && ts <= to, `${gap.symbol}: ${tick} outside ${from}..${to}`);
        }
        console.error(
          `[lease] kill -9: ${gap.symbol}: hand-over window ${
            ((gap.end_at.getTime() - gap.start_at.getTime()) / 1000).toFixed(2)
          } s (killed ${
            ((killedAt - gap.start_at.getTime()) / 1000).toFixed(2)
          } s after its last stored tick, taken over ${
            ((gap.end_at.getTime() - killedAt) / 1000).toFixed(2)
          } s after the kill), ${lost} ticks sent to the killed holder missing`,
        );
      }
      assert.equal(await duplicates(db.sql), 0);
    });
  } finally {
    for (const p of started) await p.cleanup();
    await db.drop();
  }
});

Deno.test("A frozen holder (SIGSTOP) loses its leases after the lease timeout and, thawed, stores nothing twice", async () => {
  const db = await createTestDatabase();
  const symbols = ["BTC/USD", "ETH/USD"];
  const started: IngestProcess[] = [];
  try {
    await withSimulator({ rate: 1_000, symbols, recordFrames: true }, async (sim) => {
      const a = await spawnIngest(db, sim, symbols, ["--lease-timeout", "3"]);
      started.push(a);
      await a.logged(/^Holding the lease of 2 symbol\(s\)/);
      const b = await spawnIngest(db, sim, symbols);
      started.push(b);
      await b.logged(/^Standing by for 2 symbol\(s\)/);
      await sentMore(sim, 500);
      a.child.kill("SIGSTOP");
      await b.logged(/^Took over 2 symbol\(s\) from /);
      await sentMore(sim, 500);
      a.child.kill("SIGCONT");
      await a.logged(/^Lost the lease of BTC\/USD, ETH\/USD to /);
      assert.ok(
        a.messages().some((m) => /^This process was frozen for .* holding ticks until/.test(m)),
        a.messages().join("\n"),
      );
      await sentMore(sim, 300);
      assert.equal(await a.stop(), 0);
      assert.equal(await b.stop(), 0);

      const [ca, cb] = connectionIds(sim);
      for (const symbol of symbols) {
        const { firstStored } = await assertHandedOver(db.sql, sim, symbol, ca!, cb!);
        // Of what the frozen holder was sent and did not store, the new holder was sent
        // the same ticks from its subscription on: only the rest went unstored.
        const next = new Set(sentTicks(sim, cb!, symbol));
        const missing = sentTicks(sim, ca!, symbol).slice(firstStored);
        const nowhere = missing.filter((t) => !next.has(t)).length;
        console.error(
          `[lease] SIGSTOP: ${symbol}: ${missing.length} ticks sent to the frozen holder not stored by it, ${nowhere} of them stored by neither (the takeover's second)`,
        );
      }
      assert.equal(await duplicates(db.sql), 0);
    });
  } finally {
    for (const p of started) await p.cleanup();
    await db.drop();
  }
});

Deno.test("--no-standby: a symbol held by another process is refused with one line naming the holder", async () => {
  const db = await createTestDatabase();
  const started: IngestProcess[] = [];
  try {
    await withSimulator({ rate: 200, symbols: ["BTC/USD", "AAPL"] }, async (sim) => {
      const a = await spawnIngest(db, sim, ["BTC/USD"]);
      started.push(a);
      await a.logged(/^Holding the lease of 1 symbol\(s\): BTC\/USD$/);
      const dataDir = await Deno.makeTempDir({ dir: ".data", prefix: "tickpipe-lease-" });
      try {
        const refused = await runDeno(
          "tasks/ingest.ts",
          ["--symbols", "AAPL,BTC/USD", "--no-standby"],
          {
            permissions: permissionSet("db"),
            env: { ...ingestEnv(sim, databaseUrl(db.config), dataDir), TICKPIPE_LOG_LEVEL: "warn" },
          },
        );
        assert.equal(refused.code, 1, refused.stderr);
        assert.equal(
          refused.stderr.replace(/ since \S+\)/, " since T)"),
          `Cannot ingest BTC/USD (${a.name} since T): another ingest process holds it; stop it, leave that symbol out, or drop --no-standby to stand by\n`,
        );
      } finally {
        await Deno.remove(dataDir, { recursive: true }).catch(() => {});
      }
      assert.equal(await a.stop(), 0);
      // The refused process took nothing: AAPL's lease was never held, nothing was stored.
      const [row] = await db.sql<{ n: number }[]>`
        SELECT count(*)::int AS n FROM crypto_ticks WHERE symbol = 'AAPL'`;
      assert.equal(row!.n, 0);
    });
  } finally {
    for (const p of started) await p.cleanup();
    await db.drop();
  }
});
