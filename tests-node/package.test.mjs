// The npm package as users get it: `npm pack` in pkg/, install the tarball into a scratch
// folder, use it through its `exports` map (Node ESM, require(), the workerd condition, the
// wasm subpath), compare parseSms/smsSegments with the CLI, and type-check usage.ts with tsc.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync, copyFileSync, existsSync, rmSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, "..");
const PKG = join(ROOT, "pkg");
const TARGET = process.env.CARGO_TARGET_DIR || join(ROOT, "target");
const CLI = join(TARGET, "debug", "otpgate");
let scratch;

const MESSAGES = [
  "Your code is 123456\n@shop.example.com #123456",
  "<#> Your Shop code is 482913\n@shop.example.com #482913 kFUwfusCq/+",
  "Code 4821\r\n@top.example #4821 @pay.example",
  "Hi\n@shop.example.com #123456\n",
  "something @example.com #747723",
  "@bad_host.example #123456",
  "no code here",
  "",
];

function node(args, input) {
  return execFileSync(process.execPath, args, { cwd: scratch, input, encoding: "utf8" });
}

before(() => {
  if (!existsSync(join(PKG, "package.json"))) {
    execFileSync("bash", [join(ROOT, "scripts", "build-pkg.sh")], { stdio: "inherit" });
  }
  scratch = mkdtempSync(join(tmpdir(), "otpgate-pkg-"));
  execFileSync("npm", ["pack", "--pack-destination", scratch, "--silent"], { cwd: PKG, encoding: "utf8" });
  const tarball = readdirSync(scratch).find((f) => f.endsWith(".tgz"));
  assert.ok(tarball, "npm pack produced a tarball");
  writeFileSync(join(scratch, "package.json"), JSON.stringify({ name: "scratch", private: true, type: "module" }));
  execFileSync("npm", ["install", "--no-audit", "--no-fund", "--loglevel=error", join(scratch, tarball)], { cwd: scratch });
});

after(() => {
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

test("the tarball holds the wasm, the glue, the Node entry and the typings", () => {
  const files = readdirSync(join(scratch, "node_modules", "otpgate")).sort();
  for (const f of ["otpgate_bg.wasm", "otpgate.js", "otpgate.d.ts", "node.mjs", "node.d.ts", "element.js", "element.d.ts", "package.json", "README.md", "LICENSE"]) {
    assert.ok(files.includes(f), `${f} in ${files}`);
  }
});

test("import * as otpgate from 'otpgate' is usable at once in Node", () => {
  const out = node(["--input-type=module", "-e", `
    import * as otpgate from "otpgate";
    const names = ["parseSms","composeSms","smsSegments","appHash","verifyAppHash","verifyReceipt",
      "verifyWebhookSignature","solvePow","receiveCode","OtpClient","toE164","errorCodes"];
    const missing = names.filter((n) => typeof otpgate[n] !== "function");
    if (missing.length) throw new Error("missing " + missing);
    console.log(JSON.stringify(otpgate.parseSms("x\\n@a.example #1234")));
  `]);
  assert.deepEqual(JSON.parse(out), { code: "1234", webotp: { host: "a.example", code: "1234", iframe_host: null }, app_hash: null });
});

test("import 'otpgate/element' resolves through the exports map and is harmless outside a browser (SSR)", () => {
  const out = node(["--input-type=module", "-e", `
    const m = await import("otpgate/element");
    console.log(typeof m.OtpVerifyElement, typeof globalThis.customElements);
  `]);
  assert.equal(out.trim(), "function undefined");
});

test("require('otpgate') works too", () => {
  const [major, minor] = process.versions.node.split(".").map(Number);
  if (major < 20 || (major === 20 && minor < 19) || (major === 22 && minor < 12)) return; // require(esm)
  const out = node(["--input-type=commonjs", "-e", `
    const { smsSegments } = require("otpgate");
    console.log(JSON.stringify(smsSegments("hello")));
  `]);
  assert.deepEqual(JSON.parse(out), { encoding: "GSM-7", segments: 1, units: 5 });
});

test("errors are OtpError with a stable code", () => {
  const out = node(["--input-type=module", "-e", `
    import { verifyReceipt, OtpClient } from "otpgate";
    const codes = [];
    try { verifyReceipt("a.b", { keys: [] }, { audience: "x", issuer: "y" }); } catch (e) { codes.push(e instanceof Error, e.name, e.code); }
    try { new OtpClient("ftp://x"); } catch (e) { codes.push(e.code); }
    console.log(JSON.stringify(codes));
  `]);
  assert.deepEqual(JSON.parse(out), [true, "OtpError", "receipt_malformed", "invalid_argument"]);
});

test("toE164 and errorCodes: the core's phone normalisation and the one list of error codes", () => {
  const out = node(["--input-type=module", "-e", `
    import { toE164, errorCodes } from "otpgate";
    const got = [toE164("06 12 34 56 78", "33", "0"), toE164("+44 7400 123456", "33", "0"), toE164("(415) 555-0123", "1", "1")];
    for (const typed of ["", "0612", "06 12 ab", "+999 1234 5678"]) {
      try { toE164(typed, "33", "0"); got.push("accepted " + typed); } catch (e) { got.push(e.name + ":" + e.code); }
    }
    try { toE164("0612345678", "999"); } catch (e) { got.push(e.code); }
    const codes = errorCodes();
    got.push(codes.includes("wrong_code"), codes.includes("network_error"), new Set(codes).size === codes.length);
    console.log(JSON.stringify(got));
  `]);
  assert.deepEqual(JSON.parse(out), [
    "+33612345678", "+447400123456", "+14155550123",
    "OtpError:invalid_phone", "OtpError:invalid_phone", "OtpError:invalid_phone", "OtpError:unknown_country_code",
    "invalid_argument", true, true, true,
  ]);
});

test("the workerd condition gives the web build, initialised with initSync and the wasm subpath", () => {
  const out = node(["--conditions=workerd", "--input-type=module", "-e", `
    import { readFileSync } from "node:fs";
    import { initSync, parseSms } from "otpgate";
    const wasmPath = new URL(import.meta.resolve("otpgate/otpgate_bg.wasm"));
    initSync({ module: new WebAssembly.Module(readFileSync(wasmPath)) });
    console.log(import.meta.resolve("otpgate").endsWith("/otpgate.js"), parseSms("@a.example #9876").code);
  `]);
  assert.equal(out.trim(), "true 9876");
});

test("parseSms and smsSegments equal the CLI's output", { skip: !existsSync(CLI) && `no ${CLI} (cargo build -p otpgate-server)` }, () => {
  const script = `
    import { parseSms, smsSegments } from "otpgate";
    const msgs = JSON.parse(process.argv[1]);
    console.log(JSON.stringify(msgs.map((m) => [parseSms(m), smsSegments(m)])));
  `;
  const got = JSON.parse(node(["--input-type=module", "-e", script, JSON.stringify(MESSAGES)]));
  MESSAGES.forEach((m, i) => {
    const cliParse = JSON.parse(execFileSync(CLI, ["sms", "parse"], { input: m, encoding: "utf8" }));
    const cliSegments = JSON.parse(execFileSync(CLI, ["sms", "segments"], { input: m, encoding: "utf8" }));
    assert.deepEqual(got[i][0], cliParse, `parse ${JSON.stringify(m)}`);
    assert.deepEqual(got[i][1], cliSegments, `segments ${JSON.stringify(m)}`);
  });
});

test("the typings type-check real usage (tsc --noEmit, nodenext and bundler resolution)", () => {
  copyFileSync(join(HERE, "usage.ts"), join(scratch, "usage.ts"));
  // typescript as this folder's package.json pins it, wherever npm placed it in the workspace.
  let tsc = null;
  try {
    tsc = createRequire(join(HERE, "package.json")).resolve("typescript/bin/tsc");
  } catch {
    // reported below
  }
  assert.ok(tsc && existsSync(tsc), "run `npm ci` at the repository root (scripts/setup.sh does)");
  for (const [module, resolution] of [["nodenext", "nodenext"], ["esnext", "bundler"]]) {
    const args = [tsc, "--noEmit", "--strict", "--target", "es2022", "--lib", "es2022,dom,esnext.disposable", "--module", module,
      "--moduleResolution", resolution, "usage.ts"];
    try {
      execFileSync(process.execPath, args, { cwd: scratch, encoding: "utf8" });
    } catch (e) {
      assert.fail(`tsc (${resolution}) failed:\n${e.stdout}${e.stderr}`);
    }
  }
});
