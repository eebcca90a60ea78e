#!/bin/bash
# SPDX-License-Identifier: MIT
# openssl-cross.sh - OpenSSL 3 for Windows (x86_64, mingw-w64), which Debian
# does not package, so that libproact_tls and its tests build for the target:
# Debian's source package of openssl (the version the host's libssl-dev has,
# else bookworm's newest), built as static libssl and libcrypto with only
# what the TLS layer uses, installed into a prefix under the build tree.
# Prints the prefix on stdout; messages go to stderr. Idempotent: a second
# run with the prefix in place only prints it.
#
#   scripts/openssl-cross.sh [x86_64-windows]
#
# The source comes through apt from the Debian mirror the machine already
# uses, with a private source list (nothing in /etc/apt changes), into
# build/tools; it is never among the repository's files.
set -euo pipefail

target=${1:-x86_64-windows}
[ "$target" = x86_64-windows ] || {
	echo "usage: scripts/openssl-cross.sh [x86_64-windows]" >&2
	exit 2
}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools=$root/build/tools
prefix=$tools/openssl-$target
if [ -f "$prefix/lib/pkgconfig/openssl.pc" ] && [ -f "$prefix/lib/libssl.a" ]; then
	echo "$prefix"
	exit 0
fi

src=$tools/openssl-src
if ! ls "$src"/openssl-*/Configure >/dev/null 2>&1; then
	# A list of its own: the host's libssl-dev is usually a security or
	# point-release update, which bookworm's main suite alone lacks.
	apt_dir=$tools/apt-src-openssl
	mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$src"
	keyring=/usr/share/keyrings/debian-archive-keyring.gpg
	{
		echo "deb-src [signed-by=$keyring] http://deb.debian.org/debian bookworm main"
		echo "deb-src [signed-by=$keyring] http://deb.debian.org/debian bookworm-updates main"
		echo "deb-src [signed-by=$keyring] http://deb.debian.org/debian-security bookworm-security main"
	} >"$apt_dir/sources.list"
	apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
		-o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
		-o "APT::Sandbox::User=$(id -un)")
	echo "openssl-cross: fetching Debian's openssl source" >&2
	apt-get "${apt_opts[@]}" update -q >&2
	version=$(dpkg-query -W -f='${Version}' libssl-dev 2>/dev/null || true)
	# Only the upstream tarball is used (apt checks it against the signed
	# index): a mirror missing the Debian parts fails apt-get, not this.
	for want in ${version:+"openssl=$version"} openssl; do
		(cd "$src" && apt-get "${apt_opts[@]}" source --download-only "$want" >&2) || true
		! ls "$src"/openssl_*.orig.tar.gz >/dev/null 2>&1 || break
	done
	# Upstream's tree as released: Debian's patches are about its own
	# packaging (paths, the Debian configuration), not the mingw target.
	tarballs=("$src"/openssl_*.orig.tar.gz)
	tar -xzf "${tarballs[0]}" -C "$src"
fi
dirs=("$src"/openssl-*/)
source_dir=${dirs[0]}

# Out of tree, so that a failed build starts again from a clean directory.
build=$tools/openssl-build-$target
rm -rf "$build"
mkdir -p "$build"
# Kept: TLS 1.2 and 1.3 with AES-GCM and ChaCha20-Poly1305, ECDHE, RSA
# and EC certificates, PEM, HKDF. Left out: what the layer never calls
# (other ciphers and digests, DH and DSA, DTLS, engines, modules, CMS,
# CMP, OCSP, the deprecated API...) and the assembler (perlasm's
# generation costs more here than it saves).
options=(no-shared no-tests no-module no-legacy no-engine no-dso no-comp no-async
	no-deprecated no-ssl3 no-dtls no-dgram no-srp no-sctp no-srtp no-psk no-gost
	no-idea no-seed no-camellia no-aria no-sm2 no-sm3 no-sm4 no-whirlpool no-mdc2
	no-md4 no-rc2 no-rc4 no-bf no-cast no-des no-rmd160 no-blake2 no-siphash
	no-scrypt no-ocb no-siv no-cmac no-dh no-dsa no-ec2m no-cms no-cmp no-ts no-ocsp
	no-ct no-rfc3779 no-nextprotoneg no-ssl-trace no-multiblock no-filenames
	no-ui-console no-makedepend no-asm)
echo "openssl-cross: building OpenSSL $(basename "$source_dir") for $target" >&2
start=$SECONDS
(cd "$build" && perl "$source_dir/Configure" mingw64 --cross-compile-prefix=x86_64-w64-mingw32- \
	--prefix="$prefix" --libdir=lib --openssldir="$prefix/ssl" "${options[@]}") >"$build.log" 2>&1 || {
	cat "$build.log" >&2
	exit 1
}
jobs=$(nproc 2>/dev/null || echo 2)
# The libraries and headers only: no programs, no manual.
{ make -C "$build" -j"$jobs" build_libs && make -C "$build" install_dev; } >>"$build.log" 2>&1 || {
	tail -n 40 "$build.log" >&2
	exit 1
}
rm -rf "$build"
echo "openssl-cross: built in $((SECONDS - start)) s" >&2
echo "$prefix"
