// <otp-verify> on a page of its own, as an app embeds it: served from another origin than the
// issuer (a small static server here, the issuer a fresh dev-mode `otpgate serve`), made by
// script the way a framework makes it (createElement, attributes, append), under a strict
// Content-Security-Policy (no inline styles or scripts), with the element's default colours.
// Checks: no CSP violation, axe-core with zero violations in light and dark, theming through
// --otp-* and ::part(), the `country` attribute, and a receipt whose issuer is not the one
// expected is reported as otp-error (stage receipt), never as otp-approved.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import http from "node:http";
import path from "node:path";
import {
  ROOT, SCREENS, axeOnElement, devServer, events, freePort, freshPhone, openBrowser, otpText,
  recordEvents, screenshot, smsOnPanel, typeCode,
} from "./helpers.mjs";

let server;
let site;
let siteUrl;

const PAGE = (issuer) => `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <meta name="color-scheme" content="light dark">
  <title>An app with otp-verify</title>
  <link rel="stylesheet" href="/app.css">
  <script type="module" src="/app.js"></script>
</head>
<body><main><h1>Confirm your phone</h1><div id="slot"></div>
<ol id="sms-list"></ol></main></body></html>`;

const APP_CSS = `
body { font: 16px/1.5 system-ui, sans-serif; margin: 1rem; }
@media (prefers-color-scheme: dark) { body { background: #1b1f25; color: #eef0f3; } }
otp-verify.themed { --otp-accent: rgb(109, 40, 217); }
otp-verify.themed::part(code-input) { font-family: monospace; }
`;

// The page's script: makes the element like a framework does, and shows the SMS (read from
// the issuer's emulated phone) so the test reads the code from the page.
const APP_JS = (issuer) => `
import "/pkg/element.js";
const params = new URLSearchParams(location.search);
const el = document.createElement("otp-verify");
el.setAttribute("issuer", ${JSON.stringify(issuer)});
el.setAttribute("app", "demo");
for (const [k, v] of params) if (k !== "class") el.setAttribute(k, v);
if (params.get("class")) el.className = params.get("class");
document.getElementById("slot").append(el);
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => window.__csp.push(e.violatedDirective + " " + e.blockedURI));
el.addEventListener("otp-sent", (e) => {
  const phone = e.detail.phone;
  const poll = async () => {
    const r = await fetch(${JSON.stringify(issuer)} + "/_emulator/messages?phone=" + encodeURIComponent(phone));
    const list = await r.json();
    const ol = document.getElementById("sms-list");
    ol.replaceChildren(...list.map((m) => {
      const li = document.createElement("li");
      li.className = "sms";
      const p = document.createElement("p");
      p.className = "text";
      p.textContent = m.text;
      li.append(p);
      return li;
    }));
    if (!list.length) setTimeout(poll, 300);
  };
  poll();
});
`;

const CSP = (issuer) => [
  "default-src 'none'",
  "script-src 'self' 'wasm-unsafe-eval'",
  `connect-src 'self' ${issuer}`,
  "style-src 'self'",
  "img-src data:",
].join("; ");

const TYPES = { ".js": "text/javascript", ".wasm": "application/wasm", ".css": "text/css", ".html": "text/html" };

before(async () => {
  server = await devServer();
  const port = await freePort();
  siteUrl = `http://127.0.0.1:${port}`;
  site = http.createServer((req, res) => {
    const url = new URL(req.url, siteUrl);
    let body;
    let type;
    if (url.pathname === "/") [body, type] = [PAGE(server.url), TYPES[".html"]];
    else if (url.pathname === "/app.js") [body, type] = [APP_JS(server.url), TYPES[".js"]];
    else if (url.pathname === "/app.css") [body, type] = [APP_CSS, TYPES[".css"]];
    else if (/^\/pkg\/[\w.]+$/.test(url.pathname)) {
      try {
        body = readFileSync(path.join(ROOT, url.pathname));
        type = TYPES[path.extname(url.pathname)] || "application/octet-stream";
      } catch {
        // not there
      }
    }
    if (!body) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "content-type": type, "content-security-policy": CSP(server.url) }).end(body);
  });
  await new Promise((r) => site.listen(port, "127.0.0.1", r));
});

after(async () => {
  site?.close();
  await server?.stop();
});

async function open(query = "", viewport = SCREENS[0].viewport) {
  const b = await openBrowser({ viewport });
  await b.page.goto(`${siteUrl}/${query}`);
  await b.page.waitForSelector("otp-verify[data-ready]", { timeout: 15_000 });
  return b;
}

test("a strict CSP, another origin, made by script: no CSP violation, axe clean in light and dark, country attribute", async () => {
  const b = await open("?country=FR");
  try {
    const { page, errors } = b;
    assert.equal(await page.inputValue("#country"), "FR", "the country attribute preselects");
    assert.equal(await otpText(page, "dial-prefix"), "+33");
    // The default colours, the page's colour scheme followed.
    assert.deepEqual(await axeOnElement(page), [], "axe-core, light");
    await page.emulateMedia({ colorScheme: "dark" });
    const dark = await page.locator("#start-btn").evaluate((el) => getComputedStyle(el).backgroundColor);
    assert.equal(dark, "rgb(138, 180, 248)", "dark scheme: the dark accent");
    assert.deepEqual(await axeOnElement(page), [], "axe-core, dark");
    await screenshot(page, "element-csp-dark");
    await page.emulateMedia({ colorScheme: "light" });
    // A refusal shown, axe still clean.
    await page.fill("#national", "12");
    await page.keyboard.press("Enter");
    assert.match(await otpText(page, "start-error"), /too short/i);
    assert.deepEqual(await axeOnElement(page), [], "axe-core, a refusal shown");
    assert.deepEqual(await page.evaluate(() => window.__csp), [], "no CSP violation");
    // The policy is in force: an inline style is refused (and reported).
    await page.evaluate(() => {
      const s = document.createElement("style");
      s.textContent = "body { color: red }";
      document.head.append(s);
    });
    await page.waitForFunction(() => window.__csp.length > 0, null, { timeout: 5_000 });
    assert.match((await page.evaluate(() => window.__csp))[0], /^style-src/);
    assert.deepEqual(errors.filter((e) => !/Content Security Policy/.test(e)), []);
  } finally {
    await b.close();
  }
});

test("theming: --otp-* custom properties and ::part() reach inside", async () => {
  const b = await open("?class=themed");
  try {
    const { page } = b;
    assert.equal(await page.locator("#start-btn").evaluate((el) => getComputedStyle(el).backgroundColor), "rgb(109, 40, 217)");
    assert.equal(await page.locator("#code").evaluate((el) => getComputedStyle(el).fontFamily), "monospace");
  } finally {
    await b.close();
  }
});

test("a receipt from another issuer than expected: otp-error (stage receipt), never otp-approved", async () => {
  const b = await open("?receipt-issuer=https%3A%2F%2Fwrong.example");
  try {
    const { page } = b;
    await recordEvents(page);
    const phone = freshPhone();
    await page.selectOption("#country", "US");
    await page.fill("#national", phone.national);
    await page.click("#start-btn");
    await page.waitForSelector("#verify-step:not([hidden])", { timeout: 15_000 });
    const { code } = await smsOnPanel(page, 1);
    await typeCode(page, code);
    await page.waitForFunction(() => window.__otpEvents.some((e) => e.type === "otp-error" && e.detail.stage === "receipt"), null, { timeout: 15_000 });
    const err = (await events(page, "otp-error")).find((e) => e.detail.stage === "receipt");
    assert.equal(err.detail.code, "receipt_wrong_issuer");
    assert.match(err.detail.receipt, /^[\w-]+\.[\w-]+\.[\w-]+$/, "the receipt, for a backend to judge");
    assert.deepEqual(await events(page, "otp-approved"), [], "no otp-approved");
    assert.match(await otpText(page, "receipt-note"), /could not be checked here/);
    await screenshot(page, "element-receipt-wrong-issuer");
  } finally {
    await b.close();
  }
});
