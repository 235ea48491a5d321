// What the chart page shows: the chart (candles, volume), its legend, the status, the
// notices and the banner. It holds the candles shown; chart.js decides what to load.

const LC = globalThis.LightweightCharts;
const UP = "#26a69a";
const DOWN = "#ef5350";

const $ = (id) => document.getElementById(id);

/** A candle record's time as the chart takes it: UTC seconds. */
const timeOf = (record) => Date.parse(record.bucket) / 1000;

const bar = (r) => ({ time: timeOf(r), open: r.open, high: r.high, low: r.low, close: r.close });
const volumeBar = (r) => ({
  time: timeOf(r),
  value: r.volume ?? 0,
  color: r.close >= r.open ? "rgba(38, 166, 154, 0.45)" : "rgba(239, 83, 80, 0.45)",
});

function decimals(n) {
  if (!Number.isFinite(n)) return 0;
  const text = String(n);
  if (text.includes("e")) return 8;
  const dot = text.indexOf(".");
  return dot < 0 ? 0 : Math.min(8, text.length - dot - 1);
}

function formatVolume(n) {
  if (n === null || n === undefined) return "–";
  const abs = Math.abs(n);
  if (abs >= 1e9) return (n / 1e9).toFixed(2) + "B";
  if (abs >= 1e6) return (n / 1e6).toFixed(2) + "M";
  if (abs >= 1e4) return (n / 1e3).toFixed(1) + "K";
  return String(Math.round(n * 100) / 100);
}

/** The chart and the page around it. */
export class ChartView {
  /** The candle records shown, by time (UTC seconds). */
  records = new Map();
  /** What the legend is titled with: symbol, its name, interval. */
  title = { symbol: undefined, name: undefined, interval: undefined };
  #precision = 2;

  constructor() {
    this.chart = LC.createChart($("chart"), {
      autoSize: true,
      layout: {
        background: { type: "solid", color: "#131722" },
        textColor: "#d1d4dc",
        fontSize: 12,
        attributionLogo: true, // the TradingView link its licence asks for
      },
      grid: { vertLines: { color: "#1e222d" }, horzLines: { color: "#1e222d" } },
      crosshair: { mode: LC.CrosshairMode.Normal },
      rightPriceScale: { borderColor: "#2a2e39" },
      timeScale: { borderColor: "#2a2e39", timeVisible: true, secondsVisible: false },
      localization: { dateFormat: "yyyy-MM-dd" },
    });
    this.candles = this.chart.addSeries(LC.CandlestickSeries, {
      upColor: UP,
      downColor: DOWN,
      borderVisible: false,
      wickUpColor: UP,
      wickDownColor: DOWN,
    });
    this.candles.priceScale().applyOptions({ scaleMargins: { top: 0.12, bottom: 0.25 } });
    this.volume = this.chart.addSeries(LC.HistogramSeries, {
      priceFormat: { type: "volume" },
      priceScaleId: "volume",
      lastValueVisible: false,
      priceLineVisible: false,
    });
    this.chart.priceScale("volume").applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
    this.chart.subscribeCrosshairMove((param) => {
      const record = param.time === undefined ? undefined : this.records.get(param.time);
      this.renderLegend(record);
    });
  }

  /** The newest candle shown. */
  newest() {
    let last;
    for (const r of this.records.values()) if (!last || timeOf(r) > timeOf(last)) last = r;
    return last;
  }

  /** Shows `records` (replacing what was shown when `replace`, else adding to it). */
  show(records, { replace = false } = {}) {
    if (replace) this.records = new Map();
    for (const r of records) this.records.set(timeOf(r), r);
    const rows = [...this.records.values()].sort((a, b) => timeOf(a) - timeOf(b));
    this.candles.setData(rows.map(bar));
    this.volume.setData(rows.map(volumeBar));
    this.#updatePrecision();
    this.renderLegend();
    $("chart").classList.toggle("empty", rows.length === 0);
  }

  /**
   * Applies a live candle: the newest one, or a correction of one shown. Returns false for
   * a candle older than the newest that the chart does not hold.
   */
  update(record) {
    const time = timeOf(record);
    const last = this.newest();
    if (!last) {
      this.show([record]);
      return true;
    }
    const historical = time < timeOf(last);
    if (historical && !this.records.has(time)) return false;
    this.records.set(time, record);
    this.candles.update(bar(record), historical);
    this.volume.update(volumeBar(record), historical);
    $("chart").classList.remove("empty");
    this.renderLegend();
    return true;
  }

  /** Puts the last `bars` candles in view (all of them when there are fewer). */
  showLast(bars) {
    const n = this.records.size;
    if (n > bars) this.chart.timeScale().setVisibleLogicalRange({ from: n - bars, to: n + 5 });
    else this.chart.timeScale().fitContent();
  }

  /** Calls `fn` when the reader brings the oldest candles near the left edge. */
  onNearLeftEdge(fn) {
    this.chart.timeScale().subscribeVisibleLogicalRangeChange((range) => {
      if (range && range.from < 10) fn();
    });
  }

  /** Price precision from the data: enough decimals for its prices, 2 to 8. */
  #updatePrecision() {
    let places = 2;
    let seen = 0;
    for (const r of this.records.values()) {
      places = Math.max(places, decimals(r.open), decimals(r.close));
      if (++seen > 500) break;
    }
    places = Math.min(places, 8);
    if (places !== this.#precision) {
      this.#precision = places;
      this.candles.applyOptions({
        priceFormat: { type: "price", precision: places, minMove: 10 ** -places },
      });
    }
  }

  #price(n) {
    return n === null || n === undefined ? "–" : n.toFixed(this.#precision);
  }

  /** The legend: title, then O/H/L/C/V/VWAP/ticks of `record` (default: the newest). */
  renderLegend(record = this.newest()) {
    const legend = $("legend");
    legend.replaceChildren();
    const { symbol, name, interval } = this.title;
    if (!symbol) return;
    const title = document.createElement("div");
    title.className = "title";
    title.textContent = `${symbol} · ${interval}`;
    if (name) {
      const small = document.createElement("small");
      small.textContent = name;
      title.append(small);
    }
    legend.append(title);
    if (!record) return;
    const values = document.createElement("div");
    values.className = "values " + (record.close >= record.open ? "up" : "down");
    const when = new Date(record.bucket).toISOString().slice(0, 16).replace("T", " ");
    const fields = [
      ["", interval === "1d" ? when.slice(0, 10) : when],
      ["O", this.#price(record.open)],
      ["H", this.#price(record.high)],
      ["L", this.#price(record.low)],
      ["C", this.#price(record.close)],
      ["V", formatVolume(record.volume)],
      ["VWAP", this.#price(record.vwap)],
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
}

/** The status at the top right: `live`, `down`, `disconnected` or `loading`. */
export function setStatus(status, text) {
  const el = $("status");
  el.dataset.state = status;
  el.textContent = text;
}

/** A notice over the chart (instead of an empty chart); `code` in the hint is `...`. */
export function showNotice(title, detail, hint) {
  $("notice-title").textContent = title;
  $("notice-detail").textContent = detail ?? "";
  const hintEl = $("notice-hint");
  hintEl.replaceChildren();
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

export function hideNotice() {
  $("notice").hidden = true;
}

/** A line above the chart (empty text hides it). */
export function showBanner(text) {
  $("banner").textContent = text;
  $("banner").hidden = !text;
}

/** Fills the symbol picker and marks the interval. */
export function fillPickers(symbols, symbol, interval) {
  const select = $("symbol");
  select.replaceChildren(...symbols.map((s) => {
    const option = document.createElement("option");
    option.value = s.symbol;
    option.textContent = s.name ? `${s.symbol} — ${s.name}` : s.symbol;
    return option;
  }));
  select.value = symbol;
  select.disabled = false;
  markInterval(interval);
}

export function markInterval(interval) {
  for (const button of $("intervals").querySelectorAll("button")) {
    button.setAttribute("aria-pressed", String(button.dataset.interval === interval));
  }
}

/** What the page shows, for `window.__tickpipeChart.state()`. */
export function pageText() {
  return {
    notice: $("notice").hidden ? undefined : $("notice-title").textContent,
    banner: $("banner").hidden ? undefined : $("banner").textContent,
    legend: $("legend").textContent,
  };
}
