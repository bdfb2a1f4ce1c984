# tests/build: what the build itself promises (one version, from AC_INIT, everywhere).
check_PROGRAMS += tests/build/version_print
tests_build_version_print_SOURCES = tests/build/version_print.c
tests_build_version_print_LDADD = core/libemhost.la
TESTS += tests/build/version.sh
EXTRA_DIST += tests/build/version.sh
