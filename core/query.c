/* SPDX-License-Identifier: MIT */
/*
 * core/query.c: the query builder.  Builder calls never return a status: the
 * first mistake is kept in the query and reported, with its message, by the
 * call that runs it, so a chain of builder calls stays readable and a mistake
 * cannot pass unnoticed.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "query_int.h"

emh_query *emh__query_new(emh__arena *arena, const emh_entity *e)
{
	emh_query *q = emh__arena_alloc(arena, sizeof *q);
	if (q)
		*q = (emh_query){.e = e, .arena = arena, .limit = -1, .offset = -1};
	return q;
}

static void *fail(emh_query *q, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void *fail(emh_query *q, int code, const char *fmt, ...)
{
	if (q && !q->err_code) {
		char msg[256];
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(msg, sizeof msg, fmt, ap);
		va_end(ap);
		q->err_code = code;
		q->err_msg = emh__arena_strndup(q->arena, msg, strlen(msg));
		if (!q->err_msg)
			q->err_msg = "out of memory";
	}
	return NULL;
}

int emh__query_error(const emh_query *q, emh_error *err)
{
	if (!q || !q->err_code)
		return 0;
	return emh_error_set(err, q->err_code, "query on '%s': %s", q->e->name, q->err_msg);
}

/* The mistake of naming no field of the entity: kept in q, with the fields it has. */
static __attribute__((noinline, cold)) int no_field(emh_query *q, const char *name)
{
	char list[512];
	size_t off = 0;
	list[0] = '\0';
	for (size_t k = 0; k < q->e->nfields && off < sizeof list; k++)
		off += (size_t)snprintf(list + off, sizeof list - off, "%s%s", k ? ", " : "", q->e->fields[k].name);
	fail(q, EMH_EINVAL, "no field '%s' in entity '%s' (fields: %s)", name ? name : "(null)", q->e->name, list);
	return -1;
}

static inline int field_of(emh_query *q, const char *name)
{
	int i = emh__field_index(q->e, name);
	return i >= 0 ? i : no_field(q, name);
}

/* Copy v into the arena, checked against field f's type and coerced to it. */
static bool value_conv(emh_query *q, const emh_field *f, emh_value v, emh_value *out)
{
	if (v.is_null) {
		fail(q, EMH_EINVAL, "field '%s': a NULL value never compares equal; use emh_q_is_null", f->name);
		return false;
	}
	bool ok = v.type == f->type;
	bool vint = v.type == EMH_T_INT32 || v.type == EMH_T_INT64;
	switch (f->type) {
	case EMH_T_INT32:
		if (vint) {
			int64_t x = v.type == EMH_T_INT32 ? v.u.i32 : v.u.i64;
			if (x < INT32_MIN || x > INT32_MAX) {
				fail(q, EMH_EINVAL, "field '%s': value %lld does not fit int32", f->name, (long long)x);
				return false;
			}
			v = emh_v_int32((int32_t)x);
			ok = true;
		}
		break;
	case EMH_T_INT64:
	case EMH_T_TIMESTAMP:
		if (vint || v.type == EMH_T_TIMESTAMP) {
			int64_t x = v.type == EMH_T_INT32 ? v.u.i32 : v.u.i64;
			v.type = f->type;
			v.u.i64 = x;
			ok = true;
		}
		break;
	case EMH_T_JSON:
		if (v.type == EMH_T_TEXT) {
			v.type = EMH_T_JSON;
			ok = true;
		}
		break;
	default:
		break;
	}
	if (!ok) {
		fail(q, EMH_EINVAL, "field '%s' is %s; the value given is %s", f->name, emh_type_name(f->type),
		     emh_type_name(v.type));
		return false;
	}
	if (v.type == EMH_T_TEXT || v.type == EMH_T_JSON || v.type == EMH_T_BLOB) {
		char *copy = emh__arena_strndup(q->arena, v.u.s.ptr ? v.u.s.ptr : "", v.u.s.len);
		if (!copy) {
			fail(q, EMH_ENOMEM, "out of memory");
			return false;
		}
		v.u.s.ptr = copy;
	}
	*out = v;
	return true;
}

/* Is v of field f's own type, not NULL and without text (what most
 * comparisons give): nothing to check, convert or copy? */
static inline bool value_plain(const emh_field *f, const emh_value *v)
{
	return v->type == f->type && !v->is_null && v->type != EMH_T_TEXT && v->type != EMH_T_JSON &&
	       v->type != EMH_T_BLOB;
}

/* value_conv, with a plain value stored here, without a call. */
static inline bool value_for(emh_query *q, const emh_field *f, const emh_value *v, emh_value *out)
{
	if (value_plain(f, v)) {
		*out = *v;
		return true;
	}
	return value_conv(q, f, *v, out);
}

emh__cond_sum emh__cond_walk(const emh_cond *c) { return emh__cond_sum_of(c); }

bool emh__query_value(emh_query *q, const emh_field *f, emh_value v, emh_value *out)
{
	return value_conv(q, f, v, out);
}

/* A node with room for nvals values or nkids children after it (one allocation). */
static inline emh_cond *cond_new(emh_query *q, emh_op op, int field, size_t nvals, size_t nkids)
{
	size_t sz = emh__arena_round(sizeof(emh_cond));
	emh_cond *c = emh__arena_alloc(q->arena, sz + nvals * sizeof(emh_value) + nkids * sizeof(emh_cond *));
	if (!c)
		return fail(q, EMH_ENOMEM, "out of memory");
	*c = (emh_cond){.op = op, .field = field, .q = q, .vals = nvals ? (emh_value *)((char *)c + sz) : NULL,
			.kids = nkids ? (emh_cond **)((char *)c + sz) : NULL};
	return c;
}

/* emh_q_cmp with every check and its message. */
static __attribute__((noinline)) emh_cond *cmp_checked(emh_query *q, const char *field, emh_op op, emh_value v)
{
	if (!q)
		return NULL;
	if (op < EMH_OP_EQ || op > EMH_OP_GE)
		return fail(q, EMH_EINVAL, "emh_q_cmp: operator %d is not a comparison", (int)op);
	int fi = field_of(q, field);
	if (fi < 0)
		return NULL;
	const emh_field *f = &q->e->fields[fi];
	/* JSON has no portable equality (PostgreSQL's json type has none, and a
	 * document database compares documents, not text): only null tests. */
	if (f->type == EMH_T_JSON)
		return fail(q, EMH_EINVAL, "field '%s' (json) can only be tested with is_null/not_null", f->name);
	if (f->type == EMH_T_BLOB && op != EMH_OP_EQ && op != EMH_OP_NE)
		return fail(q, EMH_EINVAL, "field '%s' (blob) supports only eq/ne", f->name);
	emh_cond *c = cond_new(q, op, fi, 1, 0);
	if (!c || !value_for(q, f, &v, &c->vals[0]))
		return NULL;
	c->nvals = 1;
	emh__cond_seal(c);
	return c;
}

emh_cond *emh_q_cmp(emh_query *q, const char *field, emh_op op, emh_value v)
{
	/* The common case, with nothing to refuse: a comparison on a known
	 * field with a plain value (so not json, nor blob) -- built here. */
	int fi;
	if (q && op >= EMH_OP_EQ && op <= EMH_OP_GE && (fi = emh__field_index(q->e, field)) >= 0 &&
	    value_plain(&q->e->fields[fi], &v)) {
		emh_cond *c = cond_new(q, op, fi, 1, 0);
		if (c) {
			c->vals[0] = v;
			c->nvals = 1;
			emh__cond_seal(c);
		}
		return c;
	}
	return cmp_checked(q, field, op, v);
}

emh_cond *emh_q_in(emh_query *q, const char *field, const emh_value *values, size_t n)
{
	if (!q)
		return NULL;
	int fi = field_of(q, field);
	if (fi < 0)
		return NULL;
	if (q->e->fields[fi].type == EMH_T_JSON)
		return fail(q, EMH_EINVAL, "field '%s' (json) can only be tested with is_null/not_null", field);
	if (n > EMH_QUERY_MAX_IN)
		return fail(q, EMH_EINVAL, "field '%s': IN list of %zu values; at most %d", field, n,
			    EMH_QUERY_MAX_IN);
	if (n && !values)
		return fail(q, EMH_EINVAL, "field '%s': IN values is NULL", field);
	emh_cond *c = cond_new(q, EMH_OP_IN, fi, n, 0);
	if (!c)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (!value_for(q, &q->e->fields[fi], &values[i], &c->vals[i]))
			return NULL;
	c->nvals = n;
	emh__cond_seal(c);
	return c;
}

emh_cond *emh_q_like(emh_query *q, const char *field, const char *pattern)
{
	if (!q)
		return NULL;
	int fi = field_of(q, field);
	if (fi < 0)
		return NULL;
	if (q->e->fields[fi].type != EMH_T_TEXT)
		return fail(q, EMH_EINVAL, "field '%s': like needs a text field, not %s", field,
			    emh_type_name(q->e->fields[fi].type));
	if (!pattern)
		return fail(q, EMH_EINVAL, "field '%s': like pattern is NULL", field);
	size_t n = strlen(pattern), bs = 0;
	for (size_t i = n; i > 0 && pattern[i - 1] == '\\'; i--)
		bs++;
	if (bs % 2)
		return fail(q, EMH_EINVAL, "field '%s': like pattern ends with a lone backslash", field);
	emh_cond *c = cond_new(q, EMH_OP_LIKE, fi, 1, 0);
	if (!c || !value_conv(q, &q->e->fields[fi], emh_v_text(pattern), &c->vals[0]))
		return NULL;
	c->nvals = 1;
	emh__cond_seal(c);
	return c;
}

size_t emh_like_escape(char *dst, size_t cap, const char *src)
{
	size_t need = 0, wrote = 0;
	bool fits = dst && cap > 0;
	for (const char *p = src; p && *p; p++) {
		bool esc = *p == '%' || *p == '_' || *p == '\\';
		/* An escaped pair is written whole or not at all: a lone backslash
		 * or an unescaped wildcard must never end a cut result. */
		if (fits && wrote + esc + 1 < cap) {
			if (esc)
				dst[wrote++] = '\\';
			dst[wrote++] = *p;
		} else {
			fits = false;
		}
		need += 1 + esc;
	}
	if (dst && cap)
		dst[wrote] = '\0';
	return need;
}

static emh_cond *null_test(emh_query *q, const char *field, emh_op op)
{
	if (!q)
		return NULL;
	int fi = field_of(q, field);
	emh_cond *c = fi < 0 ? NULL : cond_new(q, op, fi, 0, 0);
	if (c)
		emh__cond_seal(c);
	return c;
}

emh_cond *emh_q_is_null(emh_query *q, const char *field) { return null_test(q, field, EMH_OP_IS_NULL); }
emh_cond *emh_q_not_null(emh_query *q, const char *field) { return null_test(q, field, EMH_OP_NOT_NULL); }

static bool own(emh_query *q, const emh_cond *c)
{
	if (!c) /* an earlier builder call failed and recorded why */
		return fail(q, EMH_EINVAL, "a condition is NULL (an earlier builder call failed)"), false;
	if (c->q != q)
		return fail(q, EMH_EINVAL, "a condition belongs to another query"), false;
	return true;
}

static emh_cond *junction(emh_query *q, emh_op op, emh_cond *const *conds, size_t n)
{
	if (!q)
		return NULL;
	if (n == 0)
		return fail(q, EMH_EINVAL, "%s of no condition", op == EMH_OP_AND ? "and" : "or");
	for (size_t i = 0; i < n; i++)
		if (!own(q, conds[i]))
			return NULL;
	emh_cond *c = cond_new(q, op, -1, 0, n);
	if (!c)
		return NULL;
	for (size_t i = 0; i < n; i++)
		c->kids[i] = conds[i];
	c->nkids = n;
	emh__cond_seal(c);
	return c;
}

emh_cond *emh_q_and_n(emh_query *q, emh_cond *const *conds, size_t n) { return junction(q, EMH_OP_AND, conds, n); }
emh_cond *emh_q_or_n(emh_query *q, emh_cond *const *conds, size_t n) { return junction(q, EMH_OP_OR, conds, n); }

emh_cond *emh_q_not(emh_query *q, emh_cond *inner)
{
	if (!q || !own(q, inner))
		return NULL;
	emh_cond *c = cond_new(q, EMH_OP_NOT, -1, 0, 1);
	if (!c)
		return NULL;
	c->kids[0] = inner;
	c->nkids = 1;
	emh__cond_seal(c);
	return c;
}

void emh_q_where(emh_query *q, emh_cond *c)
{
	if (q && own(q, c))
		q->where = c;
}

void emh_q_order_by(emh_query *q, const char *field, bool descending)
{
	if (!q)
		return;
	int fi = field_of(q, field);
	if (fi < 0)
		return;
	if (q->norder == q->ordcap) {
		size_t cap = q->ordcap ? q->ordcap * 2 : 4;
		emh__order *o = emh__arena_alloc(q->arena, cap * sizeof *o);
		if (!o) {
			fail(q, EMH_ENOMEM, "out of memory");
			return;
		}
		if (q->norder)
			memcpy(o, q->order, q->norder * sizeof *o);
		q->order = o;
		q->ordcap = cap;
	}
	q->order[q->norder++] = (emh__order){fi, descending};
}

void emh_q_limit(emh_query *q, int64_t n)
{
	if (q && n < 0)
		fail(q, EMH_EINVAL, "limit %lld is negative", (long long)n);
	else if (q)
		q->limit = n;
}

void emh_q_offset(emh_query *q, int64_t n)
{
	if (q && n < 0)
		fail(q, EMH_EINVAL, "offset %lld is negative", (long long)n);
	else if (q)
		q->offset = n;
}

void emh_q_with(emh_query *q, const char *path)
{
	if (!q)
		return;
	if (!path || !*path) {
		fail(q, EMH_EINVAL, "with: no relation path given");
		return;
	}
	if (q->nwith == EMH__QUERY_MAX_WITH) {
		fail(q, EMH_EINVAL, "with '%s': at most %d relation paths", path, EMH__QUERY_MAX_WITH);
		return;
	}
	if (!q->with && !(q->with = emh__arena_alloc(q->arena, EMH__QUERY_MAX_WITH * sizeof *q->with))) {
		fail(q, EMH_ENOMEM, "out of memory");
		return;
	}
	/* Checked against the entity's relations by the find: the query sees
	 * the host's copy, which holds columns only. */
	if (!(q->with[q->nwith] = emh__arena_strndup(q->arena, path, strlen(path)))) {
		fail(q, EMH_ENOMEM, "out of memory");
		return;
	}
	q->nwith++;
}

void emh_q_lock(emh_query *q, int mode, int wait)
{
	if (!q)
		return;
	if (mode < EMH_LOCK_NONE || mode > EMH_LOCK_SHARE)
		fail(q, EMH_EINVAL, "emh_q_lock: mode %d is not EMH_LOCK_NONE, _UPDATE or _SHARE", mode);
	else if (wait < EMH_LOCK_WAIT || wait > EMH_LOCK_SKIP_LOCKED)
		fail(q, EMH_EINVAL, "emh_q_lock: wait %d is not EMH_LOCK_WAIT, _NOWAIT or _SKIP_LOCKED", wait);
	else {
		q->lock = mode;
		q->lock_wait = mode ? wait : EMH_LOCK_WAIT;
	}
}

void emh_q_unfiltered(emh_query *q)
{
	if (q)
		q->unfiltered = true;
}

emh_query *emh__query_copy(emh__arena *arena, const emh_entity *e, const emh_query *q)
{
	emh_query *c = emh__query_new(arena, e);
	if (!c || !q)
		return c;
	*c = *q;
	c->arena = arena;
	/* The ordering is copied: a copy may get keys of its own (an
	 * iterator's tie-breaker) without touching q's. */
	c->order = NULL;
	c->norder = c->ordcap = 0;
	if (q->norder) {
		if (!(c->order = emh__arena_alloc(arena, (q->norder + 1) * sizeof *c->order)))
			return NULL;
		memcpy(c->order, q->order, q->norder * sizeof *c->order);
		c->norder = q->norder;
		c->ordcap = q->norder + 1;
	}
	return c;
}

void emh__query_restrict(emh_query *q, emh_cond *c)
{
	if (!c)
		return;
	if (!q->where) {
		q->where = c;
		return;
	}
	emh_cond *both = cond_new(q, EMH_OP_AND, -1, 0, 2);
	if (!both)
		return;
	both->kids[0] = c;
	both->kids[1] = q->where;
	both->nkids = 2;
	emh__cond_seal(both);
	q->where = both;
}

const emh_entity *emh_query_entity(const emh_query *q) { return q ? q->e : NULL; }
const emh_cond *emh_query_cond(const emh_query *q) { return q ? q->where : NULL; }
size_t emh_query_norder(const emh_query *q) { return q ? q->norder : 0; }
void emh_query_order(const emh_query *q, size_t i, int *field, bool *descending)
{
	*field = q->order[i].field;
	*descending = q->order[i].desc;
}
int64_t emh_query_limit(const emh_query *q) { return q ? q->limit : -1; }
int64_t emh_query_offset(const emh_query *q) { return q ? q->offset : -1; }
int emh_query_lock(const emh_query *q, int *wait)
{
	if (wait)
		*wait = q ? q->lock_wait : EMH_LOCK_WAIT;
	return q ? q->lock : EMH_LOCK_NONE;
}
emh_op emh_cond_op(const emh_cond *c) { return c->op; }
int emh_cond_field(const emh_cond *c) { return c->field; }
size_t emh_cond_nvalues(const emh_cond *c) { return c->nvals; }
const emh_value *emh_cond_values(const emh_cond *c) { return c->vals; }
size_t emh_cond_nchildren(const emh_cond *c) { return c->nkids; }
const emh_cond *emh_cond_child(const emh_cond *c, size_t i) { return i < c->nkids ? c->kids[i] : NULL; }
