// The operator console ([admin] listen) in headless Chromium against a real `otpgate serve`
// with three emulated phones (`otpgate emulator`, real HTTP servers) under a steady load of
// verifications; one phone is killed midway and the page must show it down with the reason
// within the health interval. At 390 px and at desktop size: screenshots, an axe-core scan
// with no violation, no horizontal scrolling on the phone-sized screen, and never a full
// number or the token in the page. The token is required and a wrong one refused.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import path from "node:path";
import { freePort, openBrowser, otpgateBin, ROOT, screenshot } from "./helpers.mjs";
import { serve } from "./issuer.mjs";

const HEALTH_SECS = 1;
const TOKEN = "console-test-token-" + "9".repeat(40);
const API_KEY = "console-test-api-key-" + "7".repeat(40);
const WEBHOOK_KEY = "console-test-webhook-key-0123456789";
const require = createRequire(import.meta.url);
const REPEATED = "+12025550100";

let dir;
let issuer;
let base;
let admin;
const phones = [];
const used = new Set([REPEATED]);
let load;

function emulator(name, port, webhook) {
  let log = "";
  const child = spawn(otpgateBin(), [
    "emulator", "--listen", `127.0.0.1:${port}`, "--username", "sms", "--password", `pw-${name}`,
    "--signing-key", WEBHOOK_KEY, "--webhook", webhook, "--delay-ms", "150", "--limit-per-minute", "0",
  ], { stdio: ["ignore", "pipe", "pipe"] });
  child.stdout.on("data", (d) => { log += d; });
  child.stderr.on("data", (d) => { log += d; });
  return { name, port, child, url: `http://127.0.0.1:${port}`, log: () => log };
}

async function waitHttp(url, ms = 15_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      await fetch(url);
      return;
    } catch {
      if (Date.now() > deadline) throw new Error(`${url} never answered`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/** A fresh valid US number (fictional 555-01xx lines), never the same twice in this file. */
function number() {
  for (;;) {
    const area = [201, 202, 206, 212, 303, 312, 415, 503, 617, 646][Math.floor(Math.random() * 10)];
    const n = `+1${area}5550${String(100 + Math.floor(Math.random() * 100)).slice(-3)}`;
    if (!used.has(n)) {
      used.add(n);
      return n;
    }
  }
}

/** Steady traffic from a trusted backend: starts (sent by the phones, half of them checked
 * with the code read off the phones' outboxes), and starts over a number's budget (refused). */
function startLoad() {
  let stop = false;
  const done = (async () => {
    let i = 0;
    while (!stop) {
      i += 1;
      // Every fourth start goes to the same number: past its budget, refused (rate_limited).
      const phone = i % 4 === 0 ? REPEATED : number();
      const trusted = true;
      const res = await fetch(`${base}/v1/verifications`, {
        method: "POST",
        headers: { "content-type": "application/json", ...(trusted ? { authorization: `Bearer ${API_KEY}` } : {}) },
        body: JSON.stringify({ phone }),
      }).catch(() => null);
      if (res && res.status === 201 && i % 2 === 1) {
        const { id } = await res.json();
        checkLater(id, phone);
      }
      await new Promise((r) => setTimeout(r, 400));
    }
  })();
  return { async stop() { stop = true; await done; } };
}

async function checkLater(id, phone) {
  for (let tries = 0; tries < 20; tries++) {
    await new Promise((r) => setTimeout(r, 300));
    for (const p of phones) {
      if (p.child.exitCode !== null || p.killed) continue;
      const box = await fetch(`${p.url}/_emulator/messages?phone=${encodeURIComponent(phone)}`).then((r) => r.json()).catch(() => []);
      const list = Array.isArray(box) ? box : box.messages || [];
      const m = list.find((x) => x.phone === phone || (x.phoneNumbers || []).includes(phone));
      const code = m && /#(\d{4,10})/.exec(m.text || m.message || "");
      if (code) {
        await fetch(`${base}/v1/verifications/${id}/check`, {
          method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ code: code[1] }),
        }).catch(() => {});
        return;
      }
    }
  }
}

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), "otpgate-console-"));
  const port = await freePort();
  const adminPort = await freePort();
  base = `http://127.0.0.1:${port}`;
  admin = `http://127.0.0.1:${adminPort}`;
  const webhook = `${base}/v1/gateways/sms-gate/webhook`;
  for (const name of ["p1", "p2", "p3"]) {
    phones.push(emulator(name, await freePort(), webhook));
  }
  await Promise.all(phones.map((p) => waitHttp(`${p.url}/health`)));
  const devices = phones.map((p) => `
[[gateways.devices]]
name = "${p.name}"
kind = "sms-gate"
url = "${p.url}"
username = "sms"
password_env = "PHONE_PW_${p.name.toUpperCase()}"
budget_per_minute = 30
`).join("");
  const config = `
[server]
listen = "127.0.0.1:${port}"
public_url = "${base}"

[[apps]]
name = "demo"
origins = ["${base}"]

[policy]
api_keys = ["env:CONSOLE_API_KEY"]

[policy.budgets.phone]
limit = 2
window_secs = 600

[gateways]
webhook_signing_key_env = "CONSOLE_WEBHOOK_KEY"
health_interval_secs = ${HEALTH_SECS}
${devices}

[admin]
listen = "127.0.0.1:${adminPort}"
token_env = "CONSOLE_ADMIN_TOKEN"
`;
  const file = path.join(dir, "otpgate.toml");
  writeFileSync(file, config);
  issuer = await serve({
    url: base,
    args: ["--config", file, "--data-dir", path.join(dir, "data")],
    env: {
      PATH: process.env.PATH, RUST_LOG: "warn",
      CONSOLE_API_KEY: API_KEY, CONSOLE_WEBHOOK_KEY: WEBHOOK_KEY, CONSOLE_ADMIN_TOKEN: TOKEN,
      PHONE_PW_P1: "pw-p1", PHONE_PW_P2: "pw-p2", PHONE_PW_P3: "pw-p3",
    },
  });
  await waitHttp(`${admin}/api/openapi.json`);
  load = startLoad();
});

after(async () => {
  if (load) await load.stop();
  for (const p of phones) if (p.child.exitCode === null) p.child.kill("SIGKILL");
  if (issuer) await issuer.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function login(page) {
  await page.goto(`${admin}/`);
  await page.fill("#token", TOKEN);
  await Promise.all([page.waitForNavigation(), page.click("button[type=submit]")]);
  await page.waitForSelector("#fleet article.card", { timeout: 15_000 });
}

async function axeAll(page) {
  // Evaluated through the DevTools protocol: the page's CSP (scripts from the console only)
  // stays in force and would refuse an injected <script>.
  await page.evaluate(readFileSync(require.resolve("axe-core/axe.min.js"), "utf8"));
  const result = await page.evaluate(async () =>
    // eslint-disable-next-line no-undef
    axe.run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"] } }));
  return result.violations.map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
}

/** The page's whole text and markup: no number we sent, no token. */
async function assertNothingSecret(page) {
  const html = await page.content();
  assert.ok(!html.includes(TOKEN), "the admin token is not in the page");
  assert.ok(!html.includes(API_KEY), "no API key in the page");
  for (const n of used) {
    assert.ok(!html.includes(n) && !html.includes(n.slice(1)), `the number ${n.slice(0, 5)}… is not in the page`);
  }
}

test("the admin API refuses a missing or wrong token and takes the right one", async () => {
  const none = await fetch(`${admin}/api/fleet`);
  assert.equal(none.status, 401);
  assert.match(none.headers.get("www-authenticate") || "", /Bearer/);
  assert.equal((await none.json()).error.code, "unauthorized");
  const wrong = await fetch(`${admin}/api/fleet`, { headers: { authorization: `Bearer ${TOKEN}x` } });
  assert.equal(wrong.status, 401);
  const badLogin = await fetch(`${admin}/login`, {
    method: "POST", redirect: "manual",
    headers: { "content-type": "application/x-www-form-urlencoded" }, body: "token=nope",
  });
  assert.equal(badLogin.status, 401);
  assert.equal(badLogin.headers.get("set-cookie"), null);
  const ok = await fetch(`${admin}/api/fleet`, { headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(ok.status, 200);
  assert.deepEqual((await ok.json()).devices.map((d) => d.name), ["p1", "p2", "p3"]);
  // The console is not on the main listener outside dev mode.
  assert.equal((await fetch(`${base}/admin/api/fleet`, { headers: { authorization: `Bearer ${TOKEN}` } })).status, 404);
});

test("the vendored uPlot is the npm package's build", () => {
  for (const f of ["uPlot.iife.min.js", "uPlot.min.css"]) {
    const vendored = readFileSync(path.join(ROOT, "crates/otpgate-server/console/vendor", f));
    const npm = readFileSync(path.join(path.dirname(require.resolve("uplot/package.json")), "dist", f));
    assert.ok(vendored.equals(npm), `${f} differs from node_modules/uplot: run scripts/vendor-console.sh`);
  }
});

test("desktop: three phones under load, one killed midway shows down with the reason", async () => {
  const b = await openBrowser({ viewport: { width: 1280, height: 900 } });
  try {
    await login(b.page);
    await b.page.waitForFunction(() => document.querySelectorAll("#fleet article[data-state=up]").length === 3, null, { timeout: 15_000 });
    // Let the load show in the charts (10 s buckets) and the table.
    await b.page.waitForFunction(() => document.querySelectorAll("#recent tbody tr td.timeline").length >= 3, null, { timeout: 20_000 });
    await b.page.waitForSelector("#c-sends canvas", { timeout: 20_000 });
    await new Promise((r) => setTimeout(r, 6_000));
    await screenshot(b.page, "console-desktop-all-up");

    const p3 = phones[2];
    p3.killed = true;
    p3.child.kill("SIGKILL");
    const killedAt = Date.now();
    await b.page.waitForSelector('#fleet article[data-device="p3"][data-state="down"] .reason', { timeout: 15_000 });
    const seen = (Date.now() - killedAt) / 1000;
    const reason = await b.page.textContent('#fleet article[data-device="p3"] .reason');
    assert.match(reason, /health check failed|circuit open/);
    // Health interval + the check's own timeout + the page's 2 s poll.
    assert.ok(seen < HEALTH_SECS + 10 + 3, `shown down after ${seen} s`);
    assert.equal(await b.page.locator('#fleet article[data-state="up"]').count(), 2);
    await new Promise((r) => setTimeout(r, 5_000));
    await screenshot(b.page, "console-desktop-p3-down");

    const series = await (await fetch(`${admin}/api/series?minutes=5`, { headers: { authorization: `Bearer ${TOKEN}` } })).json();
    const sends = Object.values(series.sends_per_min).flat().reduce((a, v) => a + v, 0);
    assert.ok(sends > 0, "sends per minute were recorded");
    assert.ok(series.starts_per_min.some((v) => v > 0), "starts were recorded");
    assert.ok(Object.keys(series.refusals_per_min).length > 0, "refusals were recorded by reason");
    assert.ok(series.pow_bits.some((v) => v !== null), "the difficulty was sampled");
    assert.ok(series.store_ms.some((v) => v !== null), "the store was timed");

    await assertNothingSecret(b.page);
    const violations = await axeAll(b.page);
    assert.deepEqual(violations, [], violations.join("\n"));
    assert.deepEqual(b.errors, [], b.errors.join("\n"));
  } finally {
    await b.close();
  }
});

test("390 px: the console fits a phone screen, passes axe, and logs out", async () => {
  const b = await openBrowser({ viewport: { width: 390, height: 844 } });
  try {
    await login(b.page);
    await b.page.waitForSelector("#c-latency canvas, #c-latency .empty", { timeout: 20_000 });
    await new Promise((r) => setTimeout(r, 3_000));
    const overflow = await b.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `no horizontal scrolling (${overflow} px too wide)`);
    await screenshot(b.page, "console-390");
    await assertNothingSecret(b.page);
    const violations = await axeAll(b.page);
    assert.deepEqual(violations, [], violations.join("\n"));
    const cookies = await b.context.cookies(admin);
    const c = cookies.find((x) => x.name === "otpgate_admin");
    assert.ok(c && c.httpOnly && c.sameSite === "Strict", JSON.stringify(cookies));
    assert.deepEqual(b.errors, [], b.errors.join("\n"));
    await Promise.all([b.page.waitForNavigation(), b.page.click("header button[type=submit]")]);
    await b.page.waitForSelector("#token");
    const after = await b.page.evaluate(async () => (await fetch("/api/fleet")).status);
    assert.equal(after, 401, "the session ends at logout");
    await screenshot(b.page, "console-login-390");
  } finally {
    await b.close();
  }
});
