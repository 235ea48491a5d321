import { formatCount } from "../text.ts";

/**
 * Refused symbols and their reasons in a short line for any number of them: a few are
 * listed with their reasons ("NOPE (Symbol "NOPE" is not found...)"); many are grouped by
 * reason (the symbol masked, so that "Symbol "A" is not found" and "Symbol "B" is not
 * found" are one reason), each group with its count and first symbols. Thousands of
 * refusals give a few hundred characters, not hundreds of KB.
 */
export function summarizeRefusals(
  refused: Iterable<[symbol: string, reason: string]>,
  options: { examples?: number; groups?: number } = {},
): string {
  const examples = options.examples ?? 3;
  const maxGroups = options.groups ?? 4;
  const entries = [...refused];
  if (entries.length <= examples) {
    return entries.map(([s, reason]) => `${s} (${clip(reason)})`).join(", ");
  }
  const groups = new Map<string, string[]>();
  for (const [symbol, reason] of entries) {
    const key = clip(maskSymbol(reason, symbol));
    let symbols = groups.get(key);
    if (!symbols) groups.set(key, symbols = []);
    symbols.push(symbol);
  }
  const sorted = [...groups].sort((a, b) => b[1].length - a[1].length);
  const parts = sorted.slice(0, maxGroups).map(([reason, symbols]) => {
    const shown = symbols.slice(0, examples).join(", ");
    const more = symbols.length > examples
      ? ` and ${formatCount(symbols.length - examples)} more`
      : "";
    return `${formatCount(symbols.length)} × ${reason} (${shown}${more})`;
  });
  const rest = sorted.slice(maxGroups);
  if (rest.length > 0) {
    const n = rest.reduce((sum, [, symbols]) => sum + symbols.length, 0);
    parts.push(
      `${formatCount(n)} for ${formatCount(rest.length)} other reason${
        rest.length === 1 ? "" : "s"
      }`,
    );
  }
  return parts.join("; ");
}

/** "Twelve Data refused 3,000 symbols: ..." (see `summarizeRefusals`). */
export function refusalLine(refused: [symbol: string, reason: string][]): string {
  const n = refused.length;
  return `Twelve Data refused ${formatCount(n)} symbol${n === 1 ? "" : "s"}: ${
    summarizeRefusals(refused)
  }`;
}

/** The reason with the symbol (and its part before an exchange suffix) replaced by "…". */
function maskSymbol(reason: string, symbol: string): string {
  let out = reason;
  for (const name of new Set([symbol, symbol.split(":")[0]!])) {
    if (name.length > 0) out = out.replaceAll(name, "…");
  }
  return out;
}

function clip(text: string, max = 160): string {
  return text.length > max ? text.slice(0, max - 1) + "…" : text;
}
