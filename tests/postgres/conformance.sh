#!/bin/sh
# SPDX-License-Identifier: MIT
# tests/postgres/conformance.sh: the conformance suite against the PostgreSQL test server
# (EMH_TEST_PG_URL, from scripts/servers/pg.sh), with a pool of 4 connections shared by
# the suite's 8 threads.  EMH_TEST_WRAPPER runs the program under a tool (valgrind).
set -u
if [ -z "${EMH_TEST_PG_URL:-}" ]; then
	# shellcheck source=tests/tap.sh
	. "${EMH_SRCDIR:-.}/tests/tap.sh"
	need_server 1 "postgres: EMH_TEST_PG_URL not set (run scripts/servers/pg.sh start STATE_DIR)"
	done_testing
	exit $?
fi
if [ -z "${EMH_BUILDDIR:-}" ]; then
	echo "Bail out! EMH_BUILDDIR is not set (run through make check)"
	exit 1
fi
prog=$EMH_BUILDDIR/tests/conformance/emh-conformance
if [ ! -x "$prog" ]; then
	echo "Bail out! $prog is missing (build tests/conformance first)"
	exit 1
fi
EMH_CONTEXT_PG_URL=$EMH_TEST_PG_URL
EMH_CONTEXT_PG_POOL_MAX=4
export EMH_CONTEXT_PG_URL EMH_CONTEXT_PG_POOL_MAX
# shellcheck disable=SC2086 # the wrapper is a command line
exec ${EMH_TEST_WRAPPER:-} "$prog" -p "$EMH_BUILDDIR/plugins-build" --context pg
