# tests/mysql: the MySQL/MariaDB driver against a real server (EMH_TEST_MYSQL_URL; see scripts/servers/mariadb.sh).
if HAVE_MYSQL
check_PROGRAMS += tests/mysql/test_mysql_errors tests/mysql/test_mysql_fault
tests_mysql_test_mysql_errors_SOURCES = tests/mysql/test_mysql_errors.c
tests_mysql_test_mysql_errors_LDADD = core/libemhost.la
tests_mysql_test_mysql_fault_SOURCES = tests/mysql/test_mysql_fault.c
tests_mysql_test_mysql_fault_LDADD = core/libemhost.la
TESTS += tests/mysql/conformance.sh tests/mysql/test_mysql_errors tests/mysql/fault.sh
endif
EXTRA_DIST += tests/mysql/conformance.sh tests/mysql/fault.sh
