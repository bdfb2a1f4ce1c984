# tests/migrate: per-context migrations, the schema diff and `emhost migrate` (docs/migrations.md).
# fxm_v1/fxm_v2: one entity in two versions, for the schema diff.
check_LTLIBRARIES += tests/migrate/fxm_v1.la tests/migrate/fxm_v2.la
tests_migrate_fxm_v1_la_SOURCES = tests/migrate/fxm_service.c
tests_migrate_fxm_v1_la_CPPFLAGS = $(AM_CPPFLAGS) -DFXM_V1
tests_migrate_fxm_v1_la_LDFLAGS = -module -avoid-version -rpath /nowhere
tests_migrate_fxm_v1_la_LIBADD = core/libemhost.la
tests_migrate_fxm_v2_la_SOURCES = tests/migrate/fxm_service.c
tests_migrate_fxm_v2_la_CPPFLAGS = $(AM_CPPFLAGS) -DFXM_V2
tests_migrate_fxm_v2_la_LDFLAGS = -module -avoid-version -rpath /nowhere
tests_migrate_fxm_v2_la_LIBADD = core/libemhost.la

# No database: SHA-256, splitting files into statements, reading a folder (links the internals).
check_PROGRAMS += tests/migrate/test_files
TESTS += tests/migrate/test_files
tests_migrate_test_files_SOURCES = tests/migrate/test_files.c $(FIXTURE_SOURCES)
tests_migrate_test_files_LDADD = core/libemhost_core.la $(LIBCONFIG_LIBS)

# A two-context project on the real test servers, through the emhost tool (test_migrate.c).
check_PROGRAMS += tests/migrate/test_migrate
tests_migrate_test_migrate_SOURCES = tests/migrate/test_migrate.c $(FIXTURE_SOURCES)
tests_migrate_test_migrate_LDADD = core/libemhost.la $(EMH_PTHREAD_LIBS)
TESTS += tests/migrate/sqlite_postgres.sh tests/migrate/mariadb_mongo.sh
EXTRA_DIST += tests/migrate/sqlite_postgres.sh tests/migrate/mariadb_mongo.sh tests/migrate/project.sh

# The start-up policy, refused contexts, schema = "check", new files: SQLite only.
if HAVE_SQLITE
check_PROGRAMS += tests/migrate/test_startup
TESTS += tests/migrate/test_startup
tests_migrate_test_startup_SOURCES = tests/migrate/test_startup.c $(FIXTURE_SOURCES)
tests_migrate_test_startup_LDADD = core/libemhost.la $(EMH_PTHREAD_LIBS)
endif

# emhostd's start-up policy over HTTP (the daemon tests' helpers, tests/daemon/dtest.c).
if HAVE_DAEMON
if HAVE_CURL
if HAVE_SQLITE
check_PROGRAMS += tests/migrate/t_daemon
TESTS += tests/migrate/t_daemon
tests_migrate_t_daemon_SOURCES = tests/migrate/t_daemon.c $(DTEST_SOURCES)
tests_migrate_t_daemon_CFLAGS = $(DTEST_CFLAGS)
tests_migrate_t_daemon_LDADD = $(DTEST_LIBS)
endif
endif
endif
