#!/bin/sh
# SPDX-License-Identifier: MIT
# tests/mongo/conformance.sh: the conformance suite against the MongoDB test server
# (EMH_TEST_MONGO_URI, from scripts/servers/mongo.sh), with a pool of 4 connections shared
# by the suite's 8 threads.  Cases that need a capability the server lacks (transactions on
# a standalone server) are printed "# SKIP not applicable: <reason>" by the suite itself.
# EMH_TEST_WRAPPER runs the program under a tool (valgrind).  Holds
# $EMH_TEST_STATE_DIR/mongo/use.lock shared (see below).
set -u
if [ -z "${EMH_TEST_MONGO_URI:-}" ]; then
	. "${EMH_SRCDIR:-.}/tests/tap.sh"
	need_server 1 "mongo: EMH_TEST_MONGO_URI not set (run scripts/servers/mongo.sh start STATE_DIR)"
	done_testing
	exit $?
fi
if [ -z "${EMH_BUILDDIR:-}" ]; then
	echo "Bail out! EMH_BUILDDIR is not set (run through make check)"
	exit 1
fi
prog=$EMH_BUILDDIR/tests/conformance/emh-conformance
if [ ! -x "$prog" ]; then
	echo "Bail out! $prog is missing (build tests/conformance first)"
	exit 1
fi
EMH_CONTEXT_MG_URL=$EMH_TEST_MONGO_URI
EMH_CONTEXT_MG_POOL_MAX=4
export EMH_CONTEXT_MG_URL EMH_CONTEXT_MG_POOL_MAX
# Tests that stop the server (fault tests) hold this lock exclusively; users of the
# server hold it shared, so a parallel `make check` never stops it under this suite.
lock=
if [ -n "${EMH_TEST_STATE_DIR:-}" ] && command -v flock >/dev/null 2>&1 && mkdir -p "$EMH_TEST_STATE_DIR/mongo"; then
	lock="flock -s $EMH_TEST_STATE_DIR/mongo/use.lock"
fi
# shellcheck disable=SC2086 # the lock and the wrapper are command lines
exec $lock ${EMH_TEST_WRAPPER:-} "$prog" -p "$EMH_BUILDDIR/plugins-build" --context mg
