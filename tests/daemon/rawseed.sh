#!/bin/sh
# SPDX-License-Identifier: MIT
# tests/daemon/rawseed.sh: `make bench-http`'s seeding leaves PostgreSQL
# usable by emhost.  bench/raw_http.c (emh-raw-http --seed N) inserts users
# 1..N with their ids given; it once left the key's sequence at 1, so that
# the next user added through emhostd -- a test on the same test server --
# took id 1 again and got 409.  Here: emhostd makes the table (in a schema
# of its own, so that no other test's users are touched), emh-raw-http
# seeds it, and a POST through emhostd must get the id after the seeded ones.
set -u
if [ -z "${EMH_BUILDDIR:-}" ] || [ -z "${EMH_SRCDIR:-}" ]; then
	echo "Bail out! EMH_BUILDDIR / EMH_SRCDIR are not set (run through make check)"
	exit 1
fi
. "$EMH_SRCDIR/tests/tap.sh"

emhostd="$EMH_BUILDDIR/core/daemon/emhostd"
raw="$EMH_BUILDDIR/bench/emh-raw-http"
url=${EMH_TEST_PG_URL:-}
if [ -z "$url" ]; then
	need_server 8 "PostgreSQL (EMH_TEST_PG_URL; scripts/test-servers.sh)"
	done_testing
	exit $?
fi
# emh-raw-http has libpq exactly when the postgres driver is built (bench/local.mk)
if ! command -v psql >/dev/null || ! command -v curl >/dev/null || [ ! -e "$EMH_BUILDDIR/plugins-build/postgres.so" ]; then
	skip 8 "needs psql, curl and the postgres driver (so emh-raw-http with libpq)"
	done_testing
	exit $?
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/emh-rawseed.XXXXXX") || { echo "Bail out! mktemp failed"; exit 1; }
schema="rawseed_$$"
pid=
cleanup() {
	[ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	timeout 30 psql -q "$url" -c "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

timeout 30 psql -q "$url" -c "CREATE SCHEMA $schema" >/dev/null || { echo "Bail out! CREATE SCHEMA $schema failed"; exit 1; }
case $url in *\?*) surl="$url&" ;; *) surl="$url?" ;; esac
surl="${surl}options=-csearch_path%3D$schema"
mkdir -p "$tmp/svc" && ln -s "$EMH_BUILDDIR/services/.libs/users.so" "$tmp/svc/users.so"
cat >"$tmp/emhost.conf" <<EOC || { echo "Bail out! cannot write $tmp/emhost.conf"; exit 1; }
plugin_dir = "$EMH_BUILDDIR/plugins-build";
service_dir = "$tmp/svc";
contexts = ( { name = "default"; driver = "postgres"; url = "$surl"; schema = "sync"; } );
services = ( { name = "users"; } );
server = { listen = "127.0.0.1:0"; };
EOC
timeout 300 "$emhostd" -q -c "$tmp/emhost.conf" --ready-file "$tmp/ready" >"$tmp/log" 2>&1 &
pid=$!
i=0
while [ ! -s "$tmp/ready" ] && kill -0 "$pid" 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
if [ ! -s "$tmp/ready" ]; then
	diag "emhostd did not start:" "$(tail -5 "$tmp/log")"
	echo "Bail out! emhostd did not start"
	exit 1
fi
base=$(cat "$tmp/ready")

# post_user NAME EMAIL: the answer's body, a space and its status
post_user() {
	curl -s -m 10 -w ' %{http_code}' -X POST -H 'Content-Type: application/json' \
		-d "{\"name\":\"$1\",\"email\":\"$2\"}" "$base/users"
}

timeout 60 "$raw" --pg "$surl" --seed 5 >"$tmp/seed.log" 2>&1
ok $? "emh-raw-http --seed 5 into the table emhostd made"
out=$(post_user "after seed" rawseed@test.invalid)
diag "POST /users after the seed: $out"
case $out in *" 201") r=0 ;; *) r=1 ;; esac
ok $r "a user added through emhostd after the seed is created (201), not a duplicate key"
case $out in *'"id":6,'*) r=0 ;; *) r=1 ;; esac
ok $r "with the id after the seeded ones (6)"

# A key collision is no duplicate email: set the sequence back, as a seed
# that forgot it would have left it, and add a user with a new email.  The
# answer is a plain 409 "conflict" (the database's words, which name the
# key, go to the log: clients never see them), where the users service once
# said "a user with email ... already exists" for every conflict.
timeout 30 psql -q "$url" -c "SELECT setval(pg_get_serial_sequence('$schema.users', 'id'), 1)" >/dev/null
ok $? "the key's sequence set back to 1"
out=$(post_user "key clash" clash@test.invalid)
diag "POST /users with the sequence behind: $out"
case $out in *" 409") r=0 ;; *) r=1 ;; esac
ok $r "a key the sequence hands out twice is a conflict (409)"
case $out in *'"message":"conflict"'*) r=0 ;; *) r=1 ;; esac
ok $r "not said to be a duplicate email"
grep -q 'users_pkey' "$tmp/log"
ok $? "the log has the database's words, naming the key"
out=$(post_user "same email" rawseed@test.invalid)
case $out in *"a user with email 'rawseed@test.invalid' already exists"*" 409") r=0 ;; *) r=1 ;; esac
ok $r "a duplicate email still says so (409)" || diag "$out"
done_testing
