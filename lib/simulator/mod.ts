/** The Twelve Data simulator: WebSocket ticks, REST bars and fault injection. */
export * from "./catalog.ts";
export * from "./market.ts";
export * from "./server.ts";
export * from "./tape.ts";
