// Applies wasm-opt's --minify-imports-and-exports-and-modules mapping to wasm-bindgen's JS glue
// (scripts/build-pkg.sh). wasm-bindgen names every import `__wbg_<name>_<16 hex digits>`: in
// the wasm and again as keys of the glue's import object, ~120 incompressible names. The
// minified wasm names them `a`, `b`, ...; this rewrites the glue to match, then checks the
// result against the module itself, so a glue the wasm does not fit fails the build, not a user.
//
//   node minify-names.mjs GLUE.js MAP.json MINIFIED.wasm OUT.js
import { readFileSync, writeFileSync } from "node:fs";

const [gluePath, mapPath, wasmPath, outPath] = process.argv.slice(2);
if (!outPath) {
  console.error("usage: minify-names.mjs GLUE.js MAP.json MINIFIED.wasm OUT.js");
  process.exit(2);
}
const fail = (msg) => {
  console.error(`minify-names: ${msg}`);
  process.exit(1);
};

// wasm-opt prints the mapping as JSON: {"imports": [[module, old, new]], "exports": [[old, new]]}.
const map = JSON.parse(readFileSync(mapPath, "utf8"));
const module = new WebAssembly.Module(readFileSync(wasmPath));
const imports = WebAssembly.Module.imports(module);
const exports = new Set(WebAssembly.Module.exports(module).map((e) => e.name));

const oldModules = [...new Set(map.imports.map(([m]) => m))];
const newModules = [...new Set(imports.map((i) => i.module))];
if (oldModules.length !== 1 || newModules.length !== 1) {
  fail(`expected one import module, found ${oldModules} -> ${newModules}`);
}

const escape = (s) => s.replace(/[$.*+?^(){}[\]|\\]/g, "\\$&");
let glue = readFileSync(gluePath, "utf8");

// Import keys: each old name is a key of the import object, once.
for (const [, from, to] of map.imports) {
  const re = new RegExp(`(?<![\\w$])${escape(from)}(?=\\s*:)`, "g");
  const n = (glue.match(re) ?? []).length;
  if (n !== 1) fail(`import ${from} is a key ${n} times in the glue`);
  glue = glue.replace(re, JSON.stringify(to));
}
// The import module's name.
const moduleKey = new RegExp(`${escape(JSON.stringify(oldModules[0]))}(?=\\s*:)`, "g");
if ((glue.match(moduleKey) ?? []).length !== 1) fail(`import module ${oldModules[0]} not found once`);
glue = glue.replace(moduleKey, JSON.stringify(newModules[0]));

// Exports: the glue reads them as `wasm.<name>`.
const renamed = new Map(map.exports);
glue = glue.replace(/\bwasm\.([\w$]+)/g, (whole, name) => {
  const to = renamed.get(name);
  if (to === undefined) fail(`the glue reads wasm.${name}, which the map does not name`);
  return `wasm[${JSON.stringify(to)}]`;
});

// Every import the module wants is a key now, and every export the glue reads exists.
for (const { name } of imports) {
  if (!glue.includes(`${JSON.stringify(name)}:`)) fail(`the wasm imports ${name}; the glue has no such key`);
}
for (const m of glue.matchAll(/\bwasm\["([^"]+)"\]/g)) {
  if (!exports.has(m[1])) fail(`the glue reads export ${m[1]}, which the wasm does not have`);
}
writeFileSync(outPath, glue);
