import type { Sql } from "postgres";
import type { Row } from "../../lib/pipeline/batch.ts";
import { TickSequencer } from "../../lib/pipeline/sequencer.ts";
import { parseFrame, type PriceEvent } from "../../lib/twelvedata/mod.ts";

/**
 * A whole second an hour before the test process started, so seeding (which looks back 48 h)
 * sees test ticks. Fixed for the process: rows made twice (`makeRows`) are equal even when a
 * second boundary passes between the calls.
 */
const BASE_TIME_MS = Math.floor(Date.now() / 1000) * 1000 - 3600_000;

/** See `BASE_TIME_MS`. */
export function baseTimeMs(): number {
  return BASE_TIME_MS;
}

/**
 * `n` synthetic `price` frames as Twelve Data sends them (timestamps in whole seconds) over
 * `symbols` symbols, `perSecond` per timestamp, from `startMs`; `offset` continues a series.
 */
export function priceFrames(
  n: number,
  options: { symbols?: number; perSecond?: number; startMs?: number; offset?: number } = {},
): string[] {
  const symbols = options.symbols ?? 5;
  const perSecond = options.perSecond ?? 50;
  const start = options.startMs ?? baseTimeMs();
  const offset = options.offset ?? 0;
  const frames: string[] = [];
  for (let j = 0; j < n; j++) {
    const i = j + offset;
    const s = i % symbols;
    frames.push(JSON.stringify({
      event: "price",
      symbol: `T${s}/USD`,
      timestamp: (start + Math.floor(i / perSecond) * 1000) / 1000,
      price: 100 + s + (i % 100) / 10,
      bid: 99 + s,
      ask: 101 + s,
      day_volume: 1000 + i,
      currency_base: `Token ${s}`,
      currency_quote: "US Dollar",
    }));
  }
  return frames;
}

/** Parses a frame as the client does; throws unless it is a valid price event. */
export function parsePriceFrame(frame: string | object, nowMs?: number): PriceEvent {
  const event = parseFrame(typeof frame === "string" ? frame : JSON.stringify(frame), nowMs);
  if (event.event !== "price") {
    throw new Error(`Not a valid price frame (${JSON.stringify(event)}): ${String(frame)}`);
  }
  return event;
}

/** `priceFrames`, parsed as the client parses them. */
export function priceEvents(
  n: number,
  options: Parameters<typeof priceFrames>[1] = {},
): PriceEvent[] {
  return priceFrames(n, options).map((frame) => parsePriceFrame(frame));
}

/** `n` sequenced rows (see `priceFrames`). */
export function makeRows(n: number, options: { symbols?: number; offset?: number } = {}): Row[] {
  const sequencer = new TickSequencer();
  return priceEvents(n, options).map((e) => sequencer.assignPrice(e, performance.now()));
}

/** A tick as stored, for candle tests: exact volumes, and seq from time and ordinal. */
export interface CandleTick {
  symbol: string;
  /** Milliseconds since epoch (whole seconds, like Twelve Data). */
  time: number;
  /** Arrival ordinal among the symbol's ticks with this timestamp. */
  ordinal: number;
  price: number;
  volume: string | null;
  dayVolume: string | null;
}

/** The tick's seq, as the sequencer assigns it: time in microseconds plus the ordinal. */
export const seqOf = (t: CandleTick) => BigInt(t.time) * 1000n + BigInt(t.ordinal);

/** Inserts `ticks` into crypto_ticks in one statement. */
export async function insertTicks(sql: Sql, ticks: CandleTick[]): Promise<void> {
  await sql`
    INSERT INTO crypto_ticks ("time", symbol, price, day_volume, volume, seq)
    SELECT * FROM unnest(
      ${ticks.map((t) => new Date(t.time).toISOString())}::timestamptz[],
      ${ticks.map((t) => t.symbol)}::text[],
      ${ticks.map((t) => t.price)}::float8[],
      ${ticks.map((t) => t.dayVolume)}::numeric[],
      ${ticks.map((t) => t.volume)}::numeric[],
      ${ticks.map((t) => seqOf(t).toString())}::bigint[])`;
}
