/* SPDX-License-Identifier: MIT */
/*
 * plugins/mongo/mongo_value.c: emhost values as BSON fields and back, in the
 * storage layout mongo_int.h describes, and documents delivered as rows.
 */
#include "config.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mongoc/mongoc.h>

#include <emhost/buf.h>
#include <emhost/driver.h>

#include "mongo_int.h"

bool mg_null_absent(const emh_field *f)
{
	return (f->flags & EMH_F_UNIQUE) && (f->flags & EMH_F_NULLABLE) && !(f->flags & EMH_F_PK);
}

static int64_t mg_floor_div(int64_t a, int64_t b)
{
	int64_t q = a / b;
	return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

int mg_append_value(bson_t *doc, const char *key, const emh_field *f, const emh_value *v, emh_error *err)
{
	bool ok = true;

	if (v->is_null)
		return bson_append_null(doc, key, -1) ? 0 : emh_error_set(err, EMH_EINVAL, "document too large");
	switch (f->type) {
	case EMH_T_BOOL:
		ok = bson_append_bool(doc, key, -1, v->u.b);
		break;
	case EMH_T_INT32:
	case EMH_T_INT64:
		if (v->type == EMH_T_INT32)
			ok = bson_append_int32(doc, key, -1, v->u.i32);
		else if (v->type == EMH_T_DOUBLE)
			ok = bson_append_double(doc, key, -1, v->u.d);
		else if (f->type == EMH_T_INT32 && v->u.i64 >= INT32_MIN && v->u.i64 <= INT32_MAX)
			ok = bson_append_int32(doc, key, -1, (int32_t)v->u.i64);
		else
			ok = bson_append_int64(doc, key, -1, v->u.i64);
		break;
	case EMH_T_DOUBLE:
		if (v->type == EMH_T_INT32)
			ok = bson_append_double(doc, key, -1, v->u.i32);
		else if (v->type == EMH_T_INT64)
			ok = bson_append_double(doc, key, -1, (double)v->u.i64);
		else
			ok = bson_append_double(doc, key, -1, v->u.d);
		break;
	case EMH_T_TEXT:
		if (v->u.s.len > INT32_MAX - 1)
			return emh_error_set(err, EMH_EINVAL, "field '%s': text too long", f->name);
		ok = bson_append_utf8(doc, key, -1, v->u.s.ptr ? v->u.s.ptr : "", (int)v->u.s.len);
		break;
	case EMH_T_BLOB:
		if (v->u.s.len > INT32_MAX - 1)
			return emh_error_set(err, EMH_EINVAL, "field '%s': blob too long", f->name);
		ok = bson_append_binary(doc, key, -1, BSON_SUBTYPE_BINARY,
					(const uint8_t *)(v->u.s.ptr ? v->u.s.ptr : ""), (uint32_t)v->u.s.len);
		break;
	case EMH_T_TIMESTAMP: {
		bson_t sub;
		ok = bson_append_document_begin(doc, key, -1, &sub) &&
		     bson_append_date_time(&sub, MG_TS_DATE, -1, mg_floor_div(v->u.i64, 1000)) &&
		     bson_append_int64(&sub, MG_TS_US, -1, v->u.i64) && bson_append_document_end(doc, &sub);
		break;
	}
	case EMH_T_JSON:
		return mg_json_append(doc, key, v->u.s.ptr ? v->u.s.ptr : "", v->u.s.len, f->name, err);
	default:
		return emh_error_set(err, EMH_EINVAL, "field '%s': unsupported type %d", f->name, (int)f->type);
	}
	return ok ? 0 : emh_error_set(err, EMH_EINVAL, "field '%s': document too large", f->name);
}

const char *mg_path(const emh_meta *m, int i, bool compare, char *buf, size_t cap)
{
	const emh_field *f = &m->entity->fields[i];
	if (i == m->pk)
		return "_id";
	if (compare && f->type == EMH_T_TIMESTAMP) {
		snprintf(buf, cap, "%s.%s", f->column, MG_TS_US);
		return buf;
	}
	return f->column;
}

/* Read value of field f from it (its type as stored) into out; *owned gets
 * a malloc'd buffer the value points into (json), to free after the row. */
static int mg_read_value(bson_iter_t *it, const emh_meta *m, const emh_field *f, emh_value *out, char **owned,
			 emh_error *err)
{
	bson_type_t t = bson_iter_type(it);
	memset(out, 0, sizeof *out);
	out->type = f->type;
	if (t == BSON_TYPE_NULL || t == BSON_TYPE_UNDEFINED) {
		out->is_null = true;
		return 0;
	}
	switch (f->type) {
	case EMH_T_BOOL:
		if (t != BSON_TYPE_BOOL)
			goto out_type;
		out->u.b = bson_iter_bool(it);
		return 0;
	case EMH_T_INT32:
	case EMH_T_INT64: {
		int64_t v;
		if (t == BSON_TYPE_INT32)
			v = bson_iter_int32(it);
		else if (t == BSON_TYPE_INT64)
			v = bson_iter_int64(it);
		else if (t == BSON_TYPE_DOUBLE && bson_iter_double(it) == (double)(int64_t)bson_iter_double(it))
			v = (int64_t)bson_iter_double(it);
		else
			goto out_type;
		if (f->type == EMH_T_INT32) {
			if (v < INT32_MIN || v > INT32_MAX)
				goto out_type;
			out->u.i32 = (int32_t)v;
		} else {
			out->u.i64 = v;
		}
		return 0;
	}
	case EMH_T_DOUBLE:
		if (t != BSON_TYPE_DOUBLE && t != BSON_TYPE_INT32 && t != BSON_TYPE_INT64)
			goto out_type;
		out->u.d = bson_iter_as_double(it);
		return 0;
	case EMH_T_TEXT: {
		uint32_t n;
		if (t != BSON_TYPE_UTF8)
			goto out_type;
		out->u.s.ptr = bson_iter_utf8(it, &n);
		out->u.s.len = n;
		return 0;
	}
	case EMH_T_BLOB: {
		bson_subtype_t st;
		uint32_t n;
		const uint8_t *data;
		if (t != BSON_TYPE_BINARY)
			goto out_type;
		bson_iter_binary(it, &st, &n, &data);
		out->u.s.ptr = data ? (const char *)data : "";
		out->u.s.len = n;
		return 0;
	}
	case EMH_T_TIMESTAMP: {
		bson_iter_t sub;
		/* us is written as int64; wire-compatible servers may hand back
		 * an int32 or an integral double of the same value. */
		if (t == BSON_TYPE_DOCUMENT && bson_iter_recurse(it, &sub) && bson_iter_find(&sub, MG_TS_US) &&
		    (BSON_ITER_HOLDS_INT64(&sub) || BSON_ITER_HOLDS_INT32(&sub) ||
		     (BSON_ITER_HOLDS_DOUBLE(&sub) &&
		      bson_iter_double(&sub) == (double)(int64_t)bson_iter_double(&sub)))) {
			out->u.i64 = bson_iter_as_int64(&sub);
			return 0;
		}
		if (t == BSON_TYPE_DATE_TIME) { /* written by another tool */
			out->u.i64 = bson_iter_date_time(it) * 1000;
			return 0;
		}
		goto out_type;
	}
	case EMH_T_JSON: {
		if (t == BSON_TYPE_UTF8) {
			uint32_t n;
			out->u.s.ptr = bson_iter_utf8(it, &n);
			out->u.s.len = n;
			return 0;
		}
		emh_buf b = EMH_BUF_INIT;
		mg_json_write(&b, it);
		size_t len = b.len;
		if (!(*owned = emh_buf_take(&b)))
			return emh_error_set(err, EMH_ENOMEM, "out of memory");
		out->u.s.ptr = *owned;
		out->u.s.len = len;
		return 0;
	}
	default:
		break;
	}
out_type:
	return emh_error_set(err, EMH_ESCHEMA, "collection '%s' field '%s': stored as BSON type 0x%02x, expected %s",
			     m->entity->table, f->column, (unsigned)t, emh_type_name(f->type));
}

int mg_deliver(const bson_t *doc, const emh_meta *m, emh_rowsink *sink, emh_error *err)
{
	const emh_entity *e = m->entity;
	emh_value vals[EMH_ENTITY_MAX_FIELDS];
	char *owned[EMH_ENTITY_MAX_FIELDS];
	bool seen[EMH_ENTITY_MAX_FIELDS] = {false};
	bson_iter_t it;
	size_t nowned = 0;
	int rc = 0;

	if (!bson_iter_init(&it, doc))
		return emh_error_set(err, EMH_EDRIVER, "collection '%s': corrupt document", e->table);
	while (bson_iter_next(&it)) {
		const char *k = bson_iter_key(&it);
		for (size_t i = 0; i < e->nfields; i++) {
			const char *col = (int)i == m->pk ? "_id" : e->fields[i].column;
			if (seen[i] || strcmp(k, col) != 0)
				continue;
			char *o = NULL;
			rc = mg_read_value(&it, m, &e->fields[i], &vals[i], &o, err);
			if (o)
				owned[nowned++] = o;
			if (rc)
				goto out;
			seen[i] = true;
			break;
		}
	}
	for (size_t i = 0; i < e->nfields; i++) {
		if (!seen[i]) {
			memset(&vals[i], 0, sizeof vals[i]);
			vals[i].type = e->fields[i].type;
			vals[i].is_null = true;
		}
	}
	rc = sink->row(sink, vals, err);
out:
	for (size_t i = 0; i < nowned; i++)
		free(owned[i]);
	return rc;
}
