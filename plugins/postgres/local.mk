# plugins/postgres: the PostgreSQL driver (libpq).
if HAVE_POSTGRES
plugin_LTLIBRARIES += plugins/postgres/postgres.la
plugins_postgres_postgres_la_SOURCES = plugins/postgres/postgres.c plugins/postgres/postgres_int.h \
	plugins/postgres/errors.c plugins/postgres/session.c plugins/postgres/statements.c \
	plugins/postgres/schema.c plugins/postgres/io.c
plugins_postgres_postgres_la_CFLAGS = $(AM_CFLAGS) $(LIBPQ_CFLAGS)
plugins_postgres_postgres_la_LDFLAGS = $(PLUGIN_LDFLAGS)
plugins_postgres_postgres_la_LIBADD = core/libemhost.la $(LIBPQ_LIBS)
endif
