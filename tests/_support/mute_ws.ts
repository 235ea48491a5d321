import { createHash } from "node:crypto";

/**
 * A WebSocket server that completes the handshake and then ignores everything, close frames
 * included: the peer a client must not hang on when it stops.
 */
export interface MuteWebSocketServer {
  url: string;
  close(): Promise<void>;
}

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/** Starts a mute WebSocket server on a free port of 127.0.0.1. */
export function startMuteWebSocketServer(): MuteWebSocketServer {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  const serving = (async () => {
    for await (const conn of listener) {
      conns.add(conn);
      void (async () => {
        const buffer = new Uint8Array(8192);
        try {
          const n = await conn.read(buffer);
          const request = new TextDecoder().decode(buffer.subarray(0, n ?? 0));
          const key = /sec-websocket-key:\s*(\S+)/i.exec(request)?.[1] ?? "";
          const accept = createHash("sha1").update(key + GUID).digest("base64");
          await conn.write(new TextEncoder().encode(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
              `Sec-WebSocket-Accept: ${accept}\r\n\r\n`,
          ));
          while ((await conn.read(buffer)) !== null) { /* ignore every frame */ }
        } catch {
          // closed by close()
        } finally {
          conns.delete(conn);
        }
      })();
    }
  })().catch(() => {});
  const { port } = listener.addr as Deno.NetAddr;
  return {
    url: `ws://127.0.0.1:${port}/v1/quotes/price`,
    async close() {
      listener.close();
      for (const conn of conns) {
        try {
          conn.close();
        } catch {
          // already closed
        }
      }
      await serving;
    },
  };
}

// As a process of its own (`deno run --allow-net tests/_support/mute_ws.ts`): prints its URL.
if (import.meta.main) {
  console.log(startMuteWebSocketServer().url);
}
