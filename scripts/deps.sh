#!/bin/sh
# deps.sh - install what proact needs to build and test, on Debian 12.
#
# Checks each package with dpkg first and touches the network only when
# something is missing, so it is idempotent and runs offline once everything
# is there. Installing needs root (or sudo).
set -eu

# A C compiler: build-essential or just gcc will do; make runs CMake's build.
PACKAGES="make cmake pkg-config liburing-dev libcmocka-dev clang"

installed() {
	dpkg -s "$1" 2>/dev/null | grep -q '^Status: install ok installed'
}

if ! command -v dpkg >/dev/null 2>&1; then
	echo "deps: no dpkg (not Debian): install a C compiler, cmake, pkg-config," \
		"liburing, cmocka and clang yourself" >&2
	exit 0
fi

missing=""
if ! installed build-essential && ! installed gcc; then
	missing="build-essential"
fi
for p in $PACKAGES; do
	installed "$p" || missing="$missing $p"
done
missing=${missing# }

if [ -z "$missing" ]; then
	echo "deps: everything is installed"
	exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		SUDO="sudo"
	else
		echo "deps: missing: $missing; run this script as root" >&2
		exit 1
	fi
fi

echo "deps: installing: $missing"
$SUDO apt-get update
# $missing is a list of words on purpose.
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends $missing
