import { Buffer } from "node:buffer";
import { Readable } from "node:stream";
import { pipeline as pipe } from "node:stream/promises";
import { fileURLToPath } from "node:url";
import type { Sql } from "postgres";
import { configFromFlags, loggerFor, numberFlag, parseFlags, runMain } from "../lib/cli.ts";
import type { Config, DatabaseConfig } from "../lib/config.ts";
import { UsageError, UserError } from "../lib/errors.ts";
import type { Logger } from "../lib/log.ts";
import { connect, type Database, openDatabase } from "../lib/db/connection.ts";
import { migrate } from "../lib/db/migrations.ts";
import { chooseMode, readServerInfo, type SchemaMode } from "../lib/db/server_info.ts";
import { runIngest } from "../lib/ingest.ts";
import { BATCHER_DEFAULTS } from "../lib/pipeline/batcher.ts";
import type { Batch } from "../lib/pipeline/batch.ts";
import type { WriteMethod } from "../lib/pipeline/writer.ts";
import { generatedInstruments, type SimulatorStats } from "../lib/simulator/mod.ts";

const USAGE = `Usage: deno task bench [--ticks 1000000] [--symbols 50] [--rate max|N] [--json]
                      [--tutorial-ticks N] [--low-rate 20] [--low-rate-seconds 30]
                      [--batch-size 5000] [--flush-ms 100] [--method unnest|copy]
                      [--memory-cap N]
                      [--skip-copy] [--skip-tutorial] [--skip-low-rate]

Measures tickpipe on this machine, each figure in a fresh database on the configured
server (DATABASE_URL, else the embedded PostgreSQL), dropped afterwards:
  end to end   the simulator (--rate, default max) in its own process, --ticks ticks over
               --symbols symbols, through the real client, batcher and writer
  ceiling      the same rows loaded with one COPY ... FROM STDIN (no WebSocket, no parsing)
  tutorial     the same rows (first --tutorial-ticks, default min(ticks, 200000)) as
               100-row multi-row INSERTs, one commit each
  low rate     --low-rate ticks/s for --low-rate-seconds: tick receipt -> queryable
Prints a table, or one JSON object with --json. Exit 1 when the rows do not verify.`;

/** Targets from issue #6 (2 cores, simulator and database on the same machine). */
const TARGET = {
  e2eTicksPerS: 100_000,
  e2eVsCopy: 0.6,
  e2eVsTutorial: 10,
  lowRateSlackMs: 100,
  peakRssMb: 200,
  rssGrowthMb: 20,
} as const;

const SIM_KEY = "bench-key";
const MB = 1024 * 1024;

interface BenchOptions {
  ticks: number;
  symbols: number;
  /** The simulator's rate in the end-to-end run: "max", or ticks per second. */
  rate: number | "max";
  tutorialTicks: number;
  lowRate: number;
  lowRateSeconds: number;
  maxBatch: number;
  flushMs: number;
  /** Rows in memory before the spool (the pipeline's default when undefined). */
  memoryCap: number | undefined;
  method: WriteMethod | undefined;
  skipCopy: boolean;
  skipTutorial: boolean;
  skipLowRate: boolean;
}

function positive(name: string, text: string | undefined, fallback: number, integer = true) {
  return numberFlag(name, text, USAGE, integer ? { min: 1, integer } : { min: Number.MIN_VALUE }) ??
    fallback;
}

function methodOf(text: string | undefined): WriteMethod | undefined {
  if (text === undefined || text === "copy" || text === "unnest") return text;
  throw new UsageError(`--method must be copy or unnest\n${USAGE}`);
}

// --- measuring helpers -------------------------------------------------------------

/** Latencies in 0.1 ms bins up to 60 s (exact max kept aside): every row, fixed memory. */
class LatencyHistogram {
  static readonly BIN_MS = 0.1;
  #bins = new Uint32Array(600_000);
  count = 0;
  max = 0;

  add(ms: number): void {
    const bin = Math.min(
      this.#bins.length - 1,
      Math.max(0, Math.floor(ms / LatencyHistogram.BIN_MS)),
    );
    this.#bins[bin]!++;
    this.count++;
    if (ms > this.max) this.max = ms;
  }

  /** The q-quantile (0..1), to the bin's upper edge. */
  quantile(q: number): number {
    if (this.count === 0) return NaN;
    const rank = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (let i = 0; i < this.#bins.length; i++) {
      seen += this.#bins[i]!;
      if (seen >= rank) return Math.min(this.max, (i + 1) * LatencyHistogram.BIN_MS);
    }
    return this.max;
  }
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

const CLOCK_TICKS_PER_S = 100;

/** The text of files under /proc, read by `cat`: Deno wants --allow-all to read /proc itself. */
async function readProc(pattern: string): Promise<string | undefined> {
  try {
    const out = await new Deno.Command("sh", {
      args: ["-c", `cat ${pattern} 2>/dev/null`],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    return text === "" ? undefined : text;
  } catch {
    return undefined;
  }
}

interface CpuMark {
  ingester: number | undefined;
  simulator: number | undefined;
  /** Every `postgres` process on this machine (undefined when there is none, e.g. remote). */
  postgres: number | undefined;
}

/** CPU seconds (utime + stime) so far of the bench, the simulator and PostgreSQL (Linux). */
async function cpuMark(simulatorPid: number): Promise<CpuMark> {
  const mark: CpuMark = { ingester: undefined, simulator: undefined, postgres: undefined };
  const text = await readProc("/proc/[0-9]*/stat");
  for (const line of text?.split("\n") ?? []) {
    const open = line.indexOf("(");
    const close = line.lastIndexOf(")");
    if (open < 0 || close < 0) continue;
    const pid = Number(line.slice(0, open));
    const comm = line.slice(open + 1, close);
    const fields = line.slice(close + 2).split(" ");
    const seconds = (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_S;
    if (!Number.isFinite(seconds)) continue;
    if (pid === Deno.pid) mark.ingester = seconds;
    else if (pid === simulatorPid) mark.simulator = seconds;
    else if (comm === "postgres") mark.postgres = (mark.postgres ?? 0) + seconds;
  }
  return mark;
}

function cpuDelta(a: CpuMark, b: CpuMark): CpuMark {
  const d = (x: number | undefined, y: number | undefined) =>
    x === undefined || y === undefined ? undefined : y - x;
  return {
    ingester: d(a.ingester, b.ingester),
    simulator: d(a.simulator, b.simulator),
    postgres: d(a.postgres, b.postgres),
  };
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

// --- the simulator, in its own process ------------------------------------------------

interface SimulatorProcess {
  pid: number;
  wsUrl: string;
  apiUrl: string;
  stats(): Promise<SimulatorStats>;
  stop(): Promise<void>;
}

/** Starts `tasks/simulate.ts` as a separate process (its own core, like a remote server). */
async function spawnSimulator(args: string[]): Promise<SimulatorProcess> {
  const port = freePort();
  const script = fileURLToPath(new URL("./simulate.ts", import.meta.url));
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net=127.0.0.1",
      script,
      "--port",
      String(port),
      "--api-key",
      SIM_KEY,
      "--log-level",
      "warn",
      ...args,
    ],
    stdin: "null",
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  let exited = false;
  const status = child.status.finally(() => exited = true);
  const apiUrl = `http://127.0.0.1:${port}`;
  const stats = async () => {
    const response = await fetch(`${apiUrl}/stats`);
    if (!response.ok) {
      throw new Error(`Cannot read the simulator's /stats: HTTP ${response.status}`);
    }
    return await response.json() as SimulatorStats;
  };
  const stop = async () => {
    if (!exited) {
      try {
        child.kill("SIGTERM");
      } catch {
        // already gone
      }
    }
    await status;
  };
  const deadline = Date.now() + 30_000;
  while (true) {
    try {
      await stats();
      break;
    } catch (error) {
      if (exited || Date.now() > deadline) {
        await stop();
        throw new Error(`Cannot start the simulator: ${(error as Error).message}`);
      }
      await sleep(50);
    }
  }
  return { pid: child.pid, wsUrl: `ws://127.0.0.1:${port}/v1/quotes/price`, apiUrl, stats, stop };
}

// --- fresh databases ------------------------------------------------------------------

interface Scratch {
  sql: Sql;
  config: DatabaseConfig;
  drop(): Promise<void>;
}

let scratchCounter = 0;

/** A new database on the server of `admin`, migrated; `drop()` removes it. */
async function scratchDatabase(admin: Database, label: string, max: number): Promise<Scratch> {
  const name = `bench_${Date.now().toString(36)}_${Deno.pid}_${++scratchCounter}_${label}`;
  await admin.sql`CREATE DATABASE ${admin.sql(name)}`;
  const config = { ...admin.config, database: name };
  const sql = connect(config, { max, applicationName: "tickpipe-bench" });
  const drop = async () => {
    await sql.end({ timeout: 5 }).catch(() => {});
    await admin.sql`DROP DATABASE IF EXISTS ${admin.sql(name)} WITH (FORCE)`;
  };
  try {
    const info = await readServerInfo(sql);
    await migrate(sql, { mode: chooseMode(info), timescaleVersion: info.timescaleVersion });
  } catch (error) {
    await drop();
    throw error;
  }
  return { sql, config, drop };
}

async function countTicks(sql: Sql): Promise<number> {
  const [row] = await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM crypto_ticks`;
  return row!.n;
}

// --- end to end -----------------------------------------------------------------------

interface RssSample {
  /** ms since the ingest started. */
  atMs: number;
  rssMb: number;
  /** V8 heap in use, and memory outside it (ArrayBuffers, socket buffers). */
  heapMb: number;
  /** V8 heap reserved (used + free). */
  heapTotalMb: number;
  externalMb: number;
  written: number;
}

interface EndToEnd {
  ticks: number;
  rowsInTable: number;
  simulatorSent: number;
  verified: boolean;
  ticksPerS: number;
  /** From the first tick received rather than the first sent. */
  ticksPerSFromReceipt: number;
  seconds: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  pipelineP50Ms: number | undefined;
  pipelineP99Ms: number | undefined;
  batches: number;
  spooled: number;
  dropped: number;
  peakRssMb: number;
  peakHeapMb: number;
  peakExternalMb: number;
  rssAtMb: { q25: number; q50: number; q75: number; q100: number };
  rssSamples: RssSample[];
  cpu: CpuMark;
  /** The rows, as COPY text, for the ceiling and the tutorial's method. */
  copyText: Buffer[];
}

async function endToEnd(
  admin: Database,
  config: Config,
  options: BenchOptions,
  logger: Logger,
): Promise<EndToEnd> {
  const n = options.ticks;
  const symbols = generatedInstruments(options.symbols).map((i) => i.symbol);
  const hist = new LatencyHistogram();
  const sim = await spawnSimulator([
    "--rate",
    String(options.rate),
    "--symbols",
    String(options.symbols),
    "--max-ticks",
    String(n),
  ]);
  const db = await scratchDatabase(admin, "e2e", config.poolSize ?? 4);
  await Deno.mkdir(config.dataDir, { recursive: true });
  const dataDir = await Deno.makeTempDir({ dir: config.dataDir, prefix: "bench-" });
  const controller = new AbortController();
  const samples: RssSample[] = [];
  let written = 0;
  let firstReceived = Infinity;
  let lastCommitMono = NaN;
  let lastCommitWall = NaN;
  let lastProgress = performance.now();
  const started = performance.now();
  const sample = () => {
    const memory = Deno.memoryUsage();
    samples.push({
      atMs: performance.now() - started,
      rssMb: memory.rss / MB,
      heapMb: memory.heapUsed / MB,
      heapTotalMb: memory.heapTotal / MB,
      externalMb: memory.external / MB,
      written,
    });
  };
  const afterCommit = (batch: Batch) => {
    const now = performance.now();
    for (const row of batch.rows) {
      const at = row.receivedAt;
      if (!Number.isFinite(at)) continue;
      if (at < firstReceived) firstReceived = at;
      hist.add(now - at);
    }
    written += batch.rows.length;
    lastProgress = now;
    if (written >= n && Number.isNaN(lastCommitMono)) {
      lastCommitMono = now;
      lastCommitWall = Date.now();
      sample();
      controller.abort();
    }
  };
  const sampler = setInterval(() => {
    sample();
    // A stalled run (nothing committed for 30 s) stops instead of hanging.
    if (performance.now() - lastProgress > 30_000 && !controller.signal.aborted) {
      logger.error("End to end: nothing committed for 30 s; stopping");
      controller.abort();
    }
  }, 100);
  logger.info(`End to end: ${n.toLocaleString("en-US")} ticks over ${symbols.length} symbols`);
  const cpuBefore = await cpuMark(sim.pid);
  let summary;
  let cpu: CpuMark;
  try {
    sample();
    summary = await runIngest(db.sql, {
      twelveData: { apiKey: SIM_KEY, wsUrl: sim.wsUrl, apiUrl: sim.apiUrl },
      symbols,
      dataDir,
      signal: controller.signal,
      logger,
      summaryEveryMs: 5_000,
      pipeline: {
        maxBatch: options.maxBatch,
        maxWaitMs: options.flushMs,
        afterCommit,
        ...(options.memoryCap ? { memoryCap: options.memoryCap } : {}),
        ...(options.method ? { method: options.method } : {}),
      },
    });
    cpu = cpuDelta(cpuBefore, await cpuMark(sim.pid));
  } finally {
    clearInterval(sampler);
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  }
  try {
    const simStats = await sim.stats();
    await sim.stop();
    const rowsInTable = await countTicks(db.sql);
    const firstSent = simStats.first_price_sent_at ?? NaN;
    const seconds = (lastCommitWall - firstSent) / 1000;
    const copyText: Buffer[] = [];
    if (!options.skipCopy || !options.skipTutorial) {
      // One CopyData message per row: gathered into ~1 MB chunks of whole lines.
      const readable = await db.sql`
        COPY (SELECT "time", symbol, price, day_volume, bid, ask, volume, seq FROM crypto_ticks)
        TO STDOUT`.readable();
      let pending: Buffer[] = [];
      let size = 0;
      for await (const chunk of readable) {
        pending.push(chunk as Buffer);
        size += (chunk as Buffer).length;
        if (size >= MB) {
          copyText.push(Buffer.concat(pending));
          pending = [];
          size = 0;
        }
      }
      if (pending.length > 0) copyText.push(Buffer.concat(pending));
    }
    const at = (q: number) =>
      (samples.find((s) => s.written >= q * n) ?? samples[samples.length - 1]!).rssMb;
    return {
      ticks: n,
      rowsInTable,
      simulatorSent: simStats.price_events_sent,
      verified: rowsInTable === n && simStats.price_events_sent === n && written === n &&
        summary.pipeline.dropped === 0,
      ticksPerS: n / seconds,
      ticksPerSFromReceipt: n / ((lastCommitMono - firstReceived) / 1000),
      seconds,
      p50Ms: hist.quantile(0.5),
      p99Ms: hist.quantile(0.99),
      maxMs: hist.max,
      pipelineP50Ms: summary.pipeline.latencyP50Ms,
      pipelineP99Ms: summary.pipeline.latencyP99Ms,
      batches: summary.pipeline.batches,
      spooled: summary.pipeline.spooled,
      dropped: summary.pipeline.dropped,
      peakRssMb: Math.max(...samples.map((s) => s.rssMb)),
      peakHeapMb: Math.max(...samples.map((s) => s.heapMb)),
      peakExternalMb: Math.max(...samples.map((s) => s.externalMb)),
      rssAtMb: { q25: at(0.25), q50: at(0.5), q75: at(0.75), q100: at(1) },
      rssSamples: samples,
      cpu,
      copyText,
    };
  } finally {
    await sim.stop();
    await db.drop();
  }
}

// --- the ceiling: COPY ----------------------------------------------------------------

interface Load {
  rows: number;
  seconds: number;
  ticksPerS: number;
  verified: boolean;
}

async function copyCeiling(admin: Database, text: Buffer[], expected: number): Promise<Load> {
  const db = await scratchDatabase(admin, "copy", 1);
  try {
    const started = performance.now();
    const stream = await db.sql`
      COPY crypto_ticks ("time", symbol, price, day_volume, bid, ask, volume, seq) FROM STDIN`
      .writable();
    await pipe(Readable.from(text), stream);
    const seconds = (performance.now() - started) / 1000;
    const rows = await countTicks(db.sql);
    return { rows, seconds, ticksPerS: rows / seconds, verified: rows === expected };
  } finally {
    await db.drop();
  }
}

// --- the tutorial's method: 100-row INSERTs, one commit each ----------------------------

interface TickRecord {
  time: string;
  symbol: string;
  price: string;
  day_volume: string | null;
  bid: string | null;
  ask: string | null;
  volume: string | null;
  seq: string;
}

/** The first `limit` rows of COPY text as records (COPY escapes cannot occur in these columns). */
function parseCopyText(text: Buffer[], limit: number): TickRecord[] {
  const records: TickRecord[] = [];
  const value = (s: string | undefined) => s === undefined || s === "\\N" ? null : s;
  for (const chunk of text) {
    for (const line of chunk.toString("utf8").split("\n")) {
      if (line === "") continue;
      if (records.length >= limit) return records;
      const f = line.split("\t");
      records.push({
        time: f[0]!,
        symbol: f[1]!,
        price: f[2]!,
        day_volume: value(f[3]),
        bid: value(f[4]),
        ask: value(f[5]),
        volume: value(f[6]),
        seq: f[7]!,
      });
    }
  }
  return records;
}

const TUTORIAL_BATCH = 100;

async function tutorialMethod(admin: Database, records: TickRecord[]): Promise<Load> {
  const db = await scratchDatabase(admin, "tutorial", 1);
  try {
    const columns = [
      "time",
      "symbol",
      "price",
      "day_volume",
      "bid",
      "ask",
      "volume",
      "seq",
    ] as const;
    const started = performance.now();
    for (let i = 0; i < records.length; i += TUTORIAL_BATCH) {
      const batch = records.slice(i, i + TUTORIAL_BATCH);
      // Like psycopg2's execute_values then conn.commit(): BEGIN, one INSERT, COMMIT.
      await db.sql.begin((tx) => tx`INSERT INTO crypto_ticks ${tx(batch, ...columns)}`);
    }
    const seconds = (performance.now() - started) / 1000;
    const rows = await countTicks(db.sql);
    return { rows, seconds, ticksPerS: rows / seconds, verified: rows === records.length };
  } finally {
    await db.drop();
  }
}

// --- low rate: tick receipt -> queryable ------------------------------------------------

interface LowRate {
  rate: number;
  seconds: number;
  ticks: number;
  verified: boolean;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  commitP50Ms: number;
  commitP99Ms: number;
  pollPeriodMs: number;
  flushMs: number;
}

async function lowRate(
  admin: Database,
  config: Config,
  options: BenchOptions,
  logger: Logger,
): Promise<LowRate> {
  const ticks = Math.max(1, Math.round(options.lowRate * options.lowRateSeconds));
  const symbols = generatedInstruments(options.symbols).map((i) => i.symbol);
  const sim = await spawnSimulator([
    "--rate",
    String(options.lowRate),
    "--symbols",
    String(options.symbols),
    "--max-ticks",
    String(ticks),
  ]);
  const db = await scratchDatabase(admin, "lowrate", config.poolSize ?? 4);
  const poller = connect(db.config, { max: 1, applicationName: "tickpipe-bench-poller" });
  await Deno.mkdir(config.dataDir, { recursive: true });
  const dataDir = await Deno.makeTempDir({ dir: config.dataDir, prefix: "bench-" });
  const controller = new AbortController();
  // Ordinal of a row = its position in commit order (one write loop: batches commit in order),
  // so `count(*) > i` means row i is visible.
  const receivedAt: number[] = [];
  const committedAt: number[] = [];
  const visibleAt: number[] = [];
  let polls = 0;
  let polling = true;
  logger.info(
    `Low rate: ${options.lowRate} ticks/s for ${options.lowRateSeconds} s, polling count(*) every ~5 ms`,
  );
  const poll = async () => {
    const first = performance.now();
    const deadline = Date.now() + (options.lowRateSeconds + 60) * 1000;
    while (polling) {
      const n = await countTicks(poller);
      const now = performance.now();
      polls++;
      while (visibleAt.length < n) visibleAt.push(now);
      if (visibleAt.length >= ticks || Date.now() > deadline) {
        controller.abort();
        break;
      }
      await sleep(5);
    }
    return (performance.now() - first) / polls;
  };
  try {
    const polled = poll();
    await runIngest(db.sql, {
      twelveData: { apiKey: SIM_KEY, wsUrl: sim.wsUrl, apiUrl: sim.apiUrl },
      symbols,
      dataDir,
      signal: controller.signal,
      logger,
      summaryEveryMs: 10_000,
      pipeline: {
        maxBatch: options.maxBatch,
        maxWaitMs: options.flushMs,
        ...(options.method ? { method: options.method } : {}),
        afterCommit: (batch) => {
          const now = performance.now();
          for (const row of batch.rows) {
            receivedAt.push(row.receivedAt);
            committedAt.push(now);
          }
        },
      },
    });
    polling = false;
    const pollPeriodMs = await polled;
    const simStats = await sim.stats();
    const rows = await countTicks(db.sql);
    const queryable: number[] = [];
    const commit: number[] = [];
    for (let i = 0; i < Math.min(receivedAt.length, visibleAt.length); i++) {
      queryable.push(visibleAt[i]! - receivedAt[i]!);
      commit.push(committedAt[i]! - receivedAt[i]!);
    }
    queryable.sort((a, b) => a - b);
    commit.sort((a, b) => a - b);
    return {
      rate: options.lowRate,
      seconds: options.lowRateSeconds,
      ticks,
      verified: rows === ticks && simStats.price_events_sent === ticks &&
        queryable.length === ticks,
      p50Ms: quantile(queryable, 0.5),
      p99Ms: quantile(queryable, 0.99),
      maxMs: queryable[queryable.length - 1] ?? NaN,
      commitP50Ms: quantile(commit, 0.5),
      commitP99Ms: quantile(commit, 0.99),
      pollPeriodMs,
      flushMs: options.flushMs,
    };
  } finally {
    polling = false;
    controller.abort();
    await poller.end({ timeout: 5 });
    await sim.stop();
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    await db.drop();
  }
}

// --- the machine ------------------------------------------------------------------------

interface Machine {
  cpu: string;
  cores: number;
  memoryGb: number;
  os: string;
  postgres: string;
  schemaMode: SchemaMode;
  database: string;
  deno: string;
}

async function machine(admin: Database): Promise<Machine> {
  const info = await readProc("/proc/cpuinfo");
  const cpu = /^model name\s*:\s*(.+)$/m.exec(info ?? "")?.[1]?.trim() ?? "unknown";
  const server = await readServerInfo(admin.sql);
  const mode = chooseMode(server);
  return {
    cpu,
    cores: navigator.hardwareConcurrency,
    memoryGb: Math.round(Deno.systemMemoryInfo().total / 1024 ** 3 * 10) / 10,
    os: `${Deno.build.os}/${Deno.build.arch}`,
    postgres: server.postgresVersion +
      (mode === "timescaledb" ? ` + TimescaleDB ${server.timescaleVersion}` : " (portable mode)"),
    schemaMode: mode,
    database: admin.embedded ? "embedded" : `${admin.config.host}:${admin.config.port}`,
    deno: Deno.version.deno,
  };
}

// --- report -----------------------------------------------------------------------------

interface Results {
  options: BenchOptions;
  machine: Machine;
  e2e: EndToEnd;
  copy: Load | undefined;
  tutorial: Load | undefined;
  low: LowRate | undefined;
}

const round = (x: number | undefined, digits = 1) =>
  x === undefined || !Number.isFinite(x) ? null : Math.round(x * 10 ** digits) / 10 ** digits;

/** The JSON report: the fields first, then extras. */
function toJson(r: Results): Record<string, unknown> {
  const { e2e, copy, tutorial, low } = r;
  return {
    e2e_ticks_per_s: round(e2e.ticksPerS, 0),
    copy_ticks_per_s: round(copy?.ticksPerS, 0),
    e2e_vs_copy: round(copy ? e2e.ticksPerS / copy.ticksPerS : undefined, 3),
    tutorial_ticks_per_s: round(tutorial?.ticksPerS, 0),
    e2e_vs_tutorial: round(tutorial ? e2e.ticksPerS / tutorial.ticksPerS : undefined, 1),
    p50_ms: round(e2e.p50Ms),
    p99_ms: round(e2e.p99Ms),
    peak_rss_mb: round(e2e.peakRssMb),
    low_rate_p99_ms: round(low?.p99Ms),
    max_ms: round(e2e.maxMs),
    low_rate_p50_ms: round(low?.p50Ms),
    low_rate_max_ms: round(low?.maxMs),
    low_rate_commit_p50_ms: round(low?.commitP50Ms),
    low_rate_commit_p99_ms: round(low?.commitP99Ms),
    low_rate_poll_period_ms: round(low?.pollPeriodMs, 2),
    low_rate_ticks: low?.ticks ?? null,
    low_rate_verified: low?.verified ?? null,
    flush_interval_ms: r.options.flushMs,
    batch_size: r.options.maxBatch,
    write_method: r.options.method ?? "default",
    ticks: e2e.ticks,
    symbols: r.options.symbols,
    simulator_rate: r.options.rate,
    rows_verified: e2e.verified,
    rows_in_table: e2e.rowsInTable,
    simulator_sent: e2e.simulatorSent,
    e2e_seconds: round(e2e.seconds, 3),
    e2e_ticks_per_s_from_first_receipt: round(e2e.ticksPerSFromReceipt, 0),
    pipeline_p50_ms: round(e2e.pipelineP50Ms),
    pipeline_p99_ms: round(e2e.pipelineP99Ms),
    batches: e2e.batches,
    spooled_at_end: e2e.spooled,
    dropped: e2e.dropped,
    rss_mb_at: {
      "25%": round(e2e.rssAtMb.q25),
      "50%": round(e2e.rssAtMb.q50),
      "75%": round(e2e.rssAtMb.q75),
      "100%": round(e2e.rssAtMb.q100),
    },
    rss_samples_mb: e2e.rssSamples.map((s) => round(s.rssMb)),
    heap_samples_mb: e2e.rssSamples.map((s) => round(s.heapMb)),
    heap_total_samples_mb: e2e.rssSamples.map((s) => round(s.heapTotalMb)),
    rss_before_ingest_mb: round(e2e.rssSamples[0]!.rssMb),
    peak_heap_used_mb: round(e2e.peakHeapMb),
    peak_external_mb: round(e2e.peakExternalMb),
    cpu_seconds: {
      ingester: round(e2e.cpu.ingester, 2),
      simulator: round(e2e.cpu.simulator, 2),
      postgres: round(e2e.cpu.postgres, 2),
    },
    copy_rows: copy?.rows ?? null,
    copy_seconds: round(copy?.seconds, 3),
    copy_verified: copy?.verified ?? null,
    tutorial_rows: tutorial?.rows ?? null,
    tutorial_seconds: round(tutorial?.seconds, 3),
    tutorial_verified: tutorial?.verified ?? null,
    machine: r.machine,
  };
}

const int = (x: number) => Math.round(x).toLocaleString("en-US");
const ms = (x: number) => `${x.toFixed(1)} ms`;
const yes = (ok: boolean | undefined) => ok === undefined ? "" : ok ? "ok" : "MISSED";

/** The aligned table: figure, value, target, ok?. */
function toTable(r: Results): string {
  const { e2e, copy, tutorial, low, machine: m } = r;
  const rows: [string, string, string, string][] = [];
  const add = (figure: string, value: string, target = "", ok?: boolean) =>
    rows.push([figure, value, target, yes(ok)]);
  add(
    "rows verified (e2e)",
    `${int(e2e.rowsInTable)} rows = ${int(e2e.simulatorSent)} sent`,
    `= ${int(e2e.ticks)}`,
    e2e.verified,
  );
  add(
    "end to end",
    `${int(e2e.ticksPerS)} ticks/s`,
    `>= ${int(TARGET.e2eTicksPerS)}`,
    e2e.ticksPerS >= TARGET.e2eTicksPerS,
  );
  add("  first send -> last commit", `${e2e.seconds.toFixed(2)} s`);
  add("  from first receipt", `${int(e2e.ticksPerSFromReceipt)} ticks/s`);
  if (copy) {
    add("COPY ceiling", `${int(copy.ticksPerS)} ticks/s`, "", copy.verified ? undefined : false);
    const ratio = e2e.ticksPerS / copy.ticksPerS;
    add(
      "e2e / COPY",
      `${(ratio * 100).toFixed(0)} %`,
      `>= ${TARGET.e2eVsCopy * 100} %`,
      ratio >= TARGET.e2eVsCopy,
    );
  }
  if (tutorial) {
    add(
      "tutorial (100-row INSERT+COMMIT)",
      `${int(tutorial.ticksPerS)} ticks/s`,
      `${int(tutorial.rows)} rows`,
      tutorial.verified ? undefined : false,
    );
    const ratio = e2e.ticksPerS / tutorial.ticksPerS;
    add(
      "e2e / tutorial",
      `${ratio.toFixed(1)}x`,
      `>= ${TARGET.e2eVsTutorial}x`,
      ratio >= TARGET.e2eVsTutorial,
    );
  }
  add("tick -> commit p50", ms(e2e.p50Ms));
  add("tick -> commit p99", ms(e2e.p99Ms));
  add("tick -> commit max", ms(e2e.maxMs));
  add(
    "peak RSS (ingester)",
    `${e2e.peakRssMb.toFixed(0)} MB`,
    `<= ${TARGET.peakRssMb} MB`,
    e2e.peakRssMb <= TARGET.peakRssMb,
  );
  const a = e2e.rssAtMb;
  const growth = Math.max(a.q50, a.q75, a.q100) - a.q25;
  add(
    "RSS at 25/50/75/100 %",
    [a.q25, a.q50, a.q75, a.q100].map((x) => x.toFixed(0)).join(" / ") + " MB",
    `flat (+<= ${TARGET.rssGrowthMb} MB)`,
    growth <= TARGET.rssGrowthMb,
  );
  add("  RSS before ingest", `${e2e.rssSamples[0]!.rssMb.toFixed(0)} MB`);
  add(
    "  peak V8 heap / external",
    `${e2e.peakHeapMb.toFixed(0)} / ${e2e.peakExternalMb.toFixed(0)} MB`,
  );
  const cpu = e2e.cpu;
  const share = (x: number | undefined) =>
    x === undefined ? "n/a" : `${x.toFixed(1)} s (${(x / e2e.seconds * 100).toFixed(0)} %)`;
  add("CPU ingester / simulator", `${share(cpu.ingester)} / ${share(cpu.simulator)}`);
  add("CPU postgres (all procs)", share(cpu.postgres));
  if (low) {
    const limit = low.flushMs + TARGET.lowRateSlackMs;
    add(
      `low rate: ${low.rate} ticks/s x ${low.seconds} s`,
      `${int(low.ticks)} ticks`,
      "",
      low.verified ? undefined : false,
    );
    add("  tick -> queryable p50", ms(low.p50Ms));
    add("  tick -> queryable p99", ms(low.p99Ms), `<= ${limit} ms`, low.p99Ms <= limit);
    add("  tick -> queryable max", ms(low.maxMs));
    add("  tick -> commit p50 / p99", `${ms(low.commitP50Ms)} / ${ms(low.commitP99Ms)}`);
    add("  flush interval / poll period", `${low.flushMs} ms / ${low.pollPeriodMs.toFixed(1)} ms`);
  }
  const header: [string, string, string, string] = ["figure", "value", "target", "ok?"];
  const all = [header, ...rows];
  const width = [0, 1, 2].map((i) => Math.max(...all.map((row) => row[i]!.length)));
  const line = (row: string[]) =>
    row.map((cell, i) => i < 3 ? cell.padEnd(width[i]!) : cell).join("  ").trimEnd();
  return [
    `tickpipe bench: ${
      int(e2e.ticks)
    } ticks, ${r.options.symbols} symbols, simulator rate ${r.options.rate}`,
    `pipeline: batch ${r.options.maxBatch}, flush ${r.options.flushMs} ms, memory cap ${
      int(r.options.memoryCap ?? BATCHER_DEFAULTS.memoryCap)
    }, write method ${r.options.method ?? "default"}`,
    `machine: ${m.cpu}, ${m.cores} cores, ${m.memoryGb} GiB, ${m.os}; PostgreSQL ${m.postgres} (${m.database}); Deno ${m.deno}`,
    "",
    line(header),
    line(width.map((w) => "-".repeat(w)).concat("---")),
    ...rows.map(line),
  ].join("\n");
}

/** `tickpipe bench`: throughput, latency and memory of ingest on this machine (issue #6). */
export function run(args: string[]): Promise<number> {
  return runMain(async () => {
    const { values } = parseFlags(args, {
      ticks: { type: "string" },
      symbols: { type: "string" },
      json: { type: "boolean" },
      rate: { type: "string" },
      "tutorial-ticks": { type: "string" },
      "low-rate": { type: "string" },
      "low-rate-seconds": { type: "string" },
      "batch-size": { type: "string" },
      "flush-ms": { type: "string" },
      "memory-cap": { type: "string" },
      method: { type: "string" },
      "skip-copy": { type: "boolean" },
      "skip-tutorial": { type: "boolean" },
      "skip-low-rate": { type: "boolean" },
    }, USAGE);
    const ticks = positive("ticks", values.ticks, 1_000_000);
    const options: BenchOptions = {
      ticks,
      symbols: positive("symbols", values.symbols, 50),
      rate: values.rate === undefined || values.rate === "max"
        ? "max"
        : positive("rate", values.rate, 0, false),
      tutorialTicks: Math.min(ticks, positive("tutorial-ticks", values["tutorial-ticks"], 200_000)),
      lowRate: positive("low-rate", values["low-rate"], 20, false),
      lowRateSeconds: positive("low-rate-seconds", values["low-rate-seconds"], 30, false),
      maxBatch: positive("batch-size", values["batch-size"], BATCHER_DEFAULTS.maxBatch),
      flushMs: positive("flush-ms", values["flush-ms"], BATCHER_DEFAULTS.maxWaitMs),
      memoryCap: values["memory-cap"] === undefined
        ? undefined
        : positive("memory-cap", values["memory-cap"], 0),
      method: methodOf(values.method),
      skipCopy: values["skip-copy"] ?? false,
      skipTutorial: values["skip-tutorial"] ?? false,
      skipLowRate: values["skip-low-rate"] ?? false,
    };
    const config = configFromFlags(values);
    const logger = loggerFor(config);
    const admin = await openDatabase(config, { logger, max: 2 });
    try {
      const m = await machine(admin);
      const e2e = await endToEnd(admin, config, options, logger);
      let copy: Load | undefined;
      let tutorial: Load | undefined;
      if (!options.skipCopy) {
        logger.info(`COPY ceiling: ${int(e2e.rowsInTable)} rows in one COPY ... FROM STDIN`);
        copy = await copyCeiling(admin, e2e.copyText, e2e.rowsInTable);
      }
      if (!options.skipTutorial) {
        const records = parseCopyText(e2e.copyText, options.tutorialTicks);
        logger.info(`Tutorial's method: ${int(records.length)} rows, 100-row INSERT + COMMIT`);
        tutorial = await tutorialMethod(admin, records);
      }
      e2e.copyText.length = 0;
      const low = options.skipLowRate ? undefined : await lowRate(admin, config, options, logger);
      const results: Results = { options, machine: m, e2e, copy, tutorial, low };
      console.log(values.json ? JSON.stringify(toJson(results)) : toTable(results));
      const verified = e2e.verified && copy?.verified !== false && tutorial?.verified !== false &&
        low?.verified !== false;
      if (!verified) throw new UserError("Bench failed: some rows did not verify (see the table)");
      return 0;
    } finally {
      await admin.close();
    }
  });
}

if (import.meta.main) Deno.exitCode = await run(Deno.args);
