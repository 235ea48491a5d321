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
export function renderPrometheus(metrics: Metric[]): string {
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
  const server = Deno.serve({
    port,
    hostname: options.hostname ?? "127.0.0.1",
    onListen: () => {},
  }, (request) => {
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
  });
  return {
    port: server.addr.port,
    close: () => server.shutdown(),
  };
}
