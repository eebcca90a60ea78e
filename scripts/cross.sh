#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# cross.sh - build proact for other targets and run it where it can run here.
#
#   scripts/cross.sh [--quick] [--skip-unavailable] TARGET...
#
# Targets:
#   i386           32-bit x86 (gcc-i686-linux-gnu); the suite runs natively, or
#                  under qemu-user where the kernel refuses 32-bit programs
#   aarch64        64-bit Arm (gcc-aarch64-linux-gnu); the suite under qemu-user
#   s390x          IBM Z, big-endian (gcc-s390x-linux-gnu); the suite under qemu-user
#   musl           x86_64 with musl libc (musl-gcc); the echo server under load
#   macos-x86_64   macOS through Zig's C compiler: compile and link only
#   macos-aarch64  the same for Apple silicon
#   windows        x86_64 Windows (gcc-mingw-w64-x86-64); the suite, TLS
#                  layer included, on the iocp backend under Wine (wine64),
#                  then the README's echo server and examples/echo_server
#                  (two threads) under Wine against the Linux load generator
#   all            every one of them
#
# Each target is the normal CMake build with a toolchain file of cmake/, in
# build/cross-<target>: the library, the examples and (where cmocka exists
# for the target) the tests. CMake decides everything else; pkg-config sees
# only the target's libraries. --quick runs a subset of the test groups
# under qemu-user (the whole suite runs natively on i386 either way).
# --skip-unavailable turns a target whose packages apt cannot install into a
# loud skip instead of a failure (the suite's run uses it: a mirror in sync
# is not a defect of the code).
#
# Installs what is missing with apt (Debian 12, root or sudo), after a check
# with dpkg, so a second run touches no network. liburing for a foreign
# architecture is optional: where it does not install next to the host's
# packages without upgrading them, the target is built without io_uring.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
jobs=$(nproc 2>/dev/null || echo 2)

# Test groups of --quick under qemu-user: the ones that neither fork nor
# lean on what qemu-user does not emulate (TCP_INFO, seccomp, threads under load).
QUICK_GROUPS='basic|backend|cancel|deadline|errors|limits|pool|read|write'
ALL_TARGETS=(i386 aarch64 s390x musl macos-x86_64 macos-aarch64 windows)

usage() {
	echo "usage: scripts/cross.sh [--quick] [--skip-unavailable] TARGET... (${ALL_TARGETS[*]} all)" >&2
	exit 2
}

quick=0
skip_unavailable=0
skipped=()
targets=()
for a in "$@"; do
	case $a in
	--quick) quick=1 ;;
	--skip-unavailable) skip_unavailable=1 ;;
	all) targets+=("${ALL_TARGETS[@]}") ;;
	i386 | aarch64 | s390x | musl | macos-x86_64 | macos-aarch64 | windows) targets+=("$a") ;;
	*) usage ;;
	esac
done
[ ${#targets[@]} -gt 0 ] || usage

# ---- dependencies ----

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then
	SUDO="sudo"
fi
updated=0

# installed NAME[:ARCH]: installed for ARCH (default: this machine's), or for all.
installed() {
	local arch=${1#*:}
	[ "$arch" != "$1" ] || arch=$(dpkg --print-architecture)
	dpkg-query -W -f='${db:Status-Status} ${Architecture}\n' "$1" 2>/dev/null |
		grep -Eq "^installed ($arch|all)\$"
}

apt_update() {
	if [ $updated -eq 0 ]; then
		# An index that fails to download (a mirror in sync) is not fatal:
		# the install below says whether what it needs was there.
		$SUDO apt-get update -q || echo "cross: apt-get update reported errors" >&2
		updated=1
	fi
}

# needs ARCH PACKAGE...: installs the missing ones; ARCH (a dpkg architecture,
# or "-") is added to dpkg's foreign architectures first if it is not there.
needs() {
	local arch=$1 missing=() p
	shift
	if [ "$arch" != - ] && [ "$arch" != "$(dpkg --print-architecture)" ] &&
		! dpkg --print-foreign-architectures | grep -qx "$arch"; then
		$SUDO dpkg --add-architecture "$arch"
		updated=0
	fi
	for p in "$@"; do
		installed "$p" || missing+=("$p")
	done
	[ ${#missing[@]} -gt 0 ] || return 0
	echo "cross: installing: ${missing[*]}"
	apt_update
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
}

# wants PACKAGE: installs it if that upgrades nothing already installed;
# returns nonzero if it is not there afterwards.
wants() {
	installed "$1" && return 0
	echo "cross: trying the optional $1"
	apt_update
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends \
		--no-upgrade "$1" >/dev/null 2>&1 || true
	installed "$1"
}

# unavailable TARGET PACKAGES: the target's packages did not install (an
# apt mirror in sync, a foreign index missing). With --skip-unavailable
# that skips the target, loudly; otherwise it fails the run.
unavailable() {
	echo "cross: $1: could not install: $2" >&2
	if [ $skip_unavailable -eq 0 ]; then
		exit 1
	fi
	echo "cross: $1: SKIPPED (its packages are not installable from this machine's apt sources)" >&2
	skipped+=("$1")
}

# ---- builds ----

configure_build() {
	local dir=$1
	shift
	mkdir -p "$dir"
	if ! cmake -S . -B "$dir" "$@" >"$dir/configure.log" 2>&1; then
		cat "$dir/configure.log" >&2
		return 1
	fi
	grep -E 'proact backends|cmocka|suite' "$dir/configure.log" || true
	cmake --build "$dir" -j"$jobs" >/dev/null
	echo "cross: built into $dir"
}

# linux_gnu TARGET DPKG_ARCH TRIPLET EMULATOR: builds and runs the suite.
linux_gnu() {
	local target=$1 arch=$2 triplet=$3 emulator=$4
	local dir=build/cross-$target
	echo "== $target ($triplet) =="
	local pkgs=("gcc-$triplet" "libc6-dev-$arch-cross" "libcmocka-dev:$arch")
	[ -z "$emulator" ] || pkgs+=(qemu-user-static)
	if ! needs "$arch" "${pkgs[@]}"; then
		unavailable "$target" "${pkgs[*]}"
		return
	fi
	wants "liburing-dev:$arch" ||
		echo "cross: $target: no liburing-dev:$arch next to the host's packages; built without io_uring"
	local args=()
	if [ -z "$emulator" ]; then
		# A kernel built or booted without 32-bit support refuses the
		# target's programs (ENOEXEC): qemu-user runs them instead.
		mkdir -p "$dir"
		echo 'int main(void) { return 0; }' | "$triplet-gcc" -x c - -o "$dir/native-probe"
		if "$dir/native-probe" 2>/dev/null; then
			args+=(-DCMAKE_CROSSCOMPILING_EMULATOR=)
		else
			emulator=qemu-$target-static
			needs - qemu-user-static
			echo "cross: $target: this kernel does not run the target's programs; $emulator does"
			# The loader and libc of one package (see toolchain-linux-gnu.cmake).
			if [ -e "/lib/$triplet/libc.so.6" ] || [ -e "/lib/$arch-linux-gnu/libc.so.6" ]; then
				args+=("-DCMAKE_CROSSCOMPILING_EMULATOR=$emulator")
			else
				args+=("-DCMAKE_CROSSCOMPILING_EMULATOR=$emulator;-L;/usr/$triplet")
			fi
		fi
	fi
	configure_build "$dir" -DCMAKE_TOOLCHAIN_FILE="$ROOT/cmake/toolchain-linux-$target.cmake" \
		-DCMAKE_BUILD_TYPE=Debug -DPROACT_FAULT_INJECTION=ON "${args[@]}"
	local ctest_args=(--test-dir "$dir" --output-on-failure -j"$jobs")
	if [ -n "$emulator" ]; then
		# qemu-user has no io_uring: the library falls back to epoll by
		# itself, which epoll:backend (the automatic choice) checks.
		ctest_args+=(-E '^io_uring')
		echo "cross: $target: no io_uring under $emulator: the io_uring runs are left out"
	fi
	if [ -n "$emulator" ] && [ $quick -eq 1 ]; then
		ctest_args+=(-R ":($QUICK_GROUPS)\$")
		echo "cross: $target: quick: the groups $QUICK_GROUPS, under $emulator"
	elif [ -n "$emulator" ]; then
		echo "cross: $target: the whole suite, under $emulator"
	fi
	ctest "${ctest_args[@]}"
}

musl() {
	local dir=build/cross-musl
	echo "== musl (musl-gcc, x86_64) =="
	needs - musl-tools
	# The suite needs cmocka, which Debian builds for glibc only (and
	# musl-gcc has no kernel headers for the tests' Linux calls): no tests.
	# The echo server is the check: thousands of connections, every byte
	# compared, on each mode.
	BUILD_DIR=$dir \
		DEMO_CMAKE_ARGS="-DCMAKE_TOOLCHAIN_FILE=$ROOT/cmake/toolchain-linux-musl.cmake -DPROACT_TESTS=OFF" \
		DEMO_IDLE=0 DEMO_CONNS=4000 DEMO_MSGS=25 bash scripts/demo.sh
	if ! file -L "$dir/examples/echo_server" | grep -q 'interpreter /lib/ld-musl'; then
		echo "cross: musl: $dir/examples/echo_server is not linked against musl" >&2
		return 1
	fi
}

macos() {
	local arch=$1 dir=build/cross-macos-$1
	echo "== macOS $arch (zig cc) =="
	if [ ! -f scripts/zig.sh ] || [ ! -f cmake/toolchain-macos.cmake ]; then
		echo "cross: macos-$arch: skipped (no scripts/zig.sh or cmake/toolchain-macos.cmake)"
		return 0
	fi
	local zig prefix args=()
	zig=$(bash scripts/zig.sh)
	# cmocka built for the target, so that the test programs link too.
	if prefix=$(bash scripts/cmocka-cross.sh "$arch-macos"); then
		args+=(-DPROACT_MACOS_PREFIX="$prefix")
	else
		[ $skip_unavailable -eq 1 ] || return 1
		echo "cross: macos-$arch: no cmocka for the target: the tests are compiled, not linked" >&2
	fi
	PROACT_ZIG=$zig configure_build "$dir" -DCMAKE_TOOLCHAIN_FILE="$ROOT/cmake/toolchain-macos.cmake" \
		-DPROACT_ZIG_TARGET="$arch-macos" -DCMAKE_BUILD_TYPE=Release "${args[@]}"
	local progs
	progs=$(file "$dir"/examples/* "$dir"/tests/test_* "$dir"/fuzz/* 2>/dev/null | grep -c 'Mach-O.*executable' || true)
	echo "cross: macos-$arch: compiled and linked, $progs Mach-O executables (nothing runs here)"
}

# The suite built with mingw-w64 and run by ctest under Wine (the toolchain
# file makes wine64 the emulator), with cmocka built for the target; Wine
# keeps its state in a prefix of its own under build/tools.
# The README's echo server (echo_minimal.exe, port 9000) on iocp under Wine,
# driven over loopback by bench/loadgen (built for this machine): 2,000
# connections, 5 round trips of 1 KiB each, every byte checked, 90 s at most
# (loadgen exits 1 on any error). Connects go 100 at a time: the server
# accepts one connection per round trip through Wine's server.
wine_echo() {
	local dir=$1 wine=$2 server rc=0 i
	if (exec 3<>/dev/tcp/127.0.0.1/9000) 2>/dev/null; then
		echo "windows: port 9000 is taken, the echo server cannot listen" >&2
		return 1
	fi
	PROACT_BACKEND=iocp "$wine" "$dir/tests/echo_minimal.exe" &
	server=$!
	for i in $(seq 100); do
		(exec 3<>/dev/tcp/127.0.0.1/9000) 2>/dev/null && break
		sleep 0.1
	done
	"$dir/loadgen" --port 9000 --mode echo --conns 2000 --size 1024 --rounds 5 \
		--inflight 100 --timeout 90 || rc=1
	kill -KILL "$server" 2>/dev/null || true
	wait "$server" 2>/dev/null || true
	return "$rc"
}

# examples/echo_server.exe with two watchers (one listener, the accepted
# sockets handed to the watchers in turn) on iocp under Wine, driven by the
# same loadgen: 4,000 connections, 2 round trips of 1 KiB each, every byte
# checked, 90 s at most; then Ctrl-C (Wine turns SIGINT into it) must stop
# it within 20 s with status 0 and its counters: every connection accepted,
# no error, the second watcher served some. 12,000 connections ran too
# (29 s); 4,000 keep the run near 10 s.
wine_echo_server() {
	local dir=$1 wine=$2 server rc=0 i port="" conns=4000 rounds=2
	local out=$dir/echo_server.out
	PROACT_BACKEND=iocp "$wine" "$dir/examples/echo_server.exe" --threads 2 >"$out" 2>&1 &
	server=$!
	for i in $(seq 300); do
		port=$(tr -d '\r' <"$out" | sed -n 's/^listening on .*:\([0-9]*\)$/\1/p')
		[ -z "$port" ] || break
		kill -0 "$server" 2>/dev/null || break
		sleep 0.1
	done
	if [ -z "$port" ]; then
		echo "windows: echo_server.exe did not start listening" >&2
		rc=1
	else
		"$dir/loadgen" --port "$port" --mode echo --conns $conns --size 1024 --rounds $rounds \
			--inflight 200 --timeout 90 || rc=1
	fi
	kill -INT "$server" 2>/dev/null || true
	for i in $(seq 200); do
		kill -0 "$server" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$server" 2>/dev/null; then
		echo "windows: echo_server.exe did not stop on Ctrl-C" >&2
		kill -KILL "$server" 2>/dev/null || true
		rc=1
	fi
	wait "$server" || rc=1
	tr -d '\r' <"$out"
	grep -q "^echo_server: accepted $conns connections, .* 0 errors" "$out" &&
		grep -q '^echo_server: stats\[1\]: submitted/completed read=[1-9]' "$out" || rc=1
	[ "$rc" -eq 0 ] || echo "windows: echo_server.exe under load failed" >&2
	return "$rc"
}

# The DLLs export the public API and nothing else: no internal proact__
# symbol, none of the OpenSSL linked into the TLS layer.
dll_exports() {
	local dll rc=0 extra
	for dll in "$1/libproact.dll" "$1/tls/libproact_tls.dll"; do
		extra=$(x86_64-w64-mingw32-objdump -p "$dll" |
			sed -n '/\[Ordinal\/Name Pointer\] Table/,/^$/p' | awk 'NR > 1 && NF { print $NF }' |
			grep -v '^proact_[a-z]' || true)
		if [ -n "$extra" ]; then
			echo "windows: $dll exports more than the API: $(echo "$extra" | head -5 | tr '\n' ' ')" >&2
			rc=1
		fi
	done
	return "$rc"
}

windows() {
	local dir=build/cross-windows wine=/usr/lib/wine/wine64 prefix
	echo "== windows (x86_64-w64-mingw32, under Wine) =="
	local pkgs=(gcc-mingw-w64-x86-64 wine64 perl make) # perl, make: OpenSSL's build
	if ! needs - "${pkgs[@]}" || [ ! -x "$wine" ]; then
		unavailable windows "${pkgs[*]}"
		return
	fi
	if ! prefix=$(bash scripts/cmocka-cross.sh x86_64-windows); then
		unavailable windows "cmocka's source package"
		return
	fi
	# OpenSSL for the target (Debian has none for mingw): the TLS layer and
	# its tests. The target counts as unavailable without it, as without
	# cmocka: a run that passes has run them.
	local ossl
	if ! ossl=$(bash scripts/openssl-cross.sh x86_64-windows); then
		unavailable windows "openssl's source package"
		return
	fi
	configure_build "$dir" -DCMAKE_TOOLCHAIN_FILE="$ROOT/cmake/toolchain-windows-x86_64.cmake" \
		-DCMAKE_BUILD_TYPE=Debug -DPROACT_WINDOWS_PREFIX="$prefix" \
		-DPROACT_WINDOWS_OPENSSL_PREFIX="$ossl" -DCMAKE_CROSSCOMPILING_EMULATOR="$wine"
	# When its last program exits, Wine stops its service processes, and the
	# next program starts them again with its own stdout: ctest then waits
	# for a pipe they hold, and a program starting while the server goes
	# away fails ("wine client error"). So the prefix is set up once, alone,
	# and a keeper program (cmd.exe waiting on a pipe) stays up for the run.
	mkdir -p build/tools/wine
	export WINEPREFIX=$ROOT/build/tools/wine WINEDEBUG=-all
	local server=/usr/lib/wine/wineserver rc=0 keeper
	"$wine" wineboot.exe --init >/dev/null 2>&1 || true
	rm -f "$dir/wine-keeper"
	mkfifo "$dir/wine-keeper"
	"$wine" cmd.exe /q <"$dir/wine-keeper" >/dev/null 2>&1 &
	keeper=$!
	exec 9>"$dir/wine-keeper" # cmd.exe reads until this closes
	ctest --test-dir "$dir" --output-on-failure -j"$jobs" || rc=$?
	dll_exports "$dir" || rc=1
	cc -O2 -pthread -o "$dir/loadgen" bench/loadgen.c
	wine_echo "$dir" "$wine" || rc=1
	wine_echo_server "$dir" "$wine" || rc=1
	exec 9>&-
	wait "$keeper" || true
	"$server" -w
	unset WINEPREFIX WINEDEBUG
	return "$rc"
}

sh scripts/deps.sh # cmake, make, pkg-config
if ! command -v file >/dev/null 2>&1; then
	needs - file
fi
for t in "${targets[@]}"; do
	start=$SECONDS
	case $t in
	i386) linux_gnu i386 i386 i686-linux-gnu "" ;;
	aarch64) linux_gnu aarch64 arm64 aarch64-linux-gnu qemu-aarch64-static ;;
	s390x) linux_gnu s390x s390x s390x-linux-gnu qemu-s390x-static ;;
	musl) musl ;;
	macos-x86_64) macos x86_64 ;;
	macos-aarch64) macos aarch64 ;;
	windows) windows ;;
	esac
	echo "cross: $t done in $((SECONDS - start)) s"
done
if [ ${#skipped[@]} -gt 0 ]; then
	echo "cross: passed: ${targets[*]}; SKIPPED for want of packages: ${skipped[*]}"
else
	echo "cross: all targets passed: ${targets[*]}"
fi
