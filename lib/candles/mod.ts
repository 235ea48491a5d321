export * from "./query.ts";
export * from "./format.ts";
export * from "./fold.ts";
export * from "./refresh.ts";
export * from "./symbols.ts";
export * from "./time.ts";
export * from "./build.ts";
export * from "./retention.ts";
