/**
 * The feed stages, in a worker: how fast the simulator's frames arrive at a socket that
 * only counts them, and how fast the Twelve Data client parses and checks them (no
 * database).
 */
import type { Logger } from "../log.ts";
import { TwelveDataClient } from "../twelvedata/mod.ts";
import type { JobOf, WorkerResult } from "./jobs.ts";
import { wallNow } from "./latency.ts";
import { Meter } from "./meter.ts";

/** The start of every price frame the simulator sends. */
const PRICE_PREFIX = '{"event":"price"';

/** Counting ticks until `target`, with the times of the first and the last. */
class Tally {
  done = 0;
  rejected = 0;
  firstAt = NaN;
  lastAt = NaN;
  readonly finished = Promise.withResolvers<void>();
  /** Gives up (finishes short of the target) when nothing arrives for 30 s. */
  readonly meter = new Meter({ onStall: () => this.finished.resolve() });

  constructor(readonly target: number) {}

  /** Counts one tick; true once the target is reached. */
  add(ok: boolean): void {
    if (this.done + this.rejected === 0) this.firstAt = wallNow();
    if (ok) this.done++;
    else this.rejected++;
    const n = this.done + this.rejected;
    if ((n & 1023) === 0) this.meter.progress(n);
    if (n === this.target) {
      this.lastAt = wallNow();
      this.finished.resolve();
    }
  }

  result(reading: { cpuUs: number; samples: WorkerResult["samples"] }): WorkerResult {
    return {
      done: this.done,
      rejected: this.rejected,
      firstAt: this.firstAt,
      lastAt: this.lastAt,
      cpuUs: reading.cpuUs,
      hookUs: 0,
      stalled: this.meter.stalled,
      samples: reading.samples,
      latency: null,
      queryable: null,
      pipeline: null,
    };
  }
}

/** Simulator → a WebSocket that only counts price frames: the feed's own ceiling. */
export async function countFrames(job: JobOf<"count">): Promise<WorkerResult> {
  const tally = new Tally(job.ticks);
  tally.meter.start();
  const ws = new WebSocket(job.feed.wsUrl, { headers: { "X-TD-APIKEY": job.feed.apiKey } });
  ws.onopen = () =>
    ws.send(
      JSON.stringify({ action: "subscribe", params: { symbols: job.feed.symbols.join(",") } }),
    );
  ws.onmessage = (event) => {
    if (typeof event.data === "string" && event.data.startsWith(PRICE_PREFIX)) tally.add(true);
  };
  const closed = new Promise<void>((resolve) => ws.onclose = () => resolve());
  ws.onerror = () => {};
  await Promise.race([tally.finished.promise, closed]);
  const reading = tally.meter.stop();
  ws.close();
  await closed;
  return tally.result(reading);
}

/**
 * Simulator → the Twelve Data client (frame parsing, the event schema) → the checks the
 * pipeline makes before it takes an event (`pushPrice`'s) → nothing: the parse ceiling.
 */
export async function parseFrames(job: JobOf<"parse">, logger: Logger): Promise<WorkerResult> {
  const tally = new Tally(job.ticks);
  const client = new TwelveDataClient({
    apiKey: job.feed.apiKey,
    wsUrl: job.feed.wsUrl,
    apiUrl: job.feed.apiUrl,
    logger,
    onEvent: (event) => {
      // The client's parse is the one check of a tick: what reaches here is valid.
      if (event.event === "price") tally.add(true);
    },
  });
  tally.meter.start();
  client.subscribe(job.feed.symbols);
  await Promise.race([client.start(), tally.finished.promise]);
  await Promise.race([tally.finished.promise, client.closed]);
  const reading = tally.meter.stop();
  await client.close();
  const result = tally.result(reading);
  result.rejected += client.stats().malformed;
  return result;
}
