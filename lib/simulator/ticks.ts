import type { Quote } from "./market.ts";
import { sendText, type SimState } from "./state.ts";
import { activeQuotes } from "./websocket.ts";

// Above this many bytes queued on a socket the simulator skips it (backpressure).
const HIGH_WATER = 1 << 20;

/** Sends `frame` to every writable subscriber of `quote`, within `maxTicks`; counts it. */
function deliver(state: SimState, quote: Quote, frame: string): number {
  const set = state.subscribers.get(quote);
  if (!set) return 0;
  const counters = state.counters;
  let delivered = 0;
  for (const conn of set) {
    if (counters.price_events_sent + delivered >= state.maxTicks) break;
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
    counters.price_events_sent += delivered;
    // The wall clock, whatever the market's clock: benchmarks time the feed with these.
    const now = Date.now();
    counters.first_price_sent_at ??= now;
    counters.last_price_sent_at = now;
  }
  return delivered;
}

// Reading bufferedAmount is a call into the runtime: once per batch, not per frame.
function refreshWritable(state: SimState): boolean {
  const now = state.now();
  let any = false;
  for (const conn of state.connections) {
    conn.writable = conn.open && conn.stalledUntil <= now &&
      conn.socket.bufferedAmount <= HIGH_WATER;
    if (conn.writable && conn.subs.size > 0) any = true;
  }
  return any;
}

/**
 * Rate mode: the ticks the market makes from the previous pump to `until`, stamped across
 * that span (`[previous, until)`), for every symbol subscribed so far. Those of symbols
 * nobody listens to now are made all the same (and recorded on the tape), just not sent.
 */
export function generate(state: SimState, until: number): void {
  const rate = state.rate;
  if (rate === "max") return;
  const from = state.lastPump;
  const elapsed = until - from;
  if (elapsed <= 0) return;
  state.lastPump = until;
  const due = state.carry + rate * elapsed / 1000;
  const count = Math.floor(due);
  state.carry = due - count;
  const live = state.live;
  if (live.length === 0) {
    state.carry = 0;
    return;
  }
  if (count > 0) refreshWritable(state);
  const market = state.market;
  for (let i = 0; i < count && state.counters.price_events_sent < state.maxTicks; i++) {
    const quote = live[Math.floor(market.random() * live.length)]!;
    deliver(state, quote, market.tick(quote, from + Math.floor(i * elapsed / count)));
  }
}

/** Max mode: many frames per turn, until every subscribed socket is full or ~10 ms passed. */
function pumpMax(state: SimState): number {
  const t = state.now();
  const quotes = activeQuotes(state);
  const market = state.market;
  let sent = 0;
  if (quotes.length > 0) {
    const until = performance.now() + 10;
    while (state.counters.price_events_sent < state.maxTicks && refreshWritable(state)) {
      for (let i = 0; i < 512; i++) {
        const quote = quotes[Math.floor(market.random() * quotes.length)]!;
        sent += deliver(state, quote, market.tick(quote, t));
      }
      if (performance.now() > until) break;
    }
  }
  state.lastPump = t;
  return sent;
}

/** One turn of the tick pump; schedules the next until the simulator closes. */
export function pump(state: SimState): void {
  state.pumpTimer = undefined;
  // Once maxTicks are sent there is nothing more to pump.
  if (state.closing || state.counters.price_events_sent >= state.maxTicks) return;
  if (state.rate === "max") {
    const sent = pumpMax(state);
    state.pumpTimer = setTimeout(() => pump(state), sent > 0 ? 0 : 2);
    return;
  }
  generate(state, state.now());
  state.pumpTimer = setTimeout(
    () => pump(state),
    Math.min(100, Math.max(5, 1000 / state.rate)),
  );
}
