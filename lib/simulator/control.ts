import { type CreditLimits, errorResponse } from "./rest.ts";
import { dropAll, sendEdgeCases, sendMalformed, stallAll } from "./faults.ts";
import type { SimState } from "./state.ts";
import { generate } from "./ticks.ts";

/** Changes the rate of price events ("max": as fast as the sockets take them). */
export function setRate(state: SimState, value: number | "max"): void {
  if (value !== "max" && !(value > 0 && Number.isFinite(value))) {
    throw new RangeError(`Cannot set the rate to ${value}: expected a positive number or "max"`);
  }
  state.rate = value;
  state.carry = 0;
  state.lastPump = state.now();
}

/** Sets the REST credit limits and how a 429 is sent. */
export function setCredits(state: SimState, limits: CreditLimits): void {
  state.rest.setLimits(limits);
  state.logger.info("Simulator credit limits", { ...limits });
}

/**
 * Moves the manual clock forward by `ms` and generates, at once, the ticks the market
 * makes in that time. Throws on the wall clock.
 */
export function advance(state: SimState, ms: number): void {
  const clock = state.manualClock;
  if (!clock) {
    throw new TypeError("Cannot advance the clock: the simulator runs on the wall clock");
  }
  if (!(ms >= 0 && Number.isFinite(ms))) {
    throw new RangeError(`Cannot advance the clock by ${ms} ms: expected a duration >= 0`);
  }
  clock.ms += ms;
  generate(state, clock.ms);
}

/** Answers `POST /control/...`: faults, the rate, the key, REST credits. */
export async function control(state: SimState, request: Request, url: URL): Promise<Response> {
  const fail = (code: number, message: string) =>
    errorResponse(code, message, { httpStatus: state.options.httpErrorStatus });
  if (request.method !== "POST") return fail(405, "Use POST for /control");
  const params = url.searchParams;
  const count = () => Number(params.get("count") ?? "1");
  try {
    switch (url.pathname) {
      case "/control/drop":
        await dropAll(state);
        return Response.json({ ok: true });
      case "/control/stall":
        stallAll(state, Number(params.get("ms") ?? "5000"));
        return Response.json({ ok: true });
      case "/control/malformed":
        return Response.json({ ok: true, sent: sendMalformed(state, count()) });
      case "/control/edge":
        return Response.json({ ok: true, sent: sendEdgeCases(state, count()) });
      case "/control/refuse-key":
        state.refusing = ["1", "true", "on"].includes(params.get("on") ?? "1");
        return Response.json({ ok: true, refusing: state.refusing });
      case "/control/rate": {
        const value = params.get("value") ?? "";
        setRate(state, value === "max" ? "max" : Number(value));
        return Response.json({ ok: true, rate: state.rate });
      }
      case "/control/credits": {
        // A limit given as "" or "off" is lifted; one not given stays as it is.
        const limit = (name: string, current: number | undefined) => {
          const text = params.get(name);
          if (text === null) return current;
          return text === "" || text === "off" ? undefined : Number(text);
        };
        const current = state.rest.limits;
        const as = params.get("as");
        if (as !== null && as !== "http" && as !== "body") {
          throw new RangeError(`Cannot send 429s as "${as}": expected http or body`);
        }
        setCredits(state, {
          perMinute: limit("per_minute", current.perMinute),
          perDay: limit("per_day", current.perDay),
          httpStatus: as === null ? current.httpStatus : as === "http",
        });
        const limits = state.rest.limits;
        return Response.json({
          ok: true,
          per_minute: limits.perMinute ?? null,
          per_day: limits.perDay ?? null,
        });
      }
    }
  } catch (error) {
    return fail(400, (error as Error).message);
  }
  return fail(404, `${url.pathname} is not a control endpoint`);
}
