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

#include "relation_int.h"

static const char *const type_names[] = {
	[EMH_T_BOOL] = "bool",     [EMH_T_INT32] = "int32", [EMH_T_INT64] = "int64",
	[EMH_T_DOUBLE] = "double", [EMH_T_TEXT] = "text",   [EMH_T_BLOB] = "blob",
	[EMH_T_TIMESTAMP] = "timestamp", [EMH_T_JSON] = "json", [EMH_T_RELATION] = "relation",
};

const char *emh_type_name(emh_type t)
{
	return (t >= 1 && t <= EMH_T_RELATION) ? type_names[t] : "?";
}

static bool is_rel(const emh_field *f) { return f->type == EMH_T_RELATION; }

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

int emh_entity_field_index(const emh_entity *e, const char *name) { return e ? emh__field_index(e, name) : -1; }

int emh__entity_column(const emh_entity *e, const char *name)
{
	for (size_t i = 0; e && e->fields && name && i < e->nfields; i++)
		if (!is_rel(&e->fields[i]) && e->fields[i].name && strcmp(e->fields[i].name, name) == 0)
			return (int)i;
	return -1;
}

const emh_field *emh__entity_pk(const emh_entity *e)
{
	for (size_t i = 0; e && e->fields && i < e->nfields; i++)
		if (!is_rel(&e->fields[i]) && (e->fields[i].flags & EMH_F_PK))
			return &e->fields[i];
	return NULL;
}

/* What every version of emh_relation holds: the members of the first one. */
#define REL_MIN_SIZE (offsetof(emh_relation, context) + sizeof(const char *))

void emh__relation_read(const emh_relation *src, emh_relation *out)
{
	memset(out, 0, sizeof *out);
	memcpy(out, src, src->struct_size < sizeof *out ? src->struct_size : sizeof *out);
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

/* Keys that can hold one another: integers of either width, or text. */
static bool keys_fit(emh_type a, emh_type b)
{
	bool ai = a == EMH_T_INT32 || a == EMH_T_INT64, bi = b == EMH_T_INT32 || b == EMH_T_INT64;
	return (ai && bi) || (a == EMH_T_TEXT && b == EMH_T_TEXT);
}

static const char *const kind_names[] = {
	[EMH_REL_BELONGS_TO] = "belongs_to", [EMH_REL_HAS_MANY] = "has_many",
	[EMH_REL_HAS_ONE] = "has_one", [EMH_REL_MANY_TO_MANY] = "many_to_many",
};

/*
 * Field key of entity side (a declaration, read for its fields only) must be
 * a column whose type can hold the key of type want.  what says which side
 * it is, for the message.
 */
static int check_key_field(const char *en, const char *fn, const emh_entity *side, const char *key,
			   emh_type want, const char *what, emh_error *err)
{
	const char *sn = side->name ? side->name : "(unnamed)";
	int k = emh__entity_column(side, key);
	if (k < 0)
		return emh_error_set(err, EMH_EINVAL, "entity '%s', relation '%s': %s '%s' has no column field '%s'", en,
				     fn, what, sn, key ? key : "(null)");
	if (!keys_fit(side->fields[k].type, want))
		return emh_error_set(err, EMH_EINVAL,
				     "entity '%s', relation '%s': field '%s' of '%s' is %s and cannot hold the %s key it refers to", en,
				     fn, key, sn, emh_type_name(side->fields[k].type), emh_type_name(want));
	return 0;
}

/* A relation field of e: its description, member, and key fields on each side. */
static int validate_relation(const emh_entity *e, const emh_field *f, emh_error *err)
{
	const char *en = e->name, *fn = f->name;
	if (!emh_ident_valid(fn))
		return emh_error_set(err, EMH_EINVAL, "entity '%s': relation name '%s' is not a valid identifier", en, fn);
	if (!f->relation || f->relation->struct_size < REL_MIN_SIZE)
		return emh_error_set(err, EMH_EINVAL, "entity '%s', relation '%s': no relation description "
				     "(declare it with EMH_BELONGS_TO, EMH_HAS_MANY, ...)", en, fn);
	emh_relation r;
	emh__relation_read(f->relation, &r);
	if (r.kind < EMH_REL_BELONGS_TO || r.kind > EMH_REL_MANY_TO_MANY)
		return emh_error_set(err, EMH_EINVAL, "entity '%s', relation '%s': unknown kind %d", en, fn, (int)r.kind);
	const char *kn = kind_names[r.kind];
	bool list = r.kind == EMH_REL_HAS_MANY || r.kind == EMH_REL_MANY_TO_MANY;
	if (list ? f->ckind != EMH_CK_LIST || f->size != sizeof(emh_list)
		 : (f->ckind != EMH_CK_PTR && f->ckind != EMH_CK_OTHER) || f->size != sizeof(void *))
		return emh_error_set(err, EMH_EINVAL, "entity '%s', relation '%s': a %s needs a member of type %s", en, fn,
				     kn, list ? "emh_list" : "pointer to the target's struct");
	if (f->offset + f->size > e->size)
		return emh_error_set(err, EMH_EINVAL, "entity '%s', relation '%s': member lies outside the struct", en, fn);
	unsigned allowed = r.kind == EMH_REL_BELONGS_TO ? EMH_REL_CHECKED
			   : r.kind == EMH_REL_MANY_TO_MANY ? 0u : EMH_REL_RESTRICT;
	if (r.flags & ~allowed)
		return emh_error_set(err, EMH_EINVAL, "entity '%s', relation '%s': flags 0x%x do not apply to a %s%s", en,
				     fn, r.flags & ~allowed, kn,
				     r.kind == EMH_REL_BELONGS_TO ? " (EMH_REL_RESTRICT is for has_many/has_one)"
				     : r.kind == EMH_REL_MANY_TO_MANY ? "" : " (EMH_REL_CHECKED is for belongs_to)");
	if (r.context && !emh_ident_valid(r.context))
		return emh_error_set(err, EMH_EINVAL, "entity '%s', relation '%s': context '%s' is not a valid identifier",
				     en, fn, r.context);
	const emh_field *tpk = r.target ? emh__entity_pk(r.target) : NULL;
	if (!tpk || !r.target->name || !emh_ident_valid(r.target->table))
		return emh_error_set(err, EMH_EINVAL, "entity '%s', relation '%s': the target is %s", en, fn,
				     r.target ? "not a valid entity (name, table and a primary key)" : "NULL");
	const emh_field *pk = emh__entity_pk(e);
	int rc;
	switch (r.kind) {
	case EMH_REL_BELONGS_TO:
		return check_key_field(en, fn, e, r.key, tpk->type, "this entity", err);
	case EMH_REL_HAS_MANY:
	case EMH_REL_HAS_ONE:
		return check_key_field(en, fn, r.target, r.key, pk->type, "the target", err);
	default:
		if (!r.through || !r.through->name || !emh_ident_valid(r.through->table) || !emh__entity_pk(r.through))
			return emh_error_set(err, EMH_EINVAL, "entity '%s', relation '%s': a many_to_many needs a valid join "
					     "entity", en, fn);
		if ((rc = check_key_field(en, fn, r.through, r.key, pk->type, "the join", err)) != 0)
			return rc;
		return check_key_field(en, fn, r.through, r.through_key, tpk->type, "the join", err);
	}
}

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
	size_t ncols = 0, nrels = 0;
	for (size_t i = 0; i < e->nfields; i++)
		is_rel(&e->fields[i]) ? nrels++ : ncols++;
	if (ncols > EMH_ENTITY_MAX_FIELDS)
		return emh_error_set(err, EMH_EINVAL, "entity '%s' has %zu fields; at most %d", en, ncols,
				     EMH_ENTITY_MAX_FIELDS);
	if (nrels > EMH_ENTITY_MAX_RELATIONS)
		return emh_error_set(err, EMH_EINVAL, "entity '%s' has %zu relations; at most %d", en, nrels,
				     EMH_ENTITY_MAX_RELATIONS);
	int pk = -1, version = -1;
	for (size_t i = 0; i < e->nfields; i++) {
		const emh_field *f = &e->fields[i];
		const char *fn = f->name ? f->name : "(unnamed)";
		if (!f->name || !*f->name)
			return emh_error_set(err, EMH_EINVAL, "entity '%s': field %zu has no name", en, i);
		for (size_t j = 0; j < i; j++)
			if (strcmp(e->fields[j].name, f->name) == 0)
				return emh_error_set(err, EMH_EINVAL,
						     "entity '%s': duplicate field '%s'", en, fn);
		if (is_rel(f) && f->max_len)
			return emh_error_set(err, EMH_EINVAL,
					     "entity '%s', field '%s': max_len %u on a relation (it limits text, json and "
					     "blob fields)", en, fn, (unsigned)f->max_len);
		if (is_rel(f))
			continue; /* checked below, once the primary key is known */
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
		/* After the column is known to be an identifier: never a NULL to strcmp. */
		for (size_t j = 0; j < i; j++)
			if (!is_rel(&e->fields[j]) && strcmp(e->fields[j].column, f->column) == 0)
				return emh_error_set(err, EMH_EINVAL,
						     "entity '%s': fields '%s' and '%s' share column '%s'",
						     en, e->fields[j].name, fn, f->column);
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
		/* A filter compares with `=` and is written by every insert: a
		 * NULL would match nothing, and a key or a json/blob/double has
		 * no use as a tenant; a version changes with every update, which
		 * a filter field never does. */
		if ((f->flags & EMH_F_FILTER) &&
		    ((f->flags & (EMH_F_PK | EMH_F_NULLABLE | EMH_F_VERSION)) || f->type == EMH_T_DOUBLE ||
		     f->type == EMH_T_BLOB || f->type == EMH_T_JSON))
			return emh_error_set(err, EMH_EINVAL,
					     "entity '%s', field '%s': EMH_F_FILTER needs a non-nullable bool, int32, "
					     "int64, text or timestamp field that is neither the primary key nor the "
					     "version", en, fn);
	}
	if (pk < 0)
		return emh_error_set(err, EMH_EINVAL, "entity '%s' has no primary key (mark one field EMH_F_PK)", en);
	for (size_t i = 0; i < e->nfields; i++) {
		int rc = is_rel(&e->fields[i]) ? validate_relation(e, &e->fields[i], err) : 0;
		if (rc)
			return rc;
	}
	for (size_t i = 0; i < e->nindexes; i++) {
		const emh_index *ix = &e->indexes[i];
		if (!emh_ident_valid(ix->name))
			return emh_error_set(err, EMH_EINVAL, "entity '%s': index name '%s' is not a valid identifier",
					     en, ix->name ? ix->name : "(null)");
		if (!ix->fields || !ix->fields[0])
			return emh_error_set(err, EMH_EINVAL, "entity '%s': index '%s' names no field", en, ix->name);
		for (const char *const *fp = ix->fields; *fp; fp++)
			if (emh__entity_column(e, *fp) < 0)
				return emh_error_set(err, EMH_EINVAL, "entity '%s': index '%s' names unknown field '%s'%s",
						     en, ix->name, *fp,
						     emh_entity_field_index(e, *fp) >= 0 ? " (a relation, not a column)" : "");
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
	size_t nrefs = 0, ncols = 0, strs = str_size(e->name) + str_size(e->table);
	for (size_t i = 0; i < e->nfields; i++)
		if (!is_rel(&e->fields[i])) {
			strs += str_size(e->fields[i].name) + str_size(e->fields[i].column);
			ncols++;
		}
	for (size_t i = 0; i < e->nindexes; i++) {
		strs += str_size(e->indexes[i].name);
		for (const char *const *f = e->indexes[i].fields; *f; f++, nrefs++)
			strs += str_size(*f);
		nrefs++; /* each list's NULL */
	}
	/* One block: entity, fields, indexes, index field lists, strings. */
	size_t off_fields = align_up(sizeof(emh_entity), alignof(emh_field));
	size_t off_indexes = align_up(off_fields + ncols * sizeof(emh_field), alignof(emh_index));
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
	/* Columns only: drivers, the SQL compiler and queries index fields of
	 * the copy, and none of them must ever meet a relation. */
	d->fields = fields;
	d->nfields = ncols;
	for (size_t i = 0, k = 0; i < e->nfields; i++) {
		if (is_rel(&e->fields[i]))
			continue;
		fields[k] = e->fields[i];
		fields[k].name = str_put(&area, e->fields[i].name);
		fields[k].column = str_put(&area, e->fields[i].column);
		k++;
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

emh__rel *emh__rel_dup(const emh_field *f, unsigned idx)
{
	emh_relation r;
	emh__relation_read(f->relation, &r);
	const emh_entity *t = r.target, *j = r.kind == EMH_REL_MANY_TO_MANY ? r.through : NULL;
	size_t n = sizeof(emh__rel) + str_size(f->name) + str_size(r.key) + str_size(r.context) + str_size(t->name) +
		   str_size(t->table) + (j ? str_size(j->name) + str_size(j->table) + str_size(r.through_key) : 0);
	emh__rel *x = calloc(1, n);
	if (!x)
		return NULL;
	char *area = (char *)(x + 1);
	x->index = idx;
	x->kind = r.kind;
	x->flags = r.flags;
	x->offset = f->offset;
	x->key_col = -1;
	x->name = str_put(&area, f->name);
	x->key = str_put(&area, r.key);
	x->context = str_put(&area, r.context);
	x->target_name = str_put(&area, t->name);
	x->target_table = str_put(&area, t->table);
	x->target_print = emh__entity_print(t);
	if (j) {
		x->through_name = str_put(&area, j->name);
		x->through_table = str_put(&area, j->table);
		x->through_key = str_put(&area, r.through_key);
		x->through_print = emh__entity_print(j);
	}
	return x;
}

/* The next column field of e from *i on (advancing *i past it), or NULL. */
static const emh_field *next_column(const emh_entity *e, size_t *i)
{
	while (*i < e->nfields && is_rel(&e->fields[*i]))
		(*i)++;
	return *i < e->nfields ? &e->fields[(*i)++] : NULL;
}

bool emh__entity_same(const emh_entity *a, const emh_entity *b)
{
	if (a == b)
		return true;
	if (strcmp(a->name, b->name) != 0 || strcmp(a->table, b->table) != 0 || a->size != b->size ||
	    a->nindexes != b->nindexes)
		return false;
	size_t ia = 0, ib = 0;
	for (;;) {
		const emh_field *x = next_column(a, &ia), *y = next_column(b, &ib);
		if (!x || !y) {
			if (x || y)
				return false;
			break;
		}
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

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ ((const unsigned char *)p)[i]) * 1099511628211ULL;
	return h;
}

/* NULL hashes as the empty string's terminator alone: the print of a target
 * that is not a valid entity is never equal to a registered one's anyway. */
static uint64_t fnv_str(uint64_t h, const char *s) { return s ? fnv(h, s, strlen(s) + 1) : fnv(h, "", 1); }

uint64_t emh__entity_print(const emh_entity *e)
{
	uint64_t h = fnv_str(fnv_str(1469598103934665603ULL, e->name), e->table);
	uint64_t size = e->size;
	h = fnv(h, &size, sizeof size);
	size_t i = 0;
	for (const emh_field *f; (f = next_column(e, &i));) {
		uint64_t v[5] = {(uint64_t)f->type, f->flags, f->offset, f->size, (uint64_t)f->ckind};
		h = fnv(fnv_str(fnv_str(h, f->name), f->column), v, sizeof v);
	}
	for (size_t k = 0; k < e->nindexes; k++) {
		h = fnv(fnv_str(h, e->indexes[k].name), &e->indexes[k].unique, sizeof(bool));
		for (const char *const *fp = e->indexes[k].fields; fp && *fp; fp++)
			h = fnv_str(h, *fp);
	}
	return h;
}
