#!/bin/sh
# SPDX-License-Identifier: MIT
# tests/abi/memdoc10-conformance.sh: the driver ABI only grows.  memdoc
# (tests/fixtures/memdoc.c) built against the frozen 1.0 headers
# (tests/abi/v1.0, as a driver built before ABI 1.1 was), loaded by today's
# host, passes the whole conformance suite.  Runs in every `make check`.
set -u
if [ -z "${EMH_BUILDDIR:-}" ] || [ -z "${EMH_SRCDIR:-}" ]; then
	echo "Bail out! EMH_BUILDDIR / EMH_SRCDIR are not set (run through make check)"
	exit 1
fi
MEMDOC_SO="$EMH_BUILDDIR/tests/abi/v10/.libs/memdoc.so"
export MEMDOC_SO
exec "$EMH_SRCDIR/tests/abi/memdoc-conformance.sh"
