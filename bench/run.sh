#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# run.sh - every performance claim of proact from one command.
#
#   bash bench/run.sh            full run: 5 runs per server, every scenario
#   bash bench/run.sh --quick    one run, smaller sizes (under 2 minutes)
#
# Options (after --quick or alone):
#   --runs N          runs per server and scenario (default 5, quick 1)
#   --scenarios LIST  comma-separated subset of:
#                     echo,stream,conn,pingpong,idle,push,callgrind,http
#                     (http: the HTTP example against nginx under wrk, each
#                     pinned to a core of its own; see its block below)
#                     ,resp (the Redis-protocol example against redis-server
#                     under redis-benchmark, pinned the same way)
#   --servers LIST    comma-separated subset of:
#                     proact-epoll,proact-uring,proact-epoll-t2,proact-uring-t2,
#                     epoll,uring,libuv,libuv-pool,libevent
#                     (the -t2 servers run proact_echo with 2 threads, one
#                     watcher and one SO_REUSEPORT listener each; they sit out
#                     push, which needs one thread, and callgrind, see below;
#                     the stream scenario also measures its own "ceiling" row,
#                     whatever this list says)
#   --out DIR         where the results go (default bench/results/<quick|full>;
#                     a partial run elsewhere keeps the published results)
#   --build DIR       build directory (default build/bench), e.g. to leave
#                     that one alone while someone else uses it
#
# Builds Release with -DPROACT_BENCH=ON into build/bench (or --build), then
# runs each scenario against every server, alternating servers run by run
# (A B C A B C ...) so that slow drifts of this shared machine spread over all
# of them.
# Each run gets a fresh server on a fresh port. Results go to
# bench/results/<quick|full>/: raw.csv (every figure of every run),
# summary.csv and summary.md (medians, min..max, ratio to raw epoll) and one
# SVG bar chart per scenario. Nothing here asserts timing.
#
# Every load is bounded (loadgen --timeout, plus `timeout` around it) and
# every process started here is killed on exit, also on failure or Ctrl-C.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ARGS="$*"
MODE=full
RUNS=""
OUT_ARG=""
BUILD_ARG=""
SCENARIOS="echo,stream,conn,pingpong,idle,push,callgrind,http,resp"
SERVERS="proact-epoll,proact-uring,proact-epoll-t2,proact-uring-t2,epoll,uring,libuv,libuv-pool,libevent"
while [ $# -gt 0 ]; do
	case $1 in
	--quick) MODE=quick ;;
	--runs) RUNS=$2; shift ;;
	--scenarios) SCENARIOS=$2; shift ;;
	--servers) SERVERS=$2; shift ;;
	--out) OUT_ARG=$2; shift ;;
	--build) BUILD_ARG=$2; shift ;;
	*) echo "usage: bash bench/run.sh [--quick] [--runs N] [--scenarios LIST] [--servers LIST] [--out DIR] [--build DIR]" >&2
	   exit 2 ;;
	esac
	shift
done

if [ "$MODE" = quick ]; then
	RUNS=${RUNS:-1}
	ECHO_SECS=1         # echo-64k seconds per run (after 0.2 s warm-up)
	STREAM_BYTES=$((256 << 20)) # stream-64k bytes per run, each way
	CONN_SIZES="1024 4096 8192 16384"
	PP_CONNS="1000"     # ping-pong connection counts
	PP_SECS=1
	IDLE_CONNS="1000 10000"
	PUSHES=3
	CG_ROUNDS="500 2500" # callgrind: two lengths, the difference is per round trip
else
	RUNS=${RUNS:-5}
	ECHO_SECS=3
	STREAM_BYTES=$((1 << 30))
	CONN_SIZES="1024 2048 4096 8192 16384"
	PP_CONNS="1000 10000"
	PP_SECS=3
	IDLE_CONNS="1000 10000 19000"
	PUSHES=5
	CG_ROUNDS="2000 22000"
fi

BUILD=${BUILD_ARG:-$ROOT/build/bench}
BIN=$BUILD/bench
OUT=${OUT_ARG:-$ROOT/bench/results/$MODE}
TMP=$(mktemp -d /tmp/proact-bench.XXXXXX)
PIDS=()

cleanup() {
	local p
	for p in "${PIDS[@]}"; do
		kill -TERM "$p" 2>/dev/null || true
	done
	sleep 0.2
	for p in "${PIDS[@]}"; do
		kill -KILL "$p" 2>/dev/null || true
	done
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Only processes still running are on PIDS: a pid that was waited for may
# belong to someone else by the time the trap runs.
forget() {
	local p keep=()
	for p in "${PIDS[@]}"; do
		[ "$p" = "$1" ] || keep+=("$p")
	done
	PIDS=("${keep[@]}")
}

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# ---- dependencies and build ------------------------------------------------

# install_deps [PACKAGE...]: the build's packages, and those a scenario needs.
install_deps() {
	local missing="" p
	command -v dpkg >/dev/null 2>&1 || return 0
	local arch
	arch=$(dpkg --print-architecture)
	for p in cmake pkg-config gcc liburing-dev libuv1-dev libevent-dev valgrind python3 "$@"; do
		# for this machine's architecture: a multiarch name may have several
		dpkg-query -W -f='${db:Status-Status} ${Architecture}\n' "$p" 2>/dev/null |
			grep -Eq "^installed ($arch|all)\$" || missing="$missing $p"
	done
	[ -z "$missing" ] && return 0
	local sudo=""
	[ "$(id -u)" -ne 0 ] && sudo=sudo
	log "installing:$missing"
	# a failed index (a mirror in mid-sync) must not stop the install
	$sudo apt-get update -qq || log "apt-get update reported errors; installing anyway"
	# shellcheck disable=SC2086
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing
}

SCENARIO_PACKAGES=()
# http: nginx (the light build, unless an nginx is there already) and wrk
if [[ ",$SCENARIOS," == *",http,"* ]]; then
	command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || SCENARIO_PACKAGES+=(nginx-light)
	SCENARIO_PACKAGES+=(wrk util-linux) # util-linux: taskset
fi
# resp: redis-server to compare with, redis-benchmark (redis-tools) to drive
if [[ ",$SCENARIOS," == *",resp,"* ]]; then
	SCENARIO_PACKAGES+=(redis-server redis-tools util-linux)
fi
install_deps ${SCENARIO_PACKAGES[@]+"${SCENARIO_PACKAGES[@]}"}
# The commit built, taken now: the tree may move during a long run.
BUILT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ "$BUILT" != unknown ] && ! git -C "$ROOT" diff --quiet HEAD -- src include CMakeLists.txt ':(glob)bench/**/*.[ch]' 2>/dev/null; then
	BUILT="$BUILT with local changes"
fi
log "building Release into ${BUILD#"$ROOT"/}"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DPROACT_BENCH=ON \
	-DPROACT_TESTS=OFF -DPROACT_EXAMPLES=OFF >"$TMP/cmake.log" 2>&1 ||
	{ cat "$TMP/cmake.log" >&2; exit 1; }
cmake --build "$BUILD" -j"$(nproc)" >"$TMP/build.log" 2>&1 ||
	{ cat "$TMP/build.log" >&2; exit 1; }

server_cmd() {
	case $1 in
	proact-epoll) echo "$BIN/proact_echo --backend epoll" ;;
	proact-uring) echo "$BIN/proact_echo --backend io_uring" ;;
	proact-epoll-t2) echo "$BIN/proact_echo --backend epoll --threads 2" ;;
	proact-uring-t2) echo "$BIN/proact_echo --backend io_uring --threads 2" ;;
	epoll) echo "$BIN/epoll_echo" ;;
	uring) echo "$BIN/uring_echo" ;;
	libuv) echo "$BIN/uv_echo" ;;
	libuv-pool) echo "$BIN/uv_echo --pool" ;;
	libevent) echo "$BIN/event_echo" ;;
	*) return 1 ;;
	esac
}

# ---- servers ---------------------------------------------------------------

SPID=""
PORT=""
# start_server NAME [extra args...]; WRAP (e.g. valgrind) is prepended.
start_server() {
	local name=$1
	shift
	local cmd
	cmd=$(server_cmd "$name")
	# shellcheck disable=SC2086
	start_cmd "$name" $cmd --port 0 "$@"
}

# start_cmd LABEL COMMAND...: runs COMMAND (WRAP prepended) and waits for its
# "listening on 127.0.0.1:PORT" line; sets SPID and PORT.
start_cmd() {
	local name=$1
	shift
	# shellcheck disable=SC2086
	${WRAP:-} "$@" >"$TMP/server.out" 2>"$TMP/server.err" &
	SPID=$!
	PIDS+=("$SPID")
	for _ in $(seq 300); do
		# Only a whole line: a read can see the server's write half done.
		if grep -q '^listening on' "$TMP/server.out" 2>/dev/null &&
			[ -z "$(tail -c 1 "$TMP/server.out")" ]; then
			PORT=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$TMP/server.out")
			[ -n "$PORT" ] && [ "$PORT" != 0 ] && return 0
			log "server $name: bad listening line: $(head -c 200 "$TMP/server.out")"
			break
		fi
		kill -0 "$SPID" 2>/dev/null || break
		sleep 0.05
	done
	log "server $name did not start: $(tail -2 "$TMP/server.err" | tr '\n' ' ')"
	stop_server
	return 1
}

stop_server() {
	[ -n "$SPID" ] || return 0
	kill -TERM "$SPID" 2>/dev/null || true
	for _ in $(seq 200); do
		kill -0 "$SPID" 2>/dev/null || break
		sleep 0.05
	done
	kill -KILL "$SPID" 2>/dev/null || true
	wait "$SPID" 2>/dev/null || true
	forget "$SPID"
	SPID=""
}

# For servers that take no port 0 and print no "listening on" line:
# free_port prints a port nobody listens on now; wait_port NAME LOG...
# waits until the server (SPID) accepts connections on PORT, or fails after
# printing the end of its logs.
free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() {
	local name=$1
	shift
	for _ in $(seq 300); do
		(exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
		kill -0 "$SPID" 2>/dev/null || break
		sleep 0.05
	done
	log "$name did not start: $(tail -2 "$@" 2>/dev/null | tr '\n' ' ')"
	stop_server
	return 1
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
now_s() { date +%s.%N; }
kib() { awk -v k="$1" '$1 == k":" {print $2}' "$2"; }
CLK=$(getconf CLK_TCK)

RAW=$TMP/raw.csv
echo "scenario,server,run,metric,value" >"$RAW"
FAILURES=0
record() { echo "$1,$2,$3,$4,$5" >>"$RAW"; }

# load SCENARIO SERVER RUN LIMIT_S loadgen-args...: one loadgen run against the
# running server; records every number of its result line and the server's
# CPU use (cores) during it. With no server running (SPID empty: the stream
# ceiling, where loadgen is its own echo) only the result line is recorded.
load() {
	local sc=$1 srv=$2 run=$3 limit=$4
	shift 4
	local c0 t0 c1 t1 port=()
	[ -n "$SPID" ] && port=(--port "$PORT")
	c0=$(cpu_ticks "$SPID")
	t0=$(now_s)
	if ! timeout "$limit" "$BIN/loadgen" ${port[@]+"${port[@]}"} --timeout "$limit" "$@" \
		>"$TMP/load.out" 2>"$TMP/load.err"; then
		log "FAILED: $sc $srv run $run: $(head -3 "$TMP/load.err" | tr '\n' ' ')"
		FAILURES=$((FAILURES + 1))
		return 1
	fi
	c1=$(cpu_ticks "$SPID")
	t1=$(now_s)
	local kv kvs
	read -r -a kvs < <(grep '^result' "$TMP/load.out")
	for kv in "${kvs[@]}"; do
		case $kv in
		*=*) [[ ${kv#*=} =~ ^[0-9.]+$ ]] && record "$sc" "$srv" "$run" "${kv%%=*}" "${kv#*=}" ;;
		esac
	done
	[ -n "$SPID" ] && record "$sc" "$srv" "$run" server_cpu \
		"$(awk -v d=$((c1 - c0)) -v k="$CLK" -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", d / k / (b - a)}')"
	return 0
}

IFS=, read -r -a SRV_LIST <<<"$SERVERS"
# Keep only servers that were built and start here (io_uring may be refused).
AVAILABLE=()
for s in "${SRV_LIST[@]}"; do
	cmd=$(server_cmd "$s") || { log "unknown server $s"; exit 2; }
	if [ ! -x "${cmd%% *}" ]; then
		log "skipping $s: not built (library missing?)"
		continue
	fi
	if start_server "$s"; then
		AVAILABLE+=("$s")
		stop_server
	else
		log "skipping $s: does not start here"
	fi
done
SRV_LIST=("${AVAILABLE[@]}")
has() { [[ ",$SCENARIOS," == *",$1,"* ]]; }
log "mode $MODE, $RUNS run(s), servers: ${SRV_LIST[*]}"

# ---- scenarios -------------------------------------------------------------

if has echo; then
	log "echo-64k: one connection, 64 KiB stop-and-wait, ${ECHO_SECS}s per run"
	for run in $(seq "$RUNS"); do
		for s in "${SRV_LIST[@]}"; do
			start_server "$s" || continue
			load echo-64k "$s" "$run" 30 --mode echo --conns 1 --size 65536 \
				--warmup 0.2 --duration "$ECHO_SECS" || true
			stop_server
		done
	done
fi

if has stream; then
	log "stream-64k: one connection, $((STREAM_BYTES >> 20)) MiB in 64 KiB writes, echoed; and the ceiling"
	for run in $(seq "$RUNS"); do
		# The ceiling: loadgen's own blocking echo thread, no server (see
		# bench/README.md for why this and not a one-way transfer).
		load stream-64k ceiling "$run" 60 --mode ceiling --size 65536 \
			--bytes "$STREAM_BYTES" || true
		for s in "${SRV_LIST[@]}"; do
			start_server "$s" || continue
			load stream-64k "$s" "$run" 60 --mode stream --size 65536 \
				--bytes "$STREAM_BYTES" || true
			stop_server
		done
	done
fi

if has conn; then
	log "conn: N connections each echo 1 KiB, N in $CONN_SIZES (2 client processes)"
	for run in $(seq "$RUNS"); do
		for n in $CONN_SIZES; do
			for s in "${SRV_LIST[@]}"; do
				start_server "$s" || continue
				load "conn-$n" "$s" "$run" 30 --mode conn --conns "$n" --size 1024 \
					--procs 2 --inflight 500 || true
				stop_server
			done
		done
	done
fi

if has pingpong; then
	for n in $PP_CONNS; do
		log "ping-pong: $n connections, 64 B, ${PP_SECS}s per run"
		for run in $(seq "$RUNS"); do
			for s in "${SRV_LIST[@]}"; do
				start_server "$s" || continue
				load "pingpong-$n" "$s" "$run" 60 --mode echo --conns "$n" --size 64 \
					--warmup 0.3 --duration "$PP_SECS" || true
				stop_server
			done
		done
	done
fi

if has idle; then
	for n in $IDLE_CONNS; do
		log "idle: $n connections, server RSS and kernel memory per connection"
		procs=1
		[ "$n" -gt 9000 ] && procs=2
		for run in $(seq "$RUNS"); do
			for s in "${SRV_LIST[@]}"; do
				start_server "$s" || continue
				sleep 0.3
				rss0=$(kib VmRSS "/proc/$SPID/status")
				cp /proc/meminfo "$TMP/mem0"
				timeout 90 "$BIN/loadgen" --port "$PORT" --mode idle --conns "$n" \
					--procs "$procs" --size 16 --hold 60 --timeout 60 \
					>"$TMP/idle.out" 2>"$TMP/idle.err" &
				lpid=$!
				PIDS+=("$lpid")
				for _ in $(seq 600); do
					grep -q '^ready' "$TMP/idle.out" && break
					kill -0 "$lpid" 2>/dev/null || break
					sleep 0.1
				done
				if grep -q '^ready' "$TMP/idle.out"; then
					sleep 1 # let the server settle (deferred frees, batching)
					rss1=$(kib VmRSS "/proc/$SPID/status")
					cp /proc/meminfo "$TMP/mem1"
					record "idle-$n" "$s" "$run" rss_bytes_per_conn \
						$(((rss1 - rss0) * 1024 / n))
					for k in Slab SUnreclaim; do
						a=$(kib $k "$TMP/mem0")
						b=$(kib $k "$TMP/mem1")
						record "idle-$n" "$s" "$run" "kernel_${k}_bytes_per_conn" \
							$(((b - a) * 1024 / n))
					done
				else
					log "FAILED: idle-$n $s run $run: $(head -3 "$TMP/idle.err" | tr '\n' ' ')"
					FAILURES=$((FAILURES + 1))
				fi
				kill -TERM "$lpid" 2>/dev/null || true
				wait "$lpid" 2>/dev/null || true
				forget "$lpid"
				stop_server
			done
		done
	done
fi

if has push; then
	log "push: one message to each of 10,000 connections, $PUSHES pushes per run"
	for run in $(seq "$RUNS"); do
		for s in "${SRV_LIST[@]}"; do
			# A broadcast reaches one watcher's connections: one thread only.
			[[ $s == *-t2 ]] && continue
			start_server "$s" --push || continue
			load push-10k "$s" "$run" 60 --mode push --conns 10000 --size 64 \
				--pushes "$PUSHES" || true
			stop_server
		done
	done
fi

if has callgrind; then
	if command -v valgrind >/dev/null 2>&1; then
		read -r CG_A CG_B <<<"$CG_ROUNDS"
		log "callgrind: user-space instructions per 64 B round trip ($CG_A vs $CG_B round trips)"
		for s in "${SRV_LIST[@]}"; do
			# Instructions per round trip do not depend on the thread count,
			# and valgrind runs io_uring_enter holding its big lock: a second
			# thread waiting in it starves the first.
			[[ $s == *-t2 ]] && continue
			IR_A=""
			IR_B=""
			for n in $CG_A $CG_B; do
				rm -f "$TMP/cg.out"
				WRAP="valgrind --tool=callgrind --callgrind-out-file=$TMP/cg.out"
				start_server "$s" || { WRAP=""; continue; }
				WRAP=""
				load "callgrind-$n" "$s" 1 60 --mode echo --conns 1 --size 64 \
					--rounds "$n" || true
				stop_server
				ir=$(sed -n 's/^totals: *\([0-9]*\).*/\1/p' "$TMP/cg.out" 2>/dev/null || true)
				if [ "$n" = "$CG_A" ]; then IR_A=$ir; else IR_B=$ir; fi
			done
			if [ -n "$IR_A" ] && [ -n "$IR_B" ]; then
				record callgrind "$s" 1 instructions_per_roundtrip \
					$(((IR_B - IR_A) / (CG_B - CG_A)))
			else
				log "FAILED: callgrind $s: $(tail -3 "$TMP/server.err" | tr "\n" " ")"
				FAILURES=$((FAILURES + 1))
			fi
		done
	else
		log "callgrind: valgrind not installed, skipped"
	fi
fi

# ---- http: the HTTP example against nginx, under wrk -----------------------
# Server pinned to core 0, wrk (one thread) to core 1, over loopback. Each
# configuration runs every server in turn, alternating run by run: the HTTP
# example (proact_http, built from examples/http_server.c like proact_echo)
# on each backend that runs here (proact-epoll, proact-uring, when in
# --servers), and nginx as the reference: one process (master_process off,
# so that its CPU is one process's), access_log off, the same body at "/",
# keep-alive with no request limit (nginx closes after 1,000 by default;
# proact never does), sendfile on for files, no open_file_cache (proact
# opens each file per request too). Configurations: "/" over 100 and 1,000
# connections, a 4 KiB file over 100. Each measured run follows a 1 s
# warm-up; wrk's figures (requests/s, p50/p99 latency, errors) and the
# server's CPU time per request (from /proc/PID/stat) are recorded.

NGINX=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)

# nginx_conf DIR PORT WWW: its configuration, in DIR.
nginx_conf() {
	cat >"$1/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile 8192;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 4096; }
http {
	access_log off;
	sendfile on;
	tcp_nopush on;
	tcp_nodelay on;
	keepalive_timeout 60s;
	keepalive_requests 1000000;
	client_body_temp_path $1/tmp;
	proxy_temp_path $1/tmp;
	fastcgi_temp_path $1/tmp;
	uwsgi_temp_path $1/tmp;
	scgi_temp_path $1/tmp;
	types { text/plain txt; }
	default_type application/octet-stream;
	server {
		listen 127.0.0.1:$2;
		location = / { default_type text/plain; return 200 "Hello, World!\n"; }
		location / { root $3; }
	}
}
EOF
}

# nginx_start DIR WWW: nginx on a free port, pinned to core 0; sets SPID, PORT.
nginx_start() {
	PORT=$(free_port)
	nginx_conf "$1" "$PORT" "$2"
	taskset -c 0 "$NGINX" -p "$1" -c "$1/nginx.conf" -e "$1/error.log" \
		>"$TMP/server.out" 2>"$TMP/server.err" &
	SPID=$!
	PIDS+=("$SPID")
	wait_port nginx "$1/error.log" "$TMP/server.err"
}

# http_start NAME WWW NGINX_DIR: one of the http scenario's servers.
http_start() {
	case $1 in
	nginx) nginx_start "$3" "$2" ;;
	proact-epoll | proact-uring)
		local backend=epoll rc=0
		[ "$1" = proact-uring ] && backend=io_uring
		WRAP="taskset -c 0"
		start_cmd "$1" "$BIN/proact_http" --backend "$backend" --root "$2" --port 0 || rc=1
		WRAP=""
		return $rc
		;;
	esac
}

# wrk_load SCENARIO SERVER RUN CONNS PATH: a warm-up, then a measured wrk
# run against the running server; a run with socket errors or replies other
# than 2xx/3xx counts as failed (its figures are recorded all the same).
wrk_load() {
	local sc=$1 srv=$2 run=$3 conns=$4 url="http://127.0.0.1:$PORT$5" c0 t0 c1 t1
	taskset -c 1 timeout 60 wrk -t1 -c"$conns" -d1s "$url" >/dev/null 2>&1 || true
	c0=$(cpu_ticks "$SPID")
	t0=$(now_s)
	if ! taskset -c 1 timeout $((HTTP_SECS + 60)) wrk -t1 -c"$conns" -d"${HTTP_SECS}s" \
		--latency "$url" >"$TMP/wrk.out" 2>&1; then
		log "FAILED: $sc $srv run $run: $(tail -3 "$TMP/wrk.out" | tr '\n' ' ')"
		FAILURES=$((FAILURES + 1))
		return 1
	fi
	c1=$(cpu_ticks "$SPID")
	t1=$(now_s)
	local rps p50 p99 n errors
	read -r rps p50 p99 n errors < <(awk '
		function us(v) { return v ~ /us$/ ? v + 0 : v ~ /ms$/ ? v * 1000 : v ~ /s$/ ? v * 1e6 : v + 0 }
		$1 == "50%" { p50 = us($2) }
		$1 == "99%" { p99 = us($2) }
		/ requests in / { n = $1 }
		/^Requests\/sec:/ { rps = $2 }
		/^ *Socket errors:/ { gsub(/,/, ""); err += $4 + $6 + $8 + $10 }
		/^ *Non-2xx or 3xx responses:/ { err += $5 }
		END { printf "%s %s %s %s %d\n", rps, p50, p99, n, err }' "$TMP/wrk.out")
	if [ -z "$n" ] || [ "$n" = 0 ]; then
		log "FAILED: $sc $srv run $run: no requests: $(head -5 "$TMP/wrk.out" | tr '\n' ' ')"
		FAILURES=$((FAILURES + 1))
		return 1
	fi
	record "$sc" "$srv" "$run" rps "$rps"
	record "$sc" "$srv" "$run" p50_us "$p50"
	record "$sc" "$srv" "$run" p99_us "$p99"
	record "$sc" "$srv" "$run" errors "$errors"
	record "$sc" "$srv" "$run" server_cpu \
		"$(awk -v d=$((c1 - c0)) -v k="$CLK" -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", d / k / (b - a)}')"
	record "$sc" "$srv" "$run" cpu_us_per_req \
		"$(awk -v d=$((c1 - c0)) -v k="$CLK" -v n="$n" 'BEGIN{printf "%.3f", d / k * 1e6 / n}')"
	if [ "$errors" != 0 ]; then
		log "FAILED: $sc $srv run $run: $errors wrk errors: $(grep -E 'errors|Non-2xx' "$TMP/wrk.out" | tr '\n' ' ')"
		FAILURES=$((FAILURES + 1))
	fi
}

if has http; then
	HTTP_SECS=3
	[ "$MODE" = quick ] && HTTP_SECS=1
	HTTP_LIST=()
	for s in proact-epoll proact-uring; do
		[[ " ${SRV_LIST[*]} " == *" $s "* ]] && HTTP_LIST+=("$s")
	done
	if [ -x "$NGINX" ]; then HTTP_LIST+=(nginx); else log "http: no nginx, proact alone"; fi
	if ! command -v wrk >/dev/null 2>&1 || ! command -v taskset >/dev/null 2>&1 ||
		[ ! -x "$BIN/proact_http" ]; then
		log "http: wrk, taskset or proact_http missing, skipped"
		HTTP_LIST=()
	fi
	ulimit -n "$(ulimit -Hn)" 2>/dev/null || true # wrk opens 1,000 connections
	WWW=$TMP/www
	mkdir -p "$WWW" "$TMP/nginx/tmp"
	awk 'BEGIN { for (i = 0; i < 64; i++) printf "%063d\n", i }' >"$WWW/4k.txt"
	log "http: ${HTTP_LIST[*]}; wrk -t1, ${HTTP_SECS}s per run after a 1 s warm-up, server on core 0, wrk on core 1"
	for cfg in "http-100 100 /" "http-1000 1000 /" "http-file-100 100 /4k.txt"; do
		read -r sc conns path <<<"$cfg"
		for run in $(seq "$RUNS"); do
			for s in ${HTTP_LIST[@]+"${HTTP_LIST[@]}"}; do
				http_start "$s" "$WWW" "$TMP/nginx" || { FAILURES=$((FAILURES + 1)); continue; }
				wrk_load "$sc" "$s" "$run" "$conns" "$path" || true
				stop_server
			done
		done
	done
fi

# ---- resp: the Redis-protocol example against redis-server -----------------
# Server pinned to core 0, redis-benchmark to core 1, over loopback:
# proact_resp (examples/resp_server.c, built like proact_echo) on each
# backend that runs here (proact-epoll, proact-uring, when in --servers),
# and redis-server 7 as Debian ships it (one I/O thread) with nothing saved,
# from an empty directory. For each server, alternating run by run:
# redis-benchmark -c 50 -P 1 and -P 16, one run per test (ping_inline,
# ping_mbulk, set, get: what -t ping,set,get runs), recording ops/s, p50 and
# p99 latency, and the server's CPU time per request (/proc/PID/stat).

# resp_start NAME: one of the resp scenario's servers; sets SPID and PORT.
resp_start() {
	if [ "$1" != redis-server ]; then
		local backend=epoll rc=0
		[ "$1" = proact-uring ] && backend=io_uring
		WRAP="taskset -c 0"
		start_cmd "$1" "$BIN/proact_resp" --backend "$backend" --port 0 || rc=1
		WRAP=""
		return $rc
	fi
	PORT=$(free_port)
	mkdir -p "$TMP/redis"
	(cd "$TMP/redis" && exec taskset -c 0 redis-server --port "$PORT" --bind 127.0.0.1 \
		--save '' --appendonly no --protected-mode no) >"$TMP/server.out" 2>&1 &
	SPID=$!
	PIDS+=("$SPID")
	wait_port redis-server "$TMP/server.out"
}

# children_cpu FILE: CPU seconds of the children waited for so far, from
# the `times` builtin run in this shell (a subshell would count its own).
children_cpu() {
	awk 'NR == 2 { gsub(/[ms]/, " "); print $1 * 60 + $2 + $3 * 60 + $4 }' "$1"
}

# resp_bench SERVER RUN DEPTH TEST N: one redis-benchmark run of N requests
# of TEST at -P DEPTH against the running server; an error reply or a
# missing result counts as failed. Besides the client's figures it records
# the server's CPU time per request and the cores each side used, to show
# which side is the limit.
resp_bench() {
	local srv=$1 run=$2 depth=$3 t=$4 n=$5 c0 c1 t0 t1 line name rps p50 p99
	c0=$(cpu_ticks "$SPID")
	t0=$(now_s)
	times >"$TMP/times0"
	if ! line=$(taskset -c 1 timeout 120 redis-benchmark -p "$PORT" -c 50 -n "$n" \
		-P "$depth" -t "$t" --csv 2>"$TMP/rb.err" | grep -v '^"test"') ||
		grep -qi error "$TMP/rb.err"; then
		log "FAILED: resp-p$depth $srv $t run $run: $(head -3 "$TMP/rb.err" | tr '\n' ' ')"
		FAILURES=$((FAILURES + 1))
		return 1
	fi
	times >"$TMP/times1"
	c1=$(cpu_ticks "$SPID")
	t1=$(now_s)
	# "SET","312500.00","1.946","0.048","1.127","3.567","19.935","20.655"
	IFS=, read -r name rps _ _ p50 _ p99 _ <<<"${line//\"/}"
	name=$(echo "$name" | tr '[:upper:]' '[:lower:]')
	record "resp-p$depth" "$srv" "$run" "${name}_rps" "$rps"
	record "resp-p$depth" "$srv" "$run" "${name}_p50_ms" "$p50"
	record "resp-p$depth" "$srv" "$run" "${name}_p99_ms" "$p99"
	record "resp-p$depth" "$srv" "$run" "${name}_cpu_us" \
		"$(awk -v d=$((c1 - c0)) -v k="$CLK" -v n="$n" 'BEGIN{printf "%.3f", d / k * 1e6 / n}')"
	record "resp-p$depth" "$srv" "$run" "${name}_server_cpu" \
		"$(awk -v d=$((c1 - c0)) -v k="$CLK" -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", d / k / (b - a)}')"
	record "resp-p$depth" "$srv" "$run" "${name}_client_cpu" \
		"$(awk -v a="$(children_cpu "$TMP/times0")" -v b="$(children_cpu "$TMP/times1")" \
			-v s="$t0" -v e="$t1" 'BEGIN{printf "%.2f", (b - a) / (e - s)}')"
}

if has resp; then
	RESP_N1=50000 # requests per run at -P 1, and at -P 16
	RESP_N16=500000
	[ "$MODE" = quick ] && RESP_N1=25000 RESP_N16=250000 # about a second each
	RESP_LIST=()
	for s in proact-epoll proact-uring; do
		[[ " ${SRV_LIST[*]} " == *" $s "* ]] && RESP_LIST+=("$s")
	done
	if command -v redis-server >/dev/null 2>&1; then
		RESP_LIST+=(redis-server)
	else
		log "resp: no redis-server, proact alone"
	fi
	if ! command -v redis-benchmark >/dev/null 2>&1 || ! command -v taskset >/dev/null 2>&1 ||
		[ ! -x "$BIN/proact_resp" ]; then
		log "resp: redis-benchmark, taskset or proact_resp missing, skipped"
		RESP_LIST=()
	fi
	log "resp: ${RESP_LIST[*]}; redis-benchmark -c 50 -P 1 (-n $RESP_N1) and -P 16 (-n $RESP_N16), server on core 0, client on core 1"
	for run in $(seq "$RUNS"); do
		for s in ${RESP_LIST[@]+"${RESP_LIST[@]}"}; do
			resp_start "$s" || { FAILURES=$((FAILURES + 1)); continue; }
			for depth in 1 16; do
				n=$RESP_N1
				[ "$depth" = 16 ] && n=$RESP_N16
				for t in ping_inline ping_mbulk set get; do
					resp_bench "$s" "$run" "$depth" "$t" "$n" || true
				done
			done
			stop_server
		done
	done
fi

# ---- report ----------------------------------------------------------------

mkdir -p "$OUT"
cp "$RAW" "$OUT/raw.csv"
{
	echo "command: bash bench/run.sh${ARGS:+ $ARGS} (runs $RUNS)"
	echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "machine: $(nproc) cores, $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)"
	# shellcheck source=/dev/null
	echo "os: $(. /etc/os-release && echo "$PRETTY_NAME"), kernel $(uname -r)"
	echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
	echo "git: $BUILT"
} >"$OUT/machine.txt"
python3 "$ROOT/bench/report.py" "$OUT"
log "results in ${OUT#"$ROOT"/}: summary.md, summary.csv, raw.csv, *.svg"
if [ "$FAILURES" -gt 0 ]; then
	log "$FAILURES load run(s) failed (see above)"
	exit 1
fi
