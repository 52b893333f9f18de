// The package in a front-end project, checked as a user would: a fresh Vite + TypeScript app
// (app/: index.html, src/main.ts, a strict tsconfig) copied to a scratch folder, the packed
// `otpgate` tarball installed into it with npm, `tsc` (strict) over its usage, `vite build`
// for production, `vite preview` serving dist/, and headless Chromium (playwright-core,
// Debian's chromium) verifying a number on that page against the real dev-mode `otpgate
// serve` named by OTPGATE_TEST_SERVER (scripts/test.sh starts it): start, the code read from
// the emulated phone and typed in, check, and the receipt verified offline in the page; then
// the same through the <otp-verify> element (`import "otpgate/element"`, typed by its
// declarations under tsc --strict) on a second page of the app.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, "..", "..");
const PKG = join(ROOT, "pkg");
const BIN = join(ROOT, "node_modules", ".bin");
const SERVER = process.env.OTPGATE_TEST_SERVER;
const AUDIENCE = "demo"; // dev mode's one app

let app;
let preview;
let browser;
let previewUrl;

function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.on("error", fail);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

function run(cmd, args, opts = {}) {
  try {
    return execFileSync(cmd, args, { cwd: app, encoding: "utf8", stdio: "pipe", ...opts });
  } catch (e) {
    // Keep what the tool printed: the test's failure shows tsc's or vite's own message.
    e.message = `${e.message}\n${e.stdout ?? ""}${e.stderr ?? ""}`;
    throw e;
  }
}

before(async () => {
  assert.ok(SERVER, "OTPGATE_TEST_SERVER must name a running dev-mode `otpgate serve` (scripts/test.sh sets it)");
  if (!existsSync(join(PKG, "package.json"))) {
    execFileSync("bash", [join(ROOT, "scripts", "build-pkg.sh")], { stdio: "inherit" });
  }
  // Inside tests/vite/ so that `vite/client` and the tools resolve from the workspace's
  // node_modules, as they would from the app's own after `npm install -D vite typescript`.
  app = mkdtempSync(join(HERE, ".app-"));
  cpSync(join(HERE, "app"), app, { recursive: true });
  execFileSync("npm", ["pack", "--pack-destination", app, "--silent"], { cwd: PKG });
  const tarball = readdirSync(app).find((f) => f.endsWith(".tgz"));
  assert.ok(tarball, "npm pack produced a tarball");
  run("npm", ["install", "--no-audit", "--no-fund", "--loglevel=error", `./${tarball}`]);
});

after(async () => {
  await browser?.close();
  if (preview && preview.exitCode === null) preview.kill("SIGTERM");
  if (app) rmSync(app, { recursive: true, force: true });
});

test("tsc --strict accepts the typed usage in the app", () => {
  run(join(BIN, "tsc"), ["-p", "."]);
});

test("the typings are not `any`: wrong usage fails tsc --strict", () => {
  writeFileSync(
    join(app, "src", "wrong.ts"),
    `import { OtpClient, parseSms, type ErrorCode } from "otpgate";
import "otpgate/element";
const n: number = parseSms("x").code;                       // string | null, not number
const c: ErrorCode = "not_a_code";                         // outside the union
void new OtpClient("https://x", { apiKey: 42 });           // apiKey is a string
document.querySelector("otp-verify")?.addEventListener("otp-approved", (e) => { const r: number = e.detail.receipt; void r; });
document.querySelector("otp-verify")?.addEventListener("otp-error", (e) => { const s: "nope" = e.detail.stage; void s; });
export { n, c };
`,
  );
  let out = "";
  try {
    run(join(BIN, "tsc"), ["-p", "."]);
  } catch (e) {
    out = `${e.stdout}${e.stderr}`;
  } finally {
    rmSync(join(app, "src", "wrong.ts"));
  }
  for (const line of [3, 4, 5, 6, 7]) assert.match(out, new RegExp(`wrong\\.ts\\(${line},`), out);
  // The element's events are typed by their detail (not `Event`, not `any`).
  assert.match(out, /wrong\.ts\(6,\d+\): error TS2322: Type 'string' is not assignable to type 'number'/, out);
  assert.match(out, /wrong\.ts\(7,\d+\): error TS2322: Type 'OtpErrorStage' is not assignable to type '"nope"'/, out);
});

test("vite build (production) bundles the glue and emits the wasm as an asset", () => {
  const out = run(join(BIN, "vite"), ["build"], {
    env: { ...process.env, VITE_OTPGATE_ISSUER: SERVER, VITE_OTPGATE_AUDIENCE: AUDIENCE },
  });
  const assets = readdirSync(join(app, "dist", "assets"));
  assert.ok(assets.some((f) => f.endsWith(".wasm")), `a .wasm in dist/assets: ${assets}\n${out}`);
  assert.ok(assets.some((f) => f.endsWith(".js")), `a bundle in dist/assets: ${assets}`);
  assert.ok(existsSync(join(app, "dist", "element.html")), "the element's page is built");
});

test("the built page verifies a number against the real issuer in headless Chromium", async () => {
  const port = await freePort();
  preview = spawn(join(BIN, "vite"), ["preview", "--host", "127.0.0.1", "--port", String(port), "--strictPort"], {
    cwd: app,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let log = "";
  preview.stdout.on("data", (d) => (log += d));
  preview.stderr.on("data", (d) => (log += d));
  previewUrl = `http://127.0.0.1:${port}/`;
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(previewUrl)).ok) break;
    } catch {}
    assert.ok(i < 100, `vite preview did not answer:\n${log}`);
    await new Promise((r) => setTimeout(r, 100));
  }

  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const page = await browser.newPage();
  const problems = [];
  page.on("console", (m) => m.type() === "error" && problems.push(m.text()));
  page.on("pageerror", (e) => problems.push(String(e)));
  const wasm = [];
  page.on("response", (r) => r.url().endsWith(".wasm") && wasm.push(`${r.status()} ${r.headers()["content-type"]}`));

  await page.goto(previewUrl);
  const status = page.locator("#status");
  await status.filter({ hasText: /^ready$/ }).waitFor({ timeout: 15000 }).catch(async () => {
    assert.fail(`the page did not get ready: ${await status.textContent()} ${problems}`);
  });
  assert.deepEqual(wasm, ["200 application/wasm"], "the wasm came from the build's assets");

  // A valid (libphonenumber) US number, typed as a user types it.
  const last = String(Math.floor(Math.random() * 100)).padStart(2, "0");
  const e164 = `+141555501${last}`;
  await page.fill("#phone", `(415) 555-01${last}`);
  await page.click("#send");
  await status.filter({ hasText: /^sent:|error|unexpected/ }).waitFor({ timeout: 15000 });
  const sent = await status.textContent();
  assert.match(sent, /^sent:v_[\w-]+:/, `${sent} ${problems}`);

  // The code as the emulated phone "sent" it.
  const { parseSms } = await import(join(PKG, "node.mjs"));
  let code;
  for (let i = 0; i < 100 && !code; i++) {
    const r = await fetch(`${SERVER}/_emulator/messages?phone=${encodeURIComponent(e164)}`);
    const list = await r.json();
    const mine = (Array.isArray(list) ? list : list.messages).filter((m) => m.phone === e164);
    code = mine.length ? parseSms(mine[mine.length - 1].text).code : undefined;
    if (!code) await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(code, `an SMS to ${e164}`);

  await page.fill("#code", code);
  await page.click("#verify");
  await status.filter({ hasText: /^verified:|error|unexpected/ }).waitFor({ timeout: 15000 });
  assert.equal(await status.textContent(), `verified:${e164}:true`, String(problems));
  assert.deepEqual(problems, [], "no console errors");
});

test("the <otp-verify> element from the package verifies a number in the built app", async () => {
  assert.ok(browser && previewUrl, "the previous test started vite preview and Chromium");
  const page = await browser.newPage({ viewport: { width: 390, height: 844 } });
  const problems = [];
  page.on("console", (m) => m.type() === "error" && problems.push(m.text()));
  page.on("pageerror", (e) => problems.push(String(e)));
  await page.goto(`${previewUrl}element.html`);
  await page.waitForSelector("otp-verify[data-ready]", { timeout: 15000 });
  const status = page.locator("#status");

  const last = String(Math.floor(Math.random() * 100)).padStart(2, "0");
  const e164 = `+141555501${last}`;
  await page.selectOption("otp-verify #country", "US");
  await page.fill("otp-verify #national", `(415) 555-01${last}`);
  await page.click("otp-verify #start-btn");
  await status.filter({ hasText: /^sent:|^error/ }).waitFor({ timeout: 15000 });
  assert.match(await status.textContent(), new RegExp(`^sent:v_[\\w-]+:\\${e164}$`), String(problems));

  const { parseSms } = await import(join(PKG, "node.mjs"));
  let code;
  for (let i = 0; i < 100 && !code; i++) {
    const r = await fetch(`${SERVER}/_emulator/messages?phone=${encodeURIComponent(e164)}`);
    const list = await r.json();
    const mine = (Array.isArray(list) ? list : list.messages).filter((m) => m.phone === e164);
    code = mine.length ? parseSms(mine[mine.length - 1].text).code : undefined;
    if (!code) await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(code, `an SMS to ${e164}`);
  await page.fill("otp-verify #code", code);
  await page.keyboard.press("Enter");
  await status.filter({ hasText: /^verified:|^error/ }).waitFor({ timeout: 15000 });
  assert.equal(await status.textContent(), `verified:${e164}:true:3`, String(problems));
  assert.deepEqual(problems, [], "no console errors");
  await page.close();
});
