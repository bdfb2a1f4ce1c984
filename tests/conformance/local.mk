# tests/conformance: one TAP program run unchanged against any context of any
# driver (emh-conformance --context NAME, contexts from -c FILE and/or
# EMH_CONTEXT_<NAME>_* variables).  sqlite.sh runs it on a temporary SQLite
# file in every `make check`; the other drivers' wrappers live in their own
# test folders and call $(EMH_BUILDDIR)/tests/conformance/emh-conformance.
check_PROGRAMS += tests/conformance/emh-conformance
# One program from several files, one topic each (conformance.h); they share its TAP count.
tests_conformance_emh_conformance_SOURCES = tests/conformance/emh-conformance.c tests/conformance/conformance.h \
	tests/conformance/cf_concurrency.c tests/tap.h
tests_conformance_emh_conformance_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/tests -DEMH_TAP_SHARED
tests_conformance_emh_conformance_LDADD = core/libemhost.la $(EMH_PTHREAD_LIBS)

TESTS += tests/conformance/sqlite.sh
EXTRA_DIST += tests/conformance/sqlite.sh
