import type { z } from "zod";

/** True when `timeZone` is an IANA zone name this runtime (and so PostgreSQL) knows. */
export function isValidTimeZone(timeZone: string): boolean {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone });
    return true;
  } catch {
    return false;
  }
}

const INSTANT =
  /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?)?(Z|[+-]\d{2}:?\d{2})?$/i;

/** The offset of `timeZone` from UTC at `epochMs`, in milliseconds. */
function zoneOffset(epochMs: number, timeZone: string): number {
  const parts = new Intl.DateTimeFormat("en-US", {
    timeZone,
    hourCycle: "h23",
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
  }).formatToParts(new Date(epochMs));
  const get = (type: string) => Number(parts.find((p) => p.type === type)?.value);
  const local = Date.UTC(
    get("year"),
    get("month") - 1,
    get("day"),
    get("hour"),
    get("minute"),
    get("second"),
  );
  return local - Math.floor(epochMs / 1000) * 1000;
}

/**
 * Parses an ISO 8601 date or date-time (`2026-03-01`, `2026-03-01T14:30`,
 * `2026-03-01T14:30:00Z`, `...+01:00`). Without an offset it is wall-clock time in
 * `timeZone` (default UTC), so `--from 2026-03-02 --tz America/New_York` is New York
 * midnight. Returns undefined when `text` is not such a date.
 */
export function parseInstant(text: string, timeZone = "UTC"): Date | undefined {
  const m = INSTANT.exec(text.trim());
  if (!m) return undefined;
  const [, y, mo, d, h = "0", mi = "0", s = "0", frac = "0", offset] = m;
  const wall = Date.UTC(
    Number(y),
    Number(mo) - 1,
    Number(d),
    Number(h),
    Number(mi),
    Number(s),
    Number(frac.padEnd(3, "0").slice(0, 3)),
  );
  const check = new Date(wall);
  if (
    check.getUTCFullYear() !== Number(y) || check.getUTCMonth() !== Number(mo) - 1 ||
    check.getUTCDate() !== Number(d) || Number(h) > 23 || Number(mi) > 59 || Number(s) > 59
  ) {
    return undefined;
  }
  if (offset) {
    if (/^z$/i.test(offset)) return new Date(wall);
    const sign = offset.startsWith("-") ? -1 : 1;
    const digits = offset.slice(1).replace(":", "");
    const minutes = Number(digits.slice(0, 2)) * 60 + Number(digits.slice(2));
    return new Date(wall - sign * minutes * 60_000);
  }
  // Wall-clock time in the zone: guess with the offset at the wall time, then correct once
  // (enough around DST changes, where the first guess can be an hour off).
  let utc = wall - zoneOffset(wall, timeZone);
  utc = wall - zoneOffset(utc, timeZone);
  return new Date(utc);
}

/**
 * Reads a `--flag TIME` option inside a zod transform (see `parseInstant`): the instant,
 * undefined when the flag is absent, or an issue on `ctx` naming the flag.
 */
export function instantOption(
  ctx: z.RefinementCtx,
  flag: string,
  text: string | undefined,
  timeZone?: string,
): Date | undefined {
  if (text === undefined) return undefined;
  const date = parseInstant(text, timeZone);
  if (!date) {
    ctx.addIssue({
      code: "custom",
      message: `${flag} must be an ISO date or date-time like 2026-03-01 or 2026-03-01T14:30Z`,
    });
  }
  return date;
}

/**
 * Reads `--from TIME` and `--to TIME` inside a zod transform (see `instantOption`): either may
 * be absent; when both are given, an issue unless --from is before --to.
 */
export function windowOption(
  ctx: z.RefinementCtx,
  texts: { from?: string | undefined; to?: string | undefined },
): { from: Date | undefined; to: Date | undefined } {
  const from = instantOption(ctx, "--from", texts.from);
  const to = instantOption(ctx, "--to", texts.to);
  if (from && to && from.getTime() >= to.getTime()) {
    ctx.addIssue({ code: "custom", message: "--from must be before --to" });
  }
  return { from, to };
}
