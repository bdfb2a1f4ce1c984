#!/bin/sh
# SPDX-License-Identifier: MIT
# tests/mysql/conformance.sh: the conformance suite against MySQL/MariaDB (8 threads on a pool of 4).
. "${EMH_SRCDIR:-.}/tests/tap.sh"
if [ -z "${EMH_TEST_MYSQL_URL:-}" ]; then
	need_server 1 "mysql: EMH_TEST_MYSQL_URL not set (scripts/servers/mariadb.sh start DIR)"
	done_testing
	exit $?
fi
prog=$EMH_BUILDDIR/tests/conformance/emh-conformance
if [ ! -x "$prog" ]; then
	echo "1..1"
	echo "not ok 1 - $prog not built"
	exit 1
fi
EMH_CONTEXT_MY_URL=$EMH_TEST_MYSQL_URL
EMH_CONTEXT_MY_POOL_MAX=4
EMH_PLUGIN_DIR=${EMH_PLUGIN_DIR:-$EMH_BUILDDIR/plugins-build}
export EMH_CONTEXT_MY_URL EMH_CONTEXT_MY_POOL_MAX EMH_PLUGIN_DIR
# fault.sh stops the server: a shared lock makes it wait until we are done
# (-o: the lock stays with flock, not with anything the suite starts).
if [ -n "${EMH_TEST_STATE_DIR:-}" ] && command -v flock >/dev/null 2>&1; then
	exec flock -s -o "$EMH_TEST_STATE_DIR/mariadb.lock" "$prog" --context my
fi
exec "$prog" --context my
