import type { LeaseStats } from "../lease/mod.ts";
import type { PipelineStats } from "../pipeline/pipeline.ts";
import { formatCount } from "../text.ts";
import type { ClientStats } from "../twelvedata/mod.ts";

/** What an ingest run did, as of the moment it is taken. */
export interface IngestSummary {
  client: ClientStats;
  pipeline: PipelineStats;
  /** Seconds since start. */
  uptimeS: number;
  /** Ticks received per second over the last summary interval. */
  ticksPerS: number;
  /** With `lease`: symbols held and stood by for. */
  leases?: LeaseStats;
}

/** The one-line summary logged every 10 s. */
export function summaryLine(s: IngestSummary): string {
  const p = s.pipeline;
  const parts = [
    `${formatCount(s.ticksPerS)} ticks/s`,
    `${formatCount(p.written)} rows written`,
    `${formatCount(p.pendingMemory + p.spooled)} pending` +
    (p.spooled > 0 ? ` (${formatCount(p.spooled)} spooled)` : ""),
    `${s.client.reconnects} reconnects`,
    `${formatCount(p.dropped)} dropped`,
    `${formatCount(s.client.malformed)} rejected`,
  ];
  if (p.quarantined > 0) {
    const reasons = Object.entries(p.quarantinedByReason).map(([r, n]) =>
      `${r}: ${formatCount(n)}`
    );
    parts.push(`${formatCount(p.quarantined)} quarantined (${reasons.join(", ")})`);
  }
  if (p.lostInCrash > 0) parts.push(`${formatCount(p.lostInCrash)} lost in a crash`);
  if (p.spoolFault) parts.push(`spool unwritable (${p.spoolFault.error})`);
  if (p.latencyP99Ms !== undefined) {
    parts.push(
      `commit p50 ${formatCount(p.latencyP50Ms ?? 0)} ms / p99 ${formatCount(p.latencyP99Ms)} ms`,
    );
  }
  if (s.leases && s.leases.standby > 0) {
    parts.push(`${s.leases.owned} symbol(s) held, standby for ${s.leases.standby}`);
  }
  if (s.leases && s.leases.held > 0) {
    parts.push(`${formatCount(s.leases.held)} ticks held until the leases are confirmed`);
  }
  if (s.leases && s.leases.discardedUnverified > 0) {
    parts.push(
      `${
        formatCount(s.leases.discardedUnverified)
      } held ticks discarded unverified after losing a lease`,
    );
  }
  return parts.join(", ");
}
