if HAVE_SQLITE
plugin_LTLIBRARIES += plugins/sqlite/sqlite.la
plugins_sqlite_sqlite_la_SOURCES = plugins/sqlite/sqlite.c plugins/sqlite/sqlite_int.h plugins/sqlite/errors.c \
	plugins/sqlite/session.c plugins/sqlite/statements.c plugins/sqlite/schema.c
plugins_sqlite_sqlite_la_CFLAGS = $(AM_CFLAGS) $(SQLITE3_CFLAGS)
plugins_sqlite_sqlite_la_LDFLAGS = $(PLUGIN_LDFLAGS)
plugins_sqlite_sqlite_la_LIBADD = core/libemhost.la $(SQLITE3_LIBS)
# Its test is tests/sqlite/test_sqlite.c.
endif
