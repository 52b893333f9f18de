#!/usr/bin/env bash
# Copies the built npm package (pkg/, from scripts/build-pkg.sh) into www/pkg/, where the demo
# page loads it from (`/pkg/otpgate.js` when `otpgate serve` serves www/ at `/`), and into
# examples/edge-worker/pkg/ for the edge worker. Builds pkg/ first when it is missing or when
# --build is given.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--build" || ! -f pkg/otpgate.js ]]; then
  scripts/build-pkg.sh
fi

# The browser/workerd build is the `--target web` output: otpgate.js + otpgate_bg.wasm
# (+ typings, and element.js: the <otp-verify> element the demo page is built on). A nested
# web/ directory is accepted too.
src=pkg
if [[ ! -f pkg/otpgate_bg.wasm && -f pkg/web/otpgate_bg.wasm ]]; then
  src=pkg/web
fi
for f in otpgate.js otpgate_bg.wasm; do
  [[ -f "$src/$f" ]] || { echo "build-www: $src/$f is missing (run scripts/build-pkg.sh)" >&2; exit 1; }
done

for dest in www/pkg examples/edge-worker/pkg; do
  rm -rf "$dest"
  mkdir -p "$dest"
  cp "$src/otpgate.js" "$src/otpgate_bg.wasm" "$dest/"
  for f in otpgate.d.ts otpgate_bg.wasm.d.ts package.json element.js element.d.ts; do
    [[ -f "$src/$f" ]] && cp "$src/$f" "$dest/"
  done
  if [[ -d "$src/snippets" ]]; then cp -r "$src/snippets" "$dest/"; fi
done
echo "build-www: copied $src into www/pkg and examples/edge-worker/pkg ($(wc -c <"$src/otpgate_bg.wasm") bytes of wasm)"
