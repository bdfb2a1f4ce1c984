# tests/fault: one program that stops a driver's test server under a running
# host and brings it back (`test_fault postgres|mysql|mongo`).  It needs no
# client library; tests/<driver>/fault.sh runs it, and tests/local.mk orders
# those wrappers after every other test.
check_PROGRAMS += tests/fault/test_fault
tests_fault_test_fault_SOURCES = tests/fault/test_fault.c $(FIXTURE_SOURCES)
tests_fault_test_fault_LDADD = core/libemhost.la
