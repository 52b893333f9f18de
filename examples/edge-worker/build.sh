#!/bin/sh
# Copies the `--target web` build of the otpgate npm package into ./pkg/, where worker.mjs and
# config.capnp load it from. OTPGATE_PKG names another build (default: the repository's pkg/,
# made by scripts/build-pkg.sh). In your own project, `npm install otpgate` and point the
# imports at node_modules/otpgate/ instead.
set -eu
cd "$(dirname "$0")"
src=${OTPGATE_PKG:-../../pkg}
if [ ! -f "$src/otpgate_bg.wasm" ] && [ -f "$src/web/otpgate_bg.wasm" ]; then src="$src/web"; fi
for f in otpgate.js otpgate_bg.wasm; do
  if [ ! -f "$src/$f" ]; then
    echo "edge-worker: $src/$f is missing; build the package first: scripts/build-pkg.sh" >&2
    exit 1
  fi
done
mkdir -p pkg
cp "$src/otpgate.js" "$src/otpgate_bg.wasm" pkg/
echo "edge-worker: pkg/ ready ($(wc -c <pkg/otpgate_bg.wasm) bytes of wasm)"
