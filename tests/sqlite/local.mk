# tests/sqlite: the SQLite driver through the host API (loads plugins-build/sqlite.so) plus its descriptor.
if HAVE_SQLITE
check_PROGRAMS += tests/sqlite/test_sqlite
TESTS += tests/sqlite/test_sqlite
tests_sqlite_test_sqlite_SOURCES = tests/sqlite/test_sqlite.c $(FIXTURE_SOURCES)
tests_sqlite_test_sqlite_CFLAGS = $(AM_CFLAGS) $(SQLITE3_CFLAGS)
tests_sqlite_test_sqlite_LDADD = core/libemhost.la $(SQLITE3_LIBS)
# 10,000 SQLite tenants in one process within a descriptor limit of 4,096 (issue 12);
# EMH_TEST_TENANTS and EMH_TEST_TENANTS_SECONDS size it.
check_PROGRAMS += tests/sqlite/test_tenants
TESTS += tests/sqlite/test_tenants
tests_sqlite_test_tenants_SOURCES = tests/sqlite/test_tenants.c $(FIXTURE_SOURCES)
tests_sqlite_test_tenants_LDADD = core/libemhost.la $(EMH_PTHREAD_LIBS)
endif
