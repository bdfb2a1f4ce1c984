# tests/abi: the driver ABI as an outside author meets it.  memdoc-conformance.sh
# runs the conformance suite on memdoc (tests/fixtures/memdoc.c, written from
# the headers and the guide alone); outoftree.sh installs this build into a
# staging directory and builds memdoc with the guide's Makefile and pkg-config,
# and an application that loads it.  toolchain.env hands it this build's
# compiler and flags (sanitizers included).
TESTS += tests/abi/memdoc-conformance.sh tests/abi/outoftree.sh
EXTRA_DIST += tests/abi/memdoc-conformance.sh tests/abi/outoftree.sh tests/abi/host.c
tests/abi/toolchain.env: Makefile
	$(AM_V_GEN)$(MKDIR_P) tests/abi && \
	{ echo "CC='$(CC)'"; echo "CFLAGS='$(CFLAGS)'"; echo "LDFLAGS='$(LDFLAGS)'"; } >$@
CLEANFILES += tests/abi/toolchain.env
tests/abi/outoftree.log: tests/abi/toolchain.env

# ABI 1.0 kept: tests/abi/v1.0/emhost/ is a frozen copy of the public headers
# as 1.0 shipped them.  memdoc and a service module are built against them
# (that directory first on the include path) and loaded by today's host:
# memdoc10-conformance.sh runs the whole suite on the 1.0 memdoc, test_abi10
# serves requests through the 1.0 module.
ABI10_CPPFLAGS = -I$(top_srcdir)/tests/abi/v1.0 $(AM_CPPFLAGS)
check_LTLIBRARIES += tests/abi/v10/memdoc.la tests/abi/abi10notes.la
tests_abi_v10_memdoc_la_SOURCES = tests/fixtures/memdoc.c
tests_abi_v10_memdoc_la_CPPFLAGS = $(ABI10_CPPFLAGS)
tests_abi_v10_memdoc_la_LDFLAGS = -module -avoid-version -no-undefined -rpath /nowhere \
	-export-symbols-regex '^emh_driver_descriptor$$'
tests_abi_v10_memdoc_la_LIBADD = core/libemhost.la
tests_abi_abi10notes_la_SOURCES = tests/abi/v10_service.c
tests_abi_abi10notes_la_CPPFLAGS = $(ABI10_CPPFLAGS)
tests_abi_abi10notes_la_LDFLAGS = -module -avoid-version -no-undefined -rpath /nowhere \
	-export-symbols-regex '^emh_service_descriptor$$'
tests_abi_abi10notes_la_LIBADD = core/libemhost.la
check_PROGRAMS += tests/abi/test_abi10
tests_abi_test_abi10_SOURCES = tests/abi/test_abi10.c $(FIXTURE_SOURCES)
tests_abi_test_abi10_LDADD = core/libemhost.la $(EMH_PTHREAD_LIBS)
TESTS += tests/abi/memdoc10-conformance.sh tests/abi/test_abi10
EXTRA_DIST += tests/abi/memdoc10-conformance.sh tests/abi/v1.0
