#!/usr/bin/env bash
# Every benchmark of otpgate in one run, summed up in ONE table where every figure stands next
# to its bar or to a peer measured in the same run (plain text on stdout; markdown in
# $OUT/summary.md; the raw figures as JSON in $OUT/raw/).
#
#   scripts/bench.sh [core] [issuer] [flood] [gateway] [client]      (default: all five)
#
#   core     SMS parse / segments / compose: native (criterion, CPU time of one thread; bar
#            2 M parses/s; bench/benches/sms.rs) and in Node through the built npm package
#            (bench/js/node-core.mjs), beside pure-JS peers
#   issuer   starts/s, checks/s, p99 on the embedded store (one instance) and on Redis (two
#            instances), beside /healthz of the same servers (scripts/bench-issuer.sh)
#   flood    SMS pumping against `otpgate serve` with the default policy and a real
#            `otpgate emulator` phone (bench/src/bin/flood.rs): legitimate users vs attackers
#            from many loopback addresses; sends to blocked countries must be 0
#   gateway  ten emulated phones at their budgets (bench/src/bin/gateway.rs)
#   client   npm package size (bar 90 KiB gzipped), cold instantiation in Node and workerd
#            (bench/js/client-cold.mjs)
# What each measures and the bar it is held to: bench/README.md.
#
# Knobs (environment):
#   QUICK=1           short phases (a few seconds each; the whole run takes a few minutes)
#   OUT=DIR           where the summary and raw figures go (default target/bench)
#   SKIP_BUILD=1      use the binaries and pkg/ already built
#   CONCURRENCY=N     issuer load workers (default 64)
#   REDIS_AOF=no|everysec|always   the private Redis' append-only file (default no)
#   EMBEDDED_DURABILITY="disk process"   the embedded store's levels to run (either or both)
#   REDIS_AUDIT_DURABILITY="disk process"   the audit log levels of the Redis runs
#   FLOOD_SECS=N, FLOOD_ATTACKERS=N (addresses), FLOOD_INFLIGHT=N, FLOOD_LEGIT_PER_SEC=X,
#   FLOOD_ATTACKER_POW_BITS=N, FLOOD_PHONE_BUDGET=N (the phone's SMS per minute)
#   RUNS=N            cold-start runs per runtime (default 9; QUICK 5)
# Needs: scripts/setup.sh done (wasm-bindgen, npm packages, redis-server), Linux (the flood
# binds client sockets to many 127.x.y.z addresses). Loopback only; every process it starts
# is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

all=(core issuer flood gateway client)
sections=()
for a in "$@"; do
	case "$a" in
	core | issuer | flood | gateway | client) sections+=("$a") ;;
	-h | --help)
		sed -n '2,34p' "$0"
		exit 0
		;;
	*)
		echo "bench: unknown section '$a' (one of: ${all[*]})" >&2
		exit 2
		;;
	esac
done
[[ ${#sections[@]} -eq 0 ]] && sections=("${all[@]}")
want() {
	local s
	for s in "${sections[@]}"; do [[ "$s" == "$1" ]] && return 0; done
	return 1
}

QUICK=${QUICK:-0}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=${OUT:-$ROOT/target/bench}
RAW=$OUT/raw
mkdir -p "$RAW"
for s in "${sections[@]}"; do rm -f "$RAW/$s"*.json "$RAW/$s"*.log; done
# scale ISSUER_SECS FLOOD_SECS GATEWAY_WINDOWS RUNS CORE_SECS WARM_UP MEASUREMENT: the
# run's lengths (the first four unless set in the environment).
scale() {
	ISSUER_SECS=${ISSUER_SECS:-$1}
	FLOOD_SECS=${FLOOD_SECS:-$2}
	GATEWAY_WINDOWS=${GATEWAY_WINDOWS:-$3}
	RUNS=${RUNS:-$4}
	CORE_SECS=$5
	CRIT=(--warm-up-time "$6" --measurement-time "$7")
}
if [[ "$QUICK" == 1 ]]; then
	scale 4 20 1 5 0.5 0.3 1
else
	scale 10 60 3 9 2 1 3
fi
REDIS_AOF=${REDIS_AOF:-no}
BIN=$CARGO_TARGET_DIR/release/otpgate
# The bench tools (package otpgate-bench, bench/src/bin/): load, flood, gateway, store.
TOOLS=$CARGO_TARGET_DIR/release

pids=()
work=$(mktemp -d "${TMPDIR:-/tmp}/otpgate-bench.XXXXXX")
cleanup() {
	local pid
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '\n== %s\n' "$*" >&2; }
failed=()
# run_section NAME FUNCTION: a failure is reported and the other sections still run. Each
# long command inside is bounded with `timeout`; the functions run in this shell so the
# processes they start are in $pids for the cleanup.
run_section() {
	local name=$1
	shift
	if ! "$@"; then
		echo "bench: section '$name' failed" >&2
		failed+=("$name")
	fi
}
free_port() {
	node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}
wait_http() { # url
	for _ in $(seq 1 200); do
		curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "bench: no answer from $1" >&2
	return 1
}

# ---- builds -----------------------------------------------------------------------------
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
	if want issuer || want flood || want gateway; then
		say "building otpgate and the load/flood/gateway benches (release)"
		# One build, so both packages see the same dependency features (no second build of the
		# shared dependencies).
		cargo build --release -q -p otpgate-server -p otpgate-bench \
			--bin otpgate --bin load --bin flood --bin gateway
	fi
	if want core || want client; then
		say "building the npm package (scripts/build-pkg.sh)"
		bash scripts/build-pkg.sh >"$RAW/client-build-pkg.log" 2>&1 ||
			{
				cat "$RAW/client-build-pkg.log" >&2
				exit 1
			}
	fi
fi

# ---- core -------------------------------------------------------------------------------
core() {
	say "core: criterion (native, one thread)"
	rm -rf "$OUT/criterion"
	CRITERION_HOME="$OUT/criterion" timeout 900 cargo bench -q -p otpgate-bench --bench sms -- \
		"${CRIT[@]}" >"$RAW/core-criterion.log" 2>&1 || {
		tail -20 "$RAW/core-criterion.log" >&2
		return 1
	}
	node bench/js/summary.mjs --criterion "$OUT/criterion" >"$RAW/core-native.json" || return 1
	say "core: Node through the npm package"
	timeout 300 node bench/js/node-core.mjs --seconds "$CORE_SECS" --json "$RAW/core-node.json"
}

# ---- issuer -----------------------------------------------------------------------------
issuer() {
	say "issuer: embedded store, then Redis with two instances (scripts/bench-issuer.sh)"
	SKIP_BUILD=1 JSON_DIR="$RAW" DURATION="$ISSUER_SECS" REDIS_AOF="$REDIS_AOF" \
		EMBEDDED_DURABILITY="${EMBEDDED_DURABILITY:-disk process}" \
		REDIS_AUDIT_DURABILITY="${REDIS_AUDIT_DURABILITY:-disk process}" \
		CONCURRENCY="${CONCURRENCY:-64}" timeout 900 bash scripts/bench-issuer.sh embedded redis || return 1
	echo "{\"redis_aof\": \"$REDIS_AOF\", \"embedded_durability\": \"${EMBEDDED_DURABILITY:-disk process}\"," \
		"\"redis_audit_durability\": \"${REDIS_AUDIT_DURABILITY:-disk process}\"}" >"$RAW/issuer-meta.json"
}

# ---- flood ------------------------------------------------------------------------------
flood() {
	local dir=$work/flood eport port budget key pw
	mkdir -p "$dir"
	budget=${FLOOD_PHONE_BUDGET:-60}
	key=flood-webhook-key-$RANDOM$RANDOM
	pw=flood-phone-pw-$RANDOM$RANDOM
	eport=$(free_port)
	port=$(free_port)
	say "flood: otpgate emulator on :$eport (budget $budget SMS/min), otpgate serve on :$port (default policy)"
	"$BIN" emulator --listen "127.0.0.1:$eport" --username sms --password "$pw" \
		--signing-key "$key" --webhook "http://127.0.0.1:$port/v1/gateways/sms-gate/webhook" \
		--limit-per-minute $((budget + 5)) >"$dir/emulator.log" 2>&1 &
	pids+=($!)
	# The default policy: PoW on, default budgets; only the allow-list narrowed.
	cat >"$dir/otpgate.toml" <<EOF
[server]
listen = "127.0.0.1:$port"
data_dir = "$dir/data"

[[apps]]
name = "shop"
origins = ["https://shop.example"]

[policy]
allowed_regions = ["GB", "US", "CA"]

[gateways]
webhook_signing_key_env = "FLOOD_SMSGATE_SIGNING_KEY"

[[gateways.devices]]
name = "phone-1"
kind = "sms-gate"
url = "http://127.0.0.1:$eport"
username = "sms"
password_env = "FLOOD_PHONE_PASSWORD"
budget_per_minute = $budget
android_limit = $((budget + 5))
EOF
	FLOOD_SMSGATE_SIGNING_KEY=$key FLOOD_PHONE_PASSWORD=$pw RUST_LOG=${RUST_LOG:-warn} \
		"$BIN" serve --config "$dir/otpgate.toml" >"$dir/serve.log" 2>&1 &
	pids+=($!)
	local server=$!
	wait_http "http://127.0.0.1:$port/healthz" || {
		cat "$dir/serve.log" >&2
		return 1
	}
	wait_http "http://127.0.0.1:$port/readyz" || {
		cat "$dir/serve.log" >&2
		return 1
	}
	timeout $((FLOOD_SECS + 120)) "$TOOLS/flood" --base "http://127.0.0.1:$port" --emulator "http://127.0.0.1:$eport" \
		--allowed GB,US,CA --app shop --duration-secs "$FLOOD_SECS" \
		--attackers "${FLOOD_ATTACKERS:-1000}" --attack-concurrency "${FLOOD_INFLIGHT:-64}" \
		--attacker-pow-bits "${FLOOD_ATTACKER_POW_BITS:-8}" \
		--legit-per-sec "${FLOOD_LEGIT_PER_SEC:-0.5}" --json "$RAW/flood.json" || return 1
	echo "{\"phone_budget_per_min\": $budget}" >"$RAW/flood-meta.json"
	kill "$server" 2>/dev/null || true
	wait "$server" 2>/dev/null || true
	"$BIN" audit verify --file "$dir/data/audit.jsonl" >&2 || {
		echo "bench: the flood's audit log does not verify" >&2
		return 1
	}
}

# ---- gateway ----------------------------------------------------------------------------
gateway() {
	say "gateway: ten emulated phones at their budgets (scripts/bench-gateway.sh)"
	# the gateway tool exits non-zero below its bar; the figures are still written.
	SKIP_BUILD=1 PROFILE=release timeout $((GATEWAY_WINDOWS * 10 + 120)) bash scripts/bench-gateway.sh \
		--windows "$GATEWAY_WINDOWS" --json "$RAW/gateway.json" || [[ -s "$RAW/gateway.json" ]]
}

# ---- client -----------------------------------------------------------------------------
client() {
	say "client: npm package size (scripts/size.sh)"
	bash scripts/size.sh | tee "$RAW/client-size.log" >&2 || return 1
	awk '$1=="total"{printf "{\"raw\": %d, \"gzip\": %d}\n", $2, $3; exit}' "$RAW/client-size.log" \
		>"$RAW/client-size.json"
	say "client: cold instantiation, Node and workerd ($RUNS runs each)"
	sh examples/edge-worker/build.sh >&2 || return 1
	timeout 600 node bench/js/client-cold.mjs --runs "$RUNS" --json "$RAW/client-cold.json"
}

started=$(date +%s)
for s in "${all[@]}"; do
	if want "$s"; then run_section "$s" "$s"; fi
done

say "summary ($(($(date +%s) - started)) s; $(nproc) CPUs; load average $(cut -d' ' -f1-3 /proc/loadavg))"
# The summary exits non-zero when a must-be-zero property failed (FAIL) or a section left no
# figures (ERROR); a performance bar missed (MISS) is reported, not fatal.
status=0
node bench/js/summary.mjs --raw "$RAW" --md "$OUT/summary.md" --quick "$QUICK" \
	--sections "${sections[*]}" || status=1
echo "(markdown: $OUT/summary.md; raw figures: $RAW/)"
if [[ ${#failed[@]} -gt 0 ]]; then
	echo "bench: failed sections: ${failed[*]}" >&2
	status=1
fi
exit $status
