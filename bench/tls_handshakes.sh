#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tls_handshakes.sh - new TLS 1.3 handshakes per second, server pinned to one
# core: examples/tls_echo against nginx (TLS 1.3, one
# worker, session tickets at OpenSSL's default as in tls_echo), the same
# P-256 certificate. The clients: two `openssl s_time -new` (a full
# handshake per connection, no resumption) at once on the other core; the
# figure is their connections over real time, added. s_time is serial and
# spends about as much CPU per handshake as a server, so on two cores the
# clients are the limit as much as the server: compare the rows, not the
# absolute figures.
#
#   bench/tls_handshakes.sh [SECONDS] [BACKEND]     (defaults: 10, epoll)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
BACKEND=${2:-epoll}
BUILD=build/tls-release
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DPROACT_TESTS=OFF >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target tls_echo >/dev/null
TMP=$(mktemp -d)
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; rm -rf "$TMP"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
	-subj /CN=localhost -keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>/dev/null
SERVER_CPU=1
CLIENT_CPU=0

rate() { # rate NAME PORT: handshakes per second of two s_time clients
	for k in 1 2; do
		taskset -c $CLIENT_CPU openssl s_time -connect "127.0.0.1:$2" -new -time "$SECS" \
			-tls1_3 >"$TMP/s_time$k" 2>&1 &
	done
	sleep "$SECS"
	for _ in $(seq 50); do
		[ "$(grep -l 'real seconds' "$TMP"/s_time* | wc -l)" = 2 ] && break
		sleep 0.2
	done
	awk -v name="$1" '/real seconds/ { n += $1; t = $4 > t ? $4 : t }
		END { if (t > 0) printf "%-16s %6.0f handshakes/s\n", name, n / t;
		      else printf "%-16s failed\n", name }' "$TMP"/s_time*
	rm -f "$TMP"/s_time*
}

wait_port() { for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done; }

taskset -c $SERVER_CPU "$BUILD/examples/tls_echo" --cert "$TMP/cert.pem" --key "$TMP/key.pem" \
	--port 0 --backend "$BACKEND" >"$TMP/tls_echo" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do grep -q listening "$TMP/tls_echo" && break; sleep 0.1; done
rate "tls_echo/$BACKEND" "$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$TMP/tls_echo")"

if command -v nginx >/dev/null; then
	port=$((20000 + RANDOM % 20000))
	mkdir -p "$TMP/nginx/logs"
	cat >"$TMP/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/logs/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    server {
        listen 127.0.0.1:$port ssl;
        ssl_certificate $TMP/cert.pem;
        ssl_certificate_key $TMP/key.pem;
        ssl_protocols TLSv1.3;
        location / { return 200 "hello\n"; }
    }
}
CONF
	taskset -c $SERVER_CPU nginx -p "$TMP/nginx" -c "$TMP/nginx.conf" >/dev/null 2>&1 &
	PIDS+=($!)
	wait_port "$port"
	rate "nginx" "$port"
fi
