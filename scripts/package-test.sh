#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# package-test.sh - install the libraries into a temporary prefix and build a
# program against them as a user would: with CMake's find_package(proact)
# (proact::proact, proact::proact_static, proact::tls, proact::tls_static)
# and with pkg-config (proact, proact-tls); then run every build of it. The
# program (tests/package/consumer.c) moves bytes over a socketpair through a
# watcher and, with TLS, through a handshake, so a wrong link shows. Also
# checks the installed manual pages, and the Release build's hardening with
# hardening-check (devscripts).
#
#   scripts/package-test.sh [BUILD_DIR]     (default build/package-test)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/needs.sh
. scripts/needs.sh
sh scripts/deps.sh >/dev/null
needs devscripts
dir=${1:-build/package-test}
jobs=$(nproc 2>/dev/null || echo 2)
rm -rf "$dir"
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
prefix=$dir/prefix
src=$PWD/tests/package

echo "package: library (Release) installed into $prefix"
cmake -S . -B "$dir/lib" -DCMAKE_BUILD_TYPE=Release -DPROACT_TESTS=OFF -DPROACT_EXAMPLES=OFF \
	-DCMAKE_INSTALL_PREFIX="$prefix" >"$dir/lib.log"
cmake --build "$dir/lib" -j"$jobs" >>"$dir/lib.log"
cmake --install "$dir/lib" >>"$dir/lib.log"

# The hardening of a Release build (CMakeLists.txt): fortified calls, stack
# protector, full RELRO; control-flow integrity is not asked of it.
if command -v hardening-check >/dev/null 2>&1; then
	for so in "$prefix"/lib*/libproact*.so; do
		hardening-check --nocfprotection "$(readlink -f "$so")"
	done
else
	echo "package: no hardening-check (not Debian): the hardening is not checked"
fi

# The manual: every page of man/man3 (the TLS ones with the TLS library).
pages=$(find man/man3 -name '*.3' | wc -l)
[ -e "$prefix/include/proact_tls.h" ] || pages=$(find man/man3 -name '*.3' ! -name 'proact_tls_*' | wc -l)
installed=$(find "$prefix/share/man/man3" -name 'proact*.3' | wc -l)
if [ "$installed" -ne "$pages" ]; then
	echo "package: $installed manual pages installed, not $pages" >&2
	exit 1
fi
echo "package: $installed manual pages installed"

tls=0
cert=()
if [ -e "$prefix/include/proact_tls.h" ]; then
	tls=1
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
		-subj /CN=localhost -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null
	cert=("$dir/cert.pem" "$dir/key.pem")
fi

# run NAME PROGRAM: the program must use the prefix's library, not another.
run() {
	local name=$1 prog=$2 args=()
	case $name in *tls*) args=("${cert[@]}") ;; esac
	if ldd "$prog" | grep -q 'libproact' && ! ldd "$prog" | grep 'libproact' | grep -q "$prefix"; then
		echo "package: $name: not linked to $prefix:" >&2
		ldd "$prog" >&2
		exit 1
	fi
	echo "package: $name:"
	"$prog" "${args[@]}"
}

echo "package: consumer with find_package(proact CONFIG)"
cmake -S "$src" -B "$dir/cmake" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release \
	>"$dir/cmake.log"
cmake --build "$dir/cmake" -j"$jobs" >>"$dir/cmake.log"
progs=(consumer consumer_static)
[ $tls -eq 0 ] || progs+=(consumer_tls consumer_tls_static)
for p in "${progs[@]}"; do
	run "cmake $p" "$dir/cmake/$p"
done

echo "package: consumer with pkg-config"
pcdir=$(dirname "$(find "$prefix" -name proact.pc)")
export PKG_CONFIG_PATH=$pcdir
LD_LIBRARY_PATH=$(dirname "$pcdir")
export LD_LIBRARY_PATH
cc=${CC:-cc}
# shellcheck disable=SC2046 # pkg-config's output is a list of words
$cc -std=c11 -Wall -Wextra -Werror $(pkg-config --cflags proact) "$src/consumer.c" \
	-o "$dir/pc-consumer" $(pkg-config --libs proact)
run "pkg-config proact" "$dir/pc-consumer"
if [ $tls -eq 1 ]; then
	# shellcheck disable=SC2046
	$cc -std=c11 -Wall -Wextra -Werror -DCONSUMER_TLS $(pkg-config --cflags proact-tls) \
		"$src/consumer.c" -o "$dir/pc-consumer-tls" $(pkg-config --libs proact-tls)
	run "pkg-config proact-tls" "$dir/pc-consumer-tls"
fi
echo "package: every consumer built and ran"
