#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# fuzz.sh [SECONDS] [BACKEND...] - build the libFuzzer harness (fuzz/) with
# clang, ASan and UBSan, and run it for SECONDS (default 30) on each backend
# (default: epoll, io_uring when liburing is there, with its other two ways
# of serving pool reads as io_uring-recv and io_uring-poll
# (PROACT_URING_POOL_READ), and kqueue over the project's kevent test
# double, built in <build dir>-kqueue). Exits non-zero if
# an input crashed or failed a check; the input is saved in
# <build dir>/artifacts-<backend>/ and replays with
#   PROACT_BACKEND=<backend> <build dir>/fuzz/proact_fuzz <input>
#
# libFuzzer works on a copy of fuzz/corpus in <build dir>/corpus-<backend>,
# which keeps what it found between local runs; fuzz/corpus is never written.
# PROACT_FUZZ_DIR overrides the build directory (default build/fuzz).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${PROACT_FUZZ_DIR:-build/fuzz}
secs=${1:-30}
[ $# -gt 0 ] && shift
backends=("$@")
if [ ${#backends[@]} -eq 0 ]; then
	backends=(epoll)
	pkg-config --exists 'liburing >= 2.3' && backends+=(io_uring io_uring-recv io_uring-poll)
	[ "$(uname -s)" = Linux ] && backends+=(kqueue)
fi
jobs=$(nproc 2>/dev/null || echo 2)

# The harness for a backend: kqueue on Linux is built over the test double.
build_for() {
	local b=$1 out=$dir extra=()
	if [ "$b" = kqueue ] && [ "$(uname -s)" = Linux ]; then
		out=$dir-kqueue
		extra=(-DPROACT_KQUEUE_DOUBLE=ON)
	fi
	cmake -S . -B "$out" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
		-DPROACT_FUZZ=ON -DPROACT_SANITIZE=ON -DPROACT_TESTS=OFF -DPROACT_EXAMPLES=OFF \
		"${extra[@]}" >/dev/null
	cmake --build "$out" -j"$jobs" --target proact_fuzz >&2
	echo "$out"
}

status=0
for b in "${backends[@]}"; do
	bdir=$(build_for "${b%%-*}")
	mode=""
	[ "$b" = "${b%%-*}" ] || mode=${b#*-} # io_uring-recv: PROACT_URING_POOL_READ=recv
	work="$dir/corpus-$b"
	artifacts="$dir/artifacts-$b"
	mkdir -p "$work" "$artifacts"
	cp fuzz/corpus/* "$work/"
	echo "== fuzz: $b, ${secs}s =="
	# -timeout: one input runs in well under a second; 25 s means a hang.
	# libFuzzer's progress lines go to a log; the summary and any failure show.
	log="$dir/fuzz-$b.log"
	if PROACT_BACKEND=${b%%-*} PROACT_URING_POOL_READ=$mode ASAN_OPTIONS=detect_leaks=1 \
		"$bdir/fuzz/proact_fuzz" \
		-max_total_time="$secs" -timeout=25 -max_len=512 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix="$artifacts/" "$work" >"$log" 2>&1; then
		grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$log" || true
		grep -E ' cov: ' "$log" | tail -n 1 || true
	else
		tail -n 60 "$log" >&2
		echo "fuzz: $b failed; the input is in $artifacts/, the log in $log; replay:" \
			"PROACT_BACKEND=${b%%-*} PROACT_URING_POOL_READ=$mode $bdir/fuzz/proact_fuzz INPUT" >&2
		status=1
	fi
done
exit $status
