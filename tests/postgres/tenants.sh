#!/bin/sh
# SPDX-License-Identifier: MIT
# tests/postgres/tenants.sh: 200 PostgreSQL tenant contexts against a server whose
# max_connections is 50 (issue 12).  Starts a dedicated throwaway cluster
# (scripts/servers/pg.sh, EMH_PG_MAX_CONNECTIONS=50) in its own state directory, so the
# shared test server keeps its slots, runs tests/postgres/test_pg_tenants against it
# (EMH_TEST_PGT_URL) and stops it whatever happens.  EMH_TEST_WRAPPER runs the program
# under a tool (valgrind).
set -u
if [ -z "${EMH_BUILDDIR:-}" ]; then
	echo "Bail out! EMH_BUILDDIR is not set (run through make check)"
	exit 1
fi
PG=${EMH_SRCDIR:-.}/scripts/servers/pg.sh
state=$(mktemp -d /tmp/emh-pgt-XXXXXX) || { echo "Bail out! mktemp failed"; exit 1; }
chmod 755 "$state"
# the cluster lives under $state, or in a /tmp directory pg.sh recorded (pg/root)
trap 'r=$(cat "$state/pg/root" 2>/dev/null); "$PG" stop "$state" >/dev/null 2>&1
case "$r" in /tmp/emh-pg.*) rm -rf "$r" ;; esac; rm -rf "$state"' EXIT
trap 'exit 1' INT TERM HUP
# never an external server: this one must have max_connections = 50
if env -u EMH_TEST_PG_EXTERNAL_URL EMH_PG_MAX_CONNECTIONS=50 "$PG" start "$state" >"$state/start.out" 2>&1; then
	EMH_TEST_PGT_URL=$(sed -n "s/^export EMH_TEST_PG_URL='\(.*\)'$/\1/p" "$state/env")
	export EMH_TEST_PGT_URL
else
	# the program says it is missing: a failure under CI=true, a loud skip elsewhere
	EMH_TEST_PGT_WHY="scripts/servers/pg.sh could not start a cluster: $(tail -n 1 "$state/start.out")"
	export EMH_TEST_PGT_WHY
fi
# shellcheck disable=SC2086 # the wrapper is a command line
${EMH_TEST_WRAPPER:-} "$EMH_BUILDDIR/tests/postgres/test_pg_tenants"
