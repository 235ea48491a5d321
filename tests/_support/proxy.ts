/**
 * A TCP relay in front of the test database, so a test can make "the database" go away
 * (connections cut, new ones refused) and come back on the same port, without touching
 * the server the other tests share.
 */
export interface TcpProxy {
  port: number;
  /** Cuts every relayed connection and refuses new ones until `resume`. */
  pause(): void;
  /** Accepts connections again, on the same port. */
  resume(): void;
  close(): Promise<void>;
}

/** Starts a relay on 127.0.0.1 (a free port) to `target`. */
export function startProxy(target: { host: string; port: number }): TcpProxy {
  let listener: Deno.Listener | undefined;
  let port = 0;
  const open = new Set<Deno.Conn>();
  const relays = new Set<Promise<void>>();

  const relay = async (client: Deno.Conn) => {
    let upstream: Deno.Conn;
    try {
      upstream = await Deno.connect({ hostname: target.host, port: target.port });
    } catch {
      client.close();
      return;
    }
    open.add(client);
    open.add(upstream);
    const pipe = (from: Deno.Conn, to: Deno.Conn) =>
      from.readable.pipeTo(to.writable).catch(() => {});
    await Promise.all([pipe(client, upstream), pipe(upstream, client)]);
    for (const conn of [client, upstream]) {
      open.delete(conn);
      try {
        conn.close();
      } catch {
        // Closed by the pipe already.
      }
    }
  };

  const listen = () => {
    listener = Deno.listen({ hostname: "127.0.0.1", port });
    port = (listener.addr as Deno.NetAddr).port;
    const current = listener;
    const accepting = (async () => {
      for await (const conn of current) {
        const done = relay(conn);
        relays.add(done);
        done.finally(() => relays.delete(done));
      }
    })().catch(() => {});
    relays.add(accepting);
    accepting.finally(() => relays.delete(accepting));
  };

  const cut = () => {
    try {
      listener?.close();
    } catch {
      // Already closed.
    }
    listener = undefined;
    for (const conn of open) {
      try {
        conn.close();
      } catch {
        // Already closed.
      }
    }
    open.clear();
  };

  listen();
  return {
    port,
    pause: cut,
    resume: listen,
    async close() {
      cut();
      await Promise.all([...relays]);
    },
  };
}
