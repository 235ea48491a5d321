import { z } from "zod";
import { redact, registerSecret } from "../redact.ts";
import { AuthError, TwelveDataError } from "./errors.ts";
import { errorText } from "../text.ts";

/** Bar sizes `/time_series` accepts. */
const INTERVALS = [
  "1min",
  "5min",
  "15min",
  "30min",
  "45min",
  "1h",
  "2h",
  "4h",
  "8h",
  "1day",
  "1week",
  "1month",
] as const;
/** One of `INTERVALS`. */
export type Interval = (typeof INTERVALS)[number];

/** How to reach Twelve Data's REST API. */
export interface RestOptions {
  apiKey: string;
  /** Base URL without a trailing slash, e.g. `https://api.twelvedata.com`. */
  apiUrl: string;
  /** Per-request timeout (default 15 s). */
  timeoutMs?: number;
  /**
   * Sees every response's status and headers before its body is judged, errors included:
   * how a caller reads Twelve Data's credit headers (`api-credits-used`, `api-credits-left`).
   */
  onResponse?: (response: { path: string; status: number; headers: Headers }) => void;
}

const ErrorBodySchema = z.looseObject({
  status: z.literal("error"),
  code: z.coerce.number().optional(),
  message: z.string().optional(),
});

// REST numbers are strings ("148.735"); coerce and reject NaN.
const decimal = z.coerce.number().pipe(z.number());

const ApiUsageSchema = z.looseObject({
  timestamp: z.string().optional(),
  current_usage: z.number(),
  plan_limit: z.number(),
  plan_category: z.string().optional(),
  daily_usage: z.number().optional(),
  plan_daily_limit: z.number().optional(),
});
/** `/api_usage`: credits used this minute against the plan's limit. */
export type ApiUsage = z.output<typeof ApiUsageSchema>;

const CryptoAssetSchema = z.looseObject({
  symbol: z.string(),
  available_exchanges: z.array(z.string()).default([]),
  currency_base: z.string(),
  currency_quote: z.string(),
});
/** One `/cryptocurrencies` entry: the source for asset names ("Bitcoin", "US Dollar"). */
export type CryptoAsset = z.output<typeof CryptoAssetSchema>;
const CryptocurrenciesSchema = z.looseObject({ data: z.array(CryptoAssetSchema) });

const QuoteSchema = z.looseObject({
  symbol: z.string(),
  name: z.string().optional(),
  exchange: z.string().optional(),
  mic_code: z.string().optional(),
  currency: z.string().optional(),
  datetime: z.string().optional(),
  timestamp: z.number().optional(),
  open: decimal.optional(),
  high: decimal.optional(),
  low: decimal.optional(),
  close: decimal,
  volume: decimal.optional(),
  previous_close: decimal.optional(),
  is_market_open: z.boolean().optional(),
});
/** `/quote`: the latest quote of one symbol (numeric strings converted to numbers). */
export type Quote = z.output<typeof QuoteSchema>;

const BarSchema = z.object({
  datetime: z.string(),
  open: decimal,
  high: decimal,
  low: decimal,
  close: decimal,
  volume: decimal.optional(),
});
const TimeSeriesSchema = z.looseObject({
  meta: z.looseObject({
    symbol: z.string(),
    interval: z.string(),
    currency: z.string().optional(),
    currency_base: z.string().optional(),
    currency_quote: z.string().optional(),
    exchange_timezone: z.string().optional(),
    exchange: z.string().optional(),
    mic_code: z.string().optional(),
    type: z.string().optional(),
  }),
  values: z.array(BarSchema),
});

/** One OHLC bar; `timeMs` reads `datetime` as UTC (what `timezone=UTC` asks for). */
export interface Bar {
  datetime: string;
  timeMs: number;
  open: number;
  high: number;
  low: number;
  close: number;
  volume?: number;
}

/** `/time_series`: meta plus bars in the requested order. */
export interface TimeSeries {
  meta: z.output<typeof TimeSeriesSchema>["meta"];
  bars: Bar[];
}

/** Options of `TwelveDataRest.timeSeries`. */
export interface TimeSeriesOptions {
  interval: Interval;
  /** Inclusive window start: a Date, or "YYYY-MM-DD HH:MM:SS" in `timezone`. */
  startDate?: Date | string;
  /** Inclusive window end. */
  endDate?: Date | string;
  /** At most 5000 bars per call. */
  outputsize?: number;
  /** Default "asc" (Twelve Data's own default is newest first). */
  order?: "asc" | "desc";
  /** Default "UTC". */
  timezone?: string;
}

/** Formats a Date as Twelve Data's "YYYY-MM-DD HH:MM:SS" (UTC). */
export function formatDateTime(date: Date): string {
  return date.toISOString().slice(0, 19).replace("T", " ");
}

/** Reads Twelve Data's "YYYY-MM-DD[ HH:MM:SS]" as UTC epoch milliseconds (NaN if invalid). */
function parseDateTime(text: string): number {
  const iso = text.length === 10 ? `${text}T00:00:00Z` : `${text.replace(" ", "T")}Z`;
  return Date.parse(iso);
}

/** A small client for Twelve Data's REST API: each method is one zod-parsed request. */
export class TwelveDataRest {
  #apiKey: string;
  #apiUrl: string;
  #timeoutMs: number;
  #onResponse: RestOptions["onResponse"];

  constructor(options: RestOptions) {
    if (!options.apiKey) throw new TypeError("Cannot create the Twelve Data client: no API key");
    registerSecret(options.apiKey);
    this.#apiKey = options.apiKey;
    this.#apiUrl = options.apiUrl.replace(/\/+$/, "");
    this.#timeoutMs = options.timeoutMs ?? 15_000;
    this.#onResponse = options.onResponse;
  }

  /** `GET /api_usage`: a cheap way to check the key (throws `AuthError` on 401). */
  apiUsage(): Promise<ApiUsage> {
    return this.#get("/api_usage", {}, ApiUsageSchema);
  }

  /** `GET /cryptocurrencies`, optionally for one symbol. */
  async cryptocurrencies(options: { symbol?: string } = {}): Promise<CryptoAsset[]> {
    const params: Record<string, string> = {};
    if (options.symbol) params.symbol = options.symbol;
    return (await this.#get("/cryptocurrencies", params, CryptocurrenciesSchema)).data;
  }

  /** `GET /quote?symbol=...`. */
  quote(symbol: string): Promise<Quote> {
    return this.#get("/quote", { symbol }, QuoteSchema);
  }

  /** `GET /time_series`: at most 5000 bars per call, so page long windows by date. */
  async timeSeries(symbol: string, options: TimeSeriesOptions): Promise<TimeSeries> {
    const params: Record<string, string> = {
      symbol,
      interval: options.interval,
      timezone: options.timezone ?? "UTC",
      order: options.order ?? "asc",
    };
    const date = (value: Date | string) => value instanceof Date ? formatDateTime(value) : value;
    if (options.startDate !== undefined) params.start_date = date(options.startDate);
    if (options.endDate !== undefined) params.end_date = date(options.endDate);
    if (options.outputsize !== undefined) params.outputsize = String(options.outputsize);
    const body = await this.#get("/time_series", params, TimeSeriesSchema);
    const bars = body.values.map((value) => {
      const bar: Bar = { ...value, timeMs: parseDateTime(value.datetime) };
      if (bar.volume === undefined) delete bar.volume;
      return bar;
    });
    return { meta: body.meta, bars };
  }

  async #get<T extends z.ZodType>(
    path: string,
    params: Record<string, string>,
    schema: T,
  ): Promise<z.output<T>> {
    const url = new URL(this.#apiUrl + path);
    for (const [name, value] of Object.entries(params)) url.searchParams.set(name, value);
    const what = `Twelve Data request ${path}${params.symbol ? ` for "${params.symbol}"` : ""}`;
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), this.#timeoutMs);
    let response: Response;
    let text: string;
    try {
      response = await fetch(url, {
        headers: { Authorization: `apikey ${this.#apiKey}`, Accept: "application/json" },
        signal: controller.signal,
      });
      text = await response.text();
    } catch (error) {
      const detail = controller.signal.aborted
        ? `no answer within ${this.#timeoutMs} ms`
        : errorText(error);
      throw new TwelveDataError(redact(`${what} failed: ${detail}`), {
        code: 0,
        httpStatus: 0,
        cause: error,
      });
    } finally {
      clearTimeout(timer);
    }
    this.#onResponse?.({ path, status: response.status, headers: response.headers });
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
    // An error body is an error whatever the HTTP status (Twelve Data often sends 200).
    const error = ErrorBodySchema.safeParse(body);
    if (error.success || !response.ok) {
      const code = error.data?.code ?? response.status;
      const message = redact(error.data?.message ?? (text.slice(0, 200) || response.statusText));
      if (code === 401 || response.status === 401) {
        throw new AuthError(`Twelve Data rejected the API key (401): ${message}`);
      }
      throw new TwelveDataError(`${what} failed (${code}): ${message}`, {
        code,
        httpStatus: response.status,
      });
    }
    const parsed = schema.safeParse(body);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new TwelveDataError(
        `${what} returned an unexpected body: ${
          issue?.path.join(".") || "body"
        }: ${issue?.message}`,
        { code: response.status, httpStatus: response.status },
      );
    }
    return parsed.data;
  }
}

/**
 * Checks the key with `GET /api_usage`. Resolves true when accepted, false when the
 * check itself failed (network, server error); throws `AuthError` when refused.
 */
export async function checkApiKey(rest: TwelveDataRest): Promise<boolean> {
  try {
    await rest.apiUsage();
    return true;
  } catch (error) {
    if (error instanceof AuthError) throw error;
    return false;
  }
}
