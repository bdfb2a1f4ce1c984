#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# scripts/servers/mariadb.sh: start/stop/restart a throwaway MariaDB server for tests.
#
# usage: mariadb.sh start|stop|restart|status STATE_DIR
#
# start   initialises a data directory (first time only), starts mariadbd on a
#         free loopback port, waits until it answers, creates the database
#         emh_test and a password user emh@127.0.0.1 / emh@localhost (first
#         time only) and appends to STATE_DIR/env:
#           EMH_TEST_MYSQL_URL='mysql://emh:PASSWORD@127.0.0.1:PORT/emh_test'
#           EMH_TEST_MYSQL_PORT='PORT'   EMH_TEST_MYSQL_SOCKET='.../sock'
#         With EMH_TEST_MYSQL_URL already set (a MySQL 8 server, say) start
#         only records it and stop/restart do nothing.
# stop    stops the server by the PID it recorded (idempotent); data kept.
# restart stop + start on the SAME port with the same data (fault tests).
# replica-stop / replica-start  stop the GTID replica, start it again on the
#         same port (replica tests; nothing else uses it).
#
# Unless EMH_TEST_MYSQL_REPLICA=0, the server writes a binary log (ROW,
# server_id 1) and `start` also runs a GTID replica of it (server_id 2,
# read_only, its own data directory initialised once, replicating from the
# first binlog event, so it gets the database and users too) and appends
#           EMH_TEST_MYSQL_REPLICA_URL='mysql://emh:PASSWORD@127.0.0.1:PORT2/emh_test'
#           EMH_TEST_MYSQL_REPLICA_PORT
#           EMH_TEST_MYSQL_ADMIN_URL='mysql://emh_admin:PASSWORD@127.0.0.1:PORT/emh_test'
#           EMH_TEST_MYSQL_REPLICA_ADMIN_URL (the same user on the replica)
# (emh_admin may stop and start the replica's SQL thread: the tests' pause).
# `stop` stops both.
#
# Layout: STATE_DIR/mariadb/{pid,port,password,log,rundir}; the server's own
# files (data/, tmp/, sock) live in the run directory, which is
# STATE_DIR/mariadb/run, or, when run as root and the mysql user cannot reach
# STATE_DIR (a mode 0700 mktemp directory) or the socket path would be too
# long, a directory /tmp/emh-mariadb.XXXXXX owned by mysql.  Such a directory
# is deleted by a later `start` once its STATE_DIR is gone and its server
# stopped.  Quiet on success; everything goes to STATE_DIR/mariadb/log.
#
# This is a test server: innodb_flush_log_at_trx_commit=2 (a crash of the
# machine may lose the last second; a stop never does).
set -euo pipefail

die() { echo "mariadb.sh: $*" >&2; exit 1; }

[ $# -eq 2 ] || die "usage: mariadb.sh start|stop|restart|status STATE_DIR"
CMD=$1
mkdir -p "$2" || die "cannot create state directory '$2'"
STATE_DIR=$(cd "$2" && pwd)
D=$STATE_DIR/mariadb
DB=emh_test
DBUSER=emh
export PATH="$PATH:/usr/sbin:/usr/local/sbin:/sbin"

mkdir -p "$D"
chmod 755 "$D"

is_root() { [ "$(id -u)" -eq 0 ]; }

# True when something accepts TCP connections on 127.0.0.1:$1.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {
	local p i
	for i in $(seq 1 200); do
		p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
		port_open "$p" || { echo "$p"; return 0; }
	done
	die "no free loopback port found"
}

# Our mariadbd, not a recycled PID: its command line names our data directory.
alive() {
	local pid
	[ -f "$D/pid" ] || return 1
	pid=$(cat "$D/pid")
	kill -0 "$pid" 2>/dev/null || return 1
	[ -r "/proc/$pid/cmdline" ] || return 0
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "--datadir=$(cat "$D/rundir" 2>/dev/null)/data"
}

# Install missing server commands through apt when root, else say what to install.
need_server_cmds() {
	local missing=()
	command -v mariadbd >/dev/null 2>&1 || missing+=(mariadb-server)
	command -v mariadb-install-db >/dev/null 2>&1 || missing+=(mariadb-server)
	command -v mariadb >/dev/null 2>&1 || missing+=(mariadb-client)
	command -v mariadb-admin >/dev/null 2>&1 || missing+=(mariadb-client)
	[ ${#missing[@]} -eq 0 ] && return 0
	if ! is_root || ! command -v apt-get >/dev/null 2>&1; then
		die "mariadbd, mariadb-install-db, mariadb and mariadb-admin are needed: install them as root (Debian: apt-get install -y mariadb-server mariadb-client)"
	fi
	# The package's maintainer scripts must not start a system server: a
	# policy-rc.d answering 101 forbids it (removed again if we created it).
	local policy=/usr/sbin/policy-rc.d made_policy=0
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made_policy=1
	fi
	local pkgs=(mariadb-server mariadb-client)
	pkg-config --exists mysqlclient 2>/dev/null || pkgs+=(default-libmysqlclient-dev)
	local rc=0
	{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${pkgs[@]}"; } \
		>>"$D/log.install" 2>&1 || rc=$?
	[ $made_policy -eq 1 ] && rm -f "$policy"
	[ $rc -eq 0 ] || die "apt-get install ${pkgs[*]} failed (see $D/log.install)"
	command -v mariadbd >/dev/null 2>&1 || die "mariadbd still missing after installing ${pkgs[*]}"
}

# The user mariadbd runs as: mysql when we are root (it refuses root), else us.
server_user() {
	if is_root; then
		getent passwd mysql >/dev/null 2>&1 ||
			useradd --system --no-create-home --shell /usr/sbin/nologin mysql >>"$D/log" 2>&1 ||
			die "cannot create the system user 'mysql'"
		echo mysql
	else
		id -un
	fi
}

# Remove /tmp/emh-mariadb.* run directories whose STATE_DIR is gone and whose
# server is not running (left by callers that deleted STATE_DIR only).
gc_run_dirs() {
	local d owner pid
	for d in /tmp/emh-mariadb.*; do
		[ -d "$d" ] && [ -f "$d/owner" ] || continue
		# Ours: root made it (the server user owns its files), else we did.
		is_root || [ -O "$d/owner" ] || continue
		owner=$(cat "$d/owner")
		[ -e "$owner" ] && continue
		pid=$(cat "$d/data/mariadbd.pid" 2>/dev/null || true)
		[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && continue
		rm -rf "$d"
	done
}

# Choose (first start) the run directory; echo it.
make_run_dir() {
	local user=$1 run=$D/run
	mkdir -p "$run"
	if is_root; then
		chown "$user:" "$run"
		if ! runuser -u "$user" -- test -x "$run" 2>/dev/null || [ ${#run} -gt 90 ]; then
			rmdir "$run"
			run=$(mktemp -d /tmp/emh-mariadb.XXXXXX) || die "cannot create a run directory in /tmp"
			echo "$D" >"$run/owner"
			chown "$user:" "$run"
			chmod 755 "$run"
		fi
	elif [ ${#run} -gt 90 ]; then
		rmdir "$run"
		run=$(mktemp -d /tmp/emh-mariadb.XXXXXX) || die "cannot create a run directory in /tmp"
		echo "$D" >"$run/owner"
	fi
	echo "$run"
}

record_env() {
	local url=$1 port=$2 sock=$3 line
	touch "$STATE_DIR/env"
	for line in "export EMH_TEST_MYSQL_URL='$url'" "export EMH_TEST_MYSQL_PORT='$port'" \
		"export EMH_TEST_MYSQL_SOCKET='$sock'"; do
		grep -qxF "$line" "$STATE_DIR/env" || echo "$line" >>"$STATE_DIR/env"
	done
}

stop_server() {
	local pid i
	[ -f "$D/pid" ] || return 0
	pid=$(cat "$D/pid")
	if alive; then
		kill -TERM "$pid" 2>/dev/null || true
		for i in $(seq 1 600); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			echo "mariadb.sh: mariadbd $pid did not stop in 60 s, killing it" >>"$D/log"
			kill -KILL "$pid" 2>/dev/null || true
			sleep 0.5
		fi
	fi
	rm -f "$D/pid"
}

# Start mariadbd on $1 and wait until it answers.  Returns 2 when the port
# was taken (the caller may pick another), dies on other failures.
# Start one mariadbd as user on port: WHAT names it in the log, PIDFILE gets
# its PID, DATA/SOCK/TMP are its directories, the rest are the options that
# differ between the primary and the replica.  0 once it answers, 2 when the
# port was taken (the caller tries another); dies otherwise (STOPFN first
# when it never answered).
run_mariadbd() {
	local what=$1 pidfile=$2 stopfn=$3 data=$4 sock=$5 tmp=$6 port=$7 user=$8 useropt=()
	shift 8
	is_root && useropt=(--user="$user")
	echo "--- $(date '+%F %T') starting $what on 127.0.0.1:$port" >>"$D/log"
	# In a subshell that closes every inherited descriptor above 2 (a test
	# harness's pipes, a lock) and then becomes mariadbd, so $! is its PID.
	(
		for fd in /proc/$BASHPID/fd/*; do
			fd=${fd##*/}
			[ "$fd" -gt 2 ] 2>/dev/null && eval "exec $fd>&-" 2>/dev/null
		done
		exec mariadbd --no-defaults "${useropt[@]}" \
		--datadir="$data" --socket="$sock" --pid-file="$data/mariadbd.pid" \
		--tmpdir="$tmp" --port="$port" --bind-address=127.0.0.1 \
		"$@" --skip-name-resolve --performance-schema=OFF \
		--innodb-log-file-size=32M --innodb-flush-log-at-trx-commit=2 --innodb-use-native-aio=0 \
		--key-buffer-size=1M --aria-pagecache-buffer-size=1M --max-allowed-packet=64M \
		--character-set-server=utf8mb4 --collation-server=utf8mb4_bin
	) >>"$D/log" 2>&1 </dev/null &
	local pid=$!
	echo "$pid" >"$pidfile"
	for _ in $(seq 1 600); do
		if ! kill -0 "$pid" 2>/dev/null; then
			rm -f "$pidfile"
			tail -n 20 "$D/log" | grep -q -i 'address already in use' && return 2
			tail -n 30 "$D/log" >&2
			die "$what exited while starting (log above, full log in $D/log)"
		fi
		if [ -S "$sock" ] && mariadb-admin --no-defaults --protocol=socket --socket="$sock" \
			--user=root --connect-timeout=2 ping >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.1
	done
	"$stopfn"
	die "$what did not answer within 60 s (see $D/log)"
}

launch() {
	local port=$1 user=$2 run
	run=$(cat "$D/rundir")
	local binlog=(--skip-log-bin)
	[ "${EMH_TEST_MYSQL_REPLICA:-1}" != 0 ] &&
		binlog=(--log-bin="$run/data/binlog" --server-id=1 --binlog-format=ROW --log-bin-trust-function-creators=1)
	run_mariadbd mariadbd "$D/pid" stop_server "$run/data" "$run/sock" "$run/tmp" "$port" "$user" \
		"${binlog[@]}" --innodb-buffer-pool-size=64M --max-connections=300
}

# mariadb-install-db into DATA once (MARKER records it), as user.
install_datadir() {
	local data=$1 marker=$2 what=$3 user=$4 useropt=()
	[ -f "$marker" ] && return 0
	rm -rf "$data"
	mkdir -p "$data"
	is_root && chown -R "$user:" "$data"
	is_root && useropt=(--user="$user")
	mariadb-install-db --no-defaults "${useropt[@]}" --datadir="$data" \
		--auth-root-authentication-method=normal --skip-test-db --skip-name-resolve \
		>>"$D/log" 2>&1 || die "mariadb-install-db of $what failed (see $D/log)"
	touch "$marker"
}

# Start with LAUNCHFN on the port recorded in PORTFILE (waiting for it to be
# free), or on a free port the first time, recorded then.
launch_on_port() {
	local launchfn=$1 portfile=$2 what=$3 user=$4 port rc
	if [ -f "$portfile" ]; then
		port=$(cat "$portfile")
		for _ in $(seq 1 100); do port_open "$port" || break; sleep 0.1; done
		rc=0; "$launchfn" "$port" "$user" || rc=$?
		[ $rc -eq 0 ] || die "port $port is in use: cannot restart $what on it"
	else
		for _ in 1 2 3 4 5; do
			port=$(free_port)
			rc=0; "$launchfn" "$port" "$user" || rc=$?
			[ $rc -eq 2 ] || break
		done
		[ $rc -eq 0 ] || die "no free port for $what after 5 attempts"
		echo "$port" >"$portfile"
	fi
}

# First start only: the database and the password user.
create_user() {
	local run pw
	run=$(cat "$D/rundir")
	pw=$(cat "$D/password")
	if ! mariadb --no-defaults --protocol=socket --socket="$run/sock" --user=root >>"$D/log" 2>&1 <<-SQL
		CREATE DATABASE IF NOT EXISTS $DB CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
		CREATE USER IF NOT EXISTS '$DBUSER'@'127.0.0.1' IDENTIFIED BY '$pw';
		CREATE USER IF NOT EXISTS '$DBUSER'@'localhost' IDENTIFIED BY '$pw';
		GRANT ALL PRIVILEGES ON \`emh\\_%\`.* TO '$DBUSER'@'127.0.0.1';
		GRANT ALL PRIVILEGES ON \`emh\\_%\`.* TO '$DBUSER'@'localhost';
		CREATE USER IF NOT EXISTS 'emh_repl'@'127.0.0.1' IDENTIFIED BY '$pw';
		GRANT REPLICATION SLAVE ON *.* TO 'emh_repl'@'127.0.0.1';
		GRANT SLAVE MONITOR ON *.* TO '$DBUSER'@'127.0.0.1';
		GRANT SLAVE MONITOR ON *.* TO '$DBUSER'@'localhost';
		CREATE USER IF NOT EXISTS 'emh_admin'@'127.0.0.1' IDENTIFIED BY '$pw';
		GRANT ALL PRIVILEGES ON *.* TO 'emh_admin'@'127.0.0.1' WITH GRANT OPTION;
		FLUSH PRIVILEGES;
	SQL
	then
		stop_server
		die "creating database '$DB' and user '$DBUSER' failed (see $D/log)"
	fi
	touch "$D/initialised"
}

replica_alive() {
	[ -f "$D/replica-pid" ] && kill -0 "$(cat "$D/replica-pid")" 2>/dev/null
}

stop_replica() {
	local pid
	[ -f "$D/replica-pid" ] || return 0
	pid=$(cat "$D/replica-pid")
	if replica_alive; then
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 1 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -0 "$pid" 2>/dev/null && { kill -KILL "$pid" 2>/dev/null || true; sleep 0.5; }
	fi
	rm -f "$D/replica-pid"
}

# Start the replica's mariadbd on $1 (its data in $run/rdata); 2: port taken.
launch_replica() {
	local port=$1 user=$2 run
	run=$(cat "$D/rundir")
	run_mariadbd "the replica's mariadbd" "$D/replica-pid" stop_replica "$run/rdata" "$run/rsock" "$run/rtmp" \
		"$port" "$user" --skip-log-bin --server-id=2 --read-only --relay-log="$run/rdata/relay" \
		--innodb-buffer-pool-size=32M --max-connections=100
}

# The GTID replica: initialised and pointed at the primary the first time,
# started on its recorded port later (replication resumes where it was).
start_replica() {
	local user=$1 run pw
	run=$(cat "$D/rundir")
	pw=$(cat "$D/password")
	replica_alive && { record_replica_env; return 0; }
	install_datadir "$run/rdata" "$D/replica-installed" "the replica" "$user"
	mkdir -p "$run/rtmp"
	is_root && chown "$user:" "$run/rtmp"
	launch_on_port launch_replica "$D/replica-port" "the replica" "$user"
	if [ ! -f "$D/replica-configured" ]; then
		mariadb --no-defaults --protocol=socket --socket="$run/rsock" --user=root >>"$D/log" 2>&1 <<-SQL ||
			SET GLOBAL gtid_slave_pos = '';
			CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=$(cat "$D/port"),
				MASTER_USER='emh_repl', MASTER_PASSWORD='$pw', MASTER_USE_GTID=slave_pos,
				MASTER_CONNECT_RETRY=1;
			START SLAVE;
		SQL
			{ stop_replica; die "configuring the replica failed (see $D/log)"; }
		touch "$D/replica-configured"
	fi
	record_replica_env
}

record_replica_env() {
	local pw line
	pw=$(cat "$D/password")
	for line in "export EMH_TEST_MYSQL_REPLICA_URL='mysql://$DBUSER:$pw@127.0.0.1:$(cat "$D/replica-port")/$DB'" \
		"export EMH_TEST_MYSQL_REPLICA_PORT='$(cat "$D/replica-port")'" \
		"export EMH_TEST_MYSQL_ADMIN_URL='mysql://emh_admin:$pw@127.0.0.1:$(cat "$D/port")/$DB'" \
		"export EMH_TEST_MYSQL_REPLICA_ADMIN_URL='mysql://emh_admin:$pw@127.0.0.1:$(cat "$D/replica-port")/$DB'"; do
		grep -qxF "$line" "$STATE_DIR/env" || echo "$line" >>"$STATE_DIR/env"
	done
}

start() {
	local user run port
	if [ -n "${EMH_TEST_MYSQL_URL:-}" ] && [ ! -f "$D/rundir" ]; then
		echo external >"$D/kind"
		touch "$STATE_DIR/env"
		grep -qxF "export EMH_TEST_MYSQL_URL='$EMH_TEST_MYSQL_URL'" "$STATE_DIR/env" ||
			echo "export EMH_TEST_MYSQL_URL='$EMH_TEST_MYSQL_URL'" >>"$STATE_DIR/env"
		return 0
	fi
	echo mariadb >"$D/kind"
	need_server_cmds
	user=$(server_user)
	if [ ! -f "$D/rundir" ]; then
		gc_run_dirs
		make_run_dir "$user" >"$D/rundir"
	fi
	run=$(cat "$D/rundir")
	[ -d "$run" ] || die "run directory '$run' of this state directory is gone"
	if ! alive; then
		install_datadir "$run/data" "$D/installed" mariadbd "$user"
		is_root && chown "$user:" "$run"
		mkdir -p "$run/tmp"
		is_root && chown "$user:" "$run/tmp"
		[ -f "$D/password" ] || { (umask 077; od -An -N12 -tx1 /dev/urandom | tr -d ' \n' >"$D/password"); }
		launch_on_port launch "$D/port" mariadbd "$user"
		[ -f "$D/initialised" ] || create_user
	fi
	port=$(cat "$D/port")
	record_env "mysql://$DBUSER:$(cat "$D/password")@127.0.0.1:$port/$DB" "$port" "$run/sock"
	# (after a `stop`, which stops both, a restart brings the replica back too)
	[ "${EMH_TEST_MYSQL_REPLICA:-1}" != 0 ] && start_replica "$user"
	return 0
}

case $CMD in
start)
	start
	;;
stop)
	[ "$(cat "$D/kind" 2>/dev/null)" = external ] || { stop_replica; stop_server; }
	;;
restart)
	kind=$(cat "$D/kind" 2>/dev/null || true)
	[ -n "$kind" ] || die "nothing to restart: '$STATE_DIR' has no mariadb server (run start first)"
	[ "$kind" != external ] || exit 0
	stop_server
	start
	;;
replica-stop)
	stop_replica
	;;
replica-start)
	[ -f "$D/replica-configured" ] || die "no replica to start: '$STATE_DIR' has none (run start first)"
	start_replica "$(server_user)"
	;;
status)
	if [ "$(cat "$D/kind" 2>/dev/null)" = external ]; then
		echo "mariadb: external"
	elif alive; then
		echo "mariadb: up on 127.0.0.1:$(cat "$D/port") (pid $(cat "$D/pid"))"
	else
		echo "mariadb: down"; exit 1
	fi
	;;
*)
	die "unknown command '$CMD' (start, stop, restart, status)"
	;;
esac
