# SPDX-License-Identifier: MIT
# shellcheck shell=bash
# needs.sh - sourced by the packaging scripts (package-test, man-check,
# abi-check, deb): `needs PACKAGE...` installs, on Debian, the packages that
# are not installed yet, with apt-get (as root, or through sudo). It touches
# the network only when something is missing.

needs_installed() {
	dpkg-query -W -f='${db:Status-Status}\n' "$1" 2>/dev/null | grep -qx installed
}

needs() {
	local missing=() p sudo=""
	if ! command -v dpkg >/dev/null 2>&1; then
		echo "needs: not Debian: install $* yourself" >&2
		return 0
	fi
	for p in "$@"; do
		needs_installed "$p" || missing+=("$p")
	done
	[ ${#missing[@]} -gt 0 ] || return 0
	if [ "$(id -u)" -ne 0 ]; then
		sudo=sudo
	fi
	echo "needs: installing: ${missing[*]}"
	$sudo apt-get update -q >/dev/null || echo "needs: apt-get update reported errors" >&2
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends \
		"${missing[@]}" >/dev/null
}
