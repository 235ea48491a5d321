import type { Taken } from "./lease_session.ts";

const LISTED = 10;

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

/** "1.3 s". */
export function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

/** "A, B, C and 12 more": one line however many symbols. */
export function listed(items: string[]): string {
  const shown = items.slice(0, LISTED).join(", ");
  return items.length > LISTED ? `${shown} and ${items.length - LISTED} more` : shown;
}

/** The line a standby logs when the symbols it waits for (or their holders) change. */
export function standbyLine(
  waiting: Map<string, string>,
  options: { deferring: boolean; graceMs: number; staleMs: number },
): string {
  const report = [...waiting].sort(([a], [b]) => a < b ? -1 : 1).map(([s, by]) => `${s} (${by})`);
  return `Standing by for ${report.length} symbol(s) held by another ingest process: ${
    listed(report)
  }; taking over when it stops${
    options.deferring
      ? ` (a lease whose holder may be reconnecting is taken once the holder has renewed nothing for ${
        seconds(options.staleMs)
      } and this process has been connected for ${seconds(options.graceMs)})`
      : ""
  }`;
}

/**
 * The lines logged when symbols are taken: one for those nobody held, one per previous
 * holder with the gap each symbol's hand-over left.
 */
export function takenLines(taken: Taken[]): string[] {
  const lines: string[] = [];
  const fresh = taken.filter((t) => t.previous === undefined).map((t) => t.symbol);
  if (fresh.length > 0) {
    lines.push(`Holding the lease of ${fresh.length} symbol(s): ${listed(fresh)}`);
  }
  const byHolder = new Map<string, Taken[]>();
  for (const t of taken) {
    if (!t.previous) continue;
    const key = `${t.previous.holder}|${t.previous.released}`;
    byHolder.set(key, [...(byHolder.get(key) ?? []), t]);
  }
  for (const group of byHolder.values()) {
    const previous = group[0]!.previous!;
    const gaps = group.map((t) =>
      t.lastTick
        ? `${t.symbol}: ${iso(t.lastTick.timeMs)} → ${iso(t.sinceMs)}, ${
          seconds(t.sinceMs - t.lastTick.timeMs)
        }`
        : `${t.symbol}: nothing stored in the last 48 h`
    );
    lines.push(
      `Took over ${group.length} symbol(s) from ${previous.holder} (${
        previous.released ? "it released them" : "its session ended without releasing"
      }); no ticks stored between its last one and this subscription: ${
        listed(gaps)
      } (recorded in tickpipe_handovers)`,
    );
  }
  return lines;
}

/**
 * The line logged when symbols were lost to another process: while this one was frozen or
 * without its lease session (it held their ticks back) or cut off (it went on ingesting
 * them from `sinceMs`).
 */
export function lostLine(
  symbols: string[],
  holders: string[],
  options: { why: "frozen" | "held" | "cut off"; sinceMs?: number },
): string {
  const them = symbols.length === 1 ? "it" : "them";
  const head = `Lost the lease of ${listed(symbols)} to ${listed(holders)}`;
  if (options.why === "cut off") {
    return `${head} while cut off from the database: stopped ingesting ${them}; rows since ${
      iso(options.sinceMs ?? Date.now())
    } may be stored twice (recorded in tickpipe_handovers)`;
  }
  return `${head} while ${
    options.why === "frozen" ? "this process was frozen" : "its lease session was lost"
  }: stopped ingesting ${them}; the ticks held meanwhile are kept where the new holder did not receive them`;
}

/** The line logged when ticks are held back because the lease session is not back. */
export function holdLine(
  symbols: string[],
  options: { lostMs: number; timeoutMs: number },
): string {
  return `The lease session is lost since ${
    seconds(options.lostMs)
  }: holding the ticks of ${symbols.length} symbol(s) another process stands by for (${
    listed(symbols)
  }) until the leases are confirmed, at most ${seconds(options.timeoutMs)}`;
}
