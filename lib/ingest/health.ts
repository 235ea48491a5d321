import { streamProblem } from "../twelvedata/mod.ts";
import type { IngestSummary } from "./summary.ts";

/**
 * /healthz: fails while the feed failed, the key is refused, no symbol is subscribed (see
 * `streamProblem`), the spool cannot be written, ticks were dropped in the last minute, or the
 * database has failed for over a minute; "degraded" (still 200) while rows were quarantined in
 * the last 5 minutes; a pure hot standby is healthy.
 */
export function healthOf(s: IngestSummary, graceMs: number): { ok: boolean; detail: string } {
  const p = s.pipeline;
  const now = Date.now();
  const dbDownS = p.failingSince === undefined ? 0 : (now - p.failingSince) / 1000;
  if (s.client.state === "failed") return { ok: false, detail: "twelve data: failed" };
  // A hot standby subscribes to nothing until it takes a lease over: it is healthy.
  const standby = s.leases !== undefined && s.leases.owned === 0 && s.leases.standby > 0
    ? s.leases.standby
    : 0;
  const problem = streamProblem(s.client, now, graceMs, { expectSymbols: standby === 0 });
  if (problem) return { ok: false, detail: problem };
  if (p.spoolFault) {
    return {
      ok: false,
      detail: `spool unwritable for ${
        Math.round((now - p.spoolFault.since) / 1000)
      } s (${p.spoolFault.error}): memory-only, ${p.dropped} ticks dropped`,
    };
  }
  if (p.lastDropAt !== undefined && now - p.lastDropAt < 60_000) {
    return { ok: false, detail: `dropping ticks: ${p.dropped} dropped (memory and spool full)` };
  }
  if (dbDownS > 60) return { ok: false, detail: `database failing for ${Math.round(dbDownS)} s` };
  if (standby > 0) return { ok: true, detail: `standby for ${standby} symbols` };
  const ok = `websocket ${s.client.state}, ${p.written} rows written`;
  if (p.lastQuarantineAt !== undefined && now - p.lastQuarantineAt < 300_000) {
    const reasons = Object.entries(p.quarantinedByReason).map(([r, n]) => `${r}: ${n}`);
    return {
      ok: true,
      detail: `degraded: ${p.quarantined} rows quarantined (${
        reasons.join(", ")
      }; deno task quarantine list); ${ok}`,
    };
  }
  return { ok: true, detail: `ok: ${ok}` };
}
