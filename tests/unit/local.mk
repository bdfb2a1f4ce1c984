# Core unit tests (lead).  Fixture plugins are real shared objects.
UNIT_FX_LDFLAGS = -module -avoid-version -no-undefined -rpath /nowhere
UNIT_FX_SRC = tests/fixtures/fx_driver.c
check_LTLIBRARIES += tests/fixtures/fx_good.la tests/fixtures/fx_badabi.la tests/fixtures/fx_small.la \
	tests/fixtures/fx_nosym.la tests/fixtures/fx_noconnect.la tests/fixtures/fx_zzdup.la
tests_fixtures_fx_good_la_SOURCES = $(UNIT_FX_SRC)
tests_fixtures_fx_good_la_LDFLAGS = $(UNIT_FX_LDFLAGS)
tests_fixtures_fx_badabi_la_SOURCES = $(UNIT_FX_SRC)
tests_fixtures_fx_badabi_la_CPPFLAGS = $(AM_CPPFLAGS) -DFX_BAD_ABI -DFX_NAME='"fx_badabi"'
tests_fixtures_fx_badabi_la_LDFLAGS = $(UNIT_FX_LDFLAGS)
tests_fixtures_fx_small_la_SOURCES = $(UNIT_FX_SRC)
tests_fixtures_fx_small_la_CPPFLAGS = $(AM_CPPFLAGS) -DFX_SMALL -DFX_NAME='"fx_small"'
tests_fixtures_fx_small_la_LDFLAGS = $(UNIT_FX_LDFLAGS)
tests_fixtures_fx_nosym_la_SOURCES = $(UNIT_FX_SRC)
tests_fixtures_fx_nosym_la_CPPFLAGS = $(AM_CPPFLAGS) -DFX_NO_SYMBOL
tests_fixtures_fx_nosym_la_LDFLAGS = $(UNIT_FX_LDFLAGS)
tests_fixtures_fx_noconnect_la_SOURCES = $(UNIT_FX_SRC)
tests_fixtures_fx_noconnect_la_CPPFLAGS = $(AM_CPPFLAGS) -DFX_NO_CONNECT -DFX_NAME='"fx_noconnect"'
tests_fixtures_fx_noconnect_la_LDFLAGS = $(UNIT_FX_LDFLAGS)
tests_fixtures_fx_zzdup_la_SOURCES = $(UNIT_FX_SRC)
tests_fixtures_fx_zzdup_la_LDFLAGS = $(UNIT_FX_LDFLAGS)

UNIT_LIBS = core/libemhost.la
check_PROGRAMS += tests/unit/test_abi tests/unit/test_loader tests/unit/test_pool tests/unit/test_host tests/unit/test_entity tests/unit/test_em
TESTS += tests/unit/test_abi tests/unit/test_loader tests/unit/test_pool tests/unit/test_host tests/unit/test_entity tests/unit/test_em
tests_unit_test_abi_SOURCES = tests/unit/test_abi.c tests/unit/memdrv.c tests/unit/memdrv.h tests/tap.h
tests_unit_test_abi_LDADD = $(UNIT_LIBS)
tests_unit_test_loader_SOURCES = tests/unit/test_loader.c tests/tap.h
tests_unit_test_loader_LDADD = $(UNIT_LIBS)
tests_unit_test_pool_SOURCES = tests/unit/test_pool.c tests/unit/memdrv.c tests/unit/memdrv.h tests/tap.h
tests_unit_test_pool_LDADD = $(UNIT_LIBS)
tests_unit_test_host_SOURCES = tests/unit/test_host.c tests/unit/memdrv.c tests/unit/memdrv.h tests/tap.h
tests_unit_test_host_LDADD = $(UNIT_LIBS)
tests_unit_test_em_SOURCES = tests/unit/test_em.c tests/tap.h
tests_unit_test_em_LDADD = $(UNIT_LIBS)
# test_entity checks the SQL compiler's text and cache: it links the internals.
tests_unit_test_entity_SOURCES = tests/unit/test_entity.c tests/tap.h
tests_unit_test_entity_LDADD = core/libemhost_core.la $(LIBCONFIG_LIBS)

# The drivers' prepared-statement cache (core/prepcache.c).
check_PROGRAMS += tests/unit/test_prepcache
TESTS += tests/unit/test_prepcache
tests_unit_test_prepcache_SOURCES = tests/unit/test_prepcache.c tests/tap.h
tests_unit_test_prepcache_LDADD = $(UNIT_LIBS)
