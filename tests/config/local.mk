# tests/config: the configuration layer (C, against the internals) and the emhost tool (shell).
CONFIG_TEST_SRC = tests/config/cfgtest.h tests/tap.h
check_PROGRAMS += tests/config/test_config tests/config/test_url tests/config/test_expand
tests_config_test_config_SOURCES = tests/config/test_config.c $(CONFIG_TEST_SRC)
tests_config_test_config_LDADD = core/libemhost_core.la $(LIBCONFIG_LIBS) $(EMH_PTHREAD_LIBS)
tests_config_test_url_SOURCES = tests/config/test_url.c tests/unit/memdrv.c tests/unit/memdrv.h $(CONFIG_TEST_SRC)
tests_config_test_url_LDADD = core/libemhost_core.la $(LIBCONFIG_LIBS) $(EMH_PTHREAD_LIBS)
tests_config_test_expand_SOURCES = tests/config/test_expand.c $(CONFIG_TEST_SRC)
tests_config_test_expand_LDADD = core/libemhost_core.la $(LIBCONFIG_LIBS) $(EMH_PTHREAD_LIBS)
# the query log and histograms: the sqlite plugin and memdoc, linked into a plugin directory
check_PROGRAMS += tests/config/test_qlog
tests_config_test_qlog_SOURCES = tests/config/test_qlog.c $(FIXTURE_SOURCES)
tests_config_test_qlog_LDADD = core/libemhost.la $(EMH_PTHREAD_LIBS)
TESTS += tests/config/test_config tests/config/test_url tests/config/test_expand tests/config/cli.sh \
	tests/config/test_qlog
EXTRA_DIST += tests/config/cli.sh tests/config/files
