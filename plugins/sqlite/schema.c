/* SPDX-License-Identifier: MIT */
/*
 * plugins/sqlite/schema.c: the SQLite dialect (column types, LIMIT/ESCAPE
 * spelling, upsert) and schema sync: create a table and its indexes, or
 * check an existing table's columns.
 */
#include "config.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sqlite3.h>

#include <emhost/buf.h>
#include <emhost/driver.h>
#include <emhost/sql.h>

#include "sqlite_int.h"

/*
 * Column type in CREATE TABLE.  A generated key is "INTEGER" exactly, so
 * that with PRIMARY KEY it is the rowid (assigned by SQLite; a deleted
 * largest key may be handed out again, there is no AUTOINCREMENT).
 */
static void sq_column_type(const emh_meta *m, int field, char *buf, size_t cap)
{
	const char *t;

	switch (m->entity->fields[field].type) {
	case EMH_T_DOUBLE:
		t = "REAL";
		break;
	case EMH_T_TEXT:
	case EMH_T_JSON:
		t = "TEXT";
		break;
	case EMH_T_BLOB:
		t = "BLOB";
		break;
	default: /* bool, int32, int64, timestamp (microseconds UTC) */
		t = "INTEGER";
		break;
	}
	/* (emh_sql_create_table writes NOT NULL on a non-generated key: SQLite
	 * would otherwise let a PRIMARY KEY other than the rowid hold NULL.) */
	snprintf(buf, cap, "%s", t);
}

const emh_sql_dialect sq_dialect = {
	.quote = '"',
	.numbered_params = false,
	.returning = true,
	.limit_all = "-1",
	.like_escape = " ESCAPE '\\'",
	.begin_sql = "BEGIN IMMEDIATE", /* see sq_begin */
	.commit_sql = "COMMIT",
	.rollback_sql = "ROLLBACK",
	.column_type = sq_column_type,
	.upsert = EMH_SQL_UPSERT_ON_CONFLICT, /* 3.24+ */
};

static bool sq_has(const char *type, const char *word)
{
	return strcasestr(type, word) != NULL;
}

/*
 * Whether an existing column's declared type fits a field: the types this
 * driver creates, and others of the same SQLite affinity (INT, BIGINT ... for
 * INTEGER; FLOAT, DOUBLE for REAL; VARCHAR, CLOB for TEXT).  A generated key
 * must be declared INTEGER exactly, or it would not be the rowid and no key
 * would be generated.
 */
static bool sq_type_compatible(const emh_meta *m, int field, const char *type)
{
	const emh_field *f = &m->entity->fields[field];
	const char *t = type ? type : "";

	if (field == m->pk && m->generated)
		return strcasecmp(t, "INTEGER") == 0;
	switch (f->type) {
	case EMH_T_BOOL:
		if (!strcasecmp(t, "BOOLEAN") || !strcasecmp(t, "BOOL"))
			return true;
		/* fall through */
	case EMH_T_INT32:
	case EMH_T_INT64:
	case EMH_T_TIMESTAMP:
		return sq_has(t, "INT");
	case EMH_T_DOUBLE:
		if (sq_has(t, "INT") || sq_has(t, "CHAR") || sq_has(t, "CLOB") || sq_has(t, "TEXT") ||
		    sq_has(t, "BLOB"))
			return false;
		return sq_has(t, "REAL") || sq_has(t, "FLOA") || sq_has(t, "DOUB") || sq_has(t, "NUMERIC") ||
		       sq_has(t, "DECIMAL");
	case EMH_T_TEXT:
	case EMH_T_JSON:
		return !sq_has(t, "INT") && (sq_has(t, "CHAR") || sq_has(t, "CLOB") || sq_has(t, "TEXT"));
	case EMH_T_BLOB:
		return !strcasecmp(t, "BLOB") || !*t;
	default:
		return false;
	}
}

/* Names and declared types of table's columns; *n == 0 when it does not exist. */
static int sq_table_info(emh_conn *c, const emh_meta *m, char ***names, char ***types, size_t *n,
			 emh_error *err)
{
	emh_buf q = EMH_BUF_INIT;
	sqlite3_stmt *st = NULL;
	size_t cap = 0;
	int rc;

	*names = *types = NULL;
	*n = 0;
	emh_buf_adds(&q, "PRAGMA table_info(");
	emh_buf_ident(&q, &sq_dialect, m->entity->table);
	emh_buf_adds(&q, ")");
	if (q.oom) {
		emh_buf_release(&q);
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	}
	rc = sq_prepare(c, q.ptr, -1, 0, &st, NULL, err);
	emh_buf_release(&q);
	if (rc)
		return rc;
	int waited = 0;
	for (;;) {
		int s = sqlite3_step(st);
		if (s == SQLITE_DONE)
			break;
		if (s != SQLITE_ROW) {
			if (*n == 0 && sq_locked_wait(sqlite3_extended_errcode(c->db), c->busy_ms, &waited)) {
				sqlite3_reset(st);
				continue;
			}
			rc = sq_fail(c, s, "table_info", err);
			break;
		}
		if (*n == cap) {
			size_t nc = cap ? cap * 2 : 16;
			char **a = realloc(*names, nc * sizeof *a), **b;
			if (a)
				*names = a;
			b = a ? realloc(*types, nc * sizeof *b) : NULL;
			if (!b) {
				rc = emh_error_set(err, EMH_ENOMEM, "out of memory");
				break;
			}
			*types = b;
			cap = nc;
		}
		const unsigned char *name = sqlite3_column_text(st, 1), *type = sqlite3_column_text(st, 2);
		(*names)[*n] = strdup(name ? (const char *)name : "");
		(*types)[*n] = strdup(type ? (const char *)type : "");
		(*n)++;
		if (!(*names)[*n - 1] || !(*types)[*n - 1]) {
			rc = emh_error_set(err, EMH_ENOMEM, "out of memory");
			break;
		}
	}
	sqlite3_finalize(st);
	return rc;
}

static void sq_strv_free(char **v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free(v[i]);
	free(v);
}

static int sq_exec_buf(emh_conn *c, emh_buf *b, emh_error *err)
{
	if (b->oom)
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	return sq_execute(c, b->ptr, err);
}

/*
 * Create the table when missing, else check its columns; then create any
 * missing index.  In one IMMEDIATE transaction (unless one is open) so that
 * processes syncing the same file at once do not race.
 */
int sq_sync(emh_conn *c, const emh_meta *m, emh_error *err)
{
	const emh_sql_dialect *d = &sq_dialect;
	char **names = NULL, **types = NULL;
	emh_buf b = EMH_BUF_INIT;
	bool own_tx = sqlite3_get_autocommit(c->db) != 0;
	size_t n = 0;
	int rc;

	if (own_tx && (rc = sq_begin(c, err)) != 0)
		return rc;
	sq_deadline_start(c);
	rc = sq_table_info(c, m, &names, &types, &n, err);
	if (rc)
		goto out_rollback;
	if (n == 0) {
		rc = emh_sql_create_table(d, m, &b);
		if (!rc)
			rc = sq_exec_buf(c, &b, err);
		else
			rc = emh_error_set(err, rc, "out of memory");
	} else {
		rc = emh_sql_check_columns(m, (const char *const *)names, (const char *const *)types, n,
					   sq_type_compatible, err);
	}
	for (size_t i = 0, ni = emh_sql_index_count(m); !rc && i < ni; i++) {
		const char *name;
		emh_buf_reset(&b);
		rc = emh_sql_create_index(d, m, i, true, &b, &name);
		if (rc)
			rc = emh_error_set(err, rc, "out of memory");
		else
			rc = sq_exec_buf(c, &b, err);
	}
	if (rc)
		goto out_rollback;
	if (own_tx)
		rc = sq_commit(c, err);
	if (rc)
		goto out_rollback;
	emh_buf_release(&b);
	sq_strv_free(names, n);
	sq_strv_free(types, n);
	return 0;

out_rollback:
	if (own_tx)
		sq_rollback(c, NULL);
	emh_buf_release(&b);
	sq_strv_free(names, n);
	sq_strv_free(types, n);
	return rc;
}
