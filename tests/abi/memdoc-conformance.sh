#!/bin/sh
# SPDX-License-Identifier: MIT
# tests/abi/memdoc-conformance.sh: the conformance suite on memdoc, the example
# document driver written from driver.h and docs/writing-a-driver.md alone
# (tests/fixtures/memdoc.c).  When the core's side of the document-driver
# contract changes, this is where it shows.  memdoc has no error numbers of
# its own: --no-native-codes.  Runs in every `make check`.
set -u
if [ -z "${EMH_BUILDDIR:-}" ]; then
	echo "Bail out! EMH_BUILDDIR is not set (run through make check)"
	exit 1
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/emh-conf-memdoc.XXXXXX") || { echo "Bail out! mktemp failed"; exit 1; }
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM
cp "${MEMDOC_SO:-$EMH_BUILDDIR/tests/fixtures/.libs/memdoc.so}" "$tmp/memdoc.so" || { echo "Bail out! memdoc.so is not built"; exit 1; }
# sqlite, when built, serves the suite's second context (the cross-context case)
[ -e "$EMH_BUILDDIR/plugins-build/sqlite.so" ] && cp "$EMH_BUILDDIR/plugins-build/sqlite.so" "$tmp/"
chmod 755 "$tmp" "$tmp"/*.so
EMH_CONTEXT_DOC_DRIVER=memdoc
export EMH_CONTEXT_DOC_DRIVER
# shellcheck disable=SC2086 # the wrapper is a command line
${EMH_TEST_WRAPPER:-} "$EMH_BUILDDIR/tests/conformance/emh-conformance" -p "$tmp" --no-native-codes --context doc
