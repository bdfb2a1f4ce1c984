# tests/relations: relations within and across contexts (core/relation.c): three SQLite
# files always, SQLite + PostgreSQL + MongoDB when the test servers run (EMH_TEST_PG_URL,
# EMH_TEST_MONGO_URI).  EMH_TEST_REL_PARENTS sizes the big batch (default 10000).
check_PROGRAMS += tests/relations/test_relations
TESTS += tests/relations/test_relations
tests_relations_test_relations_SOURCES = tests/relations/test_relations.c $(FIXTURE_SOURCES)
tests_relations_test_relations_LDADD = core/libemhost.la $(EMH_PTHREAD_LIBS)
