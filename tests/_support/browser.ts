/**
 * A real, headless Chromium for page tests: Debian's `chromium` package (CHROMIUM_PATH
 * overrides /usr/bin/chromium), driven by playwright-core. Playwright never downloads a
 * browser here; .ci/run installs the package.
 */
import fs from "node:fs";
import type { BrowserContext, Page } from "playwright-core";

/** Where the browser is: CHROMIUM_PATH, else Debian's /usr/bin/chromium. */
export const CHROMIUM_PATH = Deno.env.get("CHROMIUM_PATH") ?? "/usr/bin/chromium";

/**
 * Loads playwright-core. When it loads it probes for WSL with
 * `fs.existsSync("/proc/sys/fs/binfmt_misc/WSLInterop")`, and Deno answers any access under
 * /proc/sys with NotCapable unless the process has --allow-all (which the test task does not
 * grant), where Node would answer false. So, for that load only, such paths read as absent.
 */
async function loadPlaywright(): Promise<typeof import("playwright-core")> {
  const existsSync = fs.existsSync;
  fs.existsSync = (path) => String(path).startsWith("/proc/sys/") ? false : existsSync(path);
  try {
    return await import("playwright-core");
  } finally {
    fs.existsSync = existsSync;
  }
}

/** A browser with a fresh profile, and every request its pages made. */
export interface TestBrowser {
  context: BrowserContext;
  /** Opens a page whose requests are recorded in `requests`. */
  newPage(): Promise<Page>;
  /** Every URL requested by the pages (data: URLs excluded). */
  requests: URL[];
  /** Requests to any host but 127.0.0.1, aborted before they left. */
  blocked: URL[];
  /** Errors thrown by page scripts. */
  pageErrors: string[];
  close(): Promise<void>;
}

/**
 * Launches Chromium headless with a fresh user-data-dir, no background networking, and
 * a route that lets through only requests to 127.0.0.1 (the others are aborted and listed
 * in `blocked`, so a test can assert the page needs nothing from elsewhere).
 */
export async function launchBrowser(
  options: { viewport?: { width: number; height: number } } = {},
): Promise<TestBrowser> {
  const profile = await Deno.makeTempDir({ prefix: "tickpipe-chromium-" });
  const { chromium } = await loadPlaywright();
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM_PATH,
      headless: true,
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-sync",
      ],
      viewport: options.viewport ?? { width: 1280, height: 720 },
    });
  } catch (error) {
    await Deno.remove(profile, { recursive: true }).catch(() => {});
    throw new Error(
      `Cannot start Chromium at ${CHROMIUM_PATH} (install Debian's chromium package, or set ` +
        `CHROMIUM_PATH): ${(error as Error).message.split("\n")[0]}`,
      { cause: error },
    );
  }
  const requests: URL[] = [];
  const blocked: URL[] = [];
  const pageErrors: string[] = [];
  await context.route("**/*", (route) => {
    const url = new URL(route.request().url());
    requests.push(url);
    if (url.hostname === "127.0.0.1") return route.continue();
    blocked.push(url);
    return route.abort("blockedbyclient");
  });
  return {
    context,
    requests,
    blocked,
    pageErrors,
    async newPage() {
      const page = await context.newPage();
      page.on("pageerror", (error) => pageErrors.push(error.message));
      return page;
    },
    async close() {
      await context.close();
      await Deno.remove(profile, { recursive: true }).catch(() => {});
    },
  };
}

// Runs in the browser: decodes a PNG (base64) into a canvas and counts its colours.
const COUNT_COLOURS = `async (data) => {
  const image = new Image();
  image.src = "data:image/png;base64," + data;
  await image.decode();
  const canvas = document.createElement("canvas");
  canvas.width = image.width;
  canvas.height = image.height;
  const context = canvas.getContext("2d");
  context.drawImage(image, 0, 0);
  const pixels = context.getImageData(0, 0, image.width, image.height).data;
  const colours = new Set();
  for (let i = 0; i < pixels.length; i += 4) {
    colours.add((pixels[i] << 16) | (pixels[i + 1] << 8) | pixels[i + 2]);
  }
  return colours.size;
}`;

/**
 * The number of distinct colours in a PNG, counted by the browser itself (decoded into a
 * canvas on a blank page): a blank or single-colour screenshot has one or two.
 */
export async function distinctColours(browser: TestBrowser, png: Uint8Array): Promise<number> {
  const page = await browser.context.newPage();
  try {
    const base64 = btoa(Array.from(png, (b) => String.fromCharCode(b)).join(""));
    return await page.evaluate(`(${COUNT_COLOURS})(${JSON.stringify(base64)})`) as number;
  } finally {
    await page.close();
  }
}
