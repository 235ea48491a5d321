import type { SimState } from "./state.ts";

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
  /** Epoch ms (wall clock) of the first and the latest price event sent; null before the first. */
  first_price_sent_at: number | null;
  last_price_sent_at: number | null;
}

/** The counters of `state` as `/stats` serves them. */
export function snapshot(state: SimState): SimulatorStats {
  const bySymbol: Record<string, number> = {};
  for (const [symbol, quote] of state.market.quotes) {
    if (quote.sent > 0) bySymbol[symbol] = quote.sent;
  }
  const byConnection: Record<string, Record<string, number>> = {};
  for (const conn of state.opened) {
    const counts: Record<string, number> = {};
    for (const [quote, n] of conn.sent) counts[quote.instrument.symbol] = n;
    byConnection[conn.id] = counts;
  }
  let subscriptions = 0;
  for (const conn of state.connections) subscriptions += conn.subs.size;
  return {
    ...state.counters,
    ...state.rest.stats(),
    by_symbol: bySymbol,
    by_connection: byConnection,
    connections: state.connections.size,
    subscriptions,
  };
}
