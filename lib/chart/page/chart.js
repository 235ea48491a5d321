// tickpipe's chart page: candles and volume from /api/candles, the newest candle from the
// /api/live event stream. Served by `tickpipe chart`; no other origin is ever contacted.
// This module decides what to load and when; view.js shows it.
import {
  ChartView,
  fillPickers,
  hideNotice,
  markInterval,
  pageText,
  setStatus,
  showBanner,
  showNotice,
} from "./view.js";

const SECONDS = { "1m": 60, "1h": 3600, "1d": 86400 };
/** The range shown first and loaded at a time when scrolling back (as the server's). */
const SPAN = { "1m": 86400, "1h": 30 * 86400, "1d": 365 * 86400 };
/** Bars in view after a load (the rest is a scroll away). */
const BARS_IN_VIEW = 150;
const RETRY_MS = 3000;

const $ = (id) => document.getElementById(id);
const view = new ChartView();
const state = {
  symbols: [],
  symbol: undefined,
  interval: "1m",
  /** Time of the oldest candle there is (no older load goes past it). */
  firstTime: 0,
  /** The range loaded (UTC seconds). */
  from: undefined,
  to: undefined,
  loadingOlder: false,
  exhausted: false,
  /** True once the reader has scrolled or zoomed the chart since the last load. */
  scrolled: false,
  /** Bumped by each load, so that answers to an older one are dropped. */
  generation: 0,
  loads: 0,
  status: "loading",
  live: undefined,
  retry: undefined,
};

function status(value, text) {
  state.status = value;
  setStatus(value, text);
}

class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

async function api(path) {
  let response;
  try {
    response = await fetch(path, { cache: "no-store" });
  } catch {
    throw new ApiError("Cannot reach the chart server (is `tickpipe chart` still running?)", 0);
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new ApiError(
      body.error ?? `The chart server answered ${response.status}`,
      response.status,
    );
  }
  return body;
}

const query = (params) => new URLSearchParams(params).toString();
const iso = (seconds) => new Date(seconds * 1000).toISOString();
const candlesOf = (from, to) =>
  api(
    "/api/candles?" +
      query({ symbol: state.symbol, interval: state.interval, from: iso(from), to: iso(to) }),
  );

// --- location ------------------------------------------------------------------------

function readLocation() {
  const params = new URLSearchParams(location.search);
  const interval = params.get("interval");
  if (interval in SECONDS) state.interval = interval;
  return params.get("symbol") ?? undefined;
}

function writeLocation() {
  const search = "?" + query({ symbol: state.symbol, interval: state.interval });
  if (location.search !== search) history.replaceState(null, "", search);
}

// --- loading -------------------------------------------------------------------------

function scheduleRetry(fn) {
  clearTimeout(state.retry);
  state.retry = setTimeout(fn, RETRY_MS);
}

/** Reads the symbols; true when the page can show one. Shows why not otherwise. */
async function loadSymbols() {
  try {
    state.symbols = (await api("/api/symbols")).symbols;
  } catch (error) {
    closeLive();
    status("down", "Database unreachable");
    showNotice(
      error.status === 0 ? "The chart server is not answering" : "Cannot read the candles",
      error.message,
      `Retrying every ${RETRY_MS / 1000} s.`,
    );
    return false;
  }
  if (state.symbols.length === 0) {
    closeLive();
    status("loading", "Waiting for ticks");
    showNotice(
      "No ticks yet",
      "The database has no ticks, so there are no candles to chart.",
      "Start ingesting: `deno task demo --chart` (simulated prices) or `deno task ingest`. " +
        "This page checks again every few seconds.",
    );
    return false;
  }
  if (!state.symbols.some((s) => s.symbol === state.symbol)) {
    state.symbol = state.symbols.find((s) => s.symbol === "BTC/USD")?.symbol ??
      state.symbols[0].symbol;
  }
  fillPickers(state.symbols, state.symbol, state.interval);
  writeLocation();
  return true;
}

/** Loads the default range of the chosen symbol and interval, then follows it live. */
async function load() {
  const generation = ++state.generation;
  clearTimeout(state.retry);
  closeLive();
  if (!await loadSymbols()) {
    if (generation === state.generation) scheduleRetry(load);
    return;
  }
  if (generation !== state.generation) return;
  const info = state.symbols.find((s) => s.symbol === state.symbol);
  const width = SECONDS[state.interval];
  // The range ends after the newest candle (now, while ingest runs).
  const to = Math.floor(Date.parse(info.last) / 1000 / width) * width + width;
  const from = to - SPAN[state.interval];
  let body;
  try {
    body = await candlesOf(from, to);
  } catch (error) {
    if (generation !== state.generation) return;
    status("down", "Database unreachable");
    showNotice("Cannot read the candles", error.message, `Retrying every ${RETRY_MS / 1000} s.`);
    scheduleRetry(load);
    return;
  }
  if (generation !== state.generation) return;
  state.firstTime = Date.parse(info.first) / 1000;
  state.from = from;
  state.to = to;
  state.exhausted = from <= state.firstTime;
  state.loadingOlder = false;
  state.scrolled = false;
  view.title = { symbol: state.symbol, name: info.name, interval: state.interval };
  showBanner("");
  view.show(body.candles, { replace: true });
  if (body.candles.length === 0) {
    showNotice(
      `No ${state.interval} candles for ${state.symbol}`,
      `None from ${iso(from).slice(0, 16)} to ${iso(to).slice(0, 16)} UTC.`,
      "Pick another interval or symbol; new candles appear here as ticks arrive.",
    );
  } else {
    hideNotice();
    view.showLast(BARS_IN_VIEW);
  }
  state.loads++;
  openLive(generation);
}

/** Loads the span before the oldest candle shown (scrolling left). */
async function loadOlder() {
  if (state.loadingOlder || state.exhausted || state.from === undefined) return;
  state.loadingOlder = true;
  const generation = state.generation;
  try {
    let to = state.from;
    // Gaps in the history (ingest stopped for a while) are skipped, down to the first day.
    while (to > state.firstTime) {
      const from = to - SPAN[state.interval];
      const body = await candlesOf(from, to);
      if (generation !== state.generation) return;
      state.from = from;
      to = from;
      if (body.candles.length > 0) {
        view.show(body.candles);
        break;
      }
    }
    state.exhausted = state.from <= state.firstTime;
  } catch (error) {
    showBanner(`Cannot load older candles: ${error.message}`);
  } finally {
    if (generation === state.generation) state.loadingOlder = false;
  }
}

// Only the reader's own scrolling loads older candles: the range changes that setting the
// data causes would otherwise walk back through every gap in the history at once.
for (const type of ["pointerdown", "wheel", "touchstart", "keydown"]) {
  $("chart").addEventListener(type, () => state.scrolled = true, { passive: true });
}
view.onNearLeftEdge(() => {
  if (state.scrolled) loadOlder();
});

// --- live ----------------------------------------------------------------------------

function closeLive() {
  state.live?.close();
  state.live = undefined;
}

function openLive(generation) {
  const source = new EventSource(
    "/api/live?" + query({ symbol: state.symbol, interval: state.interval }),
  );
  state.live = source;
  let lostDatabase = false;
  source.addEventListener("open", () => {
    if (state.status === "disconnected") {
      load(); // the server was away: reload what may have been missed
      return;
    }
    status("live", "Live");
  });
  source.addEventListener("error", () => {
    if (generation !== state.generation) return;
    status("disconnected", "Reconnecting…");
    showBanner("Lost the connection to the chart server; reconnecting…");
  });
  source.addEventListener("candle", (event) => {
    if (generation !== state.generation) return;
    if (view.update(JSON.parse(event.data))) hideNotice();
  });
  source.addEventListener("status", (event) => {
    if (generation !== state.generation) return;
    const message = JSON.parse(event.data);
    if (!message.ok) {
      lostDatabase = true;
      status("down", "Database unreachable");
      showBanner(
        `${message.error}. Showing the candles already loaded; live updates resume when the database answers.`,
      );
    } else if (lostDatabase) {
      load(); // back: reload, since candles may have changed meanwhile
    }
  });
}

// --- controls ------------------------------------------------------------------------

$("symbol").addEventListener("change", (event) => {
  state.symbol = event.target.value;
  writeLocation();
  load();
});
for (const button of $("intervals").querySelectorAll("button")) {
  button.addEventListener("click", () => {
    state.interval = button.dataset.interval;
    markInterval(state.interval);
    writeLocation();
    load();
  });
}

/** For tests and the curious: what the chart holds, read from its series. */
globalThis.__tickpipeChart = {
  candles: () => view.candles.data().map((b) => ({ ...b })),
  volumes: () => view.volume.data().map((b) => ({ time: b.time, value: b.value })),
  state: () => ({
    symbol: state.symbol,
    interval: state.interval,
    from: state.from,
    to: state.to,
    status: state.status,
    loads: state.loads,
    ...pageText(),
  }),
};

state.symbol = readLocation();
markInterval(state.interval);
load();
