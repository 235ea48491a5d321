/** One price tick as the pipeline consumes it: validated, time in epoch milliseconds. */
export interface Tick {
  symbol: string;
  /** Event time, epoch milliseconds. */
  timeMs: number;
  price: number;
  bid?: number | undefined;
  ask?: number | undefined;
  /** The running daily traded volume (resets each day); absent for forex. */
  dayVolume?: number | undefined;
  currencyBase?: string | undefined;
  currencyQuote?: string | undefined;
  currency?: string | undefined;
  /**
   * When the tick was received, in ms: `performance.now()` or `Date.now()` (values above
   * 1e12 are taken as `Date.now()`), for tick→commit latency.
   */
  receivedAt: number;
}

/** The outcome of `validateTick`. */
export type TickValidation = { ok: true; tick: Tick } | { ok: false; reason: RejectReason };

/** Why a tick was rejected; a short fixed vocabulary so the counts stay readable. */
export type RejectReason =
  | "not an object"
  | "missing symbol"
  | "invalid symbol"
  | "missing price"
  | "invalid price"
  | "missing timestamp"
  | "invalid timestamp"
  | "timestamp out of range"
  | "invalid bid"
  | "invalid ask"
  | "invalid day_volume";

/** Prices above this are nonsense for any instrument Twelve Data streams. */
export const MAX_PRICE = 1e9;
/** Timestamps above this are milliseconds (1e12 seconds is the year 33658). */
export const MS_THRESHOLD = 1e12;
/** The earliest plausible tick. */
export const MIN_TIME_MS = Date.UTC(2000, 0, 1);
/** How far ahead of the local clock a tick may be (clock skew, not a bug upstream). */
export const MAX_FUTURE_MS = 5 * 60_000;
/** A plausible ticker: letters, digits and `/ . : - _ ^ =`, at most 32 characters. */
export const SYMBOL_RE = /^[A-Za-z0-9/.:\-_^=]{1,32}$/;

/**
 * Converts a Twelve Data timestamp to epoch milliseconds: values above 1e12 are already
 * milliseconds, smaller ones are seconds (possibly fractional).
 */
export function timestampToMs(timestamp: number): number {
  return timestamp > MS_THRESHOLD ? Math.round(timestamp) : Math.round(timestamp * 1000);
}

function optionalAmount(value: unknown): number | undefined | null {
  if (value === undefined || value === null) return undefined;
  return typeof value === "number" && Number.isFinite(value) && value >= 0 ? value : null;
}

function optionalText(value: unknown): string | undefined {
  return typeof value === "string" && value.length > 0 && value.length <= 100 ? value : undefined;
}

/**
 * Checks one tick from the client (either the pipeline's camelCase shape or Twelve Data's
 * snake_case `price` event: `timestamp` in seconds or ms, or `timeMs`) and returns a
 * `Tick`, or the reason it is unusable. Hand-written rather than a zod schema: it runs once
 * per tick on the hot path, after the client's own schema, and never throws.
 */
export function validateTick(
  raw: unknown,
  options: { nowMs?: number; receivedAt?: number } = {},
): TickValidation {
  if (typeof raw !== "object" || raw === null) return { ok: false, reason: "not an object" };
  const r = raw as Record<string, unknown>;
  const symbol = r.symbol;
  if (symbol === undefined || symbol === null || symbol === "") {
    return { ok: false, reason: "missing symbol" };
  }
  if (typeof symbol !== "string") return { ok: false, reason: "invalid symbol" };
  const price = r.price;
  if (price === undefined || price === null) return { ok: false, reason: "missing price" };
  if (typeof price !== "number") return { ok: false, reason: "invalid price" };
  let timeMs: number;
  if (r.timeMs !== undefined && r.timeMs !== null) {
    if (typeof r.timeMs !== "number" || !Number.isFinite(r.timeMs)) {
      return { ok: false, reason: "invalid timestamp" };
    }
    timeMs = Math.round(r.timeMs);
  } else if (r.timestamp !== undefined && r.timestamp !== null) {
    if (typeof r.timestamp !== "number" || !Number.isFinite(r.timestamp)) {
      return { ok: false, reason: "invalid timestamp" };
    }
    timeMs = timestampToMs(r.timestamp);
  } else {
    return { ok: false, reason: "missing timestamp" };
  }
  // The value rules are the fast path's: one place decides what a usable tick is.
  const reason = checkPriceFields({ symbol, price, timeMs }, options.nowMs ?? Date.now());
  if (reason !== undefined) return { ok: false, reason };
  const bid = optionalAmount(r.bid);
  if (bid === null) return { ok: false, reason: "invalid bid" };
  const ask = optionalAmount(r.ask);
  if (ask === null) return { ok: false, reason: "invalid ask" };
  const dayVolume = optionalAmount(r.dayVolume ?? r.day_volume);
  if (dayVolume === null) return { ok: false, reason: "invalid day_volume" };
  const receivedAt = typeof r.receivedAt === "number"
    ? r.receivedAt
    : options.receivedAt ?? performance.now();
  return {
    ok: true,
    tick: {
      symbol,
      timeMs,
      price,
      bid,
      ask,
      dayVolume,
      currencyBase: optionalText(r.currencyBase ?? r.currency_base),
      currencyQuote: optionalText(r.currencyQuote ?? r.currency_quote),
      currency: optionalText(r.currency),
      receivedAt,
    },
  };
}

/**
 * A `price` event as the Twelve Data client delivers it, already through its zod schema:
 * a non-empty symbol, finite numbers, price > 0, amounts >= 0, `timeMs` from 2000 on.
 */
export interface PriceFields {
  symbol: string;
  /** Event time, epoch milliseconds. */
  timeMs: number;
  price: number;
  bid?: number | undefined;
  ask?: number | undefined;
  day_volume?: number | undefined;
  currency_base?: string | undefined;
  currency_quote?: string | undefined;
}

/**
 * The checks `validateTick` makes that the client's schema does not (symbol charset and
 * length, `MAX_PRICE`, at most `MAX_FUTURE_MS` ahead): the rejection reason, or undefined
 * when the event is usable. The fast path for trusted events, allocation-free.
 */
export function checkPriceFields(event: PriceFields, nowMs: number): RejectReason | undefined {
  if (!SYMBOL_RE.test(event.symbol)) return "invalid symbol";
  if (!(event.price > 0 && event.price <= MAX_PRICE)) return "invalid price";
  const timeMs = event.timeMs;
  if (!(timeMs >= MIN_TIME_MS && timeMs <= nowMs + MAX_FUTURE_MS)) return "timestamp out of range";
  return undefined;
}

/** The asset name of an event's currency fields: "Bitcoin/US Dollar", "Bitcoin" or undefined. */
export function currencyName(
  base: string | undefined,
  quote: string | undefined,
): string | undefined {
  const b = optionalText(base);
  if (!b) return undefined;
  const q = optionalText(quote);
  return q ? `${b}/${q}` : b;
}

/** Counts rejected ticks by reason; the ingest task logs the counts rate-limited. */
export class RejectCounter {
  #counts = new Map<string, number>();
  #total = 0;

  /** Counts one rejection. */
  add(reason: string): void {
    this.#counts.set(reason, (this.#counts.get(reason) ?? 0) + 1);
    this.#total++;
  }

  /** All rejections so far. */
  get total(): number {
    return this.#total;
  }

  /** Counts per reason, e.g. `{ "invalid price": 3 }`. */
  byReason(): Record<string, number> {
    return Object.fromEntries(this.#counts);
  }
}
