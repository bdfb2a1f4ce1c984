# SPDX-License-Identifier: MIT
# tests/tap.sh: TAP helpers for shell tests (source it).  Mirrors tests/tap.h.
tap_n=0; tap_failed=0
ok() { # ok COND_EXIT_STATUS NAME...
	local st=$1; shift; tap_n=$((tap_n + 1))
	if [ "$st" -eq 0 ]; then echo "ok $tap_n - $*"; else echo "not ok $tap_n - $*"; tap_failed=$((tap_failed + 1)); fi
}
diag() { printf '%s\n' "$@" | sed 's/^/# /'; }
skip() { local n=$1; shift; local i; for i in $(seq 1 "$n"); do tap_n=$((tap_n + 1)); echo "ok $tap_n # SKIP $*"; done; }
# A test that needs a server it cannot find: fails under CI=true, skips loudly otherwise.
need_server() { local n=$1; shift
	if [ "${CI:-}" = true ] || [ "${CI:-}" = 1 ]; then local i; for i in $(seq 1 "$n"); do ok 1 "required server missing under CI: $*"; done
	else diag "SKIPPING $n tests: $* (set CI=true to make this a failure)"; skip "$n" "$*"; fi; }
done_testing() { echo "1..$tap_n"; [ "$tap_failed" -eq 0 ]; }
