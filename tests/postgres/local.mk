# tests/postgres: the PostgreSQL driver against a real server (scripts/servers/pg.sh).
if HAVE_POSTGRES
TESTS += tests/postgres/conformance.sh tests/postgres/test_pg_errors tests/postgres/fault.sh
check_PROGRAMS += tests/postgres/test_pg_errors tests/postgres/test_pg_fault
tests_postgres_test_pg_errors_SOURCES = tests/postgres/test_pg_errors.c
tests_postgres_test_pg_errors_LDADD = core/libemhost.la
tests_postgres_test_pg_fault_SOURCES = tests/postgres/test_pg_fault.c
tests_postgres_test_pg_fault_LDADD = core/libemhost.la
endif
EXTRA_DIST += tests/postgres/conformance.sh tests/postgres/fault.sh
