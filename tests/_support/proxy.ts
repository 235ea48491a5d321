/**
 * A TCP proxy in front of the test database, to take it away and give it back without
 * stopping the shared server: `cut()` closes every connection and refuses new ones (each is
 * closed as soon as it is accepted), `restore()` forwards again.
 */
export interface DatabaseProxy {
  port: number;
  cut(): void;
  restore(): void;
  close(): Promise<void>;
}

/** Starts a proxy on a free port of 127.0.0.1 forwarding to `target`. */
export function startProxy(target: { host: string; port: number }): DatabaseProxy {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const open = new Set<Deno.Conn>();
  const pipes = new Set<Promise<unknown>>();
  let cut = false;
  const closeAll = () => {
    for (const conn of open) {
      try {
        conn.close();
      } catch {
        // Closed by the other side.
      }
    }
    open.clear();
  };
  const serve = async (client: Deno.Conn) => {
    if (cut) {
      client.close();
      return;
    }
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
      from.readable.pipeTo(to.writable).catch(() => {}).finally(() => {
        for (const c of [from, to]) {
          if (open.delete(c)) {
            try {
              c.close();
            } catch {
              // Already closed.
            }
          }
        }
      });
    const both = Promise.all([pipe(client, upstream), pipe(upstream, client)]);
    pipes.add(both);
    await both;
    pipes.delete(both);
  };
  const accepting = (async () => {
    for await (const conn of listener) serve(conn);
  })().catch(() => {});
  return {
    port: (listener.addr as Deno.NetAddr).port,
    cut() {
      cut = true;
      closeAll();
    },
    restore() {
      cut = false;
    },
    async close() {
      listener.close();
      closeAll();
      await accepting;
      await Promise.all(pipes);
    },
  };
}
