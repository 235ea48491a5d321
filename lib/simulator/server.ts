import { advance, control, setCredits, setRate } from "./control.ts";
import { dropAll, sendEdgeCases, sendMalformed, sendRaw, stallAll } from "./faults.ts";
import { type CreditLimits, errorResponse } from "./rest.ts";
import { createState, type SimState, type SimulatorOptions } from "./state.ts";
import { type SimulatorStats, snapshot } from "./stats.ts";
import { pump } from "./ticks.ts";
import { upgrade } from "./websocket.ts";

export type { SimulatorOptions } from "./state.ts";
export type { SimulatorStats } from "./stats.ts";

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
  /**
   * The current connections go silent for `ms` of the simulator's time: no ticks, no
   * answers, not even heartbeats.
   */
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

/** Closes every socket (waiting up to 1 s for their close handshakes), then the server. */
async function shutdown(state: SimState, server: Deno.HttpServer): Promise<void> {
  if (state.closing) return;
  state.closing = true;
  clearTimeout(state.pumpTimer);
  const sockets = [...state.connections].map((conn) => conn.socket);
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
}

/**
 * Starts an in-process Twelve Data simulator on 127.0.0.1: the real-time WebSocket at
 * `/v1/quotes/price` (websocket.ts, ticks.ts), REST (`/time_series`, `/quote`,
 * `/cryptocurrencies`, `/api_usage`: rest.ts), `GET /stats` (stats.ts) and fault injection
 * under `POST /control/...` (faults.ts, control.ts), all around one `SimState`.
 */
export function startSimulator(options: SimulatorOptions = {}): Promise<SimulatorHandle> {
  const state = createState(options);
  setRate(state, state.rate);
  const handler = async (request: Request): Promise<Response> => {
    const url = new URL(request.url);
    if (url.pathname === WS_PATH) return upgrade(state, request, url);
    if (url.pathname === "/stats") return Response.json(snapshot(state));
    if (url.pathname.startsWith("/control/")) return await control(state, request, url);
    return state.rest.handle(request, url);
  };
  const hostname = options.hostname ?? "127.0.0.1";
  const server = Deno.serve({
    port: options.port ?? 0,
    hostname,
    onListen: () => {},
    onError: (error) => {
      state.logger.error("Simulator request failed", { error: (error as Error).message });
      return errorResponse(500, "Internal simulator error", {
        httpStatus: options.httpErrorStatus,
      });
    },
  }, handler);
  const port = server.addr.port;
  state.pumpTimer = setTimeout(() => pump(state), 0);
  return Promise.resolve({
    port,
    wsUrl: `ws://${hostname}:${port}${WS_PATH}`,
    apiUrl: `http://${hostname}:${port}`,
    stats: () => snapshot(state),
    framesSent(id, symbol) {
      const conn = state.opened.find((c) => c.id === id);
      const quote = state.market.quotes.get(symbol);
      return (quote && conn?.frames?.get(quote)?.slice()) ?? [];
    },
    drop: () => dropAll(state),
    stall: (ms) => stallAll(state, ms),
    malformed: (count) => sendMalformed(state, count),
    edgeCases: (count) => sendEdgeCases(state, count),
    sendRaw: (text) => sendRaw(state, text),
    refuseKey(on) {
      state.refusing = on;
    },
    setRate: (rate) => setRate(state, rate),
    setCredits: (limits) => setCredits(state, limits),
    now: state.now,
    advance: (ms) => advance(state, ms),
    close: () => shutdown(state, server),
  });
}
