#!/usr/bin/env bash
# Gateway pool benchmark: ten emulated phones (real HTTP on 127.0.0.1) at their budgets for a
# sustained burst offered at twice the pool's capacity. Budgets are per 10 s so the run is
# bounded (default 3 windows = 30 s, plus draining).
# Bar: delivered >= 95% of the sum of budgets, 0 expired sends, 0 duplicates, 0 windows over budget.
# Usage: scripts/bench-gateway.sh [--windows N] [--phones N] [--json FILE]
# PROFILE=release builds it in release mode; SKIP_BUILD=1 runs the binary already built for
# that profile (scripts/bench.sh builds it in release with the rest, then uses both).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
# The measured figure is a share of capacity, not speed: the dev profile is enough.
profile=()
dir=debug
if [[ "${PROFILE:-dev}" == release ]]; then
	profile=(--release)
	dir=release
fi
if [[ "${SKIP_BUILD:-0}" == 1 ]]; then
	exec "$CARGO_TARGET_DIR/$dir/gateway" "$@"
fi
exec cargo run -q "${profile[@]}" -p otpgate-bench --bin gateway -- "$@"
