# tests/mysql: the MySQL/MariaDB driver against a real server (EMH_TEST_MYSQL_URL; see scripts/servers/mariadb.sh).
if HAVE_MYSQL
check_PROGRAMS += tests/mysql/test_mysql_errors tests/mysql/test_mysql_deadline
tests_mysql_test_mysql_deadline_SOURCES = tests/mysql/test_mysql_deadline.c $(FIXTURE_SOURCES)
tests_mysql_test_mysql_deadline_LDADD = core/libemhost.la
tests_mysql_test_mysql_errors_SOURCES = tests/mysql/test_mysql_errors.c $(FIXTURE_SOURCES)
tests_mysql_test_mysql_errors_LDADD = core/libemhost.la
# fault.sh runs tests/fault/test_fault, ordered after every other test by tests/local.mk.
TESTS += tests/mysql/conformance.sh tests/mysql/test_mysql_errors tests/mysql/test_mysql_deadline tests/mysql/fault.sh
endif
EXTRA_DIST += tests/mysql/conformance.sh tests/mysql/fault.sh
