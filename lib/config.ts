import { z } from "zod";
import { UserError } from "./errors.ts";
import { registerSecret } from "./redact.ts";

/** TLS modes for the database connection (a subset of libpq's sslmode). */
const TLS_MODES = ["disable", "require", "verify-full"] as const;
/** One of `TLS_MODES`. */
export type TlsMode = (typeof TLS_MODES)[number];

/** Twelve Data's public hosts (overridable to point at the simulator). */
const DEFAULT_WS_URL = "wss://ws.twelvedata.com/v1/quotes/price";
/** Twelve Data's REST host. */
const DEFAULT_API_URL = "https://api.twelvedata.com";

/** Every environment variable tickpipe reads; flags map onto the same names. */
export const ENV_VARS = [
  "DATABASE_URL",
  "PGHOST",
  "PGPORT",
  "PGUSER",
  "PGPASSWORD",
  "PGDATABASE",
  "PGSSLMODE",
  "TWELVEDATA_API_KEY",
  "TWELVEDATA_WS_URL",
  "TWELVEDATA_API_URL",
  "TWELVEDATA_AUTH",
  "TICKPIPE_DATA_DIR",
  "TICKPIPE_EMBEDDED_PORT",
  "TICKPIPE_DB_POOL",
  "TICKPIPE_LOG_LEVEL",
  "TICKPIPE_LOG_FORMAT",
  "TICKPIPE_DEBUG",
] as const;
/** The raw, string-valued input of `loadConfig`. */
export type RawEnv = Partial<Record<(typeof ENV_VARS)[number], string>>;

/** Where and how to reach PostgreSQL. */
export interface DatabaseConfig {
  host: string;
  port: number;
  user: string;
  password: string | undefined;
  database: string;
  tls: TlsMode;
  /** Where the settings came from, for messages: "DATABASE_URL", "PG* variables" or "embedded". */
  source: string;
}

const LOCAL_HOSTS = new Set(["localhost", "127.0.0.1", "::1", "[::1]"]);

function defaultTls(host: string): TlsMode {
  return LOCAL_HOSTS.has(host) || host.startsWith("/") ? "disable" : "require";
}

const tlsMode = (name: string) =>
  z.enum(TLS_MODES, { error: () => `${name} must be one of ${TLS_MODES.join(", ")}` });

const port = (name: string) =>
  z.coerce.number({ error: () => `${name} must be a port number (1-65535)` })
    .int(`${name} must be a port number (1-65535)`)
    .min(1, `${name} must be a port number (1-65535)`)
    .max(65535, `${name} must be a port number (1-65535)`);

const wsUrl = z.url({
  protocol: /^wss?$/,
  error: () => "TWELVEDATA_WS_URL must be a ws:// or wss:// URL",
});
const httpUrl = z.url({
  protocol: /^https?$/,
  error: () => "TWELVEDATA_API_URL must be an http:// or https:// URL",
});

function parseDatabaseUrl(
  raw: string,
  env: {
    PGUSER?: string | undefined;
    PGPASSWORD?: string | undefined;
    PGDATABASE?: string | undefined;
    PGSSLMODE?: string | undefined;
  },
  ctx: z.RefinementCtx,
): DatabaseConfig | undefined {
  const fail = (detail: string) => {
    ctx.addIssue({ code: "custom", message: `DATABASE_URL ${detail}` });
    return undefined;
  };
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return fail("is not a valid URL: expected postgres://user@host:5432/database");
  }
  if (url.protocol !== "postgres:" && url.protocol !== "postgresql:") {
    return fail(`must start with postgres:// or postgresql:// (got ${url.protocol}//)`);
  }
  if (!url.hostname) {
    return fail("has no host: expected postgres://user@host:5432/database");
  }
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
  const portNumber = url.port ? Number(url.port) : 5432;
  const username = decodePart(url.username);
  const pass = decodePart(url.password);
  const path = decodePart(url.pathname.replace(/^\//, ""));
  const malformed = [
    username === undefined && "user name",
    pass === undefined && "password",
    path === undefined && "database name",
  ].filter(Boolean);
  if (malformed.length > 0) {
    return fail(
      `has a malformed %-escape in its ${
        malformed.join(" and ")
      } (a literal % must be written %25; other special characters as %XX)`,
    );
  }
  const user = username || env.PGUSER || "postgres";
  const password = pass || env.PGPASSWORD;
  const database = path || env.PGDATABASE || user;
  const sslmode = url.searchParams.get("sslmode") ?? env.PGSSLMODE ?? defaultTls(host);
  const tls = tlsMode("DATABASE_URL sslmode").safeParse(sslmode);
  if (!tls.success) return fail(`sslmode must be one of ${TLS_MODES.join(", ")}`);
  return {
    host,
    port: portNumber,
    user,
    password,
    database,
    tls: tls.data,
    source: "DATABASE_URL",
  };
}

const debugSchema = z.stringbool({
  error: () => "TICKPIPE_DEBUG must be 1 or 0 (also true/false, yes/no, on/off)",
});

/** Reads TICKPIPE_DEBUG as the configuration does; false when unset or invalid. */
export function isDebug(value: string | undefined): boolean {
  const parsed = debugSchema.safeParse(value?.trim());
  return parsed.success && parsed.data;
}

/** `decodeURIComponent`, or undefined for a malformed %-escape (which it throws on). */
function decodePart(text: string): string | undefined {
  try {
    return decodeURIComponent(text);
  } catch {
    return undefined;
  }
}

/** The one schema over environment and flags; its output is the typed `Config`. */
const ConfigSchema = z.object({
  DATABASE_URL: z.string().trim().min(1).optional(),
  PGHOST: z.string().trim().min(1).optional(),
  PGPORT: port("PGPORT").optional(),
  PGUSER: z.string().min(1).optional(),
  PGPASSWORD: z.string().optional(),
  PGDATABASE: z.string().min(1).optional(),
  PGSSLMODE: tlsMode("PGSSLMODE").optional(),
  TWELVEDATA_API_KEY: z.string().trim().min(1, "TWELVEDATA_API_KEY must not be empty").optional(),
  TWELVEDATA_WS_URL: wsUrl.default(DEFAULT_WS_URL),
  TWELVEDATA_API_URL: httpUrl.default(DEFAULT_API_URL),
  TWELVEDATA_AUTH: z.enum(["header", "query"], {
    error: () => "TWELVEDATA_AUTH must be header or query",
  }).default("header"),
  TICKPIPE_DATA_DIR: z.string().min(1).default(".data"),
  // Unset: the port the data directory remembers, else 54329, else the next free one.
  TICKPIPE_EMBEDDED_PORT: port("TICKPIPE_EMBEDDED_PORT").optional(),
  TICKPIPE_DB_POOL: z.coerce.number({ error: () => "TICKPIPE_DB_POOL must be a number" })
    .int("TICKPIPE_DB_POOL must be a whole number from 1 to 100")
    .min(1, "TICKPIPE_DB_POOL must be a whole number from 1 to 100")
    .max(100, "TICKPIPE_DB_POOL must be a whole number from 1 to 100")
    .default(4),
  TICKPIPE_LOG_LEVEL: z.enum(["debug", "info", "warn", "error"], {
    error: () => "TICKPIPE_LOG_LEVEL (--log-level) must be debug, info, warn or error",
  }).default("info"),
  TICKPIPE_LOG_FORMAT: z.enum(["text", "json"], {
    error: () => "TICKPIPE_LOG_FORMAT (--log-format) must be text or json",
  }).default("text"),
  TICKPIPE_DEBUG: debugSchema.default(false),
}).transform((env, ctx) => {
  let database: DatabaseConfig | undefined;
  if (env.DATABASE_URL) {
    database = parseDatabaseUrl(env.DATABASE_URL, env, ctx);
  } else if (env.PGHOST) {
    const user = env.PGUSER ?? "postgres";
    database = {
      host: env.PGHOST,
      port: env.PGPORT ?? 5432,
      user,
      password: env.PGPASSWORD,
      database: env.PGDATABASE ?? user,
      tls: env.PGSSLMODE ?? defaultTls(env.PGHOST),
      source: "PG* variables",
    };
  }
  return {
    /** Undefined when none is configured: tasks then start the embedded server. */
    database,
    twelveData: {
      apiKey: env.TWELVEDATA_API_KEY,
      wsUrl: env.TWELVEDATA_WS_URL,
      apiUrl: env.TWELVEDATA_API_URL.replace(/\/+$/, ""),
      auth: env.TWELVEDATA_AUTH,
    },
    dataDir: env.TICKPIPE_DATA_DIR,
    embeddedPort: env.TICKPIPE_EMBEDDED_PORT,
    poolSize: env.TICKPIPE_DB_POOL,
    log: { level: env.TICKPIPE_LOG_LEVEL, format: env.TICKPIPE_LOG_FORMAT },
    // TICKPIPE_DEBUG is validated here but read by `isDebug`: an error report may come
    // before (or from) loading the configuration.
  };
});

/** tickpipe's validated configuration. */
export type Config = z.output<typeof ConfigSchema>;

/**
 * Validates `env` (environment merged with flags, flags winning) into a `Config`.
 * Throws a `UserError` with one line naming the variable and what is expected;
 * values are never echoed, since some of them are secrets.
 */
export function loadConfig(env: RawEnv): Config {
  registerSecret(env.TWELVEDATA_API_KEY);
  registerSecret(env.PGPASSWORD);
  if (env.DATABASE_URL) {
    try {
      const password = new URL(env.DATABASE_URL).password;
      registerSecret(password);
      registerSecret(decodePart(password));
    } catch {
      // A malformed URL is reported by the schema.
    }
  }
  const input: Record<string, string> = {};
  for (const [key, value] of Object.entries(env)) {
    if (value !== undefined && value !== "") input[key] = value;
  }
  const result = ConfigSchema.safeParse(input);
  if (!result.success) {
    const issue = result.error.issues[0];
    const message = issue?.message ?? "Invalid configuration";
    throw new UserError(`Invalid configuration: ${message}`);
  }
  registerSecret(result.data.database?.password);
  return result.data;
}
