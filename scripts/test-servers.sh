#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# scripts/test-servers.sh: start or stop every test server at once.
#
# usage: scripts/test-servers.sh start|stop STATE_DIR
# start: PostgreSQL with a streaming standby, MariaDB with a GTID replica and a
#        MongoDB-protocol server (scripts/servers/*.sh),
#        each on a free loopback port; their URLs are appended to STATE_DIR/env
#        (source it).  A server that cannot start is reported and left out: the
#        tests needing it then fail under CI=true and skip loudly elsewhere.
# stop:  stops them by PID.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cmd=${1:?usage: test-servers.sh start|stop STATE_DIR}
state=${2:?usage: test-servers.sh start|stop STATE_DIR}
mkdir -p "$state"
rc=0
for s in pg mariadb mongo; do
	if ! "$here/servers/$s.sh" "$cmd" "$state"; then
		echo "test-servers.sh: $s $cmd failed (log: $state/$s/log)" >&2
		rc=1
	fi
done
exit $rc
