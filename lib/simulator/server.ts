import { z } from "zod";
import { type Logger, silentLogger } from "../log.ts";
import { CATALOG, generatedInstruments, type Instrument, instrumentFor } from "./catalog.ts";
import { Market, type Quote } from "./market.ts";
import { BAD_KEY_MESSAGE, type CreditLimits, errorResponse, SimulatorRest } from "./rest.ts";

/** Options of `startSimulator`. */
export interface SimulatorOptions {
  /** 0 (default) picks a free port. */
  port?: number;
  /** Default 127.0.0.1. */
  hostname?: string;
  /** The only key accepted (default "demo"). */
  apiKey?: string;
  /**
   * Price events per second of the simulator's clock over every symbol subscribed so far
   * (the market goes on while nobody listens), or "max": as fast as the open sockets take
   * them, only for the symbols subscribed now (default 10).
   */
  rate?: number | "max";
  /** PRNG seed: the same seed gives the same price paths (default 1). */
  seed?: number;
  /** Symbols known beyond the built-in catalog (class guessed from the name). */
  symbols?: readonly string[];
  /** Also know SYM001/USD ... SYMnnn/USD, crypto-like, for benchmarks. */
  generatedSymbols?: number;
  /** Subscribe-status variants Twelve Data has been seen to send. */
  subscribeStatus?: {
    /** `null` instead of `[]` for an empty success or fails list. */
    nullArrays?: boolean;
    /** Status "warning" when some symbols fail, "error" when all fail (default: always "ok"). */
    graded?: boolean;
    /** When every symbol fails: `{"status":"error","messages":[...]}` without lists. */
    messagesVariant?: boolean;
  };
  /** Known symbols refused with "not authorized" (a plan restriction). */
  unauthorized?: readonly string[];
  /** REST credits per minute before 429 (default unlimited). */
  restLimitPerMinute?: number;
  /** REST credits per UTC day before 429 (default unlimited). */
  restLimitPerDay?: number;
  /** Send REST errors with the matching HTTP status instead of 200 (default false). */
  httpErrorStatus?: boolean;
  /** Start refusing every key. */
  refuseKey?: boolean;
  /** Stop sending price events once this many have been sent in total (for benchmarks). */
  maxTicks?: number;
  /** Keep every price frame sent, per connection and symbol, for `framesSent` (tests). */
  recordFrames?: boolean;
  /**
   * A manual clock starting at `startMs` (epoch ms): the market's time (tick timestamps,
   * bars, the REST credit minute) moves only with `advance(ms)`, so tests drive time and
   * can cut a disconnect exactly at minute boundaries. Default: the wall clock.
   */
  clock?: { startMs: number };
  logger?: Logger;
}

/** `GET /stats`: the ground truth for loss tests. */
export interface SimulatorStats {
  /** Well-formed price events handed to an open socket. */
  price_events_sent: number;
  by_symbol: Record<string, number>;
  /**
   * Price events per connection (by its id, in the order connections were opened; closed
   * ones included) and symbol: what each subscriber was sent.
   */
  by_connection: Record<string, Record<string, number>>;
  /** Open WebSocket connections. */
  connections: number;
  /** WebSocket handshakes attempted (refused ones included). */
  connection_attempts: number;
  /** WebSocket handshakes refused for the key. */
  auth_failures: number;
  /** Frames a client must reject (bad JSON, wrong types, impossible values). */
  malformed_sent: number;
  /** Valid but unusual price events (ms timestamps, SQL metacharacters in the symbol). */
  edge_sent: number;
  /** Frames sent with `sendRaw`. */
  raw_sent: number;
  messages_received: number;
  rest_requests: number;
  /** REST credits charged (a request answered with 429 costs nothing). */
  rest_credits_used: number;
  /** REST requests answered with code 429 (out of credits). */
  rest_rate_limited: number;
  /** Symbol subscriptions over all open connections. */
  subscriptions: number;
  /** Epoch ms of the first and the latest price event sent; null before the first. */
  first_price_sent_at: number | null;
  last_price_sent_at: number | null;
}

/** A running simulator. */
export interface SimulatorHandle {
  port: number;
  /** `ws://127.0.0.1:PORT/v1/quotes/price`. */
  wsUrl: string;
  /** `http://127.0.0.1:PORT`. */
  apiUrl: string;
  stats(): SimulatorStats;
  /** Closes every connection server-side, after the frames already sent have left. */
  drop(): Promise<void>;
  /** The current connections go silent for `ms`: no ticks, no answers, not even heartbeats. */
  stall(ms: number): void;
  /**
   * The price frames sent to connection `id` for `symbol`, in order (with `recordFrames`;
   * empty otherwise).
   */
  framesSent(id: number, symbol: string): string[];
  /** Sends `count` malformed frames to every open connection; returns frames sent. */
  malformed(count: number): number;
  /** Sends `count` valid but unusual price events to every open connection. */
  edgeCases(count: number): number;
  /** Sends one raw text frame to every open connection (unknown events, status variants). */
  sendRaw(text: string): number;
  /** Refuses (true) or accepts again (false) the key, for new connections and REST. */
  refuseKey(on: boolean): void;
  setRate(rate: number | "max"): void;
  /**
   * Sets the REST credit limits and how a 429 is sent
   * (`POST /control/credits?per_minute=8&per_day=800&as=http|body`).
   */
  setCredits(limits: CreditLimits): void;
  /** The simulator's time (epoch ms): the wall clock, or the manual clock. */
  now(): number;
  /**
   * Moves the manual clock forward by `ms` and generates, at once, the ticks the market
   * makes in that time (delivered to whoever is subscribed now). Throws without a manual clock.
   */
  advance(ms: number): void;
  close(): Promise<void>;
}

/** Where the simulator serves Twelve Data's WebSocket. */
export const WS_PATH = "/v1/quotes/price";

// Above this many bytes queued on a socket the simulator skips it (backpressure).
const HIGH_WATER = 1 << 20;

const SymbolsParam = z.union([
  z.string(),
  z.array(z.union([
    z.string(),
    z.looseObject({
      symbol: z.string(),
      exchange: z.string().optional(),
      mic_code: z.string().optional(),
      type: z.string().optional(),
    }),
  ])),
]);
const ClientMessage = z.discriminatedUnion("action", [
  z.object({ action: z.literal("subscribe"), params: z.object({ symbols: SymbolsParam }) }),
  z.object({ action: z.literal("unsubscribe"), params: z.object({ symbols: SymbolsParam }) }),
  z.object({ action: z.literal("reset") }),
  z.object({ action: z.literal("heartbeat") }),
]);

interface Connection {
  id: number;
  socket: WebSocket;
  subs: Set<Quote>;
  stalledUntil: number;
  open: boolean;
  /** Below the high-water mark and not stalled: refreshed before each batch of ticks. */
  writable: boolean;
  /** Price events sent to this connection, per quote. */
  sent: Map<Quote, number>;
  /** The frames themselves, per quote, with `recordFrames`. */
  frames: Map<Quote, string[]> | undefined;
}

function symbolNames(param: z.output<typeof SymbolsParam>): string[] {
  const items = typeof param === "string" ? param.split(",") : param;
  return items
    .map((item) => (typeof item === "string" ? item : item.symbol).trim())
    // "RY:TSX" picks a listing; the simulator knows one listing per symbol.
    .map((symbol) => symbol.includes(":") ? symbol.slice(0, symbol.indexOf(":")) : symbol)
    .filter((symbol) => symbol !== "");
}

/**
 * Starts an in-process Twelve Data simulator on 127.0.0.1: the real-time WebSocket at
 * `/v1/quotes/price`, REST (`/time_series`, `/quote`, `/cryptocurrencies`, `/api_usage`),
 * `GET /stats` and fault injection under `POST /control/...`.
 */
export function startSimulator(options: SimulatorOptions = {}): Promise<SimulatorHandle> {
  const logger = options.logger ?? silentLogger;
  const apiKey = options.apiKey ?? "demo";
  const seed = options.seed ?? 1;
  const variants = options.subscribeStatus ?? {};
  const unauthorized = new Set(options.unauthorized ?? []);
  const instruments: Instrument[] = [...CATALOG];
  for (const symbol of options.symbols ?? []) {
    if (!instruments.some((i) => i.symbol === symbol)) instruments.push(instrumentFor(symbol));
  }
  instruments.push(...generatedInstruments(options.generatedSymbols ?? 0));
  const market = new Market(instruments, seed);
  const manual = options.clock;
  let manualNow = manual?.startMs ?? 0;
  const now = manual ? () => manualNow : () => Date.now();
  const startedAt = now();
  // Quotes subscribed at least once: in rate mode the market keeps ticking them.
  const live: Quote[] = [];
  const liveSet = new Set<Quote>();

  let rate: number | "max" = options.rate ?? 10;
  let refusing = options.refuseKey ?? false;
  let nextId = 1;
  const connections = new Set<Connection>();
  // The connections opened (the latest 1000), for the per-connection counts of /stats.
  const opened: Connection[] = [];
  const OPENED_KEPT = 1000;
  const subscribers = new Map<Quote, Set<Connection>>();
  let active: Quote[] = [];
  let activeDirty = false;
  const stats = {
    price_events_sent: 0,
    connection_attempts: 0,
    auth_failures: 0,
    malformed_sent: 0,
    edge_sent: 0,
    raw_sent: 0,
    messages_received: 0,
    first_price_sent_at: null as number | null,
    last_price_sent_at: null as number | null,
  };
  const maxTicks = options.maxTicks ?? Infinity;
  if (!(maxTicks >= 0)) {
    throw new RangeError(`Cannot start the simulator: maxTicks must be >= 0, got ${maxTicks}`);
  }
  let closing = false;
  const rest = new SimulatorRest(market, {
    apiKey,
    seed,
    now,
    // The minute the simulator starts in is its own: earlier ones are synthetic history.
    historyEndMs: Math.floor(startedAt / 60_000) * 60_000,
    httpErrorStatus: options.httpErrorStatus ?? false,
    limits: { perMinute: options.restLimitPerMinute, perDay: options.restLimitPerDay },
    refusing: () => refusing,
  });

  // --- WebSocket -------------------------------------------------------------------

  function sendText(conn: Connection, text: string): boolean {
    if (!conn.open || conn.socket.readyState !== WebSocket.OPEN) return false;
    try {
      conn.socket.send(text);
      return true;
    } catch {
      return false;
    }
  }

  function activeQuotes(): Quote[] {
    if (activeDirty) {
      active = [...subscribers.entries()].filter(([, set]) => set.size > 0).map(([q]) => q);
      activeDirty = false;
    }
    return active;
  }

  function subscribe(conn: Connection, names: string[]): void {
    const success: Record<string, string>[] = [];
    const fails: Record<string, string>[] = [];
    for (const symbol of names) {
      const quote = market.quotes.get(symbol);
      if (!quote) {
        fails.push({
          symbol,
          message: `Symbol "${symbol}" is not found or is not available on your plan`,
        });
      } else if (unauthorized.has(symbol)) {
        fails.push({ symbol, message: `You are not authorized to access ${symbol} data.` });
      } else {
        const i = quote.instrument;
        success.push({
          symbol,
          exchange: i.exchange,
          mic_code: i.mic_code,
          country: i.country,
          type: i.type,
        });
        conn.subs.add(quote);
        if (!liveSet.has(quote)) {
          liveSet.add(quote);
          live.push(quote);
        }
        let set = subscribers.get(quote);
        if (!set) subscribers.set(quote, set = new Set());
        set.add(conn);
        activeDirty = true;
      }
    }
    let status = "ok";
    if (variants.graded && fails.length > 0) status = success.length === 0 ? "error" : "warning";
    if (variants.messagesVariant && success.length === 0 && fails.length > 0) {
      sendText(
        conn,
        JSON.stringify({
          event: "subscribe-status",
          status: "error",
          messages: fails.map((f) => f.message),
        }),
      );
      return;
    }
    const list = (items: unknown[]) => items.length === 0 && variants.nullArrays ? null : items;
    sendText(
      conn,
      JSON.stringify({
        event: "subscribe-status",
        status,
        success: list(success),
        fails: list(fails),
      }),
    );
  }

  function unsubscribeAll(conn: Connection, quotes: Iterable<Quote>): string[] {
    const removed: string[] = [];
    for (const quote of [...quotes]) {
      if (conn.subs.delete(quote)) removed.push(quote.instrument.symbol);
      subscribers.get(quote)?.delete(conn);
    }
    activeDirty = true;
    return removed;
  }

  function onMessage(conn: Connection, data: unknown): void {
    stats.messages_received++;
    if (conn.stalledUntil > Date.now()) return;
    let message: z.output<typeof ClientMessage>;
    try {
      const parsed = ClientMessage.safeParse(JSON.parse(String(data)));
      if (!parsed.success) throw new Error(parsed.error.issues[0]?.message);
      message = parsed.data;
    } catch {
      sendText(
        conn,
        JSON.stringify({
          event: "message-processing",
          status: "error",
          messages: ["Invalid message format"],
        }),
      );
      return;
    }
    switch (message.action) {
      case "heartbeat":
        sendText(conn, '{"event":"heartbeat","status":"ok"}');
        break;
      case "subscribe":
        subscribe(conn, symbolNames(message.params.symbols));
        break;
      case "unsubscribe": {
        const names = new Set(symbolNames(message.params.symbols));
        const quotes = [...conn.subs].filter((q) => names.has(q.instrument.symbol));
        const removed = unsubscribeAll(conn, quotes);
        sendText(
          conn,
          JSON.stringify({
            event: "unsubscribe-status",
            status: "ok",
            success: removed.map((symbol) => ({ symbol })),
            fails: [...names].filter((n) => !removed.includes(n)).map((symbol) => ({ symbol })),
          }),
        );
        break;
      }
      case "reset":
        unsubscribeAll(conn, conn.subs);
        sendText(conn, '{"event":"reset-status","status":"ok"}');
        break;
    }
  }

  function forget(conn: Connection): void {
    conn.open = false;
    if (!connections.delete(conn)) return;
    unsubscribeAll(conn, conn.subs);
    logger.debug("Simulator connection closed", { id: conn.id });
  }

  function upgrade(request: Request, url: URL): Response {
    stats.connection_attempts++;
    const key = request.headers.get("x-td-apikey") ?? url.searchParams.get("apikey");
    if (refusing || key !== apiKey) {
      stats.auth_failures++;
      // Like Twelve Data: HTTP 200 and a JSON error body, no upgrade.
      return Response.json({ code: 401, message: BAD_KEY_MESSAGE, status: "error" });
    }
    if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      return errorResponse(400, "Expected a WebSocket upgrade", {
        httpStatus: options.httpErrorStatus,
      });
    }
    const { socket, response } = Deno.upgradeWebSocket(request);
    const conn: Connection = {
      id: nextId++,
      socket,
      subs: new Set(),
      stalledUntil: 0,
      open: false,
      writable: false,
      sent: new Map(),
      frames: options.recordFrames ? new Map() : undefined,
    };
    socket.onopen = () => {
      if (closing) return socket.close(1001, "shutting down");
      conn.open = true;
      connections.add(conn);
      opened.push(conn);
      if (opened.length > OPENED_KEPT) opened.shift();
      logger.debug("Simulator connection opened", { id: conn.id });
    };
    socket.onmessage = (event) => onMessage(conn, event.data);
    socket.onclose = () => forget(conn);
    socket.onerror = () => {};
    return response;
  }

  // --- ticks -------------------------------------------------------------------------

  function deliver(quote: Quote, frame: string): number {
    const set = subscribers.get(quote);
    if (!set) return 0;
    let delivered = 0;
    for (const conn of set) {
      if (stats.price_events_sent + delivered >= maxTicks) break;
      if (conn.writable && sendText(conn, frame)) {
        delivered++;
        conn.sent.set(quote, (conn.sent.get(quote) ?? 0) + 1);
        if (conn.frames) {
          let frames = conn.frames.get(quote);
          if (!frames) conn.frames.set(quote, frames = []);
          frames.push(frame);
        }
      }
    }
    if (delivered > 0) {
      quote.sent += delivered;
      stats.price_events_sent += delivered;
      const now = Date.now();
      stats.first_price_sent_at ??= now;
      stats.last_price_sent_at = now;
    }
    return delivered;
  }

  // Reading bufferedAmount is a call into the runtime: once per batch, not per frame.
  function refreshWritable(now: number): boolean {
    let any = false;
    for (const conn of connections) {
      conn.writable = conn.open && conn.stalledUntil <= now &&
        conn.socket.bufferedAmount <= HIGH_WATER;
      if (conn.writable && conn.subs.size > 0) any = true;
    }
    return any;
  }

  let carry = 0;
  let lastPump = now();
  let pumpTimer: ReturnType<typeof setTimeout> | undefined;

  function pump(): void {
    pumpTimer = undefined;
    // Once maxTicks are sent there is nothing more to pump.
    if (closing || stats.price_events_sent >= maxTicks) return;
    if (rate === "max") {
      // As fast as the sockets take them: many frames per turn, until every
      // subscribed socket has a megabyte queued or the turn has run ~10 ms.
      const t = now();
      const quotes = activeQuotes();
      let sent = 0;
      if (quotes.length > 0) {
        const until = performance.now() + 10;
        while (stats.price_events_sent < maxTicks && refreshWritable(Date.now())) {
          for (let i = 0; i < 512; i++) {
            const quote = quotes[Math.floor(market.random() * quotes.length)]!;
            sent += deliver(quote, market.tick(quote, t));
          }
          if (performance.now() > until) break;
        }
      }
      lastPump = t;
      pumpTimer = setTimeout(pump, sent > 0 ? 0 : 2);
      return;
    }
    generate(now());
    pumpTimer = setTimeout(pump, Math.min(100, Math.max(5, 1000 / rate)));
  }

  /**
   * Rate mode: the ticks the market makes from the previous pump to `until`, stamped across
   * that span (`[previous, until)`), for every symbol subscribed so far. Those of symbols
   * nobody listens to now are made all the same (and recorded on the tape), just not sent.
   */
  function generate(until: number): void {
    if (rate === "max") return;
    const from = lastPump;
    const elapsed = until - from;
    if (elapsed <= 0) return;
    lastPump = until;
    const due = carry + rate * elapsed / 1000;
    const count = Math.floor(due);
    carry = due - count;
    if (live.length === 0) {
      carry = 0;
      return;
    }
    if (count > 0) refreshWritable(Date.now());
    for (let i = 0; i < count && stats.price_events_sent < maxTicks; i++) {
      const quote = live[Math.floor(market.random() * live.length)]!;
      deliver(quote, market.tick(quote, from + Math.floor(i * elapsed / count)));
    }
  }

  // --- faults ------------------------------------------------------------------------

  function broadcast(frames: string[]): number {
    let sent = 0;
    const now = Date.now();
    for (const conn of connections) {
      if (conn.stalledUntil > now) continue;
      for (const frame of frames) if (sendText(conn, frame)) sent++;
    }
    return sent;
  }

  function malformedFrames(count: number): string[] {
    const t = Math.floor(now() / 1000);
    const kinds = [
      `{"event":"price","symbol":"BTC/USD","timestamp":${t},"price":643`,
      `this is not JSON`,
      `{"event":"price","symbol":"BTC/USD","timestamp":${t}}`,
      `{"event":"price","timestamp":${t},"price":64000.5}`,
      `{"event":"price","symbol":"BTC/USD","timestamp":${t},"price":"64000.5"}`,
      `{"event":"price","symbol":"BTC/USD","timestamp":${t},"price":null}`,
      `{"event":"price","symbol":"BTC/USD","timestamp":${t},"price":1e400}`,
      `{"event":"price","symbol":"BTC/USD","timestamp":${t},"price":-42.5}`,
      `{"event":"price","symbol":"BTC/USD","timestamp":${t},"price":1e20}`,
      `{"event":"price","symbol":"BTC/USD","timestamp":${t + 10 * 365 * 86400},"price":64000.5}`,
      `{"event":"price","symbol":42,"timestamp":${t},"price":64000.5}`,
      `{"event":"price","symbol":"BTC/USD","timestamp":"${t}","price":64000.5}`,
      `[1,2,3]`,
      `{"status":"ok"}`,
    ];
    return Array.from({ length: count }, (_, i) => kinds[i % kinds.length]!);
  }

  function edgeFrames(count: number): string[] {
    const ms = now();
    const seconds = Math.floor(ms / 1000);
    const kinds = [
      `{"event":"price","symbol":"BTC/USD","timestamp":${ms},"price":64000.5}`,
      `{"event":"price","symbol":"'; DROP TABLE ticks;--","timestamp":${seconds},"price":1.5}`,
      `{"event":"price","symbol":"AAPL\\"), ('x","timestamp":${seconds},"price":2}`,
      `{"event":"price","symbol":"ÆØÅ/€","timestamp":${seconds},"price":3}`,
    ];
    return Array.from({ length: count }, (_, i) => kinds[i % kinds.length]!);
  }

  async function drop(): Promise<void> {
    const victims = [...connections];
    for (const conn of victims) {
      // Stop sending first, let the queued frames leave, then close: nothing counted is lost.
      conn.open = false;
      unsubscribeAll(conn, conn.subs);
    }
    const deadline = Date.now() + 2000;
    while (
      victims.some((c) => c.socket.readyState === WebSocket.OPEN && c.socket.bufferedAmount > 0) &&
      Date.now() < deadline
    ) {
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    for (const conn of victims) {
      try {
        conn.socket.close(1001, "dropped by the simulator");
      } catch {
        // already closed
      }
      connections.delete(conn);
    }
    logger.info("Simulator dropped every connection", { connections: victims.length });
  }

  // --- control -------------------------------------------------------------------------

  function snapshot(): SimulatorStats {
    const bySymbol: Record<string, number> = {};
    for (const [symbol, quote] of market.quotes) if (quote.sent > 0) bySymbol[symbol] = quote.sent;
    const byConnection: Record<string, Record<string, number>> = {};
    for (const conn of opened) {
      const counts: Record<string, number> = {};
      for (const [quote, n] of conn.sent) counts[quote.instrument.symbol] = n;
      byConnection[conn.id] = counts;
    }
    let subscriptions = 0;
    for (const conn of connections) subscriptions += conn.subs.size;
    return {
      ...stats,
      ...rest.stats(),
      by_symbol: bySymbol,
      by_connection: byConnection,
      connections: connections.size,
      subscriptions,
    };
  }

  function stall(ms: number): void {
    if (!(ms >= 0)) throw new RangeError(`Cannot stall for ${ms} ms: expected a duration >= 0`);
    const until = Date.now() + ms;
    for (const conn of connections) conn.stalledUntil = until;
    logger.info(`Simulator stalls ${connections.size} connection(s) for ${ms} ms`);
  }

  function setRate(value: number | "max"): void {
    if (value !== "max" && !(value > 0 && Number.isFinite(value))) {
      throw new RangeError(`Cannot set the rate to ${value}: expected a positive number or "max"`);
    }
    rate = value;
    carry = 0;
    lastPump = now();
  }

  function setCredits(limits: CreditLimits): void {
    rest.setLimits(limits);
    logger.info("Simulator credit limits", { ...limits });
  }

  function advance(ms: number): void {
    if (!manual) {
      throw new TypeError("Cannot advance the clock: the simulator runs on the wall clock");
    }
    if (!(ms >= 0 && Number.isFinite(ms))) {
      throw new RangeError(`Cannot advance the clock by ${ms} ms: expected a duration >= 0`);
    }
    manualNow += ms;
    generate(manualNow);
  }

  async function control(request: Request, url: URL): Promise<Response> {
    const fail = (code: number, message: string) =>
      errorResponse(code, message, { httpStatus: options.httpErrorStatus });
    if (request.method !== "POST") return fail(405, "Use POST for /control");
    const params = url.searchParams;
    const count = () => Number(params.get("count") ?? "1");
    try {
      switch (url.pathname) {
        case "/control/drop":
          await drop();
          return Response.json({ ok: true });
        case "/control/stall":
          stall(Number(params.get("ms") ?? "5000"));
          return Response.json({ ok: true });
        case "/control/malformed":
          return Response.json({ ok: true, sent: handle.malformed(count()) });
        case "/control/edge":
          return Response.json({ ok: true, sent: handle.edgeCases(count()) });
        case "/control/refuse-key":
          refusing = ["1", "true", "on"].includes(params.get("on") ?? "1");
          return Response.json({ ok: true, refusing });
        case "/control/rate": {
          const value = params.get("value") ?? "";
          setRate(value === "max" ? "max" : Number(value));
          return Response.json({ ok: true, rate });
        }
        case "/control/credits": {
          // A limit given as "" or "off" is lifted; one not given stays as it is.
          const limit = (name: string, current: number | undefined) => {
            const text = params.get(name);
            if (text === null) return current;
            return text === "" || text === "off" ? undefined : Number(text);
          };
          const current = rest.limits;
          const as = params.get("as");
          if (as !== null && as !== "http" && as !== "body") {
            throw new RangeError(`Cannot send 429s as "${as}": expected http or body`);
          }
          setCredits({
            perMinute: limit("per_minute", current.perMinute),
            perDay: limit("per_day", current.perDay),
            httpStatus: as === null ? current.httpStatus : as === "http",
          });
          const limits = rest.limits;
          return Response.json({
            ok: true,
            per_minute: limits.perMinute ?? null,
            per_day: limits.perDay ?? null,
          });
        }
      }
    } catch (error) {
      return fail(400, (error as Error).message);
    }
    return fail(404, `${url.pathname} is not a control endpoint`);
  }

  async function handler(request: Request): Promise<Response> {
    const url = new URL(request.url);
    if (url.pathname === WS_PATH) return upgrade(request, url);
    if (url.pathname === "/stats") return Response.json(snapshot());
    if (url.pathname.startsWith("/control/")) return await control(request, url);
    return rest.handle(request, url);
  }

  const handle: SimulatorHandle = {
    port: 0,
    wsUrl: "",
    apiUrl: "",
    stats: snapshot,
    framesSent(id, symbol) {
      const conn = opened.find((c) => c.id === id);
      const quote = market.quotes.get(symbol);
      return (quote && conn?.frames?.get(quote)?.slice()) ?? [];
    },
    drop,
    stall,
    malformed(count) {
      const sent = broadcast(malformedFrames(count));
      stats.malformed_sent += sent;
      return sent;
    },
    edgeCases(count) {
      const sent = broadcast(edgeFrames(count));
      stats.edge_sent += sent;
      return sent;
    },
    sendRaw(text) {
      const sent = broadcast([text]);
      stats.raw_sent += sent;
      return sent;
    },
    refuseKey(on) {
      refusing = on;
    },
    setRate,
    setCredits,
    now,
    advance,
    close: async () => {
      if (closing) return;
      closing = true;
      clearTimeout(pumpTimer);
      const sockets = [...connections].map((conn) => conn.socket);
      const closed = sockets.map((socket) =>
        new Promise<void>((resolve) => {
          if (socket.readyState === WebSocket.CLOSED) return resolve();
          socket.addEventListener("close", () => resolve());
          try {
            socket.close(1001, "simulator shutting down");
          } catch {
            resolve();
          }
        })
      );
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        Promise.all(closed),
        new Promise((resolve) => timer = setTimeout(resolve, 1000)),
      ]);
      clearTimeout(timer);
      await server.shutdown();
    },
  };

  setRate(rate);
  const server = Deno.serve({
    port: options.port ?? 0,
    hostname: options.hostname ?? "127.0.0.1",
    onListen: () => {},
    onError: (error) => {
      logger.error("Simulator request failed", { error: (error as Error).message });
      return errorResponse(500, "Internal simulator error", {
        httpStatus: options.httpErrorStatus,
      });
    },
  }, handler);
  const port = server.addr.port;
  const host = options.hostname ?? "127.0.0.1";
  handle.port = port;
  handle.wsUrl = `ws://${host}:${port}${WS_PATH}`;
  handle.apiUrl = `http://${host}:${port}`;
  pumpTimer = setTimeout(pump, 0);
  return Promise.resolve(handle);
}
