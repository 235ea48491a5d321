import type { SubscribeStatusEvent } from "./events.ts";
import { symbolKey, type SymbolSpec } from "./symbols.ts";

/**
 * A client's subscription book: the symbols it wants (by key, "AAPL", "RY:TSX"), those the
 * server refused with its reason (not asked for again), and the subscribe requests still
 * awaiting their `subscribe-status`, in order.
 */
export class Subscriptions {
  #wanted = new Map<string, SymbolSpec>();
  /** Keys of wanted specs by their bare symbol: the server's answers name the symbol only. */
  #bySymbol = new Map<string, Set<string>>();
  #refused = new Map<string, string>();
  #pending: string[][] = [];

  /** Keys of the symbols wanted (refused ones excluded). */
  get wanted(): string[] {
    return [...this.#wanted.keys()];
  }

  /** Refused symbols and the server's reason, by key. */
  get refused(): Record<string, string> {
    return Object.fromEntries(this.#refused);
  }

  /** Wants `specs`; a refused one is asked for again. */
  add(specs: readonly SymbolSpec[]): void {
    for (const spec of specs) {
      const key = symbolKey(spec);
      this.#refused.delete(key);
      this.#want(key, spec);
    }
  }

  /** No longer wants `specs` (nor remembers them as refused). */
  remove(specs: readonly SymbolSpec[]): void {
    for (const spec of specs) {
      const key = symbolKey(spec);
      this.#unwant(key);
      this.#refused.delete(key);
    }
  }

  /** Wants nothing. */
  clear(): void {
    this.#wanted.clear();
    this.#bySymbol.clear();
    this.#refused.clear();
  }

  /** A new connection: requests sent on the old one will not be answered. Returns all wanted. */
  reconnected(): SymbolSpec[] {
    this.#pending = [];
    return [...this.#wanted.values()];
  }

  /** A subscribe request for `specs` went out. */
  sent(specs: readonly SymbolSpec[]): void {
    this.#pending.push(specs.map(symbolKey));
  }

  /**
   * Applies the answer to the oldest request awaiting one; returns what it refused, as
   * [key, reason] pairs, now remembered as refused and no longer wanted.
   */
  answer(event: SubscribeStatusEvent): [key: string, reason: string][] {
    const keys = this.#pending.shift() ?? [];
    const refused: [string, string][] = [];
    const refuse = (symbol: string, reason: string) => {
      // The wanted keys of that symbol ("RY" refuses "RY:TSX"), or of that key.
      const matches = new Set(this.#bySymbol.get(symbol));
      if (this.#wanted.has(symbol) || matches.size === 0) matches.add(symbol);
      for (const key of matches) {
        this.#unwant(key);
        this.#refused.set(key, reason);
        refused.push([key, reason]);
      }
    };
    for (const item of event.fails) {
      refuse(item.symbol, item.message || `refused (status ${event.status})`);
    }
    if (event.status === "error" && event.fails.length === 0 && event.success.length === 0) {
      // The {"status":"error","messages":[...]} variant names no symbol: the whole request failed.
      const reason = event.messages.join("; ") || "refused (status error)";
      for (const key of keys) refuse(key, reason);
    }
    return refused;
  }

  #want(key: string, spec: SymbolSpec): void {
    this.#wanted.set(key, spec);
    let keys = this.#bySymbol.get(spec.symbol);
    if (!keys) this.#bySymbol.set(spec.symbol, keys = new Set());
    keys.add(key);
  }

  #unwant(key: string): void {
    const spec = this.#wanted.get(key);
    if (!spec) return;
    this.#wanted.delete(key);
    const keys = this.#bySymbol.get(spec.symbol);
    keys?.delete(key);
    if (keys?.size === 0) this.#bySymbol.delete(spec.symbol);
  }
}
