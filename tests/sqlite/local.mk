# tests/sqlite: the SQLite driver through the host API (loads plugins-build/sqlite.so) plus its descriptor.
if HAVE_SQLITE
check_PROGRAMS += tests/sqlite/test_sqlite
TESTS += tests/sqlite/test_sqlite
tests_sqlite_test_sqlite_SOURCES = tests/sqlite/test_sqlite.c $(FIXTURE_SOURCES)
tests_sqlite_test_sqlite_CFLAGS = $(AM_CFLAGS) $(SQLITE3_CFLAGS)
tests_sqlite_test_sqlite_LDADD = core/libemhost.la $(SQLITE3_LIBS)
endif
