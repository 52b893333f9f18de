#!/usr/bin/env bash
# Gateway pool benchmark: ten emulated phones (real HTTP on 127.0.0.1) at their budgets for a
# sustained burst offered at twice the pool's capacity. Budgets are per 10 s so the run is
# bounded (default 3 windows = 30 s, plus draining).
# Bar: delivered >= 95% of the sum of budgets, 0 expired sends, 0 duplicates, 0 windows over budget.
# Usage: scripts/bench-gateway.sh [--windows N] [--phones N] [--json FILE]
# PROFILE=release builds it in release mode (scripts/bench.sh does, to share its build).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
# The measured figure is a share of capacity, not speed: the dev profile is enough.
profile=()
[[ "${PROFILE:-dev}" == release ]] && profile=(--release)
exec cargo run -q "${profile[@]}" -p otpgate-server --example gateway_bench -- "$@"
