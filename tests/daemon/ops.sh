#!/bin/sh
# SPDX-License-Identifier: MIT
# tests/daemon/ops.sh: emhostd as an operator runs it.
#
#   - a second emhostd on an address in use exits 1 saying "address already
#     in use" (no SO_REUSEPORT unless server.reuse_port = true: then both
#     start, on purpose);
#   - stderr that is the journal (JOURNAL_STREAM naming its device and
#     inode, as systemd sets it) gets "<N>" syslog priorities and no
#     timestamp of the daemon's own; another stderr gets timestamps;
#   - SIGHUP reloads instead of killing, and `emhost reload --pid-file`
#     sends it to the daemon of a pid file (and refuses a stale one).
set -u
if [ -z "${EMH_BUILDDIR:-}" ] || [ -z "${EMH_SRCDIR:-}" ]; then
	echo "Bail out! EMH_BUILDDIR / EMH_SRCDIR are not set (run through make check)"
	exit 1
fi
. "$EMH_SRCDIR/tests/tap.sh"

emhostd="$EMH_BUILDDIR/core/daemon/emhostd"
emhost="$EMH_BUILDDIR/core/cli/emhost"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/emh-ops.XXXXXX") || { echo "Bail out! mktemp failed"; exit 1; }
pids=""
cleanup() {
	for p in $pids; do kill -KILL "$p" 2>/dev/null; done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# conf NAME [server keys]: a configuration with one in-memory SQLite context.
conf() {
	cat >"$tmp/$1.conf" <<EOF || { echo "Bail out! cannot write $tmp/$1.conf"; exit 1; }
plugin_dir = "$EMH_BUILDDIR/plugins-build";
contexts = ( { name = "default"; driver = "sqlite"; path = ":memory:"; } );
server = { threads = 1; $2 };
EOF
}

# start NAME CONF ADDR [extra args]: emhostd in the background, its pid in
# $tmp/NAME.pid (written by the daemon), its output in $tmp/NAME.log;
# returns once it is ready (0) or has exited (1; its status in $tmp/NAME.status).
start() {
	name=$1 cf=$2 addr=$3
	shift 3
	rm -f "$tmp/$name.ready" "$tmp/$name.status" "$tmp/$name.pid"
	(
		timeout 300 "$emhostd" -c "$tmp/$cf.conf" -l "$addr" --ready-file "$tmp/$name.ready" \
			--pid-file "$tmp/$name.pid" "$@" 2>>"$tmp/$name.log" &
		echo $! >"$tmp/$name.shell"
		wait $!
		echo $? >"$tmp/$name.status"
	) &
	i=0
	while [ ! -s "$tmp/$name.status" ] && [ ! -s "$tmp/$name.ready" ] && [ $i -lt 600 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	if [ -s "$tmp/$name.ready" ]; then
		pids="$pids $(cat "$tmp/$name.pid")"
		return 0
	fi
	return 1
}

# stop NAME: SIGTERM, and wait for its status.
stop() {
	kill -TERM "$(cat "$tmp/$1.pid")" 2>/dev/null
	i=0
	while [ ! -s "$tmp/$1.status" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
}

# ---- address in use ----
conf plain ""
start a plain 127.0.0.1:0
ok $? "a first emhostd starts"
addr=$(sed 's|^http://||' "$tmp/a.ready")
start b plain "$addr"
st=$(cat "$tmp/b.status" 2>/dev/null || echo listening)
[ "$st" != listening ] && [ "$st" -ne 0 ]
ok $? "a second emhostd on $addr exits non-zero (status $st)"
grep -q "address already in use" "$tmp/b.log"
ok $? "saying the address is already in use"
[ "$st" = listening ] && stop b
grep -q "address already in use" "$tmp/b.log" || diag "$(cat "$tmp/b.log")"
stop a

conf shared "reuse_port = true;"
start c shared 127.0.0.1:0
addr=$(sed 's|^http://||' "$tmp/c.ready")
start d shared "$addr"
ok $? "with server.reuse_port = true a second one shares $addr on purpose"
grep -q "address shared: server.reuse_port" "$tmp/d.log"
ok $? "and says so when it starts"
stop d
stop c

# ---- journald priorities ----
: >"$tmp/j.log"
JOURNAL_STREAM=$(stat -c '%d:%i' "$tmp/j.log") start j plain 127.0.0.1:0
ok $? "emhostd starts with stderr as the journal"
stop j
grep -q '^<6>info listening on http://' "$tmp/j.log"
ok $? "an info line starts with <6> and no timestamp"
! grep -q 'emhostd:' "$tmp/j.log" && ! grep -qE '^[0-9]{4}-[0-9]{2}-' "$tmp/j.log"
ok $? "no line carries a timestamp or the program name (the journal adds its own)"
: >"$tmp/jw.log"
cat >"$tmp/nosvc.conf" <<EOF
plugin_dir = "$EMH_BUILDDIR/plugins-build";
contexts = ( { name = "default"; driver = "sqlite"; path = ":memory:"; } );
services = ( { name = "nosuchmodule"; } );
EOF
JOURNAL_STREAM=$(stat -c '%d:%i' "$tmp/jw.log") start jw nosvc 127.0.0.1:0
grep -q '^<3>error ' "$tmp/jw.log"
ok $? "an error line starts with <3>"
grep -q '^<3>error ' "$tmp/jw.log" || diag "$(cat "$tmp/jw.log")"
JOURNAL_STREAM=1:2 start k plain 127.0.0.1:0
stop k
grep -qE '^[0-9]{4}-[0-9]{2}-[0-9]{2}T.* emhostd: info listening' "$tmp/k.log"
ok $? "a JOURNAL_STREAM naming another stream than stderr: timestamps as usual"

# ---- SIGHUP and emhost reload ----
start r plain 127.0.0.1:0
pid=$(cat "$tmp/r.pid")
kill -HUP "$pid"
i=0
while ! grep -q "reload: no change" "$tmp/r.log" && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
kill -0 "$pid" 2>/dev/null
ok $? "kill -HUP does not end emhostd"
grep -q "reload: no change" "$tmp/r.log"
ok $? "it reloads and logs the outcome"
cat >>"$tmp/plain.conf" <<EOF
contexts = ( { name = "default"; driver = "sqlite"; path = ":memory:"; },
             { name = "more"; driver = "sqlite"; path = ":memory:"; } );
EOF
# a second 'contexts' in one file is a syntax error: the reload is refused
out=$("$emhost" --pid-file "$tmp/r.pid" reload 2>&1)
ok $? "emhost reload --pid-file exits 0"
case "$out" in *"sent SIGHUP to emhostd (pid $pid)"*) true ;; *) false ;; esac
ok $? "and says whom it signalled"
i=0
while ! grep -q "reload refused" "$tmp/r.log" && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
grep -q "reload refused, the running configuration is kept: $tmp/plain.conf:" "$tmp/r.log"
ok $? "the daemon refused the broken file, naming it"
stop r
st=$(cat "$tmp/r.status")
[ "$st" = 0 ]
ok $? "and stops with status 0 after its reloads (got $st)"
echo "$pid" >"$tmp/stale.pid"
"$emhost" --pid-file "$tmp/stale.pid" reload >"$tmp/stale.out" 2>&1
[ $? -eq 1 ]
ok $? "emhost reload with a stale pid file exits 1"
grep -qE "stale pid file|no process|No such process" "$tmp/stale.out"
ok $? "saying why"
echo $$ >"$tmp/other.pid"
"$emhost" --pid-file "$tmp/other.pid" reload >"$tmp/other.out" 2>&1
[ $? -eq 1 ] && grep -q "not emhostd" "$tmp/other.out"
ok $? "a pid file naming another program is refused (no SIGHUP to it)"
done_testing
