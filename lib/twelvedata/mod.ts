/** Twelve Data: the real-time WebSocket client, its events and the REST client. */
export * from "./client.ts";
export * from "./client_options.ts";
export * from "./errors.ts";
export * from "./events.ts";
export * from "./health.ts";
export * from "./price.ts";
export * from "./refusals.ts";
export * from "./rest.ts";
export * from "./symbols.ts";
