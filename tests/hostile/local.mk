# tests/hostile: hostile inputs (issue 11): plugin files that are cut short, lie
# about their descriptor or end the process loading them, and what emhost
# prints about them.  Fixture plugins: tests/fixtures/local.mk, tests/daemon/local.mk.
check_PROGRAMS += tests/hostile/test_plugin_files
TESTS += tests/hostile/test_plugin_files
tests_hostile_test_plugin_files_SOURCES = tests/hostile/test_plugin_files.c tests/tap.h
tests_hostile_test_plugin_files_LDADD = core/libemhost.la
TESTS += tests/hostile/plugins_cli.sh
EXTRA_DIST += tests/hostile/plugins_cli.sh
# Field size limits (max_len) on SQLite and memdoc.
if HAVE_SQLITE
check_PROGRAMS += tests/hostile/test_maxlen
TESTS += tests/hostile/test_maxlen
tests_hostile_test_maxlen_SOURCES = tests/hostile/test_maxlen.c $(FIXTURE_SOURCES)
tests_hostile_test_maxlen_LDADD = core/libemhost.la
endif
