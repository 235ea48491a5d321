import type { Metric } from "../metrics.ts";
import type { IngestSummary } from "./summary.ts";

type Sample = [name: string, type: Metric["type"], help: string, value: number];

/** Samples named `name`, one per entry of `values`, labelled `label`. */
function labelled(
  name: string,
  type: Metric["type"],
  help: string,
  label: string,
  values: Record<string, number>,
): Metric[] {
  return Object.entries(values).map(([key, value]) => ({
    name: `tickpipe_${name}`,
    type,
    help,
    value,
    labels: { [label]: key },
  }));
}

/** The Prometheus metrics of an ingest run (`/metrics`). */
export function metricsOf(s: IngestSummary): Metric[] {
  const c = s.client;
  const p = s.pipeline;
  const samples: Sample[] = [
    ["ws_connected", "gauge", "1 while the Twelve Data WebSocket is open", c.connected ? 1 : 0],
    ["ws_frames_total", "counter", "WebSocket frames received", c.frames],
    ["ws_ticks_total", "counter", "Valid price events received", c.ticks],
    ["ws_malformed_total", "counter", "Frames rejected as malformed or invalid", c.malformed],
    ["ws_reconnects_total", "counter", "Reconnections after the first connection", c.reconnects],
    ["ws_refused_symbols", "gauge", "Symbols the server refused", Object.keys(c.refused).length],
    ["rows_written_total", "counter", "Tick rows committed", p.written],
    [
      "ticks_dropped_total",
      "counter",
      "Ticks dropped (memory full and the spool full or unwritable)",
      p.dropped,
    ],
    ["ticks_quarantined_total", "counter", "Ticks the database refused", p.quarantined],
    [
      "ticks_lost_in_crash_total",
      "counter",
      "Spooled ticks found torn or corrupt at start",
      p.lostInCrash,
    ],
    ["ticks_pending_memory", "gauge", "Ticks held in memory", p.pendingMemory],
    ["ticks_spooled", "gauge", "Ticks waiting in the on-disk spool", p.spooled],
    ["ticks_spool_buffered", "gauge", "Spooled ticks not yet written to the file", p.spoolBuffered],
    ["spool_writable", "gauge", "1 while the spool can be written", p.spoolFault ? 0 : 1],
    ["batches_total", "counter", "Batches committed", p.batches],
    ["write_retries_total", "counter", "Failed batch writes that were retried", p.retries],
    ["commit_latency_p50_ms", "gauge", "Tick receipt to commit, median", p.latencyP50Ms ?? 0],
    ["commit_latency_p99_ms", "gauge", "Tick receipt to commit, 99th pct", p.latencyP99Ms ?? 0],
    ["uptime_seconds", "gauge", "Seconds since ingest started", s.uptimeS],
  ];
  const l = s.leases;
  if (l) {
    samples.push(
      ["symbols_owned", "gauge", "Symbols whose lease this process holds", l.owned],
      ["symbols_standby", "gauge", "Symbols held by another process, stood by for", l.standby],
      ["lease_takeovers_total", "counter", "Symbols taken over from another process", l.takeovers],
      ["leases_lost_total", "counter", "Symbols lost to another process", l.lost],
      ["ticks_not_owned_total", "counter", "Ticks of symbols not held, not stored", l.notOwned],
      ["ticks_held_lease", "gauge", "Ticks held in memory until the leases are confirmed", l.held],
      [
        "ticks_discarded_unverified_total",
        "counter",
        "Held ticks of a lost symbol discarded without proof its new holder stored them",
        l.discardedUnverified,
      ],
      ["lease_session_up", "gauge", "1 while the lease session is connected", l.connected ? 1 : 0],
    );
  }
  const lastTickS = Object.fromEntries(
    Object.entries(c.lastTickMs).map(([symbol, ms]) => [symbol, ms / 1000]),
  );
  return [
    ...samples.map(([name, type, help, value]) => ({
      name: `tickpipe_${name}`,
      type,
      help,
      value,
    })),
    ...labelled(
      "last_tick_timestamp_seconds",
      "gauge",
      "Event time of the last tick per symbol",
      "symbol",
      lastTickS,
    ),
    ...labelled(
      "ws_malformed_by_reason_total",
      "counter",
      "Malformed frames (ticks outside the limits included), by reason",
      "reason",
      c.malformedByReason,
    ),
    ...labelled(
      "ticks_quarantined_by_reason_total",
      "counter",
      "Ticks the database refused, by reason",
      "reason",
      p.quarantinedByReason,
    ),
  ];
}
