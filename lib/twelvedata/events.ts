import { z } from "zod";
import { malformed, type MalformedFrame, parsePrice, type PriceEvent } from "./price.ts";

const optionalString = z.string().optional();

const SymbolObjectSchema = z.looseObject({
  symbol: z.string(),
  exchange: optionalString,
  mic_code: optionalString,
  country: optionalString,
  type: optionalString,
  message: optionalString,
});

/** A symbol as echoed in `subscribe-status` (`mic_code` there is unreliable: key nothing on it). */
const SymbolItemSchema = z.union([
  z.string().transform((symbol): z.output<typeof SymbolObjectSchema> => ({ symbol })),
  SymbolObjectSchema,
]);

const SymbolListSchema = z.array(SymbolItemSchema).nullish().transform((list) => list ?? []);

const SubscribeStatusSchema = z.looseObject({
  event: z.literal("subscribe-status"),
  status: z.string(),
  success: SymbolListSchema,
  fails: SymbolListSchema,
  messages: z.array(z.string()).nullish().transform((list) => list ?? []),
});

const HeartbeatSchema = z.looseObject({
  event: z.literal("heartbeat"),
  status: optionalString,
});

// Payloads unconfirmed: accept anything with the right event name.
const UnsubscribeStatusSchema = z.looseObject({ event: z.literal("unsubscribe-status") });
const ResetStatusSchema = z.looseObject({ event: z.literal("reset-status") });

/** Every known inbound frame but `price` (see `parsePrice`), discriminated on `event`. */
const FrameSchema = z.discriminatedUnion("event", [
  SubscribeStatusSchema,
  HeartbeatSchema,
  UnsubscribeStatusSchema,
  ResetStatusSchema,
]);

const KNOWN_EVENTS = new Set([
  "subscribe-status",
  "heartbeat",
  "unsubscribe-status",
  "reset-status",
]);

/** A symbol in a `subscribe-status` list; fail items may carry a `message` reason. */
export type SymbolStatus = z.output<typeof SymbolItemSchema>;
/** The answer to a subscribe: `status` is "ok", "warning" (some failed) or "error". */
export type SubscribeStatusEvent = z.output<typeof SubscribeStatusSchema>;
/** The server's answer to `{"action":"heartbeat"}`. */
export type HeartbeatEvent = z.output<typeof HeartbeatSchema>;
/** The answer to an unsubscribe (payload unconfirmed). */
export type UnsubscribeStatusEvent = z.output<typeof UnsubscribeStatusSchema>;
/** The answer to a reset (payload unconfirmed). */
export type ResetStatusEvent = z.output<typeof ResetStatusSchema>;
/** An event this client does not know, passed through untouched. */
export interface UnknownEvent {
  event: "unknown";
  /** The frame's own `event` value. */
  name: string;
  payload: unknown;
}

/** Every event the client delivers, discriminated on `event`. */
export type TwelveDataEvent =
  | PriceEvent
  | SubscribeStatusEvent
  | HeartbeatEvent
  | UnsubscribeStatusEvent
  | ResetStatusEvent
  | UnknownEvent;

/**
 * Parses one WebSocket text frame: one `JSON.parse`, then `parsePrice` for a tick (its
 * timestamp checked against `nowMs`) or one `safeParse` for anything else; never throws.
 */
export function parseFrame(
  text: string,
  nowMs: number = Date.now(),
): TwelveDataEvent | MalformedFrame {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return malformed("invalid JSON");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return malformed("not a JSON object");
  }
  const name = (value as { event?: unknown }).event;
  if (typeof name !== "string") return malformed("no event name");
  if (name === "price") return parsePrice(value as Record<string, unknown>, nowMs);
  if (!KNOWN_EVENTS.has(name)) return { event: "unknown", name, payload: value };
  const result = FrameSchema.safeParse(value);
  if (!result.success) {
    const issue = result.error.issues[0];
    const where = issue?.path.join(".") || "frame";
    return malformed(`invalid ${name}`, `${where}: ${issue?.message ?? "invalid"}`);
  }
  return result.data;
}
