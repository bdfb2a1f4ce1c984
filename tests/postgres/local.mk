# tests/postgres: the PostgreSQL driver against a real server (scripts/servers/pg.sh start
# STATE_DIR, then EMH_TEST_PG_URL and EMH_TEST_STATE_DIR from STATE_DIR/env).
if HAVE_POSTGRES
TESTS += tests/postgres/conformance.sh tests/postgres/test_pg_errors tests/postgres/test_pg_deadline tests/postgres/fault.sh
check_PROGRAMS += tests/postgres/test_pg_errors tests/postgres/test_pg_deadline
tests_postgres_test_pg_errors_SOURCES = tests/postgres/test_pg_errors.c $(FIXTURE_SOURCES)
tests_postgres_test_pg_errors_LDADD = core/libemhost.la $(EMH_PTHREAD_LIBS)
tests_postgres_test_pg_deadline_SOURCES = tests/postgres/test_pg_deadline.c $(FIXTURE_SOURCES)
tests_postgres_test_pg_deadline_LDADD = core/libemhost.la $(EMH_PTHREAD_LIBS)
# fault.sh runs tests/fault/test_fault, ordered after every other test by tests/local.mk.
# tenants.sh: 200 tenants on a dedicated cluster with max_connections = 50 (issue 12).
TESTS += tests/postgres/tenants.sh
check_PROGRAMS += tests/postgres/test_pg_tenants
tests_postgres_test_pg_tenants_SOURCES = tests/postgres/test_pg_tenants.c $(FIXTURE_SOURCES)
tests_postgres_test_pg_tenants_CFLAGS = $(AM_CFLAGS) $(LIBPQ_CFLAGS)
tests_postgres_test_pg_tenants_LDADD = core/libemhost.la $(LIBPQ_LIBS) $(EMH_PTHREAD_LIBS)
endif
EXTRA_DIST += tests/postgres/conformance.sh tests/postgres/fault.sh tests/postgres/tenants.sh
