# tests/daemon: service modules and DI (fixture modules), emhostd over HTTP,
# load, fault and shutdown tests.
FX_LDFLAGS = -module -avoid-version -rpath /nowhere
FX_SOURCES = tests/daemon/fx_service.c tests/daemon/fx_entities.h
check_LTLIBRARIES += tests/daemon/fx_good.la tests/daemon/fx_twin.la tests/daemon/fx_clash.la \
	tests/daemon/fx_ledger.la tests/daemon/fx_badabi.la tests/daemon/fx_small.la \
	tests/daemon/fx_nohandle.la tests/daemon/fx_nosym.la tests/daemon/fx_initfail.la \
	tests/daemon/fx_sym8.la tests/daemon/fx_huge.la
tests_daemon_fx_good_la_SOURCES = $(FX_SOURCES)
tests_daemon_fx_good_la_CPPFLAGS = $(AM_CPPFLAGS) -DFX_GOOD
tests_daemon_fx_good_la_LDFLAGS = $(FX_LDFLAGS)
tests_daemon_fx_good_la_LIBADD = core/libemhost.la
tests_daemon_fx_twin_la_SOURCES = $(FX_SOURCES)
tests_daemon_fx_twin_la_CPPFLAGS = $(AM_CPPFLAGS) -DFX_TWIN
tests_daemon_fx_twin_la_LDFLAGS = $(FX_LDFLAGS)
tests_daemon_fx_twin_la_LIBADD = core/libemhost.la
tests_daemon_fx_clash_la_SOURCES = $(FX_SOURCES)
tests_daemon_fx_clash_la_CPPFLAGS = $(AM_CPPFLAGS) -DFX_CLASH
tests_daemon_fx_clash_la_LDFLAGS = $(FX_LDFLAGS)
tests_daemon_fx_clash_la_LIBADD = core/libemhost.la
tests_daemon_fx_ledger_la_SOURCES = $(FX_SOURCES)
tests_daemon_fx_ledger_la_CPPFLAGS = $(AM_CPPFLAGS) -DFX_LEDGER
tests_daemon_fx_ledger_la_LDFLAGS = $(FX_LDFLAGS)
tests_daemon_fx_ledger_la_LIBADD = core/libemhost.la
tests_daemon_fx_badabi_la_SOURCES = $(FX_SOURCES)
tests_daemon_fx_badabi_la_CPPFLAGS = $(AM_CPPFLAGS) -DFX_BADABI
tests_daemon_fx_badabi_la_LDFLAGS = $(FX_LDFLAGS)
tests_daemon_fx_badabi_la_LIBADD = core/libemhost.la
tests_daemon_fx_small_la_SOURCES = $(FX_SOURCES)
tests_daemon_fx_small_la_CPPFLAGS = $(AM_CPPFLAGS) -DFX_SMALL
tests_daemon_fx_small_la_LDFLAGS = $(FX_LDFLAGS)
tests_daemon_fx_small_la_LIBADD = core/libemhost.la
tests_daemon_fx_nohandle_la_SOURCES = $(FX_SOURCES)
tests_daemon_fx_nohandle_la_CPPFLAGS = $(AM_CPPFLAGS) -DFX_NOHANDLE
tests_daemon_fx_nohandle_la_LDFLAGS = $(FX_LDFLAGS)
tests_daemon_fx_nohandle_la_LIBADD = core/libemhost.la
tests_daemon_fx_nosym_la_SOURCES = $(FX_SOURCES)
tests_daemon_fx_nosym_la_CPPFLAGS = $(AM_CPPFLAGS) -DFX_NOSYM
tests_daemon_fx_nosym_la_LDFLAGS = $(FX_LDFLAGS)
tests_daemon_fx_nosym_la_LIBADD = core/libemhost.la
tests_daemon_fx_initfail_la_SOURCES = $(FX_SOURCES)
tests_daemon_fx_initfail_la_CPPFLAGS = $(AM_CPPFLAGS) -DFX_INITFAIL
tests_daemon_fx_initfail_la_LDFLAGS = $(FX_LDFLAGS)
tests_daemon_fx_initfail_la_LIBADD = core/libemhost.la
tests_daemon_fx_sym8_la_SOURCES = $(FX_SOURCES)
tests_daemon_fx_sym8_la_CPPFLAGS = $(AM_CPPFLAGS) -DFX_SYM8
tests_daemon_fx_sym8_la_LDFLAGS = $(FX_LDFLAGS)
tests_daemon_fx_sym8_la_LIBADD = core/libemhost.la
tests_daemon_fx_huge_la_SOURCES = $(FX_SOURCES)
tests_daemon_fx_huge_la_CPPFLAGS = $(AM_CPPFLAGS) -DFX_HUGE
tests_daemon_fx_huge_la_LDFLAGS = $(FX_LDFLAGS)
tests_daemon_fx_huge_la_LIBADD = core/libemhost.la

if HAVE_SQLITE
check_PROGRAMS += tests/daemon/t_services
tests_daemon_t_services_SOURCES = tests/daemon/t_services.c tests/daemon/fx_entities.h
tests_daemon_t_services_LDADD = core/libemhost.la
TESTS += tests/daemon/t_services
endif

# emhostd driven over real HTTP (libcurl); dtest.c starts and stops it.
if HAVE_DAEMON
if HAVE_CURL
if HAVE_SQLITE
DTEST_SOURCES = tests/daemon/dtest.c tests/daemon/dtest.h tests/tap.h
DTEST_CFLAGS = $(AM_CFLAGS) $(MHD_CFLAGS) $(CURL_CFLAGS)
DTEST_LIBS = $(MHD_LIBS) $(CURL_LIBS)
check_PROGRAMS += tests/daemon/t_http
tests_daemon_t_http_SOURCES = tests/daemon/t_http.c $(DTEST_SOURCES)
tests_daemon_t_http_CFLAGS = $(DTEST_CFLAGS)
tests_daemon_t_http_LDADD = $(DTEST_LIBS)
TESTS += tests/daemon/t_http
check_PROGRAMS += tests/daemon/t_load
tests_daemon_t_load_SOURCES = tests/daemon/t_load.c $(DTEST_SOURCES) services/common/entities.h
tests_daemon_t_load_CFLAGS = $(DTEST_CFLAGS)
tests_daemon_t_load_LDADD = core/libemhost.la $(DTEST_LIBS)
TESTS += tests/daemon/t_load
check_PROGRAMS += tests/daemon/t_shutdown
tests_daemon_t_shutdown_SOURCES = tests/daemon/t_shutdown.c $(DTEST_SOURCES) services/common/entities.h
tests_daemon_t_shutdown_CFLAGS = $(DTEST_CFLAGS)
tests_daemon_t_shutdown_LDADD = core/libemhost.la $(DTEST_LIBS)
TESTS += tests/daemon/t_shutdown
# the service API's edges through the daemon, and request ids
check_PROGRAMS += tests/daemon/t_edges
tests_daemon_t_edges_SOURCES = tests/daemon/t_edges.c $(DTEST_SOURCES)
tests_daemon_t_edges_CFLAGS = $(DTEST_CFLAGS)
tests_daemon_t_edges_LDADD = $(DTEST_LIBS)
TESTS += tests/daemon/t_edges
# SIGHUP reloads under load, and systemd's notify protocol
check_PROGRAMS += tests/daemon/t_reload
tests_daemon_t_reload_SOURCES = tests/daemon/t_reload.c $(DTEST_SOURCES)
tests_daemon_t_reload_CFLAGS = $(DTEST_CFLAGS)
tests_daemon_t_reload_LDADD = $(DTEST_LIBS)
TESTS += tests/daemon/t_reload
check_PROGRAMS += tests/daemon/t_robust
tests_daemon_t_robust_SOURCES = tests/daemon/t_robust.c $(DTEST_SOURCES)
tests_daemon_t_robust_CFLAGS = $(DTEST_CFLAGS) $(SQLITE3_CFLAGS)
tests_daemon_t_robust_LDADD = $(DTEST_LIBS) $(SQLITE3_LIBS)
TESTS += tests/daemon/t_robust
# the fast path: handlers on the I/O thread, and what is still handed off (issue 19)
check_PROGRAMS += tests/daemon/t_inline
tests_daemon_t_inline_SOURCES = tests/daemon/t_inline.c $(DTEST_SOURCES)
tests_daemon_t_inline_CFLAGS = $(DTEST_CFLAGS) $(SQLITE3_CFLAGS)
tests_daemon_t_inline_LDADD = $(DTEST_LIBS) $(SQLITE3_LIBS)
TESTS += tests/daemon/t_inline
# field and answer size limits, slow readers on a small pool (issue 11)
check_PROGRAMS += tests/daemon/t_limits
tests_daemon_t_limits_SOURCES = tests/daemon/t_limits.c $(DTEST_SOURCES) services/common/entities.h
tests_daemon_t_limits_CFLAGS = $(DTEST_CFLAGS)
tests_daemon_t_limits_LDADD = core/libemhost.la $(DTEST_LIBS)
TESTS += tests/daemon/t_limits
# the shop example: every route and error, compensation, 8 clients x 300 orders (issue 18)
check_PROGRAMS += tests/daemon/t_shop
tests_daemon_t_shop_SOURCES = tests/daemon/t_shop.c $(DTEST_SOURCES)
tests_daemon_t_shop_CFLAGS = $(DTEST_CFLAGS) $(SQLITE3_CFLAGS)
tests_daemon_t_shop_LDADD = $(DTEST_LIBS) $(SQLITE3_LIBS)
TESTS += tests/daemon/t_shop
# needs the test servers (scripts/test-servers.sh, EMH_TEST_STATE_DIR): skips loudly without
check_PROGRAMS += tests/daemon/t_fault
tests_daemon_t_fault_SOURCES = tests/daemon/t_fault.c $(DTEST_SOURCES)
tests_daemon_t_fault_CFLAGS = $(DTEST_CFLAGS)
tests_daemon_t_fault_LDADD = $(DTEST_LIBS)
TESTS += tests/daemon/t_fault

# The cost of the HTTP front: `make bench-http-front`.  The same GET of a user
# by id, in-process and through emhostd under wrk, in one run.  (`make
# bench-http`, bench/local.mk, compares emhostd with a hand-written server.)
noinst_PROGRAMS += tests/daemon/emh-bench-http
tests_daemon_emh_bench_http_SOURCES = tests/daemon/bench_http.c $(DTEST_SOURCES) services/common/entities.h
tests_daemon_emh_bench_http_CFLAGS = $(DTEST_CFLAGS)
tests_daemon_emh_bench_http_LDADD = core/libemhost.la $(DTEST_LIBS)
BENCH_HTTP_PROG = tests/daemon/emh-bench-http$(EXEEXT)
BENCH_HTTP_DEPS = core/daemon/emhostd$(EXEEXT) $(service_LTLIBRARIES) plugins-build.stamp
endif
endif
endif
bench-http-front: $(BENCH_HTTP_PROG) $(BENCH_HTTP_DEPS)
	@if test -n '$(BENCH_HTTP_PROG)'; then \
	  EMH_BUILDDIR='$(abs_top_builddir)' EMH_SRCDIR='$(abs_top_srcdir)' tests/daemon/emh-bench-http; \
	else echo "bench-http-front: skipped (needs emhostd, libcurl and the sqlite driver)"; fi

# emhostd's command line: listen addresses it must refuse (no HTTP client needed);
# emhost check-config refusing what emhostd refuses, with the same message;
# an address in use, journald priorities, SIGHUP and emhost reload.
if HAVE_DAEMON
if HAVE_SQLITE
TESTS += tests/daemon/listen.sh tests/daemon/preflight.sh tests/daemon/ops.sh
# GET /_emhost/openapi.json checked by a real OpenAPI 3.1 validator (npm, cached)
TESTS += tests/daemon/openapi.sh
# bench/raw_http.c's --seed on PostgreSQL leaves the key's sequence past the seeded ids
if HAVE_POSTGRES
TESTS += tests/daemon/rawseed.sh
endif
endif
endif
EXTRA_DIST += tests/daemon/listen.sh tests/daemon/preflight.sh tests/daemon/ops.sh tests/daemon/openapi.sh \
	tests/daemon/rawseed.sh
