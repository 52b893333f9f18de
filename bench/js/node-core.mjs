// SMS parse / segment counting / composition in Node through the built npm package (pkg/, made
// by scripts/build-pkg.sh), beside pure-JS peers on the same messages in the same process: a
// regex parse (the usual hand-rolled approach: last line `@host #code`, a 4-8 digit code, a
// trailing 11-character hash) and a GSM-7 table lookup for segments. The peers are simpler
// than the package's grammar (no host validation, no User Consent rules): they are a ceiling
// reference, not an equivalent.
//
//   node bench/js/node-core.mjs [--seconds S] [--pkg DIR] [--json FILE]
//
// Figures are messages per second of process CPU time (user + system, one thread of JS) and
// per second of wall time, after a warm-up. The message mix is the criterion bench's
// (bench/benches/sms.rs).
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { ROOT, arg } from "./args.mjs";

const SECONDS = Number(arg("--seconds", "2"));
const PKG = path.resolve(arg("--pkg", path.join(ROOT, "pkg")));
const JSON_OUT = arg("--json", null);

const pkg = await import(pathToFileURL(path.join(PKG, "node.mjs")).href);

// The message mix of the criterion bench (bench/benches/sms.rs), from one file.
const MESSAGES = JSON.parse(readFileSync(path.join(ROOT, "bench/sms-messages.json"), "utf8"));
const SEGMENT_MESSAGES = [...MESSAGES, `${"a".repeat(152)}€${"a".repeat(152)}`];
const LOCALES = ["en", "pt-BR", "de", "fr-CA"];

// ---- pure-JS peers --------------------------------------------------------------------
const WEBOTP = /^@([A-Za-z0-9.-]+) #([A-Za-z0-9]+)(?: @([A-Za-z0-9.-]+))?/;
const CODE = /(?:^|[^0-9])([0-9]{4,8})(?![0-9])/;
const HASH = /(?:^|\s)([A-Za-z0-9+/]{11})\s*$/;
function regexParse(text) {
  const t = text.replace(/\r\n?/g, "\n");
  const last = t.slice(t.lastIndexOf("\n") + 1);
  const m = WEBOTP.exec(last);
  const webotp = m ? { host: m[1], code: m[2], iframe_host: m[3] ?? null } : null;
  const c = webotp ? null : CODE.exec(t);
  const h = HASH.exec(t);
  return { code: webotp ? webotp.code : c ? c[1] : null, webotp, app_hash: h ? h[1] : null };
}

const GSM_BASIC = new Set(
  "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà",
);
const GSM_EXT = new Set("^{}\\[~]|€\f");
function jsSegments(text) {
  // Septets per character; a 2-septet (escaped) character is never split across segments.
  let septets = 0;
  let segs = 1;
  let used = 0;
  for (const ch of text) {
    const n = GSM_BASIC.has(ch) ? 1 : GSM_EXT.has(ch) ? 2 : 0;
    if (n === 0) return ucs2Segments(text);
    septets += n;
    if (used + n > 153) {
      segs += 1;
      used = 0;
    }
    used += n;
  }
  return { encoding: "GSM-7", segments: septets <= 160 ? 1 : segs, units: septets };
}
function ucs2Segments(text) {
  // UTF-16 units; a surrogate pair is never split across segments.
  let segs = 1;
  let used = 0;
  for (const ch of text) {
    const n = ch.length;
    if (used + n > 67) {
      segs += 1;
      used = 0;
    }
    used += n;
  }
  return { encoding: "UCS-2", segments: text.length <= 70 ? 1 : segs, units: text.length };
}

// ---- timing ---------------------------------------------------------------------------
let sink = 0;
function measure(fn, items) {
  // Warm-up: a quarter of the budget (at least 200 ms) so the JIT and the wasm tier up.
  const warm = Math.max(0.2, SECONDS / 4) * 1000;
  let t0 = performance.now();
  while (performance.now() - t0 < warm) for (const m of items) sink ^= fn(m) ? 1 : 0;
  let msgs = 0;
  const cpu0 = process.cpuUsage();
  t0 = performance.now();
  let wall;
  for (;;) {
    for (let r = 0; r < 64; r++) for (const m of items) sink ^= fn(m) ? 1 : 0;
    msgs += 64 * items.length;
    wall = performance.now() - t0;
    if (wall >= SECONDS * 1000) break;
  }
  const cpu = process.cpuUsage(cpu0);
  const cpuS = (cpu.user + cpu.system) / 1e6;
  return { msgs, cpu_per_s: msgs / cpuS, wall_per_s: msgs / (wall / 1000) };
}

const compose = (locale) =>
  pkg.composeSms({ app: "Example", code: "123456", origin: "example.com", appHash: "FA+9qCX9VSu", locale });

// The peers must agree with the package on the plain cases, or the comparison is meaningless.
for (const m of MESSAGES) {
  const a = pkg.parseSms(m);
  const b = regexParse(m);
  if (a.webotp && (!b.webotp || a.webotp.host !== b.webotp.host || a.webotp.code !== b.webotp.code)) {
    throw new Error(`regex peer disagrees on ${JSON.stringify(m)}`);
  }
}
for (const m of SEGMENT_MESSAGES) {
  const a = pkg.smsSegments(m);
  const b = jsSegments(m);
  if (a.encoding !== b.encoding || a.segments !== b.segments) {
    throw new Error(`segment peer disagrees on ${JSON.stringify(m)}: ${JSON.stringify(a)} vs ${JSON.stringify(b)}`);
  }
}

const out = {
  node: process.version,
  seconds: SECONDS,
  parse: { wasm: measure(pkg.parseSms, MESSAGES), js_regex: measure(regexParse, MESSAGES) },
  segments: { wasm: measure(pkg.smsSegments, SEGMENT_MESSAGES), js_table: measure(jsSegments, SEGMENT_MESSAGES) },
  compose: { wasm: measure(compose, LOCALES) },
  sink,
};
const fmt = (x) => `${(x.cpu_per_s / 1e6).toFixed(2)} M/s CPU (${(x.wall_per_s / 1e6).toFixed(2)} M/s wall)`;
console.error(`node ${out.node}: parseSms ${fmt(out.parse.wasm)}; regex peer ${fmt(out.parse.js_regex)}`);
console.error(`  smsSegments ${fmt(out.segments.wasm)}; JS table peer ${fmt(out.segments.js_table)}`);
console.error(`  composeSms ${fmt(out.compose.wasm)}`);
const text = JSON.stringify(out, null, 2);
if (JSON_OUT && JSON_OUT !== "-") writeFileSync(JSON_OUT, text);
else console.log(text);
