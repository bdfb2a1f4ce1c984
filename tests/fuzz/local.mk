# tests/fuzz: libFuzzer targets (issue 11), one source each (tests/fuzz/fuzz_<target>.c).
#   --enable-fuzzing (clang): tests/fuzz/fuzz-<target>, run for a bounded time each by
#     `make fuzz-smoke` (FUZZ_SECONDS, default 30), which reports TAP (tests/fuzz/smoke.trs)
#   every build: tests/fuzz/replay-<target>, the same target with a plain main
#     (tests/fuzz/replay.c) fed the committed corpus and crash inputs in make check
# A crash input found is committed under tests/fuzz/regress/<target>/.
FUZZ_COMMON = tests/fuzz/fuzz.h
FUZZ_REPLAY = tests/fuzz/replay.c tests/tap.h
# the daemon's request path without a socket, and what it needs of reply.c and metrics.c
FUZZ_CALL_SOURCES = core/daemon/call.c core/daemon/reply.c core/daemon/metrics.c core/daemon/httpd.h \
	core/daemon/httpd_int.h
FUZZ_TARGETS = config env expand url
EXTRA_DIST += tests/fuzz/corpus tests/fuzz/regress tests/fuzz/smoke.sh

check_PROGRAMS += tests/fuzz/replay-config
TESTS += tests/fuzz/replay-config
tests_fuzz_replay_config_SOURCES = tests/fuzz/fuzz_config.c $(FUZZ_COMMON) $(FUZZ_REPLAY)
tests_fuzz_replay_config_CPPFLAGS = $(AM_CPPFLAGS) -DFUZZ_TARGET='"config"'
tests_fuzz_replay_config_LDADD = core/libemhost_core.la $(LIBCONFIG_LIBS) $(EMH_PTHREAD_LIBS)
if FUZZING
noinst_PROGRAMS += tests/fuzz/fuzz-config
tests_fuzz_fuzz_config_SOURCES = tests/fuzz/fuzz_config.c $(FUZZ_COMMON)
tests_fuzz_fuzz_config_LDFLAGS = -fsanitize=fuzzer
tests_fuzz_fuzz_config_LDADD = core/libemhost_core.la $(LIBCONFIG_LIBS) $(EMH_PTHREAD_LIBS)
endif

check_PROGRAMS += tests/fuzz/replay-env
TESTS += tests/fuzz/replay-env
tests_fuzz_replay_env_SOURCES = tests/fuzz/fuzz_env.c $(FUZZ_COMMON) $(FUZZ_REPLAY)
tests_fuzz_replay_env_CPPFLAGS = $(AM_CPPFLAGS) -DFUZZ_TARGET='"env"'
tests_fuzz_replay_env_LDADD = core/libemhost_core.la $(LIBCONFIG_LIBS) $(EMH_PTHREAD_LIBS)
if FUZZING
noinst_PROGRAMS += tests/fuzz/fuzz-env
tests_fuzz_fuzz_env_SOURCES = tests/fuzz/fuzz_env.c $(FUZZ_COMMON)
tests_fuzz_fuzz_env_LDFLAGS = -fsanitize=fuzzer
tests_fuzz_fuzz_env_LDADD = core/libemhost_core.la $(LIBCONFIG_LIBS) $(EMH_PTHREAD_LIBS)
endif

check_PROGRAMS += tests/fuzz/replay-expand
TESTS += tests/fuzz/replay-expand
tests_fuzz_replay_expand_SOURCES = tests/fuzz/fuzz_expand.c $(FUZZ_COMMON) $(FUZZ_REPLAY)
tests_fuzz_replay_expand_CPPFLAGS = $(AM_CPPFLAGS) -DFUZZ_TARGET='"expand"'
tests_fuzz_replay_expand_LDADD = core/libemhost_core.la $(LIBCONFIG_LIBS) $(EMH_PTHREAD_LIBS)
if FUZZING
noinst_PROGRAMS += tests/fuzz/fuzz-expand
tests_fuzz_fuzz_expand_SOURCES = tests/fuzz/fuzz_expand.c $(FUZZ_COMMON)
tests_fuzz_fuzz_expand_LDFLAGS = -fsanitize=fuzzer
tests_fuzz_fuzz_expand_LDADD = core/libemhost_core.la $(LIBCONFIG_LIBS) $(EMH_PTHREAD_LIBS)
endif

check_PROGRAMS += tests/fuzz/replay-url
TESTS += tests/fuzz/replay-url
tests_fuzz_replay_url_SOURCES = tests/fuzz/fuzz_url.c $(FUZZ_COMMON) $(FUZZ_REPLAY)
tests_fuzz_replay_url_CPPFLAGS = $(AM_CPPFLAGS) -DFUZZ_TARGET='"url"'
tests_fuzz_replay_url_LDADD = core/libemhost_core.la $(LIBCONFIG_LIBS) $(EMH_PTHREAD_LIBS)
if FUZZING
noinst_PROGRAMS += tests/fuzz/fuzz-url
tests_fuzz_fuzz_url_SOURCES = tests/fuzz/fuzz_url.c $(FUZZ_COMMON)
tests_fuzz_fuzz_url_LDFLAGS = -fsanitize=fuzzer
tests_fuzz_fuzz_url_LDADD = core/libemhost_core.la $(LIBCONFIG_LIBS) $(EMH_PTHREAD_LIBS)
endif

if HAVE_DAEMON
if HAVE_SQLITE
FUZZ_TARGETS += request
check_PROGRAMS += tests/fuzz/replay-request
TESTS += tests/fuzz/replay-request
tests_fuzz_replay_request_SOURCES = tests/fuzz/fuzz_request.c $(FUZZ_CALL_SOURCES) $(FUZZ_COMMON) $(FUZZ_REPLAY)
tests_fuzz_replay_request_CPPFLAGS = $(AM_CPPFLAGS) -DFUZZ_TARGET='"request"'
tests_fuzz_replay_request_CFLAGS = $(AM_CFLAGS) $(MHD_CFLAGS)
tests_fuzz_replay_request_LDADD = core/web/libemhost-web.la core/libemhost.la $(MHD_LIBS)
if FUZZING
noinst_PROGRAMS += tests/fuzz/fuzz-request
tests_fuzz_fuzz_request_SOURCES = tests/fuzz/fuzz_request.c $(FUZZ_CALL_SOURCES) $(FUZZ_COMMON)
tests_fuzz_fuzz_request_CFLAGS = $(AM_CFLAGS) $(MHD_CFLAGS)
tests_fuzz_fuzz_request_LDFLAGS = -fsanitize=fuzzer
tests_fuzz_fuzz_request_LDADD = core/web/libemhost-web.la core/libemhost.la $(MHD_LIBS)
endif
endif
endif

if HAVE_MONGO
FUZZ_TARGETS += mongo_json
check_PROGRAMS += tests/fuzz/replay-mongo_json
TESTS += tests/fuzz/replay-mongo_json
tests_fuzz_replay_mongo_json_SOURCES = tests/fuzz/fuzz_mongo_json.c plugins/mongo/mongo_json.c plugins/mongo/mongo_int.h $(FUZZ_COMMON) $(FUZZ_REPLAY)
tests_fuzz_replay_mongo_json_CPPFLAGS = $(AM_CPPFLAGS) -DFUZZ_TARGET='"mongo_json"'
tests_fuzz_replay_mongo_json_CFLAGS = $(AM_CFLAGS) $(MONGOC_CFLAGS)
tests_fuzz_replay_mongo_json_LDADD = core/libemhost.la $(MONGOC_LIBS)
if FUZZING
noinst_PROGRAMS += tests/fuzz/fuzz-mongo_json
tests_fuzz_fuzz_mongo_json_SOURCES = tests/fuzz/fuzz_mongo_json.c plugins/mongo/mongo_json.c plugins/mongo/mongo_int.h $(FUZZ_COMMON)
tests_fuzz_fuzz_mongo_json_CFLAGS = $(AM_CFLAGS) $(MONGOC_CFLAGS)
tests_fuzz_fuzz_mongo_json_LDFLAGS = -fsanitize=fuzzer
tests_fuzz_fuzz_mongo_json_LDADD = core/libemhost.la $(MONGOC_LIBS)
endif
endif


# Each target for FUZZ_SECONDS (default 30) from its corpus and crash inputs
# (FUZZ_SEED and FUZZ_RUNS from the environment make a run repeatable); new
# inputs and crash artifacts go to tests/fuzz/out/<target>/, never into the source tree.
FUZZ_SECONDS = 30
if FUZZING
fuzz-smoke: $(FUZZ_TARGETS:%=tests/fuzz/fuzz-%$(EXEEXT)) plugins-build.stamp $(service_LTLIBRARIES)
	@rm -f tests/fuzz/smoke.log tests/fuzz/smoke.trs
	$(AM_V_at)EMH_BUILDDIR='$(abs_top_builddir)' EMH_SRCDIR='$(abs_top_srcdir)' FUZZ_SECONDS='$(FUZZ_SECONDS)' \
	  FUZZ_TARGETS='$(FUZZ_TARGETS)' $(LOG_DRIVER) --test-name tests/fuzz/smoke.sh --log-file tests/fuzz/smoke.log \
	  --trs-file tests/fuzz/smoke.trs --color-tests no --enable-hard-errors yes --expect-failure no -- \
	  $(SHELL) $(srcdir)/tests/fuzz/smoke.sh
	@sed -n 's/^# //p' tests/fuzz/smoke.log
	@! grep -q '^:test-result: \(FAIL\|ERROR\)' tests/fuzz/smoke.trs
else
fuzz-smoke:
	@echo "fuzz-smoke: configure with --enable-fuzzing (clang, libclang-rt-14-dev) to build the fuzz targets" >&2; exit 1
endif
.PHONY: fuzz-smoke
clean-local: clean-fuzz
clean-fuzz:
	rm -rf tests/fuzz/out
.PHONY: clean-fuzz
