/* SPDX-License-Identifier: MIT */
/*
 * plugins/mongo/mongo_agg.c: aggregates (emh_repo_aggregate) as an
 * aggregation pipeline, run by the server in constant client memory:
 *
 *   $match    the query's condition (mongo_filter.c)
 *   $group    _id: {g0: <field or null>, ...}, a<i>: the accumulators
 *   $addFields  SQL's answers where MongoDB's differ: a SUM of no value is
 *             NULL, not 0 (h<i>, the group's $max, is null then); a
 *             COUNT DISTINCT is the size of the group's set without null
 *   $match    the having conditions, on a<i>
 *   $sort, $limit
 *
 * Group keys of nullable fields go through $ifNull so that a missing field
 * and a null one form one group, as NULLs do in SQL; a field that cannot be
 * NULL needs neither that nor the NULL sum, so its pipeline is the one a
 * user would write.  Timestamps group, compare and sort by
 * their microseconds (<column>.us).  A sum of integers that MongoDB could
 * only give as a double beyond int64 is an error, never a rounded value.
 */
#include "config.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <mongoc/mongoc.h>

#include <emhost/aggregate.h>
#include <emhost/driver.h>

#include "mongo_int.h"

/* "$<path of field fi>" into buf. */
static const char *mg_agg_ref(const emh_meta *m, int fi, char *buf, size_t cap)
{
	char pbuf[MG_PATH_MAX];
	snprintf(buf, cap, "$%s", mg_path(m, fi, true, pbuf, sizeof pbuf));
	return buf;
}

static bool mg_nullable(const emh_meta *m, int fi)
{
	return (m->entity->fields[fi].flags & EMH_F_NULLABLE) != 0;
}

/* The $group stage: group keys and accumulators. */
static void mg_agg_group(bson_t *stage, const emh_meta *m, const emh_agg *a)
{
	bson_t group, id, acc, inull, arr;
	char key[32], ref[MG_PATH_MAX + 2];
	size_t ng = emh_agg_ngroups(a), nc = emh_agg_ncols(a);

	bson_append_document_begin(stage, "$group", -1, &group);
	if (ng == 0) {
		bson_append_null(&group, "_id", -1);
	} else {
		bson_append_document_begin(&group, "_id", -1, &id);
		for (size_t i = 0; i < ng; i++) {
			int fn, fi;
			emh_type t;
			emh_agg_col(a, i, &fn, &fi, &t);
			snprintf(key, sizeof key, "g%zu", i);
			if (!mg_nullable(m, fi)) {
				bson_append_utf8(&id, key, -1, mg_agg_ref(m, fi, ref, sizeof ref), -1);
				continue;
			}
			bson_append_document_begin(&id, key, -1, &inull);
			bson_append_array_begin(&inull, "$ifNull", -1, &arr);
			bson_append_utf8(&arr, "0", -1, mg_agg_ref(m, fi, ref, sizeof ref), -1);
			bson_append_null(&arr, "1", -1);
			bson_append_array_end(&inull, &arr);
			bson_append_document_end(&id, &inull);
		}
		bson_append_document_end(&group, &id);
	}
	for (size_t i = ng; i < nc; i++) {
		int fn, fi;
		emh_type t;
		emh_agg_col(a, i, &fn, &fi, &t);
		snprintf(key, sizeof key, "a%zu", i);
		bson_append_document_begin(&group, key, -1, &acc);
		switch (fn) {
		case EMH_AGG_COUNT:
			bson_append_int32(&acc, "$sum", -1, 1);
			break;
		case EMH_AGG_COUNT_DISTINCT:
			bson_append_utf8(&acc, "$addToSet", -1, mg_agg_ref(m, fi, ref, sizeof ref), -1);
			break;
		case EMH_AGG_SUM:
			bson_append_utf8(&acc, "$sum", -1, mg_agg_ref(m, fi, ref, sizeof ref), -1);
			break;
		case EMH_AGG_MIN:
			bson_append_utf8(&acc, "$min", -1, mg_agg_ref(m, fi, ref, sizeof ref), -1);
			break;
		case EMH_AGG_MAX:
			bson_append_utf8(&acc, "$max", -1, mg_agg_ref(m, fi, ref, sizeof ref), -1);
			break;
		default: /* EMH_AGG_AVG */
			bson_append_utf8(&acc, "$avg", -1, mg_agg_ref(m, fi, ref, sizeof ref), -1);
			break;
		}
		bson_append_document_end(&group, &acc);
		if (fn == EMH_AGG_SUM && mg_nullable(m, fi)) {
			/* null when the group has no non-null value (see $addFields) */
			snprintf(key, sizeof key, "h%zu", i);
			bson_append_document_begin(&group, key, -1, &acc);
			bson_append_utf8(&acc, "$max", -1, mg_agg_ref(m, fi, ref, sizeof ref), -1);
			bson_append_document_end(&group, &acc);
		}
	}
	bson_append_document_end(stage, &group);
}

/* The $addFields stage of SUM (of nullable fields) and COUNT DISTINCT columns; false when none. */
static bool mg_agg_fix(bson_t *stage, const emh_meta *m, const emh_agg *a)
{
	bson_t fields, expr, args, eq, diff, nulls;
	char key[32], ref[32];
	bool any = false;

	bson_append_document_begin(stage, "$addFields", -1, &fields);
	for (size_t i = emh_agg_ngroups(a); i < emh_agg_ncols(a); i++) {
		int fn, fi;
		emh_type t;
		emh_agg_col(a, i, &fn, &fi, &t);
		snprintf(key, sizeof key, "a%zu", i);
		if (fn == EMH_AGG_SUM && mg_nullable(m, fi)) {
			/* a<i>: {$cond: [{$eq: ["$h<i>", null]}, null, "$a<i>"]} */
			bson_append_document_begin(&fields, key, -1, &expr);
			bson_append_array_begin(&expr, "$cond", -1, &args);
			bson_append_document_begin(&args, "0", -1, &eq);
			bson_append_array_begin(&eq, "$eq", -1, &nulls);
			snprintf(ref, sizeof ref, "$h%zu", i);
			bson_append_utf8(&nulls, "0", -1, ref, -1);
			bson_append_null(&nulls, "1", -1);
			bson_append_array_end(&eq, &nulls);
			bson_append_document_end(&args, &eq);
			bson_append_null(&args, "1", -1);
			snprintf(ref, sizeof ref, "$a%zu", i);
			bson_append_utf8(&args, "2", -1, ref, -1);
			bson_append_array_end(&expr, &args);
			bson_append_document_end(&fields, &expr);
			any = true;
		} else if (fn == EMH_AGG_COUNT_DISTINCT) {
			/* a<i>: {$size: {$setDifference: ["$a<i>", [null]]}} */
			bson_append_document_begin(&fields, key, -1, &expr);
			bson_append_document_begin(&expr, "$size", -1, &diff);
			bson_append_array_begin(&diff, "$setDifference", -1, &args);
			snprintf(ref, sizeof ref, "$a%zu", i);
			bson_append_utf8(&args, "0", -1, ref, -1);
			bson_append_array_begin(&args, "1", -1, &nulls);
			bson_append_null(&nulls, "0", -1);
			bson_append_array_end(&args, &nulls);
			bson_append_array_end(&diff, &args);
			bson_append_document_end(&expr, &diff);
			bson_append_document_end(&fields, &expr);
			any = true;
		}
	}
	bson_append_document_end(stage, &fields);
	return any;
}

/* Where column i is in a result document. */
static const char *mg_agg_path(const emh_agg *a, size_t i, char *buf, size_t cap)
{
	if (i < emh_agg_ngroups(a))
		snprintf(buf, cap, "_id.g%zu", i);
	else
		snprintf(buf, cap, "a%zu", i);
	return buf;
}

/* The having stage: {a<i>: {$op: v}, ...} under $and; a NULL never holds. */
static int mg_agg_having(bson_t *stage, const emh_agg *a, emh_error *err)
{
	static const char *const ops[] = {[EMH_OP_EQ] = "$eq", [EMH_OP_LT] = "$lt", [EMH_OP_LE] = "$lte",
					   [EMH_OP_GT] = "$gt", [EMH_OP_GE] = "$gte"};
	bson_t match, all, one, cmp, nin;
	char key[32], path[32];
	int rc = 0;

	bson_append_document_begin(stage, "$match", -1, &match);
	bson_append_array_begin(&match, "$and", -1, &all);
	for (size_t i = 0; i < emh_agg_nhaving(a) && !rc; i++) {
		size_t col;
		emh_op op;
		const emh_value *v;
		int fn, fi;
		emh_agg_having_at(a, i, &col, &op, &v);
		emh_field f = {.name = "having"};
		emh_agg_col(a, col, &fn, &fi, &f.type);
		if (f.type == EMH_T_TIMESTAMP)
			f.type = EMH_T_INT64; /* compared by its microseconds */
		snprintf(key, sizeof key, "%zu", i);
		bson_append_document_begin(&all, key, -1, &one);
		bson_append_document_begin(&one, mg_agg_path(a, col, path, sizeof path), -1, &cmp);
		if (op == EMH_OP_NE) {
			bson_append_array_begin(&cmp, "$nin", -1, &nin);
			rc = mg_append_value(&nin, "0", &f, v, err);
			bson_append_null(&nin, "1", -1);
			bson_append_array_end(&cmp, &nin);
		} else {
			rc = mg_append_value(&cmp, ops[op], &f, v, err);
		}
		bson_append_document_end(&one, &cmp);
		bson_append_document_end(&all, &one);
	}
	bson_append_array_end(&match, &all);
	bson_append_document_end(stage, &match);
	return rc;
}

/* The whole pipeline into p (initialised by the caller). */
static int mg_agg_pipeline(bson_t *p, const emh_meta *m, const emh_query *q, const emh_agg *a, emh_error *err)
{
	bson_t stage, filter, sort;
	char key[32], path[32];
	uint32_t n = 0;
	int rc;

#define MG_STAGE_BEGIN() (snprintf(key, sizeof key, "%u", n++), bson_append_document_begin(p, key, -1, &stage))
	if ((rc = mg_filter(&filter, m, q, err)))
		return rc;
	if (!bson_empty(&filter)) {
		MG_STAGE_BEGIN();
		bson_append_document(&stage, "$match", -1, &filter);
		bson_append_document_end(p, &stage);
	}
	bson_destroy(&filter);
	MG_STAGE_BEGIN();
	mg_agg_group(&stage, m, a);
	bson_append_document_end(p, &stage);
	bson_t fix = BSON_INITIALIZER;
	if (mg_agg_fix(&fix, m, a)) {
		snprintf(key, sizeof key, "%u", n++);
		bson_append_document(p, key, -1, &fix);
	}
	bson_destroy(&fix);
	if (emh_agg_nhaving(a)) {
		MG_STAGE_BEGIN();
		rc = mg_agg_having(&stage, a, err);
		bson_append_document_end(p, &stage);
		if (rc)
			return rc;
	}
	if (emh_agg_norder(a)) {
		MG_STAGE_BEGIN();
		bson_append_document_begin(&stage, "$sort", -1, &sort);
		for (size_t i = 0; i < emh_agg_norder(a); i++) {
			size_t col;
			bool desc;
			emh_agg_order_at(a, i, &col, &desc);
			bson_append_int32(&sort, mg_agg_path(a, col, path, sizeof path), -1, desc ? -1 : 1);
		}
		bson_append_document_end(&stage, &sort);
		bson_append_document_end(p, &stage);
	}
	if (emh_agg_max_rows(a) > 0) {
		MG_STAGE_BEGIN();
		bson_append_int64(&stage, "$limit", -1, emh_agg_max_rows(a));
		bson_append_document_end(p, &stage);
	}
#undef MG_STAGE_BEGIN
	return 0;
}

/* An integer result (int32, int64, or a double holding an integer). */
static bool mg_agg_int(bson_iter_t *it, int64_t *out)
{
	if (BSON_ITER_HOLDS_INT32(it) || BSON_ITER_HOLDS_INT64(it)) {
		*out = bson_iter_as_int64(it);
		return true;
	}
	if (!BSON_ITER_HOLDS_DOUBLE(it))
		return false;
	/* 2^63 is the first double beyond int64: a sum that large overflowed. */
	double d = bson_iter_double(it);
	if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0) || d != (double)(int64_t)d)
		return false;
	*out = (int64_t)d;
	return true;
}

/* Result column col at path in doc, as a value of type t. */
static int mg_agg_value(const bson_t *doc, const emh_meta *m, const emh_agg *a, size_t col, emh_value *v,
			emh_error *err)
{
	char path[32];
	bson_iter_t it;
	int fn, fi;
	emh_type t;
	int64_t x;

	emh_agg_col(a, col, &fn, &fi, &t);
	memset(v, 0, sizeof *v);
	v->type = t;
	if (!bson_iter_init(&it, doc) || !bson_iter_find_descendant(&it, mg_agg_path(a, col, path, sizeof path), &it) ||
	    BSON_ITER_HOLDS_NULL(&it) || bson_iter_type(&it) == BSON_TYPE_UNDEFINED) {
		v->is_null = true;
		return 0;
	}
	switch (t) {
	case EMH_T_BOOL:
		if (!BSON_ITER_HOLDS_BOOL(&it))
			break;
		v->u.b = bson_iter_bool(&it);
		return 0;
	case EMH_T_INT32:
		if (!mg_agg_int(&it, &x) || x < INT32_MIN || x > INT32_MAX)
			break;
		v->u.i32 = (int32_t)x;
		return 0;
	case EMH_T_INT64:
	case EMH_T_TIMESTAMP:
		if (!mg_agg_int(&it, &x)) {
			if (fn == EMH_AGG_SUM && BSON_ITER_HOLDS_DOUBLE(&it))
				return emh_error_set(err, EMH_EINVAL,
						     "aggregate on '%s': the sum of '%s' does not fit int64",
						     m->entity->table, m->entity->fields[fi].name);
			break;
		}
		v->u.i64 = x;
		return 0;
	case EMH_T_DOUBLE:
		if (!BSON_ITER_HOLDS_NUMBER(&it))
			break;
		v->u.d = bson_iter_as_double(&it);
		return 0;
	case EMH_T_TEXT: {
		uint32_t n;
		if (!BSON_ITER_HOLDS_UTF8(&it))
			break;
		v->u.s.ptr = bson_iter_utf8(&it, &n);
		v->u.s.len = n;
		return 0;
	}
	default:
		break;
	}
	return emh_error_set(err, EMH_EDRIVER, "aggregate on '%s': column '%s' came back as BSON type 0x%02x, not %s",
			     m->entity->table, path, (unsigned)bson_iter_type(&it), emh_type_name(t));
}

int mg_aggregate(emh_conn *c, const emh_meta *m, const emh_query *q, const emh_agg *a, emh_rowsink *sink,
		 emh_error *err)
{
	mongoc_collection_t *coll;
	mongoc_cursor_t *cur;
	const bson_t *doc;
	bson_t pipeline = BSON_INITIALIZER, opts;
	bson_error_t be;
	emh_value vals[EMH_AGG_MAX_COLS];
	size_t nc = emh_agg_ncols(a);
	int rc;

	if (emh_agg_max_rows(a) == 0) /* $limit takes no 0 */
		return 0;
	mg_call(c);
	if ((rc = mg_coll_get(c, m, &coll, err)) || (rc = mg_agg_pipeline(&pipeline, m, q, a, err)) ||
	    (rc = mg_opts(c, &opts, err))) {
		bson_destroy(&pipeline);
		return rc;
	}
	mg_max_time(c, &opts); /* a read: the server stops it at statement_timeout_ms */
	cur = mongoc_collection_aggregate(coll, MONGOC_QUERY_NONE, &pipeline, &opts, NULL);
	bson_destroy(&pipeline);
	bson_destroy(&opts);
	while (!rc && mongoc_cursor_next(cur, &doc)) {
		for (size_t i = 0; i < nc && !rc; i++)
			rc = mg_agg_value(doc, m, a, i, &vals[i], err);
		if (!rc)
			rc = sink->row(sink, vals, err);
	}
	if (!rc && mongoc_cursor_error_document(cur, &be, &doc))
		rc = mg_fail(c, err, &be, doc, "aggregate", m->entity->table);
	mongoc_cursor_destroy(cur);
	return rc;
}
