import { barAt, INTERVAL_MS, type Market, type Quote } from "./market.ts";
import { mergeBars, type SimBar } from "./tape.ts";

/** Twelve Data's message for a missing or wrong key. */
export const BAD_KEY_MESSAGE =
  "**apikey** parameter is incorrect or not specified. You can get your free API key instantly following this link: https://twelvedata.com/pricing";

const MAX_BARS = 5000;
const MINUTE_MS = 60_000;
const DAY_MS = 86_400_000;

/** REST credit limits, like a Twelve Data plan's (the free plan: 8 a minute, 800 a day). */
export interface CreditLimits {
  /** Credits per minute (a calendar minute of the simulator's clock); unlimited when absent. */
  perMinute?: number | undefined;
  /** Credits per UTC day; unlimited when absent. */
  perDay?: number | undefined;
  /** A 429 as HTTP 429 (true) or as Twelve Data usually sends it, HTTP 200 with the body. */
  httpStatus?: boolean | undefined;
}

/** REST counters for `/stats`. */
export interface RestStats {
  rest_requests: number;
  /** Credits charged (a rate-limited request costs nothing). */
  rest_credits_used: number;
  /** Requests answered with code 429. */
  rest_rate_limited: number;
}

/** Settings of `SimulatorRest`. */
export interface SimulatorRestOptions {
  apiKey: string;
  seed: number;
  /** The simulator's clock (epoch ms). */
  now: () => number;
  /** Bars before this instant are synthetic history; from it on, what the market generated. */
  historyEndMs: number;
  /** Errors with their HTTP status instead of Twelve Data's usual 200 (default false). */
  httpErrorStatus?: boolean;
  limits?: CreditLimits;
  /** True while every key is refused. */
  refusing: () => boolean;
}

/** A Twelve Data error body (`{"code":...,"message":...,"status":"error"}`). */
export function errorResponse(
  code: number,
  message: string,
  options: { httpStatus?: boolean; headers?: HeadersInit } = {},
): Response {
  return Response.json({ code, message, status: "error" }, {
    status: options.httpStatus ? code : 200,
    headers: options.headers,
  });
}

function formatDateTime(ms: number, daily: boolean): string {
  const iso = new Date(ms).toISOString();
  return daily ? iso.slice(0, 10) : iso.slice(0, 19).replace("T", " ");
}

function parseDate(text: string): number {
  if (/^\d{4}-\d{2}-\d{2}$/.test(text)) return Date.parse(`${text}T00:00:00Z`);
  if (/^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2})?$/.test(text)) {
    return Date.parse(`${text.replace(" ", "T")}Z`);
  }
  return Date.parse(text);
}

/**
 * The simulator's REST API: `/time_series` (the 1-minute bars of exactly what the market
 * generated since the simulator started, connected client or not, and synthetic history
 * before), `/quote`, `/cryptocurrencies`, `/api_usage`; Twelve Data's shapes (numbers as
 * strings, `meta`, `status`, error bodies), credit headers and per-minute/per-day limits.
 */
export class SimulatorRest {
  #market: Market;
  #options: SimulatorRestOptions;
  #limits: CreditLimits;
  #minute = { index: -1, used: 0 };
  #day = { index: -1, used: 0 };
  #stats: RestStats = { rest_requests: 0, rest_credits_used: 0, rest_rate_limited: 0 };

  constructor(market: Market, options: SimulatorRestOptions) {
    this.#market = market;
    this.#options = options;
    this.#limits = { ...options.limits };
  }

  /** Changes the credit limits (`/control/credits`); the counters of this minute and day stay. */
  setLimits(limits: CreditLimits): void {
    for (const value of [limits.perMinute, limits.perDay]) {
      if (value !== undefined && !(Number.isInteger(value) && value >= 0)) {
        throw new RangeError(`Cannot set a credit limit of ${value}: expected a whole number`);
      }
    }
    this.#limits = { ...limits };
  }

  /** The current limits. */
  get limits(): CreditLimits {
    return { ...this.#limits };
  }

  /** Counters for `/stats`. */
  stats(): RestStats {
    return { ...this.#stats };
  }

  /** Answers one REST request. */
  handle(request: Request, url: URL): Response {
    this.#stats.rest_requests++;
    const header = request.headers.get("authorization");
    const key = header ? header.replace(/^apikey\s+/i, "") : url.searchParams.get("apikey");
    if (this.#options.refusing() || key !== this.#options.apiKey) {
      return this.#error(401, BAD_KEY_MESSAGE);
    }
    const now = this.#options.now();
    this.#roll(now);
    if (url.pathname === "/api_usage") {
      return Response.json({
        timestamp: formatDateTime(now, false),
        current_usage: this.#minute.used,
        plan_limit: this.#limits.perMinute ?? 800,
        daily_usage: this.#day.used,
        plan_daily_limit: this.#limits.perDay ?? 800,
        plan_category: "simulator",
      });
    }
    const limited = this.#charge(1);
    if (limited) return limited;
    const params = url.searchParams;
    let response: Response;
    switch (url.pathname) {
      case "/time_series":
        response = this.#timeSeries(params, now);
        break;
      case "/quote":
        response = this.#quote(params, now);
        break;
      case "/cryptocurrencies":
        response = this.#cryptocurrencies(params);
        break;
      default:
        response = this.#error(404, `${url.pathname} is not a simulated endpoint`);
    }
    for (const [name, value] of Object.entries(this.#creditHeaders())) {
      response.headers.set(name, value);
    }
    return response;
  }

  #error(code: number, message: string, headers?: HeadersInit): Response {
    const httpStatus = code === 429 && this.#limits.httpStatus !== undefined
      ? this.#limits.httpStatus
      : this.#options.httpErrorStatus;
    return errorResponse(code, message, { httpStatus, headers });
  }

  #roll(now: number): void {
    const minute = Math.floor(now / MINUTE_MS);
    if (minute !== this.#minute.index) this.#minute = { index: minute, used: 0 };
    const day = Math.floor(now / DAY_MS);
    if (day !== this.#day.index) this.#day = { index: day, used: 0 };
  }

  #creditHeaders(): Record<string, string> {
    const headers: Record<string, string> = { "api-credits-used": String(this.#minute.used) };
    if (this.#limits.perMinute !== undefined) {
      headers["api-credits-left"] = String(Math.max(0, this.#limits.perMinute - this.#minute.used));
    }
    return headers;
  }

  /** Charges `cost` credits, or answers 429 (Twelve Data's wording) when a limit is reached. */
  #charge(cost: number): Response | undefined {
    const { perMinute, perDay } = this.#limits;
    let message: string | undefined;
    if (perDay !== undefined && this.#day.used + cost > perDay) {
      message =
        `You have run out of API credits for the day. ${this.#day.used} API credits were used, with the current limit being ${perDay}. Wait for the next day or consider switching to a higher tier plan at https://twelvedata.com/pricing`;
    } else if (perMinute !== undefined && this.#minute.used + cost > perMinute) {
      message =
        `You have run out of API credits for the current minute. ${this.#minute.used} API credits were used, with the current limit being ${perMinute}. Wait for the next minute or consider switching to a higher tier plan at https://twelvedata.com/pricing`;
    }
    if (message) {
      this.#stats.rest_rate_limited++;
      return this.#error(429, message, this.#creditHeaders());
    }
    this.#minute.used += cost;
    this.#day.used += cost;
    this.#stats.rest_credits_used += cost;
    return undefined;
  }

  #known(params: URLSearchParams): Quote | Response {
    const symbol = params.get("symbol");
    if (!symbol) return this.#error(400, "**symbol** parameter is missing or invalid.");
    const quote = this.#market.quotes.get(symbol);
    if (!quote) {
      return this.#error(
        404,
        `**symbol** ${symbol} not found. Please specify it correctly according to API Documentation.`,
      );
    }
    return quote;
  }

  /** The truth for one minute: synthetic before the simulator started, recorded after. */
  #minuteBar(quote: Quote, minuteMs: number): SimBar | undefined {
    if (minuteMs < this.#options.historyEndMs) {
      return barAt(quote.instrument, this.#options.seed, minuteMs, MINUTE_MS);
    }
    return this.#market.tape.bar(quote.instrument.symbol, minuteMs);
  }

  #bar(quote: Quote, startMs: number, intervalMs: number, now: number): SimBar | undefined {
    if (intervalMs === MINUTE_MS) return this.#minuteBar(quote, startMs);
    if (startMs + intervalMs <= this.#options.historyEndMs) {
      return barAt(quote.instrument, this.#options.seed, startMs, intervalMs);
    }
    // A bucket the simulator has lived through: the aggregate of its minutes, so every
    // interval agrees with the 1-minute bars.
    const minutes: SimBar[] = [];
    for (let m = startMs; m < startMs + intervalMs && m <= now; m += MINUTE_MS) {
      const bar = this.#minuteBar(quote, m);
      if (bar) minutes.push(bar);
    }
    return mergeBars(startMs, minutes);
  }

  #timeSeries(params: URLSearchParams, now: number): Response {
    const quote = this.#known(params);
    if (quote instanceof Response) return quote;
    const interval = params.get("interval") ?? "";
    const intervalMs = INTERVAL_MS[interval];
    if (intervalMs === undefined) {
      return this.#error(
        400,
        `**interval** must be one of ${Object.keys(INTERVAL_MS).join(", ")} in the simulator`,
      );
    }
    const timezone = params.get("timezone") ?? "Exchange";
    if (!["UTC", "Exchange", "Etc/UTC"].includes(timezone)) {
      return this.#error(400, `**timezone** ${timezone}: the simulator only speaks UTC`);
    }
    const order = params.get("order")?.toLowerCase() ?? "desc";
    if (order !== "asc" && order !== "desc") {
      return this.#error(400, "**order** must be asc or desc");
    }
    const outputText = params.get("outputsize");
    const outputsize = outputText === null ? undefined : Number(outputText);
    if (
      outputsize !== undefined &&
      !(Number.isInteger(outputsize) && outputsize >= 1 && outputsize <= MAX_BARS)
    ) {
      return this.#error(400, "**outputsize** must be a whole number from 1 to 5000");
    }
    const startText = params.get("start_date");
    const endText = params.get("end_date");
    const start = startText === null ? undefined : parseDate(startText);
    const end = endText === null ? undefined : parseDate(endText);
    if (Number.isNaN(start) || Number.isNaN(end)) {
      return this.#error(400, "**start_date** and **end_date** must be YYYY-MM-DD [HH:MM:SS]");
    }
    // Bars start on multiples of the interval (UTC); the newest one may still be forming.
    // end_date is exclusive here; the backfill never relies on either reading.
    const lastStart = Math.floor(Math.min(end === undefined ? now : end - 1, now) / intervalMs) *
      intervalMs;
    const limit = start === undefined || end === undefined
      ? (outputsize ?? (start === undefined && end === undefined ? 30 : MAX_BARS))
      : Math.min(outputsize ?? MAX_BARS, MAX_BARS);
    const bars: SimBar[] = [];
    for (let t = lastStart; bars.length < limit; t -= intervalMs) {
      if (start !== undefined && t < start) break;
      const bar = this.#bar(quote, t, intervalMs, now);
      if (bar) bars.push(bar);
    }
    if (bars.length === 0) {
      return this.#error(
        400,
        "No data is available on the specified dates. Try setting different start/end dates.",
      );
    }
    if (order === "asc") bars.reverse();
    const daily = intervalMs >= INTERVAL_MS["1day"]!;
    const values = bars.map((bar) => {
      const value: Record<string, string> = {
        datetime: formatDateTime(bar.startMs, daily),
        open: String(bar.open),
        high: String(bar.high),
        low: String(bar.low),
        close: String(bar.close),
      };
      if (bar.volume !== undefined) value.volume = String(bar.volume);
      return value;
    });
    const i = quote.instrument;
    const meta: Record<string, string> = { symbol: i.symbol, interval };
    if (i.currency) meta.currency = i.currency;
    if (i.currency_base) meta.currency_base = i.currency_base;
    if (i.currency_quote) meta.currency_quote = i.currency_quote;
    meta.exchange_timezone = "UTC";
    meta.exchange = i.exchange;
    if (i.mic_code) meta.mic_code = i.mic_code;
    meta.type = i.type;
    return Response.json({ meta, values, status: "ok" });
  }

  #quote(params: URLSearchParams, now: number): Response {
    const quote = this.#known(params);
    if (quote instanceof Response) return quote;
    const dayStart = Math.floor(now / DAY_MS) * DAY_MS;
    const day = barAt(quote.instrument, this.#options.seed, dayStart, DAY_MS);
    const close = Number(quote.price.toPrecision(8));
    const i = quote.instrument;
    const body: Record<string, unknown> = {
      symbol: i.symbol,
      name: i.name,
      exchange: i.exchange,
      mic_code: i.mic_code,
      currency: i.currency ?? i.currency_quote ?? "",
      datetime: formatDateTime(dayStart, true),
      timestamp: Math.floor(now / 1000),
      open: String(day.open),
      high: String(Math.max(day.high, close)),
      low: String(Math.min(day.low, close)),
      close: String(close),
      previous_close: String(day.open),
      change: (close - day.open).toPrecision(6),
      percent_change: ((close - day.open) / day.open * 100).toFixed(5),
      is_market_open: true,
    };
    if (i.assetClass !== "forex") body.volume = String(quote.dayVolume);
    return Response.json(body);
  }

  #cryptocurrencies(params: URLSearchParams): Response {
    const symbol = params.get("symbol");
    const data = [...this.#market.quotes.values()]
      .map((q) => q.instrument)
      .filter((i) => i.assetClass === "crypto" && (!symbol || i.symbol === symbol))
      .map((i) => ({
        symbol: i.symbol,
        available_exchanges: [i.exchange, "Binance", "Kraken"],
        currency_base: i.currency_base,
        currency_quote: i.currency_quote,
      }));
    return Response.json({ data, status: "ok" });
  }
}
