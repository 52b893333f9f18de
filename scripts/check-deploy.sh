#!/usr/bin/env bash
# Checks the ops artifacts in deploy/ (run by scripts/test.sh; needs the `otpgate` binary built):
# - deploy/otpgate.service: `systemd-analyze verify` (with ExecStart pointed at the built
#   binary, since verify insists that it exists) and `systemd-analyze security --offline`
#   with an exposure of at most 2.0 ("OK");
# - deploy/prometheus/otpgate-alerts.yml: `promtool check rules` and `promtool test rules`;
# - with an issuer's base URL as $1 (a running `otpgate serve`): every otpgate_* metric the
#   rules use is one the issuer exports (after a refused start and a check of an unknown id,
#   so the counter families have samples).
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${OTPGATE_BIN:-$PWD/target/debug/otpgate}
[[ -x "$bin" ]] || { echo "check-deploy: $bin is missing (cargo build -p otpgate-server)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

sed "s#/usr/local/bin/otpgate#$bin#" deploy/otpgate.service >"$work/otpgate.service"
systemd-analyze verify --man=no "$work/otpgate.service"
systemd-analyze security --offline=yes --threshold=20 --no-pager "$work/otpgate.service" >"$work/security.txt" || {
  tail -5 "$work/security.txt"; echo "check-deploy: the unit's exposure is above 2.0" >&2; exit 1; }
echo "check-deploy: $(grep -o 'Overall exposure level.*' "$work/security.txt")"

promtool check rules deploy/prometheus/otpgate-alerts.yml
(cd deploy/prometheus && promtool test rules otpgate-alerts.test.yml)

if [[ -n "${1:-}" ]]; then
  curl -sS -o /dev/null -H 'content-type: application/json' -d '{"phone":"123"}' "$1/v1/verifications"
  curl -sS -o /dev/null -H 'content-type: application/json' -d '{"code":"000000"}' \
    "$1/v1/verifications/v_AAAAAAAAAAAAAAAAAAAAAA/check"
  curl -fsS "$1/metrics" >"$work/metrics.txt"
  missing=0
  for name in $(grep -o 'otpgate_[a-z_]*' deploy/prometheus/otpgate-alerts.yml | sort -u); do
    base=${name%_total}
    if ! grep -qE "^(# TYPE $base |$name[{ ])" "$work/metrics.txt"; then
      echo "check-deploy: the rules use $name, which $1/metrics does not export" >&2
      missing=1
    fi
  done
  [[ $missing -eq 0 ]] || exit 1
  echo "check-deploy: every metric the rules use is exported"
fi
echo "check-deploy: ok"
