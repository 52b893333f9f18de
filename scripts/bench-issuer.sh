#!/usr/bin/env bash
# Issuer load benchmark: starts/s, checks/s and a trivial endpoint, p50/p99, over HTTP on
# loopback against real `otpgate serve` processes.
#
#   scripts/bench-issuer.sh [embedded|redis|all]     (default: all)
#
# 1. builds `otpgate` and the load client (`bench/src/bin/load.rs`) in release mode;
# 2. embedded: one instance on the embedded store (redb file + audit log), at each
#    durability level: `disk` (every answer after the fdatasync) and `process` (every answer
#    after the write to the OS, synced within 200 ms: survives kill -9, not a power cut);
# 3. redis: a private redis-server on a free port and two instances sharing it (the keys
#    are shared through one data directory, each instance has its own audit log); checks are
#    sent to the instance that did not open the verification;
# 4. after each run, `otpgate audit verify` checks every audit log written under load;
# 5. stops everything it started (also on Ctrl-C or error).
#
# Knobs (environment): DURATION (s per phase, default 10), CONCURRENCY (default 64),
# MAX_REQUESTS (per phase, default 200000), CHECK_POOL (verifications for the check
# phase, default 30000), KEEP=1 keeps the temporary directory, SKIP_BUILD=1 uses the
# binaries already built, JSON_DIR=DIR also writes the figures as JSON
# (DIR/issuer-embedded.json, DIR/issuer-embedded-process.json, DIR/issuer-redis.json;
# scripts/bench.sh reads them), EMBEDDED_DURABILITY (default "disk process": the levels run),
# REDIS_AUDIT_DURABILITY (default "disk process": the audit log levels of the Redis instances
# run, each with a fresh Redis; DIR/issuer-redis.json, DIR/issuer-redis-audit-process.json),
# REDIS_AOF=no|everysec|always (default no: the private Redis keeps nothing on disk;
# everysec/always turn on its append-only file with that fsync policy).
# Bars: embedded >= 5,000 starts/s and >= 15,000 checks/s; Redis >= 10,000 checks/s.
set -euo pipefail

cd "$(dirname "$0")/.."
which="${1:-all}"
# one_of MESSAGE VALUE ALLOWED...: exits 2 with MESSAGE unless VALUE is one of ALLOWED.
one_of() {
	local message="$1" value="$2" allowed
	shift 2
	for allowed in "$@"; do
		[[ "$value" == "$allowed" ]] && return 0
	done
	echo "$message" >&2
	exit 2
}
one_of "usage: $0 [embedded|redis|all]" "$which" embedded redis all
DURATION="${DURATION:-10}"
CONCURRENCY="${CONCURRENCY:-64}"
MAX_REQUESTS="${MAX_REQUESTS:-200000}"
CHECK_POOL="${CHECK_POOL:-30000}"
REDIS_AOF="${REDIS_AOF:-no}"
EMBEDDED_DURABILITY="${EMBEDDED_DURABILITY:-disk process}"
REDIS_AUDIT_DURABILITY="${REDIS_AUDIT_DURABILITY:-disk process}"
one_of "REDIS_AOF must be no, everysec or always" "$REDIS_AOF" no everysec always
TEST_PHONE="+14155550100"
TEST_CODE="123456"

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
	echo "== building (release)"
	cargo build --release -q -p otpgate-server -p otpgate-bench --bin otpgate --bin load
fi
target="${CARGO_TARGET_DIR:-target}"
bin="$target/release/otpgate"
load="$target/release/load"

work="$(mktemp -d "${TMPDIR:-/tmp}/otpgate-bench.XXXXXX")"
pids=()
cleanup() {
	for pid in "${pids[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${pids[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	if [[ "${KEEP:-0}" == 1 ]]; then
		echo "kept $work"
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT INT TERM

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_http() { # url
	for _ in $(seq 1 100); do
		if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	echo "no answer from $1" >&2
	return 1
}

# config FILE PORT DATA_DIR AUDIT_FILE STORE_TOML [AUDIT_DURABILITY]
write_config() {
	cat >"$1" <<EOF
# Bench configuration: budgets raised far above any real deployment, PoW off, one test
# number with a fixed code (used for the check phase; never sent).
[server]
danger_discard_sends = true
listen = "127.0.0.1:$2"
data_dir = "$3"

[store]
$5

[[apps]]
name = "bench"
origins = ["https://bench.example"]

[policy]
allowed_regions = ["US"]

[policy.test_numbers]
"$TEST_PHONE" = "$TEST_CODE"

$(cat crates/otpgate-test-support/open-policy.toml)

[audit]
enabled = true
path = "$4"
durability = "${6:-disk}"
EOF
}

start_server() { # config logfile
	RUST_LOG="${RUST_LOG:-warn}" "$bin" serve --config "$1" >"$2" 2>&1 &
	pids+=($!)
}

run_load() { # bases name
	local json=()
	if [[ -n "${JSON_DIR:-}" ]]; then
		mkdir -p "$JSON_DIR"
		json=(--json "$JSON_DIR/issuer-$2.json")
	fi
	"$load" --base "$1" --concurrency "$CONCURRENCY" --duration-secs "$DURATION" \
		--max-requests "$MAX_REQUESTS" --check-pool "$CHECK_POOL" --app bench \
		--test-phone "$TEST_PHONE" --test-code "$TEST_CODE" "${json[@]}"
}

verify_audit() { # data_dir files...
	local data="$1"
	shift
	for f in "$@"; do
		"$bin" audit verify --data-dir "$data" --file "$f"
	done
}

if [[ "$which" == embedded || "$which" == all ]]; then
	for durability in $EMBEDDED_DURABILITY; do
		case "$durability" in
		disk) name=embedded ;;
		process) name=embedded-process ;;
		*)
			echo "EMBEDDED_DURABILITY: disk and/or process, not $durability" >&2
			exit 2
			;;
		esac
		echo
		echo "== embedded store, one instance, durability = \"$durability\" (store and audit log)"
		port="$(free_port)"
		dir="$work/$name"
		mkdir -p "$dir"
		write_config "$dir/otpgate.toml" "$port" "$dir/data" "$dir/audit.jsonl" \
			"kind = \"embedded\"
durability = \"$durability\"" "$durability"
		start_server "$dir/otpgate.toml" "$dir/serve.log"
		server_pid="${pids[-1]}"
		if ! wait_http "http://127.0.0.1:$port/healthz"; then
			cat "$dir/serve.log" >&2
			exit 1
		fi
		run_load "http://127.0.0.1:$port" "$name"
		kill "$server_pid"
		wait "$server_pid" 2>/dev/null || true
		verify_audit "$dir/data" "$dir/audit.jsonl"
	done
fi

if [[ "$which" == redis || "$which" == all ]]; then
	command -v redis-server >/dev/null || {
		echo "redis-server not found" >&2
		exit 1
	}
	for durability in $REDIS_AUDIT_DURABILITY; do
		case "$durability" in
		disk) name=redis ;;
		process) name=redis-audit-process ;;
		*)
			echo "REDIS_AUDIT_DURABILITY: disk and/or process, not $durability" >&2
			exit 2
			;;
		esac
		echo
		echo "== Redis store, two instances, audit log durability = \"$durability\""
		first_pid=${#pids[@]}
		rport="$(free_port)"
		dir="$work/$name"
		mkdir -p "$dir"
		# A private Redis: no persistence by default (the settings of a cache); REDIS_AOF
		# turns on the append-only file.
		if [[ "$REDIS_AOF" == no ]]; then
			aof=(--appendonly no)
		else
			aof=(--appendonly yes --appendfsync "$REDIS_AOF")
		fi
		echo "   redis-server: RDB snapshots off, append-only file: $REDIS_AOF"
		redis-server --port "$rport" --bind 127.0.0.1 --save "" "${aof[@]}" \
			--dir "$dir" --daemonize no >"$dir/redis.log" 2>&1 &
		pids+=($!)
		for _ in $(seq 1 50); do
			if redis-cli -p "$rport" ping >/dev/null 2>&1; then break; fi
			sleep 0.1
		done
		bases=()
		audits=()
		for i in 1 2; do
			port="$(free_port)"
			write_config "$dir/otpgate-$i.toml" "$port" "$dir/data" "$dir/audit-$i.jsonl" \
				"kind = \"redis\"
url = \"redis://127.0.0.1:$rport/\"" "$durability"
			start_server "$dir/otpgate-$i.toml" "$dir/serve-$i.log"
			if ! wait_http "http://127.0.0.1:$port/healthz"; then
				cat "$dir/serve-$i.log" >&2
				exit 1
			fi
			bases+=("http://127.0.0.1:$port")
			audits+=("$dir/audit-$i.jsonl")
		done
		run_load "$(
			IFS=,
			echo "${bases[*]}"
		)" "$name"
		# Stop this round's servers and Redis before the next one.
		for pid in "${pids[@]:$first_pid}"; do
			kill "$pid" 2>/dev/null || true
			wait "$pid" 2>/dev/null || true
		done
		verify_audit "$dir/data" "${audits[@]}"
	done
fi
