#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# idle_memory.sh - memory per idle connection of examples/echo_server.
#
#   scripts/idle_memory.sh [N] [BACKEND...]     (defaults: 19000, epoll io_uring)
#
# Starts the echo server (NULL-buffer pool reads: each idle connection has a
# read pending and holds no buffer), opens N idle connections from two client
# processes (a process may hold 20,000 fds here), and prints the server's RSS
# growth per connection and the kernel's slab growth per connection. The slab
# figure covers both ends of each loopback connection and the clients' epoll,
# so compare it between backends rather than reading it alone.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-19000}
shift || true
BACKENDS=("$@")
[ ${#BACKENDS[@]} -gt 0 ] || BACKENDS=(epoll io_uring)
BUILD=build/release
bash scripts/deps.sh
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DPROACT_TESTS=OFF >/dev/null
cmake --build "$BUILD" -j"$(nproc)" >/dev/null
BIN=$BUILD/examples
TMP=$(mktemp -d)
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; rm -rf "$TMP"' EXIT

kb() { awk -v k="$1" '$1 == k":" {print $2}' "$2"; }

measure() {
	local backend=$1
	"$BIN/echo_server" --port 0 --backend "$backend" >"$TMP/server" 2>&1 &
	local server=$!
	PIDS=("$server")
	for _ in $(seq 100); do grep -q listening "$TMP/server" && break; sleep 0.1; done
	local port
	port=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$TMP/server")
	sleep 0.5
	local rss0 slab0 rss1 slab1 half=$(((N + 1) / 2))
	rss0=$(kb VmRSS /proc/$server/status)
	slab0=$(kb Slab /proc/meminfo)
	for k in 1 2; do
		"$BIN/echo_load" --port "$port" --idle "$half" --hold-seconds 60 >"$TMP/client$k" 2>&1 &
		PIDS+=($!)
	done
	for _ in $(seq 600); do
		[ "$(grep -l 'connections open' "$TMP"/client* 2>/dev/null | wc -l)" = 2 ] && break
		sleep 0.1
	done
	sleep 2
	rss1=$(kb VmRSS /proc/$server/status)
	slab1=$(kb Slab /proc/meminfo)
	printf '%-9s %6d conns  server RSS +%6d KiB = %4d B/conn   kernel slab +%7d KiB = %5d B/conn\n' \
		"$backend" "$N" $((rss1 - rss0)) $(((rss1 - rss0) * 1024 / (2 * half))) \
		$((slab1 - slab0)) $(((slab1 - slab0) * 1024 / (2 * half)))
	kill "${PIDS[@]:1}" 2>/dev/null || true
	wait "${PIDS[@]:1}" 2>/dev/null || true
	kill -INT "$server"
	wait "$server" 2>/dev/null || true
	PIDS=()
}

for b in "${BACKENDS[@]}"; do
	measure "$b"
done
