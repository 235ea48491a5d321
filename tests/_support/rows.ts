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

/** Rows of each symbol were inserted in seq order (physical order of an append-only heap). */
export async function insertedInOrder(sql: Sql): Promise<boolean> {
  const [r] = await sql<{ bad: number }[]>`
    SELECT count(*)::int AS bad FROM (
      SELECT seq < lag(seq) OVER (PARTITION BY symbol ORDER BY ctid) AS back FROM crypto_ticks
    ) x WHERE back`;
  return r!.bad === 0;
}
