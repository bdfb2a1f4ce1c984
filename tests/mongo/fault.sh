#!/bin/sh
# SPDX-License-Identifier: MIT
# tests/mongo/fault.sh: the fault program (tests/fault/test_fault) against the MongoDB test
# server.  It stops and restarts the server: whatever happens, the server runs again
# afterwards.  EMH_TEST_WRAPPER runs the program under a tool (valgrind).
#
# $EMH_TEST_STATE_DIR/mongo/use.lock: tests using the server hold it shared
# (conformance.sh, test_mongo); this test holds it exclusively, so in a parallel
# `make check` it waits for them and they wait for it.  Any other test that stops
# scripts/servers/mongo.sh's server should take it exclusively too (flock -x).
MG=${EMH_SRCDIR:-.}/scripts/servers/mongo.sh
if [ -n "${EMH_TEST_STATE_DIR:-}" ] && [ -n "${EMH_TEST_MONGO_URI:-}" ]; then
	if command -v flock >/dev/null 2>&1 && mkdir -p "$EMH_TEST_STATE_DIR/mongo"; then
		exec 9>>"$EMH_TEST_STATE_DIR/mongo/use.lock"
		flock -x 9
	fi
	# (9>&-: the restarted server must not inherit the lock)
	trap '"$MG" status "$EMH_TEST_STATE_DIR" >/dev/null 2>&1 9>&- || "$MG" restart "$EMH_TEST_STATE_DIR" >&2 9>&-' EXIT
	trap 'exit 1' INT TERM HUP
fi
# shellcheck disable=SC2086 # the wrapper is a command line
${EMH_TEST_WRAPPER:-} "${EMH_BUILDDIR:-.}/tests/fault/test_fault" mongo 9>&-
