import type { Gated } from "./lease_hold.ts";
import { listed } from "./lease_messages.ts";
import type { StoredTick } from "./lease_session.ts";

/** A symbol lost while its ticks were held: who took it, when, and what was held. */
interface Pending<T> {
  sinceMs: number;
  by: string;
  items: T[];
  /** `performance.now()` when the symbol was found lost. */
  at: number;
}

/** Reads the rows of a symbol (see `LeaseSession.storedBetween`). */
export type ReadStored = (
  symbol: string,
  fromMs: number,
  toMs: number,
  limit: number,
) => Promise<{ rows: StoredTick[]; latestMs: number | undefined }>;

/** The outcome of sorting held ticks out. */
export interface SortedOut<T> {
  /** Ticks nobody else stored: to admit, in arrival order. */
  kept: T[];
  /** Ticks discarded: their symbol's new holder stored them (or, unverified, may have). */
  discarded: number;
  /**
   * Of those, ticks discarded without proof that the new holder stored them (by the stamp
   * rule): those it subscribed too late for were received by nobody else.
   */
  unverified: number;
  lines: { level: "info" | "warn"; text: string }[];
}

function itemKey(t: Gated): string {
  return `${t.timeMs}|${t.price}|${t.day_volume ?? ""}`;
}

function rowKey(r: StoredTick): string {
  return `${r.timeMs}|${r.price}|${r.dayVolume ?? ""}`;
}

/** The earliest and latest stamps of `items` (not spread: there may be 200,000). */
function stampRange(items: readonly Gated[]): [number, number] {
  let min = Infinity;
  let max = -Infinity;
  for (const t of items) {
    if (t.timeMs < min) min = t.timeMs;
    if (t.timeMs > max) max = t.timeMs;
  }
  return [min, max];
}

/**
 * Which of the ticks `held` (in arrival order) to keep, given the rows stored meanwhile
 * with stamps in their range and the latest stamp stored: a held tick found among the rows
 * was stored by the symbol's new holder (this process stored none of them: it held them,
 * and ticks it stored before are other ticks), one not found it never received. The new
 * holder writes in arrival order, so the answer is complete once the last held tick is
 * found, or a row stamped after every held tick is there; undefined until then.
 */
export function keptOf(
  held: readonly Gated[],
  stored: { rows: readonly StoredTick[]; latestMs: number | undefined },
): boolean[] | undefined {
  if (held.length === 0) return [];
  const found = new Set(stored.rows.map(rowKey));
  const last = held.at(-1)!;
  const [, newest] = stampRange(held);
  const complete = found.has(itemKey(last)) ||
    (stored.latestMs !== undefined && stored.latestMs > newest);
  return complete ? held.map((t) => !found.has(itemKey(t))) : undefined;
}

/**
 * Ticks held back for symbols that turned out lost (another process took them while this
 * one's leases were in doubt), until they are compared with what was stored: those the new
 * holder stored are discarded, the others (received before it subscribed) kept, admitted
 * late. While its rows are not there yet the ticks wait, up to `giveUpMs`; then, and at
 * shutdown, the ticks stamped before the takeover's second are kept and the others
 * discarded.
 */
export class LostTicks<T extends Gated> {
  #pending = new Map<string, Pending<T>>();

  /** Symbols whose held ticks are waiting. */
  get size(): number {
    return this.#pending.size;
  }

  /** Ticks waiting. */
  get held(): number {
    let n = 0;
    for (const p of this.#pending.values()) n += p.items.length;
    return n;
  }

  /** Adds the held ticks of `symbol`, lost to `by` at `sinceMs` (epoch ms, the database's). */
  add(symbol: string, lost: { sinceMs: number; by: string }, items: T[]): void {
    if (items.length === 0) return;
    const pending = this.#pending.get(symbol);
    if (pending) pending.items.push(...items);
    else this.#pending.set(symbol, { ...lost, items, at: performance.now() });
  }

  /** Compares what waits with what was stored (`read`); see the class. */
  async sortOut(read: ReadStored, giveUpMs: number): Promise<SortedOut<T>> {
    const out: SortedOut<T> = { kept: [], discarded: 0, unverified: 0, lines: [] };
    const matched: string[] = [];
    let kept = 0;
    let discarded = 0;
    for (const [symbol, p] of [...this.#pending]) {
      const [from, to] = stampRange(p.items);
      const stored = await read(symbol, from, to, 4 * p.items.length + 1_000);
      const keep = keptOf(p.items, stored);
      if (!keep) {
        if (performance.now() - p.at > giveUpMs) this.#fallBack(symbol, out, "its rows");
        continue;
      }
      this.#pending.delete(symbol);
      p.items.forEach((item, i) => keep[i] ? (out.kept.push(item), kept++) : discarded++);
      matched.push(symbol);
    }
    out.discarded += discarded;
    if (matched.length > 0) {
      out.lines.push({
        level: "info",
        text: `Sorted out the ticks held for ${
          listed(matched.sort())
        } against what their new holder stored: kept ${kept} it never received, discarded ${discarded} it stored`,
      });
    }
    return out;
  }

  /** At shutdown: every symbol is settled by the stamp rule (see the class). */
  giveUp(): SortedOut<T> {
    const out: SortedOut<T> = { kept: [], discarded: 0, unverified: 0, lines: [] };
    for (const symbol of [...this.#pending.keys()]) this.#fallBack(symbol, out, "shutdown");
    return out;
  }

  #fallBack(symbol: string, out: SortedOut<T>, why: "its rows" | "shutdown"): void {
    const p = this.#pending.get(symbol)!;
    this.#pending.delete(symbol);
    const second = Math.floor(p.sinceMs / 1000) * 1000;
    let discarded = 0;
    for (const item of p.items) {
      if (item.timeMs < second) out.kept.push(item);
      else discarded++;
    }
    out.discarded += discarded;
    out.unverified += discarded;
    out.lines.push({
      level: "warn",
      text:
        `Cannot compare the ${p.items.length} ticks held for ${symbol} with what ${p.by} stored (${
          why === "shutdown" ? "stopping" : "its rows are not there"
        }): kept ${
          p.items.length - discarded
        } stamped before the second it took the lease, discarded ${discarded} unverified (those it subscribed too late for, in that second, were received by nobody)`,
    });
  }
}
