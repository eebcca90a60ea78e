#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# server_cpu.sh - server CPU time per ping-pong round trip, proact against
# the raw server of the same backend: a fixed load (CONNS connections x
# ROUNDS round trips of 64 B, loadgen's echo mode), the server's user+system
# time from /proc/PID/stat before and after. A fixed amount of work measured
# in CPU time, not a rate: a shared machine makes it slower to run, much
# less so dearer. Server on core 0, loadgen on core 1, the servers
# alternating run by run; prints each run and the medians, with the ratio of
# each proact server to its raw peer (the performance issue's target 4).
#
#   bench/server_cpu.sh [RUNS] [CONNS] [ROUNDS]     (defaults: 5, 1000, 200)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
CONNS=${2:-1000}
ROUNDS=${3:-200}
BUILD=build/bench
BIN=$BUILD/bench
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DPROACT_BENCH=ON -DPROACT_TESTS=OFF \
	-DPROACT_EXAMPLES=OFF >/dev/null
cmake --build "$BUILD" -j"$(nproc)" >/dev/null
TMP=$(mktemp -d)
SPID=
trap '[ -n "$SPID" ] && kill "$SPID" 2>/dev/null; rm -rf "$TMP"' EXIT

servers=("proact-epoll:$BIN/proact_echo --backend epoll" "epoll:$BIN/epoll_echo")
if [ -x "$BIN/uring_echo" ]; then
	servers+=("proact-uring:$BIN/proact_echo --backend io_uring" "uring:$BIN/uring_echo")
fi

ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# one NAME CMD...: nanoseconds of server CPU per round trip, one run
one() {
	local name=$1
	shift
	taskset -c 0 "$@" --port 0 >"$TMP/out" 2>"$TMP/err" &
	SPID=$!
	for _ in $(seq 100); do grep -q '^listening' "$TMP/out" && break; sleep 0.05; done
	local port t0 t1
	port=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$TMP/out")
	[ -n "$port" ] || { echo "$name: no listening line" >&2; exit 1; }
	t0=$(ticks "$SPID")
	taskset -c 1 "$BIN/loadgen" --port "$port" --mode echo --conns "$CONNS" --size 64 \
		--rounds "$ROUNDS" --timeout 120 >"$TMP/lg" 2>&1 || { cat "$TMP/lg" >&2; exit 1; }
	t1=$(ticks "$SPID")
	kill -TERM "$SPID"
	wait "$SPID" 2>/dev/null || true
	SPID=
	local hz
	hz=$(getconf CLK_TCK)
	echo $(((t1 - t0) * 1000000000 / hz / (CONNS * ROUNDS)))
}

declare -A all
for run in $(seq "$RUNS"); do
	line="run $run:"
	for s in "${servers[@]}"; do
		name=${s%%:*}
		# shellcheck disable=SC2086 # the command's words
		ns=$(one "$name" ${s#*:})
		all[$name]+="$ns "
		line+=" $name $ns"
	done
	echo "$line ns per round trip"
done

median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
echo "server CPU per round trip, median of $RUNS ($CONNS connections x $ROUNDS round trips of 64 B):"
for pair in proact-epoll:epoll proact-uring:uring; do
	p=${pair%%:*} r=${pair#*:}
	[ -n "${all[$p]:-}" ] || continue
	mp=$(echo "${all[$p]}" | median)
	mr=$(echo "${all[$r]}" | median)
	awk -v p="$p" -v r="$r" -v a="$mp" -v b="$mr" \
		'BEGIN { printf "  %-13s %6d ns   %-6s %6d ns   x%.2f\n", p, a, r, b, a / b }'
done
