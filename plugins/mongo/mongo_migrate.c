/* SPDX-License-Identifier: MIT */
/*
 * plugins/mongo/mongo_migrate.c: what emhost migrate and schema diff need
 * from MongoDB: the migration lock (a document with an expiry) and the
 * comparison of a collection's indexes with an entity.
 *
 * MongoDB has no session lock that outlives one operation, so the lock is
 * the document {_id: "migrate", owner, expires} in MG_LOCKS: inserting it
 * takes the lock (the unique _id makes one insert win), and a document
 * whose expiry passed may be taken over by one update.  A run that dies
 * holding it blocks others until the expiry, at most MG_LOCK_LEASE_MS; the
 * core renews it before each migration.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mongoc/mongoc.h>

#include <emhost/driver.h>
#include <emhost/migrate.h>

#include "mongo_int.h"

#define MG_LOCK_ID "migrate"
#define MG_LOCK_LEASE_MS (10 * 60 * 1000)

static int64_t mg_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mg_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* matchedCount of an update's reply. */
static int64_t mg_matched(const bson_t *reply)
{
	bson_iter_t it;
	return bson_iter_init_find(&it, reply, "matchedCount") ? bson_iter_as_int64(&it) : 0;
}

/* Set the lock's owner and expiry where filter matches; *matched says whether it did. */
static int mg_lock_update(emh_conn *c, mongoc_collection_t *coll, const bson_t *filter, bool *matched,
			  emh_error *err)
{
	bson_t update = BSON_INITIALIZER, set, reply;
	bson_error_t be;
	int rc = 0;
	bson_append_document_begin(&update, "$set", -1, &set);
	BSON_APPEND_UTF8(&set, "owner", c->migrate_owner);
	BSON_APPEND_DATE_TIME(&set, "expires", mg_now_ms() + MG_LOCK_LEASE_MS);
	bson_append_document_end(&update, &set);
	if (!mongoc_collection_update_one(coll, filter, &update, NULL, &reply, &be))
		rc = mg_fail(c->dc, err, &be, &reply, "migration lock", MG_LOCKS);
	else
		*matched = mg_matched(&reply) > 0;
	bson_destroy(&reply);
	bson_destroy(&update);
	return rc;
}

/* One attempt: insert the lock document, or take over an expired one. */
static int mg_lock_try(emh_conn *c, mongoc_collection_t *coll, bool *got, emh_error *err)
{
	bson_t doc = BSON_INITIALIZER, filter = BSON_INITIALIZER, lt;
	bson_error_t be;
	int rc = 0;
	*got = false;
	BSON_APPEND_UTF8(&doc, "_id", MG_LOCK_ID);
	BSON_APPEND_UTF8(&doc, "owner", c->migrate_owner);
	BSON_APPEND_DATE_TIME(&doc, "expires", mg_now_ms() + MG_LOCK_LEASE_MS);
	if (mongoc_collection_insert_one(coll, &doc, NULL, NULL, &be)) {
		*got = true;
	} else if (!mg_is_dup(&be)) {
		rc = mg_fail(c->dc, err, &be, NULL, "migration lock", MG_LOCKS);
	} else {
		BSON_APPEND_UTF8(&filter, "_id", MG_LOCK_ID);
		bson_append_document_begin(&filter, "expires", -1, &lt);
		BSON_APPEND_DATE_TIME(&lt, "$lt", mg_now_ms());
		bson_append_document_end(&filter, &lt);
		rc = mg_lock_update(c, coll, &filter, got, err);
	}
	bson_destroy(&filter);
	bson_destroy(&doc);
	return rc;
}

/* Until when the lock is held by another run, for the message (0: unknown). */
static int64_t mg_lock_expiry(mongoc_collection_t *coll)
{
	bson_t filter = BSON_INITIALIZER;
	const bson_t *doc;
	bson_iter_t it;
	int64_t until = 0;
	BSON_APPEND_UTF8(&filter, "_id", MG_LOCK_ID);
	mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, &filter, NULL, NULL);
	if (cur && mongoc_cursor_next(cur, &doc) && bson_iter_init_find(&it, doc, "expires") &&
	    BSON_ITER_HOLDS_DATE_TIME(&it))
		until = bson_iter_date_time(&it);
	mongoc_cursor_destroy(cur);
	bson_destroy(&filter);
	return until;
}

int mg_migrate_lock(emh_conn *c, int64_t wait_ms, bool *in_txn, emh_error *err)
{
	*in_txn = false;
	mongoc_collection_t *coll = mongoc_client_get_collection(c->client, c->dc->database, MG_LOCKS);
	if (!coll)
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	int rc = 0;
	if (c->migrate_locked) {
		/* Renew: only while this connection still owns it. */
		bson_t filter = BSON_INITIALIZER;
		bool matched = false;
		BSON_APPEND_UTF8(&filter, "_id", MG_LOCK_ID);
		BSON_APPEND_UTF8(&filter, "owner", c->migrate_owner);
		rc = mg_lock_update(c, coll, &filter, &matched, err);
		bson_destroy(&filter);
		if (!rc && !matched) {
			c->migrate_locked = false;
			rc = emh_error_set(err, EMH_ESTATE,
					   "the migration lock expired (after %d s) and another run took it",
					   MG_LOCK_LEASE_MS / 1000);
		}
		mongoc_collection_destroy(coll);
		return rc;
	}
	bson_oid_t oid;
	bson_oid_init(&oid, NULL);
	bson_oid_to_string(&oid, c->migrate_owner);
	int64_t deadline = mg_mono_ms() + wait_ms;
	for (;;) {
		bool got = false;
		if ((rc = mg_lock_try(c, coll, &got, err)) != 0)
			break;
		if (got) {
			c->migrate_locked = true;
			break;
		}
		if (mg_mono_ms() >= deadline) {
			int64_t until = mg_lock_expiry(coll);
			char when[40] = "?";
			if (until) {
				time_t s = (time_t)(until / 1000);
				struct tm tm;
				gmtime_r(&s, &tm);
				strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", &tm);
			}
			rc = emh_error_set(err, EMH_ETIMEOUT,
					   "another migration run held the database's migration lock (document '%s' in "
					   "'%s', held until %s unless renewed) for %lld ms",
					   MG_LOCK_ID, MG_LOCKS, when, (long long)wait_ms);
			break;
		}
		struct timespec ts = {0, 50 * 1000000L};
		nanosleep(&ts, NULL);
	}
	mongoc_collection_destroy(coll);
	return rc;
}

int mg_migrate_unlock(emh_conn *c, bool commit, emh_error *err)
{
	(void)commit; /* not a transaction */
	if (!c->migrate_locked)
		return 0;
	mongoc_collection_t *coll = mongoc_client_get_collection(c->client, c->dc->database, MG_LOCKS);
	if (!coll)
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	bson_t filter = BSON_INITIALIZER;
	bson_error_t be;
	int rc = 0;
	BSON_APPEND_UTF8(&filter, "_id", MG_LOCK_ID);
	BSON_APPEND_UTF8(&filter, "owner", c->migrate_owner);
	if (!mongoc_collection_delete_one(coll, &filter, NULL, NULL, &be))
		rc = mg_fail(c->dc, err, &be, NULL, "migration unlock", MG_LOCKS);
	else
		c->migrate_locked = false;
	bson_destroy(&filter);
	mongoc_collection_destroy(coll);
	return rc;
}

/* ---- schema diff: the collection's indexes against the entity's ---- */

/* An index as sync creates it, or as the server lists it. */
typedef struct mg_index {
	char name[MG_PATH_MAX + 80];
	char paths[EMH_ENTITY_MAX_FIELDS][MG_PATH_MAX];
	size_t npaths;
	bool unique, sparse, seen;
} mg_index;

/* The indexes mg_sync makes for m, in its order. */
static size_t mg_wanted(const emh_meta *m, mg_index *w, size_t cap)
{
	const emh_entity *e = m->entity;
	size_t n = 0;
	for (size_t i = 0; i < e->nfields && n < cap; i++) {
		const emh_field *f = &e->fields[i];
		if ((int)i == m->pk || !(f->flags & (EMH_F_UNIQUE | EMH_F_INDEXED)))
			continue;
		mg_index *x = &w[n++];
		memset(x, 0, sizeof *x);
		char buf[MG_PATH_MAX];
		snprintf(x->paths[0], sizeof x->paths[0], "%s", mg_path(m, (int)i, true, buf, sizeof buf));
		x->npaths = 1;
		snprintf(x->name, sizeof x->name, "%s_1", x->paths[0]);
		x->unique = f->flags & EMH_F_UNIQUE;
		x->sparse = x->unique && mg_null_absent(f);
	}
	for (size_t k = 0; k < e->nindexes && n < cap; k++) {
		const emh_index *ix = &e->indexes[k];
		mg_index *x = &w[n++];
		memset(x, 0, sizeof *x);
		snprintf(x->name, sizeof x->name, "%s", ix->name);
		x->unique = ix->unique;
		for (const char *const *fn = ix->fields; *fn && x->npaths < EMH_ENTITY_MAX_FIELDS; fn++) {
			int fi = emh_entity_field_index(e, *fn);
			char buf[MG_PATH_MAX];
			if (fi >= 0)
				snprintf(x->paths[x->npaths++], MG_PATH_MAX, "%s", mg_path(m, fi, true, buf, sizeof buf));
		}
	}
	return n;
}

/* The collection's indexes (the _id index aside) into *out; *exists says whether the collection does. */
static int mg_listed(emh_conn *c, const char *table, mg_index **out, size_t *n, bool *exists, emh_error *err)
{
	mongoc_database_t *db = mongoc_client_get_database(c->client, c->dc->database);
	bson_t opts = BSON_INITIALIZER, filter;
	bson_error_t be;
	int rc = 0;
	*out = NULL;
	*n = 0;
	bson_append_document_begin(&opts, "filter", -1, &filter);
	BSON_APPEND_UTF8(&filter, "name", table);
	bson_append_document_end(&opts, &filter);
	char **names = db ? mongoc_database_get_collection_names_with_opts(db, &opts, &be) : NULL;
	bson_destroy(&opts);
	mongoc_database_destroy(db);
	if (!names)
		return db ? mg_fail(c->dc, err, &be, NULL, "listing collections", table)
			  : emh_error_set(err, EMH_ENOMEM, "out of memory");
	*exists = false;
	for (char **p = names; *p; p++)
		*exists = *exists || strcmp(*p, table) == 0;
	bson_strfreev(names);
	if (!*exists)
		return 0;

	mongoc_collection_t *coll = mongoc_client_get_collection(c->client, c->dc->database, table);
	mongoc_cursor_t *cur = coll ? mongoc_collection_find_indexes_with_opts(coll, NULL) : NULL;
	const bson_t *doc;
	size_t cap = 0;
	while (cur && mongoc_cursor_next(cur, &doc)) {
		bson_iter_t it, key;
		const char *name = bson_iter_init_find(&it, doc, "name") && BSON_ITER_HOLDS_UTF8(&it)
					   ? bson_iter_utf8(&it, NULL) : "";
		if (strcmp(name, "_id_") == 0)
			continue;
		if (*n == cap) {
			size_t ncap = cap ? cap * 2 : 8;
			mg_index *v = realloc(*out, ncap * sizeof *v);
			if (!v) {
				rc = emh_error_set(err, EMH_ENOMEM, "out of memory");
				break;
			}
			*out = v;
			cap = ncap;
		}
		mg_index *x = &(*out)[(*n)++];
		memset(x, 0, sizeof *x);
		snprintf(x->name, sizeof x->name, "%s", name);
		x->unique = bson_iter_init_find(&it, doc, "unique") && bson_iter_as_bool(&it);
		x->sparse = bson_iter_init_find(&it, doc, "sparse") && bson_iter_as_bool(&it);
		if (bson_iter_init_find(&it, doc, "key") && BSON_ITER_HOLDS_DOCUMENT(&it) && bson_iter_recurse(&it, &key))
			while (bson_iter_next(&key) && x->npaths < EMH_ENTITY_MAX_FIELDS)
				snprintf(x->paths[x->npaths++], MG_PATH_MAX, "%s", bson_iter_key(&key));
	}
	if (!rc && (!cur || mongoc_cursor_error(cur, &be)))
		rc = cur ? mg_fail(c->dc, err, &be, NULL, "listing indexes", table)
			 : emh_error_set(err, EMH_ENOMEM, "out of memory");
	mongoc_cursor_destroy(cur);
	mongoc_collection_destroy(coll);
	return rc;
}

static bool mg_index_same(const mg_index *a, const mg_index *b)
{
	if (a->unique != b->unique || a->npaths != b->npaths)
		return false;
	for (size_t i = 0; i < a->npaths; i++)
		if (strcmp(a->paths[i], b->paths[i]) != 0)
			return false;
	return true;
}

/* Add a change whose command is doc, as relaxed extended JSON. */
static int mg_add(emh_schema_diff *out, int kind, const char *table, const char *what, const bson_t *doc,
		  const char *note, emh_error *err)
{
	char *json = bson_as_relaxed_extended_json(doc, NULL);
	int rc = json ? emh_schema_diff_add(out, kind, table, what, json, note) : EMH_ENOMEM;
	bson_free(json);
	return rc ? emh_error_set(err, EMH_ENOMEM, "out of memory") : 0;
}

static int mg_add_create_index(emh_schema_diff *out, const char *table, const mg_index *x, emh_error *err)
{
	bson_t cmd = BSON_INITIALIZER, arr, idx, key;
	BSON_APPEND_UTF8(&cmd, "createIndexes", table);
	bson_append_array_begin(&cmd, "indexes", -1, &arr);
	bson_append_document_begin(&arr, "0", -1, &idx);
	bson_append_document_begin(&idx, "key", -1, &key);
	for (size_t i = 0; i < x->npaths; i++)
		bson_append_int32(&key, x->paths[i], -1, 1);
	bson_append_document_end(&idx, &key);
	BSON_APPEND_UTF8(&idx, "name", x->name);
	if (x->unique)
		BSON_APPEND_BOOL(&idx, "unique", true);
	if (x->sparse)
		BSON_APPEND_BOOL(&idx, "sparse", true);
	bson_append_document_end(&arr, &idx);
	bson_append_array_end(&cmd, &arr);
	int rc = mg_add(out, EMH_CHANGE_CREATE_INDEX, table, x->name, &cmd, NULL, err);
	bson_destroy(&cmd);
	return rc;
}

int mg_diff(emh_conn *c, const emh_meta *m, unsigned flags, emh_schema_diff *out, emh_error *err)
{
	(void)flags; /* documents have no columns to drop */
	const char *table = m->entity->table;
	size_t cap = m->entity->nfields + m->entity->nindexes;
	mg_index *want = calloc(cap ? cap : 1, sizeof *want), *have = NULL;
	size_t nwant, nhave = 0;
	bool exists = false;
	int rc;
	if (!want)
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	nwant = mg_wanted(m, want, cap);
	if ((rc = mg_listed(c, table, &have, &nhave, &exists, err)) != 0)
		goto out;
	if (!exists) {
		bson_t cmd = BSON_INITIALIZER;
		BSON_APPEND_UTF8(&cmd, "create", table);
		rc = mg_add(out, EMH_CHANGE_CREATE_TABLE, table, NULL, &cmd, NULL, err);
		bson_destroy(&cmd);
	}
	for (size_t i = 0; !rc && i < nwant; i++)
		for (size_t k = 0; k < nhave && !want[i].seen; k++)
			if (!have[k].seen && mg_index_same(&want[i], &have[k]))
				want[i].seen = have[k].seen = true;
	for (size_t k = 0; !rc && k < nhave; k++) {
		if (have[k].seen)
			continue;
		bson_t cmd = BSON_INITIALIZER;
		char note[200];
		BSON_APPEND_UTF8(&cmd, "dropIndexes", table);
		BSON_APPEND_UTF8(&cmd, "index", have[k].name);
		snprintf(note, sizeof note, "no entity declares index '%s'", have[k].name);
		rc = mg_add(out, EMH_CHANGE_DROP_INDEX, table, have[k].name, &cmd, note, err);
		bson_destroy(&cmd);
	}
	for (size_t i = 0; !rc && i < nwant; i++)
		if (!want[i].seen)
			rc = mg_add_create_index(out, table, &want[i], err);
out:
	free(want);
	free(have);
	return rc;
}
