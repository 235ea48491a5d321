import type { Candle, CandleInterval } from "./query.ts";

/** Output formats of `formatCandles`. */
export const CANDLE_FORMATS = ["table", "csv", "json"] as const;
/** One of `CANDLE_FORMATS`. */
export type CandleFormat = (typeof CANDLE_FORMATS)[number];

/** How to render candles. */
export interface FormatOptions {
  format: CandleFormat;
  interval: CandleInterval;
  /** The zone daily buckets were cut in (default UTC); labels daily buckets in the table. */
  timeZone?: string | undefined;
}

const TABLE_COLUMNS = ["open", "high", "low", "close", "volume", "vwap", "ticks"] as const;
const FILE_COLUMNS = [
  "bucket",
  "symbol",
  "open",
  "high",
  "low",
  "close",
  "volume",
  "vwap",
  "ticks",
  "day_volume",
  "filled",
] as const;

/**
 * Renders candles as an aligned table (bucket, open, high, low, close, volume, vwap,
 * ticks, and filled when a candle has minutes filled from REST bars), CSV or a JSON array;
 * CSV and JSON also carry symbol, day_volume and filled, with buckets as ISO 8601 UTC
 * instants. Ends with a newline.
 */
export function formatCandles(candles: Candle[], options: FormatOptions): string {
  switch (options.format) {
    case "json":
      return JSON.stringify(candles.map(candleRecord), null, 2) + "\n";
    case "csv":
      return [
        FILE_COLUMNS.join(","),
        ...candles.map((c) => {
          const r = candleRecord(c);
          return FILE_COLUMNS.map((k) => csvField(r[k])).join(",");
        }),
      ].join("\n") + "\n";
    case "table":
      return formatTable(candles, options);
  }
}

/**
 * A candle as JSON-ready data: the record of `--format json` and of the chart's API
 * (bucket as an ISO 8601 UTC instant, NUMERIC volumes as numbers).
 */
export function candleRecord(c: Candle) {
  return {
    bucket: c.bucket.toISOString(),
    symbol: c.symbol,
    open: c.open,
    high: c.high,
    low: c.low,
    close: c.close,
    volume: c.volume === null ? null : Number(c.volume),
    vwap: c.vwap,
    ticks: c.ticks,
    day_volume: c.dayVolume === null ? null : Number(c.dayVolume),
    filled: c.filled,
  };
}

/** A CSV field: empty for null, quoted when it holds a quote, comma or newline. */
export function csvField(value: string | number | null): string {
  if (value === null) return "";
  const text = String(value);
  return /[",\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

function decimals(n: number): number {
  const text = String(n);
  if (text.includes("e")) return 8;
  const dot = text.indexOf(".");
  return dot < 0 ? 0 : text.length - dot - 1;
}

/** "2026-03-01" for daily candles (in their zone), "2026-03-01 14:05" (UTC) otherwise. */
export function bucketLabel(bucket: Date, interval: CandleInterval, timeZone = "UTC"): string {
  if (interval === "1d") {
    return new Intl.DateTimeFormat("en-CA", {
      timeZone,
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
    }).format(bucket);
  }
  return bucket.toISOString().slice(0, 16).replace("T", " ");
}

function formatTable(candles: Candle[], options: FormatOptions): string {
  // vwap gets the precision of the prices around it (2 to 8 decimals).
  const places = Math.min(
    8,
    Math.max(2, ...candles.flatMap((c) => [c.open, c.high, c.low, c.close].map(decimals))),
  );
  const zone = options.interval === "1d" ? options.timeZone ?? "UTC" : "UTC";
  // Provenance shows when there is some: minutes filled from REST bars rather than ticks.
  const filled = candles.some((c) => c.filled > 0);
  const header = [`bucket (${zone})`, ...TABLE_COLUMNS, ...(filled ? ["filled"] : [])];
  const rows = candles.map((c) => [
    bucketLabel(c.bucket, options.interval, zone),
    String(c.open),
    String(c.high),
    String(c.low),
    String(c.close),
    c.volume ?? "-",
    c.vwap === null ? "-" : c.vwap.toFixed(places),
    String(c.ticks),
    ...(filled ? [String(c.filled)] : []),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    cells.map((cell, i) => i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))
      .join("  ").trimEnd();
  return [
    line(header),
    widths.map((w) => "-".repeat(w)).join("  "),
    ...rows.map(line),
  ].join("\n") + "\n";
}
