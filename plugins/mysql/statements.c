/* SPDX-License-Identifier: MIT */
/*
 * plugins/mysql/statements.c: the core's compiled statements: prepared once
 * per connection (emh_prepcache), parameters bound for the statement's
 * declared types (timestamps as MYSQL_TIME in UTC), rows fetched into the
 * connection's column storage and handed to the sink; a statement the
 * server forgot is prepared again once.
 */
#include "config.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <mysql.h>

#include <emhost/driver.h>
#include <emhost/prepcache.h>

#include "mysql_int.h"

/* First size of a text/blob result buffer; grown on truncation. */
#define MY_RESULT_BUF_INIT 256

/* ---- timestamps: int64 microseconds <-> MYSQL_TIME (UTC) ---- */

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm). */
static int64_t my_days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static void my_civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
	z += 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	unsigned doe = (unsigned)(z - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned mp = (5 * doy + 2) / 153;
	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y = (int64_t)yoe + era * 400 + (*m <= 2);
}

/* DATETIME(6) holds years 1000..9999 (earlier ones "may work"); refuse what it cannot. */
static int my_time_from_us(int64_t us, MYSQL_TIME *t, emh_error *err)
{
	int64_t secs = us / 1000000, frac = us % 1000000, days, sod, y;
	unsigned m, d;
	if (frac < 0) {
		frac += 1000000;
		secs--;
	}
	days = secs / 86400;
	sod = secs % 86400;
	if (sod < 0) {
		sod += 86400;
		days--;
	}
	my_civil_from_days(days, &y, &m, &d);
	if (y < 1 || y > 9999)
		return emh_error_set(err, EMH_EINVAL,
				     "timestamp %lld us is outside the DATETIME range (years 1 to 9999)",
				     (long long)us);
	memset(t, 0, sizeof *t);
	t->year = (unsigned)y;
	t->month = m;
	t->day = d;
	t->hour = (unsigned)(sod / 3600);
	t->minute = (unsigned)(sod % 3600 / 60);
	t->second = (unsigned)(sod % 60);
	t->second_part = (unsigned long)frac;
	t->time_type = MYSQL_TIMESTAMP_DATETIME;
	return 0;
}

static int64_t my_us_from_time(const MYSQL_TIME *t)
{
	unsigned m = t->month ? t->month : 1, d = t->day ? t->day : 1;
	int64_t days = my_days_from_civil(t->year, m, d);
	int64_t secs = days * 86400 + (int64_t)t->hour * 3600 + (int64_t)t->minute * 60 + t->second;
	int64_t us = secs * 1000000 + (int64_t)t->second_part;
	return t->neg ? -us : us;
}

/* ---- prepared statements ---- */

static int my_grow_params(emh_conn *c, size_t n)
{
	if (n <= c->npcap)
		return 0;
	MYSQL_BIND *b = realloc(c->pbind, n * sizeof *b);
	if (!b)
		return EMH_ENOMEM;
	c->pbind = b;
	c->bind_gen++; /* pval moves: every statement's parameter binding is stale */
	my_param *v = realloc(c->pval, n * sizeof *v);
	if (!v)
		return EMH_ENOMEM;
	c->pval = v;
	c->npcap = n;
	return 0;
}

static int my_grow_cols(emh_conn *c, size_t n)
{
	if (n <= c->nrcap)
		return 0;
	c->bind_gen++; /* rcol moves: every statement's result binding is stale */
	MYSQL_BIND *b = realloc(c->rbind, n * sizeof *b);
	if (!b)
		return EMH_ENOMEM;
	c->rbind = b;
	emh_value *v = realloc(c->rvals, n * sizeof *v);
	if (!v)
		return EMH_ENOMEM;
	c->rvals = v;
	my_col *col = realloc(c->rcol, n * sizeof *col);
	if (!col)
		return EMH_ENOMEM;
	memset(col + c->nrcap, 0, (n - c->nrcap) * sizeof *col);
	c->rcol = col;
	c->nrcap = n;
	return 0;
}

static const char *my_table_of(const emh_stmt *st)
{
	return st->meta && st->meta->entity ? st->meta->entity->table : NULL;
}

/* Destroy callback of the statement cache (called on the connection's thread). */
void my_prep_close(void *handle, void *arg)
{
	my_prep *pp = handle;
	(void)arg;
	mysql_stmt_close(pp->h);
	free(pp);
}

/* The connection's prepared handle for st, preparing it on first use. */
static int my_stmt_get(emh_conn *c, const emh_stmt *st, my_prep **out, emh_error *err)
{
	my_prep *pp = emh_prepcache_get(c->stmts, st->id, st);
	MYSQL_STMT *h;
	int rc;
	if (pp) {
		*out = pp;
		return 0;
	}
	/* Not prepared yet, or the id stood for another statement: close that
	 * one first (max_prepared_stmt_count limits them server-wide). */
	emh_prepcache_drop(c->stmts, st->id);
	h = mysql_stmt_init(c->my);
	if (!h)
		return emh_error_set(err, EMH_ENOMEM, "mysql_stmt_init: out of memory");
	if (mysql_stmt_prepare(h, st->sql, (unsigned long)st->sql_len) != 0) {
		rc = my_stmt_fail(h, "preparing a statement", my_table_of(st), err);
		mysql_stmt_close(h);
		return rc;
	}
	if (mysql_stmt_param_count(h) != st->nparams) {
		unsigned long got = mysql_stmt_param_count(h);
		mysql_stmt_close(h);
		return emh_error_set(err, EMH_EPLUGIN, "statement on table '%s' has %lu parameters, %u bound",
				     my_table_of(st) ? my_table_of(st) : "?", got, (unsigned)st->nparams);
	}
	if (!(pp = malloc(sizeof *pp + st->nparams * sizeof pp->pb[0]))) {
		mysql_stmt_close(h);
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	}
	*pp = (my_prep){.h = h};
	if ((rc = emh_prepcache_put(c->stmts, st->id, st, pp, err))) {
		my_prep_close(pp, NULL);
		return rc;
	}
	*out = pp;
	return 0;
}

/* Bind params[i] as st->param_types[i] says (a timestamp field compared with an int64 is a timestamp). */
static int my_bind_param(MYSQL_BIND *b, my_param *pv, emh_type type, const emh_value *v, unsigned i,
			 emh_error *err)
{
	memset(b, 0, sizeof *b);
	pv->is_null = v->is_null;
	b->is_null = &pv->is_null;
	switch (type) {
	case EMH_T_TIMESTAMP:
		b->buffer_type = MYSQL_TYPE_DATETIME;
		b->buffer = &pv->s.t;
		b->buffer_length = sizeof pv->s.t;
		if (!v->is_null) {
			int64_t us = v->type == EMH_T_INT32 ? v->u.i32 : v->u.i64;
			int rc = my_time_from_us(us, &pv->s.t, err);
			if (rc)
				return rc;
		}
		return 0;
	case EMH_T_BOOL:
	case EMH_T_INT32:
	case EMH_T_INT64:
		if (v->type == EMH_T_BOOL) {
			b->buffer_type = MYSQL_TYPE_TINY;
			pv->s.b = v->u.b ? 1 : 0;
			b->buffer = &pv->s.b;
		} else if (v->type == EMH_T_INT32) {
			b->buffer_type = MYSQL_TYPE_LONG;
			pv->s.i32 = v->u.i32;
			b->buffer = &pv->s.i32;
		} else if (v->type == EMH_T_INT64 || v->type == EMH_T_TIMESTAMP || v->is_null) {
			b->buffer_type = type == EMH_T_BOOL ? MYSQL_TYPE_TINY : MYSQL_TYPE_LONGLONG;
			pv->s.i64 = v->is_null ? 0 : v->u.i64;
			b->buffer = &pv->s.i64;
			if (type == EMH_T_BOOL) {
				pv->s.b = (signed char)(pv->s.i64 != 0);
				b->buffer = &pv->s.b;
			}
		} else
			goto mismatch;
		return 0;
	case EMH_T_DOUBLE:
		b->buffer_type = MYSQL_TYPE_DOUBLE;
		b->buffer = &pv->s.d;
		if (v->is_null || v->type == EMH_T_DOUBLE)
			pv->s.d = v->is_null ? 0 : v->u.d;
		else if (v->type == EMH_T_INT32)
			pv->s.d = v->u.i32;
		else if (v->type == EMH_T_INT64)
			pv->s.d = (double)v->u.i64;
		else
			goto mismatch;
		return 0;
	case EMH_T_TEXT:
	case EMH_T_JSON:
	case EMH_T_BLOB:
		b->buffer_type = type == EMH_T_BLOB ? MYSQL_TYPE_BLOB : MYSQL_TYPE_STRING;
		if (v->is_null)
			return 0;
		if (v->type != EMH_T_TEXT && v->type != EMH_T_JSON && v->type != EMH_T_BLOB)
			goto mismatch;
		/* The library only reads parameter buffers. */
		b->buffer = (void *)(uintptr_t)(v->u.s.ptr ? v->u.s.ptr : "");
		pv->len = (unsigned long)v->u.s.len;
		b->buffer_length = pv->len;
		b->length = &pv->len;
		return 0;
	default:
		break;
	}
mismatch:
	return emh_error_set(err, EMH_EINVAL, "parameter %u: a %s value where %s is expected", i + 1,
			     emh_type_name(v->type), emh_type_name(type));
}

/* Bind result column i of type t to the connection's column storage. */
static void my_bind_col(MYSQL_BIND *b, my_col *col, emh_type t)
{
	memset(b, 0, sizeof *b);
	b->is_null = &col->is_null;
	b->error = &col->error;
	b->length = &col->len;
	switch (t) {
	case EMH_T_BOOL:
		b->buffer_type = MYSQL_TYPE_TINY;
		b->buffer = &col->s.b;
		break;
	case EMH_T_INT32:
		b->buffer_type = MYSQL_TYPE_LONG;
		b->buffer = &col->s.i32;
		break;
	case EMH_T_INT64:
		b->buffer_type = MYSQL_TYPE_LONGLONG;
		b->buffer = &col->s.i64;
		break;
	case EMH_T_DOUBLE:
		b->buffer_type = MYSQL_TYPE_DOUBLE;
		b->buffer = &col->s.d;
		break;
	case EMH_T_TIMESTAMP:
		b->buffer_type = MYSQL_TYPE_DATETIME;
		b->buffer = &col->s.t;
		b->buffer_length = sizeof col->s.t;
		break;
	default: /* text, json, blob */
		b->buffer_type = t == EMH_T_BLOB ? MYSQL_TYPE_BLOB : MYSQL_TYPE_STRING;
		b->buffer = col->buf;
		b->buffer_length = col->cap;
		break;
	}
}

/* Column col of the fetched row into *v as t, in place: every row of every
 * result goes through here. */
static inline void my_col_value(emh_value *v, const my_col *col, emh_type t)
{
	v->type = t;
	v->is_null = col->is_null != 0;
	if (v->is_null) {
		v->u.s.ptr = NULL;
		v->u.s.len = 0;
		return;
	}
	switch (t) {
	case EMH_T_BOOL:
		v->u.b = col->s.b != 0;
		break;
	case EMH_T_INT32:
		v->u.i32 = col->s.i32;
		break;
	case EMH_T_INT64:
		v->u.i64 = col->s.i64;
		break;
	case EMH_T_DOUBLE:
		v->u.d = col->s.d;
		break;
	case EMH_T_TIMESTAMP:
		v->u.i64 = my_us_from_time(&col->s.t);
		break;
	default:
		v->u.s.ptr = col->buf ? col->buf : "";
		v->u.s.len = col->len;
		break;
	}
}

/* Lay out c->rbind for st's nf result columns (c->rcol holds nf). */
static void my_fill_binds(emh_conn *c, const emh_stmt *st, unsigned nf)
{
	for (unsigned i = 0; i < nf; i++) {
		emh_type t = i < st->ncols ? st->col_types[i] : EMH_T_TEXT;
		my_col *col = &c->rcol[i];
		if ((t == EMH_T_TEXT || t == EMH_T_JSON || t == EMH_T_BLOB) && !col->buf) {
			col->buf = malloc(MY_RESULT_BUF_INIT);
			col->cap = col->buf ? MY_RESULT_BUF_INIT : 0;
		}
		my_bind_col(&c->rbind[i], col, t);
	}
}

/*
 * Bind the nf result columns of pp to the connection's column storage,
 * unless they still are (bound at this generation of the storage).
 */
static int my_bind_results(emh_conn *c, const emh_stmt *st, my_prep *pp, unsigned nf, emh_error *err)
{
	if (pp->bound_gen == c->bind_gen && pp->bound_nf == nf)
		return 0;
	if (my_grow_cols(c, nf))
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	my_fill_binds(c, st, nf);
	pp->bound_gen = 0;
	if (mysql_stmt_bind_result(pp->h, c->rbind) != 0)
		return my_stmt_fail(pp->h, "binding results", my_table_of(st), err);
	pp->bound_gen = c->bind_gen;
	pp->bound_nf = nf;
	return 0;
}

/* Fetch every stored row of pp's statement into sink. */
static int my_stmt_rows(emh_conn *c, const emh_stmt *st, my_prep *pp, unsigned nf, emh_rowsink *sink,
			emh_error *err)
{
	MYSQL_STMT *s = pp->h;
	const char *table = my_table_of(st);
	int rc = 0, f;
	if (mysql_stmt_store_result(s) != 0)
		return my_stmt_fail(s, "reading rows", table, err);
	if (st->ncols && nf != st->ncols) {
		mysql_stmt_free_result(s);
		return emh_error_set(err, EMH_EPLUGIN, "statement on table '%s' returns %u columns, %u expected",
				     table ? table : "?", nf, (unsigned)st->ncols);
	}
	if ((rc = my_bind_results(c, st, pp, nf, err)) != 0)
		goto out_free_result;
	/* The truncation flags live in the connection's column storage, shared
	 * by every statement, and the library leaves them alone for some
	 * conversions (a double read into a double): a flag left set by another
	 * statement's value that did not fit would fail this one. */
	for (unsigned i = 0; i < nf; i++)
		c->rcol[i].error = 0;
	while ((f = mysql_stmt_fetch(s)) == 0 || f == MYSQL_DATA_TRUNCATED) {
		bool rebind = false;
		if (f == MYSQL_DATA_TRUNCATED) {
			/* A text or blob longer than its buffer: grow it and fetch that
			 * column again.  c->rbind may hold another statement's layout
			 * (this one's binding was kept from an earlier call): lay it
			 * out for this one first. */
			my_fill_binds(c, st, nf);
			for (unsigned i = 0; i < nf; i++) {
				my_col *col = &c->rcol[i];
				if (!col->error || c->rbind[i].buffer_type == MYSQL_TYPE_DATETIME)
					continue;
				if (c->rbind[i].buffer_type != MYSQL_TYPE_STRING &&
				    c->rbind[i].buffer_type != MYSQL_TYPE_BLOB) {
					rc = emh_error_set(err, EMH_EDRIVER,
							   "column %u of table '%s' does not fit its field type", i + 1,
							   table ? table : "?");
					goto out_free_result;
				}
				unsigned long need = col->len + 1;
				char *nb = realloc(col->buf, need);
				if (!nb) {
					rc = emh_error_set(err, EMH_ENOMEM, "out of memory reading a %lu-byte value",
							   col->len);
					goto out_free_result;
				}
				col->buf = nb;
				col->cap = need;
				c->bind_gen++; /* other statements bound the old buffer */
				c->rbind[i].buffer = nb;
				c->rbind[i].buffer_length = need;
				if (mysql_stmt_fetch_column(s, &c->rbind[i], i, 0) != 0) {
					rc = my_stmt_fail(s, "reading a column", table, err);
					goto out_free_result;
				}
				rebind = true;
			}
		}
		/* locals: the stores into the values could alias st and c for
		 * all the compiler knows, which would reload them every column */
		emh_value *v = c->rvals;
		const my_col *col = c->rcol;
		const emh_type *types = st->col_types;
		unsigned ntyped = st->ncols;
		for (unsigned i = 0; i < nf; i++)
			my_col_value(&v[i], &col[i], i < ntyped ? types[i] : EMH_T_TEXT);
		if (sink && sink->row && (rc = sink->row(sink, c->rvals, err)) != 0)
			goto out_free_result;
		if (rebind) {
			pp->bound_gen = 0;
			if (mysql_stmt_bind_result(s, c->rbind) != 0) {
				rc = my_stmt_fail(s, "binding results", table, err);
				goto out_free_result;
			}
			pp->bound_gen = c->bind_gen;
		}
	}
	if (f != MYSQL_NO_DATA)
		rc = my_stmt_fail(s, "reading rows", table, err);
out_free_result:
	mysql_stmt_free_result(s);
	return rc;
}

/* One execution of a prepared statement; *stale when the server forgot it. */
static int my_stmt_run(emh_conn *c, const emh_stmt *st, my_prep *pp, const emh_value *params,
		       emh_rowsink *sink, bool *stale, emh_error *err)
{
	MYSQL_STMT *s = pp->h;
	const char *table = my_table_of(st);
	unsigned np = st->nparams, nf;
	int rc;

	*stale = false;
	if (np) {
		if (my_grow_params(c, np))
			return emh_error_set(err, EMH_ENOMEM, "out of memory");
		/* The values go into c->pval (or stay where the caller has
		 * them, text): bound again only when a buffer, its type or its
		 * length's place differs from the statement's last binding. */
		bool same = pp->pbound_gen == c->bind_gen;
		for (unsigned i = 0; i < np; i++) {
			emh_type t = st->param_types ? st->param_types[i] : params[i].type;
			MYSQL_BIND *b = &c->pbind[i];
			struct my_pbound *pb = &pp->pb[i];
			if ((rc = my_bind_param(b, &c->pval[i], t, &params[i], i, err)))
				return rc;
			if (same && (pb->buffer != b->buffer || pb->type != (int)b->buffer_type ||
				     pb->buffer_length != b->buffer_length || pb->length != b->length))
				same = false;
		}
		if (!same) {
			pp->pbound_gen = 0;
			if (mysql_stmt_bind_param(s, c->pbind) != 0)
				return my_stmt_fail(s, "binding parameters", table, err);
			for (unsigned i = 0; i < np; i++)
				pp->pb[i] = (struct my_pbound){.buffer = c->pbind[i].buffer,
							       .buffer_length = c->pbind[i].buffer_length,
							       .length = c->pbind[i].length,
							       .type = (int)c->pbind[i].buffer_type};
			pp->pbound_gen = c->bind_gen;
		}
	}
	if (mysql_stmt_execute(s) != 0) {
		unsigned no = mysql_stmt_errno(s);
		*stale = no == MY_ER_UNKNOWN_STMT_HANDLER || no == MY_ER_NEED_REPREPARE;
		return my_stmt_fail(s, "executing a statement", table, err);
	}
	nf = mysql_stmt_field_count(s);
	if (nf)
		return my_stmt_rows(c, st, pp, nf, sink, err);
	if (sink) {
		sink->affected = (int64_t)mysql_stmt_affected_rows(s);
		if (st->kind == EMH_STMT_INSERT)
			sink->last_id = (int64_t)mysql_stmt_insert_id(s);
	}
	return 0;
}

int my_stmt_exec(emh_conn *c, const emh_stmt *st, const emh_value *params, emh_rowsink *sink,
		 emh_error *err)
{
	my_prep *pp = NULL;
	bool stale = false;
	int rc = my_call_enter(c, err);
	if (rc)
		return rc;
	for (int attempt = 0;; attempt++) {
		if ((rc = my_stmt_get(c, st, &pp, err)))
			return my_deadline(c, rc, err);
		stale = false;
		rc = my_stmt_run(c, st, pp, params, sink, &stale, err);
		/* rc > 0 is the sink's "enough rows": delivered, never resent */
		if (rc < 0 && stale && attempt == 0) {
			emh_prepcache_drop(c->stmts, st->id);
			continue;
		}
		return my_deadline(c, rc, err);
	}
}
