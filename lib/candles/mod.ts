export * from "./query.ts";
export * from "./format.ts";
export * from "./refresh.ts";
export * from "./time.ts";
