import {
  configFromFlags,
  exitWhenDone,
  loggerFor,
  parseFlags,
  runMain,
  stopSignal,
  symbolsFlag,
} from "../lib/cli.ts";
import { UsageError } from "../lib/errors.ts";
import {
  clientOptionsFromConfig,
  type ClientStats,
  summarizeRefusals,
  TwelveDataClient,
  type TwelveDataEvent,
} from "../lib/twelvedata/mod.ts";

const USAGE =
  `Usage: deno task ws-test [--symbols BTC/USD,ETH/USD,ETH/BTC,AAPL] [--duration SECONDS]
                         [--log-level debug|info|warn|error] [--log-format text|json]

Connects to Twelve Data's real-time WebSocket, subscribes and prints every event on
stdout, one line each, with a line of counts every 10 s. Ctrl-C closes cleanly.
Reads TWELVEDATA_API_KEY, TWELVEDATA_WS_URL, TWELVEDATA_API_URL and TWELVEDATA_AUTH
(environment or .env). Against the simulator:
  TWELVEDATA_WS_URL=ws://127.0.0.1:8765/v1/quotes/price TWELVEDATA_API_URL=http://127.0.0.1:8765 \\
  TWELVEDATA_API_KEY=demo deno task ws-test`;

const DEFAULT_SYMBOLS = ["BTC/USD", "ETH/USD", "ETH/BTC", "AAPL"];
/** Symbols listed in one line before the rest is counted (thousands make unreadable lines). */
const EVENT_LIST_MAX = 20;
const encoder = new TextEncoder();

/** Buffers stdout lines and writes them in chunks: printing must not slow the socket. */
class LineWriter {
  #lines: string[] = [];
  #timer: ReturnType<typeof setInterval> = setInterval(() => this.flush(), 100);
  #broken = false;

  push(line: string): void {
    if (!this.#broken) this.#lines.push(line);
    if (this.#lines.length >= 1000) this.flush();
  }

  flush(): void {
    if (this.#lines.length === 0 || this.#broken) return;
    const text = this.#lines.join("\n") + "\n";
    this.#lines = [];
    try {
      const bytes = encoder.encode(text);
      let written = 0;
      while (written < bytes.length) written += Deno.stdout.writeSync(bytes.subarray(written));
    } catch {
      this.#broken = true; // stdout closed (e.g. piped into head): keep running quietly
    }
  }

  close(): void {
    clearInterval(this.#timer);
    this.flush();
  }
}

function formatEvent(event: TwelveDataEvent): string {
  switch (event.event) {
    case "price": {
      let line = `${new Date(event.timeMs).toISOString().slice(0, 19)}Z  price  ${
        event.symbol.padEnd(9)
      } ${event.price}`;
      if (event.bid !== undefined) line += `  bid ${event.bid}`;
      if (event.ask !== undefined) line += `  ask ${event.ask}`;
      if (event.day_volume !== undefined) line += `  day_volume ${event.day_volume}`;
      const currency = event.currency ??
        (event.currency_base ? `${event.currency_base}/${event.currency_quote}` : undefined);
      if (currency) line += `  (${currency})`;
      return line;
    }
    case "subscribe-status": {
      const ok = event.success.length > EVENT_LIST_MAX
        ? `${event.success.slice(0, EVENT_LIST_MAX).map((item) => item.symbol).join(", ")} ` +
          `and ${event.success.length - EVENT_LIST_MAX} more`
        : event.success.map((item) => item.symbol).join(", ") || "-";
      let line = `subscribe-status ${event.status}  success: ${ok}`;
      if (event.fails.length > 0) {
        const fails = summarizeRefusals(
          event.fails.map((item) => [item.symbol, item.message ?? "refused"]),
        );
        line += `  fails: ${fails}`;
      }
      if (event.messages.length > 0) line += `  messages: ${event.messages.join("; ")}`;
      return line;
    }
    case "heartbeat":
      return `heartbeat ${event.status ?? ""}`.trimEnd();
    case "unknown":
      return `unknown event ${JSON.stringify(event.name)}: ${JSON.stringify(event.payload)}`;
    default:
      return `${event.event} ${JSON.stringify(event)}`;
  }
}

function formatCounts(stats: ClientStats, previousTicks: number, seconds: number): string {
  const rate = seconds > 0 ? Math.round((stats.ticks - previousTicks) / seconds) : 0;
  const refused = Object.keys(stats.refused);
  const shown = refused.slice(0, EVENT_LIST_MAX).join(",") +
    (refused.length > EVENT_LIST_MAX ? `,... (${refused.length})` : "");
  return `counts  connected=${
    stats.connected ? "yes" : "no"
  } frames=${stats.frames} ticks=${stats.ticks} (${rate}/s) malformed=${stats.malformed} unknown=${stats.unknown} reconnects=${stats.reconnects}` +
    (refused.length > 0 ? ` refused=${shown}` : "");
}

/** `ws-test`: prints the live event stream until Ctrl-C (or `--duration`). */
export function run(args: string[]): Promise<number> {
  return runMain(async () => {
    const { values } = parseFlags(
      args,
      {
        symbols: { type: "string" },
        duration: { type: "string" },
      },
      USAGE,
      { maxPositionals: 0 },
    );
    const symbols = symbolsFlag(values.symbols, USAGE) ?? DEFAULT_SYMBOLS;
    let durationMs: number | undefined;
    if (values.duration !== undefined) {
      const seconds = Number(values.duration);
      if (!(seconds > 0)) {
        throw new UsageError(`--duration must be a number of seconds > 0\n${USAGE}`);
      }
      durationMs = seconds * 1000;
    }
    const config = configFromFlags(values);
    const logger = loggerFor(config);
    const out = new LineWriter();
    const client = new TwelveDataClient({
      ...clientOptionsFromConfig(config.twelveData),
      logger,
      onEvent: (event) => out.push(formatEvent(event)),
    });

    using stop = stopSignal({ afterMs: durationMs });
    let previousTicks = 0;
    let previousAt = Date.now();
    const countsTimer = setInterval(() => {
      const now = Date.now();
      const stats = client.stats();
      out.push(formatCounts(stats, previousTicks, (now - previousAt) / 1000));
      previousTicks = stats.ticks;
      previousAt = now;
    }, 10_000);
    try {
      client.subscribe(symbols);
      client.start().catch(() => {}); // a fatal error surfaces through `closed`
      await Promise.race([stop.stopped, client.closed]);
    } finally {
      clearInterval(countsTimer);
      await client.close();
      out.push(formatCounts(client.stats(), previousTicks, (Date.now() - previousAt) / 1000));
      out.close();
    }
    return 0;
  });
}

if (import.meta.main) exitWhenDone(await run(Deno.args));
