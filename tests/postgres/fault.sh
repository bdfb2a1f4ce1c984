#!/bin/sh
# SPDX-License-Identifier: MIT
# tests/postgres/fault.sh: run the PostgreSQL fault test (it stops and restarts the test
# server) and make sure the server is running again afterwards, whatever happened.
PG=${EMH_SRCDIR:-.}/scripts/servers/pg.sh
if [ -n "${EMH_TEST_STATE_DIR:-}" ] && [ -n "${EMH_TEST_PG_URL:-}" ]; then
	trap '"$PG" status "$EMH_TEST_STATE_DIR" >/dev/null 2>&1 || "$PG" restart "$EMH_TEST_STATE_DIR" >&2' EXIT
	trap 'exit 1' INT TERM HUP
fi
"${EMH_BUILDDIR:-.}/tests/postgres/test_pg_fault"
