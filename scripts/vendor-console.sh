#!/usr/bin/env bash
# Copies uPlot (the operator console's chart library, MIT, pinned in scripts/tools/package.json
# and package-lock.json) from node_modules into crates/otpgate-server/console/vendor/, where
# the `otpgate` binary embeds it. The copies are committed so the Rust build needs no npm; the
# console test (e2e/console.test.mjs) fails when they differ from the pinned package.
# Run after changing uPlot's version: npm install (or scripts/setup.sh), then this script.
set -euo pipefail
cd "$(dirname "$0")/.."

src=node_modules/uplot/dist
if [[ ! -f "$src/uPlot.iife.min.js" ]]; then
  echo "vendor-console: $src/uPlot.iife.min.js is missing: run npm ci (scripts/setup.sh) first" >&2
  exit 1
fi
dest=crates/otpgate-server/console/vendor
mkdir -p "$dest"
cp "$src/uPlot.iife.min.js" "$src/uPlot.min.css" "$dest/"
cp node_modules/uplot/LICENSE "$dest/uPlot.LICENSE"
version=$(node -p 'require("./node_modules/uplot/package.json").version')
echo "vendor-console: uPlot $version copied into $dest"
