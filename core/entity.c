/* SPDX-License-Identifier: MIT */
/*
 * core/entity.c: entity declarations: validation, identifiers, values, and
 * the host's own deep copy of a declaration (taken at registration, so that
 * nothing a context holds points into the caller's memory).
 */
#include "config.h"

#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#include <emhost/entity.h>

#include "internal.h"

static const char *const type_names[] = {
	[EMH_T_BOOL] = "bool",     [EMH_T_INT32] = "int32", [EMH_T_INT64] = "int64",
	[EMH_T_DOUBLE] = "double", [EMH_T_TEXT] = "text",   [EMH_T_BLOB] = "blob",
	[EMH_T_TIMESTAMP] = "timestamp", [EMH_T_JSON] = "json",
};

const char *emh_type_name(emh_type t)
{
	return (t >= 1 && t <= EMH_T__MAX) ? type_names[t] : "?";
}

emh_value emh_v_text(const char *s)
{
	return emh_v_textn(s, s ? strlen(s) : 0);
}

emh_value emh_v_json(const char *s)
{
	emh_value v = emh_v_textn(s, s ? strlen(s) : 0);
	v.type = EMH_T_JSON;
	return v;
}

bool emh_ident_valid(const char *s)
{
	if (!s || !*s)
		return false;
	size_t n = 0;
	for (const char *p = s; *p; p++, n++) {
		char c = *p;
		bool alpha = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
		if (!alpha && !(n > 0 && c >= '0' && c <= '9'))
			return false;
	}
	return n <= 63;
}

int emh_entity_field_index(const emh_entity *e, const char *name)
{
	if (!e || !name)
		return -1;
	for (size_t i = 0; i < e->nfields; i++)
		if (strcmp(e->fields[i].name, name) == 0)
			return (int)i;
	return -1;
}

/* The C member kind each field type needs, and its size. */
static bool kind_fits(const emh_field *f)
{
	switch (f->type) {
	case EMH_T_BOOL:
		return f->ckind == EMH_CK_BOOL && f->size == sizeof(bool);
	case EMH_T_INT32:
		return f->ckind == EMH_CK_INT32 && f->size == sizeof(int32_t);
	case EMH_T_INT64:
	case EMH_T_TIMESTAMP:
		return f->ckind == EMH_CK_INT64 && f->size == sizeof(int64_t);
	case EMH_T_DOUBLE:
		return f->ckind == EMH_CK_DOUBLE && f->size == sizeof(double);
	case EMH_T_TEXT:
	case EMH_T_JSON:
		return f->ckind == EMH_CK_STRING && f->size == sizeof(char *);
	case EMH_T_BLOB:
		return f->ckind == EMH_CK_BLOB && f->size == sizeof(emh_blob);
	}
	return false;
}

static const char *const member_types[] = {
	[EMH_T_BOOL] = "bool",     [EMH_T_INT32] = "int32_t", [EMH_T_INT64] = "int64_t",
	[EMH_T_DOUBLE] = "double", [EMH_T_TEXT] = "const char *", [EMH_T_BLOB] = "emh_blob",
	[EMH_T_TIMESTAMP] = "emh_time", [EMH_T_JSON] = "const char *",
};

int emh_entity_validate(const emh_entity *e, emh_error *err)
{
	if (!e)
		return emh_error_set(err, EMH_EINVAL, "entity is NULL");
	const char *en = e->name ? e->name : "(unnamed)";
	if (!e->name || !*e->name)
		return emh_error_set(err, EMH_EINVAL, "entity has no name");
	if (!emh_ident_valid(e->table))
		return emh_error_set(err, EMH_EINVAL,
				     "entity '%s': table name '%s' is not a valid identifier "
				     "([A-Za-z_][A-Za-z0-9_]*, at most 63 bytes)",
				     en, e->table ? e->table : "(null)");
	if (!e->fields || e->nfields == 0)
		return emh_error_set(err, EMH_EINVAL, "entity '%s' has no fields", en);
	if (e->nfields > EMH_ENTITY_MAX_FIELDS)
		return emh_error_set(err, EMH_EINVAL, "entity '%s' has %zu fields; at most %d", en,
				     e->nfields, EMH_ENTITY_MAX_FIELDS);
	int pk = -1, version = -1;
	for (size_t i = 0; i < e->nfields; i++) {
		const emh_field *f = &e->fields[i];
		const char *fn = f->name ? f->name : "(unnamed)";
		if (!f->name || !*f->name)
			return emh_error_set(err, EMH_EINVAL, "entity '%s': field %zu has no name", en, i);
		if (!emh_ident_valid(f->column))
			return emh_error_set(err, EMH_EINVAL,
					     "entity '%s', field '%s': column '%s' is not a valid identifier",
					     en, fn, f->column ? f->column : "(null)");
		if (f->type < 1 || f->type > EMH_T__MAX)
			return emh_error_set(err, EMH_EINVAL, "entity '%s', field '%s': unknown type %d",
					     en, fn, (int)f->type);
		if (!kind_fits(f))
			return emh_error_set(err, EMH_EINVAL,
					     "entity '%s', field '%s': type %s needs a member of type %s",
					     en, fn, emh_type_name(f->type), member_types[f->type]);
		if (f->offset + f->size > e->size)
			return emh_error_set(err, EMH_EINVAL,
					     "entity '%s', field '%s': member lies outside the struct", en, fn);
		if (f->max_len && f->type != EMH_T_TEXT && f->type != EMH_T_JSON && f->type != EMH_T_BLOB)
			return emh_error_set(err, EMH_EINVAL,
					     "entity '%s', field '%s': max_len %u on a %s field (it limits text, json and "
					     "blob fields)", en, fn, (unsigned)f->max_len, emh_type_name(f->type));
		for (size_t j = 0; j < i; j++) {
			if (strcmp(e->fields[j].name, f->name) == 0)
				return emh_error_set(err, EMH_EINVAL,
						     "entity '%s': duplicate field '%s'", en, fn);
			if (strcmp(e->fields[j].column, f->column) == 0)
				return emh_error_set(err, EMH_EINVAL,
						     "entity '%s': fields '%s' and '%s' share column '%s'",
						     en, e->fields[j].name, fn, f->column);
		}
		if (f->flags & EMH_F_PK) {
			if (pk >= 0)
				return emh_error_set(err, EMH_EINVAL,
						     "entity '%s': fields '%s' and '%s' are both marked EMH_F_PK "
						     "(one primary key field)",
						     en, e->fields[pk].name, fn);
			pk = (int)i;
			if (f->type != EMH_T_INT32 && f->type != EMH_T_INT64 && f->type != EMH_T_TEXT)
				return emh_error_set(err, EMH_EINVAL,
						     "entity '%s', field '%s': a primary key must be int32, int64 or text",
						     en, fn);
			if (f->flags & EMH_F_NULLABLE)
				return emh_error_set(err, EMH_EINVAL,
						     "entity '%s', field '%s': a primary key cannot be nullable", en, fn);
		}
		if (f->flags & EMH_F_VERSION) {
			if (version >= 0)
				return emh_error_set(err, EMH_EINVAL,
						     "entity '%s': fields '%s' and '%s' are both marked EMH_F_VERSION "
						     "(one version field)",
						     en, e->fields[version].name, fn);
			version = (int)i;
			if (f->type != EMH_T_INT64 && f->type != EMH_T_TIMESTAMP)
				return emh_error_set(err, EMH_EINVAL,
						     "entity '%s', field '%s': a version field must be int64 or timestamp",
						     en, fn);
			if (f->flags & (EMH_F_PK | EMH_F_NULLABLE))
				return emh_error_set(err, EMH_EINVAL,
						     "entity '%s', field '%s': a version field cannot be the key or nullable",
						     en, fn);
		}
		if ((f->flags & EMH_F_GENERATED) &&
		    (!(f->flags & EMH_F_PK) || (f->type != EMH_T_INT32 && f->type != EMH_T_INT64)))
			return emh_error_set(err, EMH_EINVAL,
					     "entity '%s', field '%s': EMH_F_GENERATED needs an int32/int64 primary key",
					     en, fn);
	}
	if (pk < 0)
		return emh_error_set(err, EMH_EINVAL, "entity '%s' has no primary key (mark one field EMH_F_PK)", en);
	for (size_t i = 0; i < e->nindexes; i++) {
		const emh_index *ix = &e->indexes[i];
		if (!emh_ident_valid(ix->name))
			return emh_error_set(err, EMH_EINVAL, "entity '%s': index name '%s' is not a valid identifier",
					     en, ix->name ? ix->name : "(null)");
		if (!ix->fields || !ix->fields[0])
			return emh_error_set(err, EMH_EINVAL, "entity '%s': index '%s' names no field", en, ix->name);
		for (const char *const *fp = ix->fields; *fp; fp++)
			if (emh_entity_field_index(e, *fp) < 0)
				return emh_error_set(err, EMH_EINVAL, "entity '%s': index '%s' names unknown field '%s'",
						     en, ix->name, *fp);
	}
	return 0;
}

/* ---- the host's copy ---- */

static size_t str_size(const char *s) { return s ? strlen(s) + 1 : 0; }

static size_t align_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

/* Copy s into the string area and advance it; NULL stays NULL. */
static const char *str_put(char **area, const char *s)
{
	if (!s)
		return NULL;
	size_t n = strlen(s) + 1;
	char *d = memcpy(*area, s, n);
	*area += n;
	return d;
}

emh_entity *emh__entity_dup(const emh_entity *e)
{
	size_t nrefs = 0, strs = str_size(e->name) + str_size(e->table);
	for (size_t i = 0; i < e->nfields; i++)
		strs += str_size(e->fields[i].name) + str_size(e->fields[i].column);
	for (size_t i = 0; i < e->nindexes; i++) {
		strs += str_size(e->indexes[i].name);
		for (const char *const *f = e->indexes[i].fields; *f; f++, nrefs++)
			strs += str_size(*f);
		nrefs++; /* each list's NULL */
	}
	/* One block: entity, fields, indexes, index field lists, strings. */
	size_t off_fields = align_up(sizeof(emh_entity), alignof(emh_field));
	size_t off_indexes = align_up(off_fields + e->nfields * sizeof(emh_field), alignof(emh_index));
	size_t off_refs = align_up(off_indexes + e->nindexes * sizeof(emh_index), alignof(const char *));
	size_t off_strs = off_refs + nrefs * sizeof(const char *);
	char *block = malloc(off_strs + strs);
	if (!block)
		return NULL;
	emh_entity *d = (emh_entity *)block;
	emh_field *fields = (emh_field *)(block + off_fields);
	emh_index *indexes = (emh_index *)(block + off_indexes);
	const char **refs = (const char **)(block + off_refs);
	char *area = block + off_strs;

	*d = *e;
	d->name = str_put(&area, e->name);
	d->table = str_put(&area, e->table);
	d->fields = fields;
	for (size_t i = 0; i < e->nfields; i++) {
		fields[i] = e->fields[i];
		fields[i].name = str_put(&area, e->fields[i].name);
		fields[i].column = str_put(&area, e->fields[i].column);
	}
	d->indexes = e->nindexes ? indexes : NULL;
	for (size_t i = 0; i < e->nindexes; i++) {
		indexes[i] = e->indexes[i];
		indexes[i].name = str_put(&area, e->indexes[i].name);
		indexes[i].fields = refs;
		for (const char *const *f = e->indexes[i].fields; *f; f++)
			*refs++ = str_put(&area, *f);
		*refs++ = NULL;
	}
	return d;
}

bool emh__entity_same(const emh_entity *a, const emh_entity *b)
{
	if (a == b)
		return true;
	if (strcmp(a->name, b->name) != 0 || strcmp(a->table, b->table) != 0 || a->size != b->size ||
	    a->nfields != b->nfields || a->nindexes != b->nindexes)
		return false;
	for (size_t i = 0; i < a->nfields; i++) {
		const emh_field *x = &a->fields[i], *y = &b->fields[i];
		if (strcmp(x->name, y->name) != 0 || strcmp(x->column, y->column) != 0 ||
		    x->type != y->type || x->flags != y->flags || x->offset != y->offset ||
		    x->size != y->size || x->ckind != y->ckind || x->max_len != y->max_len)
			return false;
	}
	for (size_t i = 0; i < a->nindexes; i++) {
		const emh_index *x = &a->indexes[i], *y = &b->indexes[i];
		if (strcmp(x->name, y->name) != 0 || x->unique != y->unique)
			return false;
		size_t k = 0;
		for (; x->fields[k] && y->fields[k]; k++)
			if (strcmp(x->fields[k], y->fields[k]) != 0)
				return false;
		if (x->fields[k] || y->fields[k])
			return false;
	}
	return true;
}
