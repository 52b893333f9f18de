#!/usr/bin/env bash
# Fuzzes otpgate-core's SMS rules and webhook verification (fuzz/). Not part of CI.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Targets: sms_parse sms_segments sms_compose webhook_verify (default: all), 30 s each.
# The best available engine is used:
#   1. `cargo fuzz` (needs cargo-fuzz and a nightly toolchain): libFuzzer + AddressSanitizer;
#   2. otherwise the same libFuzzer targets built with sanitizer-coverage flags by plain cargo
#      (needs a C++ compiler for libFuzzer) and run directly;
#   3. otherwise the stable smoke driver (fuzz/src/bin/smoke.rs): random and dictionary inputs
#      through the same oracles, no coverage feedback.
# Force one with OTPGATE_FUZZ_ENGINE=cargo-fuzz|libfuzzer|smoke.
# Crashes are kept in fuzz/artifacts/<target>/; corpora in fuzz/corpus/<target>/.
set -euo pipefail

cd "$(dirname "$0")/../fuzz"
secs="${1:-30}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(sms_parse sms_segments sms_compose webhook_verify)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

engine="${OTPGATE_FUZZ_ENGINE:-}"
if [ -z "$engine" ]; then
  if cargo +nightly fuzz --version >/dev/null 2>&1; then
    engine=cargo-fuzz
  elif command -v c++ >/dev/null 2>&1 || command -v g++ >/dev/null 2>&1; then
    engine=libfuzzer
  else
    engine=smoke
  fi
fi
echo "fuzz: engine $engine, ${secs}s per target: ${targets[*]}"

case "$engine" in
  cargo-fuzz)
    for t in "${targets[@]}"; do
      mkdir -p "corpus/$t"
      cargo +nightly fuzz run "$t" "corpus/$t" -- -max_total_time="$secs"
    done
    ;;
  libfuzzer)
    # The flags cargo-fuzz passes for coverage feedback (without ASan, which needs nightly).
    flags="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4"
    flags+=" -Cllvm-args=-sanitizer-coverage-inline-8bit-counters"
    flags+=" -Cllvm-args=-sanitizer-coverage-pc-table"
    flags+=" -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing"
    # An explicit --target keeps the flags away from build scripts and proc macros.
    host="$(rustc -vV | sed -n 's/^host: //p')"
    CARGO_TARGET_DIR="$CARGO_TARGET_DIR/libfuzzer" RUSTFLAGS="$flags" \
      cargo build --release --target "$host" $(printf -- '--bin %s ' "${targets[@]}")
    for t in "${targets[@]}"; do
      mkdir -p "corpus/$t" "artifacts/$t"
      "$CARGO_TARGET_DIR/libfuzzer/$host/release/$t" -max_total_time="$secs" \
        -artifact_prefix="artifacts/$t/" "corpus/$t"
    done
    ;;
  smoke)
    cargo run --release --no-default-features --bin smoke -- "$secs" "${targets[@]}"
    ;;
  *)
    echo "fuzz: unknown engine $engine (cargo-fuzz, libfuzzer, smoke)" >&2
    exit 2
    ;;
esac
echo "fuzz: done, no failure"
