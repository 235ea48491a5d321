import type { Sql } from "postgres";

/** Rows stored per symbol. */
export async function rowsBySymbol(sql: Sql): Promise<Record<string, number>> {
  const rows = await sql<{ symbol: string; n: number }[]>`
    SELECT symbol, count(*)::int AS n FROM crypto_ticks GROUP BY symbol`;
  return Object.fromEntries(rows.map((r) => [r.symbol, r.n]));
}

/** Rows stored, and how many of them repeat a (symbol, seq) already there. */
export async function countAndDuplicates(
  sql: Sql,
): Promise<{ rows: number; duplicates: number }> {
  const [r] = await sql<{ rows: number; duplicates: number }[]>`
    SELECT count(*)::int AS rows,
           (count(*) - count(DISTINCT (symbol, seq)))::int AS duplicates
    FROM crypto_ticks`;
  return r!;
}

/** How many stored rows repeat a (symbol, seq) already there. */
export async function duplicates(sql: Sql): Promise<number> {
  return (await countAndDuplicates(sql)).duplicates;
}

/**
 * Throws, naming the first offenders, unless each symbol's rows were committed in seq order:
 * every transaction's rows of a symbol come after the previous transaction's. Transactions
 * are ordered by xmin (the pipeline writes one at a time); ctid would not do, since a page's
 * space freed by an aborted insert (a connection cut mid-write) is reused by later ones.
 */
export async function assertInsertedInOrder(sql: Sql): Promise<void> {
  const back = await sql<{ symbol: string; min: string; prev: string; xid: string }[]>`
    SELECT symbol, min::text, prev::text, xid::text FROM (
      SELECT symbol, xid, min,
             max(max) OVER (PARTITION BY symbol ORDER BY xid
               ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev
      FROM (
        SELECT symbol, xmin::text::bigint AS xid, min(seq) AS min, max(seq) AS max
        FROM crypto_ticks GROUP BY symbol, xmin
      ) AS per_transaction
    ) AS x WHERE min < prev ORDER BY symbol, xid LIMIT 5`;
  if (back.length > 0) {
    throw new Error(
      `Rows were not committed in seq order: ${
        back.map((r) => `${r.symbol} seq ${r.min} (xid ${r.xid}) after ${r.prev}`).join("; ")
      }`,
    );
  }
}
