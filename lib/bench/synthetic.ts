import { generatedInstruments } from "../simulator/catalog.ts";
import { mulberry32 } from "../simulator/prng.ts";
import type { PriceEvent } from "../twelvedata/mod.ts";

/**
 * Price events shaped as the Twelve Data client delivers them (the simulator's SYMnnn/USD
 * crypto frames, parsed), made in process: no WebSocket, no JSON. `next()` makes one per
 * call (~0.1 µs), 1,000 a second of event time ending now, over `symbols` random walks.
 */
export function syntheticEvents(symbols: number, ticks: number, seed = 1): () => PriceEvent {
  const instruments = generatedInstruments(symbols);
  const prices = instruments.map((i) => i.price);
  const volumes = instruments.map(() => 0);
  const random = mulberry32(seed);
  const startS = Math.floor(Date.now() / 1000) - Math.ceil(ticks / 1000);
  let i = 0;
  return () => {
    const k = Math.floor(random() * instruments.length);
    const instrument = instruments[k]!;
    const price = prices[k]! * (1 + (random() - 0.5) * 0.0008);
    prices[k] = price;
    volumes[k]! += 1 + Math.floor(random() * 100);
    const timestamp = startS + Math.floor(i++ / 1000);
    return {
      event: "price",
      symbol: instrument.symbol,
      currency_base: instrument.currency_base,
      currency_quote: instrument.currency_quote,
      exchange: instrument.exchange,
      type: "Digital Currency",
      timestamp,
      price: Math.round(price * 1e4) / 1e4,
      bid: Math.round(price * 0.9999 * 1e4) / 1e4,
      ask: Math.round(price * 1.0001 * 1e4) / 1e4,
      day_volume: volumes[k]!,
      timeMs: timestamp * 1000,
    };
  };
}
