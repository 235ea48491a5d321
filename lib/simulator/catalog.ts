/** The asset classes the simulator models, each with its own tick fields. */
export type AssetClass = "crypto" | "stock" | "forex";

/** One simulated instrument. */
export interface Instrument {
  symbol: string;
  assetClass: AssetClass;
  /** Display name (`/quote` `name`). */
  name: string;
  /** Starting price of the random walk. */
  price: number;
  exchange: string;
  mic_code: string;
  type: string;
  country: string;
  /** Stocks: trading currency. */
  currency?: string;
  /** Crypto and forex: asset names ("Bitcoin", "US Dollar"). */
  currency_base?: string;
  currency_quote?: string;
}

const CURRENCY_NAMES: Record<string, string> = {
  USD: "US Dollar",
  EUR: "Euro",
  GBP: "British Pound",
  JPY: "Japanese Yen",
  CHF: "Swiss Franc",
  AUD: "Australian Dollar",
  CAD: "Canadian Dollar",
  NZD: "New Zealand Dollar",
  SEK: "Swedish Krona",
  NOK: "Norwegian Krone",
  BTC: "Bitcoin",
  ETH: "Ethereum",
  SOL: "Solana",
  XRP: "XRP",
  DOGE: "Dogecoin",
  ADA: "Cardano",
  LTC: "Litecoin",
  USDT: "Tether",
};
const FIAT = new Set(["USD", "EUR", "GBP", "JPY", "CHF", "AUD", "CAD", "NZD", "SEK", "NOK"]);

function crypto(symbol: string, price: number): Instrument {
  const [base = symbol, quote = "USD"] = symbol.split("/");
  return {
    symbol,
    assetClass: "crypto",
    name: `${CURRENCY_NAMES[base] ?? base} ${CURRENCY_NAMES[quote] ?? quote}`,
    price,
    exchange: "Coinbase Pro",
    mic_code: "Coinbase Pro",
    type: "Digital Currency",
    country: "",
    currency_base: CURRENCY_NAMES[base] ?? base,
    currency_quote: CURRENCY_NAMES[quote] ?? quote,
  };
}

function stock(symbol: string, name: string, price: number, exchange = "NASDAQ"): Instrument {
  return {
    symbol,
    assetClass: "stock",
    name,
    price,
    exchange,
    mic_code: exchange === "NYSE" ? "XNYS" : "XNGS",
    type: "Common Stock",
    country: "United States",
    currency: "USD",
  };
}

function forex(symbol: string, price: number): Instrument {
  const [base = symbol, quote = "USD"] = symbol.split("/");
  return {
    symbol,
    assetClass: "forex",
    name: `${CURRENCY_NAMES[base] ?? base} / ${CURRENCY_NAMES[quote] ?? quote}`,
    price,
    exchange: "PHYSICAL CURRENCY",
    mic_code: "",
    type: "Physical Currency",
    country: "",
    currency_base: CURRENCY_NAMES[base] ?? base,
    currency_quote: CURRENCY_NAMES[quote] ?? quote,
  };
}

/** The built-in catalog: a few cryptocurrencies, US stocks and forex pairs. */
export const CATALOG: readonly Instrument[] = [
  crypto("BTC/USD", 64000),
  crypto("ETH/USD", 3200),
  crypto("ETH/BTC", 0.05),
  crypto("SOL/USD", 150),
  crypto("XRP/USD", 0.52),
  crypto("DOGE/USD", 0.15),
  crypto("ADA/USD", 0.45),
  crypto("LTC/USD", 80),
  stock("AAPL", "Apple Inc.", 190),
  stock("MSFT", "Microsoft Corporation", 420),
  stock("GOOGL", "Alphabet Inc.", 170),
  stock("AMZN", "Amazon.com, Inc.", 180),
  stock("TSLA", "Tesla, Inc.", 200),
  stock("NVDA", "NVIDIA Corporation", 900),
  stock("META", "Meta Platforms, Inc.", 480),
  stock("JPM", "JPMorgan Chase & Co.", 195, "NYSE"),
  forex("EUR/USD", 1.08),
  forex("GBP/USD", 1.27),
  forex("USD/JPY", 150),
  forex("USD/CHF", 0.9),
  forex("AUD/USD", 0.66),
  forex("USD/CAD", 1.36),
];

/**
 * An instrument for a symbol outside the catalog: "XXX/YYY" of two fiat codes is forex,
 * any other pair is crypto, anything else a US stock. Starting prices vary by name.
 */
export function instrumentFor(symbol: string): Instrument {
  const known = CATALOG.find((instrument) => instrument.symbol === symbol);
  if (known) return known;
  let h = 0;
  for (let i = 0; i < symbol.length; i++) h = (h * 31 + symbol.charCodeAt(i)) >>> 0;
  const price = 10 + (h % 990);
  const [base, quote] = symbol.split("/");
  if (base !== undefined && quote !== undefined) {
    if (FIAT.has(base) && FIAT.has(quote)) return forex(symbol, 0.5 + (h % 150) / 100);
    return crypto(symbol, price);
  }
  return stock(symbol, `${symbol} Inc.`, price);
}

/** `count` generated crypto-like instruments SYM001/USD, SYM002/USD, ... for benchmarks. */
export function generatedInstruments(count: number): Instrument[] {
  const width = Math.max(3, String(count).length);
  return Array.from({ length: count }, (_, i) => {
    const code = `SYM${String(i + 1).padStart(width, "0")}`;
    const instrument = crypto(`${code}/USD`, 1 + ((i * 7919) % 1000));
    instrument.currency_base = `Synthetic ${code}`;
    instrument.name = `Synthetic ${code} US Dollar`;
    return instrument;
  });
}
