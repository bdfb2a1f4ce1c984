#!/bin/sh
# SPDX-License-Identifier: MIT
# tests/hostile/plugins_cli.sh: `emhost plugins` facing hostile plugin files (issue 11,
# items 7 and 8): --probe reports plugins whose constructors end the process
# (_Exit(3), SIGSEGV) as refusals and lives on; file names and reasons never
# carry terminal escape sequences to the terminal.
set -u
if [ -z "${EMH_BUILDDIR:-}" ] || [ -z "${EMH_SRCDIR:-}" ]; then
	echo "Bail out! EMH_BUILDDIR / EMH_SRCDIR are not set (run through make check)"
	exit 1
fi
. "$EMH_SRCDIR/tests/tap.sh"

emhost="$EMH_BUILDDIR/core/cli/emhost"
fx="$EMH_BUILDDIR/tests/fixtures/.libs"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/emh-plugcli.XXXXXX") || { echo "Bail out! mktemp failed"; exit 1; }
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM
unset EMH_CONFIG EMH_PLUGIN_DIR 2>/dev/null || true
for v in $(env | sed -n 's/^\(EMH_CONTEXT_[A-Za-z0-9_]*\)=.*/\1/p'); do unset "$v"; done

# run ARGS...: stdout in $tmp/out, stderr in $tmp/err, status in $st.
run() { "$emhost" "$@" >"$tmp/out" 2>"$tmp/err"; st=$?; }
status() {
	[ "$st" -eq "$1" ]; ok $? "$2 (exit $1)"
	[ "$st" -eq "$1" ] || { diag "exit status $st"; diag "$(cat "$tmp/out" "$tmp/err")"; }
}
out() { grep -qF -- "$1" "$tmp/out"; ok $? "$2"; grep -qF -- "$1" "$tmp/out" || diag "stdout lacks: $1" "$(cat "$tmp/out")"; }
# noctl NAME: no ESC or BEL byte in anything the last run printed.
noctl() { ! cat "$tmp/out" "$tmp/err" | LC_ALL=C grep -q "$(printf '[\033\007]')"; ok $? "$1"; }

# ---- --probe: constructors that end the process loading them ----
d="$tmp/probe"
mkdir "$d" && chmod 755 "$d"
for f in fx_good fx_ctorexit fx_ctorsegv; do cp "$fx/$f.so" "$d/" && chmod 755 "$d/$f.so"; done
run -p "$d" plugins --probe
status 0 "plugins --probe with plugins whose constructors exit and crash"
out "fx_good " "the good plugin is listed as loaded"
out "$d/fx_ctorexit.so: its process exited with status 3 while loading" "_Exit(3) in a constructor: a refusal with the status"
out "$d/fx_ctorsegv.so: its process was killed by signal 11" "SIGSEGV in a constructor: a refusal with the signal"
run -p "$d" contexts --probe
status 2 "--probe with another command is a usage error"

# ---- names and reasons cleaned ----
d="$tmp/esc"
mkdir "$d" && chmod 755 "$d"
esc=$(printf '\033')
bel=$(printf '\007')
printf 'not a plugin\n' >"$d/${esc}[31mred.so"
cp "$fx/fx_good.so" "$d/${esc}]0;pwned${bel}.so"
chmod 755 "$d"/*.so
run -p "$d" plugins
status 0 "plugins with escape sequences in file names"
noctl "no escape byte reaches the terminal"
out '\x1B[31mred.so: not an ELF shared object' "the file name is shown with its escape written out"
out "file '\\x1B]0;pwned\\x07.so' declares driver 'fx_good'" "and so is the name inside a reason"
run -p "$d" plugins --probe
status 0 "the same with --probe"
noctl "no escape byte reaches the terminal either"
out '\x1B[31mred.so: not an ELF shared object' "the same refusal"

done_testing
