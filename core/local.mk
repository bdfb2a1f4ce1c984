# libemhost is built from a convenience library so that unit tests can link the
# internals (emh__*) directly; the installed library exports only emh_[a-z]*.
noinst_LTLIBRARIES += core/libemhost_core.la
core_libemhost_core_la_SOURCES = \
	core/internal.h core/cfg.h core/cfg_int.h core/arena.h core/query_int.h core/service_int.h \
	core/error.c core/log.c core/arena.c \
	core/cfg_model.c core/cfg_expand.c core/cfg_file.c core/cfg_url.c core/cfg_env.c core/cfg_check.c \
	core/params.c \
	core/loader.c core/probe.c core/host.c core/context.c core/reload.c core/meta.c core/pool.c core/replica.c \
	core/entity.c core/query.c core/buf.c core/text.h core/sql.c core/em_int.h core/em.c core/uow.c \
	core/sql_int.h core/sql_where.c core/where.c core/sql_agg.c core/aggregate.c core/filter.c \
	core/iter.c core/service.c core/route.c core/scope.c core/response.c core/qlog.h core/qlog.c
core_libemhost_core_la_CFLAGS = $(AM_CFLAGS) $(LIBCONFIG_CFLAGS)
core_libemhost_core_la_LIBADD = $(LIBCONFIG_LIBS) $(EMH_PTHREAD_LIBS)

lib_LTLIBRARIES += core/libemhost.la
core_libemhost_la_SOURCES = core/version.c
core_libemhost_la_LIBADD = core/libemhost_core.la $(LIBCONFIG_LIBS) $(EMH_PTHREAD_LIBS)
core_libemhost_la_LDFLAGS = -no-undefined -version-info 0:0:0 -export-symbols-regex '^emh_[a-z]'

emhostincludedir = $(includedir)/emhost
emhostinclude_HEADERS = include/emhost/emhost.h include/emhost/error.h include/emhost/entity.h \
	include/emhost/query.h include/emhost/host.h include/emhost/em.h include/emhost/driver.h \
	include/emhost/sql.h include/emhost/buf.h include/emhost/service.h \
	include/emhost/aggregate.h

# The drivers' per-connection prepared-statement cache (emhost/prepcache.h).
core_libemhost_core_la_SOURCES += core/prepcache.c
emhostinclude_HEADERS += include/emhost/prepcache.h

# Per-context migrations and the schema diff (emhost/migrate.h, docs/migrations.md).
core_libemhost_core_la_SOURCES += core/migrate_int.h core/sha256.c core/migrate_files.c core/migrate.c \
	core/schema_diff.c
emhostinclude_HEADERS += include/emhost/migrate.h

# Relations between entities, within and across contexts (issue 16).
core_libemhost_core_la_SOURCES += core/relation.c core/relation_int.h
