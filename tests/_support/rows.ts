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
 * Throws, naming the first offending rows, unless the rows of each symbol were inserted in seq
 * order (the physical order of an append-only heap).
 */
export async function assertInsertedInOrder(sql: Sql): Promise<void> {
  const back = await sql<{ symbol: string; seq: string; prev: string; ctid: string }[]>`
    SELECT symbol, seq::text, prev::text, ctid::text FROM (
      SELECT symbol, seq, lag(seq) OVER (PARTITION BY symbol ORDER BY ctid) AS prev, ctid
      FROM crypto_ticks
    ) x WHERE seq < prev ORDER BY symbol, ctid LIMIT 5`;
  if (back.length > 0) {
    throw new Error(
      `Rows were not inserted in seq order: ${
        back.map((r) => `${r.symbol} seq ${r.seq} after ${r.prev} at ${r.ctid}`).join("; ")
      }`,
    );
  }
}
