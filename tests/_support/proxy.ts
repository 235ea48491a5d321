/**
 * A TCP proxy in front of the test database, to cut one client off while the others go on:
 * `freeze` stops forwarding (a network partition: both ends keep their sockets), `cut`
 * closes every connection and refuses new ones (the server ends the sessions at once).
 */

/** A running proxy. */
export interface Proxy {
  port: number;
  /** Stops forwarding bytes either way until `thaw`. */
  freeze(): void;
  thaw(): void;
  /** Closes every connection and refuses new ones until `restore`. */
  cut(): void;
  restore(): void;
  close(): Promise<void>;
}

/** Starts a proxy on 127.0.0.1 to `host:port` (a `DatabaseConfig` will do). */
export function startProxy(target: { host: string; port: number }): Proxy {
  let listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const open = new Set<Deno.Conn>();
  const pumps = new Set<Promise<void>>();
  let frozen: PromiseWithResolvers<void> | undefined;
  let refusing = false;
  let closing = false;

  const closeQuietly = (conn: Deno.Conn) => {
    open.delete(conn);
    try {
      conn.close();
    } catch {
      // already closed
    }
  };

  async function pump(from: Deno.Conn, to: Deno.Conn): Promise<void> {
    const buffer = new Uint8Array(64 * 1024);
    try {
      while (true) {
        const n = await from.read(buffer);
        if (n === null) break;
        while (frozen) await frozen.promise;
        let written = 0;
        while (written < n) written += await to.write(buffer.subarray(written, n));
      }
    } catch {
      // a side closed
    } finally {
      closeQuietly(from);
      closeQuietly(to);
    }
  }

  const accept = async (on: Deno.Listener) => {
    for await (const client of on) {
      let server: Deno.Conn;
      try {
        server = await Deno.connect({ hostname: target.host, port: target.port });
      } catch {
        client.close();
        continue;
      }
      open.add(client);
      open.add(server);
      for (const p of [pump(client, server), pump(server, client)]) {
        pumps.add(p);
        p.finally(() => pumps.delete(p));
      }
    }
  };
  let accepting = accept(listener).catch(() => {});

  return {
    port,
    freeze() {
      frozen ??= Promise.withResolvers<void>();
    },
    thaw() {
      frozen?.resolve();
      frozen = undefined;
    },
    cut() {
      if (refusing) return;
      refusing = true;
      // A closed port refuses at once, as a stopped server's does.
      listener.close();
      for (const conn of [...open]) closeQuietly(conn);
    },
    restore() {
      if (!refusing || closing) return;
      refusing = false;
      listener = Deno.listen({ hostname: "127.0.0.1", port });
      accepting = accept(listener).catch(() => {});
    },
    async close() {
      closing = true;
      this.thaw();
      for (const conn of [...open]) closeQuietly(conn);
      if (!refusing) listener.close();
      await accepting;
      await Promise.all([...pumps]);
    },
  };
}
