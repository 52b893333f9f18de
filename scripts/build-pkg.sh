#!/usr/bin/env bash
# Builds the npm package `otpgate` into pkg/ (ready for `cd pkg && npm pack`):
#   otpgate.js + otpgate.d.ts      wasm-bindgen --target web: browsers, workerd/workers, Deno
#                                  (`await init()` in pages, `initSync({module})` in workers);
#                                  the JS minified by esbuild (from scripts/tools)
#   node.mjs + node.d.ts           the Node entry: reads otpgate_bg.wasm with fs and calls
#                                  initSync, so `import * as otpgate from "otpgate"` (and
#                                  require() on Node >= 20.19) is usable at once. It reuses the
#                                  web glue: a second glue from --target nodejs would add 6 KB
#                                  gzipped for the same functions (the wasm is identical; the
#                                  nodejs output is still generated and compared as a check).
#   otpgate_bg.wasm                optimised by wasm-opt (-Oz --converge with little inlining
#                                  of single-caller functions, for gzip; see below)
#   package.json, README.md        from pkg-template/ (version from Cargo.toml)
# Tools: wasm-bindgen at the Cargo.lock version (scripts/setup.sh installs it); wasm-opt from
# the npm package binaryen pinned in scripts/tools (Debian's binaryen 108 breaks the output),
# installed by `npm ci` at the root (the npm workspace).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=$ROOT/pkg

WBG=$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p')
HAVE=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')
if [ "$HAVE" != "$WBG" ]; then
  echo "build-pkg: wasm-bindgen $WBG needed (found '${HAVE:-none}'); run scripts/setup.sh" >&2
  exit 1
fi
WASM_OPT=$ROOT/node_modules/.bin/wasm-opt
ESBUILD=$ROOT/node_modules/.bin/esbuild
if [ ! -x "$WASM_OPT" ] || [ ! -x "$ESBUILD" ]; then
  # Only scripts/tools' packages (binaryen, esbuild), not the whole workspace.
  npm ci --workspace scripts/tools --no-audit --no-fund --loglevel=error
fi

# The `wasm` profile (Cargo.toml): opt-level z, fat LTO, abort; not stripped, because
# wasm-bindgen needs the target_features section; wasm-opt strips names and producers after.
# Source paths kept in panic locations are shortened (registry and checkout prefixes).
# LLVM's inline threshold is raised from opt-level z's to 40: inlining small callees lets LLVM
# simplify them away in their callers (measured 0.6 to 1.3 KB less gzipped for thresholds from
# 15 to 80, the least at 40; re-check with scripts/size.sh after large changes). The flags add
# to .cargo/config.toml's (cargo merges config arrays), which RUSTFLAGS would replace.
CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}
RUSTFLAGS_PKG="'-Cllvm-args=-inline-threshold=40', '--remap-path-prefix=$ROOT/='"
for d in "$CARGO_HOME"/registry/src/*/; do RUSTFLAGS_PKG="$RUSTFLAGS_PKG, '--remap-path-prefix=$d='"; done
cargo build -q --profile wasm --target wasm32-unknown-unknown -p otpgate \
  --config "target.wasm32-unknown-unknown.rustflags=[$RUSTFLAGS_PKG]"
WASM=$TARGET_DIR/wasm32-unknown-unknown/wasm/otpgate.wasm

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
wasm-bindgen --target web --out-dir "$WORK/web" "$WASM"
wasm-bindgen --target nodejs --out-dir "$WORK/node" "$WASM"
cmp -s "$WORK/web/otpgate_bg.wasm" "$WORK/node/otpgate_bg.wasm" || {
  echo "build-pkg: the web and nodejs wasm differ; cannot share one otpgate_bg.wasm" >&2
  exit 1
}
# -Oz repeated until it stops shrinking (--converge), but a function with one caller is inlined
# into it only when it is small (30 bytes; binaryen's default inlines every single-caller
# function): the big exported shims that swallowed their whole call tree compressed worse
# than the separate functions, whose similar code gzip finds again (measured: 4.5 KB less
# gzipped than a plain -Oz; 15 to 40 are within 150 B). --low-memory-unused (Rust's stack
# sits below the data, so no pointer is under 1 KiB and constant offsets fold into loads),
# --zero-filled-memory (the module defines its memory, which starts zeroed: zero bytes of the
# data segments need not be stored); functions reordered by use and locals by use, which
# shortens the LEB indices. Every custom section goes (names, producers, and target_features,
# which only wasm-bindgen reads, before this step: 130 B gzipped).
"$WASM_OPT" -Oz --converge --one-caller-inline-max-function-size=30 --low-memory-unused \
  --zero-filled-memory --reorder-functions --reorder-locals --strip-debug --strip-producers \
  --strip-target-features "$WORK/web/otpgate_bg.wasm" -o "$WORK/opt.wasm"
# wasm-bindgen's long hashed import names (`__wbg_<name>_<16 hex>`, ~120 of them, in the wasm
# and again in the glue) shortened in both, checked against each other (exports unchanged).
node scripts/tools/minify-names.mjs "$WORK/opt.wasm" "$WORK/web/otpgate.js" \
  "$WORK/otpgate_bg.wasm" "$WORK/glue.js" >/dev/null

# The named wasm (before wasm-opt) for scripts/size.sh's breakdown by crate.
mkdir -p "$TARGET_DIR/otpgate-pkg"
cp "$WORK/web/otpgate_bg.wasm" "$TARGET_DIR/otpgate-pkg/otpgate_bg.named.wasm"

VERSION=$(cargo metadata -q --no-deps --format-version 1 |
  node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const p=JSON.parse(s).packages.find(p=>p.name==="otpgate");process.stdout.write(p.version)})')

rm -rf "$OUT"
mkdir -p "$OUT"
cp "$WORK/otpgate_bg.wasm" "$OUT/"
# The glue minified (exports, import names and `new URL("otpgate_bg.wasm", import.meta.url)`
# are kept, so bundlers still find the wasm); the typings keep every comment.
"$ESBUILD" "$WORK/glue.js" --minify --format=esm --legal-comments=none --log-level=warning \
  --outfile="$OUT/otpgate.js"
# Trailing option bags are optional in JS; wasm-bindgen types `Option<JsValue>` parameters
# as required, so mark them `?` (the names and types come from src/, see unchecked_param_type).
# `[Symbol.dispose]()` is left out of the typings (the method is there): it needs
# `lib: esnext.disposable`, and a strict project with the usual ES2022 lib and no
# skipLibCheck would fail on it; `free()` does the same.
sed -E -e 's/\b(options|maxTries): (OtpClientOptions|StartOptions|WaitForDeliveryOptions|ReceiveCodeOptions|VerifyWebhookOptions|number)\)/\1?: \2)/' \
  -e 's/\btrunk: string \| undefined\)/trunk?: string)/' \
  -e '/^    \[Symbol\.dispose\]\(\): void;$/d' \
  "$WORK/web/otpgate.d.ts" >"$OUT/otpgate.d.ts"
cp pkg-template/node.mjs pkg-template/node.d.ts "$OUT/"
# The <otp-verify> element (entry `otpgate/element`): plain JS over the package's exports,
# minified on its own (`./otpgate.js` stays an import); scripts/size.sh reports it apart from
# the wasm budget.
"$ESBUILD" pkg-template/element.js --minify --format=esm --legal-comments=none --log-level=warning \
  --outfile="$OUT/element.js"
cp pkg-template/element.d.ts "$OUT/"
cp pkg-template/README.md "$OUT/"
[ -f LICENSE ] && cp LICENSE "$OUT/"
sed "s/\"version\": \"0.0.0-template\"/\"version\": \"$VERSION\"/" pkg-template/package.json >"$OUT/package.json"
grep -q "\"version\": \"$VERSION\"" "$OUT/package.json"

# The package loads and answers through its Node entry (glue and wasm agree).
node --input-type=module -e "
  const m = await import('$OUT/node.mjs');
  if (!m.errorCodes().includes('network_error') || m.parseSms('@a.example #123456').code !== '123456') process.exit(1);
" || { echo "build-pkg: the built package does not load" >&2; exit 1; }

echo "build-pkg: pkg/ otpgate@$VERSION"
bash scripts/size.sh
