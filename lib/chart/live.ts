import {
  type Candle,
  CANDLE_INTERVALS,
  type CandleInterval,
  type CandleQuery,
  foldCandles,
} from "../candles/mod.ts";
import { type Logger, silentLogger } from "../log.ts";
import { errorText } from "../text.ts";

/** What a live subscriber receives: a candle that changed, or the database's state. */
export type LiveEvent =
  | { type: "candle"; interval: CandleInterval; candle: Candle }
  | { type: "status"; ok: true }
  | { type: "status"; ok: false; error: string };

/** A timer handle, as the global `setTimeout` returns it. */
export type TimerId = ReturnType<typeof setTimeout>;

/** Settings of a `LiveFeed`. */
export interface LiveFeedOptions {
  /** Reads candles (e.g. `fetchCandles` on the pool); only minute candles are asked for. */
  read: (query: CandleQuery) => Promise<Candle[]>;
  /** Turns a failed read into the one line subscribers are shown. */
  describeError: (error: unknown) => string;
  /** Milliseconds between the end of one poll and the start of the next (default 1000). */
  pollMs?: number;
  /** The clock (default `Date.now`). */
  now?: () => number;
  /** Timers (default the global ones), so tests can drive the polls. */
  setTimeout?: (fn: () => void, ms: number) => TimerId;
  clearTimeout?: (id: TimerId) => void;
  logger?: Logger;
}

const MINUTE_MS = 60_000;
const DAY_MS = 86_400_000;
/** Width of each interval; every one divides a UTC day, so buckets are epoch multiples. */
export const INTERVAL_MS: Record<CandleInterval, number> = {
  "1m": MINUTE_MS,
  "1h": 3_600_000,
  "1d": DAY_MS,
};

const bucketStart = (ms: number, interval: CandleInterval) =>
  Math.floor(ms / INTERVAL_MS[interval]) * INTERVAL_MS[interval];

interface Subscription {
  interval: CandleInterval;
  listener: (event: LiveEvent) => void;
  /** False until it has been sent the current candle of its interval. */
  primed: boolean;
}

/** What the feed holds for one watched symbol. */
interface SymbolState {
  subscriptions: Set<Subscription>;
  /** Minute candles by bucket (ms): all of them from `knownFrom` on. */
  minutes: Map<number, Candle>;
  /** Every minute candle at or after this instant is in `minutes` (undefined: none read). */
  knownFrom: number | undefined;
  /** The newest minute bucket read. */
  newest: number | undefined;
}

/**
 * Live candles for the chart: subscribers name a symbol and an interval and receive each
 * candle of it that changes. One poll per watched symbol and period, whatever the number
 * of subscribers and intervals: it reads the symbol's newest minute candles (from the
 * previous newest minute on, so a tick that lands late in the minute before is seen),
 * and builds the hourly and daily candles by folding the minutes of the current hour or
 * day, which it reads once when the first such subscriber arrives. Each poll thus reads
 * only the ticks of the last minute or two, never the day's in portable mode.
 *
 * When a read fails, every subscriber gets a status event with the reason; when reads
 * succeed again, a status `ok` event. A tick older than the previous minute that lands
 * after its minute was read is not sent (the next full read of the range shows it).
 */
export class LiveFeed {
  #options: LiveFeedOptions;
  #pollMs: number;
  #now: () => number;
  #setTimeout: (fn: () => void, ms: number) => TimerId;
  #clearTimeout: (id: TimerId) => void;
  #logger: Logger;
  #symbols = new Map<string, SymbolState>();
  #error: string | undefined;
  #timer: TimerId | undefined;
  #polling: Promise<void> | undefined;
  #closed = false;

  constructor(options: LiveFeedOptions) {
    this.#options = options;
    this.#pollMs = options.pollMs ?? 1000;
    this.#now = options.now ?? Date.now;
    this.#setTimeout = options.setTimeout ?? ((fn, ms) => setTimeout(fn, ms));
    this.#clearTimeout = options.clearTimeout ?? ((id) => clearTimeout(id));
    this.#logger = options.logger ?? silentLogger;
  }

  /** Symbols watched right now. */
  get symbols(): string[] {
    return [...this.#symbols.keys()];
  }

  /**
   * Starts sending `symbol`'s `interval` candles to `listener` (from the next poll on:
   * first the current candle, then each change). Returns the function that stops it.
   */
  subscribe(
    symbol: string,
    interval: CandleInterval,
    listener: (event: LiveEvent) => void,
  ): () => void {
    if (this.#closed) throw new Error("Cannot subscribe: the live feed is closed");
    let state = this.#symbols.get(symbol);
    if (!state) {
      state = {
        subscriptions: new Set(),
        minutes: new Map(),
        knownFrom: undefined,
        newest: undefined,
      };
      this.#symbols.set(symbol, state);
    }
    const subscription: Subscription = { interval, listener, primed: false };
    state.subscriptions.add(subscription);
    if (this.#error !== undefined) {
      this.#deliver(subscription, { type: "status", ok: false, error: this.#error });
    }
    this.#schedule();
    return () => {
      state.subscriptions.delete(subscription);
      if (state.subscriptions.size === 0 && this.#symbols.get(symbol) === state) {
        this.#symbols.delete(symbol);
      }
    };
  }

  /** Polls every watched symbol once (the timer calls this; so can a caller). */
  poll(): Promise<void> {
    this.#polling ??= this.#pollAll().finally(() => {
      this.#polling = undefined;
    });
    return this.#polling;
  }

  /** Stops polling; waits for a poll in progress. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer !== undefined) this.#clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#polling;
    this.#symbols.clear();
  }

  #schedule(): void {
    if (this.#closed || this.#timer !== undefined) return;
    this.#timer = this.#setTimeout(async () => {
      await this.poll();
      this.#timer = undefined;
      if (this.#symbols.size > 0) this.#schedule();
    }, this.#pollMs);
  }

  async #pollAll(): Promise<void> {
    let error: string | undefined;
    for (const [symbol, state] of [...this.#symbols]) {
      try {
        await this.#pollSymbol(symbol, state);
      } catch (caught) {
        error = this.#options.describeError(caught);
        break;
      }
    }
    // Said once per outage; a new subscriber hears the latest reason.
    if (error !== undefined && this.#error === undefined) {
      this.#logger.warn(`Live candles paused: ${error}`);
      this.#broadcast({ type: "status", ok: false, error });
    } else if (error === undefined && this.#error !== undefined) {
      this.#logger.info("Live candles resumed");
      this.#broadcast({ type: "status", ok: true });
    }
    this.#error = error;
  }

  #broadcast(event: LiveEvent): void {
    for (const state of this.#symbols.values()) {
      for (const subscription of state.subscriptions) this.#deliver(subscription, event);
    }
  }

  async #pollSymbol(symbol: string, state: SymbolState): Promise<void> {
    const coarsest = CANDLE_INTERVALS.findLast((interval) =>
      [...state.subscriptions].some((s) => s.interval === interval)
    );
    if (!coarsest) return;
    const now = this.#now();
    const anchor = state.newest ?? bucketStart(now, "1m");
    // Re-read from the minute before the newest: a late tick may still land in it.
    const recent = anchor - MINUTE_MS;
    // The current buckets of the subscribed intervals need every minute from here on; a
    // new, coarser subscriber makes this earlier than what is held, and one read fills it.
    const needed = bucketStart(recent, coarsest);
    const reload = state.knownFrom === undefined || needed < state.knownFrom;
    const from = reload ? needed : Math.max(state.knownFrom!, recent);
    const rows = await this.#options.read({
      symbol,
      interval: "1m",
      from: new Date(from),
      // Ticks may be ahead of this clock (the pipeline accepts 5 minutes of skew).
      to: new Date(now + DAY_MS),
    });
    if (this.#symbols.get(symbol) !== state) return; // unsubscribed meanwhile
    if (reload) state.knownFrom = from;
    const changed: number[] = [];
    for (const row of rows) {
      const ms = row.bucket.getTime();
      const before = state.minutes.get(ms);
      state.minutes.set(ms, row);
      state.newest = Math.max(state.newest ?? ms, ms);
      // Minutes filled in by a reload are history, not news.
      if (ms >= recent && (!before || JSON.stringify(before) !== JSON.stringify(row))) {
        changed.push(ms);
      }
    }
    for (const subscription of state.subscriptions) {
      const { interval } = subscription;
      if (subscription.primed) {
        const buckets = [...new Set(changed.map((ms) => bucketStart(ms, interval)))];
        for (const bucket of buckets.sort((a, b) => a - b)) {
          this.#deliver(subscription, this.#event(state, interval, bucket));
        }
      } else if (state.newest !== undefined) {
        // A new subscriber starts with the current candle of its interval.
        this.#deliver(
          subscription,
          this.#event(state, interval, bucketStart(state.newest, interval)),
        );
      }
      subscription.primed = true;
    }
    this.#prune(state, coarsest);
  }

  #event(state: SymbolState, interval: CandleInterval, bucket: number): LiveEvent {
    return { type: "candle", interval, candle: this.#candle(state, interval, bucket) };
  }

  #deliver(subscription: Subscription, event: LiveEvent): void {
    try {
      subscription.listener(event);
    } catch (error) {
      // A subscriber that cannot take an event (a closed stream) must not stop the others.
      this.#logger.debug(`Live subscriber failed: ${errorText(error)}`);
    }
  }

  /** The `interval` candle starting at `bucket`, folded from the minutes held. */
  #candle(state: SymbolState, interval: CandleInterval, bucket: number): Candle {
    const end = bucket + INTERVAL_MS[interval];
    const minutes = [...state.minutes.entries()]
      .filter(([ms]) => ms >= bucket && ms < end)
      .sort(([a], [b]) => a - b)
      .map(([, candle]) => candle);
    return foldCandles(minutes, new Date(bucket));
  }

  /** Forgets the minutes that no current bucket needs any more. */
  #prune(state: SymbolState, coarsest: CandleInterval): void {
    if (state.newest === undefined) return;
    const keepFrom = bucketStart(state.newest - MINUTE_MS, coarsest);
    if (keepFrom <= state.knownFrom!) return;
    for (const ms of state.minutes.keys()) if (ms < keepFrom) state.minutes.delete(ms);
    state.knownFrom = keepFrom;
  }
}
