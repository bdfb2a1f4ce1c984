#!/bin/sh
# SPDX-License-Identifier: MIT
# tests/conformance/sqlite.sh: the conformance suite on a temporary SQLite FILE context.
#
# Runs in every `make check`.  The context comes from the environment exactly
# as a user would give it: EMH_CONTEXT_CONF_URL=sqlite:///tmp/.../conf.db.
# EMH_TEST_WRAPPER runs the program under a tool, e.g. from the build dir:
#   EMH_TEST_WRAPPER="$PWD/libtool --mode=execute valgrind --leak-check=full --error-exitcode=9" \
#     make check TESTS=tests/conformance/sqlite.sh
set -u
if [ -z "${EMH_BUILDDIR:-}" ]; then
	echo "Bail out! EMH_BUILDDIR is not set (run through make check)"
	exit 1
fi
prog="$EMH_BUILDDIR/tests/conformance/emh-conformance"
plugins="$EMH_BUILDDIR/plugins-build"
if [ ! -e "$plugins/sqlite.so" ]; then
	echo "1..0 # SKIP the sqlite driver is not built ($plugins/sqlite.so missing: configure found no sqlite3 >= 3.24)"
	exit 0
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/emh-conf-sqlite.XXXXXX") || { echo "Bail out! mktemp failed"; exit 1; }
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM
EMH_CONTEXT_CONF_URL="sqlite://$tmp/conf.db"
export EMH_CONTEXT_CONF_URL
# shellcheck disable=SC2086 # the wrapper is a command line
${EMH_TEST_WRAPPER:-} "$prog" -p "$plugins" --context conf
