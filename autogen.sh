#!/bin/sh
# Generate configure and Makefile.in (autoreconf installs tap-driver.sh and friends into build-aux/).
set -e
cd "$(dirname "$0")"
autoreconf --install --force
