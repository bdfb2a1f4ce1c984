# tests/postgres: the PostgreSQL driver against a real server (scripts/servers/pg.sh start
# STATE_DIR, then EMH_TEST_PG_URL and EMH_TEST_STATE_DIR from STATE_DIR/env).
if HAVE_POSTGRES
TESTS += tests/postgres/conformance.sh tests/postgres/test_pg_errors tests/postgres/fault.sh
check_PROGRAMS += tests/postgres/test_pg_errors tests/postgres/test_pg_fault
tests_postgres_test_pg_errors_SOURCES = tests/postgres/test_pg_errors.c tests/tap.h
tests_postgres_test_pg_errors_LDADD = core/libemhost.la $(EMH_PTHREAD_LIBS)
tests_postgres_test_pg_fault_SOURCES = tests/postgres/test_pg_fault.c tests/tap.h
tests_postgres_test_pg_fault_LDADD = core/libemhost.la
# fault.sh stops and restarts the server: under `make -j check` it must not
# overlap the other tests using it.
tests/postgres/fault.log: tests/postgres/conformance.log tests/postgres/test_pg_errors.log
endif
EXTRA_DIST += tests/postgres/conformance.sh tests/postgres/fault.sh
