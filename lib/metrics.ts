import { UserError } from "./errors.ts";

/** One Prometheus sample: a metric name, its help, type, value and optional labels. */
export interface Metric {
  name: string;
  help: string;
  type: "counter" | "gauge";
  value: number;
  labels?: Record<string, string>;
}

function escapeLabel(value: string): string {
  return value.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n");
}

/** Renders metrics in the Prometheus text exposition format (version 0.0.4). */
function renderPrometheus(metrics: Metric[]): string {
  const lines: string[] = [];
  const described = new Set<string>();
  for (const m of metrics) {
    if (!described.has(m.name)) {
      lines.push(`# HELP ${m.name} ${m.help}`, `# TYPE ${m.name} ${m.type}`);
      described.add(m.name);
    }
    const labels = m.labels && Object.keys(m.labels).length > 0
      ? `{${Object.entries(m.labels).map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(",")}}`
      : "";
    lines.push(`${m.name}${labels} ${Number.isFinite(m.value) ? m.value : 0}`);
  }
  return lines.join("\n") + "\n";
}

/** A running metrics endpoint. */
export interface MetricsServer {
  port: number;
  close(): Promise<void>;
}

/**
 * Serves `GET /metrics` (Prometheus text from `collect`) and `GET /healthz`
 * (200 `ok` while `healthy()` says so, else 503 with the reason) on `hostname:port`.
 */
export function serveMetrics(
  port: number,
  options: {
    hostname?: string;
    collect: () => Metric[];
    healthy: () => { ok: boolean; detail: string };
  },
): MetricsServer {
  const hostname = options.hostname ?? "127.0.0.1";
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve({ port, hostname, onListen: () => {} }, handler);
  } catch (error) {
    if (error instanceof Deno.errors.AddrInUse) {
      throw new UserError(
        `Cannot serve metrics on ${hostname}:${port}: the port is in use (--metrics-port ` +
          `${port}); choose another port, or --metrics-port 0 for any free one`,
        { cause: error },
      );
    }
    throw error;
  }
  return {
    port: server.addr.port,
    close: () => server.shutdown(),
  };

  function handler(request: Request): Response {
    const path = new URL(request.url).pathname;
    if (path === "/metrics") {
      return new Response(renderPrometheus(options.collect()), {
        headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
      });
    }
    if (path === "/healthz") {
      const health = options.healthy();
      return new Response(health.detail + "\n", { status: health.ok ? 200 : 503 });
    }
    return new Response("not found\n", { status: 404 });
  }
}
