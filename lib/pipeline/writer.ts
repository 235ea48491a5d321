import { finished } from "node:stream/promises";
import type { Sql, TransactionSql } from "postgres";
import type { Batch, Row } from "./batch.ts";

/** How a batch is sent: `COPY ... FROM STDIN` or one `INSERT ... SELECT FROM unnest(...)`. */
export type WriteMethod = "copy" | "unnest";

/** `written`: committed now; `landed`: a previous attempt had already committed it. */
export type WriteOutcome = "written" | "landed";

/** Settings of `TickWriter`. */
export interface WriterOptions {
  /**
   * Default "unnest": one atomic statement, robust when connections die (see `#writeCopy`);
   * "copy" is slower through postgres.js 3.4.9 (Nagle's algorithm: ~40 ms per COPY; compare
   * with `deno task bench --method copy`).
   */
  method?: WriteMethod;
  /** The `crypto_assets.name` for a symbol not yet known to this process. */
  assetName?: (symbol: string) => string | undefined;
  /** Test hook: runs right after a COMMIT succeeded; throwing makes the outcome "unknown". */
  afterCommit?: (batch: Batch) => void;
}

const COPY_CHUNK_ROWS = 2000;

/** One element of a PostgreSQL array literal, quoted and escaped. */
function quoteElement(text: string): string {
  return '"' + text.replaceAll("\\", "\\\\").replaceAll('"', '\\"') + '"';
}

/** A text[] literal; null elements become NULL. */
function arrayLiteral(items: (string | null)[]): string {
  return "{" + items.map((x) => (x === null ? "NULL" : quoteElement(x))).join(",") + "}";
}
const LANDED = Symbol("landed");

/** The unnest write's eight array literals, in `crypto_ticks` column order. */
type UnnestColumns = [string, string, string, string, string, string, string, string];

/**
 * Writes batches of sequenced rows to `crypto_ticks`, each in one transaction together
 * with its `tickpipe_batches` record. The record is inserted first with ON CONFLICT DO
 * NOTHING: when it already exists the batch landed before (a retry after a COMMIT whose
 * outcome was lost, or a spool chunk drained twice) and the transaction is rolled back.
 */
export class TickWriter {
  #sql: Sql;
  #method: WriteMethod;
  #assetName: (symbol: string) => string | undefined;
  #afterCommit: ((batch: Batch) => void) | undefined;
  #known = new Set<string>();
  #isoMs = NaN;
  #iso = "";
  #columns: [
    unknown[],
    unknown[],
    unknown[],
    unknown[],
    unknown[],
    unknown[],
    unknown[],
    unknown[],
  ] = [[], [], [], [], [], [], [], []];
  #quotedSymbols = new Map<string, string>();
  /** A batch encoded ahead of its write (`prepare`). */
  #prepared: { batch: Batch; columns: UnnestColumns } | undefined;

  constructor(sql: Sql, options: WriterOptions = {}) {
    this.#sql = sql;
    this.#method = options.method ?? "unnest";
    this.#assetName = options.assetName ?? (() => undefined);
    this.#afterCommit = options.afterCommit;
  }

  /** The method in use. */
  get method(): WriteMethod {
    return this.#method;
  }

  /** Writes `batch` in one transaction; throws on any database error (the caller retries). */
  async write(batch: Batch): Promise<WriteOutcome> {
    const rows = batch.rows;
    let fresh: string[] | undefined;
    for (let i = 0; i < rows.length; i++) {
      const symbol = rows[i]!.symbol;
      if (this.#known.has(symbol)) continue;
      fresh ??= [];
      if (!fresh.includes(symbol)) fresh.push(symbol);
    }
    const names = (fresh ?? []).map((s) => this.#assetName(s) ?? null);
    const outcome = this.#method === "copy"
      ? await this.#writeCopy(batch, fresh ?? [], names)
      : await this.#writeUnnest(batch, fresh ?? [], names);
    if (fresh) { for (const s of fresh) this.#known.add(s); }
    if (outcome === "written") this.#afterCommit?.(batch);
    return outcome;
  }

  /**
   * The rows committed under this batch id, undefined when none has: 0 means the batch was
   * split (see `markSplit`), its rows committed under the ids of its parts.
   */
  async committedRows(batchId: string): Promise<number | undefined> {
    const rows = await this.#sql<{ rows: number }[]>`
      SELECT rows FROM tickpipe_batches WHERE batch_id = ${batchId}`;
    return rows[0]?.rows;
  }

  /**
   * Records that the batch `batchId` was refused and is being written in parts (0 rows under
   * its own id), before any part commits: a later attempt to write it whole (the same spool
   * chunk drained again, after the cause was fixed) then finds it "landed" and is split
   * again, instead of duplicating the parts. Returns the rows committed under the id: 0, or
   * more when the whole batch had committed after all.
   */
  async markSplit(batchId: string): Promise<number> {
    const [row] = await this.#sql<{ rows: number }[]>`
      WITH mark AS (
        INSERT INTO tickpipe_batches (batch_id, rows) VALUES (${batchId}, 0)
        ON CONFLICT (batch_id) DO NOTHING RETURNING rows
      )
      SELECT rows FROM mark
      UNION ALL
      SELECT rows FROM tickpipe_batches WHERE batch_id = ${batchId}
      LIMIT 1`;
    return row?.rows ?? 0;
  }

  /** Deletes batch records older than `olderThanDays` (default 7); returns how many. */
  async prune(options: { olderThanDays?: number } = {}): Promise<number> {
    const days = options.olderThanDays ?? 7;
    const result = await this.#sql`
      DELETE FROM tickpipe_batches WHERE committed_at < now() - make_interval(days => ${days})`;
    return result.count;
  }

  /**
   * Encodes `batch` for its write now, ahead of time: the write loop calls it for the next
   * spool chunk while the current batch commits, so the encoding overlaps the database's
   * work. Holds one batch; unnest method only.
   */
  prepare(batch: Batch): void {
    if (this.#method !== "unnest") return;
    this.#prepared = { batch, columns: this.#encode(batch.rows) };
  }

  /**
   * The unnest parameters of `rows`: eight array literals, built from reused column arrays of
   * the rows' own values, joined once: flat strings and no per-row garbage (about twice as
   * fast as concatenating them, 5000-row batches), and independent of postgres.js's
   * array-type fetch (pools may set fetch_types: false).
   */
  #encode(rows: Row[]): UnnestColumns {
    const n = rows.length;
    const [t, s, p, dv, b, a, v, q] = this.#columns;
    for (const column of this.#columns) column.length = n;
    for (let i = 0; i < n; i++) {
      const r = rows[i]!;
      t[i] = r.timeMs;
      s[i] = this.#quoted(r.symbol);
      p[i] = r.price;
      dv[i] = r.dayVolume ?? "NULL";
      b[i] = r.bid ?? "NULL";
      a[i] = r.ask ?? "NULL";
      v[i] = r.volume ?? "NULL";
      q[i] = r.seq;
    }
    const columns = this.#columns.map((column) => "{" + column.join(",") + "}") as UnnestColumns;
    for (const column of this.#columns) column.length = 0;
    return columns;
  }

  /** `symbol` as an array element, quoted once per symbol. */
  #quoted(symbol: string): string {
    let quoted = this.#quotedSymbols.get(symbol);
    if (quoted === undefined) {
      if (this.#quotedSymbols.size >= 10_000) this.#quotedSymbols.clear();
      quoted = quoteElement(symbol);
      this.#quotedSymbols.set(symbol, quoted);
    }
    return quoted;
  }

  #isoTime(ms: number): string {
    // Ticks of one batch mostly share a handful of whole-second timestamps.
    if (ms !== this.#isoMs) {
      this.#isoMs = ms;
      this.#iso = new Date(ms).toISOString();
    }
    return this.#iso;
  }

  /**
   * BEGIN, batch record, assets, COPY, COMMIT through `sql.begin`. Beware postgres.js 3.4.9:
   * when the connection dies mid-transaction, its automatic ROLLBACK can write to the
   * closed socket from a setImmediate and crash the process (porsager/postgres#1154, #1208).
   */
  async #writeCopy(batch: Batch, fresh: string[], names: (string | null)[]) {
    try {
      await this.#sql.begin(async (tx) => {
        const guard = await tx`
          INSERT INTO tickpipe_batches (batch_id, rows) VALUES (${batch.id}, ${batch.rows.length})
          ON CONFLICT (batch_id) DO NOTHING RETURNING 1`;
        if (guard.length === 0) throw LANDED;
        if (fresh.length > 0) {
          await tx`
            INSERT INTO crypto_assets (symbol, name)
            SELECT * FROM unnest(${arrayLiteral(fresh)}::text[], ${arrayLiteral(names)}::text[])
            ON CONFLICT (symbol) DO UPDATE SET name = EXCLUDED.name
            WHERE crypto_assets.name IS NULL AND EXCLUDED.name IS NOT NULL`;
        }
        if (batch.rows.length > 0) await this.#copy(tx, batch.rows);
      });
    } catch (error) {
      if (error === LANDED) return "landed";
      throw error;
    }
    return "written";
  }

  async #copy(tx: TransactionSql, rows: Row[]): Promise<void> {
    const stream = await tx`
      COPY crypto_ticks ("time", symbol, price, day_volume, bid, ask, volume, seq) FROM STDIN`
      .writable();
    let failure: Error | undefined;
    let onFailure: ((error: Error) => void) | undefined;
    stream.on("error", (error: Error) => {
      failure = error;
      onFailure?.(error);
    });
    for (let start = 0; start < rows.length; start += COPY_CHUNK_ROWS) {
      const end = Math.min(rows.length, start + COPY_CHUNK_ROWS);
      let text = "";
      for (let i = start; i < end; i++) {
        const r = rows[i]!;
        text += this.#isoTime(r.timeMs) + "\t" + r.symbol + "\t" + r.price + "\t" +
          (r.dayVolume ?? "\\N") + "\t" + (r.bid ?? "\\N") + "\t" + (r.ask ?? "\\N") + "\t" +
          (r.volume ?? "\\N") + "\t" + r.seq + "\n";
      }
      if (failure) throw failure;
      if (!stream.write(text)) {
        await new Promise<void>((resolve, reject) => {
          onFailure = reject;
          stream.once("drain", () => resolve());
        });
      }
    }
    stream.end();
    await finished(stream);
  }

  /**
   * One statement, hence one transaction without BEGIN/COMMIT round trips (and nothing
   * sent on a connection after it died): the batch record, the assets and the rows, the
   * latter two only when the record was new.
   */
  async #writeUnnest(batch: Batch, fresh: string[], names: (string | null)[]) {
    const n = batch.rows.length;
    const prepared = this.#prepared?.batch === batch ? this.#prepared : undefined;
    if (prepared) this.#prepared = undefined;
    const [times, symbols, prices, dayVolumes, bids, asks, volumes, seqs] = prepared?.columns ??
      this.#encode(batch.rows);
    const freshList = arrayLiteral(fresh);
    const nameList = arrayLiteral(names);
    // Epoch milliseconds as int8 keep the time conversion exact (and identical to COPY's).
    const [result] = await this.#sql<{ inserted: number }[]>`
      WITH guard AS (
        INSERT INTO tickpipe_batches (batch_id, rows) VALUES (${batch.id}, ${n})
        ON CONFLICT (batch_id) DO NOTHING RETURNING 1
      ), assets AS (
        INSERT INTO crypto_assets (symbol, name)
        SELECT * FROM unnest(${freshList}::text[], ${nameList}::text[])
        WHERE EXISTS (SELECT 1 FROM guard)
        ON CONFLICT (symbol) DO UPDATE SET name = EXCLUDED.name
        WHERE crypto_assets.name IS NULL AND EXCLUDED.name IS NOT NULL
      ), ticks AS (
        INSERT INTO crypto_ticks ("time", symbol, price, day_volume, bid, ask, volume, seq)
        SELECT timestamptz 'epoch' + u.t * interval '1 millisecond', u.s, u.p, u.dv, u.b, u.a,
               u.v, u.q
        FROM unnest(${times}::int8[], ${symbols}::text[], ${prices}::float8[],
                    ${dayVolumes}::numeric[], ${bids}::float8[], ${asks}::float8[],
                    ${volumes}::numeric[], ${seqs}::int8[]) AS u(t, s, p, dv, b, a, v, q)
        WHERE EXISTS (SELECT 1 FROM guard)
      )
      SELECT count(*)::int AS inserted FROM guard`;
    return result!.inserted === 1 ? "written" : "landed";
  }
}
