# tests/replicas: read replicas (core/replica.c, routing in core/em.c) against the
# PostgreSQL streaming standby and the MariaDB GTID replica that scripts/servers/pg.sh
# and mariadb.sh start with their primaries (EMH_TEST_PG_STANDBY_URL,
# EMH_TEST_MYSQL_REPLICA_URL); it stops and starts the replicas alone.
check_PROGRAMS += tests/replicas/test_replicas
TESTS += tests/replicas/test_replicas
tests_replicas_test_replicas_SOURCES = tests/replicas/test_replicas.c $(FIXTURE_SOURCES)
tests_replicas_test_replicas_LDADD = core/libemhost.la $(EMH_PTHREAD_LIBS)
# emhostd with a replica: X-Emhost-After in and out, replica metrics and health
check_PROGRAMS += tests/replicas/t_daemon
TESTS += tests/replicas/t_daemon
tests_replicas_t_daemon_SOURCES = tests/replicas/t_daemon.c $(DTEST_SOURCES)
tests_replicas_t_daemon_CFLAGS = $(DTEST_CFLAGS)
tests_replicas_t_daemon_LDADD = core/libemhost.la $(DTEST_LIBS)
# MongoDB replica-set URLs against the standalone test server (what can be verified without a replica set)
if HAVE_MONGO
check_PROGRAMS += tests/replicas/test_mongo_rs
TESTS += tests/replicas/test_mongo_rs
tests_replicas_test_mongo_rs_SOURCES = tests/replicas/test_mongo_rs.c $(FIXTURE_SOURCES)
tests_replicas_test_mongo_rs_LDADD = core/libemhost.la $(EMH_PTHREAD_LIBS)
endif
