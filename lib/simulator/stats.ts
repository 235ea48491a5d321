import type { RestStats } from "./rest.ts";
import type { SimState, WsCounters } from "./state.ts";

/** `GET /stats`: the ground truth for loss tests. */
export interface SimulatorStats extends WsCounters, RestStats {
  /** Price events sent, per symbol. */
  by_symbol: Record<string, number>;
  /**
   * Price events per connection (by its id, in the order connections were opened; closed
   * ones included) and symbol: what each subscriber was sent.
   */
  by_connection: Record<string, Record<string, number>>;
  /** Open WebSocket connections. */
  connections: number;
  /** Symbol subscriptions over all open connections. */
  subscriptions: number;
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
