# tests/replicas: read replicas (core/replica.c, routing in core/em.c) against the
# PostgreSQL streaming standby and the MariaDB GTID replica that scripts/servers/pg.sh
# and mariadb.sh start with their primaries (EMH_TEST_PG_STANDBY_URL,
# EMH_TEST_MYSQL_REPLICA_URL); it stops and starts the replicas alone.
check_PROGRAMS += tests/replicas/test_replicas
TESTS += tests/replicas/test_replicas
tests_replicas_test_replicas_SOURCES = tests/replicas/test_replicas.c $(FIXTURE_SOURCES)
tests_replicas_test_replicas_LDADD = core/libemhost.la $(EMH_PTHREAD_LIBS)
