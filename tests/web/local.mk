# tests/web: the service toolkit (emhost/web.h) and declared routes, without a daemon.
if HAVE_DAEMON
if HAVE_SQLITE
check_PROGRAMS += tests/web/test_web
TESTS += tests/web/test_web
tests_web_test_web_SOURCES = tests/web/test_web.c $(FIXTURE_SOURCES)
tests_web_test_web_CFLAGS = $(AM_CFLAGS) $(MHD_CFLAGS)
tests_web_test_web_LDADD = core/web/libemhost-web.la core/libemhost.la $(MHD_LIBS)
endif
endif
