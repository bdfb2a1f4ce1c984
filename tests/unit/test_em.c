/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/test_em.c: entity-manager corner cases (the conformance suite
 * covers the common paths on every driver).  On a real SQLite file:
 * rollback after remove, members re-pointed at equal content, a commit that
 * fails inside the callback form; loaded objects of every struct size the
 * load path zeroes and copies by fixed-size stores (16 to 64 bytes, and
 * larger).  On memdoc (tests/fixtures/memdoc.c, a
 * document driver loaded as a plugin): the document-driver contract as the
 * core keeps it -- upsert through the driver's member, find and count with
 * no query, removing a row that is already gone.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <emhost/driver.h> /* EMH_CAP_* */
#include <emhost/emhost.h>

#include "../tap.h"

typedef struct item {
	int64_t id;
	const char *name;
} item;
static const emh_field item_fields[] = {
	EMH_FIELD(item, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(item, name, EMH_T_TEXT, 0),
};
static const emh_entity item_entity = EMH_ENTITY(item, "items", item_fields);

/* An int32 key set by the caller. */
typedef struct small {
	int32_t id;
	const char *name;
} small;
static const emh_field small_fields[] = {
	EMH_FIELD(small, id, EMH_T_INT32, EMH_F_PK),
	EMH_FIELD_LEN(small, name, EMH_T_TEXT, 0, 8),
};
static const emh_entity small_entity = EMH_ENTITY(small, "smalls", small_fields);

/* A nullable scalar. */
typedef struct aged {
	int64_t id;
	int64_t age;
} aged;
static const emh_field aged_fields[] = {
	EMH_FIELD(aged, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(aged, age, EMH_T_INT64, EMH_F_NULLABLE),
};
static const emh_entity aged_entity = EMH_ENTITY(aged, "ageds", aged_fields);

static int commit_itself(emh_em *em, void *ud, emh_error *err)
{
	(void)ud;
	return emh_em_commit(em, err);
}

static int insert_orphan(emh_em *em, void *ud, emh_error *err)
{
	(void)ud;
	/* violates a deferred foreign key: only COMMIT fails */
	return emh_em_execute(em, "INSERT INTO child (parent) VALUES (12345)", err);
}

/* A callback that flushes an item at its level, opens a savepoint and
 * releases it behind the fork's back, so that the rollback of that inner
 * level (ROLLBACK TO a savepoint that is gone) fails, then fails itself. */
static int inner_rollback_fails(emh_em *em, void *ud, emh_error *err)
{
	emh_repo *r;
	item *it;
	int rc;
	if ((rc = emh_em_repo(em, &item_entity, &r, err)) != 0 || (rc = emh_repo_new(r, (void **)&it, err)) != 0)
		return rc;
	it->name = "level 1";
	*(item **)ud = it;
	if ((rc = emh_em_flush(em, err)) != 0 || (rc = emh_em_begin(em, err)) != 0)
		return rc;
	char sql[64];
	snprintf(sql, sizeof sql, "RELEASE SAVEPOINT emh_sp_%d", emh_em_tx_depth(em));
	if ((rc = emh_em_execute(em, sql, err)) != 0)
		return rc;
	return emh_error_set(err, EMH_EINVAL, "test: the callback fails");
}

/* The default context's counts (emh_host_contexts). */
static emh_context_info default_info(emh_host *h)
{
	emh_context_info *v, out = {0};
	size_t n;
	emh_error err;
	if (emh_host_contexts(h, &v, &n, &err))
		bail("emh_host_contexts: %s", err.message);
	for (size_t i = 0; i < n; i++)
		if (strcmp(v[i].name, "default") == 0) {
			out = v[i];
			out.name = out.driver = NULL; /* freed below */
			out.settings = NULL;
			out.nsettings = 0;
		}
	emh_context_info_free(v, n);
	return out;
}

/* A host on a SQLite file in a new temporary directory (dir, 64 bytes; removed by sqlite_host_free). */
static emh_host *sqlite_host(const char *b, char *dir)
{
	char plugdir[512], url[128];
	snprintf(plugdir, sizeof plugdir, "%s/plugins-build", b);
	snprintf(dir, 64, "/tmp/emh-em-XXXXXX");
	if (!mkdtemp(dir))
		bail("mkdtemp");
	snprintf(url, sizeof url, "EMH_CONTEXT_DEFAULT_URL=sqlite://%s/em.db", dir);
	const char *env[] = {url, "EMH_CONTEXT_DEFAULT_SCHEMA=sync", NULL};
	emh_host_opts o = {.plugin_dir = plugdir, .envp = env};
	emh_host *h;
	emh_error err;
	if (emh_host_new(&o, &h, &err))
		bail("host: %s", err.message);
	return h;
}

static void sqlite_host_free(emh_host *h, const char *dir)
{
	emh_host_free(h);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		diag("could not remove %s", dir);
}

static void t_sqlite_bookkeeping(const char *b)
{
	diag("bookkeeping on sqlite");
	char dir[64];
	emh_host *h = sqlite_host(b, dir);
	emh_error err;
	if (emh_host_register_entity(h, NULL, &item_entity, &err) ||
	    emh_host_register_entity(h, NULL, &small_entity, &err) ||
	    emh_host_register_entity(h, NULL, &aged_entity, &err))
		bail("host: %s", err.message);
	emh_em *em;
	emh_repo *r;
	item *it, *got;
	int rc;

	/* insert in a transaction, remove it (not flushed), roll back */
	emh_host_fork(h, NULL, &em, &err);
	emh_em_repo(em, &item_entity, &r, &err);
	is_int(emh_em_begin(em, &err), 0, "begin");
	emh_repo_new(r, (void **)&it, &err);
	it->name = "a";
	is_int(emh_em_flush(em, &err), 0, "insert flushed inside the transaction");
	int64_t id = it->id;
	is_int(emh_em_remove(em, it, &err), 0, "then scheduled for removal");
	is_int(emh_em_rollback(em, &err), 0, "rollback");
	is_int(it->id, 0, "the generated key is reset");
	is_int(emh_repo_get(r, emh_v_int64(id), (void **)&got, &err), EMH_ENOTFOUND,
	       "the rolled-back row is neither in the database nor in the identity map");
	is_int(emh_em_flush(em, &err), 0, "a flush after the rollback");
	is_int(emh_repo_get(r, emh_v_int64(id), (void **)&got, &err), EMH_ENOTFOUND,
	       "does not insert the object the caller had removed");
	item *n2;
	emh_repo_new(r, (void **)&n2, &err);
	n2->name = "b";
	is_int(emh_em_flush(em, &err), 0, "a new object reusing the freed key");
	ok(emh_repo_get(r, emh_v_int64(n2->id), (void **)&got, &err) == 0 && got == n2,
	   "is found by its key (identity map intact)");
	int64_t n2_id = n2->id; /* n2 lives in the fork's arena: read it before the close */
	emh_em_close(em);

	/* insert, delete, both in one level, rolled back */
	emh_host_fork(h, NULL, &em, &err);
	emh_em_repo(em, &item_entity, &r, &err);
	emh_em_begin(em, &err);
	emh_repo_new(r, (void **)&it, &err);
	it->name = "c";
	emh_em_flush(em, &err);
	emh_em_remove(em, it, &err);
	is_int(emh_em_flush(em, &err), 0, "insert and delete flushed in one transaction");
	int64_t cid = it->id;
	emh_em_rollback(em, &err);
	is_int(it->id, 0, "rolled back: the key is reset");
	is_int(emh_em_flush(em, &err), 0, "flushed again outside the transaction");
	is_int(it->id, 0, "the caller's removal stands: the object is not inserted");
	int64_t cnt = -1;
	emh_repo_count(r, NULL, &cnt, &err);
	is_int(cnt, 1, "only the earlier row exists");
	ok(emh_repo_get(r, emh_v_int64(cid), (void **)&got, &err) != 0 || got != it,
	   "the object is not found under its rolled-back key");
	emh_em_close(em);

	/* A flushed delete rolled back is a pending removal again, as it was
	 * before the flush (em.h): the next flush deletes the row, and
	 * emh_em_refresh cancels the removal. */
	item *ra, *rb;
	emh_host_fork(h, NULL, &em, &err);
	emh_em_repo(em, &item_entity, &r, &err);
	emh_repo_new(r, (void **)&ra, &err);
	ra->name = "removed, rolled back, flushed";
	emh_repo_new(r, (void **)&rb, &err);
	rb->name = "removed, rolled back, refreshed";
	if (emh_em_flush(em, &err))
		bail("insert: %s", err.message);
	int64_t ra_id = ra->id, rb_id = rb->id;
	emh_em_close(em);
	emh_host_fork(h, NULL, &em, &err);
	emh_em_repo(em, &item_entity, &r, &err);
	if (emh_repo_get(r, emh_v_int64(ra_id), (void **)&ra, &err) ||
	    emh_repo_get(r, emh_v_int64(rb_id), (void **)&rb, &err))
		bail("get: %s", err.message);
	emh_em_begin(em, &err);
	emh_em_remove(em, ra, &err);
	emh_em_remove(em, rb, &err);
	is_int(emh_em_flush(em, &err), 0, "two deletes flushed inside a transaction");
	is_int(emh_em_rollback(em, &err), 0, "rolled back");
	is_int(emh_repo_get(r, emh_v_int64(ra_id), (void **)&got, &err), EMH_ENOTFOUND,
	       "a rolled-back delete is a pending removal again: get leaves it out");
	is_int(emh_em_refresh(em, rb, &err), 0, "emh_em_refresh of the other one cancels its removal");
	ok(emh_repo_get(r, emh_v_int64(rb_id), (void **)&got, &err) == 0 && got == rb, "... so get finds it again");
	is_int(emh_em_flush(em, &err), 0, "the next flush");
	emh_em_close(em);
	emh_host_fork(h, NULL, &em, &err);
	emh_em_repo(em, &item_entity, &r, &err);
	is_int(emh_repo_get(r, emh_v_int64(ra_id), (void **)&got, &err), EMH_ENOTFOUND,
	       "deleted the row of the pending removal");
	is_int(emh_repo_get(r, emh_v_int64(rb_id), (void **)&got, &err), 0, "and kept the refreshed one's");
	emh_em_close(em);

	/* A value written into the member of a field that is NULL (loaded
	 * so, or set so) is refused by the flush, not silently left out: the
	 * NULL flag hid the write from the comparison with the snapshot. */
	aged *ag, *ag2;
	emh_host_fork(h, NULL, &em, &err);
	emh_em_repo(em, &aged_entity, &r, &err);
	emh_repo_new(r, (void **)&ag, &err);
	emh_em_set_null(em, ag, "age", true, &err);
	emh_repo_new(r, (void **)&ag2, &err);
	ag2->age = 5;
	emh_em_set_null(em, ag2, "age", true, &err);
	is_int(emh_em_flush(em, &err), 0, "NULL ages stored (one set NULL after a value: the member is zeroed)");
	ok(ag2->age == 0 && emh_em_is_null(em, ag2, "age"), "emh_em_set_null(true) zeroed the member");
	int64_t ag_id = ag->id;
	emh_em_close(em);
	emh_host_fork(h, NULL, &em, &err);
	emh_em_repo(em, &aged_entity, &r, &err);
	if (emh_repo_get(r, emh_v_int64(ag_id), (void **)&ag, &err))
		bail("get aged: %s", err.message);
	ag->age = 30;
	rc = emh_em_flush(em, &err);
	is_int(rc, EMH_EINVAL, "a value written over a loaded NULL is refused at flush");
	like_str(err.message, "emh_em_set_null(obj, \"age\", false)", "saying what to call");
	emh_em_set_null(em, ag, "age", false, &err);
	is_int(emh_em_flush(em, &err), 0, "after emh_em_set_null(false) it flushes");
	emh_repo_new(r, (void **)&ag2, &err);
	emh_em_set_null(em, ag2, "age", true, &err);
	ag2->age = 7;
	is_int(emh_em_flush(em, &err), EMH_EINVAL, "a new object: a value written after emh_em_set_null(true) too");
	emh_em_remove(em, ag2, &err);
	emh_em_close(em);
	emh_host_fork(h, NULL, &em, &err);
	emh_em_repo(em, &aged_entity, &r, &err);
	if (emh_repo_get(r, emh_v_int64(ag_id), (void **)&ag, &err))
		bail("get aged: %s", err.message);
	ok(!emh_em_is_null(em, ag, "age") && ag->age == 30, "the row holds 30 (NULL %d, %lld)",
	   emh_em_is_null(em, ag, "age"), (long long)ag->age);
	emh_em_close(em);

	/* a member pointed at other memory with equal content */
	emh_host_fork(h, NULL, &em, &err);
	emh_em_repo(em, &item_entity, &r, &err);
	if (emh_repo_get(r, emh_v_int64(n2_id), (void **)&got, &err))
		bail("get item %lld: %s", (long long)n2_id, err.message);
	char *mine = strdup(got->name);
	got->name = mine;
	is_int(emh_em_flush(em, &err), 0, "flush with an equal but re-pointed text member");
	ok(got->name != mine, "the member points at the fork's copy afterwards");
	free(mine);
	is_int(emh_em_flush(em, &err), 0, "so the caller's buffer may be freed (no read of it: ASan/valgrind)");
	emh_em_close(em);

	/* an int32 key asked for with an int64 value outside int32 */
	emh_host_fork(h, NULL, &em, &err);
	small *sm = NULL, *sg = NULL;
	if (emh_em_repo(em, &small_entity, &r, &err) || emh_repo_new(r, (void **)&sm, &err))
		bail("small: %s", err.message);
	*sm = (small){.id = 1, .name = "one"};
	is_int(emh_em_flush(em, &err), 0, "a row with int32 key 1");
	emh_em_close(em);
	emh_host_fork(h, NULL, &em, &err);
	emh_em_repo(em, &small_entity, &r, &err);
	rc = emh_repo_get(r, emh_v_int64(INT64_C(4294967297)), (void **)&sg, &err);
	ok(rc == EMH_EINVAL && sg == NULL,
	   "get of an int32 key with 2^32 + 1 is EMH_EINVAL, not the row with key 1 (%s)", emh_status_name(rc));
	like_str(err.message, "does not fit int32", "saying why");
	is_int(emh_repo_get(r, emh_v_int64(1), (void **)&sg, &err), 0, "an int64 value inside int32 finds its row");

	/* max_len holds for a set-based update as for a flush (entity.h) */
	emh_query *q = NULL;
	emh_sets *s = NULL;
	if (emh_repo_query(r, &q, &err) || emh_repo_sets(r, &s, &err))
		bail("small: %s", err.message);
	emh_q_where(q, emh_q_eq(q, "id", emh_v_int32(1)));
	emh_sets_value(s, "name", emh_v_text("nine char"));
	int64_t affected = -1;
	rc = emh_repo_update_where(r, q, s, &affected, &err);
	is_int(rc, EMH_EINVAL, "update_where of a value longer than the field's max_len is EMH_EINVAL");
	like_str(err.message, "max_len of 8", "naming the limit");
	ok(affected == 0 && emh_em_refresh(em, sg, &err) == 0 && strcmp(sg->name, "one") == 0,
	   "and writes nothing");
	emh_em_close(em);

	/* commit failing inside emh_em_transaction */
	emh_host_fork(h, NULL, &em, &err);
	emh_em_execute(em, "CREATE TABLE parent (id INTEGER PRIMARY KEY);"
			   "CREATE TABLE child (parent INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)",
		       &err);
	rc = emh_em_transaction(em, insert_orphan, NULL, &err);
	ok(rc != 0, "a commit that fails is reported by the callback form (%s)", emh_status_name(rc));
	is_int(emh_em_tx_depth(em), 0, "and the level is rolled back, not left open");
	is_int(emh_em_execute(em, "INSERT INTO parent (id) VALUES (1)", &err), 0, "the fork works on");
	rc = emh_em_transaction(em, commit_itself, NULL, &err);
	is_int(rc, EMH_ESTATE, "a callback that ends the level it was given is EMH_ESTATE");
	like_str(err.message, "closed 1 level(s) it did not open", "saying so (not '-1 level(s) open')");
	emh_em_close(em);

	/* A failed rollback of an inner level still rolls back the levels
	 * outside it: the callback form once counted that level twice and
	 * left level 1 open on the connection, its object looking stored. */
	emh_host_fork(h, NULL, &em, &err);
	emh_em_repo(em, &item_entity, &r, &err);
	int64_t before = -1, after = -1;
	emh_repo_count(r, NULL, &before, &err);
	it = NULL;
	rc = emh_em_transaction(em, inner_rollback_fails, &it, &err);
	is_int(rc, EMH_EINVAL, "a callback failing after its inner level's rollback was made to fail: its status");
	is_int(emh_em_tx_depth(em), 0, "every level is closed");
	ok(it && it->id == 0, "the object flushed at level 1 is new again (key %lld)", it ? (long long)it->id : -1LL);
	rc = emh_em_begin(em, &err);
	is_int(rc, 0, "the fork can begin again: level 1 was rolled back on the connection (%s)",
	       rc ? err.message : "ok");
	if (rc == 0)
		emh_em_rollback(em, &err);
	if (it)
		emh_em_remove(em, it, &err); /* new again: not inserted by a later flush */
	emh_em_close(em);
	emh_host_fork(h, NULL, &em, &err);
	emh_em_repo(em, &item_entity, &r, &err);
	emh_repo_count(r, NULL, &after, &err);
	is_int(after, before, "nothing of the transaction was committed");
	emh_em_close(em);

	/* emh_em_close after a nested level's rollback failed: the outer
	 * ROLLBACK still ends the transaction, and the connection goes back to
	 * the pool; it was closed as lost, and every idle connection with it */
	emh_host_fork(h, NULL, &em, &err);
	emh_em_repo(em, &item_entity, &r, &err);
	emh_repo_count(r, NULL, &before, &err);
	item *lost = NULL;
	if (emh_em_begin(em, &err) == 0 && emh_repo_new(r, (void **)&lost, &err) == 0) {
		lost->name = "never committed";
		emh_em_flush(em, &err);
		emh_em_begin(em, &err);
		emh_em_execute(em, "RELEASE SAVEPOINT emh_sp_2", &err); /* the inner rollback will fail */
	}
	emh_context_info ci0 = default_info(h);
	emh_em_close(em);
	emh_context_info ci1 = default_info(h);
	is_int((int)(ci1.discarded - ci0.discarded), 0, "close after a failed nested rollback: no connection discarded");
	is_int((int)ci1.idle, (int)ci0.idle + 1, "the fork's connection is idle in the pool again");
	emh_host_fork(h, NULL, &em, &err);
	emh_em_repo(em, &item_entity, &r, &err);
	emh_repo_count(r, NULL, &after, &err);
	is_int(after, before, "and nothing of the transaction was committed");
	rc = emh_em_begin(em, &err);
	is_int(rc, 0, "a transaction begins on it again (%s)", rc ? err.message : "ok");
	emh_em_rollback(em, &err);
	emh_em_close(em);

	sqlite_host_free(h, dir);
}

/*
 * Structs the load path zeroes and snapshots with fixed-size stores: 12, 24,
 * 40 and 56 bytes (rounded to 16, 32, 48, 64) and 80 (the general case),
 * with padding between members.  Every non-key field is nullable.
 */
typedef struct sz16 {
	int32_t id;
	bool b;
	int32_t n;
} sz16;
typedef struct sz32 {
	int64_t id;
	const char *s;
	int32_t n;
	bool b;
} sz32;
typedef struct sz48 {
	int64_t id;
	const char *s;
	double d;
	int32_t n;
	bool b;
	emh_time t;
} sz48;
typedef struct sz64 {
	int64_t id;
	const char *s;
	const char *s2;
	double d;
	int32_t n;
	bool b;
	emh_time t;
	int64_t x;
} sz64;
typedef struct sz80 {
	int64_t id;
	bool b;
	const char *s;
	bool b2;
	double d;
	int32_t n;
	const char *s2;
	int64_t x;
	emh_time t;
	bool b3;
} sz80;
#define NUL EMH_F_NULLABLE
static const emh_field sz16_fields[] = {
	EMH_FIELD(sz16, id, EMH_T_INT32, EMH_F_PK), EMH_FIELD(sz16, b, EMH_T_BOOL, NUL),
	EMH_FIELD(sz16, n, EMH_T_INT32, NUL),
};
static const emh_field sz32_fields[] = {
	EMH_FIELD(sz32, id, EMH_T_INT64, EMH_F_PK), EMH_FIELD(sz32, s, EMH_T_TEXT, NUL),
	EMH_FIELD(sz32, n, EMH_T_INT32, NUL), EMH_FIELD(sz32, b, EMH_T_BOOL, NUL),
};
static const emh_field sz48_fields[] = {
	EMH_FIELD(sz48, id, EMH_T_INT64, EMH_F_PK), EMH_FIELD(sz48, s, EMH_T_TEXT, NUL),
	EMH_FIELD(sz48, d, EMH_T_DOUBLE, NUL),      EMH_FIELD(sz48, n, EMH_T_INT32, NUL),
	EMH_FIELD(sz48, b, EMH_T_BOOL, NUL),        EMH_FIELD(sz48, t, EMH_T_TIMESTAMP, NUL),
};
static const emh_field sz64_fields[] = {
	EMH_FIELD(sz64, id, EMH_T_INT64, EMH_F_PK), EMH_FIELD(sz64, s, EMH_T_TEXT, NUL),
	EMH_FIELD(sz64, s2, EMH_T_JSON, NUL),       EMH_FIELD(sz64, d, EMH_T_DOUBLE, NUL),
	EMH_FIELD(sz64, n, EMH_T_INT32, NUL),       EMH_FIELD(sz64, b, EMH_T_BOOL, NUL),
	EMH_FIELD(sz64, t, EMH_T_TIMESTAMP, NUL),   EMH_FIELD(sz64, x, EMH_T_INT64, NUL),
};
static const emh_field sz80_fields[] = {
	EMH_FIELD(sz80, id, EMH_T_INT64, EMH_F_PK), EMH_FIELD(sz80, b, EMH_T_BOOL, NUL),
	EMH_FIELD(sz80, s, EMH_T_TEXT, NUL),        EMH_FIELD(sz80, b2, EMH_T_BOOL, NUL),
	EMH_FIELD(sz80, d, EMH_T_DOUBLE, NUL),      EMH_FIELD(sz80, n, EMH_T_INT32, NUL),
	EMH_FIELD(sz80, s2, EMH_T_TEXT, NUL),       EMH_FIELD(sz80, x, EMH_T_INT64, NUL),
	EMH_FIELD(sz80, t, EMH_T_TIMESTAMP, NUL),   EMH_FIELD(sz80, b3, EMH_T_BOOL, NUL),
};
#undef NUL
static const emh_entity sized_entities[] = {
	EMH_ENTITY(sz16, "sz16", sz16_fields), EMH_ENTITY(sz32, "sz32", sz32_fields),
	EMH_ENTITY(sz48, "sz48", sz48_fields), EMH_ENTITY(sz64, "sz64", sz64_fields),
	EMH_ENTITY(sz80, "sz80", sz80_fields),
};

/* The text of field i holding v: 8 to 23 bytes as i grows (json 6), each way the arena copies a short text. */
static void sized_text(char *buf, size_t cap, const emh_field *f, size_t i, int64_t v)
{
	if (f->type == EMH_T_JSON)
		snprintf(buf, cap, "[%lld]", (long long)v);
	else
		snprintf(buf, cap, "t%lld%.*s", (long long)v, (int)(3 * i), "-abcdefghijklmnopqrstuvwxyz0123456789");
}

/* Field i's value in row r (1: every field set; 2: every nullable one NULL, the key aside). */
static void sized_set(emh_em *em, const emh_entity *e, void *obj, int r)
{
	char txt[64];
	for (size_t i = 0; i < e->nfields; i++) {
		const emh_field *f = &e->fields[i];
		char *p = (char *)obj + f->offset;
		int64_t v = (f->flags & EMH_F_PK) ? r : r * 1000 + (int64_t)i + 1;
		if (r == 2 && !(f->flags & EMH_F_PK)) {
			if (f->type == EMH_T_TEXT || f->type == EMH_T_JSON)
				*(char **)p = NULL;
			else
				emh_em_set_null(em, obj, f->name, true, NULL);
			continue;
		}
		switch (f->type) {
		case EMH_T_BOOL: *(bool *)p = true; break;
		case EMH_T_INT32: *(int32_t *)p = (int32_t)v; break;
		case EMH_T_INT64:
		case EMH_T_TIMESTAMP: *(int64_t *)p = v; break;
		case EMH_T_DOUBLE: *(double *)p = (double)v + 0.25; break;
		default:
			sized_text(txt, sizeof txt, f, i, v);
			*(char **)p = emh_em_strdup(em, txt);
		}
	}
}

/* Does obj hold row r as sized_set wrote it (n: what field "n" holds instead, unless 0)?  Says what differs. */
static bool sized_check(emh_em *em, const emh_entity *e, const void *obj, int r, int32_t n, const char *label)
{
	char txt[64];
	bool good = true;
	for (size_t i = 0; i < e->nfields; i++) {
		const emh_field *f = &e->fields[i];
		const char *p = (const char *)obj + f->offset;
		int64_t v = (f->flags & EMH_F_PK) ? r : r * 1000 + (int64_t)i + 1;
		bool is_n = n && strcmp(f->name, "n") == 0, fine;
		if (r == 2 && !(f->flags & EMH_F_PK) && !is_n) {
			fine = emh_em_is_null(em, obj, f->name) &&
			       ((f->type != EMH_T_TEXT && f->type != EMH_T_JSON) || *(char *const *)p == NULL);
		} else {
			if (is_n)
				v = n;
			switch (f->type) {
			case EMH_T_BOOL: fine = *(const bool *)p == true; break;
			case EMH_T_INT32: fine = *(const int32_t *)p == (int32_t)v; break;
			case EMH_T_INT64:
			case EMH_T_TIMESTAMP: fine = *(const int64_t *)p == v; break;
			case EMH_T_DOUBLE: fine = *(const double *)p == (double)v + 0.25; break;
			default:
				sized_text(txt, sizeof txt, f, i, v);
				fine = *(char *const *)p && strcmp(*(char *const *)p, txt) == 0;
			}
			fine = fine && !emh_em_is_null(em, obj, f->name);
		}
		if (!fine) {
			diag("%s: '%s' row %d: field '%s' is not as stored", label, e->name, r, f->name);
			good = false;
		}
	}
	return good;
}

/* Statements the default context has run. */
static uint64_t queries_run(emh_host *h)
{
	emh_context_info *ci = NULL;
	size_t n = 0;
	emh_error err;
	if (emh_host_contexts(h, &ci, &n, &err) || n < 1)
		bail("contexts: %s", err.message);
	uint64_t q = ci[0].queries;
	emh_context_info_free(ci, n);
	return q;
}

static void t_sized_loads(const char *b)
{
	diag("loaded objects of every struct size the load path handles");
	char dir[64], label[96];
	emh_host *h = sqlite_host(b, dir);
	emh_error err;
	for (size_t k = 0; k < sizeof sized_entities / sizeof sized_entities[0]; k++) {
		const emh_entity *e = &sized_entities[k];
		emh_em *em;
		emh_repo *r;
		void *obj[2];
		if (emh_host_register_entity(h, NULL, e, &err) || emh_host_fork(h, NULL, &em, &err) ||
		    emh_em_repo(em, e, &r, &err) || emh_repo_new(r, &obj[0], &err) || emh_repo_new(r, &obj[1], &err))
			bail("%s: %s", e->name, err.message);
		sized_set(em, e, obj[0], 1);
		sized_set(em, e, obj[1], 2);
		is_int(emh_em_flush(em, &err), 0, "%s (%zu bytes): two rows stored", e->name, e->size);
		emh_em_close(em);
		/* found in a read-only fork, then in one with the identity map (which changes them) */
		for (int ro = 1; ro >= 0; ro--) {
			emh_fork_opts fo = {.flags = ro ? EMH_FORK_READONLY : 0};
			emh_query *q;
			emh_list l = {0};
			snprintf(label, sizeof label, "%s, %s fork", e->name, ro ? "read-only" : "read-write");
			if (emh_host_fork_opts(h, NULL, &fo, &em, &err) || emh_em_repo(em, e, &r, &err) ||
			    emh_repo_query(r, &q, &err))
				bail("%s: %s", label, err.message);
			emh_q_order_by(q, "id", false);
			is_int(emh_repo_find(r, q, &l, &err), 0, "%s: find", label);
			ok(l.count == 2 && sized_check(em, e, l.items[0], 1, 0, label) &&
			   sized_check(em, e, l.items[1], 2, 0, label),
			   "%s: every value and NULL as stored", label);
			if (!ro && l.count == 2) {
				/* the snapshot: nothing changed, nothing written */
				uint64_t before = queries_run(h);
				is_int(emh_em_flush(em, &err), 0, "%s: flush of the unchanged rows", label);
				is_int((int)(queries_run(h) - before), 0, "%s: sends no statement", label);
				/* one change is written, the rest stays */
				emh_em_set_null(em, l.items[1], "n", false, NULL);
				*(int32_t *)((char *)l.items[0] + e->fields[emh_entity_field_index(e, "n")].offset) = 77;
				*(int32_t *)((char *)l.items[1] + e->fields[emh_entity_field_index(e, "n")].offset) = 78;
				is_int(emh_em_flush(em, &err), 0, "%s: flush of one changed field per row", label);
			}
			emh_em_close(em);
		}
		void *got[2] = {NULL, NULL};
		snprintf(label, sizeof label, "%s, after the update", e->name);
		emh_host_fork(h, NULL, &em, &err);
		emh_em_repo(em, e, &r, &err);
		emh_value k1 = e->fields[0].type == EMH_T_INT32 ? emh_v_int32(1) : emh_v_int64(1);
		emh_value k2 = e->fields[0].type == EMH_T_INT32 ? emh_v_int32(2) : emh_v_int64(2);
		ok(emh_repo_get(r, k1, &got[0], &err) == 0 && emh_repo_get(r, k2, &got[1], &err) == 0 &&
		   sized_check(em, e, got[0], 1, 77, label) && sized_check(em, e, got[1], 2, 78, label),
		   "%s: the changed field written, every other as it was", label);
		emh_em_close(em);
	}
	sqlite_host_free(h, dir);
}

/* A natural (text) key, for upsert. */
typedef struct kv {
	const char *k;
	const char *v;
	int32_t n;
} kv;
static const emh_field kv_fields[] = {
	EMH_FIELD(kv, k, EMH_T_TEXT, EMH_F_PK),
	EMH_FIELD(kv, v, EMH_T_TEXT, EMH_F_UNIQUE),
	EMH_FIELD(kv, n, EMH_T_INT32, 0),
};
static const emh_entity kv_entity = EMH_ENTITY(kv, "kv", kv_fields);

static int kv_put(emh_em *em, const char *k, const char *v, int32_t n, emh_error *err)
{
	emh_repo *r;
	kv *x;
	int rc = emh_em_repo(em, &kv_entity, &r, err);
	if (rc == 0 && (rc = emh_repo_new(r, (void **)&x, err)) == 0) {
		*x = (kv){.k = k, .v = v, .n = n};
		rc = emh_repo_upsert(r, x, err);
	}
	return rc;
}

static void t_document(const char *b)
{
	diag("the document-driver contract on memdoc");
	char dir[64], src[512], cmd[1200];
	snprintf(dir, sizeof dir, "/tmp/emh-em-doc-XXXXXX");
	if (!mkdtemp(dir))
		bail("mkdtemp");
	snprintf(src, sizeof src, "%s/tests/fixtures/.libs/memdoc.so", b);
	snprintf(cmd, sizeof cmd, "cp '%s' '%s/memdoc.so' && chmod 755 '%s' '%s/memdoc.so'", src, dir, dir, dir);
	if (system(cmd) != 0)
		bail("cannot copy %s", src);
	const char *env[] = {"EMH_CONTEXT_DEFAULT_DRIVER=memdoc", "EMH_CONTEXT_DEFAULT_SCHEMA=sync", NULL};
	emh_host_opts o = {.plugin_dir = dir, .envp = env};
	emh_host *h;
	emh_error err;
	if (emh_host_new(&o, &h, &err) || emh_host_register_entity(h, NULL, &item_entity, &err) ||
	    emh_host_register_entity(h, NULL, &kv_entity, &err))
		bail("memdoc host: %s", err.message);
	emh_em *em, *other;
	emh_repo *r, *ro;
	uint64_t caps = 0;
	if (emh_host_fork(h, NULL, &em, &err) || emh_em_caps(em, &caps, &err))
		bail("fork: %s", err.message);
	ok(caps & EMH_CAP_UPSERT, "memdoc advertises upsert (and has the member, or the loader would refuse it)");

	/* upsert reaches the document driver's member */
	is_int(kv_put(em, "a", "one", 1, &err), 0, "upsert of a new key inserts it through the driver's upsert");
	emh_em_close(em);
	emh_host_fork(h, NULL, &em, &err);
	is_int(kv_put(em, "a", "two", 2, &err), 0, "upsert of an existing key overwrites it");
	emh_em_close(em);
	emh_host_fork(h, NULL, &em, &err);
	kv *got = NULL;
	if (emh_em_repo(em, &kv_entity, &r, &err) == 0 && emh_repo_get(r, emh_v_text("a"), (void **)&got, &err) == 0)
		ok(strcmp(got->v, "two") == 0 && got->n == 2, "the row holds the upserted values");
	else
		ok(0, "reload the upserted row: %s", err.message);
	is_int(kv_put(em, "b", "two", 3, &err), EMH_ECONFLICT, "an upsert breaking a unique field: EMH_ECONFLICT");
	like_str(err.message, "context 'default': ", "naming the context");

	/* find and count with no query: every row */
	emh_list l = {0};
	int64_t n = -1;
	is_int(emh_repo_find(r, NULL, &l, &err), 0, "find with no query");
	is_int((int)l.count, 1, "returns every row");
	is_int(emh_repo_count(r, NULL, &n, &err), 0, "count with no query");
	is_int((int)n, 1, "counts every row");
	emh_em_close(em);

	/* removing a row another fork removed first */
	item *it = NULL, *same = NULL;
	emh_host_fork(h, NULL, &em, &err);
	emh_host_fork(h, NULL, &other, &err);
	if (emh_em_repo(em, &item_entity, &r, &err) || emh_em_repo(other, &item_entity, &ro, &err) ||
	    emh_repo_new(r, (void **)&it, &err))
		bail("repo: %s", err.message);
	it->name = "gone";
	is_int(emh_em_flush(em, &err), 0, "insert on memdoc");
	ok(it->id > 0, "the generated key is written back (%lld)", (long long)it->id);
	is_int(emh_repo_get(ro, emh_v_int64(it->id), (void **)&same, &err), 0, "another fork loads it");
	is_int(same ? emh_repo_remove(ro, same, &err) : -1, 0, "and removes it");
	is_int(emh_repo_remove(r, it, &err), 0, "removing the row that is already gone succeeds, as SQL's DELETE does");
	emh_em_close(other);
	emh_em_close(em);

	emh_host_free(h);
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		diag("could not remove %s", dir);
}

int main(void)
{
	const char *b = getenv("EMH_BUILDDIR");
	if (!b)
		bail("EMH_BUILDDIR is not set (run through make check)");
	t_sqlite_bookkeeping(b);
	t_sized_loads(b);
	t_document(b);
	return done_testing();
}
