#!/bin/sh
# SPDX-License-Identifier: MIT
# tests/daemon/listen.sh: emhostd refuses a listen address it cannot take whole.
#
# The parser once cut the port to 15 bytes and the host to 255, so that
# "0000000000000008080" became port 0 and the daemon listened on a port
# nobody asked for.  Each case here must end emhostd at start-up (exit 1)
# with the reason in its log; one that starts listening instead is stopped.
set -u
if [ -z "${EMH_BUILDDIR:-}" ] || [ -z "${EMH_SRCDIR:-}" ]; then
	echo "Bail out! EMH_BUILDDIR / EMH_SRCDIR are not set (run through make check)"
	exit 1
fi
. "$EMH_SRCDIR/tests/tap.sh"

emhostd="$EMH_BUILDDIR/core/daemon/emhostd"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/emh-listen.XXXXXX") || { echo "Bail out! mktemp failed"; exit 1; }
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM
cat >"$tmp/emhost.conf" <<EOF || { echo "Bail out! cannot write $tmp/emhost.conf"; exit 1; }
plugin_dir = "$EMH_BUILDDIR/plugins-build";
contexts = ( { name = "default"; driver = "sqlite"; path = ":memory:"; } );
EOF

# start ADDR: run emhostd -l ADDR until it exits or writes its ready file
# (then it is stopped).  st is its exit status, or "listening".
start() {
	rm -f "$tmp/ready" "$tmp/status" "$tmp/pid"
	(
		timeout 300 "$emhostd" -q -c "$tmp/emhost.conf" -l "$1" --ready-file "$tmp/ready" >"$tmp/log" 2>&1 &
		echo $! >"$tmp/pid"
		wait $!
		echo $? >"$tmp/status"
	) &
	while [ ! -s "$tmp/status" ] && [ ! -s "$tmp/ready" ]; do sleep 0.1; done
	st=listening
	if [ -s "$tmp/ready" ]; then
		diag "emhostd listens on $(cat "$tmp/ready")"
		kill -TERM "$(cat "$tmp/pid")" # timeout hands it on to emhostd
	else
		st=$(cat "$tmp/status")
	fi
	wait
}

# refused ADDR REASON: emhostd -l ADDR exits 1 at start-up and logs REASON.
refused() {
	start "$1"
	what=$(printf '%.40s' "$1")
	[ ${#1} -gt 40 ] && what="$what... (${#1} bytes)"
	[ "$st" = 1 ]
	ok $? "-l '$what': exit status 1 (got $st)"
	grep -qF "$2" "$tmp/log"
	ok $? "-l '$what': the log says \"$2\""
	[ "$st" = 1 ] && grep -qF "$2" "$tmp/log" || diag "$(cat "$tmp/log")"
}

long_host=$(printf '1%.0s' $(seq 1 300))
refused "0000000000000008080" "bad port '0000000000000008080'"
refused "127.0.0.1:0000000000000008080" "bad port '0000000000000008080'"
refused "[::1]:00000000000000000000000080" "bad port '00000000000000000000000080'"
refused "$long_host:0" "host is longer than 255 bytes"
refused "[$long_host]:0" "host is longer than 255 bytes"
refused "127.0.0.1:65536" "bad port '65536'"
refused "127.0.0.1:" "bad port ''"
done_testing
