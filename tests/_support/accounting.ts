/**
 * Loss accounting across a change of owner: the rows of a symbol, in seq order, must be
 * what the first owner's connection was sent, cut short, followed by all the next owner's
 * connection was sent. What is cut is exactly what the hand-over cost.
 */
import assert from "node:assert/strict";
import type { Sql } from "postgres";
import type { SimulatorHandle } from "../../lib/simulator/mod.ts";
import { duplicates } from "./rows.ts";

/** The rows of `symbol` as "epoch seconds|price", in seq order. */
export async function storedTicks(sql: Sql, symbol: string): Promise<string[]> {
  const rows = await sql<{ ts: string; price: number }[]>`
    SELECT extract(epoch FROM "time")::bigint::text AS ts, price FROM crypto_ticks
    WHERE symbol = ${symbol} ORDER BY seq`;
  return rows.map((r) => `${r.ts}|${r.price}`);
}

/** The price frames connection `id` was sent for `symbol`, as "epoch seconds|price". */
export function sentTicks(sim: SimulatorHandle, id: number, symbol: string): string[] {
  return sim.framesSent(id, symbol).map((frame) => {
    const f = JSON.parse(frame) as { timestamp: number; price: number };
    return `${f.timestamp}|${f.price}`;
  });
}

/** Ids of the simulator's connections, in the order they opened. */
export function connectionIds(sim: SimulatorHandle): number[] {
  return Object.keys(sim.stats().by_connection).map(Number).sort((a, b) => a - b);
}

/**
 * Asserts that the stored rows of `symbol` are a prefix of what `first` was sent followed
 * by everything `next` was sent, and returns how many of `first`'s ticks are missing: those
 * sent after the last one it stored, in the hand-over window.
 */
export async function assertHandedOver(
  sql: Sql,
  sim: SimulatorHandle,
  symbol: string,
  first: number,
  next: number,
): Promise<{ firstStored: number; nextStored: number; lost: number }> {
  const stored = await storedTicks(sql, symbol);
  const a = sentTicks(sim, first, symbol);
  const b = sentTicks(sim, next, symbol);
  const k = stored.length - b.length;
  assert.ok(
    k >= 0 && k <= a.length,
    `${symbol}: ${stored.length} rows, sent ${a.length} + ${b.length}`,
  );
  assert.deepEqual(stored.slice(k), b, `${symbol}: the next owner's rows are all it was sent`);
  assert.deepEqual(
    stored.slice(0, k),
    a.slice(0, k),
    `${symbol}: the first owner's rows, in order`,
  );
  return { firstStored: k, nextStored: b.length, lost: a.length - k };
}

/** A stored or sent tick as "epoch seconds|price|day volume". */
async function storedContent(sql: Sql, symbol: string): Promise<string[]> {
  const rows = await sql<{ ts: string; price: number; day_volume: string | null }[]>`
    SELECT extract(epoch FROM "time")::bigint::text AS ts, price, day_volume::text AS day_volume
    FROM crypto_ticks WHERE symbol = ${symbol}`;
  return rows.map((r) => `${r.ts}|${r.price}|${r.day_volume === null ? "" : Number(r.day_volume)}`)
    .sort();
}

/** Every distinct tick the simulator sent for `symbol`, to any connection. */
function sentContent(sim: SimulatorHandle, symbol: string): string[] {
  const ticks = new Set<string>();
  for (const id of connectionIds(sim)) {
    for (const frame of sim.framesSent(id, symbol)) {
      const f = JSON.parse(frame) as { timestamp: number; price: number; day_volume?: number };
      ticks.add(`${f.timestamp}|${f.price}|${f.day_volume ?? ""}`);
    }
  }
  return [...ticks].sort();
}

/**
 * Each symbol's rows are the distinct ticks the simulator sent (to whichever connection),
 * each once, but for at most `reported` ticks in all, which a holder reported as possibly
 * lost. Returns how many are missing.
 */
export async function assertEachSentTickOnce(
  sql: Sql,
  sim: SimulatorHandle,
  symbols: string[],
  reported: number,
): Promise<number> {
  let absent = 0;
  for (const symbol of symbols) {
    const stored = await storedContent(sql, symbol);
    const sent = sentContent(sim, symbol);
    const sentSet = new Set(sent);
    assert.equal(new Set(stored).size, stored.length, `${symbol}: a tick stored twice`);
    assert.deepEqual(stored.filter((t) => !sentSet.has(t)), [], `${symbol}: rows never sent`);
    absent += sent.length - stored.length;
  }
  assert.ok(absent <= reported, `${absent} ticks sent but not stored, ${reported} reported`);
  assert.equal(await duplicates(sql), 0);
  return absent;
}
