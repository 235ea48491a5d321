import type { PriceEvent } from "../twelvedata/price.ts";

/**
 * The pipeline's former camelCase tick, still built by tasks/_bench_pipeline.ts and
 * tasks/_bench_writer.ts. Delete this file (and `IngestPipeline.push`,
 * `TickSequencer.assign`) once they build `PriceEvent`s.
 */
export interface LegacyTick {
  symbol: string;
  timeMs: number;
  price: number;
  bid?: number;
  ask?: number;
  dayVolume?: number;
  currencyBase?: string;
  currencyQuote?: string;
  receivedAt: number;
}

/** The price event a legacy tick stands for (trusted: the benches build valid ones). */
export function priceEventOf(tick: LegacyTick): PriceEvent {
  return {
    event: "price",
    symbol: tick.symbol,
    timestamp: tick.timeMs,
    timeMs: tick.timeMs,
    price: tick.price,
    bid: tick.bid,
    ask: tick.ask,
    day_volume: tick.dayVolume,
    currency_base: tick.currencyBase,
    currency_quote: tick.currencyQuote,
  };
}
