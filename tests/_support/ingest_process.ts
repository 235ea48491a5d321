import type { SimulatorHandle } from "../../lib/simulator/mod.ts";
import { freePort, permissionSet } from "./run.ts";
import { ingestEnv } from "./sim.ts";

/** `tasks/ingest.ts` running as a child process, with the permissions of its task. */
export class IngestProcess {
  readonly metricsPort = freePort();
  /** Its log, one JSON object per line, as it comes. */
  readonly lines: string[] = [];
  #child: Deno.ChildProcess;
  #reading: Promise<unknown>;

  constructor(
    options: { databaseUrl: string; sim: SimulatorHandle; dataDir: string; symbols: string[] },
  ) {
    this.#child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        ...permissionSet("db"),
        "tasks/ingest.ts",
        "--symbols",
        options.symbols.join(","),
        "--metrics-port",
        String(this.metricsPort),
        "--log-format",
        "json",
      ],
      env: { NO_COLOR: "1", ...ingestEnv(options.sim, options.databaseUrl, options.dataDir) },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const collect = async (stream: ReadableStream<Uint8Array>) => {
      let rest = "";
      for await (const text of stream.pipeThrough(new TextDecoderStream())) {
        const parts = (rest + text).split("\n");
        rest = parts.pop()!;
        this.lines.push(...parts);
      }
      if (rest) this.lines.push(rest);
    };
    this.#reading = Promise.all([collect(this.#child.stdout), collect(this.#child.stderr)]);
  }

  /** The messages of its log lines (`msg` of each JSON line, or the raw line). */
  messages(): string[] {
    return this.lines.map((line) => {
      try {
        return (JSON.parse(line) as { msg: string }).msg;
      } catch {
        return line;
      }
    });
  }

  /** Its unlabelled metrics, by name without the `tickpipe_` prefix; undefined until it serves. */
  async metrics(): Promise<Record<string, number> | undefined> {
    try {
      const response = await fetch(`http://127.0.0.1:${this.metricsPort}/metrics`);
      const text = await response.text();
      const metrics: Record<string, number> = {};
      for (const match of text.matchAll(/^tickpipe_(\w+) (\S+)$/gm)) {
        metrics[match[1]!] = Number(match[2]);
      }
      return metrics;
    } catch {
      return undefined;
    }
  }

  /** One unlabelled metric (without `tickpipe_`); NaN until it serves. */
  async metric(name: string): Promise<number> {
    return (await this.metrics())?.[name] ?? NaN;
  }

  /** /healthz: status and body; undefined until it serves. */
  async health(): Promise<{ status: number; body: string } | undefined> {
    try {
      const response = await fetch(`http://127.0.0.1:${this.metricsPort}/healthz`);
      return { status: response.status, body: await response.text() };
    } catch {
      return undefined;
    }
  }

  kill(signal: Deno.Signal): void {
    this.#child.kill(signal);
  }

  /** Waits for it to exit; its exit code. */
  async exited(): Promise<number> {
    const status = await this.#child.status;
    await this.#reading;
    return status.code;
  }
}
