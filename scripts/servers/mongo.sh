#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# scripts/servers/mongo.sh: start/stop/restart a throwaway MongoDB-compatible server for tests.
#
# usage: mongo.sh start|stop|restart|status STATE_DIR
#
# Which server, in this order:
#   1. EMH_TEST_MONGO_URI already set: an external server; `start` only records it
#      (stop/restart then do nothing: the fault test skips with a reason).
#   2. mongod named by $MONGOD or found on PATH: started on a free loopback port with
#      STATE_DIR/mongo/data as dbpath (persistent across restart).  With
#      EMH_TEST_MONGO_REPLSET=1 (and mongosh on PATH) it is made a one-member
#      replica set, so the driver advertises transactions.
#   3. CongoDB, the wire-compatible in-memory server of ../shared/mongo-wire (relative to
#      the repository root; EMH_MONGO_WIRE_DIR overrides), installed once with its setup.sh
#      into ${EMH_CONGO_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/emhost/congo} (reused when
#      present) and started with `node server.mjs PORT`.  In memory: a restart loses data.
#      Three more fixes of that server are loaded with it (write_congo_fixes below):
#      binaries and large int64s survived no update, int64s beyond 2^53 did not
#      compare or sort, and its hello made every client's monitor spin.
#
# start appends to STATE_DIR/env:
#   EMH_TEST_MONGO_URI='mongodb://127.0.0.1:PORT/emh_test'  EMH_TEST_MONGO_PORT=PORT
#   EMH_TEST_MONGO_KIND=congo|mongod|external  EMH_TEST_MONGO_PERSISTENT=0|1
# restart stops and starts the same server on the SAME port (same data for mongod).
# Quiet on success; the server's output goes to STATE_DIR/mongo/log.
set -euo pipefail

die() { echo "mongo.sh: $*" >&2; exit 1; }

[ $# -eq 2 ] || die "usage: mongo.sh start|stop|restart|status STATE_DIR"
CMD=$1
mkdir -p "$2" || die "cannot create state directory '$2'"
STATE_DIR=$(cd "$2" && pwd)
D=$STATE_DIR/mongo
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
DB=emh_test

mkdir -p "$D"

alive() { [ -f "$D/pid" ] && kill -0 "$(cat "$D/pid")" 2>/dev/null; }

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

# A value quoted for sh: 'it'\''s'.
shq() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }

record_env() { # kind port uri persistent
	{
		echo "export EMH_TEST_MONGO_URI=$(shq "$3")"
		echo "export EMH_TEST_MONGO_PORT='$2'"
		echo "export EMH_TEST_MONGO_KIND='$1'"
		echo "export EMH_TEST_MONGO_PERSISTENT='$4'"
	} >>"$STATE_DIR/env"
}

# Install a missing command through apt when root, else say what to install.
need_cmd() { # command debian-packages...
	local c=$1; shift
	command -v "$c" >/dev/null 2>&1 && return 0
	if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
		{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"; } \
			>>"$D/log.install" 2>&1 || die "apt-get install $* failed (see $D/log.install)"
		command -v "$c" >/dev/null 2>&1 || die "'$c' still missing after installing $*"
	else
		die "'$c' is missing: install it (Debian: apt-get install $*)"
	fi
}

rotate_log() { [ -f "$D/log" ] && mv -f "$D/log" "$D/log.1"; : >"$D/log"; }

# ---- CongoDB ----

congo_dir() {
	local base=${XDG_CACHE_HOME:-${HOME:-/nonexistent}/.cache}
	local dir=${EMH_CONGO_DIR:-$base/emhost/congo}
	if ! mkdir -p "$(dirname "$dir")" 2>/dev/null || [ ! -w "$(dirname "$dir")" ]; then
		dir=$STATE_DIR/congo
	fi
	echo "$dir"
}

congo_install() { # dir
	local dir=$1 wire=${EMH_MONGO_WIRE_DIR:-$REPO/../shared/mongo-wire}
	[ -f "$wire/setup.sh" ] || die "no mongod on PATH, \$MONGOD unset, and no '$wire/setup.sh' (set EMH_TEST_MONGO_URI, MONGOD or EMH_MONGO_WIRE_DIR)"
	# Installed and current (the launcher and patches match the shared copy): reuse.
	if [ -d "$dir/vendor/smartmongo" ] && [ -d "$dir/node_modules" ] &&
		cmp -s "$wire/server.mjs" "$dir/server.mjs" &&
		cmp -s "$wire/congo-patches.mjs" "$dir/congo-patches.mjs"; then
		return 0
	fi
	need_cmd node nodejs
	need_cmd npm npm
	# Install into a fresh directory and rename it into place, so that two
	# concurrent starts never see a half-installed copy.
	local tmp
	tmp=$(mktemp -d "$dir.tmp.XXXXXX") || die "cannot create '$dir.tmp.*'"
	# npm keeps its cache in ~/.npm: a user without a writable home gets one here.
	if ! mkdir -p "${HOME:-/nonexistent}/.npm" 2>/dev/null || [ ! -w "${HOME:-/nonexistent}/.npm" ]; then
		export npm_config_cache="$STATE_DIR/npm-cache"
	fi
	if ! (cd "$tmp" && sh "$wire/setup.sh" "$tmp") >>"$D/log.install" 2>&1; then
		rm -rf "$tmp"
		die "installing the mongo-wire server failed (see $D/log.install)"
	fi
	if ! { rm -rf "$dir.old" && { [ ! -e "$dir" ] || mv "$dir" "$dir.old"; } && mv "$tmp" "$dir"; }; then
		rm -rf "$tmp"
		die "cannot move the mongo-wire server into '$dir'"
	fi
	rm -rf "$dir.old"
}

# Fixes for server defects found by the mongo driver's tests, loaded with
# `node --import` before server.mjs (see the comment at the top of the module).
write_congo_fixes() { # congo-dir
	# shellcheck disable=SC1003 # a single backslash between single quotes
	case $1 in *"'"* | *'\'*) die "unsupported character in '$1'" ;; esac
	sed "s|@CONGO_DIR@|$1|" >"$D/congo-fixes.mjs" <<'JS'
// Extra runtime fixes for the mongo-wire test server (CongoDB), loaded by
// scripts/servers/mongo.sh with `node --import` before server.mjs:
// 1. UpdateEngine.deepClone copied BSON value objects (Binary, Long, Decimal128, ...)
//    into plain objects, so any update turned every blob of the document into a
//    sub-document; BSON values are immutable here and are now kept as they are.
// 2. int64 values outside +-2^53 arrive as bson.Long objects, which the query engine
//    (mingo) cannot compare or sort with numbers; they become BigInt on arrival
//    (serialized back as int64).  The query engine (mingo 7.2.6, CommonJS) then
//    types a BigInt as a number, so $lt/$gt/sort compare it with numbers as mongod
//    does (and the server's own sort compares BigInt and number by value); the server
//    JSON.stringify()s values for index keys: BigInt gets a toJSON.
//    Its $sum and $avg accumulators skipped such values (mingo's isNumber says no
//    to a BigInt): they are summed as doubles, as mongod sums longs that overflow.
// 3. hello replied with a topologyVersion, which makes a 4.4+ driver's monitor use
//    "awaitable hello" (the server should hold the reply up to maxAwaitTimeMS); the
//    server answered at once, so every client's monitor sent hello in a busy loop,
//    burning CPU on both sides.  Without topologyVersion drivers poll every
//    heartbeatFrequencyMS, as with servers before 4.4.
import Module from 'node:module';

const origCompile = Module.prototype._compile;
Module.prototype._compile = function (content, filename) {
  if (/[\\/]mingo[\\/]cjs[\\/]util[\\/]_internal\.js$/.test(filename)) {
    const from = 'function typeOf(v) {\n  const t = typeof v;\n';
    if (!content.includes(from)) throw new Error(`congo-fixes: unexpected ${filename}`);
    content = content.replace(from, `${from}  if (t === "bigint") return "number";\n`);
  }
  if (/[\\/]mingo[\\/]cjs[\\/]operators[\\/]accumulator[\\/](sum|avg)\.js$/.test(filename)) {
    const from = '(0, import_push.$push)(coll, expr, options)';
    if (!content.includes(from)) throw new Error(`congo-fixes: unexpected ${filename}`);
    content = content.replace(from, `${from}.map((v) => typeof v === "bigint" ? Number(v) : v)`);
  }
  return origCompile.call(this, content, filename);
};
const base = '@CONGO_DIR@/vendor/smartmongo/dist_ts/congodb';
const { UpdateEngine } = await import(`${base}/engine/UpdateEngine.js`);
const { WireProtocol } = await import(`${base}/server/WireProtocol.js`);
const { QueryEngine } = await import(`${base}/engine/QueryEngine.js`);
const { HelloHandler } = await import(`${base}/server/handlers/HelloHandler.js`);

const origHello = HelloHandler.prototype.handle;
HelloHandler.prototype.handle = async function (context) {
  const reply = await origHello.call(this, context);
  delete reply.topologyVersion;
  return reply;
};

const isNum = (v) => typeof v === 'number' || typeof v === 'bigint';
const origCompareValues = QueryEngine.compareValues;
QueryEngine.compareValues = function (a, b) {
  if (isNum(a) && isNum(b) && (typeof a === 'bigint' || typeof b === 'bigint')) return a < b ? -1 : a > b ? 1 : 0;
  return origCompareValues.call(this, a, b);
};

Object.defineProperty(BigInt.prototype, 'toJSON', {
  value: function () { return `${this.toString()}n`; },
  configurable: true,
  writable: true,
});

const origClone = UpdateEngine.deepClone;
UpdateEngine.deepClone = function (obj) {
  if (obj !== null && typeof obj === 'object' &&
      (obj._bsontype !== undefined || obj instanceof Uint8Array || obj instanceof RegExp)) {
    return obj;
  }
  return origClone.call(this, obj);
};

function longsToBigInt(v) {
  if (v === null || typeof v !== 'object') return v;
  if (v._bsontype === 'Long') return BigInt(v.toString());
  if (v._bsontype !== undefined || v instanceof Uint8Array || v instanceof RegExp || v instanceof Date) return v;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) v[i] = longsToBigInt(v[i]);
    return v;
  }
  for (const k of Object.keys(v)) v[k] = longsToBigInt(v[k]);
  return v;
}
const origParse = WireProtocol.parseOpMsg;
WireProtocol.parseOpMsg = function (...args) {
  const out = origParse.apply(this, args);
  const cmd = out?.command;
  if (cmd) {
    longsToBigInt(cmd.command);
    if (cmd.documentSequences) for (const docs of cmd.documentSequences.values()) longsToBigInt(docs);
  }
  return out;
};
JS
}

congo_start() { # port (0 = free)
	local dir port=$1 uri
	dir=$(congo_dir)
	congo_install "$dir"
	dir=$(cd "$dir" && pwd -P)
	need_cmd node nodejs
	write_congo_fixes "$dir"
	rotate_log
	node --import "$D/congo-fixes.mjs" "$dir/server.mjs" "$port" >>"$D/log" 2>&1 </dev/null &
	echo $! >"$D/pid"
	for _ in $(seq 1 300); do
		grep -q '^READY' "$D/log" && break
		alive || { cat "$D/log" >&2; rm -f "$D/pid"; die "the mongo-wire server exited (log above)"; }
		sleep 0.1
	done
	grep -q '^READY' "$D/log" || { stop_server; die "the mongo-wire server did not start within 30 s (see $D/log)"; }
	uri=$(sed -n 's/^READY \(mongodb:[^ ]*\).*/\1/p' "$D/log" | head -1)
	port=${uri##*:}
	echo congo >"$D/kind"
	echo "$port" >"$D/port"
	echo "mongodb://127.0.0.1:$port/$DB" >"$D/uri"
}

# ---- mongod ----

mongod_path() {
	if [ -n "${MONGOD:-}" ]; then
		[ -x "$MONGOD" ] || command -v "$MONGOD" >/dev/null 2>&1 || die "\$MONGOD='$MONGOD' is not executable"
		command -v "$MONGOD"
	else
		command -v mongod 2>/dev/null || true
	fi
}

mongod_start() { # port (0 = free)
	local bin port=$1 repl=()
	bin=$(cat "$D/mongod" 2>/dev/null || mongod_path)
	[ "$port" -ne 0 ] || port=$(free_port)
	mkdir -p "$D/data"
	[ -f "$D/replset" ] && repl=(--replSet emh)
	rotate_log
	"$bin" --bind_ip 127.0.0.1 --port "$port" --dbpath "$D/data" --nounixsocket \
		"${repl[@]}" >>"$D/log" 2>&1 </dev/null &
	echo $! >"$D/pid"
	for _ in $(seq 1 600); do
		port_open "$port" && break
		alive || { tail -n 30 "$D/log" >&2; rm -f "$D/pid"; die "mongod exited (log above)"; }
		sleep 0.1
	done
	port_open "$port" || { stop_server; die "mongod did not accept connections within 60 s (see $D/log)"; }
	if [ -f "$D/replset" ] && [ ! -f "$D/replset.done" ]; then
		mongosh --quiet --port "$port" --eval \
			"rs.initiate({_id: 'emh', members: [{_id: 0, host: '127.0.0.1:$port'}]})" >>"$D/log" 2>&1 ||
			{ stop_server; die "replSetInitiate failed (see $D/log)"; }
		touch "$D/replset.done"
	fi
	if [ -f "$D/replset" ]; then
		for _ in $(seq 1 300); do
			mongosh --quiet --port "$port" --eval 'db.hello().isWritablePrimary' 2>/dev/null | grep -q true && break
			sleep 0.1
		done
	fi
	echo "$bin" >"$D/mongod"
	echo mongod >"$D/kind"
	echo "$port" >"$D/port"
	echo "mongodb://127.0.0.1:$port/$DB" >"$D/uri"
}

# ---- commands ----

stop_server() {
	local pid
	[ -f "$D/pid" ] || return 0
	pid=$(cat "$D/pid")
	if kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 1 150); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			kill -KILL "$pid" 2>/dev/null || true
			sleep 0.2
		fi
	fi
	rm -f "$D/pid"
}

start() {
	local port=${1:-0} kind
	if alive; then
		return 0
	fi
	kind=$(cat "$D/kind" 2>/dev/null || true)
	if [ -z "$kind" ]; then
		if [ -n "${EMH_TEST_MONGO_URI:-}" ]; then
			kind=external
		elif [ -n "$(mongod_path)" ]; then
			kind=mongod
			if [ "${EMH_TEST_MONGO_REPLSET:-0}" = 1 ]; then
				command -v mongosh >/dev/null 2>&1 || die "EMH_TEST_MONGO_REPLSET=1 needs mongosh on PATH"
				touch "$D/replset"
			fi
		else
			kind=congo
		fi
	fi
	case $kind in
	external)
		local uri=${EMH_TEST_MONGO_URI:-$(cat "$D/uri" 2>/dev/null || true)}
		[ -n "$uri" ] || die "'$D' names an external server but EMH_TEST_MONGO_URI is not set"
		echo external >"$D/kind"
		echo "$uri" >"$D/uri"
		record_env external "" "$uri" 1
		return 0
		;;
	mongod) mongod_start "$port"; record_env mongod "$(cat "$D/port")" "$(cat "$D/uri")" 1 ;;
	congo) congo_start "$port"; record_env congo "$(cat "$D/port")" "$(cat "$D/uri")" 0 ;;
	*) die "unknown server kind '$kind' in $D/kind" ;;
	esac
}

case $CMD in
start)
	start 0
	;;
stop)
	stop_server
	;;
restart)
	kind=$(cat "$D/kind" 2>/dev/null || true)
	[ -n "$kind" ] || die "nothing to restart: '$STATE_DIR' has no mongo server (run start first)"
	[ "$kind" != external ] || exit 0
	port=$(cat "$D/port")
	stop_server
	# The old process is gone; wait until its port is free before binding it again.
	for _ in $(seq 1 100); do port_open "$port" || break; sleep 0.1; done
	port_open "$port" && die "port $port is still in use after stopping the server"
	start "$port"
	[ "$(cat "$D/port")" = "$port" ] || die "restarted on port $(cat "$D/port"), not $port"
	;;
status)
	if [ "$(cat "$D/kind" 2>/dev/null)" = external ] || alive; then
		echo "mongo: $(cat "$D/kind") $(cat "$D/uri" 2>/dev/null) up"
	else
		echo "mongo: down"; exit 1
	fi
	;;
*)
	die "unknown command '$CMD' (start, stop, restart, status)"
	;;
esac
