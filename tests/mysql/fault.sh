#!/bin/sh
# SPDX-License-Identifier: MIT
# tests/mysql/fault.sh: the fault program (tests/fault/test_fault) against the MariaDB test
# server.  It stops and restarts the server: whatever happens, the server runs again
# afterwards.  EMH_TEST_WRAPPER runs the program under a tool (valgrind).
MY=${EMH_SRCDIR:-.}/scripts/servers/mariadb.sh
prog=${EMH_BUILDDIR:-.}/tests/fault/test_fault
# Only for a server mariadb.sh started: given a URL alone, its start would record an
# external server in the state directory.  (Otherwise the program skips, saying why.)
if [ -n "${EMH_TEST_STATE_DIR:-}" ] && [ -n "${EMH_TEST_MYSQL_URL:-}" ] &&
	[ "$(cat "$EMH_TEST_STATE_DIR/mariadb/kind" 2>/dev/null)" = mariadb ]; then
	# (start is a no-op when the server runs)
	trap '"$MY" start "$EMH_TEST_STATE_DIR" >/dev/null 2>&1 || echo "# could not restart the MariaDB test server"' EXIT
	trap 'exit 1' INT TERM HUP
	# Wait for every other MySQL test (they hold the lock shared) before stopping the server.
	if command -v flock >/dev/null 2>&1; then
		# shellcheck disable=SC2086 # the wrapper is a command line
		flock -x -o "$EMH_TEST_STATE_DIR/mariadb.lock" ${EMH_TEST_WRAPPER:-} "$prog" mysql
		exit $?
	fi
fi
# shellcheck disable=SC2086 # the wrapper is a command line
${EMH_TEST_WRAPPER:-} "$prog" mysql
