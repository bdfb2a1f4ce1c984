#!/bin/sh
# SPDX-License-Identifier: MIT
# tests/mysql/fault.sh: stop the MariaDB test server under a live host, check the failure is
# contained and recovered from (test_mysql_fault), and always bring the server back.
. "${EMH_SRCDIR:-.}/tests/tap.sh"
if [ -z "${EMH_TEST_MYSQL_URL:-}" ] || [ -z "${EMH_TEST_STATE_DIR:-}" ]; then
	need_server 1 "mysql fault: EMH_TEST_MYSQL_URL and EMH_TEST_STATE_DIR not set (scripts/servers/mariadb.sh start DIR)"
	done_testing
	exit $?
fi
if [ "$(cat "$EMH_TEST_STATE_DIR/mariadb/kind" 2>/dev/null)" != mariadb ]; then
	echo "1..0 # SKIP the MySQL server was not started by scripts/servers/mariadb.sh: it cannot be stopped"
	exit 0
fi
script=$EMH_SRCDIR/scripts/servers/mariadb.sh
# Whatever happens, the server is running again afterwards (start is a no-op when it is).
trap '"$script" start "$EMH_TEST_STATE_DIR" >/dev/null 2>&1 || echo "# could not restart the MariaDB test server" ' EXIT
# Wait for every other MySQL test (they hold the lock shared) before stopping the server.
if command -v flock >/dev/null 2>&1; then
	flock -x -o "$EMH_TEST_STATE_DIR/mariadb.lock" "$EMH_BUILDDIR/tests/mysql/test_mysql_fault"
else
	"$EMH_BUILDDIR/tests/mysql/test_mysql_fault"
fi
