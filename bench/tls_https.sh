#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tls_https.sh - HTTPS keep-alive requests per second, and the server's CPU
# time per request: examples/http_server in its HTTPS mode (epoll and
# io_uring) against nginx, TLS 1.3 only, the same P-256 certificate and the
# same "/" body ("Hello, World!\n", text/plain). nginx: one process
# (master_process off, so that its CPU is one process's), access_log off,
# keep-alive with no request limit, as in run.sh's http scenario. Server
# pinned to core 0, `wrk -t1 -cCONNS` to core 1, over loopback; each run a
# fresh server, a 1 s warm-up, then SECONDS measured; servers alternating
# run by run. CPU per request from /proc/PID/stat (utime + stime) over the
# measured run. Prints each run, then the medians, for each connection count
# (a fresh server for each count too). wrk opens its connections at the
# start of the measured run, so their handshakes are in its CPU figure: at
# 1,000 connections give it 10 s or more.
#
#   bench/tls_https.sh [SECONDS] [RUNS] [CONNS...]  (defaults: 10, 3, 100 1000)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
RUNS=${2:-3}
shift 2 || shift $# || true
CONNS=("$@")
[ ${#CONNS[@]} -gt 0 ] || CONNS=(100 1000)
BUILD=build/tls-release
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DPROACT_TESTS=OFF >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target http_server >/dev/null
command -v wrk >/dev/null || { echo "tls_https.sh: wrk is not installed" >&2; exit 1; }
NGINX=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)
TMP=$(mktemp -d)
SPID=""
trap '[ -n "$SPID" ] && kill "$SPID" 2>/dev/null; rm -rf "$TMP"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
	-subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 \
	-keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>/dev/null
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
CLK=$(getconf CLK_TCK)

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
wait_port() { for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done; }

# start NAME: one server on core 0; sets SPID and PORT.
start() {
	case $1 in
	nginx)
		PORT=$((20000 + RANDOM % 20000))
		mkdir -p "$TMP/nginx/tmp"
		cat >"$TMP/nginx/nginx.conf" <<CONF
daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile 8192;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 4096; }
http {
	access_log off;
	tcp_nodelay on;
	keepalive_timeout 60s;
	keepalive_requests 1000000;
	client_body_temp_path $TMP/nginx/tmp;
	proxy_temp_path $TMP/nginx/tmp;
	fastcgi_temp_path $TMP/nginx/tmp;
	uwsgi_temp_path $TMP/nginx/tmp;
	scgi_temp_path $TMP/nginx/tmp;
	server {
		listen 127.0.0.1:$PORT ssl;
		ssl_certificate $TMP/cert.pem;
		ssl_certificate_key $TMP/key.pem;
		ssl_protocols TLSv1.3;
		location = / { default_type text/plain; return 200 "Hello, World!\n"; }
	}
}
CONF
		taskset -c 0 "$NGINX" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" \
			-e "$TMP/nginx/error.log" >/dev/null 2>&1 &
		SPID=$!
		;;
	proact-*)
		local backend=epoll
		[ "$1" = proact-uring ] && backend=io_uring
		taskset -c 0 "$BUILD/examples/http_server" --backend "$backend" --port 0 \
			--cert "$TMP/cert.pem" --key "$TMP/key.pem" >"$TMP/server.out" 2>&1 &
		SPID=$!
		for _ in $(seq 100); do grep -q listening "$TMP/server.out" && break; sleep 0.1; done
		PORT=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$TMP/server.out")
		;;
	esac
	wait_port "$PORT"
}

SERVERS=(proact-epoll proact-uring)
[ -x "$NGINX" ] && SERVERS+=(nginx)
echo "server conns run req/s cpu_us_per_req" >"$TMP/results"
echo "wrk -t1 -cCONNS -d${SECS}s https://127.0.0.1:PORT/ (core 1), server on core 0, TLS 1.3"
for conns in "${CONNS[@]}"; do
	for run in $(seq "$RUNS"); do
		for s in "${SERVERS[@]}"; do
			start "$s"
			if ! kill -0 "$SPID" 2>/dev/null; then # nginx: its random port was taken
				echo "$s run $run: the server did not start" >&2
				continue
			fi
			url=https://127.0.0.1:$PORT/
			taskset -c 1 wrk -t1 -c"$conns" -d1s "$url" >/dev/null 2>&1 || true
			t0=$(cpu_ticks "$SPID")
			taskset -c 1 wrk -t1 -c"$conns" -d"${SECS}s" "$url" >"$TMP/wrk.out" 2>&1 || true
			t1=$(cpu_ticks "$SPID")
			kill "$SPID" 2>/dev/null || true
			wait "$SPID" 2>/dev/null || true
			SPID=""
			if grep -q "Non-2xx\|Socket errors" "$TMP/wrk.out"; then
				echo "$s -c$conns run $run: wrk reported errors:" >&2
				cat "$TMP/wrk.out" >&2
			fi
			awk -v s="$s" -v conns="$conns" -v run="$run" -v ticks=$((t1 - t0)) -v clk="$CLK" '
				/ requests in / { n = $1 }
				/^Requests\/sec:/ { rps = $2 }
				END { printf "%s %d %d %.0f %.2f\n", s, conns, run, rps, n ? ticks / clk / n * 1e6 : 0 }' \
				"$TMP/wrk.out" | tee -a "$TMP/results"
		done
	done
done
echo "medians of $RUNS runs:"
for conns in "${CONNS[@]}"; do
	for s in "${SERVERS[@]}"; do
		awk -v s="$s" -v conns="$conns" '$1 == s && $2 == conns { r[++n] = $4; c[n] = $5 }
			function med(a, n,  i, j, t) {
				for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
				return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
			END { if (n) printf "%-14s -c%-5d %8.0f req/s  %6.2f us CPU per request\n", s, conns, med(r, n), med(c, n) }' \
			"$TMP/results"
	done
done
