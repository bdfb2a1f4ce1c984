/* SPDX-License-Identifier: MIT */
/*
 * tests/relations/test_relations.c: relations within and across contexts.
 *
 * Users live in context "users", their posts (and groups, memberships) in
 * "blog", the posts' comments in "notes".  The whole run happens twice: on
 * three SQLite files (always), and on SQLite + PostgreSQL + MongoDB when the
 * test servers are there (EMH_TEST_PG_URL, EMH_TEST_MONGO_URI; a missing one
 * fails under CI=true and is skipped loudly otherwise).  Every load asserts
 * how many queries each context received (emh_host_contexts' .queries): one
 * per target context per level, one per EMH_QUERY_MAX_IN distinct keys.
 * Services and registration errors run on the SQLite hosts.
 *
 * EMH_TEST_REL_PARENTS sets the size of the big batch (default 10000).
 */
#include "config.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include <emhost/aggregate.h>
#include <emhost/emhost.h>
#include <emhost/service.h>

#include "../fixture.h"
#include "../tap.h"

/* ---- entities ---- */

typedef struct r_user {
	int64_t id;
	const char *name;
	emh_list posts;
	emh_list groups;
} r_user;

typedef struct r_post {
	int64_t id;
	int64_t author_id;
	int64_t editor_id; /* nullable, and not checked: may name a missing user */
	const char *title;
	struct r_user *author;
	struct r_user *editor;
	emh_list comments;
} r_post;

typedef struct r_comment {
	int64_t id;
	int64_t post_id;
	const char *body;
	struct r_post *post;
} r_comment;

typedef struct r_group {
	int64_t id;
	const char *name;
} r_group;

/* One per user, keyed by the user's id (a natural key: upserted). */
typedef struct r_bio {
	int64_t user_id;
	const char *text;
	struct r_user *user;
} r_bio;

typedef struct r_member {
	int64_t id;
	int64_t user_id;
	int64_t group_id;
} r_member;

/* Tables are named per process: runs share the test servers. */
static char t_users[64], t_posts[64], t_comments[64], t_groups[64], t_members[64], t_bios[64];
static emh_entity user_entity, post_entity, comment_entity, group_entity, member_entity, bio_entity;

static const emh_field user_fields[] = {
	EMH_FIELD(r_user, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(r_user, name, EMH_T_TEXT, 0),
	EMH_HAS_MANY(r_user, posts, &post_entity, "author_id", EMH_REL_RESTRICT),
	EMH_MANY_TO_MANY(r_user, groups, &group_entity, &member_entity, "user_id", "group_id"),
};
static const emh_field post_fields[] = {
	EMH_FIELD(r_post, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(r_post, author_id, EMH_T_INT64, EMH_F_INDEXED),
	EMH_FIELD(r_post, editor_id, EMH_T_INT64, EMH_F_NULLABLE),
	EMH_FIELD(r_post, title, EMH_T_TEXT, 0),
	EMH_BELONGS_TO(r_post, author, &user_entity, "author_id", EMH_REL_CHECKED),
	EMH_BELONGS_TO(r_post, editor, &user_entity, "editor_id", 0),
	EMH_HAS_MANY(r_post, comments, &comment_entity, "post_id", 0),
};
static const emh_field comment_fields[] = {
	EMH_FIELD(r_comment, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(r_comment, post_id, EMH_T_INT64, EMH_F_INDEXED),
	EMH_FIELD(r_comment, body, EMH_T_TEXT, 0),
	EMH_BELONGS_TO(r_comment, post, &post_entity, "post_id", 0),
};
static const emh_field group_fields[] = {
	EMH_FIELD(r_group, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(r_group, name, EMH_T_TEXT, 0),
};
static const emh_field bio_fields[] = {
	EMH_FIELD(r_bio, user_id, EMH_T_INT64, EMH_F_PK),
	EMH_FIELD(r_bio, text, EMH_T_TEXT, 0),
	EMH_BELONGS_TO(r_bio, user, &user_entity, "user_id", EMH_REL_CHECKED),
};
static const emh_field member_fields[] = {
	EMH_FIELD(r_member, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(r_member, user_id, EMH_T_INT64, EMH_F_INDEXED),
	EMH_FIELD(r_member, group_id, EMH_T_INT64, 0),
};
static emh_entity user_entity = EMH_ENTITY(r_user, t_users, user_fields);
static emh_entity post_entity = EMH_ENTITY(r_post, t_posts, post_fields);
static emh_entity comment_entity = EMH_ENTITY(r_comment, t_comments, comment_fields);
static emh_entity group_entity = EMH_ENTITY(r_group, t_groups, group_fields);
static emh_entity member_entity = EMH_ENTITY(r_member, t_members, member_fields);
static emh_entity bio_entity = EMH_ENTITY(r_bio, t_bios, bio_fields);

/* Declarations the registration must refuse, or take as the same entity. */
static const emh_field bad_key_fields[] = {
	EMH_FIELD(r_post, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(r_post, author_id, EMH_T_INT64, 0),
	EMH_BELONGS_TO(r_post, author, &user_entity, "writer_id", 0),
};
static const emh_field bad_member_fields[] = {
	EMH_FIELD(r_user, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_RELATION(r_user, name, .kind = EMH_REL_HAS_MANY, .target = &post_entity, .key = "author_id"),
};
static const emh_field bad_flag_fields[] = {
	EMH_FIELD(r_post, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(r_post, author_id, EMH_T_INT64, 0),
	EMH_BELONGS_TO(r_post, author, &user_entity, "author_id", EMH_REL_RESTRICT),
};
static const emh_field bad_type_fields[] = {
	EMH_FIELD(r_comment, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(r_comment, body, EMH_T_TEXT, 0),
	EMH_BELONGS_TO(r_comment, post, &post_entity, "body", 0),
};
/* users without relations: the same table, merged with user_entity */
static const emh_field plain_user_fields[] = {
	EMH_FIELD(r_user, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(r_user, name, EMH_T_TEXT, 0),
};
/* users whose relation 'posts' means something else */
static const emh_field other_posts_fields[] = {
	EMH_FIELD(r_user, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(r_user, name, EMH_T_TEXT, 0),
	EMH_HAS_MANY(r_user, posts, &post_entity, "editor_id", 0),
};
static emh_entity bad_key_entity = EMH_ENTITY(r_post, "rel_bad", bad_key_fields);
static emh_entity bad_member_entity = EMH_ENTITY(r_user, "rel_bad", bad_member_fields);
static emh_entity bad_flag_entity = EMH_ENTITY(r_post, "rel_bad", bad_flag_fields);
static emh_entity bad_type_entity = EMH_ENTITY(r_comment, "rel_bad", bad_type_fields);
static emh_entity plain_user_entity = EMH_ENTITY(r_user, t_users, plain_user_fields);
static emh_entity other_posts_entity = EMH_ENTITY(r_user, t_users, other_posts_fields);

/* A restricting has_many whose child side is not checked (no belongs_to). */
typedef struct r_dept {
	int64_t id;
	const char *name;
	emh_list staff;
} r_dept;
typedef struct r_staff {
	int64_t id;
	int64_t dept_id;
	const char *name;
} r_staff;
static const emh_entity staff_entity;
static const emh_field dept_fields[] = {
	EMH_FIELD(r_dept, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(r_dept, name, EMH_T_TEXT, 0),
	EMH_HAS_MANY(r_dept, staff, &staff_entity, "dept_id", EMH_REL_RESTRICT),
};
static const emh_field staff_fields[] = {
	EMH_FIELD(r_staff, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(r_staff, dept_id, EMH_T_INT64, EMH_F_INDEXED),
	EMH_FIELD(r_staff, name, EMH_T_TEXT, 0),
};
static const emh_entity dept_entity = EMH_ENTITY(r_dept, "rel_dept", dept_fields);
static const emh_entity staff_entity = EMH_ENTITY(r_staff, "rel_staff", staff_fields);

/* A relation to its own entity, both ways. */
typedef struct r_emp {
	int64_t id;
	int64_t manager_id;
	struct r_emp *manager;
	emh_list reports;
} r_emp;
static const emh_entity emp_entity;
static const emh_field emp_fields[] = {
	EMH_FIELD(r_emp, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(r_emp, manager_id, EMH_T_INT64, EMH_F_NULLABLE | EMH_F_INDEXED),
	EMH_BELONGS_TO(r_emp, manager, &emp_entity, "manager_id", EMH_REL_CHECKED),
	EMH_HAS_MANY(r_emp, reports, &emp_entity, "manager_id", EMH_REL_RESTRICT),
};
static const emh_entity emp_entity = EMH_ENTITY(r_emp, "rel_emp", emp_fields);

/* Shops (not filtered) and their items, filtered by tenant (EMH_F_FILTER). */
typedef struct r_shop {
	int64_t id;
	const char *name;
	emh_list items;
} r_shop;
typedef struct r_titem {
	int64_t id;
	int64_t shop_id;
	const char *tenant;
	const char *label;
	struct r_shop *shop;
} r_titem;
static const emh_entity shop_entity, titem_entity;
static const emh_field shop_fields[] = {
	EMH_FIELD(r_shop, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(r_shop, name, EMH_T_TEXT, 0),
	EMH_HAS_MANY(r_shop, items, &titem_entity, "shop_id", 0),
};
static const emh_field titem_fields[] = {
	EMH_FIELD(r_titem, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(r_titem, shop_id, EMH_T_INT64, EMH_F_INDEXED),
	EMH_FIELD(r_titem, tenant, EMH_T_TEXT, EMH_F_FILTER),
	EMH_FIELD(r_titem, label, EMH_T_TEXT, 0),
	EMH_BELONGS_TO(r_titem, shop, &shop_entity, "shop_id", EMH_REL_CHECKED),
};
static const emh_entity shop_entity = EMH_ENTITY(r_shop, "rel_shop", shop_fields);
static const emh_entity titem_entity = EMH_ENTITY(r_titem, "rel_titem", titem_fields);
static void t_filtered(emh_host *h);

/* Customers, filtered by tenant, and notes (not filtered) that belong to
 * one: a belongs_to whose target is filtered. */
typedef struct r_tcust {
	int64_t id;
	const char *tenant;
	const char *name;
} r_tcust;
typedef struct r_tnote {
	int64_t id;
	int64_t cust_id;
	const char *text;
	struct r_tcust *cust;
} r_tnote;
static const emh_entity tcust_entity;
static const emh_field tcust_fields[] = {
	EMH_FIELD(r_tcust, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(r_tcust, tenant, EMH_T_TEXT, EMH_F_FILTER),
	EMH_FIELD(r_tcust, name, EMH_T_TEXT, 0),
};
static const emh_field tnote_fields[] = {
	EMH_FIELD(r_tnote, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(r_tnote, cust_id, EMH_T_INT64, EMH_F_INDEXED),
	EMH_FIELD(r_tnote, text, EMH_T_TEXT, 0),
	EMH_BELONGS_TO(r_tnote, cust, &tcust_entity, "cust_id", 0),
};
static const emh_entity tcust_entity = EMH_ENTITY(r_tcust, "rel_tcust", tcust_fields);
static const emh_entity tnote_entity = EMH_ENTITY(r_tnote, "rel_tnote", tnote_fields);
static void t_filtered_target(emh_host *h);

#define NUSERS 20
#define NGROUPS 3
#define MISSING_ID 900000000

/* ---- the run ---- */

typedef struct run {
	const char *label;
	emh_host *h;
	int64_t users[NUSERS];
	int64_t groups[NGROUPS];
	size_t nposts;
	pthread_mutex_t mu;
	int warnings; /* log lines about transactions on two contexts */
} run;

static void log_sink(void *ud, int level, const char *context, const char *msg)
{
	run *r = ud;
	if (level <= EMH_LOG_WARN && strstr(msg, "commit separately")) {
		pthread_mutex_lock(&r->mu);
		r->warnings++;
		pthread_mutex_unlock(&r->mu);
	}
}

static uint64_t queries(run *r, const char *ctx)
{
	emh_context_info *ci;
	size_t n;
	emh_error err;
	uint64_t q = 0;
	if (emh_host_contexts(r->h, &ci, &n, &err) != 0)
		bail("emh_host_contexts: %s", err.message);
	for (size_t i = 0; i < n; i++)
		if (strcmp(ci[i].name, ctx) == 0)
			q = ci[i].queries;
	emh_context_info_free(ci, n);
	return q;
}

/* The queries of the three contexts, before a step. */
typedef struct qsnap {
	uint64_t users, blog, notes;
} qsnap;

static qsnap snap(run *r) { return (qsnap){queries(r, "users"), queries(r, "blog"), queries(r, "notes")}; }

static void is_queries(run *r, qsnap before, long long users, long long blog, long long notes, const char *what)
{
	qsnap now = snap(r);
	long long du = (long long)(now.users - before.users), db = (long long)(now.blog - before.blog),
		  dn = (long long)(now.notes - before.notes);
	if (!ok(du == users && db == blog && dn == notes, "%s: %s: queries users %lld, blog %lld, notes %lld", r->label,
		what, users, blog, notes))
		diag("  got: users %lld, blog %lld, notes %lld", du, db, dn);
}

static int check(int rc, const emh_error *err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int check(int rc, const emh_error *err, const char *fmt, ...)
{
	char what[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	if (!ok(rc == 0, "%s", what))
		diag("  %s: %s", emh_status_name(rc), err->message);
	return rc == 0;
}

/* ---- seed ---- */

/* Posts of user i: i % 4.  Editor of post j: none, an existing user, or a missing one.  Comments of post j: 2, none when j % 5 == 0. */
static void seed(run *r)
{
	emh_error err;
	emh_em *u = fixture_fork(r->h, "users"), *b = fixture_fork(r->h, "blog"), *n = fixture_fork(r->h, "notes");
	emh_repo *ru = fixture_repo(u, &user_entity), *rp = fixture_repo(b, &post_entity),
		 *rc = fixture_repo(n, &comment_entity), *rg = fixture_repo(b, &group_entity),
		 *rm = fixture_repo(b, &member_entity);
	if (emh_em_link(u, b, &err) || emh_em_link(b, n, &err))
		bail("link: %s", err.message);
	r_user *us[NUSERS];
	for (int i = 0; i < NUSERS; i++) {
		us[i] = fixture_new(ru);
		char name[16];
		snprintf(name, sizeof name, "u%d", i);
		us[i]->name = emh_em_strdup(u, name);
	}
	r_group *gs[NGROUPS];
	for (int i = 0; i < NGROUPS; i++) {
		gs[i] = fixture_new(rg);
		char name[16];
		snprintf(name, sizeof name, "g%d", i);
		gs[i]->name = emh_em_strdup(b, name);
	}
	if (emh_em_flush(u, &err) || emh_em_flush(b, &err))
		bail("seed users and groups: %s", err.message);
	for (int i = 0; i < NUSERS; i++)
		r->users[i] = us[i]->id;
	for (int i = 0; i < NGROUPS; i++)
		r->groups[i] = gs[i]->id;
	r_post *ps[NUSERS * 3];
	size_t np = 0;
	for (int i = 0; i < NUSERS; i++) {
		for (int k = 0; k < i % 4; k++, np++) {
			r_post *p = ps[np] = fixture_new(rp);
			p->author_id = r->users[i];
			if (np % 3 == 0)
				emh_em_set_null(b, p, "editor_id", true, NULL);
			else
				p->editor_id = np % 3 == 1 ? r->users[(i + 1) % NUSERS] : MISSING_ID + (int64_t)np;
			char t[32];
			snprintf(t, sizeof t, "p%d.%d", i, k);
			p->title = emh_em_strdup(b, t);
		}
		r_member *m = fixture_new(rm);
		m->user_id = r->users[i];
		m->group_id = r->groups[i % NGROUPS];
		if (i % 2 == 0) {
			m = fixture_new(rm);
			m->user_id = r->users[i];
			m->group_id = r->groups[(i + 1) % NGROUPS];
		}
	}
	if (emh_em_flush(b, &err))
		bail("seed posts: %s", err.message);
	r->nposts = np;
	for (size_t j = 0; j < np; j++)
		for (int k = 0; j % 5 && k < 2; k++) {
			r_comment *c = fixture_new(rc);
			c->post_id = ps[j]->id;
			c->body = "c";
		}
	if (emh_em_flush(n, &err))
		bail("seed comments: %s", err.message);
	emh_em_close(u);
	emh_em_close(b);
	emh_em_close(n);
}

/* Every user, ordered by id, in fork u: typed, and as the void * emh_em_load takes. */
static void all_users(emh_em *u, r_user **out, void **outv)
{
	emh_repo *ru = fixture_repo(u, &user_entity);
	emh_query *q = fixture_query(ru);
	emh_list l;
	emh_error err;
	emh_q_order_by(q, "id", false);
	if (emh_repo_find(ru, q, &l, &err) || l.count != NUSERS)
		bail("find users: %s (%zu)", err.message, l.count);
	for (size_t i = 0; i < NUSERS; i++)
		out[i] = outv[i] = l.items[i];
}

static emh_list all_posts(emh_em *b)
{
	emh_repo *rp = fixture_repo(b, &post_entity);
	emh_query *q = fixture_query(rp);
	emh_list l;
	emh_error err;
	emh_q_order_by(q, "id", false);
	if (emh_repo_find(rp, q, &l, &err))
		bail("find posts: %s", err.message);
	return l;
}

/* ---- loading ---- */

static void t_has_many(run *r)
{
	emh_error err;
	emh_em *u = fixture_fork(r->h, "users"), *b = fixture_fork(r->h, "blog"), *n = fixture_fork(r->h, "notes");
	r_user *us[NUSERS];
	void *uv[NUSERS];
	all_users(u, us, uv);
	emh_em_link(u, b, NULL);
	emh_em_link(u, n, NULL);
	ok(!emh_em_loaded(u, us[0], "posts") && us[0]->posts.count == 0, "%s: not loaded before the load", r->label);
	qsnap q0 = snap(r);
	int rc = emh_em_load(u, uv, NUSERS, "posts", &err);
	check(rc, &err, "%s: load 'posts' of %d users", r->label, NUSERS);
	is_queries(r, q0, 0, 1, 0, "has_many 'posts'");
	bool each = true, ordered = true, flagged = true;
	size_t total = 0;
	for (int i = 0; i < NUSERS; i++) {
		each &= us[i]->posts.count == (size_t)(i % 4);
		flagged &= emh_em_loaded(u, us[i], "posts");
		for (size_t k = 0; k < us[i]->posts.count; k++) {
			r_post *p = us[i]->posts.items[k];
			each &= p->author_id == us[i]->id;
			ordered &= k == 0 || ((r_post *)us[i]->posts.items[k - 1])->id < p->id;
		}
		total += us[i]->posts.count;
	}
	ok(each && total == r->nposts, "%s: every user has its posts, and only those", r->label);
	ok(ordered, "%s: each list is ordered by the posts' keys", r->label);
	ok(flagged, "%s: loaded, also where there are none (users with no post: loaded, empty)", r->label);
	ok(us[0]->posts.count == 0 && us[0]->posts.items == NULL && emh_em_loaded(u, us[0], "posts"),
	   "%s: 'loaded, none' differs from 'not loaded' only by emh_em_loaded", r->label);

	/* the next level through the already loaded one */
	q0 = snap(r);
	rc = emh_em_load(u, uv, NUSERS, "posts.comments", &err);
	check(rc, &err, "%s: load 'posts.comments' after 'posts'", r->label);
	is_queries(r, q0, 0, 0, 1, "posts already loaded: only the comments");
	each = true;
	for (int i = 0; i < NUSERS; i++)
		for (size_t k = 0; k < us[i]->posts.count; k++) {
			r_post *p = us[i]->posts.items[k];
			each &= emh_em_loaded(b, p, "comments");
			for (size_t c = 0; c < p->comments.count; c++)
				each &= ((r_comment *)p->comments.items[c])->post_id == p->id;
			each &= p->comments.count == 0 || p->comments.count == 2;
		}
	ok(each, "%s: every post has its comments", r->label);

	/* the inverse: every author is already managed by the users fork */
	r_post *p3 = us[3]->posts.items[0];
	q0 = snap(r);
	rc = emh_em_load(b, us[3]->posts.items, us[3]->posts.count, "author", &err);
	check(rc, &err, "%s: load 'author' of user 3's posts", r->label);
	is_queries(r, q0, 0, 0, 0, "authors the users fork manages are not asked for");
	ok(p3->author == us[3], "%s: identity: the author is the user object loaded before", r->label);
	rc = emh_em_load(u, uv, NUSERS, "posts", &err);
	is_queries(r, q0, 0, 0, 0, "loading a loaded relation again asks nothing");
	emh_em_close(n);
	emh_em_close(b);
	emh_em_close(u);
}

static void t_belongs_to(run *r)
{
	emh_error err;
	emh_em *u = fixture_fork(r->h, "users"), *b = fixture_fork(r->h, "blog");
	emh_list ps = all_posts(b);
	emh_em_link(b, u, NULL);
	qsnap q0 = snap(r);
	int rc = emh_em_load(b, ps.items, ps.count, "author", &err);
	check(rc, &err, "%s: load 'author' of %zu posts", r->label, ps.count);
	is_queries(r, q0, 1, 0, 0, "belongs_to: one query for every distinct author");
	bool each = true, shared = true;
	for (size_t j = 0; j < ps.count; j++) {
		r_post *p = ps.items[j];
		each &= p->author && p->author->id == p->author_id;
		for (size_t k = 0; k < j; k++) {
			r_post *o = ps.items[k];
			if (o->author_id == p->author_id)
				shared &= o->author == p->author;
		}
	}
	ok(each, "%s: every post has its author", r->label);
	ok(shared, "%s: posts of one author share one object", r->label);

	/* mixed present and missing keys, and NULL ones */
	q0 = snap(r);
	rc = emh_em_load(b, ps.items, ps.count, "editor", &err);
	check(rc, &err, "%s: load 'editor' (some NULL, some missing)", r->label);
	is_queries(r, q0, 1, 0, 0, "only the editors not managed yet are asked for, in one query");
	int nul = 0, found = 0, missing = 0;
	for (size_t j = 0; j < ps.count; j++) {
		r_post *p = ps.items[j];
		bool isnull = emh_em_is_null(b, p, "editor_id");
		if (isnull)
			nul += p->editor == NULL;
		else if (p->editor_id >= MISSING_ID)
			missing += p->editor == NULL;
		else
			found += p->editor && p->editor->id == p->editor_id;
		each &= emh_em_loaded(b, p, "editor");
	}
	ok(nul + found + missing == (int)ps.count && nul && found && missing,
	   "%s: NULL keys and missing users give NULL, present ones their user (%d/%d/%d)", r->label, nul, found,
	   missing);
	ok(each, "%s: loaded in every case", r->label);

	/* identity across calls: a user got first is the author loaded later */
	emh_em *u2 = fixture_fork(r->h, "users"), *b2 = fixture_fork(r->h, "blog");
	void *got;
	rc = emh_repo_get(fixture_repo(u2, &user_entity), emh_v_int64(r->users[5]), &got, &err);
	check(rc, &err, "%s: get user 5", r->label);
	emh_list ps2 = all_posts(b2);
	emh_em_link(b2, u2, NULL);
	rc = emh_em_load(b2, ps2.items, ps2.count, "author", &err);
	bool same = false;
	for (size_t j = 0; j < ps2.count; j++)
		if (((r_post *)ps2.items[j])->author_id == r->users[5])
			same = ((r_post *)ps2.items[j])->author == got;
	ok(rc == 0 && same, "%s: the target fork's identity map holds: one user, one object", r->label);
	emh_em_close(b2);
	emh_em_close(u2);
	emh_em_close(b);
	emh_em_close(u);
}

static void t_paths(run *r)
{
	emh_error err;
	emh_em *u = fixture_fork(r->h, "users"), *b = fixture_fork(r->h, "blog"), *n = fixture_fork(r->h, "notes");
	r_user *us[NUSERS];
	void *uv[NUSERS];
	all_users(u, us, uv);
	emh_em_link(u, b, NULL);
	emh_em_link(b, n, NULL);
	qsnap q0 = snap(r);
	int rc = emh_em_load(u, uv, NUSERS, "posts.comments", &err);
	check(rc, &err, "%s: load 'posts.comments' at once", r->label);
	is_queries(r, q0, 0, 1, 1, "two levels, one query per target context per level");
	size_t ncomments = 0;
	for (int i = 0; i < NUSERS; i++)
		for (size_t k = 0; k < us[i]->posts.count; k++)
			ncomments += ((r_post *)us[i]->posts.items[k])->comments.count;
	size_t want = 0;
	for (size_t j = 0; j < r->nposts; j++)
		want += j % 5 ? 2 : 0;
	is_int(ncomments, want, "%s: every comment reached", r->label);

	/* back up the chain: comment -> post -> author, identity all along */
	r_post *p = us[2]->posts.items[1];
	r_comment *c = p->comments.items[0];
	q0 = snap(r);
	void *cv = c;
	rc = emh_em_load(n, &cv, 1, "post.author", &err);
	check(rc, &err, "%s: load 'post.author' of a comment", r->label);
	is_queries(r, q0, 0, 0, 0, "every object on the way is managed already");
	ok(c->post == p && p->author == us[2], "%s: comment -> post -> author are the objects loaded before",
	   r->label);

	/* many_to_many: the join rows, then the groups */
	q0 = snap(r);
	rc = emh_em_load(u, uv, NUSERS, "groups", &err);
	check(rc, &err, "%s: load 'groups' (many_to_many)", r->label);
	is_queries(r, q0, 0, 2, 0, "many_to_many: the join rows and the targets");
	bool each = true;
	for (int i = 0; i < NUSERS; i++) {
		size_t want_n = i % 2 == 0 ? 2 : 1;
		each &= us[i]->groups.count == want_n &&
			((r_group *)us[i]->groups.items[0])->id == r->groups[i % NGROUPS];
		if (want_n == 2)
			each &= ((r_group *)us[i]->groups.items[1])->id == r->groups[(i + 1) % NGROUPS];
	}
	ok(each, "%s: every user has its groups, in the join's order", r->label);
	ok(us[0]->groups.items[0] == us[3]->groups.items[0], "%s: a group shared by two users is one object",
	   r->label);

	/* counting without loading */
	emh_em *u2 = fixture_fork(r->h, "users"), *b2 = fixture_fork(r->h, "blog");
	emh_em_link(u2, b2, NULL);
	void *x;
	int64_t cnt = -1;
	emh_repo_get(fixture_repo(u2, &user_entity), emh_v_int64(r->users[7]), &x, &err);
	q0 = snap(r);
	rc = emh_em_count_related(u2, x, "posts", &cnt, &err);
	check(rc, &err, "%s: count 'posts' of user 7", r->label);
	is_int(cnt, 3, "%s: user 7 has 3 posts", r->label);
	is_queries(r, q0, 0, 1, 0, "one COUNT in the target context");
	ok(!emh_em_loaded(u2, x, "posts") && ((r_user *)x)->posts.count == 0, "%s: counting loads nothing",
	   r->label);
	rc = emh_em_count_related(u2, x, "groups", &cnt, &err);
	ok(rc == 0 && cnt == 1, "%s: user 7 is in 1 group (the join rows counted)", r->label);
	emh_em_close(b2);
	emh_em_close(u2);

	/* emh_q_with: eager loading while finding */
	emh_em *b3 = fixture_fork(r->h, "blog"), *u3 = fixture_fork(r->h, "users"), *n3 = fixture_fork(r->h, "notes");
	emh_em_link(b3, u3, NULL);
	emh_em_link(b3, n3, NULL);
	emh_repo *rp = fixture_repo(b3, &post_entity);
	emh_query *q = fixture_query(rp);
	emh_q_where(q, emh_q_eq(q, "author_id", emh_v_int64(r->users[3])));
	emh_q_with(q, "author");
	emh_q_with(q, "comments");
	emh_list l;
	q0 = snap(r);
	rc = emh_repo_find(rp, q, &l, &err);
	check(rc, &err, "%s: find with 'author' and 'comments'", r->label);
	is_queries(r, q0, 1, 1, 1, "the find, and one query per relation");
	ok(l.count == 3 && ((r_post *)l.items[0])->author && ((r_post *)l.items[0])->author->id == r->users[3] &&
		   emh_em_loaded(b3, l.items[2], "comments"),
	   "%s: the posts come with their author and comments", r->label);
	q = fixture_query(rp);
	emh_q_where(q, emh_q_eq(q, "author_id", emh_v_int64(r->users[1])));
	emh_q_with(q, "author");
	void *one;
	rc = emh_repo_find_one(rp, q, &one, &err);
	ok(rc == 0 && ((r_post *)one)->author && ((r_post *)one)->author->id == r->users[1],
	   "%s: emh_repo_find_one loads it too", r->label);
	q = fixture_query(rp);
	emh_q_with(q, "writer");
	rc = emh_repo_find(rp, q, &l, &err);
	ok(rc == EMH_EINVAL && strstr(err.message, "writer") && strstr(err.message, "author, "),
	   "%s: an unknown relation is the find's error, listing the relations", r->label);
	emh_em_close(n3);
	emh_em_close(u3);
	emh_em_close(b3);
	emh_em_close(n);
	emh_em_close(b);
	emh_em_close(u);
}

/* ---- integrity ---- */

static int64_t count_posts(run *r)
{
	emh_em *b = fixture_fork(r->h, "blog");
	int64_t n = -1;
	emh_repo_count(fixture_repo(b, &post_entity), NULL, &n, NULL);
	emh_em_close(b);
	return n;
}

static void t_checked(run *r)
{
	emh_error err;
	emh_em *u = fixture_fork(r->h, "users"), *b = fixture_fork(r->h, "blog");
	emh_repo *rp = fixture_repo(b, &post_entity);
	emh_em_link(b, u, NULL);
	int64_t before = count_posts(r);
	r_post *good = fixture_new(rp), *bad = fixture_new(rp);
	good->author_id = r->users[1];
	good->title = "good";
	bad->author_id = MISSING_ID;
	bad->title = "bad";
	emh_em_set_null(b, good, "editor_id", true, NULL);
	emh_em_set_null(b, bad, "editor_id", true, NULL);
	qsnap q0 = snap(r);
	int rc = emh_em_flush(b, &err);
	ok(rc == EMH_ECONFLICT, "%s: a flush with a missing checked key: EMH_ECONFLICT", r->label);
	char key[32];
	snprintf(key, sizeof key, "%d", MISSING_ID);
	ok(strstr(err.message, "context 'blog'") && strstr(err.message, "context 'users'") && strstr(err.message, key) &&
		   strstr(err.message, "author"),
	   "%s: the error names both contexts, the key and the relation", r->label);
	diag("  %s", err.message);
	is_queries(r, q0, 1, 0, 0, "one query in the target context, nothing written");
	is_int(count_posts(r), before, "%s: nothing was inserted", r->label);

	bad->author_id = r->users[2];
	r_post *more[8];
	for (int i = 0; i < 8; i++) {
		more[i] = fixture_new(rp);
		more[i]->author_id = r->users[i % 3];
		more[i]->title = "more";
		emh_em_set_null(b, more[i], "editor_id", true, NULL);
	}
	q0 = snap(r);
	rc = emh_em_flush(b, &err);
	check(rc, &err, "%s: the same flush with existing keys", r->label);
	qsnap q1 = snap(r);
	ok(q1.users - q0.users == 1, "%s: ten checked keys, one query in the target context (got %llu)", r->label,
	   (unsigned long long)(q1.users - q0.users));
	is_int(count_posts(r), before + 10, "%s: all ten inserted", r->label);

	/* an update that changes the key is checked; one that does not, is not */
	good->author_id = MISSING_ID + 1;
	rc = emh_em_flush(b, &err);
	ok(rc == EMH_ECONFLICT, "%s: an update to a missing key: EMH_ECONFLICT", r->label);
	good->author_id = r->users[1];
	good->title = "renamed";
	q0 = snap(r);
	rc = emh_em_flush(b, &err);
	check(rc, &err, "%s: an update that keeps the key", r->label);
	is_queries(r, q0, 0, 1, 0, "an unchanged key is not checked again");

	/* an upsert writes a key too */
	emh_repo *rb = fixture_repo(b, &bio_entity);
	r_bio *bio = fixture_new(rb);
	bio->user_id = MISSING_ID;
	bio->text = "nobody";
	rc = emh_repo_upsert(rb, bio, &err);
	ok(rc == EMH_ECONFLICT && strstr(err.message, "context 'users'"),
	   "%s: an upsert of a missing checked key: EMH_ECONFLICT", r->label);
	bio->user_id = r->users[4];
	rc = emh_repo_upsert(rb, bio, &err);
	check(rc, &err, "%s: an upsert of an existing one", r->label);

	/* on_delete restrict: a user with posts elsewhere */
	void *x;
	emh_repo *ru = fixture_repo(u, &user_entity);
	emh_repo_get(ru, emh_v_int64(r->users[3]), &x, &err);
	rc = emh_em_remove(u, x, &err) ? -1 : emh_em_flush(u, &err);
	ok(rc == EMH_ECONFLICT, "%s: deleting a user with posts in another context: EMH_ECONFLICT", r->label);
	snprintf(key, sizeof key, "%lld", (long long)r->users[3]);
	ok(strstr(err.message, "context 'users'") && strstr(err.message, "context 'blog'") && strstr(err.message, key) &&
		   strstr(err.message, "restricts"),
	   "%s: the error names both contexts and the user", r->label);
	diag("  %s", err.message);
	emh_em_clear(u);
	r_user *lone = fixture_new(ru);
	lone->name = "lone";
	if (emh_em_flush(u, &err))
		bail("insert a user: %s", err.message);
	rc = emh_repo_remove(ru, lone, &err);
	check(rc, &err, "%s: deleting a user without posts", r->label);

	/* a write across two contexts stays refused */
	emh_list ps = all_posts(b);
	rc = emh_em_remove(u, ps.items[0], &err);
	ok(rc == EMH_ECROSSCTX, "%s: removing a post through the users fork: EMH_ECROSSCTX", r->label);
	emh_em_close(b);
	emh_em_close(u);
}

/* The set-based writes check the same: a key set by update_where, the parents delete_where removes. */
static void t_where(run *r)
{
	emh_error err;
	emh_em *u = fixture_fork(r->h, "users"), *b = fixture_fork(r->h, "blog");
	emh_repo *rp = fixture_repo(b, &post_entity), *ru = fixture_repo(u, &user_entity);
	emh_em_link(b, u, NULL);
	emh_list ps = all_posts(b);
	r_post *p = ps.items[0];
	int64_t pid = p->id, author = p->author_id, n = -1;
	emh_query *q = fixture_query(rp);
	emh_q_where(q, emh_q_eq(q, "id", emh_v_int64(pid)));
	emh_sets *s;
	if (emh_repo_sets(rp, &s, &err))
		bail("emh_repo_sets: %s", err.message);
	emh_sets_value(s, "author_id", emh_v_int64(MISSING_ID));
	qsnap q0 = snap(r);
	int rc = emh_repo_update_where(rp, q, s, &n, &err);
	ok(rc == EMH_ECONFLICT && n == 0, "%s: update_where setting a missing checked key: EMH_ECONFLICT", r->label);
	char key[32];
	snprintf(key, sizeof key, "%d", MISSING_ID);
	ok(strstr(err.message, "context 'blog'") && strstr(err.message, "context 'users'") && strstr(err.message, key),
	   "%s: the error names both contexts and the key", r->label);
	diag("  %s", err.message);
	is_queries(r, q0, 1, 0, 0, "one query in the target context, nothing written");

	emh_sets *s2;
	if (emh_repo_sets(rp, &s2, &err))
		bail("emh_repo_sets: %s", err.message);
	emh_sets_value(s2, "author_id", emh_v_int64(r->users[1]));
	rc = emh_repo_update_where(rp, q, s2, &n, &err);
	check(rc, &err, "%s: update_where setting an existing key", r->label);
	is_int(n, 1, "%s: one row updated", r->label);

	emh_sets *s3;
	if (emh_repo_sets(rp, &s3, &err))
		bail("emh_repo_sets: %s", err.message);
	emh_sets_add(s3, "author_id", emh_v_int64(1));
	rc = emh_repo_update_where(rp, q, s3, &n, &err);
	ok(rc == EMH_EINVAL && strstr(err.message, "author"), "%s: update_where adding to a checked key: EMH_EINVAL",
	   r->label);
	emh_sets *s4; /* back as seeded */
	if (emh_repo_sets(rp, &s4, &err))
		bail("emh_repo_sets: %s", err.message);
	emh_sets_value(s4, "author_id", emh_v_int64(author));
	if (emh_repo_update_where(rp, q, s4, &n, &err))
		bail("restore post %lld: %s", (long long)pid, err.message);

	/* delete_where: the parents' keys (one query), then their children elsewhere (one) */
	emh_query *qu = fixture_query(ru);
	emh_q_where(qu, emh_q_eq(qu, "id", emh_v_int64(r->users[3])));
	q0 = snap(r);
	rc = emh_repo_delete_where(ru, qu, &n, &err);
	ok(rc == EMH_ECONFLICT && n == 0, "%s: delete_where of a user with posts in another context: EMH_ECONFLICT",
	   r->label);
	snprintf(key, sizeof key, "%lld", (long long)r->users[3]);
	ok(strstr(err.message, "context 'users'") && strstr(err.message, "context 'blog'") && strstr(err.message, key) &&
		   strstr(err.message, "restricts"),
	   "%s: the error names both contexts and the user", r->label);
	is_queries(r, q0, 1, 1, 0, "the parents' keys, then one query in the children's context");
	void *x;
	rc = emh_repo_get(ru, emh_v_int64(r->users[3]), &x, &err);
	check(rc, &err, "%s: the user is still there", r->label);

	r_user *lone = fixture_new(ru);
	lone->name = "lone where";
	if (emh_em_flush(u, &err))
		bail("insert a user: %s", err.message);
	emh_query *ql = fixture_query(ru);
	emh_q_where(ql, emh_q_eq(ql, "id", emh_v_int64(lone->id)));
	rc = emh_repo_delete_where(ru, ql, &n, &err);
	check(rc, &err, "%s: delete_where of a user without posts", r->label);
	is_int(n, 1, "%s: one user deleted", r->label);
	emh_em_close(b);
	emh_em_close(u);
}

static void t_tx_warning(run *r)
{
	emh_error err;
	emh_em *u = fixture_fork(r->h, "users"), *b = fixture_fork(r->h, "blog");
	emh_em_link(u, b, NULL);
	int w0 = r->warnings;
	int rc = emh_em_begin(u, &err);
	if (rc == 0)
		rc = emh_em_begin(b, &err);
	check(rc, &err, "%s: transactions begun on two linked forks", r->label);
	is_int(r->warnings - w0, 1, "%s: the second one is logged as not spanning both", r->label);
	emh_em_rollback(b, NULL);
	emh_em_rollback(u, NULL);
	emh_em_begin(u, NULL);
	emh_em_begin(b, NULL);
	is_int(r->warnings - w0, 1, "%s: once", r->label);
	emh_em_close(b);
	emh_em_close(u);
}

static void t_errors(run *r)
{
	emh_error err;
	emh_em *u = fixture_fork(r->h, "users"), *b = fixture_fork(r->h, "blog");
	r_user *us[NUSERS];
	void *uv[NUSERS];
	all_users(u, us, uv);
	int rc = emh_em_load(u, uv, NUSERS, "posts", &err);
	ok(rc == EMH_ENOCONTEXT && strstr(err.message, "r_post") && strstr(err.message, "registered in: blog"),
	   "%s: no linked fork for the target: EMH_ENOCONTEXT naming where it is", r->label);
	diag("  %s", err.message);
	emh_em_link(u, b, NULL);
	rc = emh_em_load(u, uv, NUSERS, "postz", &err);
	ok(rc == EMH_EINVAL && strstr(err.message, "postz") && strstr(err.message, "posts"),
	   "%s: an unknown relation: EMH_EINVAL listing the relations", r->label);
	rc = emh_em_load(u, uv, NUSERS, "posts..author", &err);
	ok(rc == EMH_EINVAL, "%s: an empty path segment: EMH_EINVAL", r->label);
	rc = emh_em_load(u, uv, NUSERS, "posts.author.posts.author.posts.author.posts.author.posts",
			 &err);
	ok(rc == EMH_EINVAL, "%s: a path of more than 8 levels: EMH_EINVAL", r->label);
	emh_list ps = all_posts(b);
	void *mixed[2] = {uv[1], ps.items[0]};
	rc = emh_em_load(u, mixed, 2, "posts", &err);
	ok(rc == EMH_ECROSSCTX, "%s: an object of another fork's context: EMH_ECROSSCTX", r->label);
	emh_em *b2 = fixture_fork(r->h, "blog");
	rc = emh_em_link(u, b2, &err);
	ok(rc == EMH_EINVAL && strstr(err.message, "blog"), "%s: two forks of one context in a group: EMH_EINVAL",
	   r->label);
	emh_em_close(b2);
	int64_t n;
	rc = emh_em_count_related(u, us[0], "nothing", &n, &err);
	ok(rc == EMH_EINVAL, "%s: count of an unknown relation: EMH_EINVAL", r->label);
	ok(!emh_em_loaded(u, us[1], "nothing") && !emh_em_loaded(b, us[1], "posts"),
	   "%s: emh_em_loaded: false for an unknown relation or another fork's object", r->label);
	emh_em_close(b);
	emh_em_close(u);
}

/* A big batch: parents past EMH_QUERY_MAX_IN. */
static void t_big(run *r, size_t nbig)
{
	emh_error err;
	emh_em *u = fixture_fork(r->h, "users"), *b = fixture_fork(r->h, "blog"), *n = fixture_fork(r->h, "notes");
	emh_em_link(b, u, NULL);
	emh_em_link(b, n, NULL);
	emh_repo *rp = fixture_repo(b, &post_entity), *rc_ = fixture_repo(n, &comment_entity);
	r_post **ps = malloc(nbig * sizeof *ps);
	if (!ps)
		bail("out of memory");
	for (size_t i = 0; i < nbig; i++) {
		ps[i] = fixture_new(rp);
		ps[i]->author_id = r->users[i % NUSERS];
		ps[i]->title = "big";
		emh_em_set_null(b, ps[i], "editor_id", true, NULL);
	}
	qsnap q0 = snap(r);
	int rc = emh_em_flush(b, &err);
	check(rc, &err, "%s: insert %zu posts in one flush", r->label, nbig);
	qsnap q1 = snap(r);
	ok(q1.users - q0.users == 1, "%s: their %d distinct authors checked with one query (got %llu)", r->label,
	   NUSERS, (unsigned long long)(q1.users - q0.users));
	size_t every = 97;
	for (size_t i = 0; i < nbig; i += every) {
		r_comment *c = fixture_new(rc_);
		c->post_id = ps[i]->id;
		c->body = "big";
	}
	if (emh_em_flush(n, &err))
		bail("insert comments: %s", err.message);
	emh_em_close(n);
	emh_em_close(b);
	free(ps);

	b = fixture_fork(r->h, "blog");
	n = fixture_fork(r->h, "notes");
	emh_em *u2 = fixture_fork(r->h, "users");
	emh_em_link(b, n, NULL);
	emh_em_link(b, u2, NULL);
	rp = fixture_repo(b, &post_entity);
	emh_query *q = fixture_query(rp);
	emh_q_where(q, emh_q_eq(q, "title", emh_v_text("big")));
	emh_list l;
	if (emh_repo_find(rp, q, &l, &err) || l.count != nbig)
		bail("find the big batch: %s", err.message);
	q0 = snap(r);
	rc = emh_em_load(b, l.items, l.count, "comments", &err);
	check(rc, &err, "%s: load 'comments' of %zu posts", r->label, l.count);
	long long chunks = (long long)((nbig + EMH_QUERY_MAX_IN - 1) / EMH_QUERY_MAX_IN);
	is_queries(r, q0, 0, 0, chunks, "one query per EMH_QUERY_MAX_IN parents, never one per parent");
	size_t with = 0, right = 0;
	for (size_t i = 0; i < l.count; i++) {
		r_post *p = l.items[i];
		with += p->comments.count;
		right += p->comments.count == 1 && ((r_comment *)p->comments.items[0])->post_id == p->id;
	}
	size_t want = (nbig + every - 1) / every;
	ok(with == want && right == want, "%s: %zu posts have their one comment (got %zu, %zu right)", r->label,
	   want, with, right);
	q0 = snap(r);
	rc = emh_em_load(b, l.items, l.count, "author", &err);
	check(rc, &err, "%s: load 'author' of %zu posts", r->label, l.count);
	is_queries(r, q0, 1, 0, 0, "keys de-duplicated: one query for the authors");
	emh_em_close(u2);
	emh_em_close(n);
	emh_em_close(b);
	emh_em_close(u);
}

/* ---- hosts ---- */

static emh_host *make_host(const fixture *fx, run *r, const char *blog_url, const char *notes_url)
{
	char users_url[512], b_url[1024], n_url[1024], u_env[600];
	fixture_path(fx, "users.db", users_url, sizeof users_url);
	snprintf(u_env, sizeof u_env, "EMH_CONTEXT_USERS_URL=sqlite://%s", users_url);
	snprintf(b_url, sizeof b_url, "EMH_CONTEXT_BLOG_URL=%s", blog_url);
	snprintf(n_url, sizeof n_url, "EMH_CONTEXT_NOTES_URL=%s", notes_url);
	const char *env[] = {u_env, b_url, n_url, "EMH_DEFAULT_CONTEXT=users", NULL};
	emh_host_opts o = {.plugin_dir = fx->plugin_dir, .envp = env, .log = log_sink, .log_ud = r,
			   .log_level = EMH_LOG_WARN};
	emh_error err;
	emh_host *h;
	if (emh_host_new(&o, &h, &err))
		bail("host for %s: %s", r->label, err.message);
	fixture_register(h, "users", &user_entity);
	fixture_register(h, "blog", &post_entity);
	fixture_register(h, "blog", &group_entity);
	fixture_register(h, "blog", &member_entity);
	fixture_register(h, "blog", &bio_entity);
	fixture_register(h, "notes", &comment_entity);
	/* fresh tables: a server may keep an earlier run's */
	const char *ctxs[] = {"users", "blog", "notes"};
	for (int i = 0; i < 3; i++) {
		emh_host_drop_schema(h, ctxs[i], NULL);
		fixture_sync(h, ctxs[i]);
	}
	return h;
}

static void run_all(const fixture *fx, const char *label, const char *blog_url, const char *notes_url, size_t nbig)
{
	run r = {.label = label};
	pthread_mutex_init(&r.mu, NULL);
	diag("---- %s", label);
	r.h = make_host(fx, &r, blog_url, notes_url);
	seed(&r);
	t_has_many(&r);
	t_belongs_to(&r);
	t_paths(&r);
	t_errors(&r);
	t_checked(&r);
	t_where(&r);
	t_tx_warning(&r);
	t_big(&r, nbig);
	const char *ctxs[] = {"users", "blog", "notes"};
	for (int i = 0; i < 3; i++)
		emh_host_drop_schema(r.h, ctxs[i], NULL);
	emh_host_free(r.h);
	pthread_mutex_destroy(&r.mu);
}

/* ---- registration ---- */

static uint64_t default_queries(emh_host *h)
{
	emh_context_info *ci;
	size_t n;
	uint64_t q = 0;
	if (emh_host_contexts(h, &ci, &n, NULL) != 0)
		bail("emh_host_contexts");
	for (size_t i = 0; i < n; i++)
		q += ci[i].queries;
	emh_context_info_free(ci, n);
	return q;
}

/* Employees and their managers, one table: the fork is its own target. */
/* The rows of e in the default context, counted by a fork of their own. */
static int64_t rows_of(emh_host *h, const emh_entity *e)
{
	emh_error err;
	int64_t n = -1;
	emh_em *em = fixture_fork(h, NULL);
	emh_repo_count(fixture_repo(em, e), NULL, &n, &err);
	emh_em_close(em);
	return n;
}

/*
 * on_delete restrict sees the children the deleting flush itself writes: a
 * new one, or one it points at the parent.  Only the database was asked,
 * and the parent went while the child was stored pointing at nothing.
 */
static void t_restrict_same_flush(emh_host *h)
{
	emh_error err;
	fixture_register(h, NULL, &staff_entity);
	fixture_register(h, NULL, &dept_entity);
	fixture_sync(h, NULL);
	emh_em *em = fixture_fork(h, NULL);
	emh_repo *rd = fixture_repo(em, &dept_entity), *rs = fixture_repo(em, &staff_entity);
	r_dept *d1 = fixture_new(rd), *d2 = fixture_new(rd);
	d1->name = "one";
	d2->name = "two";
	r_staff *moved = fixture_new(rs);
	moved->name = "moved";
	if (emh_em_flush(em, &err))
		bail("restrict: seed: %s", err.message);
	moved->dept_id = d2->id; /* d2's only member, before any change */
	if (emh_em_flush(em, &err))
		bail("restrict: seed the member: %s", err.message);

	/* a new child of the parent the same flush deletes */
	r_staff *fresh = fixture_new(rs);
	fresh->name = "new";
	fresh->dept_id = d1->id;
	emh_em_remove(em, d1, NULL);
	int rc = emh_em_flush(em, &err);
	ok(rc == EMH_ECONFLICT, "restrict: a flush deleting a parent and inserting its child: EMH_ECONFLICT (%s: %s)",
	   emh_status_name(rc), rc ? err.message : "stored");
	like_str(rc ? err.message : "", "inserted by this flush", "naming the new child");
	emh_em_close(em);
	is_int(rows_of(h, &dept_entity), 2, "restrict: ... both parents are still there");
	is_int(rows_of(h, &staff_entity), 1, "restrict: ... and no orphan was stored");

	/* a child the flush points at the parent it deletes */
	em = fixture_fork(h, NULL);
	rd = fixture_repo(em, &dept_entity);
	rs = fixture_repo(em, &staff_entity);
	emh_list depts, staff;
	if (emh_repo_find(rd, NULL, &depts, &err) || emh_repo_find(rs, NULL, &staff, &err) || staff.count != 1)
		bail("restrict: find: %s", err.message);
	r_dept *empty = NULL;
	for (size_t i = 0; i < depts.count; i++)
		if (((r_dept *)depts.items[i])->id != ((r_staff *)staff.items[0])->dept_id)
			empty = depts.items[i];
	if (!empty)
		bail("restrict: no department without staff");
	((r_staff *)staff.items[0])->dept_id = empty->id;
	emh_em_remove(em, empty, NULL);
	rc = emh_em_flush(em, &err);
	ok(rc == EMH_ECONFLICT, "restrict: a flush deleting a parent and pointing a child at it: EMH_ECONFLICT (%s)",
	   emh_status_name(rc));
	emh_em_close(em);
	is_int(rows_of(h, &dept_entity), 2, "restrict: ... the parent is still there");
}

static void t_self(emh_host *h)
{
	emh_error err;
	fixture_register(h, NULL, &emp_entity);
	fixture_sync(h, NULL);
	emh_em *em = fixture_fork(h, NULL);
	emh_repo *re = fixture_repo(em, &emp_entity);
	r_emp *boss = fixture_new(re);
	emh_em_set_null(em, boss, "manager_id", true, NULL);
	if (emh_em_flush(em, &err))
		bail("insert the boss: %s", err.message);
	for (int i = 0; i < 2; i++)
		((r_emp *)fixture_new(re))->manager_id = boss->id;
	int rc = emh_em_flush(em, &err);
	check(rc, &err, "self: reports of a checked manager in the same table");
	int64_t boss_id = boss->id;
	emh_em_close(em);

	em = fixture_fork(h, NULL);
	re = fixture_repo(em, &emp_entity);
	emh_list all;
	if (emh_repo_find(re, NULL, &all, &err) || all.count != 3)
		bail("find employees: %s", err.message);
	uint64_t q0 = default_queries(h);
	rc = emh_em_load(em, all.items, all.count, "reports.manager", &err);
	check(rc, &err, "self: load 'reports.manager'");
	is_int(default_queries(h) - q0, 1, "self: one query; the managers are the fork's own objects");
	r_emp *b = NULL;
	for (size_t i = 0; i < all.count; i++)
		if (((r_emp *)all.items[i])->id == boss_id)
			b = all.items[i];
	ok(b && b->reports.count == 2 && ((r_emp *)b->reports.items[0])->manager == b &&
		   ((r_emp *)b->reports.items[1])->manager == b && !emh_em_loaded(em, b, "manager"),
	   "self: the boss has two reports, whose manager is the boss object");
	rc = emh_repo_remove(re, b, &err);
	ok(rc == EMH_ECONFLICT, "self: deleting the boss alone: EMH_ECONFLICT (restrict)");
	emh_em_close(em);

	/* A rollback restores an object reloaded inside the level, relation
	 * members included -- and whether they were loaded: the members came
	 * back empty while still counted as loaded, so a later load kept
	 * them empty. */
	em = fixture_fork(h, NULL);
	re = fixture_repo(em, &emp_entity);
	void *bv = NULL;
	if (emh_repo_get(re, emh_v_int64(boss_id), &bv, &err))
		bail("get the boss: %s", err.message);
	b = bv;
	check(emh_em_begin(em, &err), &err, "rollback: begin");
	check(emh_em_refresh(em, b, &err), &err, "rollback: refresh the boss inside the transaction");
	rc = emh_em_load(em, &bv, 1, "reports", &err);
	ok(rc == 0 && b->reports.count == 2, "rollback: its 2 reports loaded inside the transaction");
	check(emh_em_rollback(em, &err), &err, "rollback: roll back");
	ok(!emh_em_loaded(em, b, "reports") || b->reports.count == 2,
	   "rollback: 'reports' is not loaded-and-empty afterwards (loaded %d, %zu items)",
	   emh_em_loaded(em, b, "reports"), b->reports.count);
	rc = emh_em_load(em, &bv, 1, "reports", &err);
	ok(rc == 0 && b->reports.count == 2, "rollback: a load afterwards gives the 2 reports (%zu)", b->reports.count);
	emh_em_close(em);
	em = fixture_fork(h, NULL);
	re = fixture_repo(em, &emp_entity);
	if (emh_repo_find(re, NULL, &all, &err))
		bail("find employees: %s", err.message);
	for (size_t i = 0; i < all.count; i++)
		emh_em_remove(em, all.items[i], NULL);
	rc = emh_em_flush(em, &err);
	check(rc, &err, "self: the boss deleted with the reports in one flush");
	emh_em_close(em);

	/* A new generated-key target has no key before its insert: a checked
	 * key 0 copied from it names no row, even in the flush inserting it
	 * (it once passed as "inserted here", and the orphan was stored). */
	em = fixture_fork(h, NULL);
	re = fixture_repo(em, &emp_entity);
	boss = fixture_new(re);
	emh_em_set_null(em, boss, "manager_id", true, NULL);
	r_emp *rep = fixture_new(re);
	rep->manager_id = boss->id; /* 0: not known yet */
	rc = emh_em_flush(em, &err);
	ok(rc == EMH_ECONFLICT, "self: a checked key 0 taken from a new object is refused (%s: %s)",
	   emh_status_name(rc), rc ? err.message : "stored");
	emh_em_close(em);
	is_int(rows_of(h, &emp_entity), 0, "self: ... and nothing is stored");
}

static void t_registration(const fixture *fx)
{
	emh_error err;
	emh_host *h = fixture_sqlite_host(fx, "reg.db", NULL, NULL);
	int rc = emh_host_register_entity(h, NULL, &bad_key_entity, &err);
	ok(rc == EMH_EINVAL && strstr(err.message, "writer_id") && strstr(err.message, "author"),
	   "a belongs_to key that is no field: EMH_EINVAL naming it");
	diag("  %s", err.message);
	rc = emh_host_register_entity(h, NULL, &bad_member_entity, &err);
	ok(rc == EMH_EINVAL && strstr(err.message, "emh_list"), "a has_many on a member that is no emh_list: EMH_EINVAL");
	rc = emh_host_register_entity(h, NULL, &bad_flag_entity, &err);
	ok(rc == EMH_EINVAL && strstr(err.message, "EMH_REL_RESTRICT"), "restrict on a belongs_to: EMH_EINVAL");
	rc = emh_host_register_entity(h, NULL, &bad_type_entity, &err);
	ok(rc == EMH_EINVAL && strstr(err.message, "text") && strstr(err.message, "int64"),
	   "a key field of another type than the key it holds: EMH_EINVAL");

	rc = emh_host_register_entity(h, NULL, &plain_user_entity, &err);
	check(rc, &err, "users declared without relations");
	rc = emh_host_register_entity(h, NULL, &user_entity, &err);
	check(rc, &err, "and with them, on the same table: one entity, relations merged");
	const emh_entity *copy;
	rc = emh_host_entity(h, NULL, t_users, &copy, &err);
	ok(rc == 0 && copy->nfields == 2 && emh_entity_field_index(copy, "posts") < 0,
	   "the host's copy (what drivers see) holds the two columns only");
	rc = emh_host_register_entity(h, NULL, &other_posts_entity, &err);
	ok(rc == EMH_ECONFIG && strstr(err.message, "posts"),
	   "a relation declared differently by another registration: EMH_ECONFIG");
	diag("  %s", err.message);
	fixture_sync(h, NULL);
	emh_em *em = fixture_fork(h, NULL);
	r_user *x = fixture_new(fixture_repo(em, &plain_user_entity));
	x->name = "x";
	check(emh_em_flush(em, &err), &err, "insert through the declaration without relations");
	void *xv = x;
	rc = emh_em_load(em, &xv, 1, "posts", &err);
	ok(rc == EMH_ENOCONTEXT, "its objects have the merged relations (no fork holds posts here: EMH_ENOCONTEXT)");
	emh_em_close(em);
	t_self(h);
	t_restrict_same_flush(h);
	t_filtered(h);
	t_filtered_target(h);
	emh_host_free(h);
}

/* ---- services ---- */

static int no_handle(emh_scope *scope, const emh_request *req, emh_response *res, emh_error *err)
{
	return emh_response_set(res, 204, NULL, NULL, 0, err);
}

enum { N_USERS, N_POSTS, N_COMMENTS, N_GROUPS, N_MEMBERS };
static const emh_need all_needs[] = {
	[N_USERS] = EMH_NEED_REPO(&user_entity, "accounts"),
	[N_POSTS] = EMH_NEED_REPO(&post_entity, "content"),
	[N_COMMENTS] = EMH_NEED_REPO(&comment_entity, "talk"),
	[N_GROUPS] = EMH_NEED_REPO(&group_entity, "content"),
	[N_MEMBERS] = EMH_NEED_REPO(&member_entity, "content"),
};
static const emh_service full_svc = {EMH_SERVICE_HEADER, .name = "blogsvc", .version = "1", .needs = all_needs,
				     .nneeds = EMH_NEEDS_COUNT(all_needs), .handle = no_handle};
/* users (whose relations lead to posts, groups and memberships) without the groups */
static const emh_need short_needs[] = {
	EMH_NEED_REPO(&user_entity, "accounts"),
	EMH_NEED_REPO(&post_entity, "content"),
	EMH_NEED_REPO(&comment_entity, "talk"),
};
static const emh_service short_svc = {EMH_SERVICE_HEADER, .name = "shortsvc", .version = "1", .needs = short_needs,
				      .nneeds = EMH_NEEDS_COUNT(short_needs), .handle = no_handle};
/* only comments and posts: post's author leads to users, not declared */
static const emh_need noauthor_needs[] = {
	EMH_NEED_REPO(&comment_entity, "talk"),
	EMH_NEED_REPO(&post_entity, "content"),
};
static const emh_service noauthor_svc = {EMH_SERVICE_HEADER, .name = "noauthor", .version = "1",
					 .needs = noauthor_needs, .nneeds = EMH_NEEDS_COUNT(noauthor_needs),
					 .handle = no_handle};

/* users as a service that reads them only: no relation declared, none resolved */
static const emh_need plain_needs[] = {EMH_NEED_REPO(&plain_user_entity, "accounts")};
static const emh_service plain_svc = {EMH_SERVICE_HEADER, .name = "plainsvc", .version = "1", .needs = plain_needs,
				      .nneeds = EMH_NEEDS_COUNT(plain_needs), .handle = no_handle};

static void t_services(const fixture *fx)
{
	emh_error err;
	run r = {.label = "scope"};
	pthread_mutex_init(&r.mu, NULL);
	fixture f2;
	fixture_init(&f2, "relsvc");
	r.h = make_host(&f2, &r, "sqlite::memory:", "sqlite::memory:");
	seed(&r);
	emh_services *s;
	if (emh_services_new(r.h, &s, &err))
		bail("services: %s", err.message);
	static const char *const remap[] = {"accounts", "users", "content", "blog", "talk", "notes", NULL};
	emh_service_opts so = {.remap = remap};
	int rc = emh_services_add(s, &short_svc, &so, &err);
	ok(rc == EMH_ENOENTITY && strstr(err.message, "groups") && strstr(err.message, "r_group"),
	   "a service whose entity's relation targets an entity it does not declare is refused, naming both");
	diag("  %s", err.message);
	static const char *const remap2[] = {"content", "blog", "talk", "notes", NULL};
	rc = emh_services_add(s, &noauthor_svc, &(emh_service_opts){.remap = remap2}, &err);
	if (!ok(rc == EMH_ENOENTITY && strstr(err.message, "author") && strstr(err.message, "r_user"),
		"the same for a belongs_to"))
		diag("  %s: %s", emh_status_name(rc), err.message);
	rc = emh_services_add(s, &full_svc, &so, &err);
	check(rc, &err, "a service declaring every entity its relations reach loads (contexts remapped)");

	emh_scope *sc;
	emh_repo *ru;
	emh_em *u;
	if (emh_scope_open(s, "blogsvc", &sc, &err) || emh_scope_repo_at(sc, N_USERS, &ru, &err))
		bail("scope: %s", err.message);
	u = emh_repo_em(ru);
	r_user *us[NUSERS];
	void *uv[NUSERS];
	all_users(u, us, uv);
	qsnap q0 = snap(&r);
	rc = emh_em_load(u, uv, NUSERS, "posts.comments", &err);
	check(rc, &err, "in a scope, the target forks are the scope's: no link");
	is_queries(&r, q0, 0, 1, 1, "scope: one query per target context per level");
	is_int(emh_scope_forks_open(sc), 3, "the scope made the forks of the two target contexts");
	emh_em *b;
	emh_scope_em(sc, "content", &b, &err);
	ok(us[3]->posts.count == 3 && emh_em_loaded(b, us[3]->posts.items[0], "comments"),
	   "the posts belong to the scope's fork of the remapped context");
	int w0 = r.warnings;
	rc = emh_em_begin(u, &err);
	if (rc == 0)
		rc = emh_em_begin(b, &err);
	check(rc, &err, "transactions begun on two forks of the scope");
	is_int(r.warnings - w0, 1, "the second is logged: they commit separately");
	emh_scope_close(sc);
	if (emh_scope_open(s, "blogsvc", &sc, &err))
		bail("scope: %s", err.message);
	emh_scope_em(sc, "accounts", &u, &err);
	emh_scope_em(sc, "content", &b, &err);
	emh_em_begin(u, NULL);
	emh_em_begin(b, NULL);
	is_int(r.warnings - w0, 1, "once per service");
	emh_scope_close(sc);

	static const char *const remap3[] = {"accounts", "users", NULL};
	rc = emh_services_add(s, &plain_svc, &(emh_service_opts){.remap = remap3}, &err);
	check(rc, &err, "a service reading users without their relations loads");
	if (emh_scope_open(s, "plainsvc", &sc, &err) || emh_scope_repo_at(sc, 0, &ru, &err))
		bail("scope: %s", err.message);
	all_users(emh_repo_em(ru), us, uv);
	rc = emh_em_load(emh_repo_em(ru), uv, NUSERS, "posts", &err);
	ok(rc == EMH_ENOCONTEXT && strstr(err.message, "plainsvc") && strstr(err.message, "posts"),
	   "in its scope, a relation another registration declared has no fork: EMH_ENOCONTEXT naming the service");
	diag("  %s", err.message);
	emh_scope_close(sc);
	emh_services_free(s);
	const char *ctxs[] = {"users", "blog", "notes"};
	for (int i = 0; i < 3; i++)
		emh_host_drop_schema(r.h, ctxs[i], NULL);
	emh_host_free(r.h);
	fixture_release(&f2);
	pthread_mutex_destroy(&r.mu);
}

/* A fork of tenant `tenant` (NULL: the parameter left unset). */
static emh_em *tenant_fork(emh_host *h, const char *tenant)
{
	emh_error err;
	emh_em *em = fixture_fork(h, NULL);
	if (tenant && emh_em_set_param(em, "tenant", emh_v_text(tenant), &err))
		bail("set tenant: %s", err.message);
	return em;
}

/* What a relation reads stays inside the global filters, as a find does:
 * eager loading a filtered entity shows the fork's tenant only, and with
 * the parameter unset it is EMH_ESTATE, never an unfiltered read. */
static void t_filtered(emh_host *h)
{
	emh_error err;
	fixture_register(h, NULL, &shop_entity);
	fixture_register(h, NULL, &titem_entity);
	fixture_sync(h, NULL);
	emh_em *em = tenant_fork(h, "a");
	r_shop *shop = fixture_new(fixture_repo(em, &shop_entity));
	shop->name = "corner";
	if (emh_em_flush(em, &err))
		bail("insert the shop: %s", err.message);
	int64_t shop_id = shop->id;
	for (int i = 0; i < 2; i++) {
		r_titem *it = fixture_new(fixture_repo(em, &titem_entity));
		it->shop_id = shop_id;
		it->label = "a's";
	}
	check(emh_em_flush(em, &err), &err, "filtered: tenant a's two items");
	emh_em_close(em);
	em = tenant_fork(h, "b");
	r_titem *bi = fixture_new(fixture_repo(em, &titem_entity));
	bi->shop_id = shop_id;
	bi->label = "b's";
	check(emh_em_flush(em, &err), &err, "filtered: tenant b's item in the same shop (a checked reference)");
	emh_em_close(em);

	em = tenant_fork(h, "a");
	void *sv = NULL;
	if (emh_repo_get(fixture_repo(em, &shop_entity), emh_v_int64(shop_id), &sv, &err))
		bail("get the shop: %s", err.message);
	int rc = emh_em_load(em, &sv, 1, "items", &err);
	check(rc, &err, "filtered: tenant a loads the shop's items");
	shop = sv;
	bool only_a = shop->items.count == 2;
	for (size_t i = 0; i < shop->items.count; i++)
		only_a = only_a && strcmp(((r_titem *)shop->items.items[i])->tenant, "a") == 0;
	ok(only_a, "filtered: a relation load sees tenant a's 2 items, not b's (got %zu)", shop->items.count);
	emh_em_close(em);

	em = tenant_fork(h, "b");
	emh_query *q = fixture_query(fixture_repo(em, &shop_entity));
	emh_q_with(q, "items");
	emh_list shops;
	rc = emh_repo_find(fixture_repo(em, &shop_entity), q, &shops, &err);
	check(rc, &err, "filtered: tenant b finds shops with their items (emh_q_with)");
	ok(rc == 0 && shops.count == 1 && ((r_shop *)shops.items[0])->items.count == 1 &&
		   strcmp(((r_titem *)((r_shop *)shops.items[0])->items.items[0])->label, "b's") == 0,
	   "filtered: ... and sees its one item only");
	emh_em_close(em);

	/* emh_q_with on a page loads as a find does; what loads no objects refuses it */
	em = tenant_fork(h, "a");
	emh_repo *rs = fixture_repo(em, &shop_entity);
	q = fixture_query(rs);
	emh_q_with(q, "items");
	emh_q_limit(q, 1);
	emh_page pg;
	rc = emh_repo_find_page(rs, q, &pg, &err);
	check(rc, &err, "with: find_page of shops with their items");
	ok(rc == 0 && pg.count == 1 && pg.total == 1 && emh_em_loaded(em, pg.items[0], "items") &&
		   ((r_shop *)pg.items[0])->items.count == 2,
	   "with: the page's shop has its (tenant a's) 2 items loaded");
	int64_t n = 0;
	is_int(emh_repo_count(rs, q, &n, &err), EMH_EINVAL, "with: a count of such a query is EMH_EINVAL");
	emh_iter *it = NULL;
	is_int(emh_repo_iter(rs, q, &it, &err), EMH_EINVAL, "with: an iterator over it is EMH_EINVAL");
	emh_iter_close(it);
	emh_agg *a = NULL;
	if (emh_repo_agg(rs, &a, &err))
		bail("agg: %s", err.message);
	emh_agg_count(a, NULL);
	emh_rows *rows = NULL;
	q = fixture_query(rs);
	emh_q_with(q, "items");
	is_int(emh_repo_aggregate(rs, q, a, &rows, &err), EMH_EINVAL, "with: an aggregate of it is EMH_EINVAL");
	is_int(emh_repo_delete_where(rs, q, &n, &err), EMH_EINVAL, "with: delete_where of it is EMH_EINVAL");
	ok(strstr(err.message, "relations") != NULL, "with: ... saying why: %s", err.message);
	emh_em_close(em);

	em = tenant_fork(h, NULL);
	if (emh_repo_get(fixture_repo(em, &shop_entity), emh_v_int64(shop_id), &sv, &err))
		bail("get the shop: %s", err.message);
	rc = emh_em_load(em, &sv, 1, "items", &err);
	is_int(rc, EMH_ESTATE, "filtered: with the tenant unset a relation load is EMH_ESTATE");
	emh_em_close(em);
}

/* A belongs_to whose target is filtered shows the fork's tenant only, also
 * for a target the fork's identity map already holds: a customer loaded
 * under tenant a was once handed to tenant b by the map. */
static void t_filtered_target(emh_host *h)
{
	emh_error err;
	fixture_register(h, NULL, &tcust_entity);
	fixture_register(h, NULL, &tnote_entity);
	fixture_sync(h, NULL);
	emh_em *em = tenant_fork(h, "a");
	r_tcust *c = fixture_new(fixture_repo(em, &tcust_entity));
	c->name = "a's customer";
	if (emh_em_flush(em, &err))
		bail("insert the customer: %s", err.message);
	r_tnote *n = fixture_new(fixture_repo(em, &tnote_entity));
	n->cust_id = c->id;
	n->text = "note";
	if (emh_em_flush(em, &err))
		bail("insert the note: %s", err.message);
	int64_t cid = c->id, nid = n->id;
	emh_em_close(em);

	em = tenant_fork(h, "a");
	void *cv = NULL, *nv = NULL;
	if (emh_repo_get(fixture_repo(em, &tcust_entity), emh_v_int64(cid), &cv, &err))
		bail("get the customer: %s", err.message);
	if (emh_em_set_param(em, "tenant", emh_v_text("b"), &err))
		bail("set tenant: %s", err.message);
	int grc = emh_repo_get(fixture_repo(em, &tcust_entity), emh_v_int64(cid), &cv, &err);
	is_int(grc, EMH_ENOTFOUND, "filtered target: under tenant b, a's customer (in the map) is not found by get");
	if (emh_repo_get(fixture_repo(em, &tnote_entity), emh_v_int64(nid), &nv, &err))
		bail("get the note: %s", err.message);
	int rc = emh_em_load(em, &nv, 1, "cust", &err);
	check(rc, &err, "filtered target: under tenant b, load the note's customer");
	n = nv;
	ok(rc == 0 && n->cust == NULL && emh_em_loaded(em, n, "cust"),
	   "filtered target: ... loaded as none, not a's customer from the identity map (got %s)",
	   n->cust ? n->cust->name : "none");
	emh_em_close(em);

	/* the customer in the map through an unfiltered find, the tenant unset */
	em = tenant_fork(h, NULL);
	emh_query *q = fixture_query(fixture_repo(em, &tcust_entity));
	emh_q_unfiltered(q);
	emh_list all;
	check(emh_repo_find(fixture_repo(em, &tcust_entity), q, &all, &err), &err,
	      "filtered target: an unfiltered find puts the customer in the map");
	if (emh_repo_get(fixture_repo(em, &tnote_entity), emh_v_int64(nid), &nv, &err))
		bail("get the note: %s", err.message);
	rc = emh_em_load(em, &nv, 1, "cust", &err);
	is_int(rc, EMH_ESTATE, "filtered target: with the tenant unset the load is EMH_ESTATE, map or not");
	emh_em_close(em);

	em = tenant_fork(h, "a");
	if (emh_repo_get(fixture_repo(em, &tcust_entity), emh_v_int64(cid), &cv, &err) ||
	    emh_repo_get(fixture_repo(em, &tnote_entity), emh_v_int64(nid), &nv, &err))
		bail("get: %s", err.message);
	rc = emh_em_load(em, &nv, 1, "cust", &err);
	n = nv;
	ok(rc == 0 && n->cust == cv, "filtered target: under tenant a the load gives the map's own customer");
	emh_em_close(em);
}

int main(void)
{
	fixture fx;
	plan_lazy();
	fixture_init(&fx, "rel");
	long pid = (long)getpid();
	snprintf(t_users, sizeof t_users, "rel_%ld_users", pid);
	snprintf(t_posts, sizeof t_posts, "rel_%ld_posts", pid);
	snprintf(t_comments, sizeof t_comments, "rel_%ld_comments", pid);
	snprintf(t_groups, sizeof t_groups, "rel_%ld_groups", pid);
	snprintf(t_members, sizeof t_members, "rel_%ld_members", pid);
	snprintf(t_bios, sizeof t_bios, "rel_%ld_bios", pid);
	const char *nb = getenv("EMH_TEST_REL_PARENTS");
	size_t nbig = nb && atol(nb) > 0 ? (size_t)atol(nb) : 10000;

	t_registration(&fx);
	t_services(&fx);

	char blog[512], notes[512];
	fixture_path(&fx, "blog.db", blog, sizeof blog);
	fixture_path(&fx, "notes.db", notes, sizeof notes);
	char b_url[600], n_url[600];
	snprintf(b_url, sizeof b_url, "sqlite://%s", blog);
	snprintf(n_url, sizeof n_url, "sqlite://%s", notes);
	run_all(&fx, "sqlite+sqlite+sqlite", b_url, n_url, nbig);

	const char *pg = getenv("EMH_TEST_PG_URL"), *mongo = getenv("EMH_TEST_MONGO_URI");
	if (!pg || !*pg || !mongo || !*mongo) {
		need_server(1, "relations across sqlite + postgres + mongo: EMH_TEST_PG_URL or EMH_TEST_MONGO_URI not "
			       "set (scripts/test-servers.sh start STATE_DIR)");
	} else {
		/* Shared hold on the MongoDB server: fault tests take it exclusively before stopping it. */
		const char *state = getenv("EMH_TEST_STATE_DIR");
		int fd = -1;
		if (state && *state) {
			char lock[1024];
			snprintf(lock, sizeof lock, "%s/mongo/use.lock", state);
			if ((fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) >= 0 && flock(fd, LOCK_SH) != 0)
				diag("cannot lock %s", lock);
		}
		run_all(&fx, "sqlite+postgres+mongo", pg, mongo, nbig);
		if (fd >= 0)
			close(fd);
	}
	fixture_release(&fx);
	return done_testing();
}
