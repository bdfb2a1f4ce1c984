# Test fragments, one per owner.
include $(srcdir)/tests/unit/local.mk
include $(srcdir)/tests/config/local.mk
include $(srcdir)/tests/conformance/local.mk
include $(srcdir)/tests/postgres/local.mk
include $(srcdir)/tests/mysql/local.mk
include $(srcdir)/tests/mongo/local.mk
include $(srcdir)/tests/daemon/local.mk
EXTRA_DIST += tests/tap.h tests/tap.sh
