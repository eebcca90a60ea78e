#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# demo.sh - build proact and show its echo server at work.
#
#  1. installs missing build dependencies (scripts/deps.sh);
#  2. configures and builds a Release build into build/release;
#  3. echo load: examples/echo_server against examples/echo_load, with
#     NULL-buffer pool reads (the default) on one thread and on two
#     (--threads 2: a watcher and an SO_REUSEPORT listener per thread), and
#     with --buffer 4096;
#  4. idle memory: the server's VmRSS before and after N idle connections,
#     in both modes, as bytes per connection.
# Exits nonzero if any step failed.
#
# Knobs (environment): DEMO_CONNS (2000), DEMO_MSGS (50), DEMO_SIZE (1024),
# DEMO_SECONDS (30), DEMO_IDLE (10000; 0 leaves the idle runs out),
# DEMO_BACKEND (empty: the library's choice, which also honours
# PROACT_BACKEND), DEMO_CMAKE_ARGS (more CMake options, split at spaces:
# "-DPROACT_KQUEUE_DOUBLE=ON" serves through the kqueue backend over the
# test double), BUILD_DIR (build/release).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" # a relative BUILD_DIR is relative to the project
BUILD=${BUILD_DIR:-build/release}
CONNS=${DEMO_CONNS:-2000}
MSGS=${DEMO_MSGS:-50}
SIZE=${DEMO_SIZE:-1024}
SECONDS_LIMIT=${DEMO_SECONDS:-30}
IDLE=${DEMO_IDLE:-10000}
# One client process holds at most this many connections: a process here may
# have 20,000 fds, so larger idle counts are spread over several clients.
IDLE_PER_CLIENT=10000

SERVER_ARGS=()
if [ -n "${DEMO_BACKEND:-}" ]; then
	SERVER_ARGS=(--backend "$DEMO_BACKEND")
fi

TMP=$(mktemp -d)
SERVER_PID=""
CLIENT_PIDS=()
FAILED=()

cleanup() {
	# Only what this script started, by PID.
	for pid in "${CLIENT_PIDS[@]}" $SERVER_PID; do
		kill -KILL "$pid" 2>/dev/null || true
	done
	rm -rf "$TMP"
}
trap cleanup EXIT

say() {
	printf '\n== %s\n' "$*"
}

fail() {
	echo "demo: FAILED: $*" >&2
	FAILED+=("$*")
}

# start_server ARGS...: starts echo_server, waits for its "listening on" line,
# sets SERVER_PID and PORT.
start_server() {
	: >"$TMP/server.out"
	"$BUILD/examples/echo_server" "${SERVER_ARGS[@]}" "$@" >"$TMP/server.out" \
		2>"$TMP/server.err" &
	SERVER_PID=$!
	local line=""
	for _ in $(seq 100); do
		line=$(grep -m1 '^listening on ' "$TMP/server.out" || true)
		[ -n "$line" ] && break
		kill -0 "$SERVER_PID" 2>/dev/null || break
		sleep 0.1
	done
	if [ -z "$line" ]; then
		cat "$TMP/server.err" >&2
		SERVER_PID=""
		return 1
	fi
	PORT=${line##*:}
	echo "server: $line ($(cat "$TMP/server.err"))"
}

# stop_server: SIGINT, then waits (10 s at most); prints its summary line.
stop_server() {
	local rc=0
	kill -INT "$SERVER_PID"
	for _ in $(seq 100); do
		kill -0 "$SERVER_PID" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$SERVER_PID" 2>/dev/null; then
		echo "demo: server did not exit on SIGINT" >&2
		kill -KILL "$SERVER_PID"
	fi
	wait "$SERVER_PID" || rc=$?
	SERVER_PID=""
	echo "server: $(tail -n 1 "$TMP/server.out")"
	grep -q ' 0 errors$' "$TMP/server.out" || rc=1
	return $rc
}

vmrss_kb() {
	awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

fd_count() {
	find "/proc/$1/fd" -mindepth 1 -maxdepth 1 | wc -l
}

# echo_run LABEL SERVER_ARGS...: one echo load against a fresh server.
echo_run() {
	local label=$1
	shift
	say "echo load, $label: $CONNS connections x $MSGS messages x $SIZE bytes"
	start_server "$@" || {
		fail "$label: server did not start"
		return
	}
	local rc=0
	"$BUILD/examples/echo_load" --port "$PORT" --conns "$CONNS" --msgs "$MSGS" \
		--size "$SIZE" --seconds "$SECONDS_LIMIT" | sed 's/^/client: /' || rc=$?
	[ $rc -eq 0 ] || fail "$label: echo_load exited with $rc"
	counters_on_usr1 || fail "$label: counters on SIGUSR1"
	stop_server || fail "$label: server exit or summary"
}

# counters_on_usr1: SIGUSR1 makes the running server print (on stderr) each watcher's
# counters and go on; the first watcher's completed reads cover the load
# (a read per message at least, and CONNS at least).
counters_on_usr1() {
	local line="" done_reads
	kill -USR1 "$SERVER_PID"
	for _ in $(seq 50); do
		line=$(grep -m1 '^echo_server: stats\[0\]: ' "$TMP/server.err" || true)
		[ -n "$line" ] && break
		sleep 0.1
	done
	kill -0 "$SERVER_PID" 2>/dev/null || return 1
	done_reads=$(echo "$line" | sed -n 's|.* read=[0-9]*/\([0-9]*\).*|\1|p')
	echo "server: ${line#echo_server: }"
	[ -n "$done_reads" ] && [ "$done_reads" -ge "$CONNS" ]
}

# wait_idle BASE_FDS: until the server holds IDLE more fds and every client
# reported its connections open (60 s at most).
wait_idle() {
	local base=$1
	for _ in $(seq 600); do
		local ready
		ready=$(cat "$TMP"/idle.*.out 2>/dev/null | grep -c 'connections open' || true)
		if [ "$ready" -eq "${#CLIENT_PIDS[@]}" ] &&
			[ "$(fd_count "$SERVER_PID")" -ge $((base + IDLE)) ]; then
			return 0
		fi
		sleep 0.1
	done
	return 1
}

# idle_run LABEL SERVER_ARGS...: server memory per idle connection.
idle_run() {
	local label=$1
	shift
	say "idle memory, $label: $IDLE idle connections"
	start_server "$@" || {
		fail "idle $label: server did not start"
		return
	}
	local before base left=$IDLE i=0
	before=$(vmrss_kb "$SERVER_PID")
	base=$(fd_count "$SERVER_PID")
	CLIENT_PIDS=()
	rm -f "$TMP"/idle.*.out
	while [ "$left" -gt 0 ]; do
		local n=$((left < IDLE_PER_CLIENT ? left : IDLE_PER_CLIENT))
		"$BUILD/examples/echo_load" --port "$PORT" --idle "$n" --hold-seconds 120 \
			--seconds "$SECONDS_LIMIT" >"$TMP/idle.$i.out" 2>&1 &
		CLIENT_PIDS+=($!)
		left=$((left - n))
		i=$((i + 1))
	done
	if wait_idle "$base"; then
		local after
		after=$(vmrss_kb "$SERVER_PID")
		echo "server VmRSS: $before kB before, $after kB with $IDLE idle connections:" \
			"$(((after - before) * 1024 / IDLE)) bytes per connection (user space only)"
	else
		fail "idle $label: connections not all open in time"
	fi
	local pid rc
	for pid in "${CLIENT_PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
		rc=0
		wait "$pid" || rc=$?
		[ $rc -eq 0 ] || fail "idle $label: a client exited with $rc"
	done
	CLIENT_PIDS=()
	sed 's/^/client: /' "$TMP"/idle.*.out
	stop_server || fail "idle $label: server exit or summary"
}

say "dependencies"
"$ROOT/scripts/deps.sh"

say "build (Release) into $BUILD"
# shellcheck disable=SC2086 # a list of options, split on purpose
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release ${DEMO_CMAKE_ARGS:-} >/dev/null
cmake --build "$BUILD" -j"$(nproc)" >/dev/null
echo "built"

echo_run "NULL-buffer pool reads"
echo_run "NULL-buffer pool reads, 2 threads (--threads 2)" --threads 2
echo_run "per-connection buffers (--buffer 4096)" --buffer 4096
if [ "$IDLE" -gt 0 ]; then
	idle_run "NULL-buffer pool reads"
	idle_run "per-connection buffers (--buffer 4096)" --buffer 4096
fi

say "result"
if [ ${#FAILED[@]} -gt 0 ]; then
	printf 'demo: FAILED: %s\n' "${FAILED[@]}"
	exit 1
fi
echo "demo: all steps passed"
