#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Builds and runs the whole test suite: every test program on every backend
# this machine has, first in a normal build, then under ASan+UBSan, the
# threaded ones under TSan. The kqueue backend runs here too, in builds of
# its own over the project's kevent test double (tests/kqueue/): such a
# build stands in for a BSD (no Linux backend, a strict POSIX core).
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
	cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Debug -DPROACT_FAULT_INJECTION=ON \
		"${cmake_args[@]}" >/dev/null
	cmake --build "$dir" -j"$jobs"
	ctest --test-dir "$dir" --output-on-failure -j"$jobs" "${ctest_args[@]}"
}

kqueue=(-DPROACT_KQUEUE_DOUBLE=ON)
threaded='threads|shutdown|basic|misuse|kevent|timer|stats'

echo "== tests (Debug) =="
run_suite build/test
echo "== tests, kqueue over the kevent test double (Debug) =="
run_suite build/test-kqueue "${kqueue[@]}"
echo "== echo server on kqueue (test double): thousands of connections, every byte checked =="
BUILD_DIR=build/demo-kqueue DEMO_BACKEND=kqueue DEMO_CMAKE_ARGS="${kqueue[*]}" DEMO_IDLE=0 \
	DEMO_CONNS=4000 DEMO_MSGS=25 \
	bash scripts/demo.sh
echo "== tests (ASan+UBSan) =="
export ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1
run_suite build/asan -DPROACT_SANITIZE=ON
echo "== tests, kqueue over the kevent test double (ASan+UBSan) =="
run_suite build/asan-kqueue -DPROACT_SANITIZE=ON "${kqueue[@]}"
unset ASAN_OPTIONS UBSAN_OPTIONS
echo "== threaded tests (TSan) =="
# The threaded tests again under ThreadSanitizer (misuse: calls from three
# threads while the watcher shuts down). The kqueue build wakes its waiter
# through the self-pipe here, the path of the platforms without EVFILT_USER.
export TSAN_OPTIONS=halt_on_error=1
run_suite build/tsan -DPROACT_TSAN=ON -DPROACT_EXAMPLES=OFF -- -R "$threaded"
run_suite build/tsan-kqueue -DPROACT_TSAN=ON -DPROACT_EXAMPLES=OFF "${kqueue[@]}" \
	-DPROACT_KQUEUE_WAKE_PIPE=ON -- -R "$threaded"
unset TSAN_OPTIONS
echo "== fuzz smoke (libFuzzer, 30 s per backend and io_uring pool-read way) =="
bash scripts/fuzz.sh 30
echo "== manual pages: one per public function, as the headers declare them =="
bash scripts/man-check.sh
echo "== ABI: the shared libraries against the last release's dumps (abi/) =="
bash scripts/abi-check.sh
echo "== the installed package: a program built with find_package(proact) and with pkg-config =="
bash scripts/package-test.sh
echo "== other targets: i386, aarch64, s390x (the suite), musl (the echo server under load), macOS (compiled and linked) =="
# The whole suite on each Linux target, under qemu-user where this kernel
# cannot run the target's programs (docs/PORTABILITY.md).
bash scripts/cross.sh --skip-unavailable all
echo "== Debian packages: dpkg-buildpackage, lintian, hardening-check (scripts/deb.sh) =="
bash scripts/deb.sh
echo "== benchmark smoke (bench/run.sh --quick: every scenario once, no thresholds) =="
# Fails only if a load run fails, which includes any echo that differs from
# what was sent; the figures go to build/bench-smoke, not bench/results.
bash bench/run.sh --quick --out build/bench-smoke
bash bench/server_cpu.sh 1 100 20 # the CPU-per-round-trip script, once, small
echo "== all tests passed =="
