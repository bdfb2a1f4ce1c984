# tests/fault: one program that stops a driver's test server under a running
# host and brings it back (`test_fault postgres|mysql|mongo`).  It needs no
# client library; tests/<driver>/fault.sh runs it, and tests/local.mk orders
# those wrappers after every other test.
check_PROGRAMS += tests/fault/test_fault
tests_fault_test_fault_SOURCES = tests/fault/test_fault.c $(FIXTURE_SOURCES)
tests_fault_test_fault_LDADD = core/libemhost.la

# test_hang: servers that stop answering (a silent socket, a relay that goes quiet, PostgreSQL
# stopped with SIGSTOP): every call and connect returns EMH_ETIMEOUT at its deadline.  It stops
# the PostgreSQL test server, so hang.sh is one of FAULT_TESTS.
check_PROGRAMS += tests/fault/test_hang
tests_fault_test_hang_SOURCES = tests/fault/test_hang.c $(FIXTURE_SOURCES)
tests_fault_test_hang_LDADD = core/libemhost.la $(EMH_PTHREAD_LIBS)
TESTS += tests/fault/hang.sh
EXTRA_DIST += tests/fault/hang.sh
