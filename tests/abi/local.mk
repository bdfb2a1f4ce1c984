# tests/abi: the driver ABI as an outside author meets it.  memdoc-conformance.sh
# runs the conformance suite on memdoc (tests/fixtures/memdoc.c, written from
# the headers and the guide alone).
TESTS += tests/abi/memdoc-conformance.sh
EXTRA_DIST += tests/abi/memdoc-conformance.sh
