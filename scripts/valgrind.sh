#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# valgrind.sh [BACKEND...] - the test suite under valgrind memcheck.
#
# Builds a Debug tree without sanitizers (valgrind and ASan do not mix) and
# runs the ctest tests of the named backends (default: every backend this
# build has) with valgrind in front of the test program. Any memcheck error
# or leak makes that test fail, and the script exits non-zero. On io_uring
# only part of the suite is meaningful under valgrind: see run_backend.
#
# PROACT_VALGRIND_DIR overrides the build directory (default build/valgrind).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${PROACT_VALGRIND_DIR:-build/valgrind}
jobs=$(nproc 2>/dev/null || echo 2)

if ! command -v valgrind >/dev/null 2>&1; then
	echo "valgrind.sh: valgrind is not installed" >&2
	exit 1
fi

# Each element is one argument of the launcher; ctest runs it before the test.
vg=(valgrind --tool=memcheck --error-exitcode=99 --leak-check=full
	--errors-for-leak-kinds=definite,indirect,possible -q)
launcher=$(IFS=';' && echo "${vg[*]}")

# CMake 3.29 added CMAKE_TEST_LAUNCHER; older versions prefix every add_test
# of a built program with CMAKE_CROSSCOMPILING_EMULATOR instead.
ver=$(cmake --version | sed -n 's/^cmake version \([0-9]*\)\.\([0-9]*\).*/\1 \2/p')
read -r major minor <<<"$ver"
if [ "$major" -gt 3 ] || { [ "$major" -eq 3 ] && [ "$minor" -ge 29 ]; }; then
	launcher_var=CMAKE_TEST_LAUNCHER
else
	launcher_var=CMAKE_CROSSCOMPILING_EMULATOR
fi

cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Debug -DPROACT_SANITIZE=OFF -DPROACT_TSAN=OFF \
	-DPROACT_FAULT_INJECTION=ON -DPROACT_EXAMPLES=OFF "-D$launcher_var=$launcher" >/dev/null
cmake --build "$dir" -j"$jobs"

# The soak is left out: under valgrind its client (a forked child, followed
# by valgrind too) checks every byte 20-50 times slower and cannot end its
# connections within the soak's drain bound; ASan runs it in `make test`.
#
# Test programs that need a second thread to run while proact_wait blocks:
# those that start threads.
threaded=$(grep -l pthread_create tests/test_*.c | sed 's|^tests/test_||; s|\.c$||' | paste -sd'|')

run_backend() {
	case $1 in
	io_uring)
		# valgrind (3.19 at least) does not model io_uring: it runs
		# io_uring_enter holding its global lock, so no other thread of the
		# test runs while the waiter blocks (peer threads stall, wakeups
		# never come), and it does not see the kernel fill receive buffers
		# from the ring, so every byte received looks uninitialised. The
		# programs without peer threads still run with every other check
		# (invalid accesses, frees, leaks); only undefined-value tracking
		# is off.
		VALGRIND_OPTS=--undef-value-errors=no ctest --test-dir "$dir" --output-on-failure \
			-j"$jobs" -R '^io_uring[-:]' -E ":(${threaded:-none}|soak)\$"
		;;
	*)
		VALGRIND_OPTS=--track-origins=yes \
			ctest --test-dir "$dir" --output-on-failure -j"$jobs" -R "^$1:" -E ':soak$'
		;;
	esac
}

# Tests that cannot hold under valgrind itself skip when this is set.
export PROACT_VALGRIND=1

backends=("$@")
if [ ${#backends[@]} -eq 0 ]; then
	backends=(epoll)
	listed=$(ctest --test-dir "$dir" -N -R '^io_uring:')
	case $listed in *io_uring:*) backends+=(io_uring) ;; esac
fi
status=0
for b in "${backends[@]}"; do
	echo "== valgrind: $b =="
	SECONDS=0
	run_backend "$b" || status=1
	echo "== valgrind: $b took ${SECONDS}s =="
done
exit $status
