import * as nodeUtil from "node:util";
import { parseArgs, type ParseArgsConfig } from "node:util";
import { type Config, ENV_VARS, isDebug, loadConfig, type RawEnv } from "./config.ts";
import { UsageError, UserError } from "./errors.ts";
import { onUncaught } from "./last_resort.ts";
import { Logger } from "./log.ts";
import { redact } from "./redact.ts";
import { errorText } from "./text.ts";
import { splitSymbols } from "./twelvedata/symbols.ts";
import type { ZodSafeParseResult } from "zod";

// node:util's parseEnv (the dotenv format, as `--env-file` reads it) is in Deno but not in
// the @types/node 18 that Deno type-checks node: imports against.
const { parseEnv } = nodeUtil as unknown as {
  parseEnv(text: string): Record<string, string>;
};

/**
 * The environment tickpipe reads: `.env` in the working directory when present,
 * then the process environment (`processEnv`, which wins). Only the variables in `ENV_VARS`.
 */
export function readEnvironment(
  envFile = ".env",
  processEnv: { get(name: string): string | undefined } = Deno.env,
): RawEnv {
  const env: RawEnv = {};
  let fileText: string | undefined;
  try {
    fileText = Deno.readTextFileSync(envFile);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotCapable)) {
      throw new UserError(`Cannot read ${envFile}: ${errorText(error)}`);
    }
  }
  const fromFile: Record<string, string | undefined> = fileText === undefined
    ? {}
    : parseEnv(fileText);
  for (const name of ENV_VARS) {
    const value = processEnv.get(name) ?? fromFile[name];
    if (value !== undefined) env[name] = value;
  }
  return env;
}

/** Flags every task accepts, mapped onto their environment variables. */
const COMMON_FLAGS = {
  "log-level": { type: "string" },
  "log-format": { type: "string" },
  help: { type: "boolean", short: "h" },
} as const satisfies ParseArgsConfig["options"];

/** `--help` was given: `runMain` prints the usage on stdout and exits 0. */
class HelpRequested extends UserError {
  override name = "HelpRequested";

  constructor(usage: string) {
    super(usage, { exitCode: 0 });
  }
}

/**
 * Parses `args` with `options` (plus the common flags): a parse error, or more than
 * `maxPositionals` positional arguments, is a `UsageError`; `--help` is `HelpRequested`.
 */
export function parseFlags<T extends NonNullable<ParseArgsConfig["options"]>>(
  args: string[],
  options: T,
  usage: string,
  limits: { maxPositionals?: number } = {},
) {
  const parsed = parse(args, options, usage);
  if ((parsed.values as { help?: boolean }).help) throw new HelpRequested(usage);
  const extra = parsed.positionals[limits.maxPositionals ?? Infinity];
  if (extra !== undefined) throw new UsageError(`Unexpected argument "${extra}"\n${usage}`);
  return parsed;
}

function parse<T extends NonNullable<ParseArgsConfig["options"]>>(
  args: string[],
  options: T,
  usage: string,
) {
  try {
    return parseArgs({
      args,
      options: { ...COMMON_FLAGS, ...options },
      allowPositionals: true,
      strict: true,
    });
  } catch (error) {
    throw new UsageError(`${errorText(error)}\n${usage}`);
  }
}

/**
 * Reads a numeric flag: undefined when absent, else a number within `range` (an integer
 * with `integer: true`), or a `UsageError` naming the flag and the range.
 */
export function numberFlag(
  name: string,
  text: string | undefined,
  usage: string,
  range: { min?: number; max?: number; integer?: boolean } = {},
): number | undefined {
  if (text === undefined) return undefined;
  const { min = -Infinity, max = Infinity, integer = false } = range;
  const value = Number(text);
  if (
    text.trim() === "" || !Number.isFinite(value) || value < min || value > max ||
    (integer && !Number.isInteger(value))
  ) {
    const bounds = (min > -Infinity ? ` from ${min}` : "") + (max < Infinity ? ` to ${max}` : "");
    throw new UsageError(`--${name} must be a ${integer ? "whole " : ""}number${bounds}\n${usage}`);
  }
  return value;
}

/**
 * Checks flag `values` against a zod `schema`: its output, or a `UsageError` with the first
 * issue's message and the usage.
 */
export function parseOptions<T>(
  schema: { safeParse(value: unknown): ZodSafeParseResult<T> },
  values: unknown,
  usage: string,
): T {
  const parsed = schema.safeParse(values);
  if (!parsed.success) {
    throw new UsageError(`${parsed.error.issues[0]?.message ?? "Invalid arguments"}\n${usage}`);
  }
  return parsed.data;
}

/** A stop request: `signal` aborts and `stopped` resolves on the first of them. */
export interface StopSignal extends Disposable {
  signal: AbortSignal;
  stopped: Promise<void>;
}

/**
 * Listens for SIGINT and SIGTERM (SIGINT alone on Windows) and, with `afterMs`, a deadline:
 * the first one aborts `signal`. Dispose it (`using stop = stopSignal()`) to stop listening.
 */
export function stopSignal(options: { afterMs?: number | undefined } = {}): StopSignal {
  const controller = new AbortController();
  const { promise: stopped, resolve } = Promise.withResolvers<void>();
  const stop = () => {
    controller.abort();
    resolve();
  };
  const signals: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM"];
  for (const name of signals) Deno.addSignalListener(name, stop);
  const timer = options.afterMs === undefined ? undefined : setTimeout(stop, options.afterMs);
  return {
    signal: controller.signal,
    stopped,
    [Symbol.dispose]() {
      clearTimeout(timer);
      for (const name of signals) Deno.removeSignalListener(name, stop);
    },
  };
}

/** Loads the configuration from the environment, with the common flags applied on top. */
export function configFromFlags(values: Record<string, unknown>, extra: RawEnv = {}): Config {
  const env = { ...readEnvironment(), ...extra };
  if (typeof values["log-level"] === "string") env.TICKPIPE_LOG_LEVEL = values["log-level"];
  if (typeof values["log-format"] === "string") env.TICKPIPE_LOG_FORMAT = values["log-format"];
  return loadConfig(env);
}

/** A logger configured from `config`. */
export function loggerFor(config: Config): Logger {
  return new Logger({ level: config.log.level, format: config.log.format });
}

/**
 * Reads `--symbols`: undefined when the flag is absent, else the comma-separated list,
 * trimmed. An empty list (`--symbols ""`, `--symbols ,`) is a `UsageError`, never a
 * silent fallback to the defaults.
 */
export function symbolsFlag(text: string | undefined, usage: string): string[] | undefined {
  if (text === undefined) return undefined;
  const symbols = splitSymbols(text);
  if (symbols.length === 0) {
    throw new UsageError(
      `--symbols needs at least one symbol, e.g. --symbols BTC/USD,ETH/USD\n${usage}`,
    );
  }
  return symbols;
}

/** True when TICKPIPE_DEBUG asks for stack traces (environment or .env; false if unreadable). */
function debugEnabled(): boolean {
  try {
    return isDebug(readEnvironment().TICKPIPE_DEBUG);
  } catch {
    return false;
  }
}

/** The error's stack, then its causes' (for TICKPIPE_DEBUG=1). */
function stackOf(error: unknown): string {
  const parts: string[] = [];
  for (let e = error, depth = 0; e !== undefined && depth < 5; depth++) {
    parts.push(e instanceof Error ? (e.stack ?? e.message) : String(e));
    e = e instanceof Error ? e.cause : undefined;
  }
  return parts.join("\nCaused by: ");
}

/** The line printed for `error`: a `UserError`'s own message, else `Error: message` on one line. */
function errorLine(error: unknown): string {
  if (error instanceof UserError) return error.message;
  const message = errorText(error).replace(/\s*\n\s*/g, " ");
  if (error instanceof TypeError && /postgres\/src\/connection\.js/.test(error.stack ?? "")) {
    // postgres.js 3.4.9 writing to a connection that has just closed (porsager/postgres#1208).
    return `Error: the connection to PostgreSQL closed during the task (postgres.js: ${message}); ` +
      "see the PostgreSQL server log";
  }
  return `Error: ${message}`;
}

/**
 * Runs a task body and turns what it throws into one clear line on stderr and an
 * exit code: `UserError` → its own code; anything else → 1, with the message
 * only (and the stack trace with TICKPIPE_DEBUG=1). Secrets are redacted.
 *
 * While the body runs, an exception nobody can catch (thrown from a timer or an I/O
 * callback) or a rejection nobody handles is reported the same way, and the process
 * exits 1 at once: what the body was awaiting may never settle, and its open sockets
 * would keep the process alive. This is the one place outside a task that exits.
 */
export async function runMain(body: () => Promise<number>): Promise<number> {
  const release = onUncaught((error) => {
    report(error);
    Deno.exit(1);
  });
  try {
    return await body();
  } catch (error) {
    if (error instanceof HelpRequested) {
      console.log(error.message);
      return 0;
    }
    report(error);
    return error instanceof UserError ? error.exitCode : 1;
  } finally {
    release();
  }
}

function report(error: unknown): void {
  console.error(redact(errorLine(error)));
  if (debugEnabled()) console.error(redact(stackOf(error)));
}

/**
 * Ends the process with `code` once the task's work is done: at once when nothing is left
 * running, else after `graceMs`. Something may be: a Deno WebSocket whose peer never answers
 * the close frame keeps the process alive for ever (its onclose never fires), and a task that
 * has printed its summary must still exit. For a task's `import.meta.main` line only.
 */
export function exitWhenDone(code: number, graceMs = 3_000): void {
  Deno.exitCode = code;
  Deno.unrefTimer(setTimeout(() => Deno.exit(code), graceMs));
}
