#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# scripts/servers/pg.sh: start/stop/restart a throwaway PostgreSQL cluster for tests.
#
# usage: pg.sh start|stop|restart|status STATE_DIR
#
# start   initdb a fresh cluster under STATE_DIR/pg/ (or a short directory under
#         /tmp when the server's user cannot reach STATE_DIR or the socket path
#         would be too long), start it on a free 127.0.0.1 port with its unix
#         socket in that directory, create the role `emh` (random password,
#         scram-sha-256 on TCP) and the database `emh_test`, and append to
#         STATE_DIR/env:
#           EMH_TEST_PG_URL='postgres://emh:PASSWORD@127.0.0.1:PORT/emh_test'
#           EMH_TEST_PG_HOST  EMH_TEST_PG_PORT  EMH_TEST_PG_USER
#           EMH_TEST_PG_PASSWORD  EMH_TEST_PG_DATABASE  EMH_TEST_PG_KIND
#         Already running: does nothing.
# stop    stops the server by the PID it recorded (fast shutdown); keeps the data.
#         Idempotent.
# restart stops it and starts it again on the SAME port with the same data
#         (and the standby, when a `stop` stopped it).
# status  exit 0 when running.
# standby-stop / standby-start  stop the streaming standby, start it again
#         on the same port (replica tests; nothing else uses it).
#
# Unless EMH_TEST_PG_STANDBY=0, `start` also makes a streaming standby of the
# new cluster (pg_basebackup -R over the unix socket, STATE_DIR/pg standby
# data beside the primary's) on another free port and appends
#           EMH_TEST_PG_STANDBY_URL='postgres://emh:PASSWORD@127.0.0.1:PORT2/emh_test'
#           EMH_TEST_PG_STANDBY_PORT
# (the role emh may call pg_wal_replay_pause/_resume and pg_read_all_stats).
# `stop` stops both.
#
# With EMH_TEST_PG_EXTERNAL_URL set, `start` only records that URL (an
# existing server you manage); stop/restart then do nothing.
# EMH_PG_MAX_CONNECTIONS sets the new cluster's max_connections (default 100).
#
# As root, the server runs as the `postgres` user (it refuses to run as
# root), and STATE_DIR and STATE_DIR/pg get o+x so that user can traverse
# them; as another user it runs as that user.  Binaries: $PG_BINDIR, else the
# newest /usr/lib/postgresql/*/bin, else pg_config --bindir, else PATH; when
# missing, root installs them with apt-get (postgresql libpq-dev).
# Quiet on success; server output goes to STATE_DIR/pg/log.
set -euo pipefail

die() { echo "pg.sh: $*" >&2; exit 1; }

[ $# -eq 2 ] || die "usage: pg.sh start|stop|restart|status STATE_DIR"
CMD=$1
mkdir -p "$2" || die "cannot create state directory '$2'"
STATE_DIR=$(cd "$2" && pwd)
D=$STATE_DIR/pg
DB=emh_test
ROLE=emh
mkdir -p "$D"

IS_ROOT=0
[ "$(id -u)" -eq 0 ] && IS_ROOT=1

# ---- helpers ----

# True when something accepts TCP connections on 127.0.0.1:$1.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {
	local p
	for _ in $(seq 1 200); do
		p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
		port_open "$p" || { echo "$p"; return 0; }
	done
	die "no free loopback port found"
}

# Run a server binary as the account that owns the cluster.
as_pg() {
	if [ "$IS_ROOT" -eq 1 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

find_bindir() {
	local d
	if [ -n "${PG_BINDIR:-}" ]; then
		[ -x "$PG_BINDIR/initdb" ] || die "\$PG_BINDIR='$PG_BINDIR' has no initdb"
		echo "$PG_BINDIR"; return 0
	fi
	d=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
	if [ -n "$d" ] && [ -x "$d/initdb" ]; then echo "$d"; return 0; fi
	if command -v pg_config >/dev/null 2>&1; then
		d=$(pg_config --bindir 2>/dev/null || true)
		if [ -n "$d" ] && [ -x "$d/initdb" ]; then echo "$d"; return 0; fi
	fi
	d=$(command -v initdb 2>/dev/null || true)
	if [ -n "$d" ]; then dirname "$d"; return 0; fi
	return 1
}

# Binaries, installed through apt when root and missing.
bindir() {
	local d
	if d=$(find_bindir); then echo "$d"; return 0; fi
	if [ "$IS_ROOT" -eq 1 ] && command -v apt-get >/dev/null 2>&1; then
		{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql libpq-dev; } \
			>>"$D/log.install" 2>&1 || die "apt-get install postgresql libpq-dev failed (see $D/log.install)"
		d=$(find_bindir) || die "initdb still missing after installing postgresql"
		echo "$d"; return 0
	fi
	die "PostgreSQL server binaries not found: install them (Debian: apt-get install postgresql libpq-dev) or set PG_BINDIR"
}

# Directory holding the cluster (data/ and the unix socket).
root_dir() { cat "$D/root" 2>/dev/null || echo "$D"; }

pid_alive() { [ -f "$D/pid" ] && kill -0 "$(cat "$D/pid")" 2>/dev/null; }

# Can the server's account reach and write directory $1?
usable_by_pg() {
	if [ "$IS_ROOT" -eq 1 ]; then
		runuser -u postgres -- test -x "$1" -a -w "$1" 2>/dev/null
	else
		test -x "$1" -a -w "$1"
	fi
}

# Pick where the cluster lives: STATE_DIR/pg/cluster when the server's user can
# reach it and the socket path fits in sun_path (107 bytes), else a fresh
# directory under /tmp recorded in $D/root.
choose_root() {
	local r=$D/cluster sock_len
	rm -f "$D/root"
	mkdir -p "$r"
	if [ "$IS_ROOT" -eq 1 ]; then
		chown postgres: "$r"
		chmod 700 "$r"
		# Let the server's user traverse (not read) the state directory.
		chmod o+x "$STATE_DIR" "$D" 2>/dev/null || true
	fi
	sock_len=$(printf '%s/.s.PGSQL.65535' "$r" | wc -c)
	if [ "$sock_len" -le 100 ] && usable_by_pg "$r"; then
		echo "$r" >"$D/root"
		return 0
	fi
	rmdir "$r" 2>/dev/null || true
	r=$(mktemp -d /tmp/emh-pg.XXXXXX) || die "cannot create a directory under /tmp"
	if [ "$IS_ROOT" -eq 1 ]; then chown postgres: "$r"; fi
	chmod 700 "$r"
	echo "$r" >"$D/root"
}

rotate_log() { [ -f "$D/log" ] && mv -f "$D/log" "$D/log.1"; : >"$D/log"; }

# Start the cluster in $(root_dir)/data on port $1; returns 1 when the port was
# taken (so the caller can pick another), dies on other failures.
launch() {
	local port=$1 data=${2:-data} tag=${3:-} bin r pid
	bin=$(cat "$D/bindir")
	r=$(root_dir)
	# pg_ctl hands the server our stdout: the log is opened by this shell, so
	# the server's user needs no access to STATE_DIR.
	if ! as_pg "$bin/pg_ctl" -D "$r/$data" -w -t 60 -s \
		-o "-p $port -k $r -c listen_addresses=127.0.0.1" start >>"$D/log" 2>&1 </dev/null; then
		if grep -q 'could not bind\|Address already in use' "$D/log"; then
			return 1
		fi
		tail -n 20 "$D/log" >&2
		die "the server did not start (log above, in $D/log)"
	fi
	pid=$(head -n 1 "$r/$data/postmaster.pid" 2>/dev/null || true)
	[ -n "$pid" ] || die "the server started but wrote no postmaster.pid"
	echo "$pid" >"$D/${tag}pid"
	echo "$port" >"$D/${tag}port"
	for _ in $(seq 1 300); do
		port_open "$port" && return 0
		sleep 0.1
	done
	stop_server "$tag"
	die "the server does not accept TCP connections on 127.0.0.1:$port (see $D/log)"
}

psql_admin() { # sql [database]
	local bin r
	bin=$(cat "$D/bindir")
	r=$(root_dir)
	as_pg "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$r" -p "$(cat "$D/port")" -U postgres -d "${2:-postgres}" -c "$1" \
		>>"$D/log" 2>&1 </dev/null
}

record_env() { # url host port user password database kind
	{
		echo "export EMH_TEST_PG_URL='$1'"
		echo "export EMH_TEST_PG_HOST='$2'"
		echo "export EMH_TEST_PG_PORT='$3'"
		echo "export EMH_TEST_PG_USER='$4'"
		echo "export EMH_TEST_PG_PASSWORD='$5'"
		echo "export EMH_TEST_PG_DATABASE='$6'"
		echo "export EMH_TEST_PG_KIND='$7'"
	} >>"$STATE_DIR/env"
}

stop_server() { # [tag: "standby-"]
	local pid tag=${1:-}
	[ -f "$D/${tag}pid" ] || return 0
	pid=$(cat "$D/${tag}pid")
	if kill -0 "$pid" 2>/dev/null; then
		# SIGINT = fast shutdown: sessions are terminated, data is kept.
		kill -INT "$pid" 2>/dev/null || true
		for _ in $(seq 1 300); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			kill -QUIT "$pid" 2>/dev/null || true
			for _ in $(seq 1 50); do
				kill -0 "$pid" 2>/dev/null || break
				sleep 0.1
			done
		fi
		kill -0 "$pid" 2>/dev/null && die "server (pid $pid) did not stop"
	fi
	rm -f "$D/${tag}pid"
}

# A streaming standby of the running primary: pg_basebackup -R over the unix
# socket (trust), started on its own free port with hot_standby on.
start_standby() {
	local bin r port pw tries=0
	bin=$(cat "$D/bindir")
	r=$(root_dir)
	pw=$(cat "$D/password")
	as_pg "$bin/pg_basebackup" -h "$r" -p "$(cat "$D/port")" -U postgres -D "$r/standby" -R -X stream \
		--no-sync -c fast >>"$D/log" 2>&1 </dev/null ||
		{ tail -n 20 "$D/log" >&2; die "pg_basebackup failed (log above)"; }
	while :; do
		tries=$((tries + 1))
		[ "$tries" -le 5 ] || die "no free port for the standby after 5 attempts (see $D/log)"
		port=$(free_port)
		launch "$port" standby standby- && break
	done
	{
		echo "export EMH_TEST_PG_STANDBY_URL='postgres://$ROLE:$pw@127.0.0.1:$port/$DB'"
		echo "export EMH_TEST_PG_STANDBY_PORT='$port'"
	} >>"$STATE_DIR/env"
}

# ---- commands ----

start() {
	local bin r port pw tries=0
	if [ "$(cat "$D/kind" 2>/dev/null || true)" = external ] || pid_alive; then
		return 0
	fi
	if [ -n "${EMH_TEST_PG_EXTERNAL_URL:-}" ]; then
		echo external >"$D/kind"
		record_env "$EMH_TEST_PG_EXTERNAL_URL" "" "" "" "" "" external
		return 0
	fi
	bin=$(bindir)
	echo "$bin" >"$D/bindir"
	if [ "$IS_ROOT" -eq 1 ] && ! id postgres >/dev/null 2>&1; then
		die "running as root needs the 'postgres' account to run the server (install the postgresql package, or run this script as an ordinary user)"
	fi
	# A fresh cluster every start: remove the one a previous start left.
	r=$(cat "$D/root" 2>/dev/null || true)
	[ -n "$r" ] && [ -d "$r" ] && rm -rf "$r"
	choose_root
	r=$(root_dir)
	rotate_log
	pw=emh$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
	as_pg "$bin/initdb" -D "$r/data" -U postgres -E UTF8 --locale=C \
		--auth-local=trust --auth-host=scram-sha-256 --no-sync >>"$D/log" 2>&1 </dev/null ||
		{ tail -n 20 "$D/log" >&2; die "initdb failed (log above)"; }
	# Loopback only; password (SCRAM) on TCP so clients really authenticate;
	# the unix socket (trust) is for this script's setup only.
	cat >"$r/data/pg_hba.conf" <<-EOF
		local all all trust
		local replication all trust
		host all all 127.0.0.1/32 scram-sha-256
	EOF
	cat >>"$r/data/postgresql.conf" <<-EOF
		# emhost test server
		listen_addresses = '127.0.0.1'
		fsync = off
		synchronous_commit = off
		full_page_writes = off
		max_connections = ${EMH_PG_MAX_CONNECTIONS:-100}
		password_encryption = 'scram-sha-256'
		log_min_messages = warning
	EOF
	if [ "$IS_ROOT" -eq 1 ]; then chown postgres: "$r/data/pg_hba.conf" "$r/data/postgresql.conf"; fi
	while :; do
		tries=$((tries + 1))
		[ "$tries" -le 5 ] || die "no free port after 5 attempts (see $D/log)"
		port=$(free_port)
		launch "$port" && break
	done
	psql_admin "CREATE ROLE $ROLE LOGIN PASSWORD '$pw'" ||
		{ stop_server; die "cannot create role '$ROLE' (see $D/log)"; }
	psql_admin "CREATE DATABASE $DB OWNER $ROLE ENCODING 'UTF8' TEMPLATE template0" ||
		{ stop_server; die "cannot create database '$DB' (see $D/log)"; }
	echo "$pw" >"$D/password"
	chmod 600 "$D/password"
	echo postgres >"$D/kind"
	record_env "postgres://$ROLE:$pw@127.0.0.1:$port/$DB" 127.0.0.1 "$port" "$ROLE" "$pw" "$DB" postgres
	if [ "${EMH_TEST_PG_STANDBY:-1}" != 0 ]; then
		# The replica tests pause replay and read the standby's lag as emh.
		psql_admin "GRANT EXECUTE ON FUNCTION pg_wal_replay_pause() TO $ROLE;
			GRANT EXECUTE ON FUNCTION pg_wal_replay_resume() TO $ROLE; GRANT pg_read_all_stats TO $ROLE" "$DB" ||
			{ stop_server; die "cannot grant the replay functions to '$ROLE' (see $D/log)"; }
		start_standby
	fi
}

case $CMD in
start)
	start
	;;
stop)
	[ "$(cat "$D/kind" 2>/dev/null || true)" = external ] && exit 0
	stop_server standby-
	stop_server
	;;
standby-stop)
	stop_server standby-
	;;
standby-start)
	[ -f "$D/standby-port" ] || die "no standby to start: '$STATE_DIR' has none (run start first)"
	pid_alive_tag() { [ -f "$D/standby-pid" ] && kill -0 "$(cat "$D/standby-pid")" 2>/dev/null; }
	pid_alive_tag && exit 0
	port=$(cat "$D/standby-port")
	for _ in $(seq 1 100); do port_open "$port" || break; sleep 0.1; done
	launch "$port" standby standby- || die "port $port was taken by another process; cannot restart the standby on it"
	;;
restart)
	kind=$(cat "$D/kind" 2>/dev/null || true)
	[ -n "$kind" ] || die "nothing to restart: '$STATE_DIR' has no pg server (run start first)"
	[ "$kind" != external ] || exit 0
	port=$(cat "$D/port")
	stop_server
	for _ in $(seq 1 100); do port_open "$port" || break; sleep 0.1; done
	port_open "$port" && die "port $port is still in use after stopping the server"
	launch "$port" || die "port $port was taken by another process; cannot restart on it"
	# a `stop` stopped the standby too: bring it back on its port
	if [ -f "$D/standby-port" ] && ! { [ -f "$D/standby-pid" ] && kill -0 "$(cat "$D/standby-pid")" 2>/dev/null; }; then
		sport=$(cat "$D/standby-port")
		for _ in $(seq 1 100); do port_open "$sport" || break; sleep 0.1; done
		launch "$sport" standby standby- || die "port $sport was taken; cannot restart the standby on it"
	fi
	;;
status)
	if [ "$(cat "$D/kind" 2>/dev/null || true)" = external ]; then
		echo "pg: external"
	elif pid_alive; then
		echo "pg: up on 127.0.0.1:$(cat "$D/port")"
	else
		echo "pg: down"; exit 1
	fi
	;;
*)
	die "unknown command '$CMD' (start, stop, restart, status)"
	;;
esac
