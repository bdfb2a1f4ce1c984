#!/bin/sh
# SPDX-License-Identifier: MIT
# tests/postgres/fault.sh: the fault program (tests/fault/test_fault) against the PostgreSQL
# test server.  It stops and restarts the server: whatever happens, the server runs again
# afterwards.  EMH_TEST_WRAPPER runs the program under a tool (valgrind).
PG=${EMH_SRCDIR:-.}/scripts/servers/pg.sh
if [ -n "${EMH_TEST_STATE_DIR:-}" ] && [ -n "${EMH_TEST_PG_URL:-}" ]; then
	trap '"$PG" status "$EMH_TEST_STATE_DIR" >/dev/null 2>&1 || "$PG" restart "$EMH_TEST_STATE_DIR" >&2' EXIT
	trap 'exit 1' INT TERM HUP
fi
# shellcheck disable=SC2086 # the wrapper is a command line
${EMH_TEST_WRAPPER:-} "${EMH_BUILDDIR:-.}/tests/fault/test_fault" postgres
