import { z } from "zod";
import {
  configFromFlags,
  exitWhenDone,
  loggerFor,
  parseFlags,
  parseOptions,
  runMain,
  stopSignal,
} from "../lib/cli.ts";
import { UsageError, UserError } from "../lib/errors.ts";
import { openDatabase } from "../lib/db/connection.ts";
import { instantOption, readCandleMode } from "../lib/candles/mod.ts";
import { type BackfillResult, runBackfill } from "../lib/backfill/backfill.ts";
import { CreditGate, DailyLimitError } from "../lib/backfill/credits.ts";
import { historyGaps } from "../lib/backfill/history.ts";
import { describePlan, planFill } from "../lib/backfill/plan.ts";
import { ProgressReporter } from "../lib/backfill/progress.ts";
import { checkGapSchema, listGaps } from "../lib/gaps/log.ts";
import { findCrashedRuns, liveSymbols } from "../lib/gaps/runs.ts";
import { clientOptionsFromConfig, splitSymbols } from "../lib/twelvedata/mod.ts";
import { AuthError } from "../lib/twelvedata/errors.ts";
import { TwelveDataRest } from "../lib/twelvedata/rest.ts";
import { formatCount } from "../lib/text.ts";
import { errorText } from "../lib/text.ts";

const USAGE =
  `Usage: tickpipe backfill --gaps [--symbols S1,S2] [--from TIME] [--to TIME] [--yes] [--dry-run]
       tickpipe backfill --symbols BTC/USD,AAPL (--days N | --from TIME) [--to TIME] [--yes] [--dry-run]

Fills missing minutes from Twelve Data's REST 1-minute bars (/time_series, at most 4,999
minutes a request, 1 API credit each):
  --gaps          the open gaps of the gap log (deno task gaps), optionally of --symbols
                  and overlapping --from/--to
  --symbols ...   without --gaps: load history for a new deployment, the last --days N
                  days (or --from TIME) up to --to (default now)
It says what the run costs first and asks before spending credits (--yes skips the
question; it is required when stdin is not a terminal; --dry-run only prints the cost).
It waits out the plan's per-minute limit, stops at the daily one, resumes where it stopped
when run again, and never overwrites a minute that has ticks. TIME is an ISO date or
date-time, UTC unless it has an offset. Ctrl-C stops after the request in progress.`;

const DAY_MS = 86_400_000;

const OptionsSchema = z.object({
  gaps: z.boolean().default(false),
  symbols: z.string().optional(),
  days: z.coerce.number({ error: () => "--days must be a whole number from 1 to 3650" })
    .int("--days must be a whole number from 1 to 3650")
    .min(1, "--days must be a whole number from 1 to 3650")
    .max(3650, "--days must be a whole number from 1 to 3650")
    .optional(),
  from: z.string().optional(),
  to: z.string().optional(),
  yes: z.boolean().default(false),
  "dry-run": z.boolean().default(false),
}).transform((o, ctx) => {
  const fail = (message: string) => ctx.addIssue({ code: "custom", message });
  const symbols = splitSymbols(o.symbols ?? "");
  if (o.symbols !== undefined && symbols.length === 0) fail("--symbols needs at least one symbol");
  let from = instantOption(ctx, "--from", o.from);
  const to = instantOption(ctx, "--to", o.to);
  if (!o.gaps) {
    if (symbols.length === 0) fail("give --gaps, or --symbols with --days N or --from TIME");
    if (o.days !== undefined && from !== undefined) fail("give --days or --from, not both");
    if (o.days === undefined && from === undefined) fail("--symbols needs --days N or --from TIME");
  } else if (o.days !== undefined) {
    fail("--days loads history: it does not go with --gaps (use --from/--to)");
  }
  const end = to ?? new Date();
  if (o.days !== undefined) from = new Date(end.getTime() - o.days * DAY_MS);
  if (from && from.getTime() >= end.getTime()) fail("--from must be before --to");
  return {
    gaps: o.gaps,
    symbols,
    from,
    to,
    end,
    yes: o.yes,
    dryRun: o["dry-run"],
  };
});

const encoder = new TextEncoder();

function summary(result: BackfillResult): string {
  const parts = [
    `${formatCount(result.filled)} gap(s) filled`,
    `${formatCount(result.bars)} minute(s) from REST bars`,
    `${formatCount(result.requests)} request(s) = ${formatCount(result.requests)} API credit(s)`,
  ];
  if (result.unfillable.length > 0) {
    parts.push(`${formatCount(result.unfillable.length)} unfillable`);
  }
  return parts.join(", ");
}

/** `tickpipe backfill`: fills recorded gaps, or loads history, from REST 1-minute bars. */
export function run(args: string[]): Promise<number> {
  return runMain(async () => {
    const { values } = parseFlags(
      args,
      {
        gaps: { type: "boolean" },
        symbols: { type: "string" },
        days: { type: "string" },
        from: { type: "string" },
        to: { type: "string" },
        yes: { type: "boolean", short: "y" },
        "dry-run": { type: "boolean" },
      },
      USAGE,
      { maxPositionals: 0 },
    );
    const options = parseOptions(OptionsSchema, values, USAGE);
    const config = configFromFlags(values);
    const logger = loggerFor(config);
    const twelveData = clientOptionsFromConfig(config.twelveData);
    const db = await openDatabase(config, { logger, max: 2 });
    using stop = stopSignal();
    try {
      await checkGapSchema(db.sql, "backfill");
      const mode = await readCandleMode(db.sql);
      await findCrashedRuns(db.sql, { logger });
      // History gaps are written to the log only once the run goes ahead: a dry run, or a
      // question answered no, leaves the log as it was.
      const plan = async (record: boolean) =>
        await planFill(
          db.sql,
          options.gaps
            ? await listGaps(db.sql, {
              symbols: options.symbols,
              from: options.from,
              to: options.to,
              states: ["open"],
            })
            : await historyGaps(db.sql, options.symbols, { from: options.from!, to: options.end }, {
              record,
            }),
          { nowMs: Date.now(), live: await liveSymbols(db.sql) },
        );
      const estimate = await plan(false);

      const gate = new CreditGate({
        onWait: (ms, why) => logger.debug(`${why} (${Math.ceil(ms / 1000)} s)`),
      });
      const rest = new TwelveDataRest({ ...twelveData, onResponse: (r) => gate.observe(r) });
      let usage: Parameters<typeof describePlan>[1];
      if (estimate.requests > 0) {
        try {
          const u = await rest.apiUsage();
          usage = { perMinute: u.plan_limit, perDay: u.plan_daily_limit, usedToday: u.daily_usage };
        } catch (error) {
          if (error instanceof AuthError) throw error;
          logger.debug("Cannot read the plan's limits (/api_usage)", {
            error: errorText(error),
          });
        }
      }
      console.log(describePlan(estimate, usage));
      if (estimate.waiting.length > 0) {
        console.log(
          `${estimate.waiting.length} ongoing gap(s) of symbols a running ingest streams are left ` +
            "to it: it fills them once the stream is back.",
        );
      }
      if (options.dryRun || estimate.chunks.length === 0) return 0;
      if (estimate.requests > 0 && !options.yes) {
        if (!Deno.stdin.isTerminal()) {
          throw new UsageError(
            `Cannot ask whether to spend ${estimate.requests} API credit(s): stdin is not a terminal (pass --yes to go ahead)`,
          );
        }
        if (!confirm(`Spend ${estimate.requests} API credit(s)?`)) {
          console.log("Cancelled: nothing was requested.");
          return 0;
        }
      }

      const terminal = Deno.stderr.isTerminal();
      const progress = new ProgressReporter({
        terminal,
        write: (text) => Deno.stderr.writeSync(encoder.encode(text)),
        columns: () => {
          try {
            return Deno.consoleSize().columns;
          } catch {
            return 80;
          }
        },
      });
      let result: BackfillResult;
      try {
        result = await runBackfill(db.sql, options.gaps ? estimate : await plan(true), {
          rest,
          gate,
          mode,
          logger,
          signal: stop.signal,
          onProgress: (p) => progress.update(p),
        });
      } catch (error) {
        if (error instanceof DailyLimitError) {
          throw new UserError(
            `${error.message}. Run the same command after midnight UTC: it resumes where it stopped.`,
          );
        }
        throw error;
      } finally {
        progress.done();
      }
      if (result.interrupted) {
        console.log(`Interrupted: ${summary(result)}. Run the same command again to resume.`);
        return 1;
      }
      console.log(`Done: ${summary(result)}.`);
      for (const u of result.unfillable) {
        console.log(`Unfillable: ${u.symbol} (gap ${u.gapId}): ${u.detail}`);
      }
      return 0;
    } finally {
      await db.close();
    }
  });
}

if (import.meta.main) exitWhenDone(await run(Deno.args));
