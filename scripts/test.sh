#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# scripts/test.sh: build emhost and pass its whole test suite against real servers.
#
# usage: scripts/test.sh [--sanitizers]
#   Installs missing Debian packages (as root), builds in _build/, starts
#   PostgreSQL, MariaDB and a MongoDB-protocol server on loopback, runs
#   `make check`, stops the servers.
#   --sanitizers  also builds in _build-san/ with ASan+UBSan and runs the suite there,
#                 and builds the fuzz targets in _build-fuzz/ (clang, --enable-fuzzing)
#                 and runs each for FUZZ_SECONDS (default 30): `make fuzz-smoke`
# The last line is "N passed, N failed, N skipped", counted from the TAP results.
set -uo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
san=0
for a in "$@"; do
	case "$a" in
	--sanitizers) san=1 ;;
	*) echo "usage: scripts/test.sh [--sanitizers]" >&2; exit 2 ;;
	esac
done

"$src/scripts/deps.sh" test || exit 1
"$src/scripts/build.sh" _build || exit 1
[ $san -eq 1 ] && { "$src/scripts/build.sh" _build-san --enable-sanitizers || exit 1; }
[ $san -eq 1 ] && { "$src/scripts/build.sh" _build-fuzz --enable-fuzzing || exit 1; }

state=$(mktemp -d /tmp/emh-test-XXXXXX)
chmod 755 "$state"
cleanup() { "$src/scripts/test-servers.sh" stop "$state" >/dev/null 2>&1; rm -rf "$state"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
"$src/scripts/test-servers.sh" start "$state" || echo "test.sh: some test servers did not start; tests needing them will say so" >&2
set -a
# shellcheck disable=SC1091
[ -f "$state/env" ] && . "$state/env"
set +a
export EMH_TEST_STATE_DIR="$state"

run_suite() { # build-dir label [make vars...]
	local b=$1 label=$2
	shift 2
	echo "== $label: make check" >&2
	find "$b" -name '*.trs' -delete 2>/dev/null
	make -C "$b" -j2 check "$@" >"$b/check.out" 2>&1
	local st=$?
	grep -E '^(FAIL|ERROR|XPASS):' "$b/check.out" >&2
	sed -n '/^# TOTAL/,/^# ERROR/p' "$b/check.out" | sed "s/^/$label /" >&2
	if [ $st -ne 0 ]; then
		for log in $(grep -lE '^(not ok|Bail out)' $(find "$b" -name '*.log' ! -name test-suite.log) 2>/dev/null); do
			echo "---- $log (failures)" >&2
			grep -E '^(not ok|Bail out|#)' "$log" | head -40 >&2
		done
	fi
	return $st
}

status=0
run_suite "$src/_build" default || status=1
if [ $san -eq 1 ]; then
	# intercept_tls_get_addr=0: up to GCC 13 the runtime's __tls_get_addr hook can take a
	# dynamic TLS block (of a plugin's library) for a pre-2.25 glibc header and hand
	# LeakSanitizer a bogus range: "Tracer caught signal 11" at exit, no leak reported.
	ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:allocator_may_return_null=1:intercept_tls_get_addr=0} \
	UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
		run_suite "$src/_build-san" sanitizers || status=1
fi

if [ $san -eq 1 ]; then
	echo "== fuzz: make fuzz-smoke (${FUZZ_SECONDS:-30} s per target)" >&2
	find "$src/_build-fuzz" -name '*.trs' -delete 2>/dev/null
	make -C "$src/_build-fuzz" fuzz-smoke FUZZ_SECONDS="${FUZZ_SECONDS:-30}" >"$src/_build-fuzz/fuzz.out" 2>&1 || {
		status=1
		grep -E '^(FAIL|ERROR):|input:' "$src/_build-fuzz/fuzz.out" >&2
	}
fi

# Count every TAP result of every run.
dirs=("$src/_build")
[ $san -eq 1 ] && dirs+=("$src/_build-san" "$src/_build-fuzz")
passed=0 failed=0 skipped=0
while read -r res; do
	case "$res" in
	PASS | XFAIL) passed=$((passed + 1)) ;;
	SKIP) skipped=$((skipped + 1)) ;;
	*) failed=$((failed + 1)) ;;
	esac
done < <(find "${dirs[@]}" -name '*.trs' -exec sed -n 's/^:test-result: //p' {} + 2>/dev/null)
[ $status -ne 0 ] && [ $failed -eq 0 ] && failed=1 # a harness failure with no TAP failure still fails
echo "$passed passed, $failed failed, $skipped skipped"
[ $failed -eq 0 ]
