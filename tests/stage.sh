# SPDX-License-Identifier: MIT
# tests/stage.sh: sourced by the tests that build against an installed
# emhost as an outside author would (tests/abi/outoftree.sh,
# tests/docs/writing-a-service.sh): the build's environment checks, the TAP
# helpers, and stage_install, which installs this build into a staging
# directory and points pkg-config into it.
if [ -z "${EMH_BUILDDIR:-}" ] || [ -z "${EMH_SRCDIR:-}" ]; then
	echo "Bail out! EMH_BUILDDIR / EMH_SRCDIR are not set (run through make check)"
	exit 1
fi
. "$EMH_SRCDIR/tests/tap.sh"
. "$EMH_BUILDDIR/tests/abi/toolchain.env" || { echo "Bail out! tests/abi/toolchain.env missing"; exit 1; }
command -v pkg-config >/dev/null 2>&1 || { echo "Bail out! pkg-config is not installed"; exit 1; }

# step STATUS LOG NAME: one test; LOG's last lines as diagnostics when it failed.
step() { ok "$1" "$3"; [ "$1" -eq 0 ] || diag "$(tail -n 25 "$2")"; return "$1"; }
# no_warnings LOG NAME: the compiler said nothing of note.
no_warnings() { ! grep -q 'warning:' "$1"; step $? "$1" "$2"; }

# The makes of these tests are an outside author's, not jobs of the `make check` that runs them.
unset MAKEFLAGS MFLAGS MAKELEVEL

# stage_install STAGE LOG PCFILE: `make install DESTDIR=STAGE` (two tests:
# the install, PCFILE installed); then PKG_CONFIG_PATH holds PCFILE's
# directory and PKG_CONFIG is pkg-config with emhost's directories moved
# into the stage (what a packager's sysroot does), so plugindir, servicedir
# and the rest follow.  Returns non-zero (tests failed) when either step did.
stage_install() {
	make -C "$EMH_BUILDDIR" install DESTDIR="$1" >"$2" 2>&1
	step $? "$2" "make install DESTDIR=<staging directory>" || return 1
	_pc=$(find "$1" -name "$3" | head -n 1)
	[ -n "$_pc" ]; step $? /dev/null "$3 is installed" || return 1
	PKG_CONFIG_PATH=$(dirname "$_pc")
	export PKG_CONFIG_PATH
	PKG_CONFIG="pkg-config --define-variable=prefix=$1$(pkg-config --variable=prefix emhost)"
	PKG_CONFIG="$PKG_CONFIG --define-variable=libdir=$1$(pkg-config --variable=libdir emhost)"
	PKG_CONFIG="$PKG_CONFIG --define-variable=includedir=$1$(pkg-config --variable=includedir emhost)"
}
