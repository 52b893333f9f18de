#!/usr/bin/env bash
# HTTP fuzzing of the issuer against its own OpenAPI document, with schemathesis.
#
#   scripts/fuzz-http.sh [SECONDS]       (default: $FUZZ_HTTP_SECONDS, else 60)
#   scripts/fuzz-http.sh --install       (only step 1: scripts/setup.sh runs it)
#
# FUZZ_HTTP_SCOPE picks the issuer and the operations:
# - `dev` (default): a dev-mode issuer (no configuration file), every operation;
# - `integrations`: an issuer configured with the integrations of issue 19 (the Supabase hook,
#   the Twilio Verify-compatible API) and an API key, sends discarded; only the operations
#   tagged `integrations` and `messages`, with credentials: the API key and the Twilio
#   account through the document's security schemes, the configured service SID as
#   `ServiceSid`, and Supabase hook calls signed by scripts/fuzz-http-hooks.py (those whose
#   three headers are present: the fuzzed payloads then reach the handler). scripts/test.sh
#   runs this scope.
#
# 1. installs schemathesis (pinned) from PyPI into a venv under
#    ${XDG_CACHE_HOME:-$HOME/.cache}/otpgate/schemathesis-venv (once);
# 2. builds `otpgate` (debug; FUZZ_HTTP_PROFILE=release for a release build; OTPGATE_BIN
#    skips the build) and starts it in dev mode on a free loopback port, in a temporary
#    working directory (its own data dir, keys, audit log, the emulated phone);
# 3. runs `schemathesis run http://127.0.0.1:PORT/openapi.json` for SECONDS with the checks
#    below, every phase (examples, coverage, fuzzing, stateful), positive and negative data;
# 4. prints a summary: schemathesis' own, then what the server saw (requests by status,
#    from its /metrics), and fails (non-zero exit) on any 5xx, any schema or status-code
#    violation, a server that died, or an error or a panic in its log.
#
# Knobs: FUZZ_HTTP_SECONDS, FUZZ_HTTP_PROFILE (debug|release), FUZZ_HTTP_WORKERS (default 1:
# hypothesis under CPython 3.11 threads can fail in ast.parse with "recursion depth mismatch"),
# FUZZ_HTTP_SEED, FUZZ_HTTP_MAX_RESPONSE_SECS (default 5: an answer slower than this fails), FUZZ_HTTP_KEEP=1 (keep the work dir with the reports and the server log),
# SCHEMATHESIS_VERSION, OTPGATE_BIN.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SECS=${1:-${FUZZ_HTTP_SECONDS:-60}}
[ "$SECS" = --install ] && SECS=1
case "$SECS" in '' | *[!0-9]*) echo "fuzz-http: SECONDS must be a whole number" >&2; exit 2 ;; esac
[ "$SECS" -ge 1 ] || { echo "fuzz-http: SECONDS must be at least 1" >&2; exit 2; }
PROFILE=${FUZZ_HTTP_PROFILE:-debug}
WORKERS=${FUZZ_HTTP_WORKERS:-1}
ST_VERSION=${SCHEMATHESIS_VERSION:-4.32.5}
CHECKS=not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,negative_data_rejection,unsupported_method,allow_header_conformance

say() { printf 'fuzz-http: %s\n' "$*" >&2; }

# 1. schemathesis in its own venv.
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/otpgate
VENV=$CACHE/schemathesis-venv
ST=$VENV/bin/schemathesis
if ! { [ -x "$ST" ] && "$ST" --version 2>/dev/null | grep -qF "version $ST_VERSION"; }; then
  say "installing schemathesis $ST_VERSION into $VENV"
  mkdir -p "$CACHE"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$ST_VERSION"
fi
"$ST" --version >&2
[ "${1:-}" = --install ] && exit 0
SCOPE=${FUZZ_HTTP_SCOPE:-dev}
case "$SCOPE" in dev | integrations) ;; *) echo "fuzz-http: FUZZ_HTTP_SCOPE must be dev or integrations" >&2; exit 2 ;; esac

# 2. the binary.
if [ -n "${OTPGATE_BIN:-}" ]; then
  BIN=$OTPGATE_BIN
else
  build=(cargo build -p otpgate-server --bin otpgate --message-format=json-render-diagnostics)
  [ "$PROFILE" = release ] && build+=(--release)
  say "building otpgate ($PROFILE)"
  BIN=$(cd "$ROOT" && "${build[@]}" | python3 -c '
import json, sys
exe = ""
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "otpgate":
        exe = m["executable"]
print(exe)')
fi
[ -x "$BIN" ] || { say "no otpgate binary ($BIN)"; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/otpgate-fuzz-http.XXXXXX")
PID=
cleanup() {
  if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
    kill "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
  fi
  if [ "${FUZZ_HTTP_KEEP:-0}" = 1 ]; then say "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BASE=http://127.0.0.1:$PORT
serve_args=(serve --listen "127.0.0.1:$PORT")
st_global=()
st_scope=()
if [ "$SCOPE" = integrations ]; then
  # Test credentials of this run only (random, never reused).
  rand() { python3 -c 'import secrets; print(secrets.token_hex(16))'; }
  FUZZ_ACCOUNT=AC$(rand)
  FUZZ_SERVICE=VA$(rand)
  FUZZ_TOKEN=$(rand)
  FUZZ_API_KEY=$(rand)$(rand)
  FUZZ_SUPABASE_SECRET="v1,whsec_$(python3 -c 'import base64, secrets; print(base64.b64encode(secrets.token_bytes(32)).decode())')"
  export FUZZ_API_KEY OTPGATE_TWILIO_AUTH_TOKEN=$FUZZ_TOKEN OTPGATE_SUPABASE_HOOK_SECRETS=$FUZZ_SUPABASE_SECRET
  export FUZZ_HTTP_SUPABASE_SECRET=$FUZZ_SUPABASE_SECRET SCHEMATHESIS_HOOKS=$ROOT/scripts/fuzz-http-hooks.py
  cat >"$WORK/otpgate.toml" <<TOML
[server]
public_url = "$BASE"
danger_discard_sends = true

[store]
kind = "embedded"

[[apps]]
name = "shop"
origins = ["https://shop.example.com"]
android_app_hashes = ["FA+9qCX9VSu"]

[policy]
api_keys = ["env:FUZZ_API_KEY"]

[integrations.supabase]
app = "shop"

[integrations.twilio_verify]
account_sid = "$FUZZ_ACCOUNT"

[[integrations.twilio_verify.services]]
sid = "$FUZZ_SERVICE"
app = "shop"
TOML
  cat >"$WORK/schemathesis.toml" <<TOML
[auth.openapi.api_key]
bearer = "$FUZZ_API_KEY"

[auth.openapi.twilio_basic]
username = "$FUZZ_ACCOUNT"
password = "$FUZZ_TOKEN"

[parameters]
"path.ServiceSid" = "$FUZZ_SERVICE"
TOML
  serve_args+=(--config "$WORK/otpgate.toml" --data-dir "$WORK/data")
  st_global=(--config-file "$WORK/schemathesis.toml")
  st_scope=(--include-tag integrations --include-tag messages)
fi
say "starting $BIN serve ($SCOPE) on $BASE"
# `exec`: $! is then the server itself, so the trap (and the liveness check) reach it.
(cd "$WORK" && exec env -u OTPGATE_CONFIG -u OTPGATE_LISTEN -u OTPGATE_DATA_DIR -u OTPGATE_STATIC_DIR \
  "$BIN" "${serve_args[@]}" 2>"$WORK/server.log" >/dev/null) &
PID=$!
for _ in $(seq 1 200); do
  curl -fsS -o /dev/null "$BASE/healthz" 2>/dev/null && break
  kill -0 "$PID" 2>/dev/null || { say "the server exited:"; cat "$WORK/server.log" >&2; exit 1; }
  sleep 0.1
done
curl -fsS -o /dev/null "$BASE/healthz" || { say "the server did not come up"; exit 1; }

# 3. schemathesis.
args=(${st_global[@]+"${st_global[@]}"} run "$BASE/openapi.json"
  --checks "$CHECKS"
  --max-time "$SECS"
  --workers "$WORKERS"
  --max-response-time "${FUZZ_HTTP_MAX_RESPONSE_SECS:-5}"
  --request-timeout 10
  --suppress-health-check all
  --report junit,ndjson --report-dir "$WORK/report"
  --output-truncate true
  ${st_scope[@]+"${st_scope[@]}"})
[ -n "${FUZZ_HTTP_SEED:-}" ] && args+=(--seed "$FUZZ_HTTP_SEED")
say "schemathesis ${args[*]}"
set +e
# From the work dir: schemathesis keeps its example database (.schemathesis/) in the cwd.
(cd "$WORK" && NO_COLOR=1 "$ST" "${args[@]}") 2>&1 | tee "$WORK/schemathesis.out"
st_status=${PIPESTATUS[0]}
set -e

# 4. what the server saw.
fail=0
if ! kill -0 "$PID" 2>/dev/null; then
  say "FAIL: the server died during the run"; fail=1
  : >"$WORK/metrics.txt"
else
  curl -fsS -o "$WORK/metrics.txt" "$BASE/metrics" || : >"$WORK/metrics.txt"
fi
python3 - "$WORK/metrics.txt" <<'PY' || fail=1
import re, sys
counts = {}
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    m = re.match(r'otpgate_http_request_duration_seconds_count\{(.*)\} (\d+)', line)
    if not m:
        continue
    labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
    key = (labels.get("status", "?"), labels.get("method", "?"), labels.get("route", "?"))
    counts[key] = counts.get(key, 0) + int(m.group(2))
total = sum(counts.values())
by_status = {}
for (status, _, _), n in counts.items():
    by_status[status] = by_status.get(status, 0) + n
print(f"fuzz-http: the server answered {total} requests; by status: "
      + ", ".join(f"{s}: {n}" for s, n in sorted(by_status.items())))
bad = {k: n for k, n in counts.items() if k[0].startswith("5")}
for (status, method, route), n in sorted(bad.items()):
    print(f"fuzz-http: FAIL: {n} x {status} on {method} {route}")
sys.exit(1 if bad or total == 0 else 0)
PY
# The integrations scope discards its sends on purpose: the issuer's warning of that (an
# ERROR line at start-up) is expected there.
errors() {
  grep -E '"level":"ERROR"|[Pp]anick' "$WORK/server.log" |
    { if [ "$SCOPE" = integrations ]; then grep -v 'SMS are NOT sent'; else cat; fi; }
}
if [ -n "$(errors)" ]; then
  say "FAIL: errors or panics in the server log:"
  errors | head -20 >&2
  fail=1
fi
if [ "$st_status" -ne 0 ]; then
  say "FAIL: schemathesis found problems (exit $st_status); see above"
  fail=1
fi
if [ "$fail" -ne 0 ]; then
  FUZZ_HTTP_KEEP=1
  exit 1
fi
say "OK: no 5xx, every answer matched the OpenAPI document ($SECS s budget)"
