/* SPDX-License-Identifier: MIT */
/*
 * plugins/mongo/mongo_filter.c: the query compiler.  An emh_query's
 * condition becomes a BSON filter with SQL's three-valued logic, its order,
 * offset and limit the find options sort, skip and limit.  Every value is a
 * typed BSON scalar under an explicit operator, so no value can act as an
 * operator.
 */
#include "config.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <mongoc/mongoc.h>

#include <emhost/buf.h>
#include <emhost/driver.h>

#include "mongo_int.h"

/* LIKE pattern -> anchored regex: % -> [\s\S]*, _ -> [\s\S], \x -> x; every
 * regex metacharacter of the user's text escaped.  [\s\S] rather than '.'
 * with the "s" option: it matches a newline as SQL's '_' does, with no
 * option to honour (some wire-compatible servers drop "s").  The end is
 * (?![\s\S]), "no character follows", not '$': mongod's PCRE matches '$'
 * before a final newline too (LIKE 'abc' would match "abc\n"), and \z,
 * PCRE's true end, is not JavaScript (wire-compatible servers). */
static int mg_like_regex(const char *pat, size_t n, emh_buf *b, emh_error *err)
{
	emh_buf_add(b, "^", 1);
	for (size_t i = 0; i < n; i++) {
		char ch = pat[i];
		if (ch == '%') {
			emh_buf_adds(b, "[\\s\\S]*");
			continue;
		}
		if (ch == '_') {
			emh_buf_adds(b, "[\\s\\S]");
			continue;
		}
		if (ch == '\\') {
			if (++i >= n)
				return emh_error_set(err, EMH_EINVAL, "like pattern ends with a lone backslash");
			ch = pat[i];
		}
		if (strchr("\\^$.|?*+()[]{}/", ch) && ch != '\0')
			emh_buf_add(b, "\\", 1);
		if (ch == '\0') {
			emh_buf_add(b, "\\x00", 4);
			continue;
		}
		emh_buf_add(b, &ch, 1);
	}
	emh_buf_adds(b, "(?![\\s\\S])");
	return b->oom ? emh_error_set(err, EMH_ENOMEM, "out of memory") : 0;
}

static int mg_cond(bson_t *doc, const emh_meta *m, const emh_cond *c, bool neg, emh_error *err);

static int mg_cond_list(bson_t *doc, const char *op, const emh_meta *m, const emh_cond *c, bool neg, emh_error *err)
{
	bson_t arr, child;
	size_t n = emh_cond_nchildren(c);
	int rc = 0;

	bson_append_array_begin(doc, op, -1, &arr);
	for (size_t i = 0; i < n && !rc; i++) {
		char ikey[16];
		const char *k;
		bson_uint32_to_string((uint32_t)i, &k, ikey, sizeof ikey);
		bson_append_document_begin(&arr, k, -1, &child);
		rc = mg_cond(&child, m, emh_cond_child(c, i), neg, err);
		bson_append_document_end(&arr, &child);
	}
	bson_append_array_end(doc, &arr);
	return rc;
}

/*
 * Append condition c (negated when neg) to doc.  Negation is pushed down to
 * the leaves (De Morgan) so that results match SQL's three-valued logic: a
 * negated comparison never matches a NULL field, exactly as NOT (a = 1) is
 * not true in SQL when a is NULL.  Values are always typed BSON scalars under
 * an explicit operator ($eq, $in, ...): never a document a value could turn
 * into an operator.
 */
static int mg_cond(bson_t *doc, const emh_meta *m, const emh_cond *c, bool neg, emh_error *err)
{
	emh_op op = emh_cond_op(c);
	int fi = emh_cond_field(c);
	const emh_entity *e = m->entity;
	const emh_field *f;
	const emh_value *vals;
	size_t nv;
	char pbuf[MG_PATH_MAX];
	const char *path;
	bson_t sub, arr;
	int rc = 0;

	switch (op) {
	case EMH_OP_AND:
		return mg_cond_list(doc, neg ? "$or" : "$and", m, c, neg, err);
	case EMH_OP_OR:
		return mg_cond_list(doc, neg ? "$and" : "$or", m, c, neg, err);
	case EMH_OP_NOT:
		if (emh_cond_nchildren(c) != 1)
			return emh_error_set(err, EMH_EINVAL, "malformed not condition");
		return mg_cond(doc, m, emh_cond_child(c, 0), !neg, err);
	default:
		break;
	}
	if (fi < 0 || (size_t)fi >= e->nfields)
		return emh_error_set(err, EMH_EINVAL, "condition on an unknown field");
	f = &e->fields[fi];
	vals = emh_cond_values(c);
	nv = emh_cond_nvalues(c);
	if (op == EMH_OP_IS_NULL || op == EMH_OP_NOT_NULL) {
		bool want_null = (op == EMH_OP_IS_NULL) != neg;
		path = mg_path(m, fi, false, pbuf, sizeof pbuf);
		bson_append_document_begin(doc, path, -1, &sub);
		bson_append_null(&sub, want_null ? "$eq" : "$ne", -1);
		bson_append_document_end(doc, &sub);
		return 0;
	}
	if (f->type == EMH_T_JSON)
		return emh_error_set(err, EMH_EUNSUPPORTED,
				     "field '%s': the mongo driver compares json fields only with is null / not null",
				     f->name);
	path = mg_path(m, fi, true, pbuf, sizeof pbuf);
	/* The value as it is compared: a timestamp through its µs. */
	emh_field cf = *f;
	if (f->type == EMH_T_TIMESTAMP)
		cf.type = EMH_T_INT64;

	if (op == EMH_OP_LIKE) {
		emh_buf re = EMH_BUF_INIT;
		if (nv != 1 || vals[0].is_null)
			return emh_error_set(err, EMH_EINVAL, "field '%s': like needs one pattern", f->name);
		if ((rc = mg_like_regex(vals[0].u.s.ptr ? vals[0].u.s.ptr : "", vals[0].u.s.len, &re, err))) {
			emh_buf_release(&re);
			return rc;
		}
		bson_append_document_begin(doc, path, -1, &sub);
		if (neg) {
			bson_append_regex(&sub, "$not", -1, re.ptr, "");
			bson_append_null(&sub, "$ne", -1);
		} else {
			bson_append_regex(&sub, "$regex", -1, re.ptr, "");
		}
		bson_append_document_end(doc, &sub);
		emh_buf_release(&re);
		return 0;
	}
	if (op == EMH_OP_IN) {
		if (neg && nv == 0)
			return 0; /* NOT IN () holds for every row */
		bson_append_document_begin(doc, path, -1, &sub);
		bson_append_array_begin(&sub, neg ? "$nin" : "$in", -1, &arr);
		for (size_t i = 0; i < nv && !rc; i++) {
			char ikey[16];
			const char *k;
			bson_uint32_to_string((uint32_t)i, &k, ikey, sizeof ikey);
			rc = mg_append_value(&arr, k, &cf, &vals[i], err);
		}
		if (neg && !rc) {
			char ikey[16];
			const char *k;
			bson_uint32_to_string((uint32_t)nv, &k, ikey, sizeof ikey);
			bson_append_null(&arr, k, -1);
		}
		bson_append_array_end(&sub, &arr);
		bson_append_document_end(doc, &sub);
		return rc;
	}
	if (nv != 1 || vals[0].is_null)
		return emh_error_set(err, EMH_EINVAL, "field '%s': comparison needs one non-null value", f->name);

	/* Equality on the key: the plain form {_id: v} (v is a typed scalar, so
	 * it cannot act as an operator) lets servers take their _id fast path. */
	if (op == EMH_OP_EQ && !neg && fi == m->pk)
		return mg_append_value(doc, "_id", &cf, &vals[0], err);

	const char *mop;
	bool ne = false;
	switch (op) {
	case EMH_OP_EQ: mop = neg ? NULL : "$eq"; ne = neg; break;
	case EMH_OP_NE: mop = neg ? "$eq" : NULL; ne = !neg; break;
	case EMH_OP_LT: mop = neg ? "$gte" : "$lt"; break;
	case EMH_OP_LE: mop = neg ? "$gt" : "$lte"; break;
	case EMH_OP_GT: mop = neg ? "$lte" : "$gt"; break;
	case EMH_OP_GE: mop = neg ? "$lt" : "$gte"; break;
	default:
		return emh_error_set(err, EMH_EUNSUPPORTED, "unknown condition operator %d", (int)op);
	}
	bson_append_document_begin(doc, path, -1, &sub);
	if (ne) {
		/* a <> v is not true for a NULL a: $nin [v, null]. */
		bson_append_array_begin(&sub, "$nin", -1, &arr);
		rc = mg_append_value(&arr, "0", &cf, &vals[0], err);
		bson_append_null(&arr, "1", -1);
		bson_append_array_end(&sub, &arr);
	} else {
		rc = mg_append_value(&sub, mop, &cf, &vals[0], err);
	}
	bson_append_document_end(doc, &sub);
	return rc;
}

int mg_filter(bson_t *filter, const emh_meta *m, const emh_query *q, emh_error *err)
{
	const emh_cond *c = q ? emh_query_cond(q) : NULL;
	bson_init(filter);
	if (!c)
		return 0;
	int rc = mg_cond(filter, m, c, false, err);
	if (rc)
		bson_destroy(filter);
	return rc;
}

void mg_find_opts(bson_t *opts, const emh_meta *m, const emh_query *q)
{
	const emh_entity *e = m->entity;
	int64_t limit = q ? emh_query_limit(q) : -1, offset = q ? emh_query_offset(q) : -1;
	size_t norder = q ? emh_query_norder(q) : 0;

	if (norder) {
		bson_t sort;
		bool by_key = false;
		bson_append_document_begin(opts, "sort", -1, &sort);
		for (size_t i = 0; i < norder; i++) {
			int fi;
			bool desc;
			char pbuf[MG_PATH_MAX];
			emh_query_order(q, i, &fi, &desc);
			if (fi < 0 || (size_t)fi >= e->nfields)
				continue;
			by_key |= fi == m->pk;
			bson_append_int32(&sort, mg_path(m, fi, true, pbuf, sizeof pbuf), -1, desc ? -1 : 1);
		}
		/* A total order, so that offset/limit pages are stable. */
		if (!by_key)
			bson_append_int32(&sort, "_id", -1, 1);
		bson_append_document_end(opts, &sort);
	}
	if (offset > 0)
		bson_append_int64(opts, "skip", -1, offset);
	if (limit > 0)
		bson_append_int64(opts, "limit", -1, limit);
}
