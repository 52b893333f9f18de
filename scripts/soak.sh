#!/usr/bin/env bash
# Soak: the long variants of the fault tests, then fuzzing, each step bounded in time.
# Loopback only; every process it starts (issuers, emulated phones, redis-servers) is a
# child of a test binary and is killed with it.
#
#   scripts/soak.sh                    (defaults total roughly 15 minutes on 2 cores)
#   SOAK_ONLY="crash redis" scripts/soak.sh
#
# Steps (names for SOAK_ONLY / SOAK_SKIP):
#   build      builds the fault test binaries in release mode
#   crash      fault_crash_embedded: repeated kill -9 of the issuer under load on the embedded
#              store, each restart followed by a verifying pass (OTPGATE_SOAK_CRASH_CYCLES
#              cycles of OTPGATE_CRASH_PER_CYCLE verifications)
#   redis      fault_redis_restart: Redis killed and restarted OTPGATE_SOAK_REDIS_RESTARTS
#              times under load, without persistence and with appendonly
#   gateway    fault_gateway_failover: a burst of OTPGATE_SOAK_BURST starts over three
#              emulated phones, one going offline / killed, one failing half its sends
#   checks     fault_concurrent_checks: OTPGATE_SOAK_STORMS storms of
#              OTPGATE_CONCURRENT_CHECKS concurrent right-code checks (embedded and Redis)
#   fuzz       scripts/fuzz.sh SOAK_FUZZ_SECS (per target, 4 targets)
#   fuzz-http  scripts/fuzz-http.sh SOAK_FUZZ_HTTP_SECS (schemathesis against the API), when
#              the script exists (reported as "missing" otherwise)
#
# Knobs (environment), defaults in brackets:
#   OTPGATE_SOAK_CRASH_CYCLES [8]   OTPGATE_CRASH_PER_CYCLE [1500]
#   OTPGATE_SOAK_REDIS_RESTARTS [5] OTPGATE_SOAK_BURST [400]
#   OTPGATE_SOAK_STORMS [5]         OTPGATE_CONCURRENT_CHECKS [1000]
#   SOAK_FUZZ_SECS [45]             SOAK_FUZZ_HTTP_SECS [120]
#   SOAK_STEP_TIMEOUT [600]  seconds any one step may take before it is killed and failed
#   SOAK_BUILD_TIMEOUT [3600] the same for the build step (a cold release build with LTO on
#                            2 busy cores takes a while; it is not part of the ~15 minutes)
#   SOAK_RELEASE [1]         0 = run the fault tests in the debug build (no LTO build to wait
#                            for; the counts stay the same, each step takes longer)
#   SOAK_ONLY / SOAK_SKIP    space-separated step names
#   OTPGATE_TEST_REDIS_URL   a shared Redis for the concurrent-check step (else one is spawned)
#
# Exits non-zero when any step failed; prints a summary table either way.
set -uo pipefail

cd "$(dirname "$0")/.."
root="$PWD"

export OTPGATE_SOAK=1
export OTPGATE_SOAK_CRASH_CYCLES="${OTPGATE_SOAK_CRASH_CYCLES:-8}"
export OTPGATE_CRASH_PER_CYCLE="${OTPGATE_CRASH_PER_CYCLE:-1500}"
export OTPGATE_SOAK_REDIS_RESTARTS="${OTPGATE_SOAK_REDIS_RESTARTS:-5}"
export OTPGATE_SOAK_BURST="${OTPGATE_SOAK_BURST:-400}"
export OTPGATE_SOAK_STORMS="${OTPGATE_SOAK_STORMS:-5}"
export OTPGATE_CONCURRENT_CHECKS="${OTPGATE_CONCURRENT_CHECKS:-1000}"
profile=(--release)
if [[ "${SOAK_RELEASE:-1}" == 0 ]]; then
	profile=()
fi
# fuzz-http reuses the `otpgate` the build step made.
if [[ ${#profile[@]} -gt 0 ]]; then
	export FUZZ_HTTP_PROFILE="${FUZZ_HTTP_PROFILE:-release}"
fi
fuzz_secs="${SOAK_FUZZ_SECS:-45}"
fuzz_http_secs="${SOAK_FUZZ_HTTP_SECS:-120}"
step_timeout="${SOAK_STEP_TIMEOUT:-600}"
build_timeout="${SOAK_BUILD_TIMEOUT:-3600}"
only=" ${SOAK_ONLY:-build crash redis gateway checks fuzz fuzz-http} "
skip=" ${SOAK_SKIP:-} "

names=()
results=()
times=()
failed=0

wanted() {
	[[ "$only" == *" $1 "* && "$skip" != *" $1 "* ]]
}

# step NAME COMMAND...: runs it under the step timeout, records status and seconds.
step() {
	local name="$1"
	shift
	if ! wanted "$name"; then
		return
	fi
	echo
	echo "== soak: $name: $*"
	local t0=$SECONDS status limit="$step_timeout"
	[[ "$name" == build ]] && limit="$build_timeout"
	timeout --kill-after=20 "$limit" "$@"
	local rc=$?
	if [[ $rc -eq 0 ]]; then
		status=ok
	elif [[ $rc -eq 124 || $rc -eq 137 ]]; then
		status="FAILED (timeout ${limit}s)"
		failed=1
	else
		status="FAILED (exit $rc)"
		failed=1
	fi
	names+=("$name")
	results+=("$status")
	times+=("$((SECONDS - t0))")
}

note() { # NAME STATUS
	if wanted "$1"; then
		names+=("$1")
		results+=("$2")
		times+=(0)
	fi
}

# The fault tests (one binary, tests/fault/; each step runs one module by name filter):
# release build (unless SOAK_RELEASE=0), ignored (soak) tests included, one at a time.
fault=(cargo test "${profile[@]}" -q -p otpgate-server --test fault)
args=(-- --include-ignored --test-threads=1 --nocapture)

if ! command -v redis-server >/dev/null; then
	echo "soak: redis-server is not on PATH (the Redis steps start their own)" >&2
fi

step build cargo test "${profile[@]}" -q -p otpgate-server --no-run --test fault
step crash "${fault[@]}" fault_crash_embedded "${args[@]}"
step redis "${fault[@]}" fault_redis_restart "${args[@]}"
step gateway "${fault[@]}" fault_gateway_failover "${args[@]}"
step checks "${fault[@]}" fault_concurrent_checks "${args[@]}"
step fuzz "$root/scripts/fuzz.sh" "$fuzz_secs"
if [[ -x "$root/scripts/fuzz-http.sh" ]]; then
	step fuzz-http "$root/scripts/fuzz-http.sh" "$fuzz_http_secs"
else
	note fuzz-http "missing (scripts/fuzz-http.sh not found)"
fi

echo
echo "== soak summary"
printf '%-10s %8s  %s\n' step seconds result
total=0
for i in "${!names[@]}"; do
	printf '%-10s %8s  %s\n' "${names[$i]}" "${times[$i]}" "${results[$i]}"
	total=$((total + times[i]))
done
printf '%-10s %8s\n' total "$total"
if [[ $failed -ne 0 ]]; then
	echo "soak: FAILED" >&2
	exit 1
fi
echo "soak: all steps passed"
