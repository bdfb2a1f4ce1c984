# tests/query: query power beyond the conformance suite (tests/conformance/cf_query.c):
# the iterator's memory on a large table, global filters through scopes, the
# analytics service's counts.  peak.[ch]: peak RSS and live-heap sampling.
PEAK_SOURCES = tests/query/peak.c tests/query/peak.h
check_PROGRAMS += tests/query/test_iter_rss tests/query/test_query
TESTS += tests/query/test_iter_rss tests/query/test_query
tests_query_test_iter_rss_SOURCES = tests/query/test_iter_rss.c $(PEAK_SOURCES) $(FIXTURE_SOURCES)
tests_query_test_iter_rss_LDADD = core/libemhost.la $(EMH_PTHREAD_LIBS)
tests_query_test_query_SOURCES = tests/query/test_query.c $(FIXTURE_SOURCES)
tests_query_test_query_LDADD = core/libemhost.la $(EMH_PTHREAD_LIBS)
if HAVE_DAEMON
check_PROGRAMS += tests/query/test_analytics
TESTS += tests/query/test_analytics
tests_query_test_analytics_SOURCES = tests/query/test_analytics.c $(PEAK_SOURCES) $(FIXTURE_SOURCES) \
	services/common/entities.h
tests_query_test_analytics_CFLAGS = $(AM_CFLAGS) $(MHD_CFLAGS)
tests_query_test_analytics_LDADD = core/libemhost.la $(MHD_LIBS) $(EMH_PTHREAD_LIBS)
endif
