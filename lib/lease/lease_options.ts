import type { Sql } from "postgres";
import { UserError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { Gated } from "./lease_hold.ts";
import type { Taken } from "./lease_session.ts";

/** Settings of `IngestLeases`. */
export interface LeaseOptions<T extends Gated> {
  /** Opens a fresh one-connection client for the lease session (ended by the lease). */
  connect: () => Sql;
  /** The symbols wanted, as stored in `crypto_ticks`. */
  symbols: readonly string[];
  logger?: Logger;
  /**
   * How long the server keeps a silent lease session (so its locks) before ending it: a
   * vanished host, a frozen process or one cut off from the database loses its leases
   * after this long (default 20 s). A process that dies or stops loses them at once.
   */
  timeoutMs?: number;
  /** Interval of renewals and standby attempts (default 1 s, at most timeoutMs / 5). */
  renewMs?: number;
  /**
   * How long a new lease session leaves alone a lease whose holder's session ended before
   * it began, as all do when the database restarts: its holder may be reconnecting
   * (default 5 s).
   */
  graceMs?: number;
  /**
   * How long a holder's row must have gone unrenewed before a lease its session freed is
   * taken (default 3 renewals): a holder whose session was merely reset reclaims its leases
   * first. A holder that cannot reclaim its leases within this (less one renewal) holds back
   * the ticks of the symbols others stand by for. Every process on a database must use the
   * same value.
   */
  staleMs?: number;
  /** Stand by for symbols held elsewhere (default true); false: `start` fails instead. */
  standby?: boolean;
  /** Names this process in the table and in logs (default: hostname and pid). */
  host?: string;
  pid?: number;
  /** Symbols just taken, before any of their ticks is admitted (seed, subscribe). */
  onAcquire: (taken: Taken[]) => void;
  /** Symbols lost to another process: none of their ticks is admitted any more (unsubscribe). */
  onLose: (symbols: string[]) => void;
  /** Ticks held while the leases were in doubt, now admitted, in arrival order. */
  onRelease: (items: T[]) => void;
}

/** Counters and gauges of the leases. */
export interface LeaseStats {
  /** Symbols this process holds (and ingests). */
  owned: number;
  /** Symbols it waits for, held by another process. */
  standby: number;
  /** Symbols taken from another process, dead or stopped, since start. */
  takeovers: number;
  /** Symbols lost to another process since start. */
  lost: number;
  /** Ticks not admitted because this process does not hold their symbol. */
  notOwned: number;
  /** Ticks held while the leases are in doubt (a freeze, a lost lease session). */
  held: number;
  /**
   * Held ticks of symbols lost meanwhile, discarded without proof that their new holder
   * stored them (see `LostTicks`): those of the takeover's second may be lost (reported).
   */
  discardedUnverified: number;
  /** The lease session is up. */
  connected: boolean;
}

/** Thrown by `start` without `standby` when another process holds some of the symbols. */
export class LeaseHeldError extends UserError {
  override name = "LeaseHeldError";
}
