import { parseArgs, type ParseArgsConfig } from "node:util";
import { type Config, ENV_VARS, loadConfig, type RawEnv } from "./config.ts";
import { UsageError, UserError } from "./errors.ts";
import { Logger } from "./log.ts";
import { redact } from "./redact.ts";

/**
 * The environment tickpipe reads: `.env` in the working directory when present,
 * then the process environment (which wins). Only the variables in `ENV_VARS`.
 */
export function readEnvironment(envFile = ".env"): RawEnv {
  const env: RawEnv = {};
  let fileText: string | undefined;
  try {
    fileText = Deno.readTextFileSync(envFile);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotCapable)) {
      throw new UserError(`Cannot read ${envFile}: ${(error as Error).message}`);
    }
  }
  const fromFile = fileText === undefined ? {} : parseDotenv(fileText);
  for (const name of ENV_VARS) {
    const value = Deno.env.get(name) ?? fromFile[name];
    if (value !== undefined) env[name] = value;
  }
  return env;
}

/** Flags every task accepts, mapped onto their environment variables. */
export const COMMON_FLAGS = {
  "log-level": { type: "string" },
  "log-format": { type: "string" },
  help: { type: "boolean", short: "h" },
} as const satisfies ParseArgsConfig["options"];

/** `--help` was given: `runMain` prints the usage on stdout and exits 0. */
export class HelpRequested extends UserError {
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
    throw new UsageError(`${(error as Error).message}\n${usage}`);
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
 * Runs a task body and turns what it throws into one clear line on stderr and an
 * exit code: `UserError` → its own code; anything else → 1, with the message
 * only (and a stack trace with TICKPIPE_DEBUG=1). Secrets are redacted.
 */
export async function runMain(body: () => Promise<number>): Promise<number> {
  try {
    return await body();
  } catch (error) {
    if (error instanceof HelpRequested) {
      console.log(error.message);
      return 0;
    }
    const message = error instanceof Error ? error.message : String(error);
    const line = error instanceof UserError ? message : `Error: ${message}`;
    console.error(redact(line));
    return error instanceof UserError ? error.exitCode : 1;
  }
}

/** Parses a .env file: KEY=value lines, optional `export`, quotes, # comments. */
export function parseDotenv(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const match = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(line);
    if (!match) continue;
    let value = match[2]!;
    const quote = value[0];
    if ((quote === '"' || quote === "'") && value.endsWith(quote) && value.length >= 2) {
      value = value.slice(1, -1);
      if (quote === '"') value = value.replaceAll("\\n", "\n");
    } else {
      value = value.replace(/\s+#.*$/, "");
    }
    out[match[1]!] = value;
  }
  return out;
}
