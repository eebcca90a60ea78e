#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tls_idle.sh - memory per idle TLS connection of examples/tls_echo, beside
# the plaintext figure of examples/echo_server measured the same way.
#
#   bench/tls_idle.sh [N] [BACKEND...]     (defaults: 10000, epoll io_uring)
#
# The server holds N connections, each after its handshake with a TLS read
# pending (NULL buffer: nothing taken until data comes); the clients, two
# processes of bench/tls_idle (a process may hold 20,000 fds here), hold
# them idle. Prints the server's RSS growth per connection. TLS 1.3 with a
# P-256 certificate made for the run.
#
#   bench/tls_idle.sh --breakdown [N]      (default 5000)
#
# instead says what an idle TLS connection's heap is made of: bench/tls_idle_mem
# (a server on the layer, epoll) counts the live heap blocks by where they
# were allocated and prints them per connection, between N/5 and N.
set -euo pipefail
cd "$(dirname "$0")/.."
BREAKDOWN=0
if [ "${1:-}" = --breakdown ]; then
	BREAKDOWN=1
	shift
fi
N=${1:-$([ $BREAKDOWN = 1 ] && echo 5000 || echo 10000)}
shift || true
BACKENDS=("$@")
[ ${#BACKENDS[@]} -gt 0 ] || BACKENDS=(epoll io_uring)
BUILD=build/tls-release
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DPROACT_TESTS=OFF >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target tls_echo echo_server echo_load proact_tls_static \
	>/dev/null
TMP=$(mktemp -d)
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; rm -rf "$TMP"' EXIT
# The client links the static libraries of that build.
# shellcheck disable=SC2046
cc -O2 -Iinclude bench/tls_idle.c -o "$TMP/tls_idle" "$BUILD/tls/libproact_tls.a" \
	"$BUILD/libproact.a" $(pkg-config --libs openssl) \
	$(pkg-config --libs liburing 2>/dev/null || true) -lpthread
if [ $BREAKDOWN = 1 ]; then
	# shellcheck disable=SC2046
	cc -O2 -Iinclude bench/tls_idle_mem.c -o "$TMP/tls_idle_mem" "$BUILD/tls/libproact_tls.a" \
		"$BUILD/libproact.a" $(pkg-config --libs openssl) \
		$(pkg-config --libs liburing 2>/dev/null || true) -lpthread -ldl -rdynamic
	PROACT_BACKEND=epoll "$TMP/tls_idle_mem" "$N" "$TMP/tls_idle"
	exit
fi
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
	-subj /CN=localhost -keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>/dev/null

kb() { awk -v k="$1" '$1 == k":" {print $2}' "$2"; }

# measure NAME BACKEND CLIENT-COMMAND...: the server's RSS per connection.
measure() {
	local name=$1 backend=$2
	shift 2
	if [ "$name" = tls ]; then
		"$BUILD/examples/tls_echo" --cert "$TMP/cert.pem" --key "$TMP/key.pem" --port 0 \
			--backend "$backend" >"$TMP/server" 2>&1 &
	else
		"$BUILD/examples/echo_server" --port 0 --backend "$backend" >"$TMP/server" 2>&1 &
	fi
	local server=$!
	PIDS=("$server")
	for _ in $(seq 100); do grep -q listening "$TMP/server" && break; sleep 0.1; done
	local port rss0 rss1 half=$(((N + 1) / 2))
	port=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$TMP/server")
	sleep 0.5
	rss0=$(kb VmRSS /proc/$server/status)
	for k in 1 2; do
		if [ "$name" = tls ]; then
			"$TMP/tls_idle" --port "$port" --conns "$half" --hold-seconds 120 \
				>"$TMP/client$k" 2>&1 &
		else
			"$BUILD/examples/echo_load" --port "$port" --idle "$half" --hold-seconds 120 \
				>"$TMP/client$k" 2>&1 &
		fi
		PIDS+=($!)
	done
	for _ in $(seq 1200); do
		[ "$(grep -l 'connections open' "$TMP"/client* 2>/dev/null | wc -l)" = 2 ] && break
		sleep 0.1
	done
	sleep 2
	rss1=$(kb VmRSS /proc/$server/status)
	printf '%-9s %-5s %6d conns  server RSS +%7d KiB = %5d B/conn\n' "$backend" "$name" \
		$((2 * half)) $((rss1 - rss0)) $(((rss1 - rss0) * 1024 / (2 * half)))
	kill "${PIDS[@]:1}" 2>/dev/null || true
	wait "${PIDS[@]:1}" 2>/dev/null || true
	kill -INT "$server"
	wait "$server" 2>/dev/null || true
	PIDS=()
}

for b in "${BACKENDS[@]}"; do
	measure plain "$b"
	measure tls "$b"
done
