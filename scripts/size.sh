#!/usr/bin/env bash
# Prints the raw and gzipped (-9) sizes of the npm package's wasm and JS glue (pkg/, built by
# scripts/build-pkg.sh) and checks the budget: wasm + JS glue <= 80 KB gzipped.
set -euo pipefail
cd "$(dirname "$0")/../pkg"
BUDGET=${OTPGATE_SIZE_BUDGET:-81920}
total_raw=0
total_gz=0
printf '%-18s %9s %9s\n' file raw gzip
for f in otpgate_bg.wasm otpgate.js node.mjs; do
  raw=$(wc -c <"$f")
  gz=$(gzip -9c "$f" | wc -c)
  total_raw=$((total_raw + raw))
  total_gz=$((total_gz + gz))
  printf '%-18s %9d %9d\n' "$f" "$raw" "$gz"
done
printf '%-18s %9d %9d   (budget %d gzipped)\n' total "$total_raw" "$total_gz" "$BUDGET"
if [ "$total_gz" -gt "$BUDGET" ]; then
  echo "size: over budget by $((total_gz - BUDGET)) bytes gzipped" >&2
  [ "${OTPGATE_SIZE_ENFORCE:-0}" = 1 ] && exit 1
fi
exit 0
