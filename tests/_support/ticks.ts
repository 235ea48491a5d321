import type { Row } from "../../lib/pipeline/sequencer.ts";
import { TickSequencer } from "../../lib/pipeline/sequencer.ts";
import type { Tick } from "../../lib/pipeline/tick.ts";

/** A whole second, an hour ago, so seeding (which looks back 48 h) sees test ticks. */
export function baseTimeMs(): number {
  return Math.floor(Date.now() / 1000) * 1000 - 3600_000;
}

/** `n` synthetic ticks over `symbols` symbols, `perSecond` per whole-second timestamp. */
export function makeTicks(
  n: number,
  options: { symbols?: number; perSecond?: number; startMs?: number; offset?: number } = {},
): Tick[] {
  const symbols = options.symbols ?? 5;
  const perSecond = options.perSecond ?? 50;
  const start = options.startMs ?? baseTimeMs();
  const offset = options.offset ?? 0;
  const ticks: Tick[] = [];
  for (let j = 0; j < n; j++) {
    const i = j + offset;
    const s = i % symbols;
    ticks.push({
      symbol: `T${s}/USD`,
      timeMs: start + Math.floor(i / perSecond) * 1000,
      price: 100 + s + (i % 100) / 10,
      bid: 99 + s,
      ask: 101 + s,
      dayVolume: 1000 + i,
      currencyBase: `Token ${s}`,
      currencyQuote: "US Dollar",
      receivedAt: performance.now(),
    });
  }
  return ticks;
}

/** `n` sequenced rows (see `makeTicks`). */
export function makeRows(n: number, options: { symbols?: number; offset?: number } = {}): Row[] {
  const sequencer = new TickSequencer();
  return makeTicks(n, options).map((t) => sequencer.assign(t));
}
