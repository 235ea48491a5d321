/**
 * The bench's helper processes: the simulator (its own core, like a remote server) and the
 * workers, each a task of this repository run by this Deno with a permission set of
 * deno.json — the workers with the ingest task's V8 flags too, so the process measured is
 * an ingester as `deno task ingest` runs it.
 */
import { fileURLToPath } from "node:url";
import denoJson from "../../deno.json" with { type: "json" };
import { generatedInstruments, type SimulatorStats } from "../simulator/mod.ts";
import { type Job, type JobOf, WorkerResult } from "./jobs.ts";
import type { BenchOptions } from "./options.ts";

const CONFIG = fileURLToPath(new URL("../../deno.json", import.meta.url));
const task = (name: string) => fileURLToPath(new URL(`../../tasks/${name}`, import.meta.url));

/** The `--v8-flags=...` of `deno task ingest`, if it has any. */
export const INGEST_V8_FLAGS: string | undefined = /--v8-flags=\S+/.exec(denoJson.tasks.ingest)
  ?.[0];

function denoArgs(permissions: string, script: string, extra: string[] = []): string[] {
  return ["run", "-q", `-P=${permissions}`, "--config", CONFIG, ...extra, script];
}

/** The key the bench's simulators accept. */
export const SIM_KEY = "bench-key";

/** A simulator running in its own process. */
export interface SimulatorProcess {
  pid: number;
  wsUrl: string;
  apiUrl: string;
  stats(): Promise<SimulatorStats>;
  stop(): Promise<void>;
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** What a worker needs to subscribe to `symbols` generated symbols of `sim`. */
export function feedOf(sim: SimulatorProcess, symbols: number): JobOf<"count">["feed"] {
  return {
    wsUrl: sim.wsUrl,
    apiUrl: sim.apiUrl,
    apiKey: SIM_KEY,
    symbols: generatedInstruments(symbols).map((i) => i.symbol),
  };
}

/** Starts `tasks/simulate.ts` with `args` (after port and key) and waits for its `/stats`. */
export async function spawnSimulator(args: string[]): Promise<SimulatorProcess> {
  const port = freePort();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      ...denoArgs("simulator", task("simulate.ts")),
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
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  return { pid: child.pid, wsUrl: `ws://127.0.0.1:${port}/v1/quotes/price`, apiUrl, stats, stop };
}

/** How `runWorker` starts a worker. */
export interface WorkerOptions {
  /**
   * Write the worker's V8 CPU profile (`deno run --cpu-prof`) to this directory, as
   * `<name>.cpuprofile` (open it in Chrome DevTools' Performance panel or speedscope).
   */
  cpuProfile?: { dir: string; name: string } | undefined;
}

/** The worker options of the measurement `name` of a bench run (its CPU profile, if asked). */
export function workerOptions(options: BenchOptions, name: string): WorkerOptions {
  const dir = options.cpuProfileDir;
  return dir === undefined ? {} : { cpuProfile: { dir, name } };
}

/**
 * Runs `job` in a worker process (`tasks/_bench_worker.ts`, permission set "db", the ingest
 * task's V8 flags) and returns what it measured; its log lines go to this stderr.
 */
export async function runWorker(job: Job, options: WorkerOptions = {}): Promise<WorkerResult> {
  const profile = options.cpuProfile;
  const extra = [
    ...(INGEST_V8_FLAGS ? [INGEST_V8_FLAGS] : []),
    ...(profile
      ? [
        "--cpu-prof",
        `--cpu-prof-dir=${profile.dir}`,
        `--cpu-prof-name=${profile.name}.cpuprofile`,
      ]
      : []),
  ];
  const child = new Deno.Command(Deno.execPath(), {
    args: denoArgs("db", task("_bench_worker.ts"), extra),
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const output = new Response(child.stdout).text();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(JSON.stringify(job)));
  await writer.close();
  const [text, status] = await Promise.all([output, child.status]);
  if (!status.success) {
    throw new Error(`Cannot measure "${job.kind}": its worker exited with code ${status.code}`);
  }
  const unexpected = (detail: string) =>
    new Error(`Cannot measure "${job.kind}": unexpected worker output (${detail})`);
  let json: unknown;
  try {
    json = JSON.parse(text.trim().split("\n").at(-1) ?? "");
  } catch (error) {
    throw unexpected((error as Error).message);
  }
  const parsed = WorkerResult.safeParse(json);
  if (!parsed.success) throw unexpected(parsed.error.issues[0]?.message ?? "invalid");
  return parsed.data;
}
