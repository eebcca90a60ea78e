#!/bin/bash
# SPDX-License-Identifier: MIT
# cmocka-cross.sh - cmocka for a target Debian builds it not for (macOS,
# Windows), so that the test programs link into its executables: Debian's
# source package of cmocka (the version the host's libcmocka-dev has),
# built with its own CMake and the project's toolchain for the target,
# installed into a prefix under the build tree.
# Prints the prefix on stdout; messages go to stderr. Idempotent: a second
# run with the prefix in place only prints it.
#
#   scripts/cmocka-cross.sh TARGET     (x86_64-macos, aarch64-macos or x86_64-windows)
#
# The source comes through apt from the Debian mirror the machine already
# uses, with a private source list (nothing in /etc/apt changes), into
# build/tools; it is never among the repository's files.
set -euo pipefail

target=${1:?usage: scripts/cmocka-cross.sh x86_64-macos|aarch64-macos|x86_64-windows}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools=$root/build/tools
prefix=$tools/cmocka-$target
if [ -f "$prefix/lib/pkgconfig/cmocka.pc" ]; then
	echo "$prefix"
	exit 0
fi

src=$tools/cmocka-src
if ! ls "$src"/cmocka-*/CMakeLists.txt >/dev/null 2>&1; then
	apt_dir=$tools/apt-src
	mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$src"
	keyring=/usr/share/keyrings/debian-archive-keyring.gpg
	echo "deb-src [signed-by=$keyring] http://deb.debian.org/debian bookworm main" \
		>"$apt_dir/sources.list"
	apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
		-o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
		-o "APT::Sandbox::User=$(id -un)")
	echo "cmocka-cross: fetching Debian's cmocka source" >&2
	apt-get "${apt_opts[@]}" update -q >&2
	(cd "$src" && apt-get "${apt_opts[@]}" source --download-only cmocka >&2)
	tar -xJf "$src"/cmocka_*.orig.tar.xz -C "$src"
fi
source_dir=$(ls -d "$src"/cmocka-*/ | head -n 1)

build=$tools/cmocka-build-$target
case $target in
*-windows) toolchain=(-DCMAKE_TOOLCHAIN_FILE="$root/cmake/toolchain-windows-${target%-windows}.cmake") ;;
*) toolchain=(-DCMAKE_TOOLCHAIN_FILE="$root/cmake/toolchain-macos.cmake" -DPROACT_ZIG_TARGET="$target")
	PROACT_ZIG=$(bash "$root/scripts/zig.sh")
	export PROACT_ZIG ;;
esac
echo "cmocka-cross: building cmocka for $target" >&2
cmake -S "$source_dir" -B "$build" "${toolchain[@]}" \
	-DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$prefix" \
	-DBUILD_SHARED_LIBS=OFF -DWITH_STATIC_LIB=ON -DWITH_EXAMPLES=OFF -DUNIT_TESTING=OFF \
	-DPICKY_DEVELOPER=OFF >"$build.log" 2>&1 || {
	cat "$build.log" >&2
	exit 1
}
cmake --build "$build" -j"$(nproc 2>/dev/null || echo 2)" >>"$build.log" 2>&1 || {
	cat "$build.log" >&2
	exit 1
}
cmake --install "$build" >>"$build.log" 2>&1
if [[ $target == *-windows ]]; then
	# The static library under the name -lcmocka finds: no DLL to ship.
	cp "$prefix/lib/libcmocka-static.a" "$prefix/lib/libcmocka.a"
	rm -f "$prefix/lib/libcmocka.dll.a"
fi
echo "$prefix"
