import { type Logger, silentLogger } from "../log.ts";
import { CATALOG, generatedInstruments, type Instrument, instrumentFor } from "./catalog.ts";
import { Market, type Quote } from "./market.ts";
import { SimulatorRest } from "./rest.ts";

/** Options of `startSimulator`. */
export interface SimulatorOptions {
  /** 0 (default) picks a free port. */
  port?: number;
  /** Default 127.0.0.1. */
  hostname?: string;
  /** The only key accepted (default "demo"). */
  apiKey?: string;
  /**
   * Price events per second of the simulator's clock over every symbol subscribed so far
   * (the market goes on while nobody listens), or "max": as fast as the open sockets take
   * them, only for the symbols subscribed now (default 10).
   */
  rate?: number | "max";
  /** PRNG seed: the same seed gives the same price paths (default 1). */
  seed?: number;
  /** Symbols known beyond the built-in catalog (class guessed from the name). */
  symbols?: readonly string[];
  /** Also know SYM001/USD ... SYMnnn/USD, crypto-like, for benchmarks. */
  generatedSymbols?: number;
  /** Subscribe-status variants Twelve Data has been seen to send. */
  subscribeStatus?: {
    /** `null` instead of `[]` for an empty success or fails list. */
    nullArrays?: boolean;
    /** Status "warning" when some symbols fail, "error" when all fail (default: always "ok"). */
    graded?: boolean;
    /** When every symbol fails: `{"status":"error","messages":[...]}` without lists. */
    messagesVariant?: boolean;
  };
  /** Known symbols refused with "not authorized" (a plan restriction). */
  unauthorized?: readonly string[];
  /** REST credits per minute before 429 (default unlimited). */
  restLimitPerMinute?: number;
  /** REST credits per UTC day before 429 (default unlimited). */
  restLimitPerDay?: number;
  /** Send REST errors with the matching HTTP status instead of 200 (default false). */
  httpErrorStatus?: boolean;
  /** Start refusing every key. */
  refuseKey?: boolean;
  /** Stop sending price events once this many have been sent in total (for benchmarks). */
  maxTicks?: number;
  /** Keep every price frame sent, per connection and symbol, for `framesSent` (tests). */
  recordFrames?: boolean;
  /**
   * A manual clock starting at `startMs` (epoch ms): the market's time (tick timestamps,
   * bars, the REST credit minute, stalls) moves only with `advance(ms)`, so tests drive time
   * and can cut a disconnect exactly at minute boundaries. Default: the wall clock.
   */
  clock?: { startMs: number };
  logger?: Logger;
}

/** One WebSocket client of the simulator. */
export interface Connection {
  id: number;
  socket: WebSocket;
  subs: Set<Quote>;
  /** The simulator's time until which the connection is silent (`stall`). */
  stalledUntil: number;
  open: boolean;
  /** Below the high-water mark and not stalled: refreshed before each batch of ticks. */
  writable: boolean;
  /** Price events sent to this connection, per quote. */
  sent: Map<Quote, number>;
  /** The frames themselves, per quote, with `recordFrames`. */
  frames: Map<Quote, string[]> | undefined;
}

/** The counters of `/stats` kept by the WebSocket side (REST keeps its own). */
export interface WsCounters {
  /** Well-formed price events handed to an open socket. */
  price_events_sent: number;
  /** WebSocket handshakes attempted (refused ones included). */
  connection_attempts: number;
  /** WebSocket handshakes refused for the key. */
  auth_failures: number;
  /** Frames a client must reject (bad JSON, wrong types, impossible values). */
  malformed_sent: number;
  /** Valid but unusual price events (ms timestamps, SQL metacharacters in the symbol). */
  edge_sent: number;
  /** Frames sent with `sendRaw`. */
  raw_sent: number;
  messages_received: number;
  /** Epoch ms (wall clock) of the first and the latest price event sent; null before the first. */
  first_price_sent_at: number | null;
  last_price_sent_at: number | null;
}

/**
 * Everything a running simulator knows, in one place: the WebSocket side, the tick pump,
 * the faults and the control endpoint each read and change it (no module keeps state).
 */
export interface SimState {
  readonly options: SimulatorOptions;
  readonly logger: Logger;
  readonly apiKey: string;
  readonly market: Market;
  readonly rest: SimulatorRest;
  /** The simulator's time (epoch ms): the wall clock, or the manual clock. */
  readonly now: () => number;
  /** The manual clock (`options.clock`); `ms` moves only with `advance`. */
  readonly manualClock: { ms: number } | undefined;
  /** Price events per second, or "max". */
  rate: number | "max";
  /** Every key is refused while true. */
  refusing: boolean;
  closing: boolean;
  readonly maxTicks: number;
  readonly counters: WsCounters;
  nextId: number;
  /** Open connections. */
  readonly connections: Set<Connection>;
  /** The connections opened (the latest `OPENED_KEPT`), for the per-connection counts. */
  readonly opened: Connection[];
  /** Who listens to each quote. */
  readonly subscribers: Map<Quote, Set<Connection>>;
  /** Quotes subscribed at least once: in rate mode the market keeps ticking them. */
  readonly live: Quote[];
  readonly liveSet: Set<Quote>;
  /** Quotes with a subscriber now (rebuilt when `activeDirty`). */
  active: Quote[];
  activeDirty: boolean;
  /** Rate mode: the fraction of a tick due but not yet made. */
  carry: number;
  /** The simulator's time up to which ticks have been made. */
  lastPump: number;
  pumpTimer: ReturnType<typeof setTimeout> | undefined;
}

/** How many opened connections `/stats` reports on. */
export const OPENED_KEPT = 1000;

/** The state of a simulator about to start, from its options. */
export function createState(options: SimulatorOptions): SimState {
  const maxTicks = options.maxTicks ?? Infinity;
  if (!(maxTicks >= 0)) {
    throw new RangeError(`Cannot start the simulator: maxTicks must be >= 0, got ${maxTicks}`);
  }
  const apiKey = options.apiKey ?? "demo";
  const seed = options.seed ?? 1;
  const instruments: Instrument[] = [...CATALOG];
  for (const symbol of options.symbols ?? []) {
    if (!instruments.some((i) => i.symbol === symbol)) instruments.push(instrumentFor(symbol));
  }
  instruments.push(...generatedInstruments(options.generatedSymbols ?? 0));
  const market = new Market(instruments, seed);
  const manualClock = options.clock ? { ms: options.clock.startMs } : undefined;
  const now = manualClock ? () => manualClock.ms : () => Date.now();
  const startedAt = now();
  const rest = new SimulatorRest(market, {
    apiKey,
    seed,
    now,
    // The minute the simulator starts in is its own: earlier ones are synthetic history.
    historyEndMs: Math.floor(startedAt / 60_000) * 60_000,
    httpErrorStatus: options.httpErrorStatus ?? false,
    limits: { perMinute: options.restLimitPerMinute, perDay: options.restLimitPerDay },
    refusing: () => state.refusing,
  });
  const state: SimState = {
    options,
    logger: options.logger ?? silentLogger,
    apiKey,
    market,
    rest,
    now,
    manualClock,
    rate: options.rate ?? 10,
    refusing: options.refuseKey ?? false,
    closing: false,
    maxTicks,
    counters: {
      price_events_sent: 0,
      connection_attempts: 0,
      auth_failures: 0,
      malformed_sent: 0,
      edge_sent: 0,
      raw_sent: 0,
      messages_received: 0,
      first_price_sent_at: null,
      last_price_sent_at: null,
    },
    nextId: 1,
    connections: new Set(),
    opened: [],
    subscribers: new Map(),
    live: [],
    liveSet: new Set(),
    active: [],
    activeDirty: false,
    carry: 0,
    lastPump: startedAt,
    pumpTimer: undefined,
  };
  return state;
}

/** Sends one text frame to `conn` if it is open; false when it could not. */
export function sendText(conn: Connection, text: string): boolean {
  if (!conn.open || conn.socket.readyState !== WebSocket.OPEN) return false;
  try {
    conn.socket.send(text);
    return true;
  } catch {
    return false;
  }
}
