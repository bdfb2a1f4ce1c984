#!/bin/sh
# SPDX-License-Identifier: MIT
# tests/daemon/preflight.sh: `emhost check-config` refuses what emhostd refuses
# at start-up, with the same message (issue 13).
#
# Each bad configuration is given to both programs: check-config must exit 1
# with the message on stderr, and emhostd must exit 1 at start-up with the
# same message in its log.  A good configuration passes check-config and
# emhostd serves it.  --offline validates without contacting any database:
# a required database that is down fails the default check (and emhostd)
# and passes --offline.  Service modules are the fixtures of t_services
# (tests/daemon/.libs); no test server is needed.
set -u
if [ -z "${EMH_BUILDDIR:-}" ] || [ -z "${EMH_SRCDIR:-}" ]; then
	echo "Bail out! EMH_BUILDDIR / EMH_SRCDIR are not set (run through make check)"
	exit 1
fi
. "$EMH_SRCDIR/tests/tap.sh"

emhost="$EMH_BUILDDIR/core/cli/emhost"
emhostd="$EMH_BUILDDIR/core/daemon/emhostd"
plugins="$EMH_BUILDDIR/plugins-build"
fx="$EMH_BUILDDIR/tests/daemon/.libs"
[ -f "$fx/fx_good.so" ] || { echo "Bail out! fixture modules not built: $fx/fx_good.so"; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/emh-preflight.XXXXXX") || { echo "Bail out! mktemp failed"; exit 1; }
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM
for v in $(env | sed -n 's/^\(EMH_CONTEXT_[A-Za-z0-9_]*\)=.*/\1/p'); do unset "$v"; done
unset EMH_CONFIG EMH_DEFAULT_CONTEXT EMH_PLUGIN_DIR EMH_SERVICE_DIR 2>/dev/null || true

# conf NAME CONTEXT_EXTRA SERVICES SERVER: write $tmp/NAME.conf.  Line 5 is the
# services list, so messages can name it.
conf() {
	cat >"$tmp/$1.conf" <<EOF
plugin_dir = "$plugins";
service_dir = "$fx";
contexts = ( { name = "default"; driver = "sqlite"; path = ":memory:"; },
  { name = "analytics_eu"; driver = "sqlite"; path = ":memory:"; } $2 );
services = ( $3 );
server = { $4 };
EOF
}

# check NAME [ARGS]: emhost check-config on NAME.conf; $st, $tmp/out, $tmp/err.
check() {
	f=$1; shift
	"$emhost" check-config "$@" -c "$tmp/$f.conf" >"$tmp/out" 2>"$tmp/err"
	st=$?
}

# daemon NAME: emhostd on NAME.conf until it exits or is ready (then stopped);
# $dst is its exit status or "listening", its log in $tmp/log.
daemon() {
	rm -f "$tmp/ready" "$tmp/status" "$tmp/pid"
	(
		timeout 300 "$emhostd" -q -c "$tmp/$1.conf" --ready-file "$tmp/ready" >"$tmp/log" 2>&1 &
		echo $! >"$tmp/pid"
		wait $!
		echo $? >"$tmp/status"
	) &
	while [ ! -s "$tmp/status" ] && [ ! -s "$tmp/ready" ]; do sleep 0.1; done
	dst=listening
	if [ -s "$tmp/ready" ]; then
		kill -TERM "$(cat "$tmp/pid")"
	else
		dst=$(cat "$tmp/status")
	fi
	wait
}

# both_refuse NAME MESSAGE WHAT: check-config and emhostd both exit 1 saying MESSAGE.
both_refuse() {
	check "$1"
	[ "$st" = 1 ]; ok $? "$3: check-config exits 1 (got $st)"
	grep -qF -- "$2" "$tmp/err"; ok $? "$3: check-config says \"$2\""
	[ "$st" = 1 ] && grep -qF -- "$2" "$tmp/err" || { diag "stdout: $(cat "$tmp/out")"; diag "stderr: $(cat "$tmp/err")"; }
	daemon "$1"
	[ "$dst" = 1 ]; ok $? "$3: emhostd refuses to start too (exit $dst)"
	grep -qF -- "$2" "$tmp/log"; ok $? "$3: emhostd says the same"
	[ "$dst" = 1 ] && grep -qF -- "$2" "$tmp/log" || diag "emhostd: $(cat "$tmp/log")"
}

good='{ name = "good"; module = "fx_good"; contexts = { analytics = "analytics_eu"; }; }'

# ---- a good configuration: both accept it ----
conf good "" "$good" 'listen = "127.0.0.1:0"; threads = 2;'
check good
[ "$st" = 0 ]; ok $? "good: check-config exits 0 (got $st)"
[ "$st" = 0 ] || diag "$(cat "$tmp/err")"
grep -qF "server: listen 127.0.0.1:0, 2 threads" "$tmp/out"; ok $? "good: the server section is shown"
daemon good
[ "$dst" = listening ]; ok $? "good: emhostd serves it (got $dst)"
[ "$dst" = listening ] || diag "$(cat "$tmp/log")"

# ---- the cases of issue 13 ----
conf module "" '{ name = "good"; module = "fx_god"; }' ""
both_refuse module "$tmp/module.conf:5: service 'good': no module 'fx_god.so' in $fx (did you mean 'fx_good'?" \
	"misspelt service module"

conf remap_ctx "" '{ name = "good"; module = "fx_good"; contexts = { analytics = "analytics_us"; }; }' ""
both_refuse remap_ctx "service 'good' needs context 'analytics_us' (declared as 'analytics', remapped at $tmp/remap_ctx.conf:5); contexts: default, analytics_eu" \
	"remap to an unknown context"

conf remap_key "" '{ name = "good"; module = "fx_good"; contexts = { analytics = "analytics_eu"; ledger = "default"; }; }' ""
both_refuse remap_key "$tmp/remap_key.conf:5: service 'good' remaps context 'ledger' but declares no such context (declares: analytics, default)" \
	"remap key the module does not declare"

conf listen "" "$good" 'listen = "localhost:99999";'
both_refuse listen "listen address 'localhost:99999': bad port '99999'" "listen = \"localhost:99999\""

conf threads "" "$good" 'listen = "127.0.0.1:0"; threads = 0;'
both_refuse threads "$tmp/threads.conf:6: server.threads: 'threads' must be in [1, 2147483647], got 0" "server.threads = 0"

conf drvier ', { name = "x"; drvier = "sqlite"; path = ":memory:"; }' "$good" ""
both_refuse drvier "$tmp/drvier.conf:4: contexts.[2].drvier: unknown key 'drvier' (did you mean 'driver'?" \
	"a misspelt driver key is reported, not the missing driver"
grep -qF "has no" "$tmp/err"; [ $? -ne 0 ]; ok $? "drvier: the missing driver is not what is reported"

# ---- required databases: reachability by default, none contacted with --offline ----
conf required ', { name = "gone"; driver = "sqlite"; path = "/nonexistent-emh-dir/x.db"; required = true; }' \
	"$good" 'listen = "127.0.0.1:0";'
both_refuse required "required context 'gone': cannot open sqlite database '/nonexistent-emh-dir/x.db'" \
	"a required database that is unreachable"
check required --offline
[ "$st" = 0 ]; ok $? "required, --offline: check-config exits 0 (got $st)"
[ "$st" = 0 ] || diag "$(cat "$tmp/err")"
grep -qF "context gone (driver sqlite, required, not contacted)" "$tmp/out"; ok $? "required, --offline: says it was not contacted"
grep -qF "required databases not contacted (--offline)" "$tmp/out"; ok $? "required, --offline: and says so at the end"
check good
grep -qE "reachable|contacted" "$tmp/out"; [ $? -ne 0 ]; ok $? "no required context: nothing said about reachability"

if [ -f "$plugins/postgres.so" ]; then
	# nothing listens on port 1: refused at once, no server needed
	conf pgdown ', { name = "pg"; driver = "postgres"; host = "127.0.0.1"; port = 1; required = true; }' "$good" \
		'listen = "127.0.0.1:0";'
	both_refuse pgdown "required context 'pg': " "a required PostgreSQL that is down"
	check pgdown --offline
	[ "$st" = 0 ]; ok $? "PostgreSQL down, --offline: check-config exits 0 (got $st)"
	[ "$st" = 0 ] || diag "$(cat "$tmp/err")"
else
	diag "SKIPPING the PostgreSQL case: $plugins/postgres.so is not built (configure found no libpq)"
	skip 5 "postgres plugin not built"
fi

conf reachable ', { name = "here"; driver = "sqlite"; path = "'"$tmp"'/here.db"; required = true; }' "$good" ""
check reachable
grep -qF "context here (driver sqlite, required, reachable)" "$tmp/out"; ok $? "a required database that answers is reported reachable"

"$emhost" contexts --offline -c "$tmp/good.conf" >/dev/null 2>"$tmp/err"
[ $? = 2 ]; ok $? "--offline with another command is a usage error"
grep -qF "offline applies to check-config only" "$tmp/err"; ok $? "saying so"

done_testing
