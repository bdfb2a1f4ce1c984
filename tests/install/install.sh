#!/bin/sh
# SPDX-License-Identifier: MIT
# tests/install/install.sh: what `./configure --prefix=P && make install`
# gives an operator.  A scratch build of this source tree is configured for a
# temporary prefix (SQLite only, so it stays quick) and installed there; then
#
#   - the configuration, its data directory, the systemd unit, the man pages
#     and the programs are where they belong, paths substituted;
#   - the installed emhostd, started with no -c, no environment at all (env -i)
#     and only -l for a free port, serves the bundled services from the
#     installed configuration, plugins and service modules;
#   - emhost check-config accepts the installed configuration unaided;
#   - a reinstall keeps an edited configuration (the new one goes beside it);
#   - the man pages format without a warning (groff), when groff is there.
#
# EMH_TEST_INSTALL=0 skips it (a scratch build costs a configure and a build).
set -u
if [ -z "${EMH_BUILDDIR:-}" ] || [ -z "${EMH_SRCDIR:-}" ]; then
	echo "Bail out! EMH_BUILDDIR / EMH_SRCDIR are not set (run through make check)"
	exit 1
fi
. "$EMH_SRCDIR/tests/tap.sh"
if [ "${EMH_TEST_INSTALL:-1}" = 0 ]; then
	echo "1..0 # SKIP EMH_TEST_INSTALL=0"
	exit 0
fi
command -v curl >/dev/null 2>&1 || { echo "1..0 # SKIP no curl program to talk to the daemon"; exit 0; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/emh-install.XXXXXX") || { echo "Bail out! mktemp failed"; exit 1; }
chmod 755 "$tmp"
prefix="$tmp/prefix"
daemon=""
cleanup() {
	[ -n "$daemon" ] && kill -KILL "$daemon" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- configure, build and install ----
mkdir "$tmp/build"
(cd "$tmp/build" && "$EMH_SRCDIR/configure" -q --prefix="$prefix" --without-postgres --without-mysql \
	--without-mongo --disable-dependency-tracking >"$tmp/configure.out" 2>&1 &&
	make -j2 install >"$tmp/make.out" 2>&1)
st=$?
ok $st "configure --prefix=$prefix && make install"
if [ $st -ne 0 ]; then
	diag "$(tail -30 "$tmp/make.out" 2>/dev/null || cat "$tmp/configure.out")"
	done_testing
	exit 1
fi

# ---- what is where ----
conf="$prefix/etc/emhost/emhost.conf"
[ -f "$conf" ]
ok $? "the configuration is installed as etc/emhost/emhost.conf"
grep -q "\${EMH_DATA:-$prefix/var/lib/emhost}/app.db" "$conf"
ok $? "its data directory is the prefix's var/lib/emhost"
! grep -qE '^[[:space:]]*(plugin_dir|service_dir)' "$conf"
ok $? "it names no plugin or service directory (the compiled-in ones apply)"
[ -d "$prefix/var/lib/emhost" ]
ok $? "the data directory exists"
unit="$prefix/lib/systemd/system/emhostd.service"
grep -q "^ExecStart=$prefix/bin/emhostd -c $prefix/etc/emhost/emhost.conf " "$unit"
ok $? "the systemd unit runs the installed emhostd on the installed configuration"
grep -q '^Type=notify$' "$unit" && grep -q '^ExecReload=/bin/kill -HUP \$MAINPID$' "$unit" &&
	grep -q '^DynamicUser=yes$' "$unit" && grep -q '^ProtectSystem=strict$' "$unit"
ok $? "Type=notify, ExecReload sends SIGHUP, an unprivileged user, a read-only system"
if command -v systemd-analyze >/dev/null 2>&1; then
	out=$(systemd-analyze verify --man=no "$unit" 2>&1)
	st=$?
	[ $st -eq 0 ] && [ -z "$out" ]
	ok $? "systemd-analyze verify finds nothing to say about the unit"
	[ -n "$out" ] && diag "$out"
else
	skip 1 "systemd-analyze is not installed"
fi
for m in man1/emhost.1 man8/emhostd.8 man5/emhost.conf.5; do
	[ -f "$prefix/share/man/$m" ]
	ok $? "man page $m is installed"
done
if command -v groff >/dev/null 2>&1; then
	for m in man1/emhost.1 man8/emhostd.8 man5/emhost.conf.5; do
		out=$(groff -man -z -ww "$prefix/share/man/$m" 2>&1)
		[ -z "$out" ]
		ok $? "$m formats without a warning"
		[ -n "$out" ] && diag "$out"
	done
	grep -q "$prefix/etc/emhost/emhost.conf" "$prefix/share/man/man8/emhostd.8"
	ok $? "emhostd(8) names the installed configuration"
else
	skip 4 "groff is not installed"
fi
v=$("$prefix/bin/emhostd" --version)
case "$v" in "emhostd $(sed -n 's/^PACKAGE_VERSION=//p' "$tmp/build/config.status" 2>/dev/null | tr -d "'")"*) true ;; *) [ -n "$v" ] ;; esac
ok $? "the installed emhostd runs ($v)"

# ---- check-config with nothing but the installed files ----
env -i PATH=/usr/bin:/bin "$prefix/bin/emhost" -c "$conf" check-config >"$tmp/check.out" 2>&1
st=$?
ok $st "emhost check-config accepts the installed configuration with no environment"
[ $st -ne 0 ] && diag "$(cat "$tmp/check.out")"

# ---- the installed daemon, no environment ----
(env -i PATH=/usr/bin:/bin "$prefix/bin/emhostd" -l 127.0.0.1:0 --ready-file "$tmp/ready" >"$tmp/daemon.log" 2>&1 &
	echo $! >"$tmp/daemon.pid"; wait $!; echo $? >"$tmp/daemon.status") &
i=0
while [ ! -s "$tmp/ready" ] && [ ! -s "$tmp/daemon.status" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
daemon=$(cat "$tmp/daemon.pid")
[ -s "$tmp/ready" ]
ok $? "the installed emhostd starts with no -c and no environment"
if [ -s "$tmp/ready" ]; then
	url=$(cat "$tmp/ready")
	code=$(curl -s -o "$tmp/u.json" -w '%{http_code}' -X POST "$url/users" \
		-d '{"name":"Ada","email":"ada@example.com"}')
	[ "$code" = 201 ]
	ok $? "POST /users -> 201 (got $code)"
	code=$(curl -s -o "$tmp/e.json" -w '%{http_code}' -X POST "$url/analytics/events" \
		-d '{"user_id":1,"type":"signup"}')
	[ "$code" = 201 ]
	ok $? "POST /analytics/events -> 201 (got $code)"
	code=$(curl -s -o "$tmp/p.json" -w '%{http_code}' "$url/profile/1")
	[ "$code" = 200 ] && grep -q '"Ada"' "$tmp/p.json"
	ok $? "GET /profile/1 -> 200 with the user (got $code)"
	[ -f "$prefix/var/lib/emhost/app.db" ] && [ -f "$prefix/var/lib/emhost/analytics.db" ]
	ok $? "the databases are in the installed data directory"
	kill -TERM "$daemon"
	i=0
	while [ ! -s "$tmp/daemon.status" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
	[ "$(cat "$tmp/daemon.status" 2>/dev/null)" = 0 ]
	ok $? "and stops with status 0"
else
	diag "$(cat "$tmp/daemon.log")"
	skip 5 "the daemon did not start"
fi
daemon=""

# ---- a reinstall keeps an edited configuration ----
echo "# edited by the operator" >>"$conf"
(cd "$tmp/build" && make install >"$tmp/make2.out" 2>&1)
ok $? "make install again"
grep -q "edited by the operator" "$conf"
ok $? "keeps the edited configuration"
cmp -s "$tmp/build/dist/emhost.conf" "$prefix/etc/emhost/emhost.conf.default"
ok $? "and puts the shipped one beside it as emhost.conf.default"
done_testing
