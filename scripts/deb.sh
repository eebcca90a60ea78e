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
if ! (cd "$out/src" && DEB_BUILD_OPTIONS="nocheck parallel=$jobs" \
	dpkg-buildpackage -us -uc -b >"$out/build.log" 2>&1); then
	tail -n 40 "$out/build.log" >&2
	echo "deb: the package build failed" >&2
	exit 1
fi
rm -rf "$out/src"
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

echo "deb: hardening-check on the shared libraries"
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
if [ $status -ne 0 ]; then
	echo "deb: hardening-check failed" >&2
	exit 1
fi
echo "deb: packages in $out"
