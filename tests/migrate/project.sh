#!/bin/sh
# SPDX-License-Identifier: MIT
# tests/migrate/project.sh PROJECT: runs tests/migrate/test_migrate PROJECT (sqlite-postgres or
# mariadb-mongo); sqlite_postgres.sh and mariadb_mongo.sh are the two tests.  Needs the test
# servers (scripts/test-servers.sh); the program skips loudly without them.
set -u
if [ -z "${EMH_BUILDDIR:-}" ]; then
	echo "Bail out! EMH_BUILDDIR is not set (run through make check)"
	exit 1
fi
# Under ASan this test starts some 250 processes that load the plugins; the runtime's
# __tls_get_addr hook (GCC <= 13) can crash LeakSanitizer at exit on a dynamic TLS block
# of a plugin's library (see scripts/test.sh): keep it off here whatever the caller set.
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}intercept_tls_get_addr=0"
export ASAN_OPTIONS
# shellcheck disable=SC2086 # the wrapper is a command line
exec ${EMH_TEST_WRAPPER:-} "$EMH_BUILDDIR/tests/migrate/test_migrate" "$1"
