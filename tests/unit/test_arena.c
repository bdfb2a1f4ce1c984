/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/test_arena.c: the arena's cache of large blocks (core/arena.c,
 * emh__blockcache): blocks of 64 kB and more go back to it up to its
 * bound, the next arena takes them, smaller ones never enter it; and a
 * host's forks share one, so a fork that read many rows leaves its blocks
 * for the next such read (the memory is reused, not trimmed and faulted in
 * again).  Reads the host's internals (h->blocks).
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "../fixture.h"
#include "../tap.h"

/* Fill a with n bytes in allocations of chunk bytes, each written whole (ASan sees the bounds). */
static int fill(emh__arena *a, size_t n, size_t chunk)
{
	for (size_t done = 0; done < n; done += chunk) {
		unsigned char *p = emh__arena_alloc(a, chunk);
		if (!p)
			return -1;
		memset(p, 0xa5, chunk);
	}
	return 0;
}

static void test_cache(void)
{
	emh__blockcache c;
	emh__blockcache_init(&c, 1u << 20);

	emh__arena a;
	emh__arena_init(&a, NULL, 0);
	ok(fill(&a, 200 * 1024, 1000) == 0, "an arena without a cache fills 200 kB");
	emh__arena_release(&a);
	is_int((int)emh__blockcache_bytes(&c), 0, "without a cache set, nothing is kept anywhere");

	emh__arena_init(&a, NULL, 0);
	a.cache = &c;
	ok(fill(&a, 40 * 1024, 1000) == 0, "an arena with a cache fills 40 kB (blocks below 64 kB)");
	emh__arena_release(&a);
	is_int((int)emh__blockcache_bytes(&c), 0, "blocks below 64 kB are freed, not kept");

	emh__arena_init(&a, NULL, 0);
	a.cache = &c;
	ok(fill(&a, 3u << 20, 4000) == 0, "an arena with a cache fills 3 MB");
	emh__arena_release(&a);
	size_t kept = emh__blockcache_bytes(&c);
	ok(kept >= 64 * 1024 && kept <= (1u << 20), "its large blocks are kept, up to the bound (%zu bytes)", kept);

	emh__arena b;
	emh__arena_init(&b, NULL, 0);
	b.cache = &c;
	ok(fill(&b, 600 * 1024, 4000) == 0, "the next arena fills 600 kB");
	size_t left = emh__blockcache_bytes(&c);
	ok(left < kept, "and takes kept blocks for it (%zu -> %zu bytes kept)", kept, left);
	unsigned char *big = emh__arena_alloc(&b, 3u << 20);
	ok(big != NULL, "a request larger than any kept block is a new block");
	if (big)
		memset(big, 0x5a, 3u << 20);
	emh__arena_reset(&b);
	ok(emh__blockcache_bytes(&c) <= (1u << 20), "a reset gives back the blocks it does not keep, within the bound");
	ok(fill(&b, 2u << 20, 4000) == 0, "the reset arena fills again");
	emh__arena_release(&b);
	ok(emh__blockcache_bytes(&c) <= (1u << 20), "released: still within the bound");
	emh__blockcache_destroy(&c); /* ASan/valgrind: every kept block freed */
}

typedef struct row {
	int64_t id;
	char *name;
	int64_t n;
} row;
static const emh_field row_fields[] = {
	EMH_FIELD(row, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(row, name, EMH_T_TEXT, 0),
	EMH_FIELD(row, n, EMH_T_INT64, 0),
};
static const emh_entity row_entity = EMH_ENTITY(row, "arena_rows", row_fields);

/* Find every row in a fresh fork; *kept_during: the host's kept bytes while it is open. */
static int find_all(emh_host *h, size_t *kept_during)
{
	emh_error err;
	emh_em *em = fixture_fork(h, NULL);
	emh_repo *r = fixture_repo(em, &row_entity);
	emh_list l;
	int rc = emh_repo_find(r, fixture_query(r), &l, &err);
	*kept_during = emh__blockcache_bytes(&h->blocks);
	int n = rc ? -1 : (int)l.count;
	emh_em_close(em);
	return n;
}

static void test_host(void)
{
	fixture fx;
	fixture_init(&fx, "arena");
	const emh_entity *ents[] = {&row_entity, NULL};
	emh_host *h = fixture_sqlite_host(&fx, "rows.db", NULL, ents);
	fixture_sync(h, NULL);
	emh_error err;
	emh_em *em = fixture_fork(h, NULL);
	emh_repo *r = fixture_repo(em, &row_entity);
	for (int i = 0; i < 5000; i++) {
		row *x = fixture_new(r);
		x->name = emh_em_strdup(em, "a name of some length, to fill the arena");
		x->n = i;
	}
	if (emh_em_flush(em, &err))
		bail("flush: %s", err.message);
	emh_em_close(em);
	size_t before = emh__blockcache_bytes(&h->blocks), during;
	is_int(find_all(h, &during), 5000, "a fork reads 5000 rows");
	size_t after = emh__blockcache_bytes(&h->blocks);
	ok(before > 0 && after > 0 && after <= EMH__HOST_BLOCK_CACHE,
	   "closed, the forks' large arena blocks stay with the host (after the writes %zu bytes, after the read %zu)",
	   before, after);
	is_int(find_all(h, &during), 5000, "the next fork reads them again");
	ok(during < after, "while open it uses the kept blocks (%zu bytes kept then, %zu before)", during, after);
	ok(emh__blockcache_bytes(&h->blocks) >= during, "and gives them back at its close");
	emh_host_free(h); /* frees the kept blocks: ASan/valgrind */
	fixture_release(&fx);
}

int main(void)
{
	test_cache();
	test_host();
	return done_testing();
}
