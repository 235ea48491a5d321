/** One 1-minute bar as numbers; the REST layer renders it with strings. */
export interface SimBar {
  startMs: number;
  open: number;
  high: number;
  low: number;
  close: number;
  /** Sum of the minute's volume increments; absent when the instrument has none (forex). */
  volume?: number;
}

interface SymbolTape {
  bars: Map<number, SimBar>;
  /** The bar being formed (the latest minute), for a cheap per-tick update. */
  current: SimBar | undefined;
}

const MINUTE_MS = 60_000;

/**
 * The simulator's ground truth for REST: the 1-minute bars of every tick the market
 * generated, whether a socket took it or not (a disconnected client misses ticks, the
 * market does not stop). Bounded: the oldest minutes of a symbol are forgotten past
 * `maxMinutes`.
 */
export class MinuteTape {
  #symbols = new Map<string, SymbolTape>();
  #maxMinutes: number;

  constructor(options: { maxMinutes?: number } = {}) {
    // Two weeks of minutes per symbol: enough for a 7-day backfill against the simulator.
    this.#maxMinutes = options.maxMinutes ?? 20_160;
  }

  /** Records one tick: `timeMs` as stamped in its frame (whole seconds), its rounded price. */
  record(symbol: string, timeMs: number, price: number, volume: number | undefined): void {
    let tape = this.#symbols.get(symbol);
    if (!tape) {
      tape = { bars: new Map(), current: undefined };
      this.#symbols.set(symbol, tape);
    }
    const minute = timeMs - (timeMs % MINUTE_MS);
    let bar = tape.current;
    if (!bar || bar.startMs !== minute) {
      bar = tape.bars.get(minute);
      if (!bar) {
        bar = { startMs: minute, open: price, high: price, low: price, close: price };
        if (volume !== undefined) bar.volume = 0;
        tape.bars.set(minute, bar);
        if (tape.bars.size > this.#maxMinutes) {
          tape.bars.delete(tape.bars.keys().next().value!);
        }
      }
      tape.current = bar;
    }
    if (price > bar.high) bar.high = price;
    if (price < bar.low) bar.low = price;
    bar.close = price;
    if (volume !== undefined) bar.volume = (bar.volume ?? 0) + volume;
  }

  /** The recorded bar of `symbol` starting at `minuteMs`, if any tick fell in it. */
  bar(symbol: string, minuteMs: number): SimBar | undefined {
    return this.#symbols.get(symbol)?.bars.get(minuteMs);
  }
}

/** Aggregates consecutive bars into one (first open, max high, min low, last close, volume sum). */
export function mergeBars(startMs: number, bars: SimBar[]): SimBar | undefined {
  const first = bars[0];
  if (!first) return undefined;
  const merged: SimBar = {
    startMs,
    open: first.open,
    high: first.high,
    low: first.low,
    close: bars[bars.length - 1]!.close,
  };
  for (const bar of bars) {
    if (bar.high > merged.high) merged.high = bar.high;
    if (bar.low < merged.low) merged.low = bar.low;
    if (bar.volume !== undefined) merged.volume = (merged.volume ?? 0) + bar.volume;
  }
  return merged;
}
