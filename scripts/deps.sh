#!/bin/sh
# SPDX-License-Identifier: MIT
# deps.sh - install what proact needs to build and test, on Debian 12.
#
# Checks each package with dpkg first and touches the network only when
# something is missing, so it is idempotent and runs offline once everything
# is there. Installing needs root (or sudo).
set -eu

# A C compiler: build-essential or just gcc will do; make runs CMake's build.
# redis-tools: redis-cli and redis-benchmark, for the resp-clients tests.
# libssl-dev: the TLS layer (OpenSSL 3); openssl and curl: its test peers.
# curl, wrk: the real clients of the http example's tests.
PACKAGES="make cmake pkg-config liburing-dev libcmocka-dev clang redis-tools curl wrk libssl-dev openssl"

# Installed for this machine's architecture (or for all): with the
# multiarch packages of scripts/cross.sh, a name can have several instances.
installed() {
	dpkg-query -W -f='${db:Status-Status} ${Architecture}\n' "$1" 2>/dev/null |
		grep -Eq "^installed ($(dpkg --print-architecture)|all)\$"
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
# An index that fails to download (a mirror in mid-sync, a foreign
# architecture's list) must not stop the install of what is listed.
$SUDO apt-get update || echo "deps: apt-get update reported errors; installing anyway" >&2
# $missing is a list of words on purpose.
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends $missing
