# tests/config: the configuration layer (C, against the internals) and the emhost tool (shell).
check_PROGRAMS += tests/config/test_config
tests_config_test_config_SOURCES = tests/config/test_config.c
tests_config_test_config_CFLAGS = $(AM_CFLAGS) $(LIBCONFIG_CFLAGS)
tests_config_test_config_LDADD = core/libemhost_core.la $(LIBCONFIG_LIBS) $(EMH_PTHREAD_LIBS)
TESTS += tests/config/test_config tests/config/cli.sh
EXTRA_DIST += tests/config/cli.sh tests/config/files
