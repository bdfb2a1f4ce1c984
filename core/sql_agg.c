/* SPDX-License-Identifier: MIT */
/*
 * core/sql_agg.c: aggregates compiled to SQL.
 *
 *   SELECT <group columns>, <aggregates> FROM t [WHERE ...]
 *     [GROUP BY ...] [HAVING <aggregate> <op> ? AND ...]
 *     [ORDER BY <result position> ...] [LIMIT ?]
 *
 * Cached per shape in the entity's statement cache, like queries: the
 * shape is the query condition's and the specification's (the counts of
 * its lists, functions, fields, having operators, ordering, limit
 * presence), never values.  A SUM
 * of integers and an AVG of integers go through the dialect's casts so that
 * they decode as int64 and double on every database (PostgreSQL's SUM(bigint)
 * and AVG(int) are numeric, MySQL's are DECIMAL).  HAVING repeats the aggregate's expression (PostgreSQL
 * does not take output names there); ORDER BY names result positions.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "sql_int.h"

static bool is_int(emh_type t) { return t == EMH_T_INT32 || t == EMH_T_INT64; }

/* The SQL of result column c: the group column or the aggregate. */
static void agg_expr(emh__sqlb *sb, const emh_entity *e, const emh__aggcol *c)
{
	const emh_sql_dialect *d = sb->d;
	const emh_field *f = c->field >= 0 ? &e->fields[c->field] : NULL;
	const char *cast = NULL, *fn = NULL;
	switch (c->fn) {
	case 0:
		emh_buf_ident(&sb->sql, d, f->column);
		return;
	case EMH_AGG_COUNT:
		emh_buf_adds(&sb->sql, "COUNT(*)");
		return;
	case EMH_AGG_COUNT_DISTINCT:
		emh_buf_adds(&sb->sql, "COUNT(DISTINCT ");
		emh_buf_ident(&sb->sql, d, f->column);
		emh_buf_adds(&sb->sql, ")");
		return;
	case EMH_AGG_SUM:
		fn = "SUM(";
		cast = is_int(f->type) ? d->cast_int64 : NULL;
		break;
	case EMH_AGG_MIN:
		fn = "MIN(";
		break;
	case EMH_AGG_MAX:
		fn = "MAX(";
		break;
	default: /* EMH_AGG_AVG */
		/* Of integers, over their doubles: PostgreSQL's AVG(int) is numeric
		 * and MySQL's a DECIMAL cut to 4 decimals; a double's AVG is a
		 * double everywhere. */
		emh_buf_adds(&sb->sql, "AVG(");
		if (is_int(f->type) && d->cast_double) {
			emh_buf_adds(&sb->sql, "CAST(");
			emh_buf_ident(&sb->sql, d, f->column);
			emh_buf_addf(&sb->sql, " AS %s))", d->cast_double);
		} else {
			emh_buf_ident(&sb->sql, d, f->column);
			emh_buf_adds(&sb->sql, ")");
		}
		return;
	}
	if (cast)
		emh_buf_adds(&sb->sql, "CAST(");
	emh_buf_adds(&sb->sql, fn);
	emh_buf_ident(&sb->sql, d, f->column);
	emh_buf_adds(&sb->sql, ")");
	if (cast)
		emh_buf_addf(&sb->sql, " AS %s)", cast);
}

static const char *const cmp_sql[] = {
	[EMH_OP_EQ] = " = ", [EMH_OP_NE] = " <> ", [EMH_OP_LT] = " < ",
	[EMH_OP_LE] = " <= ", [EMH_OP_GT] = " > ", [EMH_OP_GE] = " >= ",
};

typedef struct agg_arg {
	const emh_query *q;
	const emh_agg *a;
} agg_arg;

static emh_stmt *compile_agg(emh__meta *m, const emh_sql_dialect *d, const void *arg, emh_error *err)
{
	const agg_arg *aa = arg;
	const emh_query *q = aa->q;
	const emh_agg *a = aa->a;
	const emh_entity *e = m->pub.entity;
	size_t ncols = a->ngroups + a->naggs;
	emh_type cols[EMH_AGG_MAX_COLS];
	emh__sqlb *sb = emh__sqlb_new(d);
	if (!sb)
		return emh_error_set(err, EMH_ENOMEM, "out of memory"), NULL;
	emh_buf_adds(&sb->sql, "SELECT ");
	for (size_t i = 0; i < ncols; i++) {
		const emh__aggcol *c = emh__agg_colp(a, i);
		if (i)
			emh_buf_adds(&sb->sql, ", ");
		agg_expr(sb, e, c);
		cols[i] = c->type;
	}
	emh_buf_adds(&sb->sql, " FROM ");
	emh_buf_ident(&sb->sql, d, e->table);
	if (q && q->where) {
		emh_buf_adds(&sb->sql, " WHERE ");
		emh__sqlb_cond(sb, e, q->where);
	}
	for (size_t i = 0; i < a->ngroups; i++) {
		emh_buf_adds(&sb->sql, i ? ", " : " GROUP BY ");
		emh_buf_ident(&sb->sql, d, e->fields[a->groups[i].field].column);
	}
	for (size_t i = 0; i < a->nhaving; i++) {
		const emh__having *h = &a->having[i];
		const emh__aggcol *c = emh__agg_colp(a, emh__agg_col(a, h->col));
		emh_buf_adds(&sb->sql, i ? " AND " : " HAVING ");
		agg_expr(sb, e, c);
		emh_buf_adds(&sb->sql, cmp_sql[h->op]);
		emh__sqlb_param(sb, c->type);
	}
	for (size_t i = 0; i < a->norder; i++)
		emh_buf_addf(&sb->sql, "%s%zu %s", i ? ", " : " ORDER BY ", emh__agg_col(a, a->order[i].col) + 1,
			     a->order[i].desc ? "DESC" : "ASC");
	if (a->limit >= 0) {
		emh_buf_adds(&sb->sql, " LIMIT ");
		emh__sqlb_param(sb, EMH_T_INT64);
	}
	emh_stmt *st = emh__sqlb_finish(sb, m, EMH_STMT_SELECT, cols, ncols, err);
	free(sb);
	return st;
}

/*
 * Shape of (q, a): everything the statement's text depends on.  The counts
 * of columns, groups, havings and orderings come first (each at most
 * EMH_AGG_MAX_COLS, a byte): every list after them then has a known length
 * and the key reads only one way.  Without them an extra column could read
 * as the counts or an ordering key (a having pair (col, EQ) is the bytes of
 * an ordering pair (col, desc)), and one specification ran another's SQL.
 */
static void agg_shape(emh_buf *b, const emh_query *q, const emh_agg *a)
{
	emh_buf_add(b, "A", 1);
	if (q && q->where)
		emh__sql_shape_cond(b, q->where);
	emh_buf_add(b, "|", 1);
	unsigned char n[4] = {(unsigned char)(a->ngroups + a->naggs), (unsigned char)a->ngroups,
			      (unsigned char)a->nhaving, (unsigned char)a->norder};
	emh_buf_add(b, (const char *)n, 4);
	for (size_t i = 0; i < a->ngroups + a->naggs; i++) {
		const emh__aggcol *c = emh__agg_colp(a, i);
		unsigned char x[2] = {(unsigned char)c->fn, (unsigned char)(c->field + 1)};
		emh_buf_add(b, (const char *)x, 2);
	}
	for (size_t i = 0; i < a->nhaving; i++) {
		unsigned char x[2] = {(unsigned char)emh__agg_col(a, a->having[i].col), (unsigned char)a->having[i].op};
		emh_buf_add(b, (const char *)x, 2);
	}
	for (size_t i = 0; i < a->norder; i++) {
		unsigned char x[2] = {(unsigned char)emh__agg_col(a, a->order[i].col), a->order[i].desc};
		emh_buf_add(b, (const char *)x, 2);
	}
	emh_buf_add(b, a->limit >= 0 ? "L" : "-", 1);
}

const emh_stmt *emh__sql_agg_stmt(emh__meta *m, const emh_sql_dialect *d, const emh_query *q, const emh_agg *a,
				  emh_error *err)
{
	emh_buf b = EMH_BUF_INIT;
	agg_shape(&b, q, a);
	if (b.oom) {
		emh_buf_release(&b);
		return emh_error_set(err, EMH_ENOMEM, "out of memory"), NULL;
	}
	agg_arg aa = {q, a};
	const emh_stmt *st = emh__sql_cached(m, d, (const unsigned char *)b.ptr, b.len, compile_agg, &aa, err);
	emh_buf_release(&b);
	return st;
}

size_t emh__sql_agg_nparams(const emh_query *q, const emh_agg *a)
{
	return emh__query_nparams(q, true) + a->nhaving + (a->limit >= 0);
}

void emh__sql_agg_params(const emh_query *q, const emh_agg *a, emh_value *out)
{
	size_t n = emh__query_nparams(q, true);
	emh__query_params(q, true, out);
	for (size_t i = 0; i < a->nhaving; i++)
		out[n++] = a->having[i].v;
	if (a->limit >= 0)
		out[n] = emh_v_int64(a->limit);
}
