import type { Config } from "../config.ts";
import { UserError } from "../errors.ts";
import { type Logger, silentLogger } from "../log.ts";
import { redact, redactUrl, registerSecret } from "../redact.ts";
import { AuthError } from "./errors.ts";
import { parseFrame, type SubscribeStatusEvent, type TwelveDataEvent } from "./events.ts";
import { Backoff } from "./backoff.ts";
import { refusalLine } from "./refusals.ts";
import { Subscriptions } from "./subscriptions.ts";
import { checkApiKey, TwelveDataRest } from "./rest.ts";
import { normalizeSymbols, type SymbolsInput, symbolsParam, type SymbolSpec } from "./symbols.ts";

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
   * Called synchronously for every event, on the socket's own turn: the cheapest way
   * to consume the stream. Throwing is logged and does not stop the stream.
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
  /** Warn when more events than this wait in the iterator's queue (default 100,000). */
  queueWarnAt?: number;
}

/** A snapshot of the client's counters. */
export interface ClientStats {
  state: ClientState;
  connected: boolean;
  /** Every frame received, malformed ones included. */
  frames: number;
  /** Valid price events. */
  ticks: number;
  malformed: number;
  /** Malformed frames by reason ("invalid JSON", "invalid price", "timestamp out of range"...). */
  malformedByReason: Record<string, number>;
  unknown: number;
  heartbeats: number;
  connectAttempts: number;
  /** Successful connections after the first one. */
  reconnects: number;
  /** Symbols currently wanted (refused ones excluded), by key ("AAPL", "RY:TSX"). */
  subscribed: string[];
  /** Symbols the server refused, with its reason; they are not resubscribed. */
  refused: Record<string, string>;
  /** Event time (epoch ms) of the last tick per symbol. */
  lastTickMs: Record<string, number>;
  /** Events waiting in the async iterator's queue. */
  queued: number;
  /** Epoch ms since which the key has been refused, after it had worked; else undefined. */
  keyRefusedSince: number | undefined;
  /**
   * Epoch ms since which no symbol has been live (the connection down, or no symbol
   * confirmed nor ticking on it yet); undefined while the stream is live.
   */
  notLiveSince: number | undefined;
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

function deferred<T>() {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => {}); // a rejection nobody awaits must not crash the process
  return { promise, resolve, reject };
}

const delay = (ms: number) => {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const promise = new Promise<void>((resolve) => timer = setTimeout(resolve, ms));
  return { promise, cancel: () => clearTimeout(timer) };
};

/**
 * A resilient client for Twelve Data's real-time WebSocket: heartbeats, a no-data
 * watchdog, reconnects with capped exponential backoff and jitter, resubscription
 * (minus refused symbols), a fatal `AuthError` for a bad key, and a graceful close.
 *
 * Consume events with the `onEvent` option (synchronous, no per-event allocation
 * beyond the parsed frame) or `for await (const batch of client.batches())`.
 */
export class TwelveDataClient {
  #apiKey: string;
  #wsUrl: URL;
  #auth: "header" | "query";
  #rest: TwelveDataRest;
  #logger: Logger;
  #onEvent: ((event: TwelveDataEvent) => void) | undefined;
  #onConnection: ((event: ConnectionEvent) => void) | undefined;
  #heartbeatMs: number;
  #watchdogMs: number;
  #backoff: Backoff;
  #authBackoff: Backoff;
  #connectTimeoutMs: number;
  #closeTimeoutMs: number;
  #queueWarnAt: number;

  #state: ClientState = "idle";
  #ws: WebSocket | undefined;
  #everOpened = false;
  #failures = 0;
  #keyRefusedSince: number | undefined;
  #notLiveSince: number | undefined = Date.now();
  #reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  #heartbeatTimer: ReturnType<typeof setInterval> | undefined;
  #watchdogTimer: ReturnType<typeof setInterval> | undefined;
  #watchFrames = 0;
  #watchSince = 0;
  #keyCheck: Promise<void> | undefined;
  #zombies = new Set<Promise<void>>();

  #subscriptions = new Subscriptions();
  #lastTick = new Map<string, number>();
  #live = false;

  #frames = 0;
  #ticks = 0;
  #malformed = 0;
  #malformedBy = new Map<string, number>();
  #unknown = 0;
  #heartbeats = 0;
  #heartbeatsSent = 0;
  #connectAttempts = 0;
  #reconnects = 0;

  #queue: TwelveDataEvent[] | undefined;
  #wake: (() => void) | undefined;
  #closeFence: { heartbeats: number; resolve: () => void } | undefined;
  #opened = deferred<void>();
  #closed = deferred<void>();
  #closing: Promise<void> | undefined;
  #fatal: Error | undefined;

  constructor(options: ClientOptions) {
    if (!options.apiKey) {
      throw new TypeError("Cannot create the Twelve Data client: no API key");
    }
    registerSecret(options.apiKey);
    this.#apiKey = options.apiKey;
    try {
      this.#wsUrl = new URL(options.wsUrl);
    } catch {
      throw new TypeError(`Cannot create the Twelve Data client: invalid WebSocket URL`);
    }
    if (this.#wsUrl.protocol !== "ws:" && this.#wsUrl.protocol !== "wss:") {
      throw new TypeError(
        `Cannot create the Twelve Data client: ${
          redactUrl(this.#wsUrl)
        } is not a ws:// or wss:// URL`,
      );
    }
    this.#auth = options.auth ?? "header";
    this.#rest = new TwelveDataRest({ apiKey: options.apiKey, apiUrl: options.apiUrl });
    this.#logger = options.logger ?? silentLogger;
    this.#onEvent = options.onEvent;
    this.#onConnection = options.onConnection;
    this.#heartbeatMs = options.heartbeatMs ?? 10_000;
    this.#watchdogMs = options.watchdogMs ?? 30_000;
    this.#connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
    this.#closeTimeoutMs = options.closeTimeoutMs ?? 2_000;
    this.#queueWarnAt = options.queueWarnAt ?? 100_000;
    if (!(this.#watchdogMs > this.#heartbeatMs)) {
      throw new RangeError(
        `Cannot create the Twelve Data client: watchdogMs (${this.#watchdogMs}) must be longer than heartbeatMs (${this.#heartbeatMs})`,
      );
    }
    const backoff = (what: string, base: number, cap: number) => {
      try {
        return new Backoff(base, cap);
      } catch {
        throw new RangeError(`Cannot create the Twelve Data client: ${what}`);
      }
    };
    this.#backoff = backoff(
      "backoff needs 0 < backoffBaseMs <= backoffCapMs",
      options.backoffBaseMs ?? 500,
      options.backoffCapMs ?? 30_000,
    );
    this.#authBackoff = backoff(
      "backoff needs 0 < authRetryBaseMs <= authRetryCapMs",
      options.authRetryBaseMs ?? 60_000,
      options.authRetryCapMs ?? 900_000,
    );
  }

  /**
   * Starts connecting (idempotent). Resolves once the first connection is open; rejects
   * with `AuthError` when the key is refused. Network faults never reject: it keeps trying.
   */
  start(): Promise<void> {
    if (this.#state === "idle") this.#connect();
    return this.#opened.promise;
  }

  /** Resolves after `close()`; rejects with the fatal error (`AuthError`) that ended the client. */
  get closed(): Promise<void> {
    return this.#closed.promise;
  }

  /** The current state. */
  get state(): ClientState {
    return this.#state;
  }

  /** True while a connection is open. */
  get connected(): boolean {
    return this.#state === "open";
  }

  /** Adds symbols (comma string or list); sent now if connected, and after every reconnect. */
  subscribe(symbols: SymbolsInput): void {
    const specs = normalizeSymbols(symbols);
    this.#subscriptions.add(specs);
    if (specs.length > 0 && this.#state === "open") this.#sendSubscribe(specs);
  }

  /** Removes symbols; the server confirms with an `unsubscribe-status` event. */
  unsubscribe(symbols: SymbolsInput): void {
    const specs = normalizeSymbols(symbols);
    this.#subscriptions.remove(specs);
    if (specs.length > 0 && this.#state === "open") {
      this.#send({ action: "unsubscribe", params: { symbols: symbolsParam(specs) } });
    }
  }

  /** Drops every subscription; the server confirms with a `reset-status` event. */
  reset(): void {
    this.#subscriptions.clear();
    if (this.#state === "open") this.#send({ action: "reset" });
  }

  /** A snapshot of the counters. */
  stats(): ClientStats {
    return {
      state: this.#state,
      connected: this.#state === "open",
      frames: this.#frames,
      ticks: this.#ticks,
      malformed: this.#malformed,
      malformedByReason: Object.fromEntries(this.#malformedBy),
      unknown: this.#unknown,
      heartbeats: this.#heartbeats,
      connectAttempts: this.#connectAttempts,
      reconnects: this.#reconnects,
      subscribed: this.#subscriptions.wanted,
      refused: this.#subscriptions.refused,
      lastTickMs: Object.fromEntries(this.#lastTick),
      queued: this.#queue?.length ?? 0,
      keyRefusedSince: this.#keyRefusedSince,
      notLiveSince: this.#notLiveSince,
    };
  }

  /**
   * The events as batches (everything that arrived since the previous pull): one
   * promise per batch, not per event. Ends after `close()`; throws the fatal error.
   * Events are buffered only while a batch iterator is active; one at a time.
   */
  async *batches(): AsyncGenerator<TwelveDataEvent[], void, undefined> {
    if (this.#queue) throw new TypeError("Cannot iterate the client twice at once");
    this.#queue = [];
    try {
      while (true) {
        if (this.#queue.length > 0) {
          const batch = this.#queue;
          this.#queue = [];
          yield batch;
          continue;
        }
        if (this.#state === "closed" || this.#state === "failed") {
          if (this.#fatal) throw this.#fatal;
          return;
        }
        await new Promise<void>((resolve) => this.#wake = resolve);
      }
    } finally {
      this.#queue = undefined;
      this.#wake = undefined;
    }
  }

  /** The events one by one (convenience over `batches()`). */
  async *[Symbol.asyncIterator](): AsyncGenerator<TwelveDataEvent, void, undefined> {
    for await (const batch of this.batches()) yield* batch;
  }

  /**
   * Closes gracefully: asks the server to reset and waits (bounded) until it has answered,
   * so no frame it already sent is lost, then closes the socket. Idempotent; never throws.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    const failed = this.#state === "failed";
    if (!failed) this.#state = "closing";
    this.#stopTimers();
    const ws = this.#ws;
    if (ws && ws.readyState === WebSocket.OPEN) {
      // A WebSocket discards frames that arrive after close(): first make the server stop,
      // fenced by a heartbeat whose reply comes after the reset is processed.
      const fence = deferred<void>();
      this.#send({ action: "reset" });
      this.#send({ action: "heartbeat" });
      this.#heartbeatsSent++;
      this.#closeFence = { heartbeats: this.#heartbeatsSent, resolve: () => fence.resolve() };
      const timeout = delay(this.#closeTimeoutMs);
      await Promise.race([fence.promise, timeout.promise]);
      timeout.cancel();
      this.#closeFence = undefined;
    }
    if (ws) this.#abandon(ws, 1000, "client closing");
    this.#ws = undefined;
    await Promise.all([...this.#zombies]);
    await this.#keyCheck;
    if (!failed) {
      this.#state = "closed";
      this.#closed.resolve();
      this.#logger.info("Closed the Twelve Data connection", { ticks: this.#ticks });
    }
    this.#opened.resolve();
    this.#wakeUp();
  }

  #stopTimers(): void {
    clearTimeout(this.#reconnectTimer);
    clearInterval(this.#heartbeatTimer);
    clearInterval(this.#watchdogTimer);
    this.#reconnectTimer = this.#heartbeatTimer = this.#watchdogTimer = undefined;
  }

  #connect(): void {
    this.#reconnectTimer = undefined;
    if (this.#state === "closing" || this.#state === "closed" || this.#state === "failed") return;
    this.#state = "connecting";
    this.#connectAttempts++;
    const url = new URL(this.#wsUrl);
    if (this.#auth === "query") url.searchParams.set("apikey", this.#apiKey);
    this.#logger.debug("Connecting to Twelve Data", { url: redactUrl(url) });
    const ws = this.#auth === "header"
      ? new WebSocket(url, { headers: { "X-TD-APIKEY": this.#apiKey } })
      : new WebSocket(url);
    this.#ws = ws;
    let opened = false;
    let fresh = true;
    let lastError = "";
    const connectTimer = setTimeout(() => {
      lastError = `no answer within ${this.#connectTimeoutMs} ms`;
      this.#abandon(ws);
      this.#down(ws, false, 1006, lastError);
    }, this.#connectTimeoutMs);
    ws.onopen = () => {
      clearTimeout(connectTimer);
      opened = true;
      this.#open(ws);
    };
    ws.onmessage = (message: MessageEvent) => {
      if (fresh) {
        // The server works: the next failure starts the backoff from the bottom again.
        fresh = false;
        this.#backoff.reset();
      }
      this.#frame(message.data);
    };
    ws.onerror = (error) => {
      lastError = error instanceof ErrorEvent ? error.message : "WebSocket error";
    };
    ws.onclose = (event) => {
      clearTimeout(connectTimer);
      this.#down(ws, opened, event.code, event.reason || lastError);
    };
  }

  #open(ws: WebSocket): void {
    if (ws !== this.#ws) return;
    this.#state = "open";
    this.#failures = 0;
    this.#notify({ type: "open", atMs: Date.now(), reconnect: this.#everOpened });
    if (this.#everOpened) this.#reconnects++;
    this.#everOpened = true;
    if (this.#keyRefusedSince !== undefined) {
      const seconds = Math.round((Date.now() - this.#keyRefusedSince) / 1000);
      this.#logger.info(`Twelve Data accepts the API key again, after ${seconds} s of refusals`);
      this.#keyRefusedSince = undefined;
      this.#authBackoff.reset();
    }
    this.#logger.info("Connected to Twelve Data", { url: redactUrl(this.#wsUrl) });
    this.#watchFrames = this.#frames;
    this.#watchSince = Date.now();
    this.#heartbeatTimer = setInterval(() => {
      if (this.#send({ action: "heartbeat" })) this.#heartbeatsSent++;
    }, this.#heartbeatMs);
    const every = Math.min(5_000, Math.max(20, Math.floor(this.#watchdogMs / 5)));
    this.#watchdogTimer = setInterval(this.#watchdog, every);
    const specs = this.#subscriptions.reconnected();
    if (specs.length > 0) this.#sendSubscribe(specs);
    this.#opened.resolve();
  }

  #watchdog = (): void => {
    const ws = this.#ws;
    if (!ws || this.#state !== "open") return;
    const now = Date.now();
    if (this.#frames !== this.#watchFrames) {
      this.#watchFrames = this.#frames;
      this.#watchSince = now;
      return;
    }
    if (now - this.#watchSince < this.#watchdogMs) return;
    this.#logger.warn(
      `No data from Twelve Data for ${
        now - this.#watchSince
      } ms, not even a heartbeat reply: reconnecting`,
    );
    this.#notify({ type: "stalled", atMs: now, silentMs: now - this.#watchSince });
    this.#abandon(ws, 4000, "watchdog");
    this.#down(ws, true, 4000, "watchdog", true);
  };

  /** Detaches a socket and closes it in the background; `close()` waits for it. */
  #abandon(ws: WebSocket, code?: number, reason?: string): void {
    ws.onopen = null;
    ws.onmessage = null;
    ws.onerror = null;
    if (ws.readyState === WebSocket.CLOSED) {
      ws.onclose = null;
      return;
    }
    let done!: () => void;
    const gone = new Promise<void>((resolve) => done = resolve);
    const finish = () => {
      clearTimeout(timer);
      this.#zombies.delete(gone);
      done();
    };
    // Bounded: a half-dead peer may never complete the closing handshake.
    const timer = setTimeout(finish, 2_000);
    ws.onclose = finish;
    this.#zombies.add(gone);
    try {
      if (ws.readyState === WebSocket.CONNECTING) ws.close();
      else ws.close(code ?? 1000, reason);
    } catch {
      finish();
    }
  }

  #down(ws: WebSocket, opened: boolean, code: number, reason: string, stalled = false): void {
    if (ws !== this.#ws) return;
    this.#ws = undefined;
    this.#setLive(false);
    clearInterval(this.#heartbeatTimer);
    clearInterval(this.#watchdogTimer);
    this.#heartbeatTimer = this.#watchdogTimer = undefined;
    if (this.#state === "closing") {
      this.#closeFence?.resolve();
      return;
    }
    if (this.#state === "closed" || this.#state === "failed") return;
    this.#state = "waiting";
    if (opened) {
      if (!stalled) this.#notify({ type: "dropped", atMs: Date.now(), code, reason });
      this.#logger.warn("Twelve Data connection lost", { code, reason: redact(reason) });
      this.#scheduleReconnect();
      return;
    }
    this.#failures++;
    const refused = this.#keyRefusedSince !== undefined;
    // While the key is refused, the key check's line is the one line of each attempt.
    if (!refused) {
      this.#logger.warn("Cannot connect to Twelve Data", {
        url: redactUrl(this.#wsUrl),
        error: redact(reason),
        failures: this.#failures,
      });
    }
    // A browser-style WebSocket cannot see the HTTP 200 + JSON error of a bad key:
    // ask the REST API whether the key is the problem.
    if (refused || !this.#everOpened || this.#failures % 5 === 1) {
      this.#keyCheck = this.#checkKey();
    } else {
      this.#scheduleReconnect();
    }
  }

  async #checkKey(): Promise<void> {
    try {
      const ok = await checkApiKey(this.#rest);
      if (this.#state !== "waiting") return;
      if (ok) {
        this.#keyRefusedSince = undefined;
        this.#authBackoff.reset();
        this.#logger.info("The API key is valid: retrying the WebSocket");
      } else this.#logger.warn("Cannot reach the Twelve Data REST API either: retrying");
      this.#scheduleReconnect();
    } catch (error) {
      if (error instanceof AuthError && this.#everOpened && this.#state === "waiting") {
        this.#keyRefused(error);
      } else {
        this.#fail(error as Error);
      }
    } finally {
      this.#keyCheck = undefined;
    }
  }

  /**
   * The key was refused after it had worked: not fatal for an unattended ingester (billing
   * blips happen), so wait long and try again, one log line per attempt.
   */
  #keyRefused(error: AuthError): void {
    const now = Date.now();
    this.#keyRefusedSince ??= now;
    const wait = this.#authBackoff.next();
    const since = Math.round((now - this.#keyRefusedSince) / 1000);
    const after = wait < 1000 ? `${wait} ms` : `${Math.round(wait / 1000)} s`;
    this.#logger.warn(
      `Twelve Data refuses the API key, which worked before: retrying in ${after}`,
      { attempt: this.#authBackoff.attempt, refusedForS: since, error: error.message },
    );
    this.#reconnectTimer = setTimeout(() => this.#connect(), wait);
  }

  #fail(error: Error): void {
    if (this.#state === "closing" || this.#state === "closed" || this.#state === "failed") return;
    this.#state = "failed";
    this.#fatal = error;
    this.#stopTimers();
    if (this.#ws) this.#abandon(this.#ws);
    this.#ws = undefined;
    this.#opened.reject(this.#fatal);
    this.#closed.reject(this.#fatal);
    this.#wakeUp();
  }

  #scheduleReconnect(): void {
    const wait = this.#backoff.next();
    this.#logger.info(`Reconnecting to Twelve Data in ${wait} ms`, {
      attempt: this.#backoff.attempt,
    });
    this.#reconnectTimer = setTimeout(() => this.#connect(), wait);
  }

  #send(message: unknown): boolean {
    const ws = this.#ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    try {
      ws.send(JSON.stringify(message));
      return true;
    } catch (error) {
      this.#logger.warn("Cannot send to Twelve Data", { error: (error as Error).message });
      return false;
    }
  }

  #sendSubscribe(specs: SymbolSpec[]): void {
    if (this.#send({ action: "subscribe", params: { symbols: symbolsParam(specs) } })) {
      this.#subscriptions.sent(specs);
    }
  }

  #frame(data: unknown): void {
    this.#frames++;
    if (typeof data !== "string") {
      this.#countMalformed("binary frame");
      this.#logger.limited("malformed", "warn", "Ignored a binary frame from Twelve Data");
      return;
    }
    const event = parseFrame(data);
    switch (event.event) {
      case "price":
        this.#ticks++;
        this.#lastTick.set(event.symbol, event.timeMs);
        if (!this.#live) this.#setLive(true);
        break;
      case "malformed":
        this.#countMalformed(event.reason);
        this.#logger.limited("malformed", "warn", "Ignored a malformed frame from Twelve Data", {
          reason: event.detail === undefined ? event.reason : `${event.reason}: ${event.detail}`,
          frame: data.length > 200 ? data.slice(0, 200) + "..." : data,
        });
        return;
      case "unknown":
        this.#unknown++;
        this.#logger.limited("unknown", "info", "Received an unknown event from Twelve Data", {
          event: event.name,
        });
        break;
      case "subscribe-status":
        this.#subscribeStatus(event);
        break;
      case "heartbeat":
        this.#heartbeats++;
        if (this.#closeFence && this.#heartbeats >= this.#closeFence.heartbeats) {
          this.#closeFence.resolve();
        }
        break;
      case "reset-status":
        this.#closeFence?.resolve();
        break;
    }
    this.#emit(event);
  }

  #countMalformed(reason: string): void {
    this.#malformed++;
    this.#malformedBy.set(reason, (this.#malformedBy.get(reason) ?? 0) + 1);
  }

  #subscribeStatus(event: SubscribeStatusEvent): void {
    const refused = this.#subscriptions.answer(event);
    if (refused.length > 0) {
      this.#logger.warn(refusalLine(refused));
      const atMs = Date.now();
      for (const [symbol, reason] of refused) {
        this.#notify({ type: "refused", atMs, symbol, reason });
      }
    }
    if (event.success.length > 0) {
      this.#setLive(true);
      this.#logger.info(`Subscribed to ${event.success.length} symbol(s)`, {
        symbols: event.success.slice(0, 20).map((item) => item.symbol).join(","),
      });
    }
  }

  /** Live: the connection is open with at least one symbol confirmed or ticking. */
  #setLive(live: boolean): void {
    this.#live = live && this.#state === "open";
    if (this.#live) this.#notLiveSince = undefined;
    else this.#notLiveSince ??= Date.now();
  }

  #notify(event: ConnectionEvent): void {
    try {
      this.#onConnection?.(event);
    } catch (error) {
      this.#logger.limited("onConnection", "error", "The connection observer failed", {
        error: (error as Error)?.message ?? String(error),
      });
    }
  }

  #emit(event: TwelveDataEvent): void {
    if (this.#onEvent) {
      try {
        this.#onEvent(event);
      } catch (error) {
        this.#logger.limited("onEvent", "error", "The event handler failed", {
          error: (error as Error)?.message ?? String(error),
        });
      }
    }
    const queue = this.#queue;
    if (queue) {
      queue.push(event);
      if (queue.length === this.#queueWarnAt) {
        this.#logger.limited(
          "queue",
          "warn",
          `${queue.length} events wait in the client's queue: the consumer is slower than the feed`,
        );
      }
      this.#wakeUp();
    }
  }

  #wakeUp(): void {
    const wake = this.#wake;
    if (wake) {
      this.#wake = undefined;
      wake();
    }
  }
}
