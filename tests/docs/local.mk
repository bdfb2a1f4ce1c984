# tests/docs: the guides' code as an outside author builds it.
# writing-a-service.sh installs this build into a staging directory, extracts
# docs/writing-a-service.md's notes.c and Makefile, builds the module with
# pkg-config alone, and has the staged emhostd serve it.
if HAVE_DAEMON
if HAVE_SQLITE
TESTS += tests/docs/writing-a-service.sh
endif
endif
EXTRA_DIST += tests/docs/writing-a-service.sh
tests/docs/writing-a-service.log: tests/abi/toolchain.env
