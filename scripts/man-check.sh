#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# man-check.sh - the manual pages (man/man3) against the public headers.
#
# Fails when a public function (a PROACT_API or PROACT_TLS_API declaration
# of include/proact.h or include/proact_tls.h) has no page, when a page is
# named for a function that no longer exists, when a page's NAME or text
# names such a function, when a prototype in a SYNOPSIS differs from the
# header's declaration, when a SEE ALSO entry has no page, or when groff
# warns about a page. A variant is a page of one line, ".so man3/MAIN.3",
# whose function MAIN's NAME lists (as liburing's man/ does).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/needs.sh
. scripts/needs.sh
needs groff-base

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() {
	echo "man-check: $*" >&2
	fails=$((fails + 1))
}
# One line per prototype, spaces collapsed, none inside the parentheses' ends.
normalize() {
	sed -E 's/[[:space:]]+/ /g; s/\( /(/g; s/ \)/)/g; s/ ,/,/g; s/^ //; s/ $//'
}

# The declarations: from PROACT_API to the semicolon, the macro dropped.
for h in include/proact.h include/proact_tls.h; do
	awk '/^PROACT(_TLS)?_API / { d = ""; on = 1 }
	     on { d = d " " $0 }
	     on && /;/ { sub(/^ *PROACT(_TLS)?_API /, "", d); print d; on = 0 }' "$h"
done | normalize >"$tmp/decls"
sed -E 's/^.*[^a-z0-9_](proact_[a-z0-9_]+)\(.*$/\1/' "$tmp/decls" | sort -u >"$tmp/names"
[ -s "$tmp/names" ] || fail "no declarations found in the headers"

while read -r f; do
	[ -e "man/man3/$f.3" ] || fail "$f: no page man/man3/$f.3"
done <"$tmp/names"

declared() { grep -qx "$1" "$tmp/names"; }
cd man
for page in man3/*.3; do
	name=$(basename "$page" .3)
	declared "$name" || fail "$page: $name is not a function of the headers"
	first=$(head -n1 "$page")
	if [[ $first == .so\ * ]]; then
		main=${first#.so }
		if [ ! -e "$main" ]; then
			fail "$page: links to $main, which does not exist"
		elif ! sed -n '/^\.SH NAME/{n;p}' "$main" | grep -qE "(^|[ ,])$name([ ,]|$)"; then
			fail "$page: $main's NAME does not list $name"
		fi
		continue
	fi
	if ! groff -man -ww -z "$page" 2>"$tmp/warn" || [ -s "$tmp/warn" ]; then
		fail "$page: groff: $(cat "$tmp/warn")"
	fi
	groff -man -Tascii -P-cbou -rLL=250n -rHY=0 "$page" 2>/dev/null >"$tmp/text"
	sed -n '/^\.SH NAME/{n;p}' "$page" | sed 's/ \\-.*//; s/,/ /g' | tr ' ' '\n' |
		grep . >"$tmp/listed"
	grep -qx "$name" "$tmp/listed" || fail "$page: NAME does not list $name"
	# The SYNOPSIS: every prototype as the header declares it.
	awk '/^SYNOPSIS/ { on = 1; next } /^[A-Z]/ { on = 0 } on && !/^ *#/' "$tmp/text" |
		tr '\n' ' ' | tr ';' '\n' | normalize | grep -E 'proact_[a-z0-9_]+\(' |
		sed 's/$/;/' >"$tmp/protos" || true
	while read -r f; do
		grep -qE "[^a-z0-9_]$f\(" "$tmp/protos" || fail "$page: no prototype of $f in SYNOPSIS"
	done <"$tmp/listed"
	while read -r p; do
		grep -qxF "$p" "$tmp/decls" || fail "$page: SYNOPSIS: '$p' is not in the headers"
	done <"$tmp/protos"
	# Functions named in the text, and the pages of SEE ALSO.
	grep -oE 'proact_[a-z0-9_]+\((\)|3\))' "$tmp/text" | sort -u | while read -r ref; do
		f=${ref%%(*}
		case $ref in
		*"(3)") [ -e "man3/$f.3" ] || echo "$page: SEE ALSO $f(3): no such page" ;;
		*) declared "$f" || echo "$page: names $f(), not a function of the headers" ;;
		esac
	done >"$tmp/refs"
	while read -r line; do
		fail "$line"
	done <"$tmp/refs"
done
n=$(find man3 -name '*.3' | wc -l)
if [ $fails -gt 0 ]; then
	echo "man-check: $fails problem(s) in $n pages" >&2
	exit 1
fi
echo "man-check: $n pages, one for each of the $(wc -l <"$tmp/names") public functions, as the headers declare them"
