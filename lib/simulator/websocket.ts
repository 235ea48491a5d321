import { z } from "zod";
import type { Quote } from "./market.ts";
import { BAD_KEY_MESSAGE, errorResponse } from "./rest.ts";
import { type Connection, OPENED_KEPT, sendText, type SimState } from "./state.ts";

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

function symbolNames(param: z.output<typeof SymbolsParam>): string[] {
  const items = typeof param === "string" ? param.split(",") : param;
  return items
    .map((item) => (typeof item === "string" ? item : item.symbol).trim())
    // "RY:TSX" picks a listing; the simulator knows one listing per symbol.
    .map((symbol) => symbol.includes(":") ? symbol.slice(0, symbol.indexOf(":")) : symbol)
    .filter((symbol) => symbol !== "");
}

/** The quotes somebody is subscribed to now. */
export function activeQuotes(state: SimState): Quote[] {
  if (state.activeDirty) {
    state.active = [...state.subscribers.entries()]
      .filter(([, set]) => set.size > 0)
      .map(([q]) => q);
    state.activeDirty = false;
  }
  return state.active;
}

function subscribe(state: SimState, conn: Connection, names: string[]): void {
  const variants = state.options.subscribeStatus ?? {};
  const unauthorized = state.options.unauthorized ?? [];
  const success: Record<string, string>[] = [];
  const fails: Record<string, string>[] = [];
  for (const symbol of names) {
    const quote = state.market.quotes.get(symbol);
    if (!quote) {
      fails.push({
        symbol,
        message: `Symbol "${symbol}" is not found or is not available on your plan`,
      });
    } else if (unauthorized.includes(symbol)) {
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
      if (!state.liveSet.has(quote)) {
        state.liveSet.add(quote);
        state.live.push(quote);
      }
      let set = state.subscribers.get(quote);
      if (!set) state.subscribers.set(quote, set = new Set());
      set.add(conn);
      state.activeDirty = true;
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

/** Removes `quotes` from `conn`'s subscriptions; returns the symbols it had. */
export function unsubscribeAll(
  state: SimState,
  conn: Connection,
  quotes: Iterable<Quote>,
): string[] {
  const removed: string[] = [];
  for (const quote of [...quotes]) {
    if (conn.subs.delete(quote)) removed.push(quote.instrument.symbol);
    state.subscribers.get(quote)?.delete(conn);
  }
  state.activeDirty = true;
  return removed;
}

function onMessage(state: SimState, conn: Connection, data: unknown): void {
  state.counters.messages_received++;
  if (conn.stalledUntil > state.now()) return;
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
      subscribe(state, conn, symbolNames(message.params.symbols));
      break;
    case "unsubscribe": {
      const names = new Set(symbolNames(message.params.symbols));
      const quotes = [...conn.subs].filter((q) => names.has(q.instrument.symbol));
      const removed = unsubscribeAll(state, conn, quotes);
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
      unsubscribeAll(state, conn, conn.subs);
      sendText(conn, '{"event":"reset-status","status":"ok"}');
      break;
  }
}

function forget(state: SimState, conn: Connection): void {
  conn.open = false;
  if (!state.connections.delete(conn)) return;
  unsubscribeAll(state, conn, conn.subs);
  state.logger.debug("Simulator connection closed", { id: conn.id });
}

/**
 * Answers a request to the WebSocket path: refuses a wrong key the way Twelve Data does
 * (HTTP 200 and a JSON error body, no upgrade), else upgrades and serves the protocol
 * (subscribe, unsubscribe, reset, heartbeat).
 */
export function upgrade(state: SimState, request: Request, url: URL): Response {
  state.counters.connection_attempts++;
  const key = request.headers.get("x-td-apikey") ?? url.searchParams.get("apikey");
  if (state.refusing || key !== state.apiKey) {
    state.counters.auth_failures++;
    return Response.json({ code: 401, message: BAD_KEY_MESSAGE, status: "error" });
  }
  if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
    return errorResponse(400, "Expected a WebSocket upgrade", {
      httpStatus: state.options.httpErrorStatus,
    });
  }
  const { socket, response } = Deno.upgradeWebSocket(request);
  const conn: Connection = {
    id: state.nextId++,
    socket,
    subs: new Set(),
    stalledUntil: 0,
    open: false,
    writable: false,
    sent: new Map(),
    frames: state.options.recordFrames ? new Map() : undefined,
  };
  socket.onopen = () => {
    if (state.closing) return socket.close(1001, "shutting down");
    conn.open = true;
    state.connections.add(conn);
    state.opened.push(conn);
    if (state.opened.length > OPENED_KEPT) state.opened.shift();
    state.logger.debug("Simulator connection opened", { id: conn.id });
  };
  socket.onmessage = (event) => onMessage(state, conn, event.data);
  socket.onclose = () => forget(state, conn);
  socket.onerror = () => {};
  return response;
}
