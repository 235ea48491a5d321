import type { Sql } from "postgres";
import { currencyName, type PriceEvent } from "../twelvedata/price.ts";
import type { Row } from "./batch.ts";

/** The last stored tick of a symbol, from `seedState`. */
export interface SeedRow {
  symbol: string;
  seq: number;
  timeMs: number;
  dayVolume: number | null;
}

/**
 * The seconds of a symbol taken over in which its previous holder may still write ticks
 * (held, spooled), numbered from the start of each second: this process numbers its own
 * ticks of those seconds from the middle (`next`: the next seq of each second seen).
 */
interface Handover {
  /** The second of the previous holder's last stored tick (epoch ms). */
  fromMs: number;
  /**
   * The last such second (epoch ms): the takeover's until this process's first tick of the
   * symbol, then the latest of that tick's second and the second it arrived in (`open`
   * until then): the previous holder received ticks until the subscription took effect.
   */
  toMs: number;
  open: boolean;
  next: Map<number, number>;
}

interface SymbolState {
  lastSeq: number;
  handover?: Handover;
  /** Previous day volume, NaN while unknown. */
  prevDayVolume: number;
  /** UTC day number (days since epoch) of `prevDayVolume`. */
  prevDay: number;
  name: string | undefined;
}

const DAY_MS = 86_400_000;

/** The start of the second of `ms` (epoch ms). */
const secondOf = (ms: number) => Math.floor(ms / 1000) * 1000;
// Float subtraction leaves noise (1234.5 - 1234.2 = 0.2999999999999545); volumes are
// rounded to 8 decimals, the finest unit crypto exchanges report (a satoshi).
const VOLUME_SCALE = 1e8;

/**
 * Assigns `seq` and `volume` per symbol, in arrival order (see `Row`).
 *
 * seq: with t = time in µs, a tick later than the symbol's last gets t; one with the same
 * timestamp (within 1 s for whole-second stamps, 1 ms otherwise) gets last + 1; a late tick,
 * earlier than the last, gets t: it sorts first in its second and may tie with the tick that
 * opened that second, the only case where (symbol, seq) is not unique.
 *
 * volume: the rise of day_volume since the symbol's previous tick; on a decrease, day_volume
 * itself when the UTC day changed (the daily reset), 0 within the same day (a correction);
 * 0 for the first tick ever seen (unknowable); null without a day_volume (forex).
 *
 * A symbol taken over from another process (`takeOver`): see `Handover`.
 */
export class TickSequencer {
  #state = new Map<string, SymbolState>();

  /** Starts from the last stored (or spooled) tick of each symbol. */
  seed(rows: Iterable<SeedRow>): void {
    for (const row of rows) this.observe(row);
  }

  /** Takes an already sequenced row (from the database or the spool) into account. */
  observe(row: { symbol: string; seq: number; timeMs: number; dayVolume: number | null }): void {
    let s = this.#state.get(row.symbol);
    if (!s) {
      s = { lastSeq: -Infinity, prevDayVolume: NaN, prevDay: -Infinity, name: undefined };
      this.#state.set(row.symbol, s);
    }
    if (row.seq > s.lastSeq) s.lastSeq = row.seq;
    const day = Math.floor(row.timeMs / DAY_MS);
    if (row.dayVolume !== null && day >= s.prevDay) {
      s.prevDayVolume = row.dayVolume;
      s.prevDay = day;
    }
  }

  /**
   * Continues `symbol` taken over from another process at `atMs` (epoch ms), whose last
   * stored tick was `lastTick`. That holder received ticks until this process's
   * subscription took effect (after the takeover, possibly in a later second), and may
   * still write those of the seconds since its last stored one, numbered from each
   * second's start (an ordinal far below 500,000 a second); this process may receive late
   * ticks of those seconds too. This process numbers its ticks of them from the middle of
   * their second, so in each second the previous holder's (which arrived first) sort first
   * and no seq is used twice. Which seconds: see `Handover`. A previous holder that
   * numbered its last stored tick's second from the middle itself (it had taken the lease
   * over in that second): from 100,000 above that tick.
   */
  takeOver(symbol: string, lastTick: SeedRow | undefined, atMs: number): void {
    if (lastTick) this.observe(lastTick);
    const toMs = secondOf(atMs);
    const lastMs = lastTick ? secondOf(lastTick.timeMs) : toMs;
    const next = new Map<number, number>();
    if (lastTick) {
      const middle = lastMs * 1000 + 500_000;
      next.set(lastMs, lastTick.seq >= middle ? lastTick.seq + 100_000 : middle);
    }
    const fromMs = Math.min(lastMs, toMs);
    this.#stateOf(symbol, undefined, undefined).handover = { fromMs, toMs, open: true, next };
  }

  /** The asset name seen for `symbol` in this process, if any. */
  name(symbol: string): string | undefined {
    return this.#state.get(symbol)?.name;
  }

  /**
   * Turns an accepted tick into its row; call exactly once per tick, in arrival order.
   * `receivedAt` is when it was accepted (`performance.now()`).
   */
  assignPrice(event: PriceEvent, receivedAt: number): Row {
    const s = this.#stateOf(event.symbol, event.currency_base, event.currency_quote);
    return this.#row(s, event, receivedAt);
  }

  /** The symbol's state (created on first sight), its asset name filled once one is known. */
  #stateOf(symbol: string, base: string | undefined, quote: string | undefined): SymbolState {
    let s = this.#state.get(symbol);
    if (!s) {
      s = {
        lastSeq: -Infinity,
        prevDayVolume: NaN,
        prevDay: -Infinity,
        name: currencyName(base, quote),
      };
      this.#state.set(symbol, s);
    } else if (s.name === undefined && base) {
      s.name = currencyName(base, quote);
    }
    return s;
  }

  #row(s: SymbolState, tick: PriceEvent, receivedAt: number): Row {
    const dayVolume = tick.day_volume ?? null;
    const t = tick.timeMs * 1000;
    const handover = s.handover;
    if (handover?.open) {
      const arrivedMs = performance.timeOrigin + receivedAt;
      handover.toMs = Math.max(handover.toMs, secondOf(tick.timeMs), secondOf(arrivedMs));
      handover.open = false;
    }
    let seq: number;
    if (handover && tick.timeMs >= handover.fromMs && tick.timeMs < handover.toMs + 1000) {
      const second = secondOf(tick.timeMs);
      seq = handover.next.get(second) ?? second * 1000 + 500_000;
      handover.next.set(second, seq + 1);
      if (seq > s.lastSeq) s.lastSeq = seq;
    } else if (t > s.lastSeq) {
      seq = t;
      s.lastSeq = t;
    } else if (s.lastSeq - t < (tick.timeMs % 1000 === 0 ? 1_000_000 : 1000)) {
      seq = ++s.lastSeq;
    } else {
      seq = t;
    }
    let volume: number | null = null;
    if (dayVolume !== null) {
      const day = Math.floor(tick.timeMs / DAY_MS);
      const prev = s.prevDayVolume;
      if (Number.isNaN(prev)) {
        volume = 0;
      } else if (dayVolume >= prev) {
        volume = Math.round((dayVolume - prev) * VOLUME_SCALE) / VOLUME_SCALE;
      } else if (day > s.prevDay) {
        volume = dayVolume;
      } else {
        volume = 0;
      }
      if (day >= s.prevDay) {
        s.prevDayVolume = dayVolume;
        s.prevDay = day;
      }
    }
    return {
      timeMs: tick.timeMs,
      symbol: tick.symbol,
      price: tick.price,
      dayVolume,
      bid: tick.bid ?? null,
      ask: tick.ask ?? null,
      volume,
      seq,
      receivedAt,
    };
  }
}

/**
 * Reads the last stored tick of every known symbol (those in `crypto_assets`, which the
 * writer fills in the same transaction as their ticks) within `lookbackHours` (default 48),
 * so a restart continues seq and volume where the previous run stopped.
 */
export async function seedState(
  sql: Sql,
  options: { lookbackHours?: number } = {},
): Promise<SeedRow[]> {
  const hours = options.lookbackHours ?? 48;
  const rows = await sql<
    { symbol: string; seq: string; time_ms: string; day_volume: string | null }[]
  >`
    SELECT a.symbol, t.seq, (extract(epoch FROM t."time") * 1000)::bigint AS time_ms,
           t.day_volume::text AS day_volume
    FROM crypto_assets a
    CROSS JOIN LATERAL (
      SELECT seq, "time", day_volume FROM crypto_ticks c
      WHERE c.symbol = a.symbol AND c."time" > now() - make_interval(hours => ${hours})
      ORDER BY c."time" DESC, c.seq DESC
      LIMIT 1
    ) t
    WHERE a.symbol IS NOT NULL`;
  return rows.map((r) => ({
    symbol: r.symbol,
    seq: Number(r.seq),
    timeMs: Number(r.time_ms),
    dayVolume: r.day_volume === null ? null : Number(r.day_volume),
  }));
}
