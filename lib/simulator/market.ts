import type { Instrument } from "./catalog.ts";
import { hashUnit, mulberry32 } from "./prng.ts";
import { MinuteTape, type SimBar } from "./tape.ts";

const DAY_MS = 86_400_000;

/** The live state of one instrument: a random walk plus a running day volume. */
export interface Quote {
  instrument: Instrument;
  price: number;
  dayVolume: number;
  /** UTC day number `dayVolume` belongs to (it resets at the UTC day boundary). */
  day: number;
  /** Price events of this symbol handed to open sockets. */
  sent: number;
  /** The frame text up to `"timestamp":`, built once. */
  prefix: string;
}

function decimalsFor(instrument: Instrument, price: number): number {
  if (instrument.assetClass === "forex") return price >= 20 ? 3 : 5;
  if (price >= 1000) return 2;
  if (price >= 1) return 4;
  return 8;
}

function round(value: number, decimals: number): number {
  const factor = 10 ** decimals;
  return Math.round(value * factor) / factor;
}

function prefixFor(instrument: Instrument): string {
  const head = `{"event":"price","symbol":${JSON.stringify(instrument.symbol)},`;
  switch (instrument.assetClass) {
    case "crypto":
      return head +
        `"currency_base":${JSON.stringify(instrument.currency_base)},"currency_quote":${
          JSON.stringify(instrument.currency_quote)
        },"exchange":${JSON.stringify(instrument.exchange)},"type":"Digital Currency","timestamp":`;
    case "stock":
      return head +
        `"currency":${JSON.stringify(instrument.currency)},"exchange":${
          JSON.stringify(instrument.exchange)
        },"mic_code":${JSON.stringify(instrument.mic_code)},"type":"Common Stock","timestamp":`;
    case "forex":
      return head +
        `"currency_base":${JSON.stringify(instrument.currency_base)},"currency_quote":${
          JSON.stringify(instrument.currency_quote)
        },"type":"Physical Currency","timestamp":`;
  }
}

/**
 * Seeded random walks for a set of instruments, rendered as Twelve Data price frames; every
 * tick is recorded on `tape`, the ground truth of the REST bars.
 */
export class Market {
  readonly quotes = new Map<string, Quote>();
  readonly seed: number;
  readonly tape = new MinuteTape();
  #random: () => number;

  constructor(instruments: Iterable<Instrument>, seed: number) {
    this.seed = seed;
    this.#random = mulberry32(seed);
    for (const instrument of instruments) this.add(instrument);
  }

  /** Adds an instrument (no-op when present); returns its live state. */
  add(instrument: Instrument): Quote {
    let quote = this.quotes.get(instrument.symbol);
    if (!quote) {
      quote = {
        instrument,
        price: instrument.price,
        dayVolume: 0,
        day: -1,
        sent: 0,
        prefix: prefixFor(instrument),
      };
      this.quotes.set(instrument.symbol, quote);
    }
    return quote;
  }

  /** A number in [0, 1) from the market's seeded sequence. */
  random(): number {
    return this.#random();
  }

  /** Advances `quote` one step and returns its price frame, stamped in whole seconds. */
  tick(quote: Quote, nowMs: number): string {
    const instrument = quote.instrument;
    const volatility = instrument.assetClass === "forex" ? 0.00005 : 0.0004;
    const step = (this.#random() + this.#random() - 1) * volatility;
    // Pull back toward the starting price so a long run stays plausible.
    const drift = (instrument.price - quote.price) / instrument.price * 0.001;
    quote.price *= 1 + step + drift;
    const decimals = decimalsFor(instrument, quote.price);
    const price = round(quote.price, decimals);
    const seconds = Math.floor(nowMs / 1000);
    let frame = quote.prefix + seconds + ',"price":' + price;
    if (instrument.assetClass !== "stock") {
      const half = quote.price * (instrument.assetClass === "forex" ? 0.00002 : 0.0001) *
        (0.5 + this.#random());
      frame += ',"bid":' + round(quote.price - half, decimals) + ',"ask":' +
        round(quote.price + half, decimals);
    }
    let volume: number | undefined;
    if (instrument.assetClass !== "forex") {
      const day = Math.floor(nowMs / DAY_MS);
      if (day !== quote.day) {
        quote.day = day;
        quote.dayVolume = 0;
      }
      volume = 1 + Math.floor(this.#random() * 100);
      quote.dayVolume += volume;
      frame += ',"day_volume":' + quote.dayVolume;
    }
    this.tape.record(instrument.symbol, seconds * 1000, price, volume);
    return frame + "}";
  }
}

/** Length of each supported bar interval in ms. */
export const INTERVAL_MS: Readonly<Record<string, number>> = {
  "1min": 60_000,
  "5min": 300_000,
  "15min": 900_000,
  "30min": 1_800_000,
  "45min": 2_700_000,
  "1h": 3_600_000,
  "2h": 7_200_000,
  "4h": 14_400_000,
  "8h": 28_800_000,
  "1day": DAY_MS,
};

// A deterministic price at any instant: two slow waves plus per-minute noise, so bars
// of any interval agree with each other and with repeated calls.
function priceAt(instrument: Instrument, seed: number, timeMs: number): number {
  const minute = Math.floor(timeMs / 60_000);
  const phase = hashUnit(seed, instrument.symbol) * Math.PI * 2;
  const wave = 0.03 * Math.sin(minute / 1440 * Math.PI * 2 + phase) +
    0.01 * Math.sin(minute / 97 + phase * 3);
  const noise = (hashUnit(seed, instrument.symbol, minute) - 0.5) * 0.002;
  return instrument.price * (1 + wave + noise);
}

/**
 * A synthetic bar of `instrument` starting at `startMs`, deterministic for a seed: the
 * history before the simulator started.
 */
export function barAt(
  instrument: Instrument,
  seed: number,
  startMs: number,
  intervalMs: number,
): SimBar {
  const decimals = decimalsFor(instrument, instrument.price);
  const open = priceAt(instrument, seed, startMs);
  const close = priceAt(instrument, seed, startMs + intervalMs - 60_000);
  const spread = instrument.price * 0.0005 * Math.sqrt(intervalMs / 60_000);
  const high = Math.max(open, close) + spread * hashUnit(seed, "h", instrument.symbol, startMs);
  const low = Math.min(open, close) - spread * hashUnit(seed, "l", instrument.symbol, startMs);
  const bar: SimBar = {
    startMs,
    open: round(open, decimals),
    high: round(high, decimals),
    low: round(low, decimals),
    close: round(close, decimals),
  };
  if (instrument.assetClass === "stock") {
    bar.volume = Math.floor(
      (intervalMs / 60_000) * (1000 + 9000 * hashUnit(seed, "v", instrument.symbol, startMs)),
    );
  }
  return bar;
}
