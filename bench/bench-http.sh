#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench/bench-http.sh: `make bench-http`.  GET /users/<id> through emhostd
# (the bundled users service) and through bench/raw_http.c (emh-raw-http, a
# hand-written libmicrohttpd server: I/O thread pool, handler on the I/O
# thread, prepared statement) on the same database and the same rows, loaded
# by the same wrk settings.  Rounds alternate the two servers (which goes
# first alternates too); the medians of requests/s and p99 and the ratios
# emhostd/raw are printed, first on a SQLite file, then on PostgreSQL: the
# URL in EMH_TEST_PG_URL, else a server started with scripts/servers/pg.sh
# (said loudly when there is none; the SQLite part stands).  Nothing is
# asserted: speed is measured here, never in make check.
#
# Knobs (environment): EMH_BENCH_ROUNDS (3) EMH_BENCH_SECONDS (5 per run)
# EMH_BENCH_CONNECTIONS (16) EMH_BENCH_ROWS (1000) EMH_BENCH_WRK_THREADS (2)
# EMH_BENCH_SERVER_THREADS (unset: each server's default, the cores)
# EMH_BENCH_EMHOSTD_SERVER: more of emhostd's server section, e.g.
#   "inline = false; threads = 4;" (the hand-off for every request, as before
#   the fast path)
# EMH_BENCH_STRACE=1 also counts emhostd's and raw's syscalls per request
# (strace -c -f, one short run each).  Every run is bounded: wrk -d, curl -m,
# timeouts on starts and stops.
set -uo pipefail

B=${EMH_BUILDDIR:?EMH_BUILDDIR (the build directory) is not set}
S=${EMH_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
rounds=${EMH_BENCH_ROUNDS:-3}
secs=${EMH_BENCH_SECONDS:-5}
conns=${EMH_BENCH_CONNECTIONS:-16}
rows=${EMH_BENCH_ROWS:-1000}
wthreads=${EMH_BENCH_WRK_THREADS:-2}
sthreads=${EMH_BENCH_SERVER_THREADS:-}
WRK=${WRK:-wrk}
command -v "$WRK" >/dev/null || { echo "bench-http: wrk not found (scripts/deps.sh installs it)" >&2; exit 1; }

dir=$(mktemp -d "${TMPDIR:-/tmp}/emh-bench-http.XXXXXX")
pids=()
pgstate=
cleanup() {
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
	for p in "${pids[@]}"; do timeout 15 tail --pid="$p" -f /dev/null 2>/dev/null || kill -KILL "$p" 2>/dev/null; done
	[ -n "$pgstate" ] && "$S/scripts/servers/pg.sh" stop "$pgstate" >/dev/null 2>&1
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$dir/svc"
ln -s "$B/services/.libs/users.so" "$dir/svc/users.so"
cat >"$dir/ids.lua" <<EOF
-- the same pseudo-random ids, in the same order, for both servers
local n = $rows
local counter = 0
function setup(thread) counter = counter + 1; thread:set("id", counter) end
function init(args) math.randomseed(id * 7919) end
function request() return wrk.format("GET", "/users/" .. math.random(1, n)) end
EOF

# Wait until $1 (a log file) has a line matching $2; print the line.  Bounded.
wait_line() {
	local i
	for i in $(seq 1 100); do
		grep -m1 -E "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "bench-http: no '$2' in $1 after 10 s:" >&2
	tail -5 "$1" >&2
	return 1
}

# start_emhostd NAME CONTEXT-LINE: its URL in url, its PID in pid
start_emhostd() {
	local threads=
	[ -n "$sthreads" ] && threads="threads = $sthreads;"
	threads="$threads ${EMH_BENCH_EMHOSTD_SERVER:-}"
	cat >"$dir/$1.conf" <<EOF
plugin_dir = "$B/plugins-build";
service_dir = "$dir/svc";
contexts = ( { name = "default"; $2 schema = "sync"; } );
services = ( { name = "users"; } );
server = { listen = "127.0.0.1:0"; $threads };
EOF
	"$B/core/daemon/emhostd" -c "$dir/$1.conf" >"$dir/$1.log" 2>&1 &
	pid=$!
	pids+=("$pid")
	local line
	line=$(wait_line "$dir/$1.log" 'listening on http://') || return 1
	url=$(echo "$line" | sed -E 's|.*listening on (http://[^ ]*).*|\1|')
}

# start_raw NAME ARGS...: its URL in url, its PID in pid
start_raw() {
	local name=$1
	shift
	local targs=()
	[ -n "$sthreads" ] && targs=(--threads "$sthreads")
	"$B/bench/emh-raw-http" "$@" "${targs[@]}" >"$dir/$name.log" 2>&1 &
	pid=$!
	pids+=("$pid")
	local line
	line=$(wait_line "$dir/$name.log" '^listening on [0-9]+') || return 1
	url="http://127.0.0.1:$(echo "$line" | awk '{print $3}')"
}

# The same row from both, byte for byte (status and body), before measuring.
same_answers() {
	local id a b
	for id in 1 $((rows / 2)) $rows $((rows + 7)); do
		a=$(curl -s -m 10 -w ' %{http_code}' "$1/users/$id")
		b=$(curl -s -m 10 -w ' %{http_code}' "$2/users/$id")
		if [ "$a" != "$b" ]; then
			echo "bench-http: GET /users/$id differs:" >&2
			echo "  emhostd: $a" >&2
			echo "  raw:     $b" >&2
			return 1
		fi
	done
}

# run_wrk URL: "req/s p99_ms non2xx" on stdout
run_wrk() {
	local out
	out=$(timeout $((secs + 30)) "$WRK" -t"$wthreads" -c"$conns" -d"${secs}s" --timeout 5s --latency \
		-s "$dir/ids.lua" "$1" 2>&1)
	echo "$out" >>"$dir/wrk.log"
	echo "$out" | awk '
		function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
		$1 == "Requests/sec:" { rps = $2 }
		$1 == "99%" { p99 = ms($2) }
		/Non-2xx/ { bad = $NF }
		END { printf "%s %s %s\n", (rps == "" ? 0 : rps), (p99 == "" ? 0 : p99), bad + 0 }'
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# syscalls per request of one server: strace -c -f over a short wrk run
syscalls_per_req() { # PID URL
	local out=$dir/strace.$1 n reqs
	timeout $((secs + 20)) strace -c -f -q -p "$1" -o "$out" &
	local sp=$!
	sleep 1
	reqs=$(run_wrk "$2" | awk '{ print $1 }')
	kill -INT "$sp" 2>/dev/null
	wait "$sp" 2>/dev/null
	n=$(awk '$NF == "total" { print $4 }' "$out")
	awk -v n="${n:-0}" -v r="$reqs" -v s="$secs" 'BEGIN { if (r > 0) printf "%.1f", n / (r * s); else print "?" }'
}

# compare TITLE EMH_URL RAW_URL EMH_PID RAW_PID
compare() {
	local title=$1 eu=$2 ru=$3 ep=$4 rp=$5 i e r
	same_answers "$eu" "$ru" || return 1
	run_wrk "$eu" >/dev/null # warm: connections, pools, caches
	run_wrk "$ru" >/dev/null
	: >"$dir/e.txt"
	: >"$dir/r.txt"
	for i in $(seq 1 "$rounds"); do
		if [ $((i % 2)) = 1 ]; then
			e=$(run_wrk "$eu")
			r=$(run_wrk "$ru")
		else
			r=$(run_wrk "$ru")
			e=$(run_wrk "$eu")
		fi
		echo "$e" >>"$dir/e.txt"
		echo "$r" >>"$dir/r.txt"
		printf '  round %d: emhostd %8.0f req/s p99 %7.2f ms | raw %8.0f req/s p99 %7.2f ms\n' "$i" \
			$(echo "$e" | awk '{print $1, $2}') $(echo "$r" | awk '{print $1, $2}')
	done
	local erps eph rrps rph ebad rbad
	erps=$(awk '{print $1}' "$dir/e.txt" | median)
	eph=$(awk '{print $2}' "$dir/e.txt" | median)
	rrps=$(awk '{print $1}' "$dir/r.txt" | median)
	rph=$(awk '{print $2}' "$dir/r.txt" | median)
	ebad=$(awk '{s += $3} END {print s + 0}' "$dir/e.txt")
	rbad=$(awk '{s += $3} END {print s + 0}' "$dir/r.txt")
	echo "$title: medians of $rounds rounds ($conns connections, $secs s each, $rows rows)"
	printf '  %-10s %10s %10s\n' "" "req/s" "p99 ms"
	printf '  %-10s %10.0f %10.2f%s\n' emhostd "$erps" "$eph" "$([ "$ebad" -gt 0 ] && echo "  ($ebad non-2xx!)")"
	printf '  %-10s %10.0f %10.2f%s\n' raw "$rrps" "$rph" "$([ "$rbad" -gt 0 ] && echo "  ($rbad non-2xx!)")"
	awk -v a="$erps" -v b="$rrps" -v c="$eph" -v d="$rph" 'BEGIN {
		printf "  emhostd/raw: req/s %.2f (goal >= 0.80), p99 %.2fx (goal <= 1.5)\n", a / b, c / d }'
	# the two runs of a round are next to each other in time: their ratio
	# sees the same neighbours on a shared machine
	local rr pr
	rr=$(paste "$dir/e.txt" "$dir/r.txt" | awk '$4 > 0 { print $1 / $4 }' | median)
	pr=$(paste "$dir/e.txt" "$dir/r.txt" | awk '$5 > 0 { print $2 / $5 }' | median)
	printf '  median of the rounds'"'"' ratios: req/s %.2f, p99 %.2fx\n' "$rr" "$pr"
	if [ "${EMH_BENCH_STRACE:-0}" = 1 ] && command -v strace >/dev/null; then
		echo "  syscalls per request (strace -c -f): emhostd $(syscalls_per_req "$ep" "$eu"), raw $(syscalls_per_req "$rp" "$ru")"
	fi
}

echo "bench-http: $(nproc) cores, wrk -t$wthreads -c$conns -d${secs}s, server threads: ${sthreads:-default (cores)}" \
	"${EMH_BENCH_EMHOSTD_SERVER:+, emhostd: $EMH_BENCH_EMHOSTD_SERVER}"

# measure TITLE NAME CONTEXT-KEYS RAW-ARGS...: both servers on one database, seeded, compared, stopped
measure() {
	local title=$1 name=$2 ctx=$3 eu ep ru rp
	shift 3
	start_emhostd "$name" "$ctx" || return 1 # its schema sync makes the table
	eu=$url ep=$pid
	"$B/bench/emh-raw-http" "$@" --seed "$rows" || return 1
	start_raw "raw-$name" "$@" || return 1
	ru=$url rp=$pid
	compare "$title" "$eu" "$ru" "$ep" "$rp" || return 1
	kill -TERM "$ep" "$rp"
}

db=$dir/app.db
measure "SQLite (file, WAL)" sqlite "driver = \"sqlite\"; path = \"$db\";" --sqlite "$db" || exit 1

pg=${EMH_TEST_PG_URL:-}
if [ -z "$pg" ] && [ -x "$S/scripts/servers/pg.sh" ]; then
	pgstate=$dir/pg
	if "$S/scripts/servers/pg.sh" start "$pgstate" >"$dir/pg-start.log" 2>&1 && [ -f "$pgstate/env" ]; then
		pg=$(. "$pgstate/env" && echo "${EMH_TEST_PG_URL:-}")
	fi
fi
if [ -z "$pg" ]; then
	echo "bench-http: ****************************************************************"
	echo "bench-http: NO POSTGRESQL: EMH_TEST_PG_URL is unset and scripts/servers/pg.sh"
	echo "bench-http: could not start one; only the SQLite part above was measured."
	echo "bench-http: ****************************************************************"
	exit 0
fi
measure PostgreSQL pg "driver = \"postgres\"; url = \"$pg\";" --pg "$pg" || exit 1
