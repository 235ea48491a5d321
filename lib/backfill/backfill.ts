import type { Sql } from "postgres";
import { refreshCandles } from "../candles/refresh.ts";
import type { SchemaMode } from "../db/server_info.ts";
import { UserError } from "../errors.ts";
import { markUnfillable } from "../gaps/log.ts";
import { type Logger, silentLogger } from "../log.ts";
import { currencyName } from "../twelvedata/price.ts";
import { AuthError, TwelveDataError } from "../twelvedata/errors.ts";
import type { Bar, TwelveDataRest } from "../twelvedata/rest.ts";
import { type Clock, systemClock } from "../timers.ts";
import type { CreditGate } from "./credits.ts";
import type { FillChunk, FillPlan } from "./plan.ts";
import { storeChunk } from "./store.ts";

/** How far a backfill has got, for a progress display. */
export interface BackfillProgress {
  /** Chunks done (requested, or found to need no request) out of all of them. */
  chunksDone: number;
  chunks: number;
  requestsDone: number;
  requests: number;
  /** Minutes filled from bars so far. */
  bars: number;
  /** The chunk being worked on. */
  current: FillChunk | undefined;
  /** Set while the run waits for API credits. */
  waiting?: { ms: number; why: string } | undefined;
}

/** What a backfill did. */
export interface BackfillResult {
  requests: number;
  /** Minutes filled from bars. */
  bars: number;
  /** Gaps now filled. */
  filled: number;
  /** Gaps found unfillable now, with why. */
  unfillable: { gapId: number; symbol: string; detail: string }[];
  /** True when the run stopped early (aborted); run it again to resume. */
  interrupted: boolean;
}

/** Settings of `runBackfill`. */
export interface BackfillOptions {
  /** Built with `onResponse: (r) => gate.observe(r)`, so the gate sees the credit headers. */
  rest: TwelveDataRest;
  gate: CreditGate;
  /** TimescaleDB mode refreshes the aggregates over what each gap's fill changed. */
  mode: SchemaMode;
  clock?: Clock;
  logger?: Logger;
  /** Stops after the chunk in progress; what is stored stays, and a rerun resumes. */
  signal?: AbortSignal;
  onProgress?: (progress: BackfillProgress) => void;
  /** Attempts of a request failing for the network or a server error (default 5). */
  attempts?: number;
}

const NO_DATA = /no data is available/i;

interface GapTally {
  missing: number;
  stored: number;
  /** The end of where candles changed, for a refresh of the aggregates. */
  touchedToMs: number | undefined;
}

/**
 * Fills the plan's chunks in order: asks `/time_series` for each window with missing minutes
 * (1min bars, UTC, ascending), within the plan's credit limits (the gate waits out a 429
 * or an exhausted minute), stores the bars (`storeChunk`: idempotent, progress in the same
 * transaction, so an interrupted run resumes where it stopped), marks gaps the API refuses
 * as unfillable, and in TimescaleDB mode refreshes the aggregates over each filled gap.
 * Throws `AuthError` for a refused key, `DailyLimitError` when the day's credits are spent,
 * and a `UserError` when the API keeps failing.
 */
export async function runBackfill(
  sql: Sql,
  plan: FillPlan,
  options: BackfillOptions,
): Promise<BackfillResult> {
  const logger = options.logger ?? silentLogger;
  const clock = options.clock ?? systemClock;
  const attempts = options.attempts ?? 5;
  const result: BackfillResult = {
    requests: 0,
    bars: 0,
    filled: 0,
    unfillable: [],
    interrupted: false,
  };
  const progress: BackfillProgress = {
    chunksDone: 0,
    chunks: plan.chunks.length,
    requestsDone: 0,
    requests: plan.requests,
    bars: 0,
    current: undefined,
  };
  const skipped = new Set<number>();
  const tallies = new Map<number, GapTally>();
  const report = () => options.onProgress?.({ ...progress });

  const giveUp = async (chunk: FillChunk, ids: number[], detail: string) => {
    await markUnfillable(sql, ids, detail);
    for (const id of ids) {
      skipped.add(id);
      result.unfillable.push({ gapId: id, symbol: chunk.gap.symbol, detail });
    }
    logger.warn(`Cannot fill ${chunk.gap.symbol}: ${detail}`);
  };

  for (const chunk of plan.chunks) {
    if (options.signal?.aborted) {
      result.interrupted = true;
      break;
    }
    const gap = chunk.gap;
    progress.current = chunk;
    progress.chunksDone++;
    if (skipped.has(gap.id)) continue;
    const tally = tallies.get(gap.id) ?? { missing: 0, stored: 0, touchedToMs: undefined };
    tallies.set(gap.id, tally);
    tally.missing += chunk.missing;
    let bars: Bar[] = [];
    let assetName: string | null | undefined;
    if (chunk.missing > 0) {
      const answer = await request(chunk);
      if (answer === "aborted") {
        result.interrupted = true;
        break;
      }
      if (typeof answer === "string") {
        // A symbol the plan refuses is refused for all its gaps; a bad window, for this one.
        const ids = answer.startsWith("refused:")
          ? plan.chunks.filter((c) => c.gap.symbol === gap.symbol).map((c) => c.gap.id)
          : [gap.id];
        await giveUp(chunk, [...new Set(ids)], answer.replace(/^(refused|bad):/, ""));
        continue;
      }
      bars = answer.bars;
      assetName = answer.assetName;
    }
    const stored = await storeChunk(sql, chunk, bars, {
      assetName,
      reconcileVolume: gap.reason !== "dropped",
    });
    tally.stored += stored.stored;
    result.bars += stored.stored;
    progress.bars = result.bars;
    if (stored.touchedToMs !== undefined) {
      tally.touchedToMs = Math.max(tally.touchedToMs ?? -Infinity, stored.touchedToMs);
    }
    if (chunk.last) await finishGap(chunk, tally);
    report();
  }
  progress.current = undefined;
  report();
  return result;

  /** One request, retried through 429s and passing faults: bars, "aborted", or why not. */
  async function request(
    chunk: FillChunk,
  ): Promise<{ bars: Bar[]; assetName: string | null } | "aborted" | string> {
    let failures = 0;
    while (true) {
      const wait = options.gate.delay();
      if (wait.ms > 0) {
        progress.waiting = wait;
        report();
        await options.gate.ready(options.signal);
        progress.waiting = undefined;
      }
      if (options.signal?.aborted) return "aborted";
      try {
        const series = await options.rest.timeSeries(chunk.gap.symbol, {
          interval: "1min",
          startDate: new Date(chunk.fromMs),
          endDate: new Date(chunk.toMs),
          outputsize: 5000,
          order: "asc",
          timezone: "UTC",
        });
        options.gate.charged(1);
        result.requests++;
        progress.requestsDone++;
        const meta = series.meta;
        return {
          bars: series.bars,
          assetName: currencyName(meta.currency_base, meta.currency_quote) ?? null,
        };
      } catch (error) {
        if (error instanceof AuthError || !(error instanceof TwelveDataError)) throw error;
        if (error.code === 429) {
          options.gate.limited(error);
          logger.info("Twelve Data: out of API credits for now; waiting", {
            symbol: chunk.gap.symbol,
          });
          continue;
        }
        if (error.code === 400 && NO_DATA.test(error.message)) {
          options.gate.charged(1);
          result.requests++;
          progress.requestsDone++;
          return { bars: [], assetName: null };
        }
        if (error.code === 403 || error.code === 404) return `refused:${error.message}`;
        if (!error.retryable) return `bad:${error.message}`;
        failures++;
        if (failures >= attempts) {
          throw new UserError(
            `Cannot backfill: ${error.message} (${failures} attempts; run again to resume)`,
            { cause: error },
          );
        }
        const backoff = Math.min(30_000, 1000 * 2 ** (failures - 1));
        logger.warn(`Twelve Data request failed; retrying in ${backoff / 1000}s`, {
          error: error.message,
        });
        await clock.sleep(backoff, options.signal);
      }
    }
  }

  async function finishGap(chunk: FillChunk, tally: GapTally): Promise<void> {
    const gap = chunk.gap;
    const unfilled = tally.missing - tally.stored;
    const detail = tally.missing === 0
      ? "nothing to fill: no whole minute without ticks (ticks lost within a minute cannot be refilled)"
      : unfilled > 0
      ? `${tally.stored} minute(s) filled from REST bars; ${unfilled} minute(s) had no bar at the source`
      : `${tally.stored} minute(s) filled from REST bars`;
    await sql`
      UPDATE tickpipe_gaps SET detail = ${detail}, updated_at = now()
      WHERE gap_id = ${String(gap.id)}`;
    if (gap.end !== null) result.filled++;
    if (options.mode === "timescaledb" && tally.touchedToMs !== undefined) {
      // From the start of history: only what changed (or was never materialized) is recomputed.
      await refreshCandles(sql, { to: new Date(tally.touchedToMs) }, { logger });
    }
  }
}
