# tests/concurrency: concurrency control under load and across connections.
# test_sqlite_locks runs in every `make check`; test_counter (PostgreSQL and
# MariaDB/MySQL) and test_orders (PostgreSQL) need the test servers
# (EMH_TEST_PG_URL, EMH_TEST_MYSQL_URL) and skip loudly without them, fail
# under CI=true.  Their scale is set by EMH_TEST_CONC_* (docs/concurrency.md).
# A driver that is not built is skipped, saying so.
if HAVE_SQLITE
check_PROGRAMS += tests/concurrency/test_sqlite_locks
TESTS += tests/concurrency/test_sqlite_locks
endif
tests_concurrency_test_sqlite_locks_SOURCES = tests/concurrency/test_sqlite_locks.c $(FIXTURE_SOURCES)
tests_concurrency_test_sqlite_locks_LDADD = core/libemhost.la $(EMH_PTHREAD_LIBS)
check_PROGRAMS += tests/concurrency/test_counter tests/concurrency/test_orders
TESTS += tests/concurrency/test_counter tests/concurrency/test_orders
tests_concurrency_test_counter_SOURCES = tests/concurrency/test_counter.c $(FIXTURE_SOURCES)
tests_concurrency_test_counter_LDADD = core/libemhost.la $(EMH_PTHREAD_LIBS)
tests_concurrency_test_orders_SOURCES = tests/concurrency/test_orders.c $(FIXTURE_SOURCES)
tests_concurrency_test_orders_LDADD = core/libemhost.la $(EMH_PTHREAD_LIBS)
