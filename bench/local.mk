# bench: emh-bench measures emhost against each driver's raw client library in
# one run on the same database (see the header of bench/emh-bench.c).  Built by
# `make`; `make bench` runs it on an in-memory SQLite context, then again with
# $(EMH_BENCH_ARGS) when given, e.g.
#   EMH_CONTEXT_PG_URL=postgres://... make bench EMH_BENCH_ARGS='--context pg'
# Each driver's raw side is bench/raw_<driver>.c (bench_raw_ops, bench/bench.h),
# compiled in when that driver is configured.
noinst_PROGRAMS += bench/emh-bench
bench_emh_bench_SOURCES = bench/emh-bench.c bench/bench.h bench/tenants.c bench/relations.c
bench_emh_bench_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/bench
bench_emh_bench_CFLAGS = $(AM_CFLAGS)
bench_emh_bench_LDADD = core/libemhost.la
if HAVE_SQLITE
bench_emh_bench_SOURCES += bench/raw_sqlite.c
bench_emh_bench_CPPFLAGS += -DBENCH_HAVE_SQLITE
bench_emh_bench_CFLAGS += $(SQLITE3_CFLAGS)
bench_emh_bench_LDADD += $(SQLITE3_LIBS)
endif
if HAVE_POSTGRES
bench_emh_bench_SOURCES += bench/raw_postgres.c
bench_emh_bench_CPPFLAGS += -DBENCH_HAVE_POSTGRES
bench_emh_bench_CFLAGS += $(LIBPQ_CFLAGS)
bench_emh_bench_LDADD += $(LIBPQ_LIBS)
endif
if HAVE_MYSQL
bench_emh_bench_SOURCES += bench/raw_mysql.c
bench_emh_bench_CPPFLAGS += -DBENCH_HAVE_MYSQL
bench_emh_bench_CFLAGS += $(MYSQL_CFLAGS)
bench_emh_bench_LDADD += $(MYSQL_LIBS)
endif
if HAVE_MONGO
bench_emh_bench_SOURCES += bench/raw_mongo.c
bench_emh_bench_CPPFLAGS += -DBENCH_HAVE_MONGO
bench_emh_bench_CFLAGS += $(MONGOC_CFLAGS)
bench_emh_bench_LDADD += $(MONGOC_LIBS)
endif
bench_emh_bench_LDADD += $(EMH_PTHREAD_LIBS)

# Speed is measured here, never asserted by a test.  `make bench-tenants` runs the
# tenants workload (1, 100 and 10,000 SQLite contexts: RSS per idle context, ns per fork).
bench: bench/emh-bench$(EXEEXT) plugins-build.stamp bench-http
	EMH_BUILDDIR='$(abs_top_builddir)' EMH_PLUGIN_DIR='$(abs_top_builddir)/plugins-build' ./bench/emh-bench
	@if test -n '$(EMH_BENCH_ARGS)'; then \
	  echo "EMH_PLUGIN_DIR='$(abs_top_builddir)/plugins-build' ./bench/emh-bench $(EMH_BENCH_ARGS)"; \
	  EMH_BUILDDIR='$(abs_top_builddir)' EMH_PLUGIN_DIR='$(abs_top_builddir)/plugins-build' \
	    ./bench/emh-bench $(EMH_BENCH_ARGS); \
	fi
bench-tenants: bench/emh-bench$(EXEEXT) plugins-build.stamp
	EMH_PLUGIN_DIR='$(abs_top_builddir)/plugins-build' ./bench/emh-bench --tenants
.PHONY: bench bench-tenants

# `make bench-http`: GET /users/<id> through emhostd (the bundled users
# service) against bench/raw_http.c, a hand-written libmicrohttpd server on the
# same database, under the same wrk load, rounds alternating; medians and the
# ratios emhostd/raw (bench/bench-http.sh says which knobs there are).
if HAVE_DAEMON
if HAVE_SQLITE
noinst_PROGRAMS += bench/emh-raw-http
bench_emh_raw_http_SOURCES = bench/raw_http.c
bench_emh_raw_http_CFLAGS = $(AM_CFLAGS) $(MHD_CFLAGS) $(SQLITE3_CFLAGS)
bench_emh_raw_http_LDADD = $(MHD_LIBS) $(SQLITE3_LIBS) $(EMH_PTHREAD_LIBS)
if HAVE_POSTGRES
bench_emh_raw_http_CPPFLAGS = $(AM_CPPFLAGS) -DRAW_HTTP_HAVE_PG
bench_emh_raw_http_CFLAGS += $(LIBPQ_CFLAGS)
bench_emh_raw_http_LDADD += $(LIBPQ_LIBS)
endif
endif
endif
EXTRA_DIST += bench/bench-http.sh
bench-http: plugins-build.stamp
	@$(MAKE) $(AM_MAKEFLAGS) all >/dev/null
	@if test -x bench/emh-raw-http$(EXEEXT) && test -x core/daemon/emhostd$(EXEEXT); then \
	  EMH_BUILDDIR='$(abs_top_builddir)' EMH_SRCDIR='$(abs_top_srcdir)' '$(abs_top_srcdir)/bench/bench-http.sh'; \
	else echo "bench-http: needs emhostd and SQLite (configure found no libmicrohttpd or sqlite3): skipped"; fi
.PHONY: bench-http
