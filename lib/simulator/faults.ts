import { sendText, type SimState } from "./state.ts";
import { unsubscribeAll } from "./websocket.ts";

/** Sends `frames` to every open, unstalled connection; returns the frames sent. */
function broadcast(state: SimState, frames: string[]): number {
  let sent = 0;
  const now = state.now();
  for (const conn of state.connections) {
    if (conn.stalledUntil > now) continue;
    for (const frame of frames) if (sendText(conn, frame)) sent++;
  }
  return sent;
}

function malformedFrames(nowMs: number, count: number): string[] {
  const t = Math.floor(nowMs / 1000);
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

function edgeFrames(nowMs: number, count: number): string[] {
  const seconds = Math.floor(nowMs / 1000);
  const kinds = [
    `{"event":"price","symbol":"BTC/USD","timestamp":${nowMs},"price":64000.5}`,
    `{"event":"price","symbol":"'; DROP TABLE ticks;--","timestamp":${seconds},"price":1.5}`,
    `{"event":"price","symbol":"AAPL\\"), ('x","timestamp":${seconds},"price":2}`,
    `{"event":"price","symbol":"ÆØÅ/€","timestamp":${seconds},"price":3}`,
  ];
  return Array.from({ length: count }, (_, i) => kinds[i % kinds.length]!);
}

/** Sends `count` frames a client must reject; returns the frames sent. */
export function sendMalformed(state: SimState, count: number): number {
  const sent = broadcast(state, malformedFrames(state.now(), count));
  state.counters.malformed_sent += sent;
  return sent;
}

/** Sends `count` valid but unusual price events (ms timestamps, SQL metacharacters). */
export function sendEdgeCases(state: SimState, count: number): number {
  const sent = broadcast(state, edgeFrames(state.now(), count));
  state.counters.edge_sent += sent;
  return sent;
}

/** Sends one raw text frame to every open connection. */
export function sendRaw(state: SimState, text: string): number {
  const sent = broadcast(state, [text]);
  state.counters.raw_sent += sent;
  return sent;
}

/** Closes every connection server-side, after the frames already sent have left. */
export async function dropAll(state: SimState): Promise<void> {
  const victims = [...state.connections];
  for (const conn of victims) {
    // Stop sending first, let the queued frames leave, then close: nothing counted is lost.
    conn.open = false;
    unsubscribeAll(state, conn, conn.subs);
  }
  // Real sockets drain in real time, whatever the simulator's clock.
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
    state.connections.delete(conn);
  }
  state.logger.info("Simulator dropped every connection", { connections: victims.length });
}

/**
 * The current connections go silent for `ms` of the simulator's time (the manual clock
 * when there is one): no ticks, no answers, not even heartbeats.
 */
export function stallAll(state: SimState, ms: number): void {
  if (!(ms >= 0)) throw new RangeError(`Cannot stall for ${ms} ms: expected a duration >= 0`);
  const until = state.now() + ms;
  for (const conn of state.connections) conn.stalledUntil = until;
  state.logger.info(`Simulator stalls ${state.connections.size} connection(s) for ${ms} ms`);
}
