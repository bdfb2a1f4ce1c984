/* SPDX-License-Identifier: MIT */
/*
 * plugins/mysql/statements.c: the core's compiled statements: prepared once
 * per connection (emh_prepcache), executed with bound parameters, rows read
 * into the sink; a statement the server forgot is prepared again once.
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

static int my_grow_params(emh_conn *c, size_t n)
{
	if (n <= c->npcap)
		return 0;
	MYSQL_BIND *b = realloc(c->pbind, n * sizeof *b);
	if (!b)
		return EMH_ENOMEM;
	c->pbind = b;
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

/* The connection's prepared handle for st, preparing it on first use. */
static int my_stmt_get(emh_conn *c, const emh_stmt *st, MYSQL_STMT **out, emh_error *err)
{
	MYSQL_STMT *h = emh_prepcache_get(c->stmts, st->id, st);
	int rc;
	if (h) {
		*out = h;
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
	if ((rc = emh_prepcache_put(c->stmts, st->id, st, h, err))) {
		mysql_stmt_close(h);
		return rc;
	}
	*out = h;
	return 0;
}

/* Fetch every stored row of s into sink. */
static int my_stmt_rows(emh_conn *c, const emh_stmt *st, MYSQL_STMT *s, unsigned nf, emh_rowsink *sink,
			emh_error *err)
{
	const char *table = my_table_of(st);
	int rc = 0, f;
	if (mysql_stmt_store_result(s) != 0)
		return my_stmt_fail(s, "reading rows", table, err);
	if (st->ncols && nf != st->ncols) {
		mysql_stmt_free_result(s);
		return emh_error_set(err, EMH_EPLUGIN, "statement on table '%s' returns %u columns, %u expected",
				     table ? table : "?", nf, (unsigned)st->ncols);
	}
	if (my_grow_cols(c, nf)) {
		mysql_stmt_free_result(s);
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	}
	for (unsigned i = 0; i < nf; i++) {
		emh_type t = i < st->ncols ? st->col_types[i] : EMH_T_TEXT;
		my_col *col = &c->rcol[i];
		if ((t == EMH_T_TEXT || t == EMH_T_JSON || t == EMH_T_BLOB) && !col->buf) {
			col->buf = malloc(MY_RESULT_BUF_INIT);
			col->cap = col->buf ? MY_RESULT_BUF_INIT : 0;
		}
		my_bind_col(&c->rbind[i], col, t);
	}
	if (mysql_stmt_bind_result(s, c->rbind) != 0) {
		rc = my_stmt_fail(s, "binding results", table, err);
		goto out_free_result;
	}
	while ((f = mysql_stmt_fetch(s)) == 0 || f == MYSQL_DATA_TRUNCATED) {
		bool rebind = false;
		if (f == MYSQL_DATA_TRUNCATED) {
			/* A text or blob longer than its buffer: grow it and fetch that column again. */
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
				c->rbind[i].buffer = nb;
				c->rbind[i].buffer_length = need;
				if (mysql_stmt_fetch_column(s, &c->rbind[i], i, 0) != 0) {
					rc = my_stmt_fail(s, "reading a column", table, err);
					goto out_free_result;
				}
				rebind = true;
			}
		}
		for (unsigned i = 0; i < nf; i++)
			c->rvals[i] = my_col_value(&c->rcol[i], i < st->ncols ? st->col_types[i] : EMH_T_TEXT);
		if (sink && sink->row && (rc = sink->row(sink, c->rvals, err)) != 0)
			goto out_free_result;
		if (rebind && mysql_stmt_bind_result(s, c->rbind) != 0) {
			rc = my_stmt_fail(s, "binding results", table, err);
			goto out_free_result;
		}
	}
	if (f != MYSQL_NO_DATA)
		rc = my_stmt_fail(s, "reading rows", table, err);
out_free_result:
	mysql_stmt_free_result(s);
	return rc;
}

/* One execution of a prepared statement; *stale when the server forgot it. */
static int my_stmt_run(emh_conn *c, const emh_stmt *st, MYSQL_STMT *s, const emh_value *params,
		       emh_rowsink *sink, bool *stale, emh_error *err)
{
	const char *table = my_table_of(st);
	unsigned np = st->nparams, nf;
	int rc;

	*stale = false;
	if (np) {
		if (my_grow_params(c, np))
			return emh_error_set(err, EMH_ENOMEM, "out of memory");
		for (unsigned i = 0; i < np; i++) {
			emh_type t = st->param_types ? st->param_types[i] : params[i].type;
			if ((rc = my_bind_param(&c->pbind[i], &c->pval[i], t, &params[i], i, err)))
				return rc;
		}
		if (mysql_stmt_bind_param(s, c->pbind) != 0)
			return my_stmt_fail(s, "binding parameters", table, err);
	}
	if (mysql_stmt_execute(s) != 0) {
		unsigned no = mysql_stmt_errno(s);
		*stale = no == MY_ER_UNKNOWN_STMT_HANDLER || no == MY_ER_NEED_REPREPARE;
		return my_stmt_fail(s, "executing a statement", table, err);
	}
	nf = mysql_stmt_field_count(s);
	if (nf)
		return my_stmt_rows(c, st, s, nf, sink, err);
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
	MYSQL_STMT *s = NULL;
	bool stale = false;
	int rc = my_thread_enter(err);
	if (rc)
		return rc;
	for (int attempt = 0;; attempt++) {
		if ((rc = my_stmt_get(c, st, &s, err)))
			return rc;
		stale = false;
		rc = my_stmt_run(c, st, s, params, sink, &stale, err);
		/* rc > 0 is the sink's "enough rows": delivered, never resent */
		if (rc < 0 && stale && attempt == 0) {
			emh_prepcache_drop(c->stmts, st->id);
			continue;
		}
		return rc;
	}
}
