// tickpipe's chart page: candles and volume from /api/candles, the newest candle from the
// /api/live event stream. Served by `tickpipe chart`; no other origin is ever contacted.
"use strict";

(() => {
  const LC = globalThis.LightweightCharts;
  const SECONDS = { "1m": 60, "1h": 3600, "1d": 86400 };
  /** The range shown first and loaded at a time when scrolling back (as the server's). */
  const SPAN = { "1m": 86400, "1h": 30 * 86400, "1d": 365 * 86400 };
  /** Bars in view after a load (the rest is a scroll away). */
  const BARS_IN_VIEW = 150;
  const RETRY_MS = 3000;
  const UP = "#26a69a";
  const DOWN = "#ef5350";

  const $ = (id) => document.getElementById(id);
  const state = {
    symbols: [],
    symbol: undefined,
    interval: "1m",
    /** The loaded candles' records by time (UTC seconds). */
    records: new Map(),
    /** Time of the oldest candle there is (no older load goes past it). */
    firstTime: 0,
    from: undefined,
    to: undefined,
    loadingOlder: false,
    exhausted: false,
    /** True once the reader has scrolled or zoomed the chart since the last load. */
    scrolled: false,
    precision: 2,
    generation: 0,
    loads: 0,
    status: "loading",
    error: undefined,
    live: undefined,
    retry: undefined,
  };

  const chart = LC.createChart($("chart"), {
    autoSize: true,
    layout: {
      background: { type: "solid", color: "#131722" },
      textColor: "#d1d4dc",
      fontSize: 12,
      attributionLogo: true,
    },
    grid: { vertLines: { color: "#1e222d" }, horzLines: { color: "#1e222d" } },
    crosshair: { mode: LC.CrosshairMode.Normal },
    rightPriceScale: { borderColor: "#2a2e39" },
    timeScale: { borderColor: "#2a2e39", timeVisible: true, secondsVisible: false },
    localization: { dateFormat: "yyyy-MM-dd" },
  });
  const candles = chart.addSeries(LC.CandlestickSeries, {
    upColor: UP,
    downColor: DOWN,
    borderVisible: false,
    wickUpColor: UP,
    wickDownColor: DOWN,
  });
  candles.priceScale().applyOptions({ scaleMargins: { top: 0.12, bottom: 0.25 } });
  const volume = chart.addSeries(LC.HistogramSeries, {
    priceFormat: { type: "volume" },
    priceScaleId: "volume",
    lastValueVisible: false,
    priceLineVisible: false,
  });
  chart.priceScale("volume").applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });

  // --- data ----------------------------------------------------------------------------

  const timeOf = (record) => Date.parse(record.bucket) / 1000;
  const bar = (r) => ({ time: timeOf(r), open: r.open, high: r.high, low: r.low, close: r.close });
  const volumeBar = (r) => ({
    time: timeOf(r),
    value: r.volume ?? 0,
    color: r.close >= r.open ? "rgba(38, 166, 154, 0.45)" : "rgba(239, 83, 80, 0.45)",
  });
  const sorted = () => [...state.records.values()].sort((a, b) => timeOf(a) - timeOf(b));
  const newest = () => {
    let last;
    for (const r of state.records.values()) if (!last || timeOf(r) > timeOf(last)) last = r;
    return last;
  };

  function decimals(n) {
    if (!Number.isFinite(n)) return 0;
    const text = String(n);
    if (text.includes("e")) return 8;
    const dot = text.indexOf(".");
    return dot < 0 ? 0 : Math.min(8, text.length - dot - 1);
  }

  /** Price precision from the data: enough decimals for its prices, 2 to 8. */
  function updatePrecision() {
    let places = 2;
    let seen = 0;
    for (const r of state.records.values()) {
      places = Math.max(places, decimals(r.open), decimals(r.close));
      if (++seen > 500) break;
    }
    places = Math.min(places, 8);
    if (places !== state.precision) {
      state.precision = places;
      candles.applyOptions({
        priceFormat: { type: "price", precision: places, minMove: 10 ** -places },
      });
    }
  }

  function render() {
    const rows = sorted();
    candles.setData(rows.map(bar));
    volume.setData(rows.map(volumeBar));
    updatePrecision();
    renderLegend();
    $("chart").classList.toggle("empty", rows.length === 0);
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

  // --- what the page shows -------------------------------------------------------------

  function setStatus(status, text) {
    state.status = status;
    const el = $("status");
    el.dataset.state = status;
    el.textContent = text;
  }

  function showNotice(title, detail, hint) {
    $("notice-title").textContent = title;
    $("notice-detail").textContent = detail ?? "";
    const hintEl = $("notice-hint");
    hintEl.replaceChildren();
    // `code` spans are written as `...` in the hint.
    (hint ?? "").split("`").forEach((part, i) => {
      if (i % 2 === 1) {
        const code = document.createElement("code");
        code.textContent = part;
        hintEl.append(code);
      } else {
        hintEl.append(part);
      }
    });
    $("notice").hidden = false;
    $("chart").classList.add("empty");
  }

  function hideNotice() {
    $("notice").hidden = true;
  }

  function showBanner(text) {
    $("banner").textContent = text;
    $("banner").hidden = !text;
  }

  function formatPrice(n) {
    return n === null || n === undefined ? "–" : n.toFixed(state.precision);
  }

  function formatVolume(n) {
    if (n === null || n === undefined) return "–";
    const abs = Math.abs(n);
    if (abs >= 1e9) return (n / 1e9).toFixed(2) + "B";
    if (abs >= 1e6) return (n / 1e6).toFixed(2) + "M";
    if (abs >= 1e4) return (n / 1e3).toFixed(1) + "K";
    return String(Math.round(n * 100) / 100);
  }

  function renderLegend(record = newest()) {
    const legend = $("legend");
    legend.replaceChildren();
    if (!state.symbol) return;
    const info = state.symbols.find((s) => s.symbol === state.symbol);
    const title = document.createElement("div");
    title.className = "title";
    title.textContent = `${state.symbol} · ${state.interval}`;
    if (info?.name) {
      const name = document.createElement("small");
      name.textContent = info.name;
      title.append(name);
    }
    legend.append(title);
    if (!record) return;
    const values = document.createElement("div");
    values.className = "values " + (record.close >= record.open ? "up" : "down");
    const when = new Date(record.bucket).toISOString().slice(0, 16).replace("T", " ");
    const fields = [
      ["", state.interval === "1d" ? when.slice(0, 10) : when],
      ["O", formatPrice(record.open)],
      ["H", formatPrice(record.high)],
      ["L", formatPrice(record.low)],
      ["C", formatPrice(record.close)],
      ["V", formatVolume(record.volume)],
      ["VWAP", formatPrice(record.vwap)],
      ["Ticks", String(record.ticks)],
    ];
    for (const [label, value] of fields) {
      const span = document.createElement("span");
      if (label) {
        const b = document.createElement("b");
        b.textContent = label;
        span.append(b);
      }
      span.append(value);
      values.append(span);
    }
    legend.append(values);
  }

  chart.subscribeCrosshairMove((param) => {
    const record = param.time === undefined ? undefined : state.records.get(param.time);
    renderLegend(record ?? newest());
  });

  // --- loading -------------------------------------------------------------------------

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

  function fillPickers() {
    const select = $("symbol");
    select.replaceChildren(...state.symbols.map((s) => {
      const option = document.createElement("option");
      option.value = s.symbol;
      option.textContent = s.name ? `${s.symbol} — ${s.name}` : s.symbol;
      return option;
    }));
    select.value = state.symbol;
    select.disabled = false;
    markInterval();
  }

  function markInterval() {
    for (const button of $("intervals").querySelectorAll("button")) {
      button.setAttribute("aria-pressed", String(button.dataset.interval === state.interval));
    }
  }

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
      setStatus("down", "Database unreachable");
      showNotice(
        error.status === 0 ? "The chart server is not answering" : "Cannot read the candles",
        error.message,
        `Retrying every ${RETRY_MS / 1000} s.`,
      );
      return false;
    }
    if (state.symbols.length === 0) {
      closeLive();
      setStatus("loading", "Waiting for ticks");
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
    fillPickers();
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
      body = await api(
        "/api/candles?" +
          query({ symbol: state.symbol, interval: state.interval, from: iso(from), to: iso(to) }),
      );
    } catch (error) {
      if (generation !== state.generation) return;
      setStatus("down", "Database unreachable");
      showNotice("Cannot read the candles", error.message, `Retrying every ${RETRY_MS / 1000} s.`);
      scheduleRetry(load);
      return;
    }
    if (generation !== state.generation) return;
    state.records = new Map(body.candles.map((r) => [timeOf(r), r]));
    state.firstTime = Date.parse(info.first) / 1000;
    state.from = from;
    state.to = to;
    state.exhausted = from <= state.firstTime;
    state.loadingOlder = false;
    state.scrolled = false;
    showBanner("");
    render();
    if (body.candles.length === 0) {
      showNotice(
        `No ${state.interval} candles for ${state.symbol}`,
        `None from ${iso(from).slice(0, 16)} to ${iso(to).slice(0, 16)} UTC.`,
        "Pick another interval or symbol; new candles appear here as ticks arrive.",
      );
    } else {
      hideNotice();
      const n = body.candles.length;
      if (n > BARS_IN_VIEW) {
        chart.timeScale().setVisibleLogicalRange({ from: n - BARS_IN_VIEW, to: n + 5 });
      } else {
        chart.timeScale().fitContent();
      }
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
        const body = await api(
          "/api/candles?" +
            query({ symbol: state.symbol, interval: state.interval, from: iso(from), to: iso(to) }),
        );
        if (generation !== state.generation) return;
        state.from = from;
        to = from;
        if (body.candles.length > 0) {
          for (const r of body.candles) state.records.set(timeOf(r), r);
          render();
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

  // Only the reader's own scrolling loads older candles: the range changes that setting
  // the data causes would otherwise walk back through every gap in the history at once.
  for (const type of ["pointerdown", "wheel", "touchstart", "keydown"]) {
    $("chart").addEventListener(type, () => state.scrolled = true, { passive: true });
  }
  chart.timeScale().subscribeVisibleLogicalRangeChange((range) => {
    if (state.scrolled && range && range.from < 10) loadOlder();
  });

  // --- live ----------------------------------------------------------------------------

  function closeLive() {
    state.live?.close();
    state.live = undefined;
  }

  /** Applies a candle from the live stream: the newest one, or a correction of one shown. */
  function applyLive(record) {
    const time = timeOf(record);
    const last = newest();
    const known = state.records.has(time);
    if (last && time < timeOf(last) && !known) return; // older than the view's history
    state.records.set(time, record);
    const historical = last !== undefined && time < timeOf(last);
    candles.update(bar(record), historical);
    volume.update(volumeBar(record), historical);
    if (!last) render();
    hideNotice();
    $("chart").classList.remove("empty");
    renderLegend();
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
      setStatus("live", "Live");
    });
    source.addEventListener("error", () => {
      if (generation !== state.generation) return;
      setStatus("disconnected", "Reconnecting…");
      showBanner("Lost the connection to the chart server; reconnecting…");
    });
    source.addEventListener("candle", (event) => {
      if (generation === state.generation) applyLive(JSON.parse(event.data));
    });
    source.addEventListener("status", (event) => {
      if (generation !== state.generation) return;
      const status = JSON.parse(event.data);
      if (!status.ok) {
        lostDatabase = true;
        setStatus("down", "Database unreachable");
        showBanner(
          `${status.error}. Showing the candles already loaded; live updates resume when the database answers.`,
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
      fillPickers();
      writeLocation();
      load();
    });
  }

  /** For tests and the curious: what the chart holds, read from its series. */
  globalThis.__tickpipeChart = {
    candles: () => candles.data().map((b) => ({ ...b })),
    volumes: () => volume.data().map((b) => ({ time: b.time, value: b.value })),
    state: () => ({
      symbol: state.symbol,
      interval: state.interval,
      from: state.from,
      to: state.to,
      status: state.status,
      loads: state.loads,
      notice: $("notice").hidden ? undefined : $("notice-title").textContent,
      banner: $("banner").hidden ? undefined : $("banner").textContent,
      legend: $("legend").textContent,
    }),
  };

  state.symbol = readLocation();
  markInterval();
  load();
})();
