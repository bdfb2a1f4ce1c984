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
