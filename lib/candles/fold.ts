import type { Candle } from "./query.ts";

/** Sum of two NUMERIC values written as decimal strings ("12", "-0.5"), exact. */
export function addDecimal(a: string, b: string): string {
  const [ia, fa = ""] = a.split(".");
  const [ib, fb = ""] = b.split(".");
  const places = Math.max(fa.length, fb.length);
  const scaled = (int: string, frac: string) => {
    const negative = int.startsWith("-");
    const digits = BigInt((negative ? int.slice(1) : int) + frac.padEnd(places, "0"));
    return negative ? -digits : digits;
  };
  const sum = scaled(ia!, fa) + scaled(ib!, fb);
  if (places === 0) return sum.toString();
  const negative = sum < 0n;
  const digits = (negative ? -sum : sum).toString().padStart(places + 1, "0");
  const frac = digits.slice(-places).replace(/0+$/, "");
  const int = digits.slice(0, -places);
  return `${negative ? "-" : ""}${int}${frac ? "." + frac : ""}`;
}

/**
 * One candle from consecutive candles of one symbol, ordered by bucket, exactly as the
 * continuous aggregates re-aggregate a level into the next: open of the first, close of the
 * last, day volume of the last that has one (filled minutes have none), max high, min low,
 * sums of volume, pv, ticks and filled minutes (NULLs ignored, NULL when all are), vwap =
 * pv / volume. `bucket` is the result's bucket.
 */
export function foldCandles(candles: readonly Candle[], bucket: Date): Candle {
  const first = candles[0];
  const last = candles[candles.length - 1];
  if (!first || !last) throw new RangeError("Cannot fold candles: none given");
  let high = -Infinity;
  let low = Infinity;
  let volume: string | null = null;
  let pv: number | null = null;
  let ticks = 0;
  let filled = 0;
  let dayVolume: string | null = null;
  for (const c of candles) {
    if (c.symbol !== first.symbol) {
      throw new RangeError(`Cannot fold candles: "${c.symbol}" among "${first.symbol}"`);
    }
    high = Math.max(high, c.high);
    low = Math.min(low, c.low);
    if (c.volume !== null) volume = volume === null ? c.volume : addDecimal(volume, c.volume);
    if (c.pv !== null) pv = (pv ?? 0) + c.pv;
    ticks += c.ticks;
    filled += c.filled;
    if (c.dayVolume !== null) dayVolume = c.dayVolume;
  }
  const volumeNumber = volume === null ? 0 : Number(volume);
  return {
    bucket,
    symbol: first.symbol,
    open: first.open,
    high,
    low,
    close: last.close,
    volume,
    vwap: pv === null || volumeNumber === 0 ? null : pv / volumeNumber,
    ticks,
    dayVolume,
    pv,
    filled,
  };
}
