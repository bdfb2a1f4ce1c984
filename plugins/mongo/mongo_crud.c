/* SPDX-License-Identifier: MIT */
/*
 * plugins/mongo/mongo_crud.c: the entity operations of a document driver
 * (insert, upsert, update, remove, find, count) and generated keys.
 */
#include "config.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <mongoc/mongoc.h>

#include <emhost/driver.h>

#include "mongo_int.h"

#define MG_KEY_RETRIES 16

static int mg_reply_count(const bson_t *reply, const char *key, int64_t *out)
{
	bson_iter_t it;
	if (bson_iter_init_find(&it, reply, key) && BSON_ITER_HOLDS_NUMBER(&it)) {
		*out = bson_iter_as_int64(&it);
		return 0;
	}
	return -1;
}

/* The collection of the key counters on this connection. */
static int mg_counters_get(emh_conn *c, emh_error *err)
{
	if (!c->counters)
		c->counters = mongoc_client_get_collection(c->client, c->dc->database, MG_COUNTERS);
	return c->counters ? 0 : emh_error_set(err, EMH_ENOMEM, "out of memory");
}

/*
 * Next generated key of collection table: an atomic findAndModify {$inc}
 * with upsert on its counter document.  Never inside the transaction (no
 * session), so concurrent transactions do not conflict on the counter; a
 * rolled back insert leaves a gap, as an SQL sequence does.
 */
static int mg_next_id(emh_conn *c, const char *table, int64_t *out, emh_error *err)
{
	mongoc_find_and_modify_opts_t *fm;
	bson_t query = BSON_INITIALIZER, update = BSON_INITIALIZER, inc, reply;
	bson_error_t e;
	bson_iter_t it, val;
	int rc;

	if ((rc = mg_counters_get(c, err)))
		return rc;
	fm = mongoc_find_and_modify_opts_new();
	if (!fm)
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	BSON_APPEND_UTF8(&query, "_id", table);
	BSON_APPEND_DOCUMENT_BEGIN(&update, "$inc", &inc);
	BSON_APPEND_INT64(&inc, "seq", 1);
	bson_append_document_end(&update, &inc);
	mongoc_find_and_modify_opts_set_update(fm, &update);
	mongoc_find_and_modify_opts_set_flags(fm, MONGOC_FIND_AND_MODIFY_UPSERT | MONGOC_FIND_AND_MODIFY_RETURN_NEW);
	for (int attempt = 0;; attempt++) {
		if (mongoc_collection_find_and_modify_with_opts(c->counters, &query, fm, &reply, &e))
			break;
		/* Two first upserts of the same counter race on its _id: retry. */
		if (mg_is_dup(&e) && attempt < 3) {
			bson_destroy(&reply);
			continue;
		}
		rc = mg_fail(c, err, &e, &reply, "key generation", MG_COUNTERS);
		bson_destroy(&reply);
		goto out;
	}
	if (bson_iter_init_find(&it, &reply, "value") && BSON_ITER_HOLDS_DOCUMENT(&it) &&
	    bson_iter_recurse(&it, &val) && bson_iter_find(&val, "seq") && BSON_ITER_HOLDS_NUMBER(&val))
		*out = bson_iter_as_int64(&val);
	else
		rc = emh_error_set(err, EMH_EDRIVER, "key generation for '%s': no counter in the reply", table);
	bson_destroy(&reply);
out:
	mongoc_find_and_modify_opts_destroy(fm);
	bson_destroy(&query);
	bson_destroy(&update);
	return rc;
}

int mg_key_reset(emh_conn *c, const char *table, emh_error *err)
{
	bson_t filter = BSON_INITIALIZER, reply;
	bson_error_t be;
	int rc;

	if ((rc = mg_counters_get(c, err)))
		return rc;
	BSON_APPEND_UTF8(&filter, "_id", table);
	if (!mongoc_collection_delete_one(c->counters, &filter, NULL, &reply, &be))
		rc = mg_fail(c, err, &be, &reply, "key counter reset", MG_COUNTERS);
	bson_destroy(&reply);
	bson_destroy(&filter);
	return rc;
}

/* The whole document of vals with k as _id; a NULL in a unique nullable field is left out. */
static int mg_doc_build(bson_t *doc, const emh_meta *m, const emh_value *vals, const emh_value *k, emh_error *err)
{
	const emh_entity *e = m->entity;
	int rc = mg_append_value(doc, "_id", &e->fields[m->pk], k, err);
	for (size_t i = 0; i < e->nfields && !rc; i++) {
		const emh_field *f = &e->fields[i];
		if ((int)i == m->pk || (vals[i].is_null && mg_null_absent(f)))
			continue;
		rc = mg_append_value(doc, f->column, f, &vals[i], err);
	}
	return rc;
}

int mg_insert(emh_conn *c, const emh_meta *m, const emh_value *vals, emh_value *key, emh_error *err)
{
	const emh_entity *e = m->entity;
	const emh_field *kf = &e->fields[m->pk];
	mongoc_collection_t *coll;
	bool generate = vals[m->pk].is_null;
	emh_value k = vals[m->pk];
	int rc;

	mg_call(c);
	if ((rc = mg_coll_get(c, m, &coll, err)))
		return rc;
	if (generate && !m->generated)
		return emh_error_set(err, EMH_EINVAL, "entity '%s': primary key '%s' is null", e->name, kf->name);

	/* A generated key can meet a document inserted with an explicit key: a
	 * duplicate on _id then takes the next number. */
	for (int attempt = 0;; attempt++) {
		bson_t doc = BSON_INITIALIZER, opts, reply;
		bson_error_t be;

		if (generate) {
			int64_t id = 0;
			if ((rc = mg_next_id(c, e->table, &id, err)))
				return rc;
			if (kf->type == EMH_T_INT32) {
				if (id > INT32_MAX)
					return emh_error_set(err, EMH_EINVAL, "entity '%s': generated key %" PRId64
							     " overflows int32", e->name, id);
				k = emh_v_int32((int32_t)id);
			} else {
				k = emh_v_int64(id);
			}
		}
		if ((rc = mg_doc_build(&doc, m, vals, &k, err)) || (rc = mg_opts(c, &opts, err))) {
			bson_destroy(&doc);
			return rc;
		}
		bool ok = mongoc_collection_insert_one(coll, &doc, &opts, &reply, &be);
		bson_destroy(&doc);
		bson_destroy(&opts);
		if (ok) {
			bson_destroy(&reply);
			break;
		}
		if (generate && !c->in_txn && mg_is_dup(&be) && mg_dup_on_id(&be) && attempt < MG_KEY_RETRIES) {
			bson_destroy(&reply);
			continue;
		}
		rc = mg_fail(c, err, &be, &reply, "insert", e->table);
		bson_destroy(&reply);
		return rc;
	}
	if (key)
		*key = k;
	return 0;
}

/*
 * Insert vals, or replace the document with their key: replace_one({_id:
 * key}, document, {upsert: true}), one operation the server applies
 * atomically.  The replacement is the whole document, so what it leaves out
 * (a NULL in a unique nullable field) is gone afterwards, as when a row is
 * overwritten.  A clash on another unique field is EMH_ECONFLICT.  The
 * entity's filter fields (EMH_F_FILTER) join _id in the filter: a document
 * of another tenant with that key does not match, so the upsert's insert
 * meets the duplicate _id (EMH_ECONFLICT) instead of replacing it.
 */
int mg_upsert(emh_conn *c, const emh_meta *m, const emh_value *vals, emh_error *err)
{
	const emh_entity *e = m->entity;
	const emh_value *k = &vals[m->pk];
	mongoc_collection_t *coll;
	int rc;

	mg_call(c);
	if ((rc = mg_coll_get(c, m, &coll, err)))
		return rc;
	if (k->is_null)
		return emh_error_set(err, EMH_EINVAL, "entity '%s': primary key '%s' is null", e->name,
				     e->fields[m->pk].name);
	/* Two upserts of one new key at once both find no document; the second
	 * insert meets a duplicate on _id.  Sent again, it finds the document and
	 * replaces it (MongoDB 4.2+ servers retry so themselves). */
	for (int attempt = 0;; attempt++) {
		bson_t filter = BSON_INITIALIZER, doc = BSON_INITIALIZER, opts, reply;
		bson_error_t be;

		rc = mg_append_value(&filter, "_id", &e->fields[m->pk], k, err);
		for (size_t i = 0; i < e->nfields && !rc; i++)
			if (e->fields[i].flags & EMH_F_FILTER)
				rc = mg_append_value(&filter, e->fields[i].column, &e->fields[i], &vals[i], err);
		if (rc || (rc = mg_doc_build(&doc, m, vals, k, err)) || (rc = mg_opts(c, &opts, err))) {
			bson_destroy(&filter);
			bson_destroy(&doc);
			return rc;
		}
		BSON_APPEND_BOOL(&opts, "upsert", true);
		bool ok = mongoc_collection_replace_one(coll, &filter, &doc, &opts, &reply, &be);
		bson_destroy(&filter);
		bson_destroy(&doc);
		bson_destroy(&opts);
		if (ok) {
			bson_destroy(&reply);
			return 0;
		}
		if (!c->in_txn && mg_is_dup(&be) && mg_dup_on_id(&be) && attempt < 2) {
			bson_destroy(&reply);
			continue;
		}
		rc = mg_fail(c, err, &be, &reply, "upsert", e->table);
		bson_destroy(&reply);
		return rc;
	}
}

int mg_update(emh_conn *c, const emh_meta *m, const emh_value *vals, uint64_t mask, emh_error *err)
{
	const emh_entity *e = m->entity;
	mongoc_collection_t *coll;
	bson_t filter = BSON_INITIALIZER, update = BSON_INITIALIZER, set, unset, opts, reply;
	bson_error_t be;
	bool have_set = false, have_unset = false, ok;
	int64_t matched = 0;
	int rc;

	mg_call(c);
	if ((rc = mg_coll_get(c, m, &coll, err)))
		goto out_filter;
	if ((rc = mg_append_value(&filter, "_id", &e->fields[m->pk], &vals[m->pk], err)))
		goto out_filter;
	for (size_t i = 0; i < e->nfields; i++)
		if ((int)i != m->pk && (mask & (UINT64_C(1) << i))) {
			if (vals[i].is_null && mg_null_absent(&e->fields[i]))
				have_unset = true;
			else
				have_set = true;
		}
	if (have_set) {
		bson_append_document_begin(&update, "$set", -1, &set);
		for (size_t i = 0; i < e->nfields && !rc; i++) {
			const emh_field *f = &e->fields[i];
			if ((int)i == m->pk || !(mask & (UINT64_C(1) << i)) || (vals[i].is_null && mg_null_absent(f)))
				continue;
			rc = mg_append_value(&set, f->column, f, &vals[i], err);
		}
		bson_append_document_end(&update, &set);
	}
	if (have_unset) {
		bson_append_document_begin(&update, "$unset", -1, &unset);
		for (size_t i = 0; i < e->nfields; i++)
			if ((int)i != m->pk && (mask & (UINT64_C(1) << i)) && vals[i].is_null &&
			    mg_null_absent(&e->fields[i]))
				bson_append_utf8(&unset, e->fields[i].column, -1, "", 0);
		bson_append_document_end(&update, &unset);
	}
	if (rc || (rc = mg_opts(c, &opts, err)))
		goto out_filter;
	if (!have_set && !have_unset) {
		/* Nothing changed: still say whether the document exists. */
		bson_append_int64(&opts, "limit", -1, 1);
		mg_max_time(c, &opts);
		matched = mongoc_collection_count_documents(coll, &filter, &opts, NULL, &reply, &be);
		ok = matched >= 0;
	} else {
		ok = mongoc_collection_update_one(coll, &filter, &update, &opts, &reply, &be);
		if (ok && mg_reply_count(&reply, "matchedCount", &matched))
			matched = 1;
	}
	bson_destroy(&opts);
	if (!ok)
		rc = mg_fail(c, err, &be, &reply, "update", e->table);
	else if (matched == 0)
		rc = emh_error_set(err, EMH_ENOTFOUND, "update of '%s': no document with that key", e->table);
	bson_destroy(&reply);
out_filter:
	bson_destroy(&filter);
	bson_destroy(&update);
	return rc;
}

int mg_remove(emh_conn *c, const emh_meta *m, const emh_value *key, emh_error *err)
{
	const emh_entity *e = m->entity;
	mongoc_collection_t *coll;
	bson_t filter = BSON_INITIALIZER, opts, reply;
	bson_error_t be;
	int rc;

	mg_call(c);
	if ((rc = mg_coll_get(c, m, &coll, err)) ||
	    (rc = mg_append_value(&filter, "_id", &e->fields[m->pk], key, err)) || (rc = mg_opts(c, &opts, err))) {
		bson_destroy(&filter);
		return rc;
	}
	/* Deleting a document that is already gone succeeds, as an SQL DELETE
	 * of no row does. */
	if (!mongoc_collection_delete_one(coll, &filter, &opts, &reply, &be))
		rc = mg_fail(c, err, &be, &reply, "delete", e->table);
	bson_destroy(&reply);
	bson_destroy(&opts);
	bson_destroy(&filter);
	return rc;
}

int mg_find(emh_conn *c, const emh_meta *m, const emh_query *q, emh_rowsink *sink, emh_error *err)
{
	mongoc_collection_t *coll;
	mongoc_cursor_t *cur;
	const bson_t *doc;
	bson_t filter, opts;
	bson_error_t be;
	int rc;

	mg_call(c);
	if ((rc = mg_coll_get(c, m, &coll, err)))
		return rc;
	if ((rc = mg_filter(&filter, m, q, err)))
		return rc;
	if (q && emh_query_limit(q) == 0) { /* Mongo reads limit 0 as "no limit" */
		bson_destroy(&filter);
		return 0;
	}
	if ((rc = mg_opts(c, &opts, err))) {
		bson_destroy(&filter);
		return rc;
	}
	mg_find_opts(&opts, m, q);
	mg_max_time(c, &opts);
	cur = mongoc_collection_find_with_opts(coll, &filter, &opts, NULL);
	bson_destroy(&filter);
	bson_destroy(&opts);
	while (!rc && mongoc_cursor_next(cur, &doc))
		rc = mg_deliver(doc, m, sink, err);
	if (!rc && mongoc_cursor_error_document(cur, &be, &doc))
		rc = mg_fail(c, err, &be, doc, "find", m->entity->table);
	mongoc_cursor_destroy(cur);
	return rc;
}

int mg_count(emh_conn *c, const emh_meta *m, const emh_query *q, int64_t *n, emh_error *err)
{
	mongoc_collection_t *coll;
	bson_t filter, opts, reply;
	bson_error_t be;
	int rc;

	mg_call(c);
	if ((rc = mg_coll_get(c, m, &coll, err)) || (rc = mg_filter(&filter, m, q, err)))
		return rc;
	if ((rc = mg_opts(c, &opts, err))) {
		bson_destroy(&filter);
		return rc;
	}
	mg_max_time(c, &opts);
	*n = mongoc_collection_count_documents(coll, &filter, &opts, NULL, &reply, &be);
	if (*n < 0)
		rc = mg_fail(c, err, &be, &reply, "count", m->entity->table);
	bson_destroy(&reply);
	bson_destroy(&opts);
	bson_destroy(&filter);
	return rc;
}

/*
 * Where an integer delta would take field f past its type: *op "$gt" and
 * *bound for a positive delta (a value above bound overflows), "$lt" for a
 * negative one; false when nothing can overflow (a zero delta, a double
 * field).  The bounds fit int64 whatever the delta.
 */
static bool mg_add_bound(const emh_field *f, const emh_value *delta, const char **op, int64_t *bound)
{
	int64_t d;

	if (f->type != EMH_T_INT32 && f->type != EMH_T_INT64)
		return false;
	if (delta->type == EMH_T_INT32)
		d = delta->u.i32;
	else if (delta->type == EMH_T_INT64)
		d = delta->u.i64;
	else
		return false; /* the core refuses a double delta on an integer field */
	if (d > 0) {
		*op = "$gt";
		*bound = (f->type == EMH_T_INT32 ? INT32_MAX : INT64_MAX) - d;
	} else if (d < 0) {
		*op = "$lt";
		*bound = (f->type == EMH_T_INT32 ? INT32_MIN : INT64_MIN) - d;
	} else {
		return false;
	}
	return true;
}

/*
 * The overflow guards of a set list's integer deltas.  MongoDB does not fail
 * an $inc past int32: mongod widens the value to int64 (and an int64 past
 * its range to a double, or fails), a wire-compatible server may store a
 * double; either way the field no longer reads as its type and every read
 * of the document fails.  So: *bad matches, within filter, the documents
 * some delta would take out of range ({$and: [filter, {$or: [{f: {$gt:
 * bound}}, ...]}]}); *good the others ({$and: [filter, {f: {$not: {$gt:
 * bound}}}, ...]}: a document whose field is missing or not a number is
 * left to $inc as before).  False, and neither built, when no delta needs
 * a guard.
 */
static bool mg_add_guards(const emh_meta *m, const bson_t *filter, const emh_set *sets, size_t n, bson_t *bad,
			  bson_t *good)
{
	bson_t and_bad, and_good, any, or, item, cmp, not;
	bool guarded = false;
	size_t k = 0;

	for (size_t i = 0; i < n && !guarded; i++) {
		const char *op;
		int64_t bound;
		guarded = sets[i].op == EMH_SET_ADD &&
			  mg_add_bound(&m->entity->fields[sets[i].field], &sets[i].value, &op, &bound);
	}
	if (!guarded)
		return false;
	bson_init(bad);
	bson_init(good);
	bson_append_array_begin(bad, "$and", -1, &and_bad);
	bson_append_document(&and_bad, "0", -1, filter);
	bson_append_array_begin(good, "$and", -1, &and_good);
	bson_append_document(&and_good, "0", -1, filter);
	bson_append_document_begin(&and_bad, "1", -1, &any);
	bson_append_array_begin(&any, "$or", -1, &or);
	for (size_t i = 0; i < n; i++) {
		const emh_field *f = &m->entity->fields[sets[i].field];
		char okey[16], gkey[16], pbuf[MG_PATH_MAX];
		const char *ok, *gk, *op, *path;
		int64_t bound;
		if (sets[i].op != EMH_SET_ADD || !mg_add_bound(f, &sets[i].value, &op, &bound))
			continue;
		path = mg_path(m, sets[i].field, true, pbuf, sizeof pbuf);
		bson_uint32_to_string((uint32_t)k, &ok, okey, sizeof okey);
		bson_append_document_begin(&or, ok, -1, &item);
		bson_append_document_begin(&item, path, -1, &cmp);
		bson_append_int64(&cmp, op, -1, bound);
		bson_append_document_end(&item, &cmp);
		bson_append_document_end(&or, &item);
		bson_uint32_to_string((uint32_t)k + 1, &gk, gkey, sizeof gkey);
		bson_append_document_begin(&and_good, gk, -1, &item);
		bson_append_document_begin(&item, path, -1, &cmp);
		bson_append_document_begin(&cmp, "$not", -1, &not);
		bson_append_int64(&not, op, -1, bound);
		bson_append_document_end(&cmp, &not);
		bson_append_document_end(&item, &cmp);
		bson_append_document_end(&and_good, &item);
		k++;
	}
	bson_append_array_end(&any, &or);
	bson_append_document_end(&and_bad, &any);
	bson_append_array_end(bad, &and_bad);
	bson_append_array_end(good, &and_good);
	return true;
}

/*
 * Set-based update: update_many(filter of q, {$set, $unset, $inc}), one
 * operation applied to each document atomically; *affected is the number of
 * documents matched (modified or not), as the SQL drivers report.  A NULL
 * in a unique nullable field is $unset (stored absent, see mongo_int.h).
 *
 * An integer delta that would take a matching document past its field's
 * type refuses the whole update with EMH_EINVAL, as SQL databases refuse
 * the overflow (mg_add_guards): the documents it would hit are counted
 * first, and the update's filter excludes them too, so that a document
 * another writer moves past the bound between the two is skipped (and not
 * counted in *affected) rather than made unreadable.
 */
int mg_update_where(emh_conn *c, const emh_meta *m, const emh_query *q, const emh_set *sets, size_t n,
		    int64_t *affected, emh_error *err)
{
	const emh_entity *e = m->entity;
	mongoc_collection_t *coll;
	bson_t filter, update = BSON_INITIALIZER, part, opts, reply, bad, good;
	bson_error_t be;
	bool guarded = false;
	/* one pass per operator: $set, $unset, $inc */
	static const char *const ops[] = {"$set", "$unset", "$inc"};
	int rc;

	mg_call(c);
	*affected = 0;
	if ((rc = mg_coll_get(c, m, &coll, err)) || (rc = mg_filter(&filter, m, q, err))) {
		bson_destroy(&update);
		return rc;
	}
	for (int k = 0; k < 3 && !rc; k++) {
		bool open = false;
		for (size_t i = 0; i < n && !rc; i++) {
			const emh_field *f = &e->fields[sets[i].field];
			bool unset = sets[i].op == EMH_SET_VALUE && sets[i].value.is_null && mg_null_absent(f);
			int which = sets[i].op == EMH_SET_ADD ? 2 : unset ? 1 : 0;
			if (which != k)
				continue;
			if (!open) {
				bson_append_document_begin(&update, ops[k], -1, &part);
				open = true;
			}
			if (unset)
				bson_append_utf8(&part, f->column, -1, "", 0);
			else
				rc = mg_append_value(&part, f->column, f, &sets[i].value, err);
		}
		if (open)
			bson_append_document_end(&update, &part);
	}
	if (!rc)
		guarded = mg_add_guards(m, &filter, sets, n, &bad, &good);
	if (!rc && guarded && !(rc = mg_opts(c, &opts, err))) {
		mg_max_time(c, &opts);
		int64_t over = mongoc_collection_count_documents(coll, &bad, &opts, NULL, &reply, &be);
		if (over < 0)
			rc = mg_fail(c, err, &be, &reply, "update (overflow check)", e->table);
		else if (over > 0)
			rc = emh_error_set(err, EMH_EINVAL,
					   "update on collection '%s': a delta would take an integer field past its "
					   "type's range in %" PRId64 " document%s; none was updated",
					   e->table, over, over == 1 ? "" : "s");
		bson_destroy(&reply);
		bson_destroy(&opts);
	}
	if (!rc && !(rc = mg_opts(c, &opts, err))) {
		if (!mongoc_collection_update_many(coll, guarded ? &good : &filter, &update, &opts, &reply, &be))
			rc = mg_fail(c, err, &be, &reply, "update", e->table);
		else if (mg_reply_count(&reply, "matchedCount", affected))
			rc = emh_error_set(err, EMH_EDRIVER, "update of '%s': no matchedCount in the reply", e->table);
		bson_destroy(&reply);
		bson_destroy(&opts);
	}
	if (guarded) {
		bson_destroy(&bad);
		bson_destroy(&good);
	}
	bson_destroy(&filter);
	bson_destroy(&update);
	return rc;
}

/* Set-based delete: delete_many(filter of q); *affected = deletedCount. */
int mg_delete_where(emh_conn *c, const emh_meta *m, const emh_query *q, int64_t *affected, emh_error *err)
{
	mongoc_collection_t *coll;
	bson_t filter, opts, reply;
	bson_error_t be;
	int rc;

	mg_call(c);
	*affected = 0;
	if ((rc = mg_coll_get(c, m, &coll, err)) || (rc = mg_filter(&filter, m, q, err)))
		return rc;
	if (!(rc = mg_opts(c, &opts, err))) {
		if (!mongoc_collection_delete_many(coll, &filter, &opts, &reply, &be))
			rc = mg_fail(c, err, &be, &reply, "delete", m->entity->table);
		else if (mg_reply_count(&reply, "deletedCount", affected))
			rc = emh_error_set(err, EMH_EDRIVER, "delete of '%s': no deletedCount in the reply",
					   m->entity->table);
		bson_destroy(&reply);
		bson_destroy(&opts);
	}
	bson_destroy(&filter);
	return rc;
}
