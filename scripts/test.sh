#!/usr/bin/env bash
# Builds and runs the whole test suite: every test program on every backend
# this machine has, first in a normal build, then under ASan+UBSan.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
jobs=$(nproc 2>/dev/null || echo 2)

run_suite() {
	local dir=$1
	shift
	local cmake_args=() ctest_args=()
	while [ $# -gt 0 ] && [ "$1" != "--" ]; do
		cmake_args+=("$1")
		shift
	done
	[ $# -gt 0 ] && shift
	ctest_args=("$@")
	cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Debug "${cmake_args[@]}" >/dev/null
	cmake --build "$dir" -j"$jobs"
	ctest --test-dir "$dir" --output-on-failure -j"$jobs" "${ctest_args[@]}"
}

echo "== tests (Debug) =="
run_suite build/test -DPROACT_FAULT_INJECTION=ON
echo "== tests (ASan+UBSan) =="
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	run_suite build/asan -DPROACT_SANITIZE=ON -DPROACT_FAULT_INJECTION=ON
echo "== threaded tests (TSan) =="
# The threaded tests again under ThreadSanitizer (misuse: calls from three
# threads while the watcher shuts down).
TSAN_OPTIONS=halt_on_error=1 run_suite build/tsan -DPROACT_TSAN=ON -DPROACT_EXAMPLES=OFF \
	-- -R 'threads|shutdown|basic|misuse'
echo "== fuzz smoke (libFuzzer, 30 s per backend) =="
bash scripts/fuzz.sh 30
echo "== benchmark smoke (bench/run.sh --quick: every scenario once, no thresholds) =="
# Fails only if a load run fails, which includes any echo that differs from
# what was sent; the figures go to build/bench-smoke, not bench/results.
bash bench/run.sh --quick --out build/bench-smoke
echo "== all tests passed =="
