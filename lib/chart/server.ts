import type { Sql } from "postgres";
import {
  type CandleQuery,
  candleRecord,
  fetchCandles,
  isKnownSymbol,
  listSymbols,
} from "../candles/mod.ts";
import type { DatabaseConfig } from "../config.ts";
import { describeDatabaseError, isConnectionFailure } from "../db/connection.ts";
import { UserError } from "../errors.ts";
import { type Logger, silentLogger } from "../log.ts";
import { redact } from "../redact.ts";
import { parseCandleParams, parseLiveParams } from "./api.ts";
import { ASSETS } from "./assets.ts";
import { type LiveEvent, LiveFeed } from "./live.ts";
import { errorText } from "../text.ts";

/** Settings of `serveChart`. */
export interface ChartServerOptions {
  /** The pool the candles are read from. */
  sql: Sql;
  /** Its settings, to name the server in error lines (never the password). */
  database: DatabaseConfig;
  /** Address to listen on (default 127.0.0.1: the chart is not exposed unless asked). */
  hostname?: string;
  /** Port (default 8080; 0 for any free port). */
  port?: number;
  logger?: Logger;
  /** Milliseconds between live polls (default 1000). */
  pollMs?: number;
  /** Milliseconds between keep-alive comments on an idle event stream (default 15000). */
  keepAliveMs?: number;
  /** The clock (default `Date.now`): anchors default ranges and live polls. */
  now?: () => number;
}

/** A running chart server. */
export interface ChartServer {
  /** e.g. `http://127.0.0.1:8080/`. */
  url: string;
  hostname: string;
  port: number;
  /** Ends the event streams, stops polling and closes the listener. */
  close(): Promise<void>;
}

// The page loads its own files only: no CDN, no font or image from elsewhere, and
// fetch/EventSource to this origin. Styles allow inline because the chart library sets
// its attribution logo's style in a <style> element.
const PAGE_HEADERS = {
  "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self' " +
    "'unsafe-inline'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; " +
    "form-action 'none'; frame-ancestors 'none'",
  "referrer-policy": "no-referrer",
  "x-content-type-options": "nosniff",
};

const encoder = new TextEncoder();

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body) + "\n", {
    status,
    headers: { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" },
  });
}

/** A one-line JSON error: `{"error": "Cannot read candles: ..."}`. */
function failure(status: number, message: string): Response {
  return json(status, { error: redact(message).replaceAll(/\s*\n\s*/g, " ") });
}

/**
 * Serves the chart page and its API on `hostname:port`:
 *
 * - `GET /`: the page (candles, volume, legend, pickers), its scripts and styles;
 * - `GET /api/symbols`: every symbol with ticks, its name, first day and last minute;
 * - `GET /api/candles?symbol=&interval=&from=&to=`: the candles of a range, ordered;
 * - `GET /api/live?symbol=&interval=`: Server-Sent Events, `candle` when the newest
 *   candle changes (see `LiveFeed`), `status` when the database goes away or returns.
 *
 * Bad parameters get a 400, an unreachable database or a missing schema a 503, each with
 * one line of JSON; nothing ever answers with a stack trace. Throws a `UserError` when it
 * cannot listen (port in use, not permitted).
 */
export function serveChart(options: ChartServerOptions): ChartServer {
  const { sql, database } = options;
  const logger = options.logger ?? silentLogger;
  const now = options.now ?? Date.now;
  const keepAliveMs = options.keepAliveMs ?? 15_000;

  /** The one line a failed read shows, and the status it is answered with. */
  function explain(error: unknown, action: string): { status: number; message: string } {
    if (error instanceof UserError) return { status: 503, message: error.message };
    if (isConnectionFailure(error)) {
      return { status: 503, message: describeDatabaseError(error, database) };
    }
    const detail = errorText(error);
    logger.warn(`${action} failed: ${redact(detail)}`);
    return { status: 500, message: `${action}: ${detail}` };
  }

  const feed = new LiveFeed({
    read: (query: CandleQuery) => fetchCandles(sql, query),
    describeError: (error) => explain(error, "Cannot read live candles").message,
    pollMs: options.pollMs,
    now,
    logger,
  });
  const streams = new Set<() => void>();

  async function symbols(): Promise<Response> {
    try {
      return json(200, { symbols: await listSymbols(sql) });
    } catch (error) {
      const { status, message } = explain(error, "Cannot list symbols");
      return failure(status, message);
    }
  }

  async function candles(params: URLSearchParams): Promise<Response> {
    const parsed = parseCandleParams(params, now());
    if (!parsed.ok) return failure(400, `Cannot read candles: ${parsed.error}`);
    const query = parsed.value;
    try {
      const rows = await fetchCandles(sql, query);
      if (rows.length === 0 && !await isKnownSymbol(sql, query.symbol)) {
        return failure(
          404,
          `Cannot read candles: unknown symbol "${query.symbol}" (no ticks, not in crypto_assets)`,
        );
      }
      return json(200, {
        symbol: query.symbol,
        interval: query.interval,
        from: query.from,
        to: query.to,
        candles: rows.map(candleRecord),
      });
    } catch (error) {
      const { status, message } = explain(error, "Cannot read candles");
      return failure(status, message);
    }
  }

  function live(params: URLSearchParams): Response {
    const parsed = parseLiveParams(params);
    if (!parsed.ok) return failure(400, `Cannot stream candles: ${parsed.error}`);
    const { symbol, interval } = parsed.value;
    let stop = () => {};
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        const write = (text: string) => controller.enqueue(encoder.encode(text));
        const send = (event: LiveEvent) => {
          const [name, data] = event.type === "candle"
            ? ["candle", candleRecord(event.candle)]
            : ["status", event.ok ? { ok: true } : { ok: false, error: redact(event.error) }];
          write(`event: ${name}\ndata: ${JSON.stringify(data)}\n\n`);
        };
        // How long a browser waits before reconnecting after the stream breaks.
        write("retry: 2000\n\n");
        const unsubscribe = feed.subscribe(symbol, interval, send);
        const keepAlive = setInterval(() => {
          try {
            write(": keep-alive\n\n");
          } catch {
            stop();
          }
        }, keepAliveMs);
        const end = () => {
          stop();
          try {
            controller.close();
          } catch {
            // Already closed by the client.
          }
        };
        stop = () => {
          unsubscribe();
          clearInterval(keepAlive);
          streams.delete(end);
        };
        streams.add(end);
      },
      cancel: () => stop(),
    });
    return new Response(body, {
      headers: {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-store",
      },
    });
  }

  async function handle(request: Request): Promise<Response> {
    const url = new URL(request.url);
    if (request.method !== "GET" && request.method !== "HEAD") {
      return failure(405, `Cannot ${request.method} ${url.pathname}: the chart serves GET only`);
    }
    const asset = ASSETS[url.pathname];
    if (asset) {
      return new Response(asset.body, {
        headers: {
          "content-type": asset.contentType,
          "cache-control": "no-cache",
          ...PAGE_HEADERS,
        },
      });
    }
    switch (url.pathname) {
      case "/api/symbols":
        return await symbols();
      case "/api/candles":
        return await candles(url.searchParams);
      case "/api/live":
        return live(url.searchParams);
    }
    return failure(
      404,
      `Cannot find ${url.pathname}: the chart serves /, /api/symbols, ` +
        "/api/candles and /api/live",
    );
  }

  const hostname = options.hostname ?? "127.0.0.1";
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve({
      hostname,
      port: options.port ?? 8080,
      onListen: () => {},
      onError: (error) => {
        logger.error(`Chart request failed: ${redact(String((error as Error)?.message ?? error))}`);
        return failure(500, "Cannot answer: internal error (see the chart's log)");
      },
    }, handle);
  } catch (error) {
    const where = `${hostname}:${options.port ?? 8080}`;
    if (error instanceof Deno.errors.AddrInUse) {
      throw new UserError(
        `Cannot serve the chart on ${where}: the port is in use (choose another with --port)`,
      );
    }
    throw new UserError(`Cannot serve the chart on ${where}: ${errorText(error)}`);
  }
  const port = server.addr.port;
  const host = hostname.includes(":") ? `[${hostname}]` : hostname;
  return {
    url: `http://${host}:${port}/`,
    hostname,
    port,
    async close() {
      await feed.close();
      for (const end of [...streams]) end();
      await server.shutdown();
    },
  };
}
