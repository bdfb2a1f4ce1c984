/* SPDX-License-Identifier: MIT */
/*
 * plugins/sqlite/statements.c: the core's compiled statements: prepared once
 * per connection (emh_prepcache), bound, stepped and decoded into the sink.
 */
#include "config.h"

#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include <emhost/driver.h>
#include <emhost/prepcache.h>

#include "sqlite_int.h"

/* Statement ids above this are prepared per call instead of cached (ids are
 * dense and small; this only guards the cache against a runaway id). */
#define SQ_CACHE_MAX 65536u
/* Row values kept on the stack; wider results use the heap. */
#define SQ_STACK_COLS 80

/* Prepare st's text and check that it has the shape the core expects. */
static int sq_stmt_prepare(emh_conn *c, const emh_stmt *st, unsigned flags, sqlite3_stmt **out, emh_error *err)
{
	int rc;

	if (st->sql_len > INT_MAX)
		return emh_error_set(err, EMH_EINVAL, "sqlite: statement too long");
	rc = sq_prepare(c, st->sql, (int)st->sql_len, flags, out, NULL, err);
	if (rc)
		return rc;
	if (!*out)
		return emh_error_set(err, EMH_EINVAL, "sqlite: empty statement");
	if (sqlite3_bind_parameter_count(*out) != st->nparams ||
	    (st->ncols && sqlite3_column_count(*out) < st->ncols)) {
		rc = emh_error_set(err, EMH_EDRIVER,
				   "sqlite: statement takes %d parameters and returns %d columns, expected %u and %u",
				   sqlite3_bind_parameter_count(*out), sqlite3_column_count(*out),
				   (unsigned)st->nparams, (unsigned)st->ncols);
		sqlite3_finalize(*out);
		*out = NULL;
	}
	return rc;
}

/* The cached statement for st, prepared on first use; *owned when it is
 * not cached and the caller finalizes it. */
static int sq_stmt_get(emh_conn *c, const emh_stmt *st, sqlite3_stmt **out, bool *owned, emh_error *err)
{
	*owned = false;
	if (st->id >= SQ_CACHE_MAX) {
		*owned = true;
		return sq_stmt_prepare(c, st, 0, out, err);
	}
	*out = emh_prepcache_get(c->stmts, st->id, st);
	if (*out)
		return 0;
	/* Not prepared yet, or the id stood for another statement (put destroys that one). */
	int rc = sq_stmt_prepare(c, st, SQLITE_PREPARE_PERSISTENT, out, err);
	if (!rc && (rc = emh_prepcache_put(c->stmts, st->id, st, *out, err)) != 0) {
		sqlite3_finalize(*out);
		*out = NULL;
	}
	return rc;
}

/*
 * Bind params by the type each value carries (which is what its union
 * holds; st->param_types is the column's type and may differ, e.g. an int64
 * key for an int32 column).  Timestamps are INTEGER microseconds, booleans
 * 0/1.  An empty blob is bound as a zero-length blob, not NULL.
 */
static int sq_bind(sqlite3_stmt *s, const emh_stmt *st, const emh_value *params, emh_error *err)
{
	static const char empty[1];

	for (int i = 0; i < st->nparams; i++) {
		const emh_value *v = &params[i];
		emh_type t = v->type ? v->type : st->param_types[i];
		int rc, n = i + 1;

		if (v->is_null) {
			rc = sqlite3_bind_null(s, n);
		} else {
			switch (t) {
			case EMH_T_BOOL:
				rc = sqlite3_bind_int(s, n, v->u.b ? 1 : 0);
				break;
			case EMH_T_INT32:
				rc = sqlite3_bind_int64(s, n, v->u.i32);
				break;
			case EMH_T_INT64:
			case EMH_T_TIMESTAMP:
				rc = sqlite3_bind_int64(s, n, v->u.i64);
				break;
			case EMH_T_DOUBLE:
				rc = sqlite3_bind_double(s, n, v->u.d);
				break;
			case EMH_T_TEXT:
			case EMH_T_JSON:
				rc = sqlite3_bind_text64(s, n, v->u.s.ptr ? v->u.s.ptr : empty, v->u.s.len,
							 SQLITE_STATIC, SQLITE_UTF8);
				break;
			case EMH_T_BLOB:
				if (v->u.s.len == 0)
					rc = sqlite3_bind_zeroblob(s, n, 0);
				else
					rc = sqlite3_bind_blob64(s, n, v->u.s.ptr, v->u.s.len, SQLITE_STATIC);
				break;
			default:
				return emh_error_set(err, EMH_EINVAL, "sqlite: parameter %d has unknown type %d", n,
						     (int)t);
			}
		}
		if (rc != SQLITE_OK)
			return sq_fail(NULL, rc, "bind", err);
	}
	return 0;
}

/*
 * A stored value its field's type cannot hold: what a table without the
 * range checks sq_sync now creates (an older table, another writer) keeps
 * after an integer update past the range.  Refused rather than read wrong
 * (cut to 32 bits, or clamped), naming the column; the value is not shown.
 */
static int sq_decode_range(sqlite3_stmt *s, int col, const char *what, emh_error *err)
{
	const char *name = sqlite3_column_name(s, col);
	return emh_error_set(err, EMH_ESCHEMA, "sqlite: column '%s' holds %s, past its field's range",
			     name ? name : "?", what);
}

/*
 * Decode the current row into cols per st->col_types.  Text and blobs
 * borrow SQLite's buffers (valid until the next step or reset).
 *
 * Each column is read through sqlite3_column_value and the sqlite3_value_*
 * calls on it: one API call per column that takes the connection's mutex
 * and sets its error state, where sqlite3_column_int64 and _bytes each do.
 * The value is unprotected, which the sqlite3_value_* calls accept on a
 * connection no other thread uses at the time (a pooled one; opened
 * SQLITE_OPEN_NOMUTEX there is no mutex to hold anyway).
 *
 * sqlite3_value_type is asked only when the value read could be a NULL (an
 * integer or real 0, a NULL text or blob pointer): a NULL reads as exactly
 * those, so any other reading is not NULL; and reading a NULL converts
 * nothing, so the type asked afterwards is still SQLITE_NULL.  Only the
 * members a type reads are written (no memset per column).
 */
static int sq_decode(sqlite3_stmt *s, const emh_stmt *st, emh_value *cols, emh_error *err)
{
	static const char empty[1];

	for (int i = 0; i < st->ncols; i++) {
		emh_value *v = &cols[i];
		emh_type t = st->col_types[i];
		sqlite3_value *sv = sqlite3_column_value(s, i);

		v->type = t;
		v->is_null = false;
		switch (t) {
		case EMH_T_BOOL:
		case EMH_T_INT32:
		case EMH_T_INT64:
		case EMH_T_TIMESTAMP: {
			int64_t x = sqlite3_value_int64(sv);
			if (x == 0 && sqlite3_value_type(sv) == SQLITE_NULL)
				v->is_null = true;
			if (t == EMH_T_BOOL) {
				v->u.i64 = 0; /* the member read and the bytes after it, as for a NULL */
				v->u.b = x != 0;
			} else if (t == EMH_T_INT32) {
				if (x < INT32_MIN || x > INT32_MAX)
					return sq_decode_range(s, i, "an integer outside int32", err);
				v->u.i64 = 0;
				v->u.i32 = (int32_t)x;
			} else {
				/* A sum past int64 is stored as a REAL, which reads clamped
				 * to exactly these two: only then is the type asked. */
				if ((x == INT64_MAX || x == INT64_MIN) && sqlite3_value_type(sv) == SQLITE_FLOAT)
					return sq_decode_range(s, i, "a real number beyond int64", err);
				v->u.i64 = x;
			}
			break;
		}
		case EMH_T_DOUBLE:
			v->u.d = sqlite3_value_double(sv);
			if (v->u.d == 0 && sqlite3_value_type(sv) == SQLITE_NULL)
				v->is_null = true; /* read as +0.0: u is all zero */
			break;
		case EMH_T_TEXT:
		case EMH_T_JSON: {
			const unsigned char *p = sqlite3_value_text(sv);
			if (!p) {
				if (sqlite3_value_type(sv) != SQLITE_NULL)
					return emh_error_set(err, EMH_ENOMEM, "out of memory");
				v->is_null = true;
				v->u.s.ptr = NULL;
				v->u.s.len = 0;
				break;
			}
			v->u.s.ptr = (const char *)p;
			v->u.s.len = (size_t)sqlite3_value_bytes(sv);
			break;
		}
		case EMH_T_BLOB: {
			const void *p = sqlite3_value_blob(sv);
			size_t n = (size_t)sqlite3_value_bytes(sv);
			if (!p) {
				if (sqlite3_value_type(sv) == SQLITE_NULL) {
					v->is_null = true;
					v->u.s.ptr = NULL;
					v->u.s.len = 0;
					break;
				}
				if (n)
					return emh_error_set(err, EMH_ENOMEM, "out of memory");
			}
			v->u.s.ptr = p ? (const char *)p : empty; /* an empty blob is not NULL */
			v->u.s.len = n;
			break;
		}
		default:
			return emh_error_set(err, EMH_EINVAL, "sqlite: column %d has unknown type %d", i, (int)t);
		}
	}
	return 0;
}

int sq_stmt_exec(emh_conn *c, const emh_stmt *st, const emh_value *params, emh_rowsink *sink,
		 emh_error *err)
{
	emh_value stack[SQ_STACK_COLS], *cols = stack;
	sqlite3_stmt *s;
	bool owned, rows = false;
	int rc, waited = 0;

	sq_deadline_start(c);
	rc = sq_stmt_get(c, st, &s, &owned, err);
	if (rc)
		return rc;
	if (st->ncols > SQ_STACK_COLS) {
		cols = calloc(st->ncols, sizeof *cols);
		if (!cols) {
			rc = emh_error_set(err, EMH_ENOMEM, "out of memory");
			goto out_reset;
		}
	}
	rc = sq_bind(s, st, params, err);
	if (rc)
		goto out_reset;
	for (;;) {
		int r = sqlite3_step(s);
		if (r == SQLITE_ROW) {
			rows = true;
			if (!sink || !sink->row || !st->ncols)
				continue;
			rc = sq_decode(s, st, cols, err);
			if (!rc)
				rc = sink->row(sink, cols, err);
			if (rc)
				goto out_reset;
			continue;
		}
		if (r == SQLITE_DONE)
			break;
		/* Table locks are taken before the first row: retrying is only
		 * safe while nothing has been delivered. */
		if (!rows && sq_locked_wait(sqlite3_extended_errcode(c->db), c->busy_ms, &waited)) {
			sqlite3_reset(s);
			continue;
		}
		rc = sq_fail(c, r, st->kind == EMH_STMT_SELECT || st->kind == EMH_STMT_COUNT ? "query"
				 : st->kind == EMH_STMT_INSERT ? "insert"
				 : st->kind == EMH_STMT_UPDATE ? "update"
				 : st->kind == EMH_STMT_DELETE ? "delete" : "statement",
			     err);
		goto out_reset;
	}
	if (sink) {
		if (st->kind == EMH_STMT_INSERT || st->kind == EMH_STMT_UPDATE || st->kind == EMH_STMT_DELETE ||
		    (st->kind == EMH_STMT_OTHER && !sqlite3_stmt_readonly(s)))
			sink->affected = sqlite3_changes(c->db);
		if (st->kind == EMH_STMT_INSERT)
			sink->last_id = sqlite3_last_insert_rowid(c->db);
	}

out_reset:
	/* Reset ends the statement's read transaction (in autocommit mode) so a
	 * cached statement never holds a lock between calls. */
	sqlite3_reset(s);
	/* No sqlite3_clear_bindings: sq_bind binds every parameter before each
	 * step (the count was checked when the statement was prepared), and a
	 * binding left from a failed bind is never stepped with. */
	if (owned)
		sqlite3_finalize(s);
	if (cols != stack)
		free(cols);
	return rc;
}
