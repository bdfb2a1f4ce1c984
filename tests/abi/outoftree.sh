#!/bin/sh
# SPDX-License-Identifier: MIT
# tests/abi/outoftree.sh: a driver built as an outside author builds it.
#
# Installs this build into a temporary staging directory (make install
# DESTDIR=...), takes the Makefile that docs/writing-a-driver.md shows (the
# block after its "outoftree.sh" marker), builds tests/fixtures/memdoc.c with
# it using nothing but pkg-config on the staged emhost.pc, installs it into
# the staged plugin directory, then builds an application (tests/abi/host.c)
# against the staged headers and library and has it load the driver and use
# it.  The compiler and flags are this build's (tests/abi/toolchain.env), so
# the sanitizer build checks the sanitizer build.  Runs in every `make check`.
set -u
. "${EMH_SRCDIR:?EMH_SRCDIR is not set (run through make check)}/tests/stage.sh"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/emh-abi.XXXXXX") || { echo "Bail out! mktemp failed"; exit 1; }
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM
stage=$tmp/stage
work=$tmp/memdoc
mkdir "$work" || { echo "Bail out! mkdir $work"; exit 1; }

# ---- 1. install into a staging directory ----
stage_install "$stage" "$tmp/install.log" emhost.pc || { done_testing; exit 1; }
plugindir=$($PKG_CONFIG --variable=plugindir emhost)
libdir=$($PKG_CONFIG --variable=libdir emhost)
case $plugindir in "$stage"/*/emhost/plugins) st=0 ;; *) st=1 ;; esac
ok $st "pkg-config --variable=plugindir emhost: $plugindir"
case $($PKG_CONFIG --variable=servicedir emhost) in "$stage"/*/emhost/services) st=0 ;; *) st=1 ;; esac
ok $st "pkg-config --variable=servicedir emhost"
$PKG_CONFIG --variable=plugin_ldflags emhost | grep -qF -- "-module -avoid-version -no-undefined -export-symbols-regex '^emh_driver_descriptor'"
ok $? "pkg-config --variable=plugin_ldflags emhost: libtool's module flags, only the descriptor exported"
[ -n "$($PKG_CONFIG --variable=plugin_cflags emhost)" ] && [ -n "$($PKG_CONFIG --variable=plugin_cc_ldflags emhost)" ]
ok $? "plugin_cflags and plugin_cc_ldflags for the compiler alone"

# ---- 2. the guide's Makefile builds and installs memdoc ----
awk '/<!-- outoftree.sh:/ { mark = 1; next }
     mark && /^```/ { if (inblock) exit; inblock = 1; next }
     inblock { print }' "$EMH_SRCDIR/docs/writing-a-driver.md" >"$work/Makefile"
grep -q '^install:' "$work/Makefile"
step $? "$work/Makefile" "docs/writing-a-driver.md shows a Makefile with an install target"
cp "$EMH_SRCDIR/tests/fixtures/memdoc.c" "$work/" || { echo "Bail out! cannot copy memdoc.c"; exit 1; }
make -C "$work" CC="$CC" CFLAGS="$CFLAGS" LDFLAGS="$LDFLAGS" PKG_CONFIG="$PKG_CONFIG" >"$tmp/build.log" 2>&1
step $? "$tmp/build.log" "make builds memdoc.so with pkg-config alone"
no_warnings "$tmp/build.log" "without a warning (installed headers, -std=c11 -Wall -Wextra)"
# (AddressSanitizer adds an __odr_asan indicator beside each global: not the plugin's)
exports=$(nm -D --defined-only "$work/memdoc.so" 2>/dev/null | awk '$3 !~ /^__(odr_)?asan/ { print $3 }' | tr '\n' ' ')
[ "$exports" = "emh_driver_descriptor " ]
st=$?
ok $st "memdoc.so exports only emh_driver_descriptor"
[ $st -eq 0 ] || diag "exports: $exports"
make -C "$work" install PKG_CONFIG="$PKG_CONFIG" >"$tmp/install-driver.log" 2>&1 && [ -f "$plugindir/memdoc.so" ]
step $? "$tmp/install-driver.log" "make install puts it into the plugin directory"

# ---- 3. an application on the installed emhost loads it ----
# shellcheck disable=SC2046 # pkg-config prints separate words
$CC -std=c11 -Wall -Wextra -Wpedantic $CFLAGS $($PKG_CONFIG --cflags emhost) "$EMH_SRCDIR/tests/abi/host.c" \
	-o "$tmp/host" $LDFLAGS $($PKG_CONFIG --libs emhost) >"$tmp/host-build.log" 2>&1
step $? "$tmp/host-build.log" "an application builds with pkg-config --cflags --libs emhost"
no_warnings "$tmp/host-build.log" "without a warning (-Wpedantic)"
LD_LIBRARY_PATH=$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} "$tmp/host" "$plugindir" >"$tmp/host.out" 2>&1
st=$?
while IFS= read -r line; do
	case $line in
	"PASS "*) ok 0 "${line#PASS }" ;;
	"FAIL "*) ok 1 "${line#FAIL }" ;;
	*) diag "$line" ;;
	esac
done <"$tmp/host.out"
[ $st -eq 0 ]; ok $? "the application exits 0 (status $st)"
done_testing
