import { join } from "node:path";
import {
  configFromFlags,
  exitWhenDone,
  loggerFor,
  numberFlag,
  parseFlags,
  runMain,
} from "../lib/cli.ts";
import { UsageError, UserError } from "../lib/errors.ts";
import { openDatabase } from "../lib/db/connection.ts";
import {
  discardQuarantine,
  importQuarantineFiles,
  quarantinedRows,
  type QuarantineFilter,
  quarantineSummary,
  replayQuarantine,
} from "../lib/pipeline/quarantine_admin.ts";
import { formatCount } from "../lib/text.ts";

const USAGE = `Usage: tickpipe quarantine [list|replay|discard] [--reason R] [--symbol S]
                          [--limit 20] [--yes]

Ticks the database refused (a CHECK constraint, a value out of range, an encoding error)
are set aside one by one in tickpipe_quarantine while the rest of their batch is written.
  list      (default) counts by reason and symbol, then the oldest --limit rows
  replay    writes them to crypto_ticks once the cause is fixed, exactly once (safe to run
            again, and while ingest runs); rows still refused stay, with the new reason
  discard   deletes them for good (needs --yes)
  --reason  only rows with this reason, condition name, SQLSTATE or constraint name
  --symbol  only rows of this symbol
Rows kept in files when even the table refused them (<data dir>/spool/quarantine/), and
batches set aside whole by earlier versions (<data dir>/spool/failed/), are moved into the
table first.`;

function iso(date: Date): string {
  return date.toISOString().slice(0, 19).replace("T", " ");
}

/** `tickpipe quarantine`: inspect, replay or discard the rows the database refused. */
export function run(args: string[]): Promise<number> {
  return runMain(async () => {
    const { values, positionals } = parseFlags(
      args,
      {
        reason: { type: "string" },
        symbol: { type: "string" },
        limit: { type: "string" },
        yes: { type: "boolean" },
      },
      USAGE,
      { maxPositionals: 1 },
    );
    const command = positionals[0] ?? "list";
    if (!["list", "replay", "discard"].includes(command)) {
      throw new UsageError(`Unknown command "${command}"\n${USAGE}`);
    }
    const limit = numberFlag("limit", values.limit, USAGE, { min: 0, integer: true }) ?? 20;
    const filter: QuarantineFilter = { reason: values.reason, symbol: values.symbol };
    const config = configFromFlags(values);
    const logger = loggerFor(config);
    const db = await openDatabase(config, { logger, max: 1 });
    try {
      const [table] = await db.sql<{ name: string | null }[]>`
        SELECT to_regclass('tickpipe_quarantine')::text AS name`;
      if (!table?.name) {
        throw new UserError(
          "Cannot read the quarantine: the schema is out of date (run `deno task setup`)",
        );
      }
      const imported = await importQuarantineFiles(db.sql, join(config.dataDir, "spool"));
      if (imported.files > 0) {
        console.log(
          `Moved ${
            formatCount(imported.rows)
          } rows from ${imported.files} file(s) into the quarantine`,
        );
      }
      if (command === "replay") {
        const r = await replayQuarantine(db.sql, filter);
        console.log(
          `Replayed: ${formatCount(r.stored)} rows stored, ${
            formatCount(r.alreadyStored)
          } already stored, ` +
            `${formatCount(r.refused)} refused again (still quarantined)`,
        );
        return 0;
      }
      const groups = await quarantineSummary(db.sql, filter);
      const total = groups.reduce((n, g) => n + g.rows, 0);
      if (command === "discard") {
        if (!values.yes) {
          throw new UsageError(`discard deletes ${formatCount(total)} rows for good: add --yes`);
        }
        console.log(`Discarded ${formatCount(await discardQuarantine(db.sql, filter))} rows`);
        return 0;
      }
      console.log(`${formatCount(total)} quarantined rows`);
      for (const g of groups) {
        console.log(
          `  ${formatCount(g.rows).padStart(9)}  ${g.symbol.padEnd(12)} ${g.reason}  ` +
            `(${iso(g.first)} .. ${iso(g.last)} UTC): ${g.message}`,
        );
      }
      if (limit > 0 && total > 0) {
        console.log(`\nid        time (UTC)           symbol       price            seq  attempts`);
        for (const r of await quarantinedRows(db.sql, filter, limit)) {
          console.log(
            `${r.id.padEnd(9)} ${iso(r.time)}  ${r.symbol.padEnd(12)} ${
              String(r.price).padStart(12)
            } ${r.seq.padStart(16)}  ${r.attempts}`,
          );
        }
      }
      return 0;
    } finally {
      await db.close();
    }
  });
}

if (import.meta.main) exitWhenDone(await run(Deno.args));
