/* SPDX-License-Identifier: MIT */
/*
 * core/filter.c: global filters (EMH_F_FILTER), the "shared database with a
 * tenant column" pattern.  A fork holds named parameters; an entity's filter
 * field is bound to the parameter of its name.  Reads run the query this
 * file narrows (filter = parameter AND the caller's condition), writes stamp
 * or check the filter fields, and an unset parameter stops the call with
 * EMH_ESTATE before anything is sent: there is no path to an unfiltered read
 * but emh_q_unfiltered.
 */
#include "config.h"

#include <string.h>

#include "em_int.h"
#include "query_int.h"

/* ---- parameters ---- */

static emh__param *param_find(const emh_em *em, const char *name)
{
	for (size_t i = 0; i < em->nparams; i++)
		if (strcmp(em->params[i].name, name) == 0)
			return &em->params[i];
	return NULL;
}

int emh__param_check(const char *name, const emh_value *v, emh_error *err)
{
	if (!emh_ident_valid(name))
		return emh_error_set(err, EMH_EINVAL, "'%s' is not a parameter name (an identifier)",
				     name ? name : "(null)");
	if (v->is_null || v->type == EMH_T_DOUBLE || v->type == EMH_T_BLOB || v->type == EMH_T_JSON ||
	    v->type < 1 || v->type > EMH_T__MAX)
		return emh_error_set(err, EMH_EINVAL,
				     "parameter '%s': a filter value is a non-NULL bool, int32, int64, text or "
				     "timestamp, not %s%s", name, v->is_null ? "NULL " : "", emh_type_name(v->type));
	return 0;
}

int emh_em_set_param(emh_em *em, const char *name, emh_value v, emh_error *err)
{
	if (!em)
		return emh_error_set(err, EMH_EINVAL, "emh_em_set_param: no fork given");
	int rc = emh__param_check(name, &v, err);
	if (rc)
		return emh__em_fail(em, rc, err);
	if (v.type == EMH_T_TEXT) {
		char *s = emh__arena_strndup(&em->arena, v.u.s.ptr ? v.u.s.ptr : "", v.u.s.len);
		if (!s)
			return emh_error_set(err, EMH_ENOMEM, "out of memory");
		v.u.s.ptr = s;
	}
	emh__param *p = param_find(em, name);
	if (p) {
		p->v = v;
		return 0;
	}
	if (em->nparams == em->pcap) {
		size_t cap = em->pcap ? em->pcap * 2 : 4;
		emh__param *nv = emh__arena_alloc(&em->arena, cap * sizeof *nv);
		if (!nv)
			return emh_error_set(err, EMH_ENOMEM, "out of memory");
		if (em->nparams)
			memcpy(nv, em->params, em->nparams * sizeof *nv);
		em->params = nv;
		em->pcap = cap;
	}
	const char *n = emh__arena_strndup(&em->arena, name, strlen(name));
	if (!n)
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	em->params[em->nparams++] = (emh__param){.name = n, .v = v};
	return 0;
}

const emh_value *emh_em_param(const emh_em *em, const char *name)
{
	const emh__param *p = em && name ? param_find(em, name) : NULL;
	return p ? &p->v : NULL;
}

/*
 * The fork's value for filter field i of m, converted to the field's type
 * into *out: 0, or 1 when the parameter is unset, -1 when its value does
 * not suit the field.
 */
static int param_value(const emh_em *em, const emh__meta *m, int i, emh_value *out)
{
	const emh_field *f = &m->pub.entity->fields[i];
	const emh__param *p = param_find(em, f->name);
	if (!p)
		return 1;
	emh_value v = p->v;
	bool vint = v.type == EMH_T_INT32 || v.type == EMH_T_INT64 || v.type == EMH_T_TIMESTAMP;
	bool ok = v.type == f->type;
	if (vint && (f->type == EMH_T_INT64 || f->type == EMH_T_TIMESTAMP)) {
		v.u.i64 = v.type == EMH_T_INT32 ? v.u.i32 : v.u.i64;
		v.type = f->type;
		ok = true;
	} else if (vint && f->type == EMH_T_INT32) {
		int64_t x = v.type == EMH_T_INT32 ? v.u.i32 : v.u.i64;
		ok = x >= INT32_MIN && x <= INT32_MAX;
		v = emh_v_int32((int32_t)x);
	}
	*out = v;
	return ok ? 0 : -1;
}

/* param_value with its error: EMH_ESTATE when the parameter is unset (never
 * an unfiltered read), EMH_EINVAL when it does not suit the field. */
static int filter_value(emh_em *em, const emh__meta *m, int i, emh_value *out, emh_error *err)
{
	const emh_entity *e = m->pub.entity;
	const emh_field *f = &e->fields[i];
	int r = param_value(em, m, i, out);
	if (r > 0)
		return emh__em_fail(em, emh_error_set(err, EMH_ESTATE,
						  "entity '%s' is filtered by '%s', and this fork has no parameter "
						  "'%s': set it (emh_em_set_param, emh_scope_set_param) or opt a query "
						  "out (emh_q_unfiltered)",
						  e->name, f->name, f->name), err);
	if (r < 0)
		return emh__em_fail(em, emh_error_set(err, EMH_EINVAL,
						  "entity '%s': parameter '%s' is %s, which does not suit its %s "
						  "filter field",
						  e->name, f->name, emh_type_name(param_find(em, f->name)->v.type),
						  emh_type_name(f->type)), err);
	return 0;
}

static bool value_same(const emh_value *a, const emh_value *b)
{
	if (a->is_null || b->is_null)
		return a->is_null == b->is_null;
	if (a->type == EMH_T_TEXT)
		return a->u.s.len == b->u.s.len && memcmp(a->u.s.ptr, b->u.s.ptr, a->u.s.len) == 0;
	return emh__value_i64(a) == emh__value_i64(b);
}

/* ---- reads ---- */

int emh__em_filter(emh_em *em, emh__meta *m, const emh_query *q, const emh_query **out, emh_error *err)
{
	*out = q;
	if (!m->filters || (q && q->unfiltered))
		return 0;
	const emh_entity *e = m->pub.entity;
	emh_query *fq = emh__query_copy(&em->arena, e, q);
	if (!fq)
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	emh_cond *conds[EMH_ENTITY_MAX_FIELDS];
	size_t n = 0;
	for (size_t i = 0; i < e->nfields; i++) {
		if (!((m->filters >> i) & 1))
			continue;
		emh_value v;
		int rc = filter_value(em, m, (int)i, &v, err);
		if (rc)
			return rc;
		conds[n++] = emh_q_eq(fq, e->fields[i].name, v);
	}
	emh__query_restrict(fq, n == 1 ? conds[0] : emh_q_and_n(fq, conds, n));
	int rc = emh__query_error(fq, err);
	if (rc)
		return emh__em_fail(em, rc, err);
	*out = fq;
	return 0;
}

bool emh__filter_match(emh_em *em, const emh__obj *o)
{
	const emh_entity *e = o->m->pub.entity;
	const void *stored = o->snap ? o->snap : OBJ(o);
	for (size_t i = 0; i < e->nfields; i++) {
		if (!((o->m->filters >> i) & 1))
			continue;
		emh_value want, have = emh__obj_value(o, stored, &e->fields[i], (int)i);
		if (param_value(em, o->m, (int)i, &want) != 0 || !value_same(&have, &want))
			return false;
	}
	return true;
}

/* ---- writes ---- */

/* A member still at its zero value: text NULL, integers and bool 0. */
static bool member_unset(const emh_value *v)
{
	if (v->is_null)
		return true;
	return v->type == EMH_T_TEXT ? false : emh__value_i64(v) == 0;
}

int emh__filter_stamp(emh_em *em, emh__obj *o, emh_error *err)
{
	const emh_entity *e = o->m->pub.entity;
	char *obj = OBJ(o);
	for (size_t i = 0; i < e->nfields; i++) {
		if (!((o->m->filters >> i) & 1))
			continue;
		const emh_field *f = &e->fields[i];
		emh_value want, have = emh__obj_value(o, obj, f, (int)i);
		int rc = filter_value(em, o->m, (int)i, &want, err);
		if (rc)
			return rc;
		if (value_same(&have, &want))
			continue;
		if (!member_unset(&have))
			return emh__em_fail(em, emh_error_set(err, EMH_EINVAL,
							  "new '%s': field '%s' holds another value than this fork's "
							  "parameter '%s' (a row outside the filter)",
							  e->name, f->name, f->name), err);
		switch (f->type) {
		case EMH_T_TEXT:
			memcpy(obj + f->offset, &want.u.s.ptr, sizeof want.u.s.ptr);
			break;
		case EMH_T_BOOL:
			memcpy(obj + f->offset, &want.u.b, sizeof want.u.b);
			break;
		case EMH_T_INT32:
			memcpy(obj + f->offset, &want.u.i32, sizeof want.u.i32);
			break;
		default: /* int64, timestamp */
			memcpy(obj + f->offset, &want.u.i64, sizeof want.u.i64);
			break;
		}
	}
	return 0;
}

int emh__filter_check_write(emh_em *em, emh__obj *o, uint64_t mask, emh_error *err)
{
	const emh_entity *e = o->m->pub.entity;
	for (size_t i = 0; i < e->nfields; i++) {
		if (!((o->m->filters >> i) & 1))
			continue;
		const emh_field *f = &e->fields[i];
		emh_value want, stored = emh__obj_value(o, o->snap, f, (int)i);
		int rc = filter_value(em, o->m, (int)i, &want, err);
		if (rc)
			return rc;
		if (!value_same(&stored, &want))
			return emh__em_fail(em, emh_error_set(err, EMH_ESTATE,
							  "'%s' stored with another '%s' than this fork's parameter: "
							  "not %s", e->name, f->name, mask ? "updated" : "removed"), err);
		if ((mask >> i) & 1)
			return emh__em_fail(em, emh_error_set(err, EMH_EINVAL,
							  "entity '%s': field '%s' is a filter field and cannot change",
							  e->name, f->name), err);
	}
	return 0;
}
