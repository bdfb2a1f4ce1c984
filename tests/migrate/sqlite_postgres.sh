#!/bin/sh
# SPDX-License-Identifier: MIT
# tests/migrate/sqlite_postgres.sh: the two-context project of tests/migrate/test_migrate.c, sqlite-postgres.
# Needs the test servers (scripts/test-servers.sh); the program skips loudly without them.
set -u
if [ -z "${EMH_BUILDDIR:-}" ]; then
	echo "Bail out! EMH_BUILDDIR is not set (run through make check)"
	exit 1
fi
# shellcheck disable=SC2086 # the wrapper is a command line
exec ${EMH_TEST_WRAPPER:-} "$EMH_BUILDDIR/tests/migrate/test_migrate" sqlite-postgres
