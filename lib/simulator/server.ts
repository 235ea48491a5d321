import { z } from "zod";
import { type Logger, silentLogger } from "../log.ts";
import { CATALOG, generatedInstruments, type Instrument, instrumentFor } from "./catalog.ts";
import { barAt, INTERVAL_MS, Market, type Quote } from "./market.ts";

/** Options of `startSimulator`. */
export interface SimulatorOptions {
  /** 0 (default) picks a free port. */
  port?: number;
  /** Default 127.0.0.1. */
  hostname?: string;
  /** The only key accepted (default "demo"). */
  apiKey?: string;
  /** Price events per second over all subscribed symbols, or "max" (default 10). */
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
  /** Send REST errors with the matching HTTP status instead of 200 (default false). */
  httpErrorStatus?: boolean;
  /** Start refusing every key. */
  refuseKey?: boolean;
  /** Stop sending price events once this many have been sent in total (for benchmarks). */
  maxTicks?: number;
  /** Keep every price frame sent, per connection and symbol, for `framesSent` (tests). */
  recordFrames?: boolean;
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
  close(): Promise<void>;
}

/** Where the simulator serves Twelve Data's WebSocket. */
export const WS_PATH = "/v1/quotes/price";

const BAD_KEY_MESSAGE =
  "**apikey** parameter is incorrect or not specified. You can get your free API key instantly following this link: https://twelvedata.com/pricing";
// Above this many bytes queued on a socket the simulator skips it (backpressure).
const HIGH_WATER = 1 << 20;
const MAX_BARS = 5000;

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

function formatDateTime(ms: number, daily: boolean): string {
  const iso = new Date(ms).toISOString();
  return daily ? iso.slice(0, 10) : iso.slice(0, 19).replace("T", " ");
}

function parseDate(text: string): number {
  if (/^\d{4}-\d{2}-\d{2}$/.test(text)) return Date.parse(`${text}T00:00:00Z`);
  if (/^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2})?$/.test(text)) {
    return Date.parse(`${text.replace(" ", "T")}Z`);
  }
  return Date.parse(text);
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
    rest_requests: 0,
    first_price_sent_at: null as number | null,
    last_price_sent_at: null as number | null,
  };
  const maxTicks = options.maxTicks ?? Infinity;
  if (!(maxTicks >= 0)) {
    throw new RangeError(`Cannot start the simulator: maxTicks must be >= 0, got ${maxTicks}`);
  }
  let restWindow = { minute: 0, used: 0 };
  let closing = false;

  function keyOf(request: Request, url: URL, header: string): string | null {
    const value = request.headers.get(header);
    if (value) return header === "authorization" ? value.replace(/^apikey\s+/i, "") : value;
    return url.searchParams.get("apikey");
  }

  function errorResponse(code: number, message: string): Response {
    return Response.json({ code, message, status: "error" }, {
      status: options.httpErrorStatus ? code : 200,
    });
  }

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
    const key = keyOf(request, url, "x-td-apikey");
    if (refusing || key !== apiKey) {
      stats.auth_failures++;
      // Like Twelve Data: HTTP 200 and a JSON error body, no upgrade.
      return Response.json({ code: 401, message: BAD_KEY_MESSAGE, status: "error" });
    }
    if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      return errorResponse(400, "Expected a WebSocket upgrade");
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
  let lastPump = Date.now();
  let pumpTimer: ReturnType<typeof setTimeout> | undefined;

  function pump(): void {
    pumpTimer = undefined;
    // Once maxTicks are sent there is nothing more to pump.
    if (closing || stats.price_events_sent >= maxTicks) return;
    const now = Date.now();
    const quotes = activeQuotes();
    if (rate === "max") {
      // As fast as the sockets take them: many frames per turn, until every
      // subscribed socket has a megabyte queued or the turn has run ~10 ms.
      let sent = 0;
      if (quotes.length > 0) {
        const until = performance.now() + 10;
        while (stats.price_events_sent < maxTicks && refreshWritable(now)) {
          for (let i = 0; i < 512; i++) {
            const quote = quotes[Math.floor(market.random() * quotes.length)]!;
            sent += deliver(quote, market.tick(quote, now));
          }
          if (performance.now() > until) break;
        }
      }
      lastPump = now;
      pumpTimer = setTimeout(pump, sent > 0 ? 0 : 2);
      return;
    }
    const due = carry + rate * (now - lastPump) / 1000;
    lastPump = now;
    let count = Math.floor(due);
    carry = due - count;
    if (quotes.length === 0) {
      carry = 0;
      count = 0;
    }
    count = Math.min(count, Math.max(1, Math.ceil(rate)));
    if (count > 0) refreshWritable(now);
    for (let i = 0; i < count; i++) {
      const quote = quotes[Math.floor(market.random() * quotes.length)]!;
      deliver(quote, market.tick(quote, now));
    }
    pumpTimer = setTimeout(pump, Math.min(100, Math.max(5, 1000 / rate)));
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
    const t = Math.floor(Date.now() / 1000);
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
    const now = Date.now();
    const kinds = [
      `{"event":"price","symbol":"BTC/USD","timestamp":${now},"price":64000.5}`,
      `{"event":"price","symbol":"'; DROP TABLE ticks;--","timestamp":${
        Math.floor(now / 1000)
      },"price":1.5}`,
      `{"event":"price","symbol":"AAPL\\"), ('x","timestamp":${Math.floor(now / 1000)},"price":2}`,
      `{"event":"price","symbol":"ÆØÅ/€","timestamp":${Math.floor(now / 1000)},"price":3}`,
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

  // --- REST --------------------------------------------------------------------------

  function chargeCredit(): Response | undefined {
    if (options.restLimitPerMinute === undefined) return undefined;
    const minute = Math.floor(Date.now() / 60_000);
    if (restWindow.minute !== minute) restWindow = { minute, used: 0 };
    if (restWindow.used >= options.restLimitPerMinute) {
      return errorResponse(
        429,
        `You have run out of API credits for the current minute. ${restWindow.used} API credits were used, with the current limit being ${options.restLimitPerMinute}. Wait for the next minute.`,
      );
    }
    restWindow.used++;
    return undefined;
  }

  function timeSeries(params: URLSearchParams): Response {
    const symbol = params.get("symbol");
    if (!symbol) return errorResponse(400, "**symbol** parameter is missing or invalid.");
    const interval = params.get("interval") ?? "";
    const intervalMs = INTERVAL_MS[interval];
    if (intervalMs === undefined) {
      return errorResponse(
        400,
        `**interval** must be one of ${Object.keys(INTERVAL_MS).join(", ")} in the simulator`,
      );
    }
    const quote = market.quotes.get(symbol);
    if (!quote) {
      return errorResponse(
        404,
        `**symbol** ${symbol} not found. Please specify it correctly according to API Documentation.`,
      );
    }
    const timezone = params.get("timezone") ?? "Exchange";
    if (!["UTC", "Exchange", "Etc/UTC"].includes(timezone)) {
      return errorResponse(400, `**timezone** ${timezone}: the simulator only speaks UTC`);
    }
    const order = params.get("order")?.toLowerCase() ?? "desc";
    if (order !== "asc" && order !== "desc") {
      return errorResponse(400, "**order** must be asc or desc");
    }
    const outputText = params.get("outputsize");
    const outputsize = outputText === null ? undefined : Number(outputText);
    if (
      outputsize !== undefined &&
      !(Number.isInteger(outputsize) && outputsize >= 1 && outputsize <= MAX_BARS)
    ) {
      return errorResponse(400, "**outputsize** must be a whole number from 1 to 5000");
    }
    const startText = params.get("start_date");
    const endText = params.get("end_date");
    const start = startText === null ? undefined : parseDate(startText);
    const end = endText === null ? undefined : parseDate(endText);
    if (Number.isNaN(start) || Number.isNaN(end)) {
      return errorResponse(400, "**start_date** and **end_date** must be YYYY-MM-DD [HH:MM:SS]");
    }
    const now = Date.now();
    // Bars start on multiples of the interval (UTC); the newest one may still be forming.
    const lastStart = Math.floor(Math.min(end === undefined ? now : end - 1, now) / intervalMs) *
      intervalMs;
    const limit = start === undefined || end === undefined
      ? (outputsize ?? (start === undefined && end === undefined ? 30 : MAX_BARS))
      : MAX_BARS;
    const starts: number[] = [];
    for (let t = lastStart; starts.length < limit; t -= intervalMs) {
      if (start !== undefined && t < start) break;
      starts.push(t);
    }
    if (starts.length === 0) {
      return errorResponse(
        400,
        "No data is available on the specified dates. Try setting different start/end dates.",
      );
    }
    if (order === "asc") starts.reverse();
    const daily = intervalMs >= INTERVAL_MS["1day"]!;
    const values = starts.map((t) => {
      const bar = barAt(quote.instrument, seed, t, intervalMs);
      const value: Record<string, string> = {
        datetime: formatDateTime(t, daily),
        open: String(bar.open),
        high: String(bar.high),
        low: String(bar.low),
        close: String(bar.close),
      };
      if (bar.volume !== undefined) value.volume = String(bar.volume);
      return value;
    });
    const i = quote.instrument;
    const meta: Record<string, string> = { symbol, interval };
    if (i.currency) meta.currency = i.currency;
    if (i.currency_base) meta.currency_base = i.currency_base;
    if (i.currency_quote) meta.currency_quote = i.currency_quote;
    meta.exchange_timezone = "UTC";
    meta.exchange = i.exchange;
    if (i.mic_code) meta.mic_code = i.mic_code;
    meta.type = i.type;
    return Response.json({ meta, values, status: "ok" });
  }

  function quoteResponse(params: URLSearchParams): Response {
    const symbol = params.get("symbol");
    if (!symbol) return errorResponse(400, "**symbol** parameter is missing or invalid.");
    const quote = market.quotes.get(symbol);
    if (!quote) {
      return errorResponse(
        404,
        `**symbol** ${symbol} not found. Please specify it correctly according to API Documentation.`,
      );
    }
    const now = Date.now();
    const dayStart = Math.floor(now / 86_400_000) * 86_400_000;
    const day = barAt(quote.instrument, seed, dayStart, 86_400_000);
    const close = Number(quote.price.toPrecision(8));
    const i = quote.instrument;
    const body: Record<string, unknown> = {
      symbol,
      name: i.name,
      exchange: i.exchange,
      mic_code: i.mic_code,
      currency: i.currency ?? i.currency_quote ?? "",
      datetime: formatDateTime(dayStart, true),
      timestamp: Math.floor(now / 1000),
      open: String(day.open),
      high: String(Math.max(day.high, close)),
      low: String(Math.min(day.low, close)),
      close: String(close),
      previous_close: String(day.open),
      change: (close - day.open).toPrecision(6),
      percent_change: ((close - day.open) / day.open * 100).toFixed(5),
      is_market_open: true,
    };
    if (i.assetClass !== "forex") body.volume = String(quote.dayVolume);
    return Response.json(body);
  }

  function rest(request: Request, url: URL): Response {
    stats.rest_requests++;
    if (refusing || keyOf(request, url, "authorization") !== apiKey) {
      return errorResponse(401, BAD_KEY_MESSAGE);
    }
    if (url.pathname === "/api_usage") {
      return Response.json({
        timestamp: formatDateTime(Date.now(), false),
        current_usage: restWindow.minute === Math.floor(Date.now() / 60_000) ? restWindow.used : 0,
        plan_limit: options.restLimitPerMinute ?? 800,
        plan_category: "simulator",
      });
    }
    const limited = chargeCredit();
    if (limited) return limited;
    const params = url.searchParams;
    switch (url.pathname) {
      case "/time_series":
        return timeSeries(params);
      case "/quote":
        return quoteResponse(params);
      case "/cryptocurrencies": {
        const symbol = params.get("symbol");
        const data = [...market.quotes.values()]
          .map((q) => q.instrument)
          .filter((i) => i.assetClass === "crypto" && (!symbol || i.symbol === symbol))
          .map((i) => ({
            symbol: i.symbol,
            available_exchanges: [i.exchange, "Binance", "Kraken"],
            currency_base: i.currency_base,
            currency_quote: i.currency_quote,
          }));
        return Response.json({ data, status: "ok" });
      }
    }
    return errorResponse(404, `${url.pathname} is not a simulated endpoint`);
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
    return {
      ...stats,
      by_symbol: bySymbol,
      by_connection: byConnection,
      connections: connections.size,
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
    lastPump = Date.now();
  }

  async function control(request: Request, url: URL): Promise<Response> {
    if (request.method !== "POST") return errorResponse(405, "Use POST for /control");
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
      }
    } catch (error) {
      return errorResponse(400, (error as Error).message);
    }
    return errorResponse(404, `${url.pathname} is not a control endpoint`);
  }

  async function handler(request: Request): Promise<Response> {
    const url = new URL(request.url);
    if (url.pathname === WS_PATH) return upgrade(request, url);
    if (url.pathname === "/stats") return Response.json(snapshot());
    if (url.pathname.startsWith("/control/")) return await control(request, url);
    return rest(request, url);
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
      return errorResponse(500, "Internal simulator error");
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
