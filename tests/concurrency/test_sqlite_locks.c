/* SPDX-License-Identifier: MIT */
/*
 * tests/concurrency/test_sqlite_locks.c: row locks on SQLite.  SQLite has
 * no row locks; the driver makes a lock a no-op because every transaction
 * of a fork begins with BEGIN IMMEDIATE and so holds the database's write
 * lock: no other connection can change any row the transaction read until
 * it ends.  This checks that claim with a second fork: while the first
 * holds a "locked" row, the second's transaction cannot even begin (busy
 * timeout, then EMH_ERETRY) and its writes outside a transaction fail the
 * same way; after the first commits, the second proceeds.
 */
#include "config.h"

#include <stdio.h>

#include <emhost/driver.h>
#include <emhost/emhost.h>

#include "../fixture.h"
#include "../tap.h"

typedef struct item {
	int64_t id;
	int64_t stock;
} item;

static const emh_field item_fields[] = {
	EMH_FIELD(item, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(item, stock, EMH_T_INT64, 0),
};
static const emh_entity item_entity = EMH_ENTITY(item, "items", item_fields);

static int lock_get(emh_em *em, int64_t id, int wait, void **out, emh_error *err)
{
	emh_get_opts o = {.lock = EMH_LOCK_UPDATE, .wait = wait};
	return emh_repo_get_opts(fixture_repo(em, &item_entity), emh_v_int64(id), &o, out, err);
}

int main(void)
{
	fixture fx;
	emh_error err;
	void *p;
	int rc;

	plan(12);
	fixture_init(&fx, "sqlocks");
	/* A short busy timeout: the second fork's wait is the point, not its length. */
	static const char *const env[] = {"EMH_CONTEXT_DEFAULT_BUSY_TIMEOUT_MS=200", NULL};
	static const emh_entity *const ents[] = {&item_entity, NULL};
	emh_host *h = fixture_sqlite_host(&fx, "locks.db", env, ents);
	fixture_sync(h, NULL);

	emh_em *a = fixture_fork(h, NULL), *b = fixture_fork(h, NULL);
	uint64_t caps = 0;
	if (emh_em_caps(a, &caps, &err))
		bail("caps: %s", err.message);
	ok(caps & EMH_CAP_LOCKS, "sqlite advertises row locks");
	item *it = fixture_new(fixture_repo(a, &item_entity));
	it->stock = 5;
	if (emh_em_flush(a, &err))
		bail("insert: %s", err.message);
	int64_t id = it->id;

	rc = lock_get(a, id, EMH_LOCK_WAIT, &p, &err);
	is_int(rc, EMH_ESTATE, "a locked get outside a transaction is EMH_ESTATE, as on every driver");
	is_int(emh_em_begin(a, &err), 0, "fork A begins");
	rc = lock_get(a, id, EMH_LOCK_NOWAIT, &p, &err);
	ok(rc == 0 && p == it, "fork A's get FOR UPDATE NOWAIT: the lock is a no-op, the row is loaded");

	rc = emh_em_begin(b, &err);
	is_int(rc, EMH_ERETRY, "fork B cannot begin while A's transaction holds the write lock (busy, EMH_ERETRY)");
	ok(err.retryable, "retryable");
	emh_repo *rb = fixture_repo(b, &item_entity);
	emh_query *q = fixture_query(rb);
	emh_sets *s;
	if (emh_repo_sets(rb, &s, &err))
		bail("sets: %s", err.message);
	emh_q_where(q, emh_q_eq(q, "id", emh_v_int64(id)));
	emh_sets_add(s, "stock", emh_v_int64(-1));
	int64_t n = -1;
	rc = emh_repo_update_where(rb, q, s, &n, &err);
	is_int(rc, EMH_ERETRY, "nor change the row outside a transaction (EMH_ERETRY)");

	it->stock = 4;
	is_int(emh_em_flush(a, &err), 0, "fork A writes the row it locked");
	is_int(emh_em_commit(a, &err), 0, "fork A commits (the lock ends)");
	rc = emh_repo_update_where(rb, q, s, &n, &err);
	ok(rc == 0 && n == 1, "then fork B's update goes through");
	item *row = NULL;
	rc = emh_repo_get(rb, emh_v_int64(id), (void **)&row, &err);
	ok(rc == 0 && row->stock == 3, "on top of A's write (4 - 1 = 3)");
	is_int(emh_em_begin(b, &err), 0, "and fork B can begin now");
	emh_em_close(b);
	emh_em_close(a);
	emh_host_free(h);
	fixture_release(&fx);
	return done_testing();
}
