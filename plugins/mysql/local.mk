# plugins/mysql: the MySQL/MariaDB driver (client library found by pkg-config: mysqlclient or libmariadb).
if HAVE_MYSQL
plugin_LTLIBRARIES += plugins/mysql/mysql.la
plugins_mysql_mysql_la_SOURCES = plugins/mysql/mysql.c plugins/mysql/mysql_int.h plugins/mysql/errors.c \
	plugins/mysql/session.c plugins/mysql/statements.c plugins/mysql/schema.c
plugins_mysql_mysql_la_CFLAGS = $(AM_CFLAGS) $(MYSQL_CFLAGS)
plugins_mysql_mysql_la_LDFLAGS = $(PLUGIN_LDFLAGS)
plugins_mysql_mysql_la_LIBADD = core/libemhost.la $(MYSQL_LIBS)
endif
