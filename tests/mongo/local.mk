# tests/mongo: the MongoDB driver against a real server (EMH_TEST_MONGO_URI; see scripts/servers/mongo.sh).
if HAVE_MONGO
check_PROGRAMS += tests/mongo/test_mongo
tests_mongo_test_mongo_SOURCES = tests/mongo/test_mongo.c $(FIXTURE_SOURCES)
tests_mongo_test_mongo_CFLAGS = $(AM_CFLAGS) $(MONGOC_CFLAGS)
tests_mongo_test_mongo_LDADD = core/libemhost.la $(MONGOC_LIBS)
# The query compiler (mongo_filter.c and what it calls) built in, checked without a server.
check_PROGRAMS += tests/mongo/test_mongo_filter
TESTS += tests/mongo/test_mongo_filter
tests_mongo_test_mongo_filter_SOURCES = tests/mongo/test_mongo_filter.c plugins/mongo/mongo_filter.c \
	plugins/mongo/mongo_value.c plugins/mongo/mongo_json.c plugins/mongo/mongo_int.h $(FIXTURE_SOURCES)
tests_mongo_test_mongo_filter_CFLAGS = $(AM_CFLAGS) $(MONGOC_CFLAGS)
tests_mongo_test_mongo_filter_LDADD = core/libemhost.la $(MONGOC_LIBS)
# fault.sh runs tests/fault/test_fault, ordered after every other test by tests/local.mk.
TESTS += tests/mongo/conformance.sh tests/mongo/test_mongo tests/mongo/fault.sh
endif
EXTRA_DIST += tests/mongo/conformance.sh tests/mongo/fault.sh
