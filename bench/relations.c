/* SPDX-License-Identifier: MIT */
/*
 * bench/relations.c: the `relations` workload of emh-bench: the posts of 100
 * users, users in one context and posts in another, loaded through the
 * has_many relation (emh_em_load) against the same done by hand, as a
 * service did before relations: one IN query on the posts' context and a
 * join loop in C.  Both sides are emhost and do the same work around it (two
 * forks, the users found), so the ratio is what the relation machinery
 * costs.  Medians of 3 rounds per side; a round alternates the sides in
 * tenths, so both meet the same load on a shared machine.
 *
 *   bench <driver> relations hand_ops_s=N emhost_ops_s=N ratio=R
 *
 * The users live in an in-memory SQLite context added for the run
 * (bench_rel_users), the posts in the context being measured.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"

#define REL_USERS 100
#define REL_POSTS 5 /* per user */
#define REL_ROUNDS 3
#define USERS_CTX "bench_rel_users"

typedef struct brel_user {
	int64_t id;
	const char *name;
	emh_list posts;
} brel_user;

typedef struct brel_post {
	int64_t id;
	int64_t user_id;
	const char *title;
} brel_post;

static const emh_entity brel_post_entity;
static const emh_field brel_user_fields[] = {
	EMH_FIELD(brel_user, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(brel_user, name, EMH_T_TEXT, 0),
	EMH_HAS_MANY(brel_user, posts, &brel_post_entity, "user_id", 0),
};
static const emh_field brel_post_fields[] = {
	EMH_FIELD(brel_post, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(brel_post, user_id, EMH_T_INT64, EMH_F_INDEXED),
	EMH_FIELD(brel_post, title, EMH_T_TEXT, 0),
};
static const emh_entity brel_user_entity = EMH_ENTITY(brel_user, "emh_bench_rel_users", brel_user_fields);
static const emh_entity brel_post_entity = EMH_ENTITY(brel_post, "emh_bench_rel_posts", brel_post_fields);

typedef struct rel_bench {
	emh_host *h;
	const char *ctx;
	emh_error err;
	const char *what;
	size_t sink; /* posts seen, so nothing is optimised away */
} rel_bench;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Fork both contexts and find the users: what both sides do first. */
static int rel_begin(rel_bench *rb, emh_em **u, emh_em **p, emh_list *users)
{
	emh_repo *r;
	int rc = emh_host_fork(rb->h, USERS_CTX, u, &rb->err);
	if (rc)
		return rc;
	if ((rc = emh_host_fork(rb->h, rb->ctx, p, &rb->err)) != 0) {
		emh_em_close(*u);
		return rc;
	}
	if ((rc = emh_em_repo(*u, &brel_user_entity, &r, &rb->err)) == 0)
		rc = emh_repo_find(r, NULL, users, &rb->err);
	return rc;
}

/* emhost: the has_many relation. */
static int rel_load(rel_bench *rb)
{
	emh_em *u, *p;
	emh_list users;
	int rc = rel_begin(rb, &u, &p, &users);
	if (rc)
		return rc;
	if ((rc = emh_em_link(u, p, &rb->err)) == 0)
		rc = emh_em_load(u, users.items, users.count, "posts", &rb->err);
	for (size_t i = 0; rc == 0 && i < users.count; i++)
		rb->sink += ((brel_user *)users.items[i])->posts.count;
	emh_em_close(p);
	emh_em_close(u);
	return rc;
}

/* By hand: the users' keys in one IN query, then each post put with its user. */
static int rel_hand(rel_bench *rb)
{
	emh_em *u, *p;
	emh_list users, posts;
	emh_repo *r;
	emh_query *q;
	int rc = rel_begin(rb, &u, &p, &users);
	if (rc)
		return rc;
	emh_value keys[REL_USERS];
	size_t n = users.count < REL_USERS ? users.count : REL_USERS;
	for (size_t i = 0; i < n; i++)
		keys[i] = emh_v_int64(((brel_user *)users.items[i])->id);
	if ((rc = emh_em_repo(p, &brel_post_entity, &r, &rb->err)) == 0 && (rc = emh_repo_query(r, &q, &rb->err)) == 0) {
		emh_q_where(q, emh_q_in(q, "user_id", keys, n));
		emh_q_order_by(q, "id", false);
		rc = emh_repo_find(r, q, &posts, &rb->err);
	}
	if (rc == 0) {
		/* users by key in a small open-addressing table, then one pass to
		 * count and one to place: what a careful hand-written join does */
		int64_t slot_key[4 * REL_USERS];
		int slot_user[4 * REL_USERS];
		size_t cnt[REL_USERS + 1] = {0};
		memset(slot_user, -1, sizeof slot_user);
		for (size_t i = 0; i < n; i++) {
			int64_t k = keys[i].u.i64;
			size_t s = (size_t)((uint64_t)k * 0x9E3779B97F4A7C15ULL >> 55) % (4 * REL_USERS);
			while (slot_user[s] >= 0)
				s = (s + 1) % (4 * REL_USERS);
			slot_key[s] = k;
			slot_user[s] = (int)i;
		}
		int *owner = malloc((posts.count ? posts.count : 1) * sizeof *owner);
		void **items = emh_em_memdup(u, posts.items, (posts.count ? posts.count : 1) * sizeof *items);
		if (!owner || !items)
			rc = emh_error_set(&rb->err, EMH_ENOMEM, "out of memory");
		for (size_t i = 0; rc == 0 && i < posts.count; i++) {
			int64_t k = ((brel_post *)posts.items[i])->user_id;
			size_t s = (size_t)((uint64_t)k * 0x9E3779B97F4A7C15ULL >> 55) % (4 * REL_USERS);
			while (slot_user[s] >= 0 && slot_key[s] != k)
				s = (s + 1) % (4 * REL_USERS);
			owner[i] = slot_user[s];
			cnt[slot_user[s] + 1]++;
		}
		for (size_t i = 0; rc == 0 && i < n; i++)
			cnt[i + 1] += cnt[i];
		for (size_t i = 0; rc == 0 && i < posts.count; i++)
			items[cnt[owner[i]]++] = posts.items[i];
		for (size_t i = 0; rc == 0 && i < n; i++) {
			brel_user *us = users.items[i];
			size_t start = i ? cnt[i - 1] : 0;
			us->posts = (emh_list){items + start, cnt[i] - start};
			rb->sink += us->posts.count;
		}
		free(owner);
	}
	emh_em_close(p);
	emh_em_close(u);
	return rc;
}

/* Operations of op for secs seconds, added to *ops and *time; -1 when one failed. */
static int rel_run(rel_bench *rb, int (*op)(rel_bench *), double secs, double *ops, double *time)
{
	uint64_t n = 0;
	double t0 = now_s(), t;
	do {
		if (op(rb))
			return -1;
		n++;
		t = now_s();
	} while (t - t0 < secs);
	*ops += (double)n;
	*time += t - t0;
	return 0;
}

/*
 * One round: the two sides in alternating slices of a tenth of secs each,
 * so that both see the same machine (on shared cores the load changes
 * faster than a round lasts).  Rates into *hand and *em.
 */
#define REL_SLICES 10
static int rel_round(rel_bench *rb, double secs, double *hand, double *em)
{
	double ho = 0, ht = 0, eo = 0, et = 0;
	for (int i = 0; i < REL_SLICES; i++)
		if (rel_run(rb, rel_hand, secs / REL_SLICES, &ho, &ht) || rel_run(rb, rel_load, secs / REL_SLICES, &eo, &et))
			return -1;
	*hand = ho / ht;
	*em = eo / et;
	return 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Empty the posts table of an earlier run, in the driver's language. */
static int rel_empty(rel_bench *rb, const char *driver)
{
	emh_em *em;
	int rc = emh_host_fork(rb->h, rb->ctx, &em, &rb->err);
	if (rc)
		return rc;
	rc = emh_em_execute(em,
			    strcmp(driver, "mongo") == 0
				    ? "{\"delete\": \"emh_bench_rel_posts\", \"deletes\": [{\"q\": {}, \"limit\": 0}]}"
				    : "DELETE FROM emh_bench_rel_posts",
			    &rb->err);
	emh_em_close(em);
	return rc;
}

/* The users, and REL_POSTS posts each. */
static int rel_fill(rel_bench *rb)
{
	emh_em *u, *p;
	emh_repo *ru, *rp;
	void *obj[REL_USERS];
	int rc = emh_host_fork(rb->h, USERS_CTX, &u, &rb->err);
	if (rc)
		return rc;
	if ((rc = emh_host_fork(rb->h, rb->ctx, &p, &rb->err)) != 0) {
		emh_em_close(u);
		return rc;
	}
	if ((rc = emh_em_repo(u, &brel_user_entity, &ru, &rb->err)) == 0)
		rc = emh_em_repo(p, &brel_post_entity, &rp, &rb->err);
	for (size_t i = 0; rc == 0 && i < REL_USERS; i++)
		if ((rc = emh_repo_new(ru, &obj[i], &rb->err)) == 0)
			((brel_user *)obj[i])->name = "user";
	if (rc == 0)
		rc = emh_em_flush(u, &rb->err);
	for (size_t i = 0; rc == 0 && i < REL_USERS * REL_POSTS; i++) {
		void *post;
		if ((rc = emh_repo_new(rp, &post, &rb->err)) == 0) {
			((brel_post *)post)->user_id = ((brel_user *)obj[i % REL_USERS])->id;
			((brel_post *)post)->title = "post";
		}
	}
	if (rc == 0)
		rc = emh_em_flush(p, &rb->err);
	emh_em_close(p);
	emh_em_close(u);
	return rc;
}

int bench_relations(emh_host *h, const char *ctx, const char *driver, double secs)
{
	rel_bench rb = {.h = h, .ctx = ctx};
	int rc = emh_host_add_context(h, USERS_CTX, (const char *const[]){"driver", "sqlite", "path", ":memory:", NULL},
				      &rb.err);
	if (rc == 0 && (rc = emh_host_register_entity(h, USERS_CTX, &brel_user_entity, &rb.err)) == 0 &&
	    (rc = emh_host_register_entity(h, ctx, &brel_post_entity, &rb.err)) == 0 &&
	    (rc = emh_host_sync_schema(h, USERS_CTX, &rb.err)) == 0 && (rc = emh_host_sync_schema(h, ctx, &rb.err)) == 0 &&
	    (rc = rel_empty(&rb, driver)) == 0)
		rc = rel_fill(&rb);
	if (rc) {
		printf("# bench %s relations: setup failed: %s: %s\n", driver, emh_status_name(rc), rb.err.message);
		emh_host_remove_context(h, USERS_CTX, NULL);
		return -1;
	}
	double hand[REL_ROUNDS], em[REL_ROUNDS], warm = secs / 4 < 0.2 ? secs / 4 : 0.2;
	int status = rel_round(&rb, warm, &hand[0], &em[0]);
	for (int i = 0; status == 0 && i < REL_ROUNDS; i++)
		status = rel_round(&rb, secs, &hand[i], &em[i]);
	if (status == 0 && rb.sink == 0) {
		snprintf(rb.err.message, sizeof rb.err.message, "no post was loaded");
		status = -1;
	}
	if (status) {
		printf("# bench %s relations: failed: %s\n", driver, rb.err.message);
	} else {
		qsort(hand, REL_ROUNDS, sizeof *hand, cmp_double);
		qsort(em, REL_ROUNDS, sizeof *em, cmp_double);
		printf("bench %s relations hand_ops_s=%.0f emhost_ops_s=%.0f ratio=%.3f\n", driver, hand[REL_ROUNDS / 2],
		       em[REL_ROUNDS / 2], em[REL_ROUNDS / 2] / hand[REL_ROUNDS / 2]);
	}
	fflush(stdout);
	emh_em *p;
	if (emh_host_fork(h, ctx, &p, NULL) == 0) {
		emh_em_execute(p, strcmp(driver, "mongo") == 0 ? "{\"drop\": \"emh_bench_rel_posts\"}"
							       : "DROP TABLE emh_bench_rel_posts",
			       NULL);
		emh_em_close(p);
	}
	emh_host_remove_context(h, USERS_CTX, NULL);
	return status;
}
