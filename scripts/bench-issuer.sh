#!/usr/bin/env bash
# Issuer load benchmark: starts/s, checks/s and a trivial endpoint, p50/p99, over HTTP on
# loopback against real `otpgate serve` processes.
#
#   scripts/bench-issuer.sh [embedded] [redis] [cluster] [sentinel] [all]
#       (default: embedded redis, what scripts/bench.sh runs; all = the four)
#
# 1. builds `otpgate` and the load client (`bench/src/bin/load.rs`) in release mode;
# 2. embedded: one instance on the embedded store (redb file + audit log), at each
#    durability level: `disk` (every answer after the fdatasync) and `process` (every answer
#    after the write to the OS, synced within 200 ms: survives kill -9, not a power cut);
# 3. redis: a private redis-server on a free port and two instances sharing it (the keys
#    are shared through one data directory, each instance has its own audit log); checks are
#    sent to the instance that did not open the verification;
# 4. cluster: the same two instances on one plain Redis, then on a Redis Cluster of 3
#    masters + 3 replicas (`redis-server --cluster-enabled yes`, `redis-cli --cluster create
#    --cluster-replicas 1`, node timeout 1 s) with `wait_replicas = 0`, then 1; then the
#    failover (below) of the master that holds a verification's record;
# 5. sentinel: a primary, one replica and three `redis-sentinel`s (down after 1 s), the two
#    instances in mode `sentinel` with `wait_replicas = 0`, then 1; then the failover of the
#    primary;
#    failover: a verification is opened through instance 1 and is on the replica (`WAIT 1`);
#    a light load of starts runs on both instances (FAILOVER_LOAD workers); its master or
#    primary gets SIGKILL and instance 2 is asked to check it (right code) every 20 ms: the
#    figure is the seconds from the kill to the first 200 `approved`; every other answer is
#    counted (503 with `Retry-After` expected; anything else is reported as a failure);
# 6. after each run, `otpgate audit verify` checks every audit log written under load;
# 7. stops everything it started (also on Ctrl-C or error).
# On a 2-core machine the Cluster runs six servers on the same cores as the issuers and the
# load client: its figures measure the Cluster's overhead there, not its scaling.
#
# Knobs (environment): DURATION (s per phase, default 10), CONCURRENCY (default 64),
# MAX_REQUESTS (per phase, default 200000), CHECK_POOL (verifications for the check
# phase, default 30000), KEEP=1 keeps the temporary directory, SKIP_BUILD=1 uses the
# binaries already built, JSON_DIR=DIR also writes the figures as JSON
# (DIR/issuer-embedded.json, DIR/issuer-embedded-process.json, DIR/issuer-redis.json;
# cluster: DIR/issuer-cluster-single.json (the plain Redis beside it), issuer-cluster.json,
# issuer-cluster-wait1.json, issuer-cluster-failover.json; sentinel: issuer-sentinel.json,
# issuer-sentinel-wait1.json, issuer-sentinel-failover.json; each load run's JSON carries
# the load average before and after it in meta.load_average; scripts/bench.sh reads the
# embedded and redis ones), EMBEDDED_DURABILITY (default "disk process": the levels run),
# REDIS_AUDIT_DURABILITY (default "disk process": the audit log levels of the Redis instances
# run, each with a fresh Redis; DIR/issuer-redis.json, DIR/issuer-redis-audit-process.json),
# REDIS_AOF=no|everysec|always (default no: the private Redis servers keep nothing on disk;
# everysec/always turn on their append-only file with that fsync policy),
# FAILOVER_SECS (default 15: the background load's length; the check must succeed within
# it), FAILOVER_LOAD (default 4: workers of the background load, 0 = none),
# NODE_TIMEOUT_MS (default 1000: cluster-node-timeout and the sentinels'
# down-after-milliseconds).
# Bars: embedded >= 5,000 starts/s and >= 15,000 checks/s; Redis >= 10,000 checks/s.
set -euo pipefail

cd "$(dirname "$0")/.."
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
phases=()
for a in "${@:-embedded redis}"; do
	for b in $a; do
		one_of "usage: $0 [embedded] [redis] [cluster] [sentinel] [all]" "$b" \
			embedded redis cluster sentinel all
		if [[ "$b" == all ]]; then phases+=(embedded redis cluster sentinel); else phases+=("$b"); fi
	done
done
want() {
	local p
	for p in "${phases[@]}"; do [[ "$p" == "$1" ]] && return 0; done
	return 1
}
DURATION="${DURATION:-10}"
CONCURRENCY="${CONCURRENCY:-64}"
MAX_REQUESTS="${MAX_REQUESTS:-200000}"
CHECK_POOL="${CHECK_POOL:-30000}"
REDIS_AOF="${REDIS_AOF:-no}"
EMBEDDED_DURABILITY="${EMBEDDED_DURABILITY:-disk process}"
REDIS_AUDIT_DURABILITY="${REDIS_AUDIT_DURABILITY:-disk process}"
FAILOVER_SECS="${FAILOVER_SECS:-15}"
FAILOVER_LOAD="${FAILOVER_LOAD:-4}"
NODE_TIMEOUT_MS="${NODE_TIMEOUT_MS:-1000}"
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

load_average() { cut -d' ' -f1-3 /proc/loadavg; }

run_load() { # bases name
	local json=() before
	if [[ -n "${JSON_DIR:-}" ]]; then
		mkdir -p "$JSON_DIR"
		json=(--json "$JSON_DIR/issuer-$2.json")
	fi
	before="$(load_average)"
	echo "   load average before: $before (the machine is shared)"
	"$load" --base "$1" --concurrency "$CONCURRENCY" --duration-secs "$DURATION" \
		--max-requests "$MAX_REQUESTS" --check-pool "$CHECK_POOL" --app bench \
		--test-phone "$TEST_PHONE" --test-code "$TEST_CODE" "${json[@]}"
	echo "   load average after: $(load_average)"
	if [[ -n "${JSON_DIR:-}" ]]; then
		python3 - "$JSON_DIR/issuer-$2.json" "$before" "$(load_average)" <<'PY'
import json, sys
path, before, after = sys.argv[1:]
with open(path) as f:
    doc = json.load(f)
doc.setdefault("meta", {})["load_average"] = {"before": before, "after": after}
with open(path, "w") as f:
    json.dump(doc, f, indent=2)
PY
	fi
}

# A free port whose cluster bus port (+10000) is free too, both below 65536.
free_cluster_port() {
	python3 - <<'PY'
import random, socket
def free(port):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()
for _ in range(2000):
    port = random.randint(20000, 45000)
    if free(port) and free(port + 10000):
        print(port)
        break
else:
    raise SystemExit("no free port pair (port, port + 10000) for a cluster node")
PY
}

# stop_from INDEX: stops the processes started since pids[INDEX] (SIGTERM, then waits).
stop_from() {
	local pid
	for pid in "${pids[@]:$1}"; do
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
}

# A private redis-server on PORT with its files in DIR (RDB snapshots off; REDIS_AOF
# turns on its append-only file); extra arguments after DIR. node_pid[PORT] = its pid.
declare -A node_pid=()
start_redis() { # port dir [args...]
	local port="$1" dir="$2" aof
	shift 2
	mkdir -p "$dir"
	if [[ "$REDIS_AOF" == no ]]; then
		aof=(--appendonly no)
	else
		aof=(--appendonly yes --appendfsync "$REDIS_AOF")
	fi
	redis-server --port "$port" --bind 127.0.0.1 --save "" "${aof[@]}" \
		--dir "$dir" --daemonize no "$@" >"$dir/redis.log" 2>&1 &
	pids+=($!)
	node_pid[$port]=$!
	for _ in $(seq 1 100); do
		if redis-cli -p "$port" ping >/dev/null 2>&1; then return 0; fi
		sleep 0.1
	done
	echo "redis-server on $port does not answer" >&2
	cat "$dir/redis.log" >&2
	return 1
}

# wait_for SECONDS WHAT COMMAND...: until COMMAND succeeds.
wait_for() {
	local secs="$1" what="$2"
	local until=$((SECONDS + secs))
	shift 2
	until "$@" >/dev/null 2>&1; do
		if ((SECONDS >= until)); then
			echo "$what within $secs s: no" >&2
			return 1
		fi
		sleep 0.1
	done
}

# start_issuers DIR STORE_TOML [AUDIT_DURABILITY]: two instances sharing the store and,
# through one data directory, the keys; sets bases (their URLs) and audits (their logs).
start_issuers() {
	local dir="$1" i port
	bases=()
	audits=()
	mkdir -p "$dir"
	for i in 1 2; do
		port="$(free_port)"
		write_config "$dir/otpgate-$i.toml" "$port" "$dir/data" "$dir/audit-$i.jsonl" \
			"$2" "${3:-disk}"
		start_server "$dir/otpgate-$i.toml" "$dir/serve-$i.log"
		if ! wait_http "http://127.0.0.1:$port/healthz" ||
			! wait_http "http://127.0.0.1:$port/readyz"; then
			cat "$dir/serve-$i.log" >&2
			exit 1
		fi
		bases+=("http://127.0.0.1:$port")
		audits+=("$dir/audit-$i.jsonl")
	done
}

joined_bases() {
	local IFS=,
	echo "${bases[*]}"
}

# bench_two DIR NAME STORE_TOML [AUDIT_DURABILITY]: two instances, the load, then they
# stop and their audit logs are verified.
bench_two() {
	local first=${#pids[@]}
	start_issuers "$1" "$3" "${4:-disk}"
	run_load "$(joined_bases)" "$2"
	stop_from "$first"
	verify_audit "$1/data" "${audits[@]}"
}

# ---- Redis Cluster: 3 masters + 3 replicas ----------------------------------------------
cluster_ports=()
cluster_ok() {
	local p info
	for p in "${cluster_ports[@]}"; do
		redis-cli -p "$p" cluster info 2>/dev/null | grep -q 'cluster_state:ok' || return 1
		info="$(redis-cli -p "$p" info replication 2>/dev/null)"
		grep -q 'role:master' <<<"$info" || grep -q 'master_link_status:up' <<<"$info" || return 1
	done
}
start_cluster() { # dir
	local port nodes=()
	cluster_ports=()
	for _ in 1 2 3 4 5 6; do
		port="$(free_cluster_port)"
		start_redis "$port" "$1/node-$port" --cluster-enabled yes \
			--cluster-config-file nodes.conf --cluster-node-timeout "$NODE_TIMEOUT_MS"
		cluster_ports+=("$port")
		nodes+=("127.0.0.1:$port")
	done
	if ! redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes \
		>"$1/create.log" 2>&1; then
		cat "$1/create.log" >&2
		return 1
	fi
	wait_for 30 "the cluster is ok and every replica in sync" cluster_ok
}
cluster_urls() {
	local p out=()
	for p in "${cluster_ports[@]}"; do out+=("\"redis://127.0.0.1:$p\""); done
	local IFS=,
	echo "[${out[*]}]"
}
# The port of the master that holds KEY (the node that answers EXISTS without MOVED).
cluster_owner() {
	local p
	for p in "${cluster_ports[@]}"; do
		[[ -n "${node_pid[$p]:-}" ]] || continue
		if [[ "$(redis-cli -p "$p" exists "$1" 2>/dev/null)" == 1 ]]; then
			echo "$p"
			return 0
		fi
	done
	return 1
}
cluster_flush() {
	local p
	for p in "${cluster_ports[@]}"; do
		if redis-cli -p "$p" role 2>/dev/null | head -1 | grep -q master; then
			redis-cli -p "$p" flushall >/dev/null
		fi
	done
}

# ---- a primary, one replica, three sentinels -------------------------------------------
primary_port=
replica_port=
sentinel_ports=()
sentinel_ok() {
	local s
	for s in "${sentinel_ports[@]}"; do
		redis-cli -p "$s" sentinel ckquorum mymaster 2>/dev/null | grep -q 'OK 3 usable' || return 1
		redis-cli -p "$s" sentinel replicas mymaster 2>/dev/null | grep -qx "$replica_port" || return 1
	done
	redis-cli -p "$replica_port" info replication | grep -q 'master_link_status:up'
}
start_sentinel() { # dir
	local s conf
	primary_port="$(free_port)"
	start_redis "$primary_port" "$1/node-$primary_port"
	replica_port="$(free_port)"
	start_redis "$replica_port" "$1/node-$replica_port" --replicaof 127.0.0.1 "$primary_port"
	sentinel_ports=()
	for _ in 1 2 3; do
		s="$(free_port)"
		mkdir -p "$1/sentinel-$s"
		conf="$1/sentinel-$s/sentinel.conf"
		cat >"$conf" <<CONF
port $s
bind 127.0.0.1
dir $1/sentinel-$s
sentinel monitor mymaster 127.0.0.1 $primary_port 2
sentinel down-after-milliseconds mymaster $NODE_TIMEOUT_MS
sentinel failover-timeout mymaster 3000
sentinel parallel-syncs mymaster 1
CONF
		redis-sentinel "$conf" >"$1/sentinel-$s/sentinel.log" 2>&1 &
		pids+=($!)
		sentinel_ports+=("$s")
		wait_for 10 "redis-sentinel on $s answers" redis-cli -p "$s" ping
	done
	wait_for 30 "the sentinels see the replica and one another" sentinel_ok
}
sentinel_urls() {
	local p out=()
	for p in "${sentinel_ports[@]}"; do out+=("\"redis://127.0.0.1:$p\""); done
	local IFS=,
	echo "[${out[*]}]"
}

# failover DIR NAME STORE_TOML OWNER_FUNCTION: two instances; a verification opened
# through the first and on a replica; a light load of starts on both; SIGKILL to the node
# OWNER_FUNCTION KEY names (the master or primary that holds the record); then the second
# instance is asked to check it every 20 ms until it answers 200 approved. Prints the
# seconds from the kill to that answer and every other answer met meanwhile.
failover() {
	local dir="$1" name="$2" first=${#pids[@]} body id key owner lpid=
	start_issuers "$dir" "$3"
	body="$(curl -fsS -X POST -H 'content-type: application/json' \
		-d "{\"phone\":\"$TEST_PHONE\",\"app\":\"bench\"}" "${bases[0]}/v1/verifications")" || return 1
	id="$(python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])' <<<"$body")"
	key="otpgate::v:{$id}" # <key_prefix>:v:{<id>}, the default key_prefix "otpgate:"
	owner="$("$4" "$key")" || {
		echo "no node holds $key" >&2
		return 1
	}
	# On the replica before the kill: what is measured is the failover, not a lost write.
	[[ "$(redis-cli -p "$owner" wait 1 2000)" -ge 1 ]] || {
		echo "the replica of $owner did not confirm $key" >&2
		return 1
	}
	if ((FAILOVER_LOAD > 0)); then
		"$load" --base "$(joined_bases)" --concurrency "$FAILOVER_LOAD" \
			--duration-secs "$FAILOVER_SECS" --max-requests "$MAX_REQUESTS" --phases start \
			--app bench >"$dir/load.log" 2>&1 &
		lpid=$!
		pids+=("$lpid")
		sleep 2
	fi
	local la t0 t1= code approved=0 probes=0 no_retry_after=0 deadline
	declare -A answers=()
	la="$(load_average)"
	echo "   SIGKILL to $owner (holds $key); load average $la (the machine is shared)"
	t0="$(date +%s%3N)"
	{
		kill -9 "${node_pid[$owner]}"
		wait "${node_pid[$owner]}" || true
	} 2>/dev/null
	unset "node_pid[$owner]"
	deadline=$((t0 + FAILOVER_SECS * 1000))
	while (($(date +%s%3N) < deadline)); do
		code="$(curl -s -o "$dir/probe.body" -D "$dir/probe.headers" -w '%{http_code}' -m 2 \
			-X POST -H 'content-type: application/json' -d "{\"code\":\"$TEST_CODE\"}" \
			"${bases[1]}/v1/verifications/$id/check" || true)"
		probes=$((probes + 1))
		if [[ "$code" == 200 ]] && grep -q '"approved"' "$dir/probe.body"; then
			t1="$(date +%s%3N)"
			approved=1
			break
		fi
		[[ "$code" == 000 ]] && code=timeout
		answers[$code]=$((${answers[$code]:-0} + 1))
		if [[ "$code" == 503 ]] && ! grep -qi '^retry-after:' "$dir/probe.headers"; then
			no_retry_after=$((no_retry_after + 1))
		fi
		sleep 0.02
	done
	if [[ -n "$lpid" ]]; then
		wait "$lpid" || true
		sed -n '/^endpoint/,$p' "$dir/load.log"
	fi
	local seconds=null others="" k
	[[ -n "$t1" ]] && seconds="$(printf '%d.%02d' $(((t1 - t0) / 1000)) $((((t1 - t0) % 1000) / 10)))"
	for k in "${!answers[@]}"; do others+="${others:+, }\"$k\": ${answers[$k]}"; done
	echo "   first check approved through the other instance: ${seconds} s after the kill" \
		"($probes probes; other answers: {${others}}; 503 without Retry-After: $no_retry_after)"
	if [[ -n "${JSON_DIR:-}" ]]; then
		mkdir -p "$JSON_DIR"
		cat >"$JSON_DIR/issuer-$name.json" <<JSON
{"seconds_to_first_check": $seconds, "probes": $probes, "other_answers": {$others},
 "unavailable_without_retry_after": $no_retry_after, "node_timeout_ms": $NODE_TIMEOUT_MS,
 "background_load_workers": $FAILOVER_LOAD, "load_average": "$la"}
JSON
	fi
	stop_from "$first"
	verify_audit "$dir/data" "${audits[@]}"
	local bad=0
	[[ "$approved" == 1 ]] || {
		echo "no check succeeded within $FAILOVER_SECS s of the kill" >&2
		bad=1
	}
	for k in "${!answers[@]}"; do
		[[ "$k" == 503 ]] || {
			echo "unexpected answers during the failover: $k x${answers[$k]}" >&2
			bad=1
		}
	done
	((no_retry_after == 0)) || bad=1
	return "$bad"
}
sentinel_owner() { # key: the primary as the sentinels name it, if it holds KEY
	local s p
	s="${sentinel_ports[0]}"
	p="$(redis-cli -p "$s" sentinel get-master-addr-by-name mymaster | tail -1)"
	[[ "$(redis-cli -p "$p" exists "$1")" == 1 ]] && echo "$p"
}

verify_audit() { # data_dir files...
	local data="$1"
	shift
	for f in "$@"; do
		"$bin" audit verify --data-dir "$data" --file "$f"
	done
}

if want embedded; then
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

status=0
if want redis || want cluster || want sentinel; then
	for tool in redis-server redis-cli; do
		command -v "$tool" >/dev/null || {
			echo "$tool not found (apt-get install redis-server; scripts/setup.sh does)" >&2
			exit 1
		}
	done
fi

if want redis; then
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
		# A private Redis: no persistence by default (the settings of a cache); REDIS_AOF
		# turns on the append-only file.
		echo "   redis-server: RDB snapshots off, append-only file: $REDIS_AOF"
		first=${#pids[@]}
		dir="$work/$name"
		rport="$(free_port)"
		start_redis "$rport" "$dir/redis"
		bench_two "$dir" "$name" "kind = \"redis\"
url = \"redis://127.0.0.1:$rport/\"" "$durability"
		stop_from "$first"
	done
fi

if want cluster; then
	echo
	echo "== Redis Cluster beside one Redis, two instances each (on two cores: the Cluster's"
	echo "   overhead, not its scaling); redis-server: RDB off, append-only file: $REDIS_AOF"
	echo
	echo "== one Redis (beside the Cluster), two instances"
	first=${#pids[@]}
	dir="$work/cluster"
	rport="$(free_port)"
	start_redis "$rport" "$dir/single/redis"
	bench_two "$dir/single" cluster-single "kind = \"redis\"
url = \"redis://127.0.0.1:$rport/\""
	stop_from "$first"
	start_cluster "$dir/nodes"
	store="kind = \"redis\"
mode = \"cluster\"
urls = $(cluster_urls)"
	for wait in 0 1; do
		echo
		echo "== Redis Cluster (3 masters + 3 replicas, node timeout $NODE_TIMEOUT_MS ms)," \
			"two instances, wait_replicas = $wait"
		name=cluster
		[[ "$wait" == 0 ]] || name="cluster-wait$wait"
		bench_two "$dir/$name" "$name" "$store
wait_replicas = $wait"
		cluster_flush
	done
	echo
	echo "== Redis Cluster failover: SIGKILL to the master of a verification's record," \
		"wait_replicas = 0"
	failover "$dir/failover" cluster-failover "$store" cluster_owner || status=1
	stop_from "$first"
fi

if want sentinel; then
	command -v redis-sentinel >/dev/null || {
		echo "redis-sentinel not found (apt-get install redis-sentinel; scripts/setup.sh does)" >&2
		exit 1
	}
	first=${#pids[@]}
	dir="$work/sentinel"
	start_sentinel "$dir/nodes"
	store="kind = \"redis\"
mode = \"sentinel\"
urls = $(sentinel_urls)
service_name = \"mymaster\""
	for wait in 0 1; do
		echo
		echo "== Sentinel (a primary, one replica, three sentinels, down after" \
			"$NODE_TIMEOUT_MS ms), two instances, wait_replicas = $wait"
		echo "   redis-server: RDB off, append-only file: $REDIS_AOF"
		name=sentinel
		[[ "$wait" == 0 ]] || name="sentinel-wait$wait"
		bench_two "$dir/$name" "$name" "$store
wait_replicas = $wait"
		redis-cli -p "$primary_port" flushall >/dev/null
	done
	echo
	echo "== Sentinel failover: SIGKILL to the primary, wait_replicas = 0"
	failover "$dir/failover" sentinel-failover "$store" sentinel_owner || status=1
	stop_from "$first"
fi
exit "$status"
