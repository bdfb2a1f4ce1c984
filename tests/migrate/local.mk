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
