import { redact } from "./redact.ts";

/** Log levels, in increasing severity. */
export type LogLevel = "debug" | "info" | "warn" | "error";
/** `text` for people, `json` for one JSON object per line. */
export type LogFormat = "text" | "json";

const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** Structured fields attached to a log line. */
export type LogFields = Record<string, unknown>;

/** Where log lines go: a function taking one finished line (default: stderr). */
export type LogSink = (line: string) => void;

const encoder = new TextEncoder();
const stderrSink: LogSink = (line) => {
  Deno.stderr.writeSync(encoder.encode(line + "\n"));
};

/**
 * A small leveled logger. Every line passes through `redact`, so a secret that
 * was registered never reaches the output, whatever the caller put in it.
 */
export class Logger {
  #level: number;
  #format: LogFormat;
  #sink: LogSink;
  #context: LogFields;
  #limits = new Map<string, { windowStart: number; count: number; suppressed: number }>();

  constructor(
    options: { level?: LogLevel; format?: LogFormat; sink?: LogSink; context?: LogFields } = {},
  ) {
    this.#level = LEVELS[options.level ?? "info"];
    this.#format = options.format ?? "text";
    this.#sink = options.sink ?? stderrSink;
    this.#context = options.context ?? {};
  }

  /** A logger that adds `context` to every line. */
  child(context: LogFields): Logger {
    const child = new Logger({ format: this.#format, sink: this.#sink });
    child.#level = this.#level;
    child.#context = { ...this.#context, ...context };
    return child;
  }

  /** True when lines at `level` are written. */
  enabled(level: LogLevel): boolean {
    return LEVELS[level] >= this.#level;
  }

  debug(message: string, fields?: LogFields): void {
    this.#write("debug", message, fields);
  }
  info(message: string, fields?: LogFields): void {
    this.#write("info", message, fields);
  }
  warn(message: string, fields?: LogFields): void {
    this.#write("warn", message, fields);
  }
  error(message: string, fields?: LogFields): void {
    this.#write("error", message, fields);
  }

  /**
   * Logs at most `perWindow` lines with this `key` every `windowMs`; the lines held back
   * are counted and reported on the next line that gets through. A `message` function is
   * called only for a line that gets through (for callers on a hot path).
   */
  limited(
    key: string,
    level: LogLevel,
    message: string | (() => string),
    fields: LogFields = {},
    options: { perWindow?: number; windowMs?: number } = {},
  ): void {
    const perWindow = options.perWindow ?? 5;
    const windowMs = options.windowMs ?? 10_000;
    const now = Date.now();
    let state = this.#limits.get(key);
    if (!state || now - state.windowStart >= windowMs) {
      const suppressed = state?.suppressed ?? 0;
      state = { windowStart: now, count: 0, suppressed: 0 };
      this.#limits.set(key, state);
      if (suppressed > 0) fields = { ...fields, suppressed };
    }
    if (state.count < perWindow) {
      state.count++;
      this.#write(level, typeof message === "function" ? message() : message, fields);
    } else {
      state.suppressed++;
    }
  }

  #write(level: LogLevel, message: string, fields?: LogFields): void {
    if (LEVELS[level] < this.#level) return;
    const all = { ...this.#context, ...fields };
    let line: string;
    if (this.#format === "json") {
      line = JSON.stringify({ time: new Date().toISOString(), level, msg: message, ...all });
    } else {
      const extras = Object.entries(all)
        .map(([k, v]) => `${k}=${typeof v === "string" && !/\s/.test(v) ? v : JSON.stringify(v)}`)
        .join(" ");
      const time = new Date().toISOString().slice(11, 23);
      line = `${time} ${level.toUpperCase().padEnd(5)} ${message}${extras ? " " + extras : ""}`;
    }
    this.#sink(redact(line));
  }
}

/** A logger that writes nothing (for library callers that pass none). */
export const silentLogger: Logger = new Logger({ sink: () => {} });
