/**
 * seq across a lease handover: the previous holder may still write the ticks it held (or
 * spooled), and the new holder may receive ticks stamped before the takeover's second;
 * within each second the previous holder's ticks (which arrived first) sort first, and no
 * seq is used twice.
 */
import assert from "node:assert/strict";
import { TickSequencer } from "../lib/pipeline/sequencer.ts";
import type { Row } from "../lib/pipeline/batch.ts";
import type { PriceEvent } from "../lib/twelvedata/price.ts";
import { baseTimeMs, parsePriceFrame } from "./_support/ticks.ts";

const SYMBOL = "BTC/USD";

/** A tick stamped `timeMs` (a whole second, as Twelve Data stamps), priced `price`. */
function tick(timeMs: number, price: number) {
  return parsePriceFrame(
    { event: "price", symbol: SYMBOL, timestamp: timeMs / 1000, price, day_volume: 1 },
    timeMs,
  );
}

/** `sequencer`'s row of `event`, received at `arrivedMs` (epoch ms; default: its stamp). */
function assign(sequencer: TickSequencer, event: PriceEvent, arrivedMs = event.timeMs): Row {
  return sequencer.assignPrice(event, arrivedMs - performance.timeOrigin);
}

/** The rows' prices in seq order; fails if a seq is used twice. */
function bySeq(rows: Row[]): number[] {
  assert.equal(new Set(rows.map((r) => r.seq)).size, rows.length, "a seq used twice");
  return [...rows].sort((a, b) => a.seq - b.seq).map((r) => r.price);
}

Deno.test("A takeover: the previous holder's late-written ticks sort before the new holder's in each second, even those the new holder receives stamped before the takeover", () => {
  const s0 = baseTimeMs();
  const previous = new TickSequencer();
  const stored = [assign(previous, tick(s0, 1)), assign(previous, tick(s0, 2))];
  // Held while frozen, written after the takeover: seconds s0 to s0 + 2.
  const held = [tick(s0, 3), tick(s0 + 1000, 4), tick(s0 + 2000, 5), tick(s0 + 2000, 6)]
    .map((e) => assign(previous, e));

  const next = new TickSequencer();
  const last = stored.at(-1)!;
  next.takeOver(SYMBOL, { ...last, dayVolume: last.dayVolume }, s0 + 2300);
  // Late stamps (s0 + 1 s, s0), the takeover's second, then later seconds.
  const own = [
    tick(s0 + 1000, 7),
    tick(s0 + 2000, 8),
    tick(s0, 9),
    tick(s0 + 2000, 10),
    tick(s0 + 3000, 11),
    tick(s0 + 3000, 12),
  ].map((e) => assign(next, e));

  assert.deepEqual(bySeq([...stored, ...held, ...own]), [1, 2, 3, 9, 4, 7, 5, 6, 8, 10, 11, 12]);
  // The volume continues from the last stored tick.
  assert.equal(own[0]!.volume, 0);
});

Deno.test("A takeover whose subscription takes effect in the next second: the previous holder's ticks of that second sort first, no seq used twice", () => {
  const s0 = baseTimeMs();
  const previous = new TickSequencer();
  const stored = [assign(previous, tick(s0, 1))];
  // Received until the new holder's subscription took effect, early in s0 + 2 s.
  const held = [tick(s0 + 1000, 2), tick(s0 + 2000, 3), tick(s0 + 2000, 4)]
    .map((e) => assign(previous, e));

  // The lease taken late in s0 + 1 s; the first tick, stamped s0 + 2 s, follows the subscription.
  const next = new TickSequencer();
  next.takeOver(SYMBOL, { ...stored[0]! }, s0 + 1990);
  const own = [tick(s0 + 2000, 5), tick(s0 + 2000, 6), tick(s0 + 3000, 7)]
    .map((e) => assign(next, e));
  assert.deepEqual(bySeq([...stored, ...held, ...own]), [1, 2, 3, 4, 5, 6, 7]);

  // The same, the first tick stamped late (s0 + 1 s) but received in s0 + 2 s.
  const late = new TickSequencer();
  late.takeOver(SYMBOL, { ...stored[0]! }, s0 + 1990);
  const lateRows = [tick(s0 + 1000, 5), tick(s0 + 2000, 6), tick(s0 + 2000, 7)]
    .map((e) => assign(late, e, s0 + 2010));
  assert.deepEqual(bySeq([...stored, ...held, ...lateRows]), [1, 2, 5, 3, 4, 6, 7]);
});

Deno.test("A takeover in the second the previous holder took the lease itself: above its numbers from the middle", () => {
  const s0 = baseTimeMs();
  const first = new TickSequencer();
  first.takeOver(SYMBOL, undefined, s0 + 100);
  const firstRows = [tick(s0, 1), tick(s0, 2)].map((e) => assign(first, e));

  const second = new TickSequencer();
  const last = firstRows.at(-1)!;
  second.takeOver(SYMBOL, { ...last }, s0 + 900);
  const secondRows = [tick(s0, 3), tick(s0 + 1000, 4)].map((e) => assign(second, e));

  assert.deepEqual(bySeq([...firstRows, ...secondRows]), [1, 2, 3, 4]);
  assert.equal(secondRows[0]!.seq, last.seq + 100_000);
  assert.equal(secondRows[1]!.seq, (s0 + 1000) * 1000);

  // Taken over again later (its tick of s0 + 1 s not stored yet): a late tick of s0 goes above.
  const third = new TickSequencer();
  third.takeOver(SYMBOL, { ...secondRows[0]! }, s0 + 3500);
  const thirdRows = [tick(s0, 5), tick(s0 + 3000, 6)].map((e) => assign(third, e, s0 + 3600));
  assert.deepEqual(bySeq([...firstRows, ...secondRows, ...thirdRows]), [1, 2, 3, 5, 4, 6]);
});

Deno.test("Without a takeover, seq is the tick's µs plus its arrival ordinal; a late tick sorts first in its second", () => {
  const s0 = baseTimeMs();
  const sequencer = new TickSequencer();
  const rows = [tick(s0, 1), tick(s0, 2), tick(s0 + 1000, 3), tick(s0 + 5000, 4), tick(s0, 5)]
    .map((e) => assign(sequencer, e));
  assert.deepEqual(rows.map((r) => r.seq - s0 * 1000), [0, 1, 1_000_000, 5_000_000, 0]);
});
