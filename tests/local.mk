# Test fragments, one per owner.
# The shared setup (tests/fixture.h): add it to a test's SOURCES.
FIXTURE_SOURCES = tests/fixture.c tests/fixture.h tests/tap.h
include $(srcdir)/tests/fixtures/local.mk
include $(srcdir)/tests/unit/local.mk
include $(srcdir)/tests/config/local.mk
include $(srcdir)/tests/conformance/local.mk
include $(srcdir)/tests/sqlite/local.mk
include $(srcdir)/tests/fault/local.mk
include $(srcdir)/tests/postgres/local.mk
include $(srcdir)/tests/mysql/local.mk
include $(srcdir)/tests/mongo/local.mk
include $(srcdir)/tests/daemon/local.mk
include $(srcdir)/tests/abi/local.mk
include $(srcdir)/tests/concurrency/local.mk
include $(srcdir)/tests/migrate/local.mk
include $(srcdir)/tests/hostile/local.mk
include $(srcdir)/tests/fuzz/local.mk
include $(srcdir)/tests/query/local.mk
include $(srcdir)/tests/relations/local.mk
include $(srcdir)/tests/replicas/local.mk
EXTRA_DIST += tests/tap.h tests/tap.sh tests/stage.sh

# Fault tests stop and restart the shared test servers (tests/<driver>/fault.sh
# runs tests/fault/test_fault DRIVER; tests/replicas/test_replicas stops and
# starts the replicas), so they run one at a time and after every other test
# (under make check -j they would otherwise pull a server from under a running
# test: tests/replicas/t_daemon once found the standby refusing connections).
FAULT_TESTS = tests/postgres/fault.sh tests/mysql/fault.sh tests/mongo/fault.sh tests/daemon/t_fault tests/fault/hang.sh \
	tests/replicas/test_replicas
emh_logs = $(addsuffix .log,$(basename $(filter %.sh,$(1))) $(filter-out %.sh,$(1)))
emh_fault_logs = $(call emh_logs,$(filter $(FAULT_TESTS),$(TESTS)))
$(word 1,$(emh_fault_logs)): $(call emh_logs,$(filter-out $(FAULT_TESTS),$(TESTS)))
$(word 2,$(emh_fault_logs)): $(word 1,$(emh_fault_logs))
$(word 3,$(emh_fault_logs)): $(word 2,$(emh_fault_logs))
$(word 4,$(emh_fault_logs)): $(word 3,$(emh_fault_logs))
$(word 5,$(emh_fault_logs)): $(word 4,$(emh_fault_logs))
$(word 6,$(emh_fault_logs)): $(word 5,$(emh_fault_logs))
include $(srcdir)/tests/web/local.mk
include $(srcdir)/tests/docs/local.mk
