import type { Timers } from "../timers.ts";

/** How long a close may wait for the peer's half of the closing handshake. */
const CLOSE_BOUND_MS = 2_000;

/**
 * A WebSocket to `wsUrl` carrying `apiKey` the way `auth` says: in the `X-TD-APIKEY` header
 * (Deno's WebSocket can send headers), or as the `apikey` query parameter; and the URL it
 * connects to (redact it before logging).
 */
export function openSocket(
  wsUrl: URL,
  apiKey: string,
  auth: "header" | "query",
): { ws: WebSocket; url: URL } {
  const url = new URL(wsUrl);
  if (auth === "query") url.searchParams.set("apikey", apiKey);
  const ws = auth === "header"
    ? new WebSocket(url, { headers: { "X-TD-APIKEY": apiKey } })
    : new WebSocket(url);
  return { ws, url };
}

/**
 * Detaches `ws`'s handlers and closes it; resolves once it is closed, or after 2 s at most
 * (a half-dead peer may never complete the closing handshake).
 */
export function closeSocket(
  ws: WebSocket,
  timers: Timers,
  code?: number,
  reason?: string,
): Promise<void> {
  ws.onopen = null;
  ws.onmessage = null;
  ws.onerror = null;
  if (ws.readyState === WebSocket.CLOSED) {
    ws.onclose = null;
    return Promise.resolve();
  }
  const { promise, resolve } = Promise.withResolvers<void>();
  const finish = () => {
    timers.clearTimeout(timer);
    resolve();
  };
  const timer = timers.setTimeout(finish, CLOSE_BOUND_MS);
  ws.onclose = finish;
  try {
    if (ws.readyState === WebSocket.CONNECTING) ws.close();
    else ws.close(code ?? 1000, reason);
  } catch {
    finish();
  }
  return promise;
}
