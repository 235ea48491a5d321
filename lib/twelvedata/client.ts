import type { Backoff } from "../backoff.ts";
import { type Logger, silentLogger } from "../log.ts";
import { redact, redactUrl } from "../redact.ts";
import type { TimerId, Timers } from "../timers.ts";
import {
  type ClientOptions,
  clientSettings,
  type ClientState,
  type ClientStats,
  type ConnectionEvent,
} from "./client_options.ts";
import { AuthError } from "./errors.ts";
import type { SubscribeStatusEvent, TwelveDataEvent } from "./events.ts";
import { FrameReader } from "./frame_reader.ts";
import { Keepalive } from "./keepalive.ts";
import { refusalLine } from "./refusals.ts";
import { closeSocket, openSocket } from "./socket.ts";
import { Subscriptions } from "./subscriptions.ts";
import { checkApiKey, TwelveDataRest } from "./rest.ts";
import { normalizeSymbols, type SymbolsInput, symbolsParam, type SymbolSpec } from "./symbols.ts";
import { errorText } from "../text.ts";

/** `Promise.withResolvers`, its rejection handled: a failure nobody awaits must not crash. */
function settled<T>(): PromiseWithResolvers<T> {
  const resolvers = Promise.withResolvers<T>();
  resolvers.promise.catch(() => {});
  return resolvers;
}

/**
 * A resilient client for Twelve Data's real-time WebSocket: heartbeats, a no-data
 * watchdog, reconnects with capped exponential backoff and jitter, resubscription
 * (minus refused symbols), a fatal `AuthError` for a bad key, and a graceful close.
 *
 * Events go to the `onEvent` option, synchronously (no per-event allocation beyond the
 * parsed frame); connection changes to `onConnection`. Every wait runs on `timers`.
 */
export class TwelveDataClient {
  #apiKey: string;
  #wsUrl: URL;
  #auth: "header" | "query";
  #rest: TwelveDataRest;
  #logger: Logger;
  #onEvent: ((event: TwelveDataEvent) => void) | undefined;
  #onConnection: ((event: ConnectionEvent) => void) | undefined;
  #backoff: Backoff;
  #authBackoff: Backoff;
  #connectTimeoutMs: number;
  #closeTimeoutMs: number;
  #timers: Timers;
  #keepalive: Keepalive;

  #state: ClientState = "idle";
  #ws: WebSocket | undefined;
  #everOpened = false;
  #failures = 0;
  #keyRefusedSince: number | undefined;
  #reconnectTimer: TimerId | undefined;
  #keyCheck: Promise<void> | undefined;
  #zombies = new Set<Promise<void>>();

  #subscriptions = new Subscriptions();
  #reader: FrameReader;
  #heartbeatsSent = 0;
  #connectAttempts = 0;
  #reconnects = 0;

  #closeFence: { heartbeats: number; resolve: () => void } | undefined;
  #opened = settled<void>();
  #closed = settled<void>();
  #closing: Promise<void> | undefined;

  constructor(options: ClientOptions) {
    const settings = clientSettings(options);
    this.#apiKey = settings.apiKey;
    this.#wsUrl = settings.wsUrl;
    this.#auth = settings.auth;
    this.#rest = new TwelveDataRest({ apiKey: settings.apiKey, apiUrl: options.apiUrl });
    this.#logger = options.logger ?? silentLogger;
    this.#onEvent = options.onEvent;
    this.#onConnection = options.onConnection;
    this.#backoff = settings.backoff;
    this.#authBackoff = settings.authBackoff;
    this.#connectTimeoutMs = settings.connectTimeoutMs;
    this.#closeTimeoutMs = settings.closeTimeoutMs;
    this.#timers = settings.timers;
    this.#reader = new FrameReader({ logger: this.#logger, timers: this.#timers });
    this.#keepalive = new Keepalive({
      heartbeatMs: settings.heartbeatMs,
      watchdogMs: settings.watchdogMs,
      timers: this.#timers,
      frames: () => this.#reader.frames,
      sendHeartbeat: () => this.#sendHeartbeat(),
      onSilence: (silentMs) => this.#stalled(silentMs),
    });
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
      ...this.#reader.counts(),
      connectAttempts: this.#connectAttempts,
      reconnects: this.#reconnects,
      subscribed: this.#subscriptions.wanted,
      refused: this.#subscriptions.refused,
      keyRefusedSince: this.#keyRefusedSince,
    };
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
      const fence = Promise.withResolvers<void>();
      this.#send({ action: "reset" });
      this.#sendHeartbeat();
      this.#closeFence = { heartbeats: this.#heartbeatsSent, resolve: () => fence.resolve() };
      const timeout = this.#timers.setTimeout(() => fence.resolve(), this.#closeTimeoutMs);
      await fence.promise;
      this.#timers.clearTimeout(timeout);
      this.#closeFence = undefined;
    }
    if (ws) this.#abandon(ws, 1000, "client closing");
    this.#ws = undefined;
    await Promise.all([...this.#zombies]);
    await this.#keyCheck;
    if (!failed) {
      this.#state = "closed";
      this.#closed.resolve();
      this.#logger.info("Closed the Twelve Data connection", { ticks: this.#reader.ticks });
    }
    this.#opened.resolve();
  }

  #stopTimers(): void {
    this.#timers.clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = undefined;
    this.#keepalive.stop();
  }

  #connect(): void {
    this.#reconnectTimer = undefined;
    if (this.#state === "closing" || this.#state === "closed" || this.#state === "failed") return;
    this.#state = "connecting";
    this.#connectAttempts++;
    const { ws, url } = openSocket(this.#wsUrl, this.#apiKey, this.#auth);
    this.#logger.debug("Connecting to Twelve Data", { url: redactUrl(url) });
    this.#ws = ws;
    let opened = false;
    let fresh = true;
    let lastError = "";
    const connectTimer = this.#timers.setTimeout(() => {
      lastError = `no answer within ${this.#connectTimeoutMs} ms`;
      this.#abandon(ws);
      this.#down(ws, false, 1006, lastError);
    }, this.#connectTimeoutMs);
    ws.onopen = () => {
      this.#timers.clearTimeout(connectTimer);
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
      this.#timers.clearTimeout(connectTimer);
      this.#down(ws, opened, event.code, event.reason || lastError);
    };
  }

  #open(ws: WebSocket): void {
    if (ws !== this.#ws) return;
    this.#state = "open";
    this.#failures = 0;
    // Replies to heartbeats a dropped connection never answered will not come: count afresh.
    this.#heartbeatsSent = this.#reader.heartbeats;
    const now = this.#timers.now();
    this.#notify({ type: "open", atMs: now, reconnect: this.#everOpened });
    if (this.#everOpened) this.#reconnects++;
    this.#everOpened = true;
    if (this.#keyRefusedSince !== undefined) {
      const seconds = Math.round((now - this.#keyRefusedSince) / 1000);
      this.#logger.info(`Twelve Data accepts the API key again, after ${seconds} s of refusals`);
      this.#keyRefusedSince = undefined;
      this.#authBackoff.reset();
    }
    this.#logger.info("Connected to Twelve Data", { url: redactUrl(this.#wsUrl) });
    this.#keepalive.start();
    const specs = this.#subscriptions.reconnected();
    if (specs.length > 0) this.#sendSubscribe(specs);
    this.#opened.resolve();
  }

  /** The watchdog gave up on a silent connection: drop it and reconnect. */
  #stalled(silentMs: number): void {
    const ws = this.#ws;
    if (!ws || this.#state !== "open") return;
    this.#logger.warn(
      `No data from Twelve Data for ${silentMs} ms, not even a heartbeat reply: reconnecting`,
    );
    this.#notify({ type: "stalled", atMs: this.#timers.now(), silentMs });
    this.#abandon(ws, 4000, "watchdog");
    this.#down(ws, true, 4000, "watchdog", true);
  }

  #sendHeartbeat(): void {
    if (this.#send({ action: "heartbeat" })) this.#heartbeatsSent++;
  }

  /** Detaches a socket and closes it in the background; `close()` waits for it. */
  #abandon(ws: WebSocket, code?: number, reason?: string): void {
    const gone = closeSocket(ws, this.#timers, code, reason).then(() => {
      this.#zombies.delete(gone);
    });
    this.#zombies.add(gone);
  }

  #down(ws: WebSocket, opened: boolean, code: number, reason: string, stalled = false): void {
    if (ws !== this.#ws) return;
    this.#ws = undefined;
    this.#reader.setLive(false);
    this.#keepalive.stop();
    if (this.#state === "closing") {
      this.#closeFence?.resolve();
      return;
    }
    if (this.#state === "closed" || this.#state === "failed") return;
    this.#state = "waiting";
    if (opened) {
      if (!stalled) this.#notify({ type: "dropped", atMs: this.#timers.now(), code, reason });
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
    const now = this.#timers.now();
    this.#keyRefusedSince ??= now;
    const wait = this.#authBackoff.next();
    const since = Math.round((now - this.#keyRefusedSince) / 1000);
    const after = wait < 1000 ? `${wait} ms` : `${Math.round(wait / 1000)} s`;
    this.#logger.warn(
      `Twelve Data refuses the API key, which worked before: retrying in ${after}`,
      { attempt: this.#authBackoff.attempt, refusedForS: since, error: error.message },
    );
    this.#reconnectTimer = this.#timers.setTimeout(() => this.#connect(), wait);
  }

  #fail(error: Error): void {
    if (this.#state === "closing" || this.#state === "closed" || this.#state === "failed") return;
    this.#state = "failed";
    this.#stopTimers();
    if (this.#ws) this.#abandon(this.#ws);
    this.#ws = undefined;
    this.#opened.reject(error);
    this.#closed.reject(error);
  }

  #scheduleReconnect(): void {
    const wait = this.#backoff.next();
    this.#logger.info(`Reconnecting to Twelve Data in ${wait} ms`, {
      attempt: this.#backoff.attempt,
    });
    this.#reconnectTimer = this.#timers.setTimeout(() => this.#connect(), wait);
  }

  #send(message: unknown): boolean {
    const ws = this.#ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    try {
      ws.send(JSON.stringify(message));
      return true;
    } catch (error) {
      this.#logger.warn("Cannot send to Twelve Data", { error: errorText(error) });
      return false;
    }
  }

  #sendSubscribe(specs: SymbolSpec[]): void {
    if (this.#send({ action: "subscribe", params: { symbols: symbolsParam(specs) } })) {
      this.#subscriptions.sent(specs);
    }
  }

  #frame(data: unknown): void {
    const event = this.#reader.read(data, this.#state === "open");
    if (!event) return;
    switch (event.event) {
      case "subscribe-status":
        this.#subscribeStatus(event);
        break;
      case "heartbeat":
        if (this.#closeFence && this.#reader.heartbeats >= this.#closeFence.heartbeats) {
          this.#closeFence.resolve();
        }
        break;
      case "reset-status":
        this.#closeFence?.resolve();
        break;
    }
    this.#emit(event);
  }

  #subscribeStatus(event: SubscribeStatusEvent): void {
    const refused = this.#subscriptions.answer(event);
    if (refused.length > 0) {
      this.#logger.warn(refusalLine(refused));
      const atMs = this.#timers.now();
      for (const [symbol, reason] of refused) {
        this.#notify({ type: "refused", atMs, symbol, reason });
      }
    }
    if (event.success.length > 0) {
      this.#reader.setLive(this.#state === "open");
      this.#logger.info(`Subscribed to ${event.success.length} symbol(s)`, {
        symbols: event.success.slice(0, 20).map((item) => item.symbol).join(","),
      });
    }
  }

  #notify(event: ConnectionEvent): void {
    try {
      this.#onConnection?.(event);
    } catch (error) {
      this.#logger.limited("onConnection", "error", "The connection observer failed", {
        error: errorText(error),
      });
    }
  }

  #emit(event: TwelveDataEvent): void {
    if (this.#onEvent) {
      try {
        this.#onEvent(event);
      } catch (error) {
        this.#logger.limited("onEvent", "error", "The event handler failed", {
          error: errorText(error),
        });
      }
    }
  }
}
