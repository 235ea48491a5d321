/**
 * The lease rules as pure functions: when a standby takes a free lock, and which held ticks
 * a holder that lost its lease keeps. The processes that apply them are tested against a
 * real database in lease_test.ts and lease_process_test.ts.
 */
import assert from "node:assert/strict";
import { keptOf } from "../lib/lease/held_ticks.ts";
import { judge } from "../lib/lease/lease_rules.ts";
import type { LockAttempt } from "../lib/lease/lease_session.ts";

function attempt(overrides: Partial<LockAttempt>): LockAttempt {
  return {
    symbol: "BTC/USD",
    lockKey: 1,
    got: true,
    holder: "other",
    host: "db1",
    pid: 42,
    since: new Date(0),
    releasedAt: null,
    renewedSinceOurs: true,
    graceOver: true,
    stale: true,
    ...overrides,
  };
}

function verdict(a: LockAttempt, seenHeld: string[] = []) {
  return judge([a], {
    holderId: "me",
    owned: new Set(),
    seenHeld: new Set(seenHeld),
    acquiring: true,
  });
}

Deno.test("A free lock is taken at once when released, and once its holder's row is stale when its session ended", () => {
  assert.deepEqual(verdict(attempt({ holder: null, releasedAt: new Date(0) })).take, ["BTC/USD"]);
  // Freed while we watched, but the holder renewed lately: it may be reconnecting.
  const fresh = verdict(attempt({ stale: false }), ["BTC/USD"]);
  assert.deepEqual(fresh.take, []);
  assert.deepEqual(fresh.giveBack, [1]);
  assert.deepEqual(fresh.deferred, ["BTC/USD"]);
  assert.deepEqual(verdict(attempt({ stale: true }), ["BTC/USD"]).take, ["BTC/USD"]);
  // A new session (a database restart): stale is not enough before the grace is over.
  const restart = attempt({ renewedSinceOurs: false, graceOver: false });
  assert.deepEqual(verdict(restart).take, []);
  assert.deepEqual(verdict({ ...restart, graceOver: true }).take, ["BTC/USD"]);
});

Deno.test("Held ticks found stored are discarded, the others kept, once the stored rows are complete", () => {
  const tick = (s: number, price: number, dv: number) => ({
    symbol: "BTC/USD",
    timeMs: s * 1000,
    price,
    day_volume: dv,
  });
  const row = (t: ReturnType<typeof tick>) => ({
    timeMs: t.timeMs,
    price: t.price,
    dayVolume: t.day_volume,
  });
  const held = [tick(10, 1, 1), tick(10, 2, 2), tick(11, 3, 3), tick(11, 4, 4)];
  // The new holder subscribed after the second tick: it stored the last two.
  assert.deepEqual(
    keptOf(held, { rows: held.slice(2).map(row), latestMs: 11_000 }),
    [true, true, false, false],
  );
  // Its rows stop short of the last held tick, nothing later stored: not yet known.
  assert.equal(keptOf(held, { rows: held.slice(2, 3).map(row), latestMs: 11_000 }), undefined);
  assert.equal(keptOf(held, { rows: [], latestMs: undefined }), undefined);
  // Nothing of them stored, but a later tick: it subscribed after this process stopped.
  assert.deepEqual(keptOf(held, { rows: [], latestMs: 12_000 }), [true, true, true, true]);
  // A late tick (stamped before the others) it received is found wherever it lies.
  const late = [...held, tick(9, 5, 5)];
  assert.deepEqual(
    keptOf(late, { rows: [row(late[4]!), ...held.slice(3).map(row)], latestMs: 11_000 }),
    [true, true, true, false, false],
  );
});
