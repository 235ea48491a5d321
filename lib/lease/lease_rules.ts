import { holderName, type LockAttempt } from "./lease_session.ts";

/** An interval in which a cut-off holder and another process both ingested a symbol. */
export interface Overlap {
  symbol: string;
  by: string;
  sinceMs: number;
}

/** What one round's lock attempts mean for this process. */
export interface Verdict {
  /** Symbols to take (their locks are held now). */
  take: string[];
  /** Owned symbols whose lock this session holds again. */
  confirmed: string[];
  /** Locks taken by the attempt but not kept. */
  giveBack: number[];
  /** Owned symbols whose lock another session of this holder still holds. */
  stale: LockAttempt[];
  /** Owned symbols another process holds now. */
  lost: LockAttempt[];
  /** Owned symbols another process held meanwhile (and gave up). */
  overlaps: Overlap[];
  /** Symbols left alone although free: their holder may be reconnecting. */
  deferred: string[];
  /** Symbols stood by for, with who holds them (for the standby line). */
  standby: Map<string, string>;
}

/** When another process took `a`'s lease (epoch ms). */
export function takenAt(a: LockAttempt): number {
  return a.since?.getTime() ?? a.releasedAt?.getTime() ?? Date.now();
}

/**
 * Decides, from one round's lock attempts, which symbols this process takes, keeps, lost
 * or stands by for. A free lock is taken when its holder released it (or nobody ever held
 * it), or when its holder has not renewed its row for `staleMs` and either its session
 * ended while this one watched (`seenHeld`, `renewedSinceOurs`) or this session is older
 * than the grace period: a holder whose session was merely reset (a connection reset, a
 * pooler restart, `pg_terminate_backend`) or ended by a database restart reclaims its locks
 * before that. `seenHeld` is updated with the locks found held.
 */
export function judge(
  attempts: readonly LockAttempt[],
  context: {
    holderId: string;
    owned: ReadonlySet<string>;
    seenHeld: Set<string>;
    acquiring: boolean;
  },
): Verdict {
  const v: Verdict = {
    take: [],
    confirmed: [],
    giveBack: [],
    stale: [],
    lost: [],
    overlaps: [],
    deferred: [],
    standby: new Map(),
  };
  for (const a of attempts) {
    const mine = a.holder === context.holderId;
    if (context.owned.has(a.symbol)) {
      if (a.got) {
        v.confirmed.push(a.symbol);
        if (!mine) {
          // Someone held it while this process, cut off, went on ingesting.
          v.overlaps.push({ symbol: a.symbol, by: holderName(a), sinceMs: takenAt(a) });
          v.take.push(a.symbol);
        }
      } else if (mine) {
        v.stale.push(a);
      } else {
        v.lost.push(a);
      }
    } else if (!a.got) {
      context.seenHeld.add(a.symbol);
      v.standby.set(a.symbol, `${holderName(a)} since ${a.since?.toISOString() ?? "?"}`);
    } else if (
      context.acquiring &&
      (mine || a.holder === null ||
        (a.stale && (a.renewedSinceOurs || context.seenHeld.has(a.symbol) || a.graceOver)))
    ) {
      v.take.push(a.symbol);
    } else {
      v.giveBack.push(a.lockKey);
      if (context.acquiring) {
        v.deferred.push(a.symbol);
        v.standby.set(a.symbol, `${holderName(a)}, which may be reconnecting`);
      }
    }
  }
  return v;
}
