#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The long integrity soak: builds Release and runs tests/test_soak for the
# given number of seconds (default 600) on every backend this build has.
# Each run ends with one "soak <backend>: ..." summary line.
#   scripts/soak.sh [seconds]        BUILD_DIR overrides the build directory.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
dir=${BUILD_DIR:-build/soak}
jobs=$(nproc 2>/dev/null || echo 2)

cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release -DPROACT_EXAMPLES=OFF >/dev/null
cmake --build "$dir" -j"$jobs" --target test_soak
# The backends ctest runs the suite on: names like "epoll:soak".
backends=$(ctest --test-dir "$dir" -N -R ':soak$' | sed -n 's/.*Test *#[0-9]*: \(.*\):soak$/\1/p')
[ -n "$backends" ] || { echo "no soak test found in $dir" >&2; exit 1; }

status=0
for b in $backends; do
	echo "== soak on $b for ${seconds}s =="
	start=$(date +%s)
	# io_uring-recv is io_uring with pending receives instead of polls.
	mode=poll
	[ "$b" = io_uring-recv ] && mode=recv
	if ! PROACT_BACKEND=${b%-recv} PROACT_URING_POOL_READ=$mode PROACT_SOAK_SECONDS=$seconds \
		"$dir/tests/test_soak"; then
		status=1
	fi
	echo "== $b: $(($(date +%s) - start))s wall =="
done
exit $status
