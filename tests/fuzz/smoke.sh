#!/bin/sh
# SPDX-License-Identifier: MIT
# tests/fuzz/smoke.sh: run every fuzz target of a --enable-fuzzing build for a bounded
# time (`make fuzz-smoke`): FUZZ_SECONDS each (default 30), from its committed seed
# corpus and crash inputs.  TAP, one result per target.  New inputs and crash
# artifacts go to tests/fuzz/out/<target>/ of the build tree; a crash names the file
# to commit under tests/fuzz/regress/<target>/ once it is fixed.
set -u
if [ -z "${EMH_BUILDDIR:-}" ] || [ -z "${EMH_SRCDIR:-}" ]; then
	echo "Bail out! EMH_BUILDDIR / EMH_SRCDIR are not set (run through make fuzz-smoke)"
	exit 1
fi
. "$EMH_SRCDIR/tests/tap.sh"
secs=${FUZZ_SECONDS:-30}
targets=${FUZZ_TARGETS:-config env expand url request mongo_json}
export EMH_BUILDDIR EMH_SRCDIR
# leaks count as findings; a report names the input
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export ASAN_OPTIONS UBSAN_OPTIONS

for t in $targets; do
	bin="$EMH_BUILDDIR/tests/fuzz/fuzz-$t"
	out="$EMH_BUILDDIR/tests/fuzz/out/$t"
	mkdir -p "$out/new"
	if [ ! -x "$bin" ]; then
		ok 1 "$t: $bin is not built"
		continue
	fi
	set -- "$out/new" "$EMH_SRCDIR/tests/fuzz/corpus/$t"
	[ -d "$EMH_SRCDIR/tests/fuzz/regress/$t" ] && set -- "$@" "$EMH_SRCDIR/tests/fuzz/regress/$t"
	"$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
		-artifact_prefix="$out/" "$@" >"$out/log" 2>&1
	st=$?
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/log" | tail -1)
	if [ $st -eq 0 ]; then
		ok 0 "$t: ${secs} s, ${runs:-?} inputs, no crash, leak or sanitizer report"
	else
		ok 1 "$t: the fuzzer stopped with status $st"
		grep -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error|artifact_prefix|Test unit written)' "$out/log" | head -20 |
			sed 's/^/# /'
		for a in "$out"/crash-* "$out"/leak-* "$out"/timeout-* "$out"/oom-*; do
			[ -f "$a" ] && diag "input: $a (once fixed, commit it as tests/fuzz/regress/$t/$(basename "$a"))"
		done
	fi
done
done_testing
