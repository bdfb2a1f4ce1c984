/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/test_prepcache.c: emh_prepcache, the drivers' per-connection
 * prepared statements by id: lookups by (id, key), growth, and that every
 * handle reaches the destroy callback exactly once.
 */
#include "config.h"

#include <stdint.h>
#include <string.h>

#include <emhost/prepcache.h>

#include "../tap.h"

/* Handles are slots of this array; destroying one counts it. */
typedef struct fake_db {
	int destroyed[8];
	int calls;
} fake_db;

static void fake_destroy(void *handle, void *arg)
{
	fake_db *db = arg;
	int *slot = handle;
	(*slot)++;
	db->calls++;
}

/* A cache whose handles are slots of db (or markers, with db NULL). */
static emh_prepcache *cache_new(fake_db *db)
{
	emh_prepcache *pc = NULL;
	emh_error err;
	if (emh_prepcache_new(db ? fake_destroy : NULL, db, &pc, &err) != 0)
		bail("emh_prepcache_new: %s", err.message);
	return pc;
}

static void lookups(void)
{
	diag("lookups by (id, key)");
	fake_db db = {0};
	emh_prepcache *pc = cache_new(&db);
	emh_error err;
	int key_a, key_b;

	ok(emh_prepcache_get(pc, 0, &key_a) == NULL, "an empty cache has nothing at id 0");
	ok(emh_prepcache_get(pc, 4000000000u, &key_a) == NULL, "nor at a huge id (nothing allocated)");
	is_int(emh_prepcache_put(pc, 3, &key_a, &db.destroyed[0], &err), 0, "put at id 3");
	ok(emh_prepcache_get(pc, 3, &key_a) == &db.destroyed[0], "get at id 3 for the same key");
	ok(emh_prepcache_get(pc, 3, &key_b) == NULL, "get at id 3 for another key: nothing");
	ok(emh_prepcache_get(pc, 2, &key_a) == NULL, "get at a neighbouring id: nothing");
	is_int(emh_prepcache_put(pc, 1000, &key_b, &db.destroyed[1], &err), 0, "put at id 1000 (grows)");
	ok(emh_prepcache_get(pc, 3, &key_a) == &db.destroyed[0], "growing kept id 3");
	ok(emh_prepcache_get(pc, 1000, &key_b) == &db.destroyed[1], "id 1000 is found");
	is_int(db.calls, 0, "nothing destroyed so far");
	emh_prepcache_free(pc);
	is_int(db.calls, 2, "free destroys both handles");
	ok(db.destroyed[0] == 1 && db.destroyed[1] == 1, "each exactly once");
}

static void replacing(void)
{
	diag("replacing, dropping, clearing");
	fake_db db = {0};
	emh_prepcache *pc = cache_new(&db);
	emh_error err;
	int key_a, key_b;

	emh_prepcache_put(pc, 5, &key_a, &db.destroyed[0], &err);
	emh_prepcache_put(pc, 5, &key_a, &db.destroyed[0], &err);
	is_int(db.calls, 0, "putting the same handle again destroys nothing");
	emh_prepcache_put(pc, 5, &key_b, &db.destroyed[1], &err);
	is_int(db.destroyed[0], 1, "a new key at the same id destroys the old handle");
	ok(emh_prepcache_get(pc, 5, &key_a) == NULL, "the old key is gone");
	ok(emh_prepcache_get(pc, 5, &key_b) == &db.destroyed[1], "the new key is there");

	emh_prepcache_drop(pc, 5);
	is_int(db.destroyed[1], 1, "drop destroys the handle");
	ok(emh_prepcache_get(pc, 5, &key_b) == NULL, "and forgets it");
	emh_prepcache_drop(pc, 5);
	emh_prepcache_drop(pc, 99999);
	is_int(db.calls, 2, "dropping an empty or unknown id destroys nothing");

	emh_prepcache_put(pc, 0, &key_a, &db.destroyed[2], &err);
	emh_prepcache_put(pc, 7, &key_a, &db.destroyed[3], &err);
	emh_prepcache_clear(pc);
	ok(db.destroyed[2] == 1 && db.destroyed[3] == 1 && db.calls == 4, "clear destroys every handle once");
	ok(emh_prepcache_get(pc, 0, &key_a) == NULL && emh_prepcache_get(pc, 7, &key_a) == NULL,
	   "and forgets them");
	is_int(emh_prepcache_put(pc, 7, &key_a, &db.destroyed[4], &err), 0, "the cache is usable after clear");
	emh_prepcache_free(pc);
	is_int(db.destroyed[4], 1, "free destroys what was put after clear");
	is_int(db.calls, 5, "five handles, five destroy calls");
	emh_prepcache_free(NULL);
	ok(1, "free(NULL) is a no-op");
}

static void markers(void)
{
	diag("markers without a destroy callback, reserve");
	static const char on_server = 1; /* a statement that lives only on the server */
	emh_prepcache *pc = cache_new(NULL);
	emh_error err;
	int key;

	is_int(emh_prepcache_reserve(pc, 300, &err), 0, "reserve id 300");
	ok(emh_prepcache_get(pc, 300, &key) == NULL, "reserving caches nothing");
	is_int(emh_prepcache_put(pc, 300, &key, (void *)(uintptr_t)&on_server, &err), 0, "put a marker");
	ok(emh_prepcache_get(pc, 300, &key) == &on_server, "the marker is found");
	emh_prepcache_drop(pc, 300);
	ok(emh_prepcache_get(pc, 300, &key) == NULL, "dropped without a destroy callback");
	emh_prepcache_put(pc, 17, &key, (void *)(uintptr_t)&on_server, &err);
	emh_prepcache_free(pc);
	ok(1, "freed with a marker inside and no callback");
}

int main(void)
{
	plan_lazy();
	lookups();
	replacing();
	markers();
	return done_testing();
}
