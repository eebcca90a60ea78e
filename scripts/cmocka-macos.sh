#!/bin/bash
# cmocka-macos.sh - cmocka for a macOS target, so that the test programs
# link into Mach-O executables: Debian's source package of cmocka (the
# version the host's libcmocka-dev has), built with its own CMake and the
# project's macOS toolchain, installed into a prefix under the build tree.
# Prints the prefix on stdout; messages go to stderr. Idempotent: a second
# run with the prefix in place only prints it.
#
#   scripts/cmocka-macos.sh TARGET     (x86_64-macos or aarch64-macos)
#
# The source comes through apt from the Debian mirror the machine already
# uses, with a private source list (nothing in /etc/apt changes), into
# build/tools; it is never among the repository's files.
set -euo pipefail

target=${1:?usage: scripts/cmocka-macos.sh x86_64-macos|aarch64-macos}
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
	echo "cmocka-macos: fetching Debian's cmocka source" >&2
	apt-get "${apt_opts[@]}" update -q >&2
	(cd "$src" && apt-get "${apt_opts[@]}" source --download-only cmocka >&2)
	tar -xJf "$src"/cmocka_*.orig.tar.xz -C "$src"
fi
source_dir=$(ls -d "$src"/cmocka-*/ | head -n 1)

zig=$(bash "$root/scripts/zig.sh")
build=$tools/cmocka-build-$target
echo "cmocka-macos: building cmocka for $target" >&2
PROACT_ZIG=$zig cmake -S "$source_dir" -B "$build" \
	-DCMAKE_TOOLCHAIN_FILE="$root/cmake/toolchain-macos.cmake" -DPROACT_ZIG_TARGET="$target" \
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
echo "$prefix"
