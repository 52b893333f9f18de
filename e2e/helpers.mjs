// Shared helpers of the browser end-to-end tests: the issuer under test, Chromium through
// playwright-core, and reading the SMS off the emulated phone panel like a person would.

import { mkdtempSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { freePort, serve } from "./issuer.mjs";

export { ROOT, freePort, otpgateBin } from "./issuer.mjs";
export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const SHOTS = path.join(HERE, "screenshots");
mkdirSync(SHOTS, { recursive: true });

/** The issuer under test (`otpgate serve` in dev mode, started by scripts/test.sh). */
export function serverUrl() {
  const url = process.env.OTPGATE_TEST_SERVER;
  if (!url) {
    throw new Error(
      "OTPGATE_TEST_SERVER is not set: start `otpgate serve` in dev mode from the repository root " +
        "and export its URL (scripts/test.sh does both)",
    );
  }
  return url.replace(/\/+$/, "");
}

const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/**
 * A fresh Chromium (new temporary profile each time). Returns `{ context, page, close }`;
 * console errors and page errors are collected in `errors`.
 */
export async function openBrowser({ viewport = { width: 1100, height: 900 } } = {}) {
  const profile = mkdtempSync(path.join(tmpdir(), "otpgate-e2e-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: CHROMIUM_ARGS,
    viewport,
  });
  const page = context.pages()[0] || (await context.newPage());
  const errors = [];
  page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(`console: ${m.text()}`);
  });
  return {
    context,
    page,
    errors,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/**
 * Opens a fresh browser (`openBrowser(options)`) on the demo page of the issuer at `base`
 * (default: the one under test), with `init` (if given) added as an init script first; runs
 * `fn({ page, errors, context })` and closes the browser whatever happens.
 */
export async function withDemo(fn, { base = serverUrl(), init, ...options } = {}) {
  const b = await openBrowser(options);
  try {
    if (init) await b.page.addInitScript(init);
    await openDemo(b.page, base);
    return await fn(b);
  } finally {
    await b.close();
  }
}

/** A US or Canadian number in the fictional 555-01xx exchange, different on every call (per-phone budgets). */
export function freshPhone() {
  // Real US and Canadian area codes: the issuer judges numbers with libphonenumber's
  // metadata, and an unassigned or Caribbean area code is refused.
  const AREAS = [201, 202, 206, 212, 213, 303, 312, 404, 415, 416, 503, 512, 514, 604, 617, 646, 702, 718, 805, 919];
  const area = AREAS[Math.floor(Math.random() * AREAS.length)];
  const line = String(100 + Math.floor(Math.random() * 100)).padStart(4, "0");
  const national = `${area}555${line}`;
  return { national, e164: `+1${national}` };
}

/** Opens the demo page and waits until its <otp-verify> element has loaded the package. */
export async function openDemo(page, base) {
  await page.goto(`${base}/`);
  await page.waitForSelector("otp-verify[data-ready]", { timeout: 15_000 });
}

/**
 * Runs `fn(root, arg)` in the page with the <otp-verify> element's shadow root (the CSS
 * selectors of playwright pierce it by themselves; `document.querySelector` does not).
 */
export function inOtp(page, fn, arg) {
  return page.evaluate(
    ([src, a]) => {
      const root = document.querySelector("otp-verify").shadowRoot;
      // eslint-disable-next-line no-new-func
      return new Function("root", "arg", `return (${src})(root, arg);`)(root, a);
    },
    [fn.toString(), arg],
  );
}

/** The id of the focused control inside the element (null when the focus is elsewhere). */
export function activeId(page) {
  return page.evaluate(() => document.querySelector("otp-verify").shadowRoot.activeElement?.id ?? null);
}

/** The text of an element of the <otp-verify> shadow root, by id ("" when hidden or empty). */
export function otpText(page, id) {
  return inOtp(page, (root, i) => {
    const el = root.getElementById(i);
    return el && !el.hidden ? el.textContent : "";
  }, id);
}

/**
 * Waits until `fn(root, arg)` is truthy in the element's shadow root (polled), like
 * page.waitForFunction.
 */
export function waitInOtp(page, fn, arg, { timeout = 15_000, polling = 100 } = {}) {
  return page.waitForFunction(
    ([src, a]) => {
      const root = document.querySelector("otp-verify")?.shadowRoot;
      // eslint-disable-next-line no-new-func
      return root && new Function("root", "arg", `return (${src})(root, arg);`)(root, a);
    },
    [fn.toString(), arg],
    { timeout, polling },
  );
}

/**
 * Records the element's events (otp-sent, otp-approved, otp-error) in `window.__otpEvents`
 * as `{type, detail, at}`; call before the flow starts.
 */
export function recordEvents(page) {
  return page.evaluate(() => {
    window.__otpEvents = [];
    for (const type of ["otp-sent", "otp-approved", "otp-error"]) {
      document.addEventListener(type, (ev) => window.__otpEvents.push({ type, detail: ev.detail, at: Date.now() }));
    }
  });
}

/** The events recorded by recordEvents() so far. */
export function events(page, type) {
  return page.evaluate((t) => window.__otpEvents.filter((e) => !t || e.type === t), type);
}

/** A fresh dev-mode `otpgate serve` for one test file (its own per-IP start budget). */
export function devServer() {
  return startServer();
}

/** The two screens every flow is tried on: a phone (first) and a desktop. */
export const SCREENS = [
  { name: "phone", viewport: { width: 390, height: 844 } },
  { name: "desktop", viewport: { width: 1280, height: 800 } },
];

/** Fills the number (United States) into the element and presses "Send code". */
export async function startVerification(page, phone) {
  await page.selectOption("#country", "US");
  await page.fill("#national", phone.national);
  await page.click("#start-btn");
  await page.waitForSelector("#verify-step:not([hidden])", { timeout: 15_000 });
}

/** The code of an SMS text: the WebOTP line's `#code`, else the first run of 4–10 digits. */
export function codeOf(text) {
  const webotp = /(?:^|\n)@\S+ #([^\s]+)/.exec(text);
  if (webotp) return webotp[1];
  const digits = /\b(\d{4,10})\b/.exec(text);
  return digits ? digits[1] : null;
}

/**
 * Waits until the emulated phone panel shows `count` SMS and returns the newest one's text
 * and code (read from the page, as the person would).
 */
export async function smsOnPanel(page, count = 1, timeout = 20_000) {
  await page.waitForFunction(
    (n) => document.querySelectorAll("#sms-list .sms").length >= n,
    count,
    { timeout },
  );
  const texts = await page.$$eval("#sms-list .sms .text", (els) => els.map((e) => e.textContent));
  const text = texts[texts.length - 1];
  const code = codeOf(text);
  if (!code) throw new Error(`no code in the SMS on the panel: ${JSON.stringify(text)}`);
  return { text, code, all: texts };
}

/** Types a code like a person (key by key) and submits with Enter. */
export async function typeCode(page, code) {
  await page.fill("#code", "");
  await page.click("#code");
  await page.keyboard.type(code, { delay: 15 });
  await page.keyboard.press("Enter");
}

/**
 * Runs axe-core (WCAG 2.x A/AA rules) on the page as it is now; returns the violations of
 * serious or critical impact as readable lines.
 */
export async function axeViolations(page) {
  await page.addScriptTag({ path: createRequire(import.meta.url).resolve("axe-core/axe.min.js") });
  const result = await page.evaluate(async () =>
    // eslint-disable-next-line no-undef
    axe.run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] } }));
  return result.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
}

/**
 * Runs axe-core (WCAG 2.x A/AA rules and best practices) on the <otp-verify> element alone,
 * shadow root included; returns every violation, whatever its impact, as readable lines.
 */
export async function axeOnElement(page) {
  if (!(await page.evaluate(() => typeof window.axe === "object"))) {
    // Evaluated, not a <script> tag: a page's Content-Security-Policy does not stop it.
    await page.evaluate(readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8"));
  }
  const result = await page.evaluate(async () =>
    // eslint-disable-next-line no-undef
    axe.run({ include: [["otp-verify"]] }, {
      runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"] },
    }));
  return result.violations
    .map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
}

export async function screenshot(page, name) {
  const file = path.join(SHOTS, `${name}.png`);
  // Animations finished first: a full-page capture restarts them (the SMS would look dimmed).
  await page.screenshot({ path: file, fullPage: true, animations: "disabled" });
  return file;
}

/**
 * Starts an own `otpgate serve` (from the repository root, so it serves www/) with `args`
 * and `env`, waits for /healthz; returns `{ url, stop, log }`.
 */
export async function startServer({ args = [], env = {}, port: wanted } = {}) {
  const port = wanted || (await freePort());
  const dataDir = mkdtempSync(path.join(tmpdir(), "otpgate-e2e-data-"));
  const url = `http://127.0.0.1:${port}`;
  return {
    url,
    dataDir,
    ...(await serve({
      url,
      args: ["--listen", `127.0.0.1:${port}`, "--data-dir", dataDir, ...args],
      env: { ...process.env, RUST_LOG: process.env.RUST_LOG || "info", ...env },
      remove: dataDir,
    })),
  };
}
