#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# scripts/build.sh: generate, configure and build emhost out of tree.
#
# usage: scripts/build.sh [BUILD_DIR [configure options...]]
#   BUILD_DIR defaults to _build (relative to the source tree).
# Re-running only rebuilds what changed.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
bdir=${1:-_build}
shift || true
case "$bdir" in /*) ;; *) bdir="$src/$bdir" ;; esac
[ -x "$src/configure" ] && [ "$src/configure" -nt "$src/configure.ac" ] || (cd "$src" && ./autogen.sh >/dev/null 2>&1) \
	|| { echo "build.sh: autogen.sh failed; run it by hand to see why" >&2; exit 1; }
mkdir -p "$bdir"
cd "$bdir"
if [ ! -f Makefile ] || [ "$src/configure" -nt config.status ]; then
	"$src/configure" -q "$@" >configure.out 2>&1 || { cat configure.out >&2; exit 1; }
	sed -n '/emhost .* configured/,$p' configure.out >&2
fi
make -j"$(nproc)" >make.out 2>&1 || { tail -40 make.out >&2; echo "build.sh: make failed (full log: $bdir/make.out)" >&2; exit 1; }
