/**
 * The chart page's files, imported as text so a compiled binary carries them:
 * the page, its scripts (chart.js loads and follows the data, view.js shows it) and style,
 * and TradingView's Lightweight Charts (its standalone production build, which defines
 * `window.LightweightCharts`) with its licence.
 *
 * The package's `exports` map only exposes its ES module build, which imports a second
 * package (fancy-canvas) that a browser would also need served. The standalone file is
 * one self-contained script, so it is imported by its path in node_modules (created by
 * `deno install` or by any `deno task`, which installs first).
 */
import page from "./page/chart.html" with { type: "text" };
import script from "./page/chart.js" with { type: "text" };
import viewScript from "./page/view.js" with { type: "text" };
import style from "./page/chart.css" with { type: "text" };
import lightweightCharts from "../../node_modules/lightweight-charts/dist/lightweight-charts.standalone.production.js" with {
  type: "text",
};
import lightweightChartsLicense from "../../node_modules/lightweight-charts/LICENSE" with {
  type: "text",
};

/** A file the chart server serves as it is. */
export interface Asset {
  body: string;
  contentType: string;
}

/** The page's files by URL path. */
export const ASSETS: Record<string, Asset> = {
  "/": { body: page, contentType: "text/html; charset=utf-8" },
  "/assets/chart.js": { body: script, contentType: "text/javascript; charset=utf-8" },
  "/assets/view.js": { body: viewScript, contentType: "text/javascript; charset=utf-8" },
  "/assets/chart.css": { body: style, contentType: "text/css; charset=utf-8" },
  "/assets/lightweight-charts.standalone.production.js": {
    body: lightweightCharts,
    contentType: "text/javascript; charset=utf-8",
  },
  "/assets/lightweight-charts.LICENSE.txt": {
    body: lightweightChartsLicense,
    contentType: "text/plain; charset=utf-8",
  },
};
