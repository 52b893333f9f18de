#!/usr/bin/env bash
# Sets everything up and runs the main job: `otpgate serve` in dev mode with the demo page
# (embedded store under ./otpgate-data, the built-in emulated phone, http://localhost:8080/).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build-pkg.sh
[ -x scripts/build-www.sh ] && bash scripts/build-www.sh
cargo build --release -p otpgate-server
exec ./target/release/otpgate serve "$@"
