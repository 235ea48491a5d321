/** The credit gate's arithmetic on a clock the test drives (no network, no database). */
import assert from "node:assert/strict";
import { CreditGate, DailyLimitError } from "../lib/backfill/credits.ts";
import { TwelveDataError } from "../lib/twelvedata/errors.ts";

function driven(startMs: number) {
  let now = startMs;
  const clock = {
    now: () => now,
    sleep: (ms: number) => {
      now += ms;
      return Promise.resolve();
    },
  };
  return { clock, advance: (ms: number) => now += ms };
}

const limited = (message: string) => new TwelveDataError(message, { code: 429, httpStatus: 200 });
const headers = (entries: Record<string, string>) => ({ headers: new Headers(entries) });

Deno.test("The credit gate waits for the next minute, a Retry-After hint, or its hourly budget", async () => {
  const minute = Date.UTC(2026, 2, 1, 10, 0);
  const { clock, advance } = driven(minute + 15_000);
  const waits: string[] = [];
  const gate = new CreditGate({
    clock,
    perHour: 3,
    onWait: (ms, why) => waits.push(`${ms} ${why}`),
  });
  assert.equal(gate.delay().ms, 0);
  // No credit left this minute: the next request waits for the next one, plus a second.
  gate.observe(headers({ "api-credits-used": "8", "api-credits-left": "0" }));
  assert.equal(gate.left, 0);
  assert.equal(gate.delay().ms, 46_000);
  await gate.ready();
  assert.equal(clock.now(), minute + 61_000);
  // A 429 with a hint: the hint wins over the minute.
  gate.observe(headers({ "retry-after": "3" }));
  gate.limited(limited("You have run out of API credits for the current minute."));
  assert.equal(gate.delay().ms, 3_000);
  await gate.ready();
  // Without one: the next minute (it is 10:01:04 now), plus a second.
  gate.observe(headers({}));
  gate.limited(limited("You have run out of API credits for the current minute."));
  assert.equal(gate.delay().ms, 57_000);
  await gate.ready();
  // Three credits an hour: the fourth waits until the first is an hour old.
  for (let i = 0; i < 3; i++) {
    gate.charged();
    advance(1_000);
  }
  const { ms, why } = gate.delay();
  assert.equal(ms, 3_600_000 - 3_000);
  assert.match(why, /budget of 3 credits an hour/);
  assert.equal(gate.used, 3);
  assert.equal(waits.length, 3);
  // The day's credits are gone: no waiting, a clear stop.
  assert.throws(
    () =>
      gate.limited(
        limited("You have run out of API credits for the day. 800 API credits were used"),
      ),
    (e) => e instanceof DailyLimitError && /midnight|daily API credits/.test(e.message),
  );
});
