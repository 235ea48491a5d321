import { Backoff } from "../backoff.ts";
import type { Config } from "../config.ts";
import { UserError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { redactUrl, registerSecret } from "../redact.ts";
import { systemTimers, type Timers } from "../timers.ts";
import type { TwelveDataEvent } from "./events.ts";
import type { FrameCounts } from "./frame_reader.ts";

/** Where the client is in its life. */
export type ClientState =
  | "idle"
  | "connecting"
  | "open"
  | "waiting"
  | "closing"
  | "closed"
  | "failed";

/**
 * A change of the connection, for observers such as the gap log: `open` (connected and
 * subscribing; `reconnect` after the first), `dropped` (a connection lost without being
 * asked to close), `stalled` (the watchdog gave up on a silent connection), `refused` (the
 * server refused `symbol` at subscribe, with its reason). `atMs` is the wall-clock time.
 */
export type ConnectionEvent =
  | { type: "open"; atMs: number; reconnect: boolean }
  | { type: "dropped"; atMs: number; code: number; reason: string }
  | { type: "stalled"; atMs: number; silentMs: number }
  | { type: "refused"; atMs: number; symbol: string; reason: string };

/** Options of `TwelveDataClient`; only the first three are required. */
export interface ClientOptions {
  apiKey: string;
  /** e.g. `wss://ws.twelvedata.com/v1/quotes/price`. */
  wsUrl: string;
  /** REST base, used to check the key when connecting fails. */
  apiUrl: string;
  /** How the key travels: the `X-TD-APIKEY` header (default) or the `apikey` query parameter. */
  auth?: "header" | "query";
  logger?: Logger;
  /**
   * Called synchronously for every event, on the socket's own turn: how the stream is
   * consumed. Throwing is logged and does not stop the stream.
   */
  onEvent?: (event: TwelveDataEvent) => void;
  /** Called on every connection change (see `ConnectionEvent`); throwing is logged and ignored. */
  onConnection?: (event: ConnectionEvent) => void;
  /** Interval of `{"action":"heartbeat"}` (default 10 s). */
  heartbeatMs?: number;
  /** Reconnect after this long without any frame, heartbeat replies included (default 30 s). */
  watchdogMs?: number;
  /** First reconnect delay (default 500 ms), doubled per failure up to `backoffCapMs`. */
  backoffBaseMs?: number;
  /** Longest reconnect delay (default 30 s). */
  backoffCapMs?: number;
  /**
   * When the key is refused after it has worked (a billing blip, a key restored later), the
   * client keeps trying instead of failing: first after this long (default 1 min), doubled
   * per refusal up to `authRetryCapMs` (default 15 min), jittered. A key refused at the
   * first connection is still fatal (`AuthError`).
   */
  authRetryBaseMs?: number;
  /** Longest wait between attempts while the key is refused (default 15 min). */
  authRetryCapMs?: number;
  /** Give up on one connection attempt after this long (default 10 s). */
  connectTimeoutMs?: number;
  /** How long `close()` waits for the server to confirm the reset (default 2 s). */
  closeTimeoutMs?: number;
  /** Timers and clock for every wait above (tests drive time with their own). */
  timers?: Timers;
}

/** A snapshot of the client's counters. */
export interface ClientStats extends FrameCounts {
  state: ClientState;
  connected: boolean;
  connectAttempts: number;
  /** Successful connections after the first one. */
  reconnects: number;
  /** Symbols currently wanted (refused ones excluded), by key ("AAPL", "RY:TSX"). */
  subscribed: string[];
  /** Symbols the server refused, with its reason; they are not resubscribed. */
  refused: Record<string, string>;
  /** Epoch ms since which the key has been refused, after it had worked; else undefined. */
  keyRefusedSince: number | undefined;
}

/** The `twelveData` section of the configuration as client options; throws if no key is set. */
export function clientOptionsFromConfig(
  twelveData: Config["twelveData"],
): Pick<ClientOptions, "apiKey" | "wsUrl" | "apiUrl" | "auth"> {
  if (!twelveData.apiKey) {
    throw new UserError(
      "Cannot connect to Twelve Data: TWELVEDATA_API_KEY is not set (the simulator accepts any key, e.g. demo)",
    );
  }
  return {
    apiKey: twelveData.apiKey,
    wsUrl: twelveData.wsUrl,
    apiUrl: twelveData.apiUrl,
    auth: twelveData.auth,
  };
}

/** `ClientOptions` checked, with their defaults. */
export interface ClientSettings {
  apiKey: string;
  wsUrl: URL;
  auth: "header" | "query";
  heartbeatMs: number;
  watchdogMs: number;
  backoff: Backoff;
  authBackoff: Backoff;
  connectTimeoutMs: number;
  closeTimeoutMs: number;
  timers: Timers;
}

/**
 * Checks `options` (the key is registered as a secret, so no log line shows it) and fills
 * in the defaults; throws a `TypeError` or `RangeError` naming what is wrong.
 */
export function clientSettings(options: ClientOptions): ClientSettings {
  const fail = (detail: string) => `Cannot create the Twelve Data client: ${detail}`;
  if (!options.apiKey) throw new TypeError(fail("no API key"));
  registerSecret(options.apiKey);
  let wsUrl: URL;
  try {
    wsUrl = new URL(options.wsUrl);
  } catch {
    throw new TypeError(fail("invalid WebSocket URL"));
  }
  if (wsUrl.protocol !== "ws:" && wsUrl.protocol !== "wss:") {
    throw new TypeError(fail(`${redactUrl(wsUrl)} is not a ws:// or wss:// URL`));
  }
  const heartbeatMs = options.heartbeatMs ?? 10_000;
  const watchdogMs = options.watchdogMs ?? 30_000;
  if (!(watchdogMs > heartbeatMs)) {
    throw new RangeError(
      fail(`watchdogMs (${watchdogMs}) must be longer than heartbeatMs (${heartbeatMs})`),
    );
  }
  const backoff = (names: string, base: number, cap: number) => {
    try {
      return new Backoff(base, cap);
    } catch {
      throw new RangeError(fail(`backoff needs 0 < ${names}`));
    }
  };
  return {
    apiKey: options.apiKey,
    wsUrl,
    auth: options.auth ?? "header",
    heartbeatMs,
    watchdogMs,
    backoff: backoff(
      "backoffBaseMs <= backoffCapMs",
      options.backoffBaseMs ?? 500,
      options.backoffCapMs ?? 30_000,
    ),
    authBackoff: backoff(
      "authRetryBaseMs <= authRetryCapMs",
      options.authRetryBaseMs ?? 60_000,
      options.authRetryCapMs ?? 900_000,
    ),
    connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
    closeTimeoutMs: options.closeTimeoutMs ?? 2_000,
    timers: options.timers ?? systemTimers,
  };
}
