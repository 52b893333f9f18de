// Shortens wasm-bindgen's import names (scripts/build-pkg.sh). wasm-bindgen names every import
// `__wbg_<name>_<16 hex digits>`, in the wasm's import section and again as a key of the JS
// glue's import object: ~120 incompressible names. This renames them `a`, `b`, ... `aB`... in
// both, leaving the import module and every export as they are (so the typings' `InitOutput`
// stays true), then checks the pair: every import of the module is a key of the glue.
//
//   node minify-names.mjs IN.wasm GLUE.js OUT.wasm OUT.js
import { readFileSync, writeFileSync } from "node:fs";

const [inWasm, inGlue, outWasm, outGlue] = process.argv.slice(2);
if (!outGlue) {
  console.error("usage: minify-names.mjs IN.wasm GLUE.js OUT.wasm OUT.js");
  process.exit(2);
}
const fail = (msg) => {
  console.error(`minify-names: ${msg}`);
  process.exit(1);
};

const bytes = readFileSync(inWasm);
const utf8 = new TextDecoder("utf-8", { fatal: true });
const leb = (at) => {
  let value = 0, shift = 0, b;
  do {
    b = bytes[at++];
    value += (b & 0x7f) * 2 ** shift;
    shift += 7;
  } while (b & 0x80);
  return [value, at];
};
const encodeLeb = (n) => {
  const out = [];
  do {
    let b = n & 0x7f;
    n = Math.floor(n / 128);
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return Buffer.from(out);
};
const encodeName = (s) => {
  const b = Buffer.from(s, "utf8");
  return Buffer.concat([encodeLeb(b.length), b]);
};
// Short names: a..z A..Z, then two characters and more (object keys in the glue, where even
// reserved words are plain property names).
const ALPHA = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const shortName = (i) => {
  let s = "";
  do {
    s = ALPHA[i % 52] + s;
    i = Math.floor(i / 52) - 1;
  } while (i >= 0);
  return s;
};

if (bytes.readUInt32LE(0) !== 0x6d736100) fail(`${inWasm} is not a wasm module`);
let at = 8;
let found = false;
const parts = [bytes.subarray(0, 8)];
const renames = [];
while (at < bytes.length) {
  const id = bytes[at];
  const [size, bodyAt] = leb(at + 1);
  const end = bodyAt + size;
  if (id !== 2) {
    parts.push(bytes.subarray(at, end));
    at = end;
    continue;
  }
  found = true;
  let p = bodyAt;
  const [count, p1] = leb(p);
  p = p1;
  const entries = [encodeLeb(count)];
  for (let i = 0; i < count; i++) {
    const [mlen, m1] = leb(p);
    const module = bytes.subarray(m1, m1 + mlen);
    const [flen, f1] = leb(m1 + mlen);
    const field = utf8.decode(bytes.subarray(f1, f1 + flen));
    const descAt = f1 + flen;
    const kind = bytes[descAt];
    let descEnd;
    if (kind === 0x00 || kind === 0x04) {
      // function (type index) or tag (attribute byte, type index)
      descEnd = kind === 0x04 ? leb(descAt + 2)[1] : leb(descAt + 1)[1];
    } else if (kind === 0x01) {
      // table: reftype, limits
      const flags = bytes[descAt + 2];
      let q = leb(descAt + 3)[1];
      if (flags & 1) q = leb(q)[1];
      descEnd = q;
    } else if (kind === 0x02) {
      const flags = bytes[descAt + 1];
      let q = leb(descAt + 2)[1];
      if (flags & 1) q = leb(q)[1];
      descEnd = q;
    } else if (kind === 0x03) {
      descEnd = descAt + 3; // valtype, mutability
    } else {
      fail(`import ${field}: unknown import kind ${kind}`);
    }
    const to = field.startsWith("__wbg_") || field.startsWith("__wbindgen_") ? shortName(renames.length) : field;
    if (to !== field) renames.push([field, to]);
    entries.push(encodeLeb(mlen), module, encodeName(to), bytes.subarray(descAt, descEnd));
    p = descEnd;
  }
  if (p !== end) fail("the import section did not parse to its end");
  const body = Buffer.concat(entries);
  parts.push(Buffer.from([2]), encodeLeb(body.length), body);
  at = end;
}
if (!found) fail("no import section");
const wasm = Buffer.concat(parts);

const escape = (s) => s.replace(/[$.*+?^(){}[\]|\\]/g, "\\$&");
let glue = readFileSync(inGlue, "utf8");
for (const [from, to] of renames) {
  const re = new RegExp(`(?<![\\w$])${escape(from)}(?=\\s*:)`, "g");
  const n = (glue.match(re) ?? []).length;
  if (n !== 1) fail(`import ${from} is a key ${n} times in the glue`);
  glue = glue.replace(re, to);
}

// The pair agrees: the renamed module parses and each of its imports is a key of the glue.
const module = new WebAssembly.Module(wasm);
for (const { name } of WebAssembly.Module.imports(module)) {
  if (!new RegExp(`(?<![\\w$])${escape(name)}\\s*:`).test(glue)) fail(`the wasm imports ${name}; the glue has no such key`);
}
writeFileSync(outWasm, wasm);
writeFileSync(outGlue, glue);
console.log(`minify-names: ${renames.length} imports renamed`);
