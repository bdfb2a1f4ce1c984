/* SPDX-License-Identifier: MIT */
/*
 * core/aggregate.c: aggregate specifications (built like queries: builder
 * calls keep their first mistake, reported where the specification runs),
 * emh_repo_aggregate, and the rows it returns.  SQL drivers run the
 * statement core/sql_agg.c compiles; document drivers their aggregate
 * member.  Either way the core checks every delivered value against its
 * column's documented type, and supplies SQL's one row of a grouping
 * without group fields when a document driver found no row.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "em_int.h"
#include "query_int.h"
#include "sql_int.h"

struct emh_rows {
	size_t ncols, nrows;
	const char **names;
	const emh_type *types;
	emh_value *v; /* nrows * ncols, row by row */
};

/* ---- the specification ---- */

emh_agg *emh__agg_new(emh__arena *arena, const emh_entity *e)
{
	emh_agg *a = emh__arena_zalloc(arena, sizeof *a);
	if (a) {
		a->e = e;
		a->arena = arena;
		a->limit = -1;
	}
	return a;
}

static void fail(emh_agg *a, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail(emh_agg *a, int code, const char *fmt, ...)
{
	if (a && !a->err_code) {
		a->err_code = code;
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(a->err_msg, sizeof a->err_msg, fmt, ap);
		va_end(ap);
	}
}

int emh__agg_error(const emh_agg *a, emh_error *err)
{
	if (!a || !a->err_code)
		return 0;
	return emh_error_set(err, a->err_code, "aggregate on '%s': %s", a->e->name, a->err_msg);
}

int emh_repo_agg(emh_repo *r, emh_agg **out, emh_error *err)
{
	emh_em *em = emh_repo_em(r);
	const emh_entity *e = r->m->pub.entity;
	*out = emh__agg_new(&em->arena, e);
	return *out ? 0 : emh_error_set(err, EMH_ENOMEM, "out of memory");
}

/* Room for element n of an arena array (*v, *cap): 4 at first, then doubled,
 * so that a small specification fits a fork's inline arena. */
static bool grow(emh__arena *ar, void *v, size_t n, size_t *cap, size_t size)
{
	void **pv = v;
	if (n < *cap)
		return true;
	size_t nc = *cap ? *cap * 2 : 4;
	void *nv = emh__arena_alloc(ar, nc * size);
	if (!nv)
		return false;
	if (n)
		memcpy(nv, *pv, n * size);
	*pv = nv;
	*cap = nc;
	return true;
}

/* The column called name, or false (the mistake kept when what is set). */
static bool col_ref(emh_agg *a, const char *name, emh__aggref *ref, const char *what)
{
	for (size_t i = 0; name && i < a->ngroups + a->naggs; i++)
		if (strcmp(emh__agg_colp(a, i)->name, name) == 0) {
			*ref = (emh__aggref){.group = i < a->ngroups, .i = i < a->ngroups ? i : i - a->ngroups};
			return true;
		}
	if (what)
		fail(a, EMH_EINVAL, "%s: no result column '%s' (add it before)", what, name ? name : "(null)");
	return false;
}

/* Append column c to groups (group) or aggregates, named name (copied). */
static void col_add(emh_agg *a, bool group, emh__aggcol c, const char *name)
{
	emh__aggref dup;
	if (a->ngroups + a->naggs >= EMH_AGG_MAX_COLS) {
		fail(a, EMH_EINVAL, "more than %d result columns", EMH_AGG_MAX_COLS);
		return;
	}
	if (!name[0] || strlen(name) > 63) {
		fail(a, EMH_EINVAL, "column name '%.63s' is empty or longer than 63 bytes", name);
		return;
	}
	if (col_ref(a, name, &dup, NULL)) {
		fail(a, EMH_EINVAL, "two result columns named '%s'", name);
		return;
	}
	emh__aggcol **v = group ? &a->groups : &a->aggs;
	size_t *n = group ? &a->ngroups : &a->naggs;
	if (!grow(a->arena, v, *n, group ? &a->gcap : &a->acap, sizeof **v)) {
		fail(a, EMH_ENOMEM, "out of memory");
		return;
	}
	if (!(c.name = emh__arena_strndup(a->arena, name, strlen(name)))) {
		fail(a, EMH_ENOMEM, "out of memory");
		return;
	}
	(*v)[(*n)++] = c;
}

static int field_of(emh_agg *a, const char *field, const char *what)
{
	int fi = emh_entity_field_index(a->e, field);
	if (fi < 0)
		fail(a, EMH_EINVAL, "%s: no field '%s' in entity '%s'", what, field ? field : "(null)", a->e->name);
	return fi;
}

void emh_agg_group_by(emh_agg *a, const char *field)
{
	if (!a)
		return;
	int fi = field_of(a, field, "group by");
	if (fi < 0)
		return;
	const emh_field *f = &a->e->fields[fi];
	if (f->type == EMH_T_JSON || f->type == EMH_T_BLOB) {
		fail(a, EMH_EINVAL, "group by '%s': a %s field has no portable equality", field, emh_type_name(f->type));
		return;
	}
	col_add(a, true, (emh__aggcol){.fn = 0, .field = fi, .type = f->type}, f->name);
}

static const char *const fn_names[] = {
	[EMH_AGG_COUNT] = "count", [EMH_AGG_COUNT_DISTINCT] = "count_distinct", [EMH_AGG_SUM] = "sum",
	[EMH_AGG_MIN] = "min",     [EMH_AGG_MAX] = "max",                       [EMH_AGG_AVG] = "avg",
};

/* The result type of fn over field f, or 0 when fn does not take f. */
static emh_type agg_type(emh_agg_fn fn, const emh_field *f)
{
	bool num = f->type == EMH_T_INT32 || f->type == EMH_T_INT64 || f->type == EMH_T_DOUBLE;
	switch (fn) {
	case EMH_AGG_COUNT_DISTINCT:
		return f->type == EMH_T_JSON || f->type == EMH_T_BLOB ? 0 : EMH_T_INT64;
	case EMH_AGG_SUM:
		return !num ? 0 : f->type == EMH_T_DOUBLE ? EMH_T_DOUBLE : EMH_T_INT64;
	case EMH_AGG_AVG:
		return num ? EMH_T_DOUBLE : 0;
	case EMH_AGG_MIN:
	case EMH_AGG_MAX:
		return num || f->type == EMH_T_TEXT || f->type == EMH_T_TIMESTAMP ? f->type : 0;
	default:
		return 0;
	}
}

void emh_agg_add(emh_agg *a, emh_agg_fn fn, const char *field, const char *name)
{
	if (!a)
		return;
	if (fn < EMH_AGG_COUNT || fn > EMH_AGG_AVG) {
		fail(a, EMH_EINVAL, "unknown aggregate function %d", (int)fn);
		return;
	}
	if (fn == EMH_AGG_COUNT) {
		if (field)
			fail(a, EMH_EINVAL, "count counts rows and takes no field ('%s'); use count_distinct", field);
		else
			col_add(a, false, (emh__aggcol){.fn = fn, .field = -1, .type = EMH_T_INT64}, name ? name : "count");
		return;
	}
	int fi = field_of(a, field, fn_names[fn]);
	if (fi < 0)
		return;
	const emh_field *f = &a->e->fields[fi];
	emh_type t = agg_type(fn, f);
	if (!t) {
		fail(a, EMH_EINVAL, "%s of '%s': not defined on a %s field", fn_names[fn], f->name, emh_type_name(f->type));
		return;
	}
	char def[96];
	snprintf(def, sizeof def, "%s_%s", fn_names[fn], f->name);
	col_add(a, false, (emh__aggcol){.fn = fn, .field = fi, .type = t}, name ? name : def);
}

/* v as a value of type t (int32/int64/timestamp mix, an integer for a
 * double), text copied into the arena; false when it cannot be. */
static bool value_as(emh_agg *a, emh_value v, emh_type t, emh_value *out)
{
	bool vint = v.type == EMH_T_INT32 || v.type == EMH_T_INT64 || v.type == EMH_T_TIMESTAMP;
	int64_t x = v.type == EMH_T_INT32 ? v.u.i32 : v.u.i64;
	switch (t) {
	case EMH_T_INT32:
		if (!vint || x < INT32_MIN || x > INT32_MAX)
			return false;
		*out = emh_v_int32((int32_t)x);
		return true;
	case EMH_T_INT64:
	case EMH_T_TIMESTAMP:
		if (!vint)
			return false;
		*out = (emh_value){.type = t, .u.i64 = x};
		return true;
	case EMH_T_DOUBLE:
		if (!vint && v.type != EMH_T_DOUBLE)
			return false;
		*out = emh_v_double(v.type == EMH_T_DOUBLE ? v.u.d : (double)x);
		return true;
	case EMH_T_TEXT: {
		if (v.type != EMH_T_TEXT)
			return false;
		char *s = emh__arena_strndup(a->arena, v.u.s.ptr ? v.u.s.ptr : "", v.u.s.len);
		if (!s)
			return false;
		*out = emh_v_textn(s, v.u.s.len);
		return true;
	}
	default:
		if (v.type != t)
			return false;
		*out = v;
		return true;
	}
}

void emh_agg_having(emh_agg *a, const char *column, emh_op op, emh_value v)
{
	emh__aggref ref;
	if (!a || !col_ref(a, column, &ref, "having"))
		return;
	const emh__aggcol *c = emh__agg_colp(a, emh__agg_col(a, ref));
	emh__having h = {.col = ref, .op = op};
	if (op < EMH_OP_EQ || op > EMH_OP_GE) {
		fail(a, EMH_EINVAL, "having on '%s': operator %d is not a comparison", column, (int)op);
		return;
	}
	if (v.is_null || !value_as(a, v, c->type, &h.v)) {
		fail(a, EMH_EINVAL, "having on '%s': the column is %s; the value given is %s%s", column,
		     emh_type_name(c->type), v.is_null ? "NULL " : "", emh_type_name(v.type));
		return;
	}
	if (a->nhaving == EMH_AGG_MAX_COLS) {
		fail(a, EMH_EINVAL, "more than %d having conditions", EMH_AGG_MAX_COLS);
		return;
	}
	if (!grow(a->arena, &a->having, a->nhaving, &a->hcap, sizeof *a->having)) {
		fail(a, EMH_ENOMEM, "out of memory");
		return;
	}
	a->having[a->nhaving++] = h;
}

void emh_agg_order_by(emh_agg *a, const char *column, bool descending)
{
	emh__aggref ref;
	if (!a || !col_ref(a, column, &ref, "order by"))
		return;
	if (a->norder == EMH_AGG_MAX_COLS) {
		fail(a, EMH_EINVAL, "more than %d ordering keys", EMH_AGG_MAX_COLS);
		return;
	}
	if (!grow(a->arena, &a->order, a->norder, &a->ocap, sizeof *a->order)) {
		fail(a, EMH_ENOMEM, "out of memory");
		return;
	}
	a->order[a->norder++] = (emh__aggorder){.col = ref, .desc = descending};
}

void emh_agg_limit(emh_agg *a, int64_t n)
{
	if (a && n < 0)
		fail(a, EMH_EINVAL, "limit %lld is negative", (long long)n);
	else if (a)
		a->limit = n;
}

/* ---- the read-only view ---- */

size_t emh_agg_ncols(const emh_agg *a) { return a->ngroups + a->naggs; }
size_t emh_agg_ngroups(const emh_agg *a) { return a->ngroups; }
void emh_agg_col(const emh_agg *a, size_t i, int *fn, int *field, emh_type *type)
{
	const emh__aggcol *c = emh__agg_colp(a, i);
	*fn = c->fn;
	*field = c->field;
	*type = c->type;
}
size_t emh_agg_nhaving(const emh_agg *a) { return a->nhaving; }
void emh_agg_having_at(const emh_agg *a, size_t i, size_t *col, emh_op *op, const emh_value **v)
{
	*col = emh__agg_col(a, a->having[i].col);
	*op = a->having[i].op;
	*v = &a->having[i].v;
}
size_t emh_agg_norder(const emh_agg *a) { return a->norder; }
void emh_agg_order_at(const emh_agg *a, size_t i, size_t *col, bool *descending)
{
	*col = emh__agg_col(a, a->order[i].col);
	*descending = a->order[i].desc;
}
int64_t emh_agg_max_rows(const emh_agg *a) { return a->limit; }

/* ---- result rows ---- */

size_t emh_rows_count(const emh_rows *rows) { return rows ? rows->nrows : 0; }
size_t emh_rows_ncols(const emh_rows *rows) { return rows ? rows->ncols : 0; }
const char *emh_rows_name(const emh_rows *rows, size_t col)
{
	return rows && col < rows->ncols ? rows->names[col] : NULL;
}
emh_type emh_rows_type(const emh_rows *rows, size_t col)
{
	return rows && col < rows->ncols ? rows->types[col] : (emh_type)0;
}
int emh_rows_col(const emh_rows *rows, const char *name)
{
	for (size_t i = 0; rows && name && i < rows->ncols; i++)
		if (strcmp(rows->names[i], name) == 0)
			return (int)i;
	return -1;
}
const emh_value *emh_rows_value(const emh_rows *rows, size_t row, size_t col)
{
	return rows && row < rows->nrows && col < rows->ncols ? &rows->v[row * rows->ncols + col] : NULL;
}

/* Rows collected from a driver: values in a heap buffer, text in the arena. */
typedef struct rows_sink {
	emh_rowsink base;
	emh_em *em;
	const emh_agg *a;
	emh_value *v;
	size_t nrows, cap; /* rows */
} rows_sink;

/* A delivered value as a value of column type t (see the driver contract). */
static int take_value(rows_sink *rs, size_t col, emh_type t, const emh_value *in, emh_value *out, emh_error *err)
{
	*out = (emh_value){.type = t, .is_null = in->is_null};
	if (in->is_null)
		return 0;
	bool vint = in->type == EMH_T_INT32 || in->type == EMH_T_INT64 || in->type == EMH_T_TIMESTAMP;
	int64_t x = in->type == EMH_T_INT32 ? in->u.i32 : in->u.i64;
	switch (t) {
	case EMH_T_INT32:
		if (!vint || x < INT32_MIN || x > INT32_MAX)
			goto out_type;
		out->u.i32 = (int32_t)x;
		return 0;
	case EMH_T_INT64:
	case EMH_T_TIMESTAMP:
		if (!vint)
			goto out_type;
		out->u.i64 = x;
		return 0;
	case EMH_T_DOUBLE:
		if (!vint && in->type != EMH_T_DOUBLE)
			goto out_type;
		out->u.d = in->type == EMH_T_DOUBLE ? in->u.d : (double)x;
		return 0;
	case EMH_T_TEXT: {
		if (in->type != EMH_T_TEXT)
			goto out_type;
		char *s = emh__arena_strndup(&rs->em->arena, in->u.s.ptr ? in->u.s.ptr : "", in->u.s.len);
		if (!s)
			return emh_error_set(err, EMH_ENOMEM, "out of memory");
		out->u.s.ptr = s;
		out->u.s.len = in->u.s.len;
		return 0;
	}
	default:
		if (in->type != t)
			goto out_type;
		out->u = in->u;
		return 0;
	}
out_type:
	return emh_error_set(err, EMH_EDRIVER, "aggregate column '%s': the driver delivered %s for a %s column",
			     emh__agg_colp(rs->a, col)->name, emh_type_name(in->type), emh_type_name(t));
}

static int rows_row(emh_rowsink *s, const emh_value *cols, emh_error *err)
{
	rows_sink *rs = (rows_sink *)s;
	size_t nc = emh_agg_ncols(rs->a);
	if (rs->nrows == rs->cap) {
		size_t cap = rs->cap ? rs->cap * 2 : 16;
		emh_value *nv = realloc(rs->v, cap * nc * sizeof *nv);
		if (!nv)
			return emh_error_set(err, EMH_ENOMEM, "out of memory");
		rs->v = nv;
		rs->cap = cap;
	}
	emh_value *row = &rs->v[rs->nrows * nc];
	for (size_t i = 0; i < nc; i++) {
		int rc = take_value(rs, i, emh__agg_colp(rs->a, i)->type, &cols[i], &row[i], err);
		if (rc)
			return rc;
	}
	rs->nrows++;
	return 0;
}

/* x <op> y for two non-NULL values of one column type. */
static bool holds(emh_op op, const emh_value *x, const emh_value *y)
{
	int c;
	if (x->type == EMH_T_DOUBLE) {
		c = (x->u.d > y->u.d) - (x->u.d < y->u.d);
	} else if (x->type == EMH_T_TEXT) {
		size_t n = x->u.s.len < y->u.s.len ? x->u.s.len : y->u.s.len;
		c = n ? memcmp(x->u.s.ptr, y->u.s.ptr, n) : 0;
		c = c ? (c > 0) - (c < 0) : (x->u.s.len > y->u.s.len) - (x->u.s.len < y->u.s.len);
	} else {
		int64_t a = emh__value_i64(x), b = emh__value_i64(y);
		c = (a > b) - (a < b);
	}
	switch (op) {
	case EMH_OP_EQ: return c == 0;
	case EMH_OP_NE: return c != 0;
	case EMH_OP_LT: return c < 0;
	case EMH_OP_LE: return c <= 0;
	case EMH_OP_GT: return c > 0;
	default: return c >= 0;
	}
}

/*
 * SQL's answer to a grouping without group fields over no row -- one row,
 * counts 0, the other aggregates NULL -- unless having rejects it: for a
 * document driver that found nothing to group.
 */
static int rows_empty_group(rows_sink *rs, emh_error *err)
{
	const emh_agg *a = rs->a;
	emh_value row[EMH_AGG_MAX_COLS];
	for (size_t i = 0; i < a->naggs; i++) {
		const emh__aggcol *c = &a->aggs[i];
		bool count = c->fn == EMH_AGG_COUNT || c->fn == EMH_AGG_COUNT_DISTINCT;
		row[i] = count ? emh_v_int64(0) : emh_v_null(c->type);
	}
	for (size_t i = 0; i < a->nhaving; i++) {
		const emh_value *x = &row[emh__agg_col(a, a->having[i].col)];
		if (x->is_null || !holds(a->having[i].op, x, &a->having[i].v))
			return 0;
	}
	return rows_row(&rs->base, row, err);
}

/* The collected rows as an emh_rows in the fork's arena. */
static int rows_finish(rows_sink *rs, emh_rows **out, emh_error *err)
{
	const emh_agg *a = rs->a;
	emh__arena *ar = &rs->em->arena;
	size_t nc = emh_agg_ncols(a), nv = rs->nrows * nc;
	emh_rows *rows = emh__arena_zalloc(ar, sizeof *rows);
	const char **names = rows ? emh__arena_alloc(ar, nc * sizeof *names) : NULL;
	emh_type *types = names ? emh__arena_alloc(ar, nc * sizeof *types) : NULL;
	emh_value *v = types ? emh__arena_memdup(ar, rs->v, nv * sizeof *v) : NULL;
	if (!v)
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	for (size_t i = 0; i < nc; i++) {
		names[i] = emh__agg_colp(a, i)->name;
		types[i] = emh__agg_colp(a, i)->type;
	}
	*rows = (emh_rows){.ncols = nc, .nrows = rs->nrows, .names = names, .types = types, .v = v};
	*out = rows;
	return 0;
}

/* The checks of emh_repo_aggregate before anything is sent. */
static int agg_check(emh_repo *r, const emh_query *q, const emh_agg *a, emh_error *err)
{
	emh_em *em = emh_repo_em(r);
	const emh_entity *e = r->m->pub.entity;
	int rc = emh__em_check_query(r, q, err);
	if (rc || (rc = emh__em_refuse_lock(em, q, "an aggregate", err)) != 0 ||
	    (rc = emh__em_refuse_with(em, q, "an aggregate", err)) != 0)
		return rc;
	if (!a)
		rc = emh_error_set(err, EMH_EINVAL, "emh_repo_aggregate: no aggregate specification given");
	else if (a->arena != &em->arena)
		rc = emh_error_set(err, EMH_EINVAL,
				   "aggregate specification of another fork given to this fork's repository");
	else if (a->e != e)
		rc = emh_error_set(err, EMH_EINVAL, "aggregate on entity '%s' given to the repository of '%s'", a->e->name,
				   e->name);
	else if ((rc = emh__agg_error(a, err)) != 0)
		;
	else if (a->ngroups + a->naggs == 0)
		rc = emh_error_set(err, EMH_EINVAL, "aggregate on '%s' has no column: group by a field or add an aggregate",
				   e->name);
	else if (q && (q->norder || q->limit >= 0 || q->offset >= 0))
		rc = emh_error_set(err, EMH_EINVAL,
				   "aggregate on '%s': the query's ordering, limit and offset do not apply; order and "
				   "limit the result rows with emh_agg_order_by and emh_agg_limit", e->name);
	return rc ? emh__em_fail(em, rc, err) : 0;
}

int emh_repo_aggregate(emh_repo *r, const emh_query *q, const emh_agg *a, emh_rows **out, emh_error *err)
{
	emh_error local;
	if (!err)
		err = &local;
	*out = NULL;
	emh_em *em = emh_repo_em(r);
	emh__meta *m = r->m;
	int rc = agg_check(r, q, a, err);
	if (rc || (rc = emh__em_filter(em, m, q, &q, err)) != 0 || (rc = emh__em_conn(em, err)) != 0)
		return rc;
	if (!(emh__em_caps(em) & EMH_CAP_AGGREGATE))
		return emh__em_fail(em, emh_error_set(err, EMH_EUNSUPPORTED, "driver '%s' cannot aggregate",
						  em->ctx->drv->d.name), err);
	rows_sink rs = {.base.row = rows_row, .em = em, .a = a};
	if (emh__em_is_sql(em)) {
		const emh_stmt *st = emh__sql_agg_stmt(m, em->ctx->drv->d.dialect, q, a, err);
		if (!st)
			return emh__em_fail(em, err->code ? err->code : EMH_ENOMEM, err);
		size_t np = emh__sql_agg_nparams(q, a);
		emh_value stackp[32], *params = np <= 32 ? stackp : malloc(np * sizeof *params);
		if (!params)
			return emh_error_set(err, EMH_ENOMEM, "out of memory");
		emh__sql_agg_params(q, a, params);
		emh__op o = {.kind = OP_STMT, .m = m, .st = st, .params = params, .sink = &rs.base, .agg = a};
		rc = emh__em_run(em, &o, err);
		if (params != stackp)
			free(params);
	} else {
		emh__op o = {.kind = OP_AGGREGATE, .m = m, .q = q, .agg = a, .sink = &rs.base};
		rc = emh__em_run(em, &o, err);
	}
	if (rc == 0 && a->ngroups == 0 && rs.nrows == 0 && a->limit != 0)
		rc = rows_empty_group(&rs, err);
	if (rc == 0)
		rc = rows_finish(&rs, out, err);
	free(rs.v);
	return rc;
}
