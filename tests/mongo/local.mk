# tests/mongo: the MongoDB driver against a real server (EMH_TEST_MONGO_URI; see scripts/servers/mongo.sh).
if HAVE_MONGO
check_PROGRAMS += tests/mongo/test_mongo tests/mongo/test_mongo_fault
tests_mongo_test_mongo_SOURCES = tests/mongo/test_mongo.c tests/tap.h
tests_mongo_test_mongo_CFLAGS = $(AM_CFLAGS) $(MONGOC_CFLAGS)
tests_mongo_test_mongo_LDADD = core/libemhost.la $(MONGOC_LIBS)
tests_mongo_test_mongo_fault_SOURCES = tests/mongo/test_mongo_fault.c tests/tap.h
tests_mongo_test_mongo_fault_LDADD = core/libemhost.la
TESTS += tests/mongo/conformance.sh tests/mongo/test_mongo tests/mongo/fault.sh
endif
EXTRA_DIST += tests/mongo/conformance.sh tests/mongo/fault.sh
