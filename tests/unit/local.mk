# Core unit tests (lead).  test_loader's fixture plugins: tests/fixtures/local.mk.
UNIT_LIBS = core/libemhost.la
check_PROGRAMS += tests/unit/test_abi tests/unit/test_loader tests/unit/test_pool tests/unit/test_host tests/unit/test_entity tests/unit/test_em
TESTS += tests/unit/test_abi tests/unit/test_loader tests/unit/test_pool tests/unit/test_host tests/unit/test_entity tests/unit/test_em
# Contexts and registered entities; they read the host's internals (removal counters, keys).
check_PROGRAMS += tests/unit/test_context tests/unit/test_meta
TESTS += tests/unit/test_context tests/unit/test_meta
tests_unit_test_context_SOURCES = tests/unit/test_context.c tests/tap.h
tests_unit_test_context_LDADD = core/libemhost_core.la $(LIBCONFIG_LIBS)
tests_unit_test_meta_SOURCES = tests/unit/test_meta.c tests/unit/memdrv.c tests/unit/memdrv.h tests/tap.h
tests_unit_test_meta_LDADD = core/libemhost_core.la $(LIBCONFIG_LIBS)
tests_unit_test_abi_SOURCES = tests/unit/test_abi.c tests/unit/memdrv.c tests/unit/memdrv.h tests/tap.h
tests_unit_test_abi_LDADD = $(UNIT_LIBS)
tests_unit_test_loader_SOURCES = tests/unit/test_loader.c tests/tap.h
tests_unit_test_loader_LDADD = $(UNIT_LIBS)
tests_unit_test_pool_SOURCES = tests/unit/test_pool.c tests/unit/memdrv.c tests/unit/memdrv.h $(FIXTURE_SOURCES)
tests_unit_test_pool_LDADD = $(UNIT_LIBS)
tests_unit_test_host_SOURCES = tests/unit/test_host.c tests/unit/memdrv.c tests/unit/memdrv.h tests/tap.h
tests_unit_test_host_LDADD = $(UNIT_LIBS)
tests_unit_test_em_SOURCES = tests/unit/test_em.c tests/tap.h
tests_unit_test_em_LDADD = $(UNIT_LIBS)
# test_entity checks the SQL compiler's text and cache: it links the internals.
tests_unit_test_entity_SOURCES = tests/unit/test_entity.c tests/tap.h
tests_unit_test_entity_LDADD = core/libemhost_core.la $(LIBCONFIG_LIBS) $(EMH_PTHREAD_LIBS)

# The arena's cache of large blocks, alone and a host's (core/arena.c); reads h->blocks.
check_PROGRAMS += tests/unit/test_arena
TESTS += tests/unit/test_arena
tests_unit_test_arena_SOURCES = tests/unit/test_arena.c $(FIXTURE_SOURCES)
tests_unit_test_arena_LDADD = core/libemhost_core.la $(LIBCONFIG_LIBS)

# The pool's park (core/pool.c): parked, taken, drained for waiters, the budget and the reaper; reads the pool.
check_PROGRAMS += tests/unit/test_park
TESTS += tests/unit/test_park
tests_unit_test_park_SOURCES = tests/unit/test_park.c tests/unit/memdrv.c tests/unit/memdrv.h $(FIXTURE_SOURCES)
tests_unit_test_park_LDADD = core/libemhost_core.la $(LIBCONFIG_LIBS)

# The drivers' prepared-statement cache (core/prepcache.c).
check_PROGRAMS += tests/unit/test_prepcache
TESTS += tests/unit/test_prepcache
tests_unit_test_prepcache_SOURCES = tests/unit/test_prepcache.c tests/tap.h
tests_unit_test_prepcache_LDADD = $(UNIT_LIBS)

# The host's connection budget, eviction, waits, reaping (on memdrv).
check_PROGRAMS += tests/unit/test_budget
TESTS += tests/unit/test_budget
tests_unit_test_budget_SOURCES = tests/unit/test_budget.c tests/unit/memdrv.c tests/unit/memdrv.h $(FIXTURE_SOURCES)
tests_unit_test_budget_LDADD = $(UNIT_LIBS)

# EMH_ETIMEOUT from a driver: the connection discarded, the context not down (core/pool.c, core/em.c).
check_PROGRAMS += tests/unit/test_timeout
TESTS += tests/unit/test_timeout
tests_unit_test_timeout_SOURCES = tests/unit/test_timeout.c tests/unit/memdrv.c tests/unit/memdrv.h $(FIXTURE_SOURCES)
tests_unit_test_timeout_LDADD = $(UNIT_LIBS)

# emh_host_reload: contexts added, removed and changed, a driver loaded after start.
check_PROGRAMS += tests/unit/test_reload
TESTS += tests/unit/test_reload
tests_unit_test_reload_SOURCES = tests/unit/test_reload.c $(FIXTURE_SOURCES)
tests_unit_test_reload_LDADD = $(UNIT_LIBS)

# emh_host_reload when a realloc fails, each in turn (the build without sanitizers).
check_PROGRAMS += tests/unit/test_reload_oom
TESTS += tests/unit/test_reload_oom
tests_unit_test_reload_oom_SOURCES = tests/unit/test_reload_oom.c $(FIXTURE_SOURCES)
tests_unit_test_reload_oom_LDADD = $(UNIT_LIBS)
