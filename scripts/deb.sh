#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# deb.sh - build the Debian packages (debian/): libproact0, libproact-dev,
# libproact-tls0, libproact-tls-dev, into build/deb (or BUILD_DIR), with
# `dpkg-buildpackage -us -uc -b` on a copy of the tree; then lintian on
# them (errors fail, warnings are shown) and hardening-check on the shared
# libraries they hold (stack protector, fortified functions, full RELRO).
# Installs what it needs with apt-get. The test suite is not run by the
# package build (nocheck): `make test` runs it.
#
#   scripts/deb.sh [BUILD_DIR]      (make deb)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/needs.sh
. scripts/needs.sh
sh scripts/deps.sh >/dev/null
needs dpkg-dev debhelper fakeroot lintian devscripts cmake pkg-config liburing-dev libssl-dev
dpkg-checkbuilddeps debian/control

out=${1:-build/deb}
jobs=$(nproc 2>/dev/null || echo 2)
rm -rf "$out"
mkdir -p "$out/src"
out=$(cd "$out" && pwd)
# The source as it is here, without build trees or git's files.
tar -c --exclude=./build --exclude=./.git --exclude='./obj-*' . | tar -x -C "$out/src"

echo "deb: dpkg-buildpackage -us -uc -b (log: $out/build.log)"
if ! (cd "$out/src" && DEB_BUILD_OPTIONS="nocheck noautodbgsym parallel=$jobs" \
	dpkg-buildpackage -us -uc -b >"$out/build.log" 2>&1); then
	tail -n 40 "$out/build.log" >&2
	echo "deb: the package build failed" >&2
	exit 1
fi
rm -rf "$out/src"
echo "deb: built in ${SECONDS}s"
for p in libproact0 libproact-dev libproact-tls0 libproact-tls-dev; do
	deb=$(find "$out" -maxdepth 1 -name "${p}_*.deb" | head -n1)
	if [ -z "$deb" ]; then
		echo "deb: no $p package was built" >&2
		exit 1
	fi
	echo "deb: $(basename "$deb"): $(dpkg-deb -c "$deb" | grep -vc '/$') files"
done

echo "deb: lintian (errors fail; warnings shown)"
changes=$(find "$out" -maxdepth 1 -name '*.changes' | head -n1)
if ! lintian --fail-on error --display-level '>=warning' --allow-root "$changes" | tee "$out/lintian.log"; then
	echo "deb: lintian found errors" >&2
	exit 1
fi

echo "deb: hardening-check on the shared libraries (${SECONDS}s so far)"
mkdir -p "$out/root"
for deb in "$out"/libproact0_*.deb "$out"/libproact-tls0_*.deb; do
	dpkg-deb -x "$deb" "$out/root"
done
status=0
while read -r so; do
	# Control-flow integrity is not asked of the build (bookworm's
	# dpkg-buildflags does not turn it on either); stack clash protection
	# is reported, not required.
	hardening-check --nocfprotection "$so" || status=1
done < <(find "$out/root" -name '*.so.*' -type f)
rm -rf "$out/root"
mkdir -p "$out/root"
if [ $status -ne 0 ]; then
	echo "deb: hardening-check failed" >&2
	exit 1
fi
# The -dev packages' CMake files, each pair unpacked alone: the core's
# without the TLS packages, then with them (tests/package's consumer; the
# pkg-config files name /usr, so they are tried only once installed).
echo "deb: find_package(proact) from libproact-dev alone, then with libproact-tls-dev"
for set in "libproact0 libproact-dev" "libproact-tls0 libproact-tls-dev"; do
	for p in $set; do
		dpkg-deb -x "$(find "$out" -maxdepth 1 -name "${p}_*.deb" | head -n1)" "$out/root"
	done
	rm -rf "$out/consumer"
	cmake -S tests/package -B "$out/consumer" -DCMAKE_PREFIX_PATH="$out/root/usr" \
		-DCMAKE_BUILD_TYPE=Release >"$out/consumer.log"
	cmake --build "$out/consumer" >>"$out/consumer.log"
	libdir=$(dirname "$(find "$out/root" -name libproact.so | head -n1)")
	if [ -e "$out/consumer/consumer_tls" ]; then
		[[ $set == *tls* ]] || { echo "deb: proact::tls without libproact-tls-dev" >&2; exit 1; }
		LD_LIBRARY_PATH=$libdir "$out/consumer/consumer_tls"
	else
		[[ $set != *tls* ]] || { echo "deb: no proact::tls from libproact-tls-dev" >&2; exit 1; }
		LD_LIBRARY_PATH=$libdir "$out/consumer/consumer"
	fi
done
rm -rf "$out/root" "$out/consumer"
echo "deb: packages in $out (${SECONDS}s in all)"
