#!/bin/sh
# SPDX-License-Identifier: MIT
# tests/build/version.sh: every place that shows the version agrees with
# configure's (AC_INIT): emh_version(), the EMH_VERSION_* macros, emhost.pc,
# `emhost --version` and `emhostd --version`.
set -u
if [ -z "${EMH_BUILDDIR:-}" ] || [ -z "${EMH_SRCDIR:-}" ]; then
	echo "Bail out! EMH_BUILDDIR / EMH_SRCDIR are not set (run through make check)"
	exit 1
fi
. "$EMH_SRCDIR/tests/tap.sh"

# "emhost configure 0.1.0" -> 0.1.0
want=$("$EMH_SRCDIR/configure" --version | sed -n '1s/^emhost configure //p')
[ -n "$want" ] || { echo "Bail out! no version from $EMH_SRCDIR/configure --version"; exit 1; }
diag "configure's version: $want"

# is WHAT GOT: GOT is $want
is() {
	[ "$2" = "$want" ]
	ok $? "$1: '$2' is '$want'"
}

out=$("$EMH_BUILDDIR/tests/build/version_print") || { echo "Bail out! tests/build/version_print failed"; exit 1; }
field() { printf '%s\n' "$out" | sed -n "s/^$1 //p"; }
is "emh_version()" "$(field emh_version)"
is "EMH_VERSION_STRING" "$(field EMH_VERSION_STRING)"
is "EMH_VERSION_MAJOR.MINOR.PATCH" "$(field 'EMH_VERSION_MAJOR\.MINOR\.PATCH')"
# 0.1.0 -> 1000 (MAJOR * 1000000 + MINOR * 1000 + PATCH)
number=$(echo "$want" | awk -F. '{ printf "%d", $1 * 1000000 + $2 * 1000 + $3 }')
[ "$(field EMH_VERSION_NUMBER)" = "$number" ]
ok $? "EMH_VERSION_NUMBER: '$(field EMH_VERSION_NUMBER)' is '$number'"

is "emhost.pc Version" "$(PKG_CONFIG_PATH="$EMH_BUILDDIR" "${PKG_CONFIG:-pkg-config}" --modversion emhost)"

# "emhost 0.1.0 (driver ABI 1.1)"
line=$("$EMH_BUILDDIR/core/cli/emhost" --version)
ok $? "emhost --version exits 0"
is "emhost --version" "$(echo "$line" | sed -n 's/^emhost \([^ ]*\).*/\1/p')"

if [ -x "$EMH_BUILDDIR/core/daemon/emhostd" ]; then
	line=$("$EMH_BUILDDIR/core/daemon/emhostd" --version)
	ok $? "emhostd --version exits 0"
	[ "$line" = "emhostd $want" ]
	ok $? "emhostd --version prints 'emhostd $want' (got '$line')"
else
	diag "SKIPPING 2 tests: emhostd is not built (configured without the daemon)"
	skip 2 "emhostd not built"
fi
done_testing
