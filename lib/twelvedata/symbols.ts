/** One symbol to subscribe to; only `symbol` is required. */
export interface SymbolSpec {
  symbol: string;
  exchange?: string;
  mic_code?: string;
  type?: string;
}

/** Symbols as accepted by subscribe/unsubscribe: "AAPL,RY:TSX,BTC/USD", or a list of strings and specs. */
export type SymbolsInput = string | readonly (string | SymbolSpec)[];

/** Splits "RY:TSX" into symbol and exchange; plain symbols stay as they are. */
function fromString(text: string): SymbolSpec {
  const trimmed = text.trim();
  const colon = trimmed.indexOf(":");
  if (colon > 0 && colon < trimmed.length - 1) {
    return { symbol: trimmed.slice(0, colon), exchange: trimmed.slice(colon + 1) };
  }
  return { symbol: trimmed };
}

/** The symbols of a comma-separated list (a `--symbols` flag), trimmed, empty ones dropped. */
export function splitSymbols(text: string): string[] {
  return text.split(",").map((s) => s.trim()).filter((s) => s !== "");
}

/** Normalizes either symbol form into specs; throws `TypeError` on an empty symbol. */
export function normalizeSymbols(input: SymbolsInput): SymbolSpec[] {
  const items = typeof input === "string" ? input.split(",") : input;
  const specs: SymbolSpec[] = [];
  for (const item of items) {
    const spec = typeof item === "string" ? fromString(item) : { ...item };
    if (typeof spec.symbol !== "string" || spec.symbol.trim() === "") {
      throw new TypeError(`Cannot use symbol list "${String(input)}": empty symbol`);
    }
    spec.symbol = spec.symbol.trim();
    specs.push(spec);
  }
  return specs;
}

/** A stable key for a spec: "RY:TSX", "EUR/USD", "RY@XNYS" when a mic_code picks the listing. */
export function symbolKey(spec: SymbolSpec): string {
  let key = spec.symbol;
  if (spec.exchange) key += `:${spec.exchange}`;
  if (spec.mic_code) key += `@${spec.mic_code}`;
  return key;
}

/**
 * The `params.symbols` of a subscribe/unsubscribe message: the comma string when
 * every spec fits it ("AAPL,RY:TSX"), otherwise the object form.
 */
export function symbolsParam(specs: readonly SymbolSpec[]): string | SymbolSpec[] {
  if (specs.every((spec) => !spec.mic_code && !spec.type)) {
    return specs.map((spec) => spec.exchange ? `${spec.symbol}:${spec.exchange}` : spec.symbol)
      .join(",");
  }
  return specs.map((spec) => ({ ...spec }));
}
