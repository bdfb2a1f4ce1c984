#!/bin/sh
# SPDX-License-Identifier: MIT
# tests/fault/hang.sh: servers that stop answering (tests/fault/test_hang), for every driver
# whose test server is set.  The program stops the PostgreSQL test cluster with SIGSTOP and
# continues it on every way out; should it die anyway, the cluster is continued here.
# EMH_TEST_WRAPPER runs the program under a tool (valgrind).
cont_pg() {
	[ -n "${EMH_TEST_STATE_DIR:-}" ] && [ -r "$EMH_TEST_STATE_DIR/pg/pid" ] || return 0
	pm=$(cat "$EMH_TEST_STATE_DIR/pg/pid")
	kill -CONT "$pm" 2>/dev/null
	for st in /proc/[0-9]*/stat; do
		# field 4 of /proc/PID/stat is the parent's pid (the command, field 2, has no ')' here)
		pp=$(sed 's/.*) [A-Za-z] \([0-9]*\).*/\1/' "$st" 2>/dev/null) || continue
		[ "$pp" = "$pm" ] || continue
		p=${st#/proc/}
		kill -CONT "${p%/stat}" 2>/dev/null
	done
	return 0
}
trap cont_pg EXIT
trap 'exit 1' INT TERM HUP
# shellcheck disable=SC2086 # the wrapper is a command line
${EMH_TEST_WRAPPER:-} "${EMH_BUILDDIR:-.}/tests/fault/test_hang"
