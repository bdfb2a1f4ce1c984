#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# scripts/deps.sh: make sure the Debian packages emhost builds and tests with are installed.
#
# usage: scripts/deps.sh [build|test]
#   build  what building emhost and running the host needs
#   test   that plus the test servers (PostgreSQL, MariaDB, node for the
#          MongoDB wire server) and the tools the tests use
# As root, missing packages are installed with apt-get (non-interactive);
# as another user, the missing ones are listed and the script fails.
set -euo pipefail
what=${1:-build}
build_pkgs=(gcc make autoconf automake libtool pkg-config libconfig-dev libsqlite3-dev
	libpq-dev default-libmysqlclient-dev libmongoc-dev libbson-dev libmicrohttpd-dev
	libjansson-dev libcurl4-openssl-dev curl)
# clang + libclang-rt-14-dev: the fuzz targets (tests/fuzz, libFuzzer) that scripts/test.sh --sanitizers runs
test_pkgs=(postgresql mariadb-server nodejs npm wrk valgrind sqlite3 procps iproute2 clang libclang-rt-14-dev)
pkgs=("${build_pkgs[@]}")
[ "$what" = test ] && pkgs+=("${test_pkgs[@]}")

missing=()
for p in "${pkgs[@]}"; do
	# node and npm may come from another packaging of Node.js (npm inside nodejs).
	case "$p" in
	nodejs) command -v node >/dev/null && continue ;;
	npm) command -v npm >/dev/null && continue ;;
	esac
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
	echo "deps.sh: missing Debian packages: ${missing[*]}" >&2
	echo "deps.sh: install them with: sudo apt-get install -y ${missing[*]}" >&2
	exit 1
fi
echo "deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
# No service starts on these machines (no systemd); the test scripts start their own servers.
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
