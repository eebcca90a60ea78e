#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# abi-check.sh - the ABI of the shared libraries against the last release's.
#
#   scripts/abi-check.sh [BUILD_DIR]             check (default build/abi-check)
#   scripts/abi-check.sh --refresh [BUILD_DIR]   write abi/*.abi anew (at a release)
#
# Builds libproact.so and libproact_tls.so (RelWithDebInfo: abidw reads the
# types from DWARF) and compares each with its dump in abi/ (abidw's XML,
# written by --refresh; abi/README.md) with abidiff. Only what the public
# headers declare counts (--headers-dir include, --drop-private-types; the
# libraries export nothing else). Additions pass; an incompatible change
# (a function gone, a changed type or struct layout) fails unless the
# library's SONAME differs from the one in the dump, i.e. was bumped.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/needs.sh
. scripts/needs.sh
sh scripts/deps.sh >/dev/null
needs abigail-tools

# The dumps are of x86_64 (abi/README.md): elsewhere types have other sizes.
if [ "$(uname -m)" != x86_64 ]; then
	echo "abi: the dumps in abi/ are of x86_64, this is $(uname -m): not checked"
	exit 0
fi
refresh=0
if [ "${1:-}" = --refresh ]; then
	refresh=1
	shift
fi
dir=${1:-build/abi-check}
jobs=$(nproc 2>/dev/null || echo 2)
mkdir -p "$dir"
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPROACT_TESTS=OFF \
	-DPROACT_EXAMPLES=OFF >"$dir/build.log"
targets=(--target proact_shared)
if grep -q 'TLS layer (OpenSSL 3): ON' "$dir/build.log"; then
	targets+=(--target proact_tls_shared)
fi
cmake --build "$dir" -j"$jobs" "${targets[@]}" >>"$dir/build.log"

# What abidw keeps: the types of the public headers, no build paths (source
# locations as file names only: abidiff tells the headers' types by them),
# no undefined or needed libraries (which depend on the build's options,
# not on the ABI); type ids by hash, so a refresh of an unchanged library
# writes the same file.
dump_opts=(--headers-dir include --drop-private-types --no-corpus-path --no-comp-dir-path
	--short-locs --drop-undefined-syms --no-elf-needed --type-id-style hash)
# dump SO FILE: abidw, then the translation units' paths made relative to
# the source tree (abidw writes them as the compiler was given them).
dump() {
	abidw "${dump_opts[@]}" --out-file "$2" "$1"
	sed -i "s#path='$PWD/#path='#" "$2"
}
soname() { sed -n 's/.*soname=.\([^"'\'']*\).*/\1/p' "$1" | head -n1; }

status=0
for lib in libproact libproact_tls; do
	so=$(find "$dir" -maxdepth 2 -name "$lib.so" | head -n1)
	if [ -z "$so" ]; then
		[ "$lib" = libproact_tls ] && { echo "abi: no $lib.so in this build (no OpenSSL 3): not checked"; continue; }
		echo "abi: $lib.so was not built" >&2
		exit 1
	fi
	dump=abi/$lib.abi
	if [ $refresh -eq 1 ]; then
		dump "$so" "$dump"
		echo "abi: wrote $dump ($(soname "$dump"))"
		continue
	fi
	if [ ! -e "$dump" ]; then
		echo "abi: no $dump: run scripts/abi-check.sh --refresh at a release" >&2
		exit 1
	fi
	old=$(soname "$dump")
	new=$(readelf -d "$so" | sed -n 's/.*Library soname: \[\(.*\)\].*/\1/p')
	rc=0
	abidiff --no-show-locs --hd2 include --drop-private-types "$dump" "$so" \
		>"$dir/$lib.abidiff" || rc=$?
	# abidiff's exit status is a bit mask: 1 error, 2 usage, 4 a change,
	# 8 an incompatible change (a symbol removed). A changed type (a struct
	# grown, a parameter's type) is only a change (4) to abidiff; for us
	# anything but additions breaks programs built against the dump: a
	# nonzero "Removed" or "Changed" in abidiff's summaries.
	broken=$(grep -E 'changes summary:' "$dir/$lib.abidiff" |
		grep -E '[1-9][0-9]* (Removed|Changed)' || true)
	if [ $((rc & 3)) -ne 0 ]; then
		cat "$dir/$lib.abidiff" >&2
		echo "abi: $lib: abidiff failed (status $rc)" >&2
		exit 1
	elif { [ $((rc & 8)) -ne 0 ] || [ -n "$broken" ]; } && [ "$old" = "$new" ]; then
		cat "$dir/$lib.abidiff" >&2
		echo "abi: $lib: INCOMPATIBLE with $dump, and the SONAME is still $new:" \
			"bump it (SOVERSION, CMakeLists.txt and tls/CMakeLists.txt), or keep the ABI" >&2
		status=1
	elif [ $((rc & 8)) -ne 0 ] || [ -n "$broken" ]; then
		echo "abi: $lib: incompatible with $dump, SONAME bumped $old -> $new:" \
			"refresh the dump at the release (scripts/abi-check.sh --refresh)"
	elif [ $((rc & 4)) -ne 0 ]; then
		echo "abi: $lib: compatible with $dump ($new), with additions:"
		sed -n 's/^\(Functions\|Variables\) changes summary: /  \L\1: /p' "$dir/$lib.abidiff"
	else
		echo "abi: $lib: the same ABI as $dump ($new)"
	fi
done
exit $status
