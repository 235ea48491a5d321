import { exitWhenDone } from "./lib/cli.ts";
/**
 * tickpipe: one program, `tickpipe <command> [args]`, dispatching to the same
 * `run()` each task file exports (so `deno task`, tests and a compiled binary
 * all run the same code).
 */
type Task = { run(args: string[]): Promise<number> };

/** Commands, their task modules (static specifiers, so `deno compile` bundles them) and a summary. */
export const COMMANDS: Record<string, { load: () => Promise<Task>; summary: string }> = {
  setup: { load: () => import("./tasks/setup.ts"), summary: "create or update the schema" },
  db: {
    load: () => import("./tasks/db.ts"),
    summary: "embedded database: start, stop, psql command",
  },
  simulate: {
    load: () => import("./tasks/simulate.ts"),
    summary: "run the local Twelve Data simulator (no account needed)",
  },
  "ws-test": {
    load: () => import("./tasks/ws_test.ts"),
    summary: "connect, subscribe and print events as they arrive",
  },
  ingest: {
    load: () => import("./tasks/ingest.ts"),
    summary: "stream Twelve Data prices into crypto_ticks until stopped",
  },
  demo: {
    load: () => import("./tasks/demo.ts"),
    summary: "embedded database + simulator: setup, ingest, candles",
  },
  bench: {
    load: () => import("./tasks/bench.ts"),
    summary: "throughput, stage ceilings, latency, CPU and memory of ingest on this machine",
  },
  candles: {
    load: () => import("./tasks/candles.ts"),
    summary: "print OHLCV candles, e.g. candles BTC/USD 14",
  },
  chart: {
    load: () => import("./tasks/chart.ts"),
    summary: "serve a live candlestick chart on http://127.0.0.1:8080/",
  },
  prune: {
    load: () => import("./tasks/prune.ts"),
    summary: "delete the ticks older than the retention now, keeping their candles",
  },
  refresh: {
    load: () => import("./tasks/refresh.ts"),
    summary: "recompute the candles of a window from the ticks",
  },
  quarantine: {
    load: () => import("./tasks/quarantine.ts"),
    summary: "list, replay or discard the ticks the database refused",
  },
  gaps: {
    load: () => import("./tasks/gaps.ts"),
    summary: "print the gap log: where ticks may be missing, why, filled or not",
  },
  backfill: {
    load: () => import("./tasks/backfill.ts"),
    summary: "fill gaps (or load history) from REST 1-minute bars",
  },
};

const USAGE = () =>
  `Usage: tickpipe <command> [args]  (tickpipe <command> --help for its options)

Commands:
${Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(10)} ${c.summary}`).join("\n")}`;

/** Runs `tickpipe <command> [args]`; exit 2 with usage for an unknown command. */
export async function run(args: string[]): Promise<number> {
  const [command, ...rest] = args;
  if (!command || command === "--help" || command === "-h" || command === "help") {
    console.log(USAGE());
    return command ? 0 : 2;
  }
  const entry = COMMANDS[command];
  if (!entry) {
    console.error(`Unknown command "${command}"\n${USAGE()}`);
    return 2;
  }
  return await (await entry.load()).run(rest);
}

if (import.meta.main) exitWhenDone(await run(Deno.args));
