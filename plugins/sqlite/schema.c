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

static bool sq_type_compatible(const emh_meta *m, int field, const char *type);

/* DEFAULT of a NOT NULL column added to a table with rows: the zero of its type. */
static void sq_column_default(const emh_meta *m, int field, char *buf, size_t cap)
{
	switch (m->entity->fields[field].type) {
	case EMH_T_DOUBLE: snprintf(buf, cap, "0.0"); break;
	case EMH_T_TEXT: snprintf(buf, cap, "''"); break;
	case EMH_T_JSON: snprintf(buf, cap, "'null'"); break;
	case EMH_T_BLOB: snprintf(buf, cap, "X''"); break;
	default: snprintf(buf, cap, "0"); break; /* bool, integers, timestamp (microseconds) */
	}
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
	.transactional_ddl = true,
	.alter = EMH_SQL_ALTER_NONE, /* ALTER TABLE changes no column's type or nullability */
	.column_fits = sq_type_compatible,
	.column_default = sq_column_default,
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
 * Table constraints that keep each integer column within its field's type,
 * put before the closing parenthesis of emh_sql_create_table's statement:
 * an int32 column takes integers in int32 only, an int64 one no REAL (what
 * SQLite makes of an integer sum past int64).  An update past a range then
 * fails (SQLITE_CONSTRAINT_CHECK: EMH_EINVAL) as it does on PostgreSQL,
 * instead of storing what the field cannot hold; a NULL passes.
 *
 * Table constraints rather than part of .column_type: the declared types --
 * what PRAGMA table_info reports, schema checks compare and schema diff
 * writes -- stay what they were, so a table created before, without these
 * checks, is accepted as it was; there the decoding refuses such a value
 * (sq_decode) instead.
 */
static void sq_range_checks(const emh_meta *m, emh_buf *b)
{
	const emh_entity *e = m->entity;

	if (b->oom || !b->len || b->ptr[b->len - 1] != ')')
		return;
	b->len--; /* the ')' closing the column list, added back below */
	for (size_t i = 0; i < e->nfields; i++) {
		const emh_field *f = &e->fields[i];
		if ((int)i == m->pk && m->generated)
			continue; /* the rowid: an integer always */
		if (f->type == EMH_T_INT32) {
			emh_buf_adds(b, ", CHECK (");
			emh_buf_ident(b, &sq_dialect, f->column);
			emh_buf_adds(b, " BETWEEN -2147483648 AND 2147483647)");
		} else if (f->type == EMH_T_INT64) {
			emh_buf_adds(b, ", CHECK (typeof(");
			emh_buf_ident(b, &sq_dialect, f->column);
			emh_buf_adds(b, ") IN ('integer', 'null'))");
		}
	}
	emh_buf_adds(b, ")");
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
		if (!rc) {
			sq_range_checks(m, &b);
			rc = sq_exec_buf(c, &b, err);
		} else {
			rc = emh_error_set(err, rc, "out of memory");
		}
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

/* ---- describing a table (schema diff, schema = "check") ---- */

/* Step a prepared catalogue query to its end, handing each row to fn. */
static int sq_rows(emh_conn *c, sqlite3_stmt *st, int (*fn)(sqlite3_stmt *st, void *arg), void *arg,
		   const char *what, emh_error *err)
{
	int waited = 0, rc = 0;
	bool rows = false;
	for (;;) {
		int s = sqlite3_step(st);
		if (s == SQLITE_DONE)
			break;
		if (s == SQLITE_ROW) {
			rows = true;
			if (fn(st, arg) != 0) {
				rc = emh_error_set(err, EMH_ENOMEM, "out of memory");
				break;
			}
			continue;
		}
		if (!rows && sq_locked_wait(sqlite3_extended_errcode(c->db), c->busy_ms, &waited)) {
			sqlite3_reset(st);
			continue;
		}
		rc = sq_fail(c, s, what, err);
		break;
	}
	return rc;
}

static const char *sq_text(sqlite3_stmt *st, int col)
{
	const unsigned char *t = sqlite3_column_text(st, col);
	return t ? (const char *)t : "";
}


/* Columns, then index rows (one per column of an index, in order; an index
 * is added when the next one begins). */
typedef struct sq_idx_acc {
	emh_table_desc *t;
	size_t columns;
	char name[256];
	bool unique, constraint, skip;
	char *cols[EMH_ENTITY_MAX_FIELDS];
	size_t ncols;
} sq_idx_acc;

static int sq_idx_flush(sq_idx_acc *a)
{
	int rc = 0;
	if (a->name[0] && !a->skip)
		rc = emh_table_desc_index(a->t, a->name, a->unique, a->constraint, (const char *const *)a->cols, a->ncols);
	for (size_t i = 0; i < a->ncols; i++)
		free(a->cols[i]);
	a->ncols = 0;
	a->name[0] = '\0';
	return rc;
}

static int sq_desc_column(sqlite3_stmt *st, void *arg)
{
	sq_idx_acc *a = arg;
	/* A primary key takes no NULL whatever notnull says (an INTEGER
	 * PRIMARY KEY is the rowid; others are created NOT NULL). */
	bool nullable = sqlite3_column_int(st, 2) == 0 && sqlite3_column_int(st, 3) == 0;
	a->columns++;
	return emh_table_desc_column(a->t, sq_text(st, 0), sq_text(st, 1), nullable);
}

static int sq_desc_index(sqlite3_stmt *st, void *arg)
{
	sq_idx_acc *a = arg;
	const char *name = sq_text(st, 0);
	if (strcmp(name, a->name) != 0) {
		if (sq_idx_flush(a))
			return -1;
		snprintf(a->name, sizeof a->name, "%s", name);
		const char *origin = sq_text(st, 2);
		a->unique = sqlite3_column_int(st, 1) != 0;
		a->constraint = strcmp(origin, "u") == 0;
		/* the key's own index, partial indexes: nothing an entity declares */
		a->skip = strcmp(origin, "pk") == 0 || sqlite3_column_int(st, 3) != 0;
	}
	if (sqlite3_column_type(st, 4) == SQLITE_NULL) { /* an expression */
		a->skip = true;
		return 0;
	}
	if (a->ncols == EMH_ENTITY_MAX_FIELDS) {
		a->skip = true;
		return 0;
	}
	return (a->cols[a->ncols] = strdup(sq_text(st, 4))) != NULL ? (a->ncols++, 0) : -1;
}

int sq_describe(emh_conn *c, const char *table, emh_table_desc *out, emh_error *err)
{
	static const char cols_sql[] = "SELECT name, type, \"notnull\", pk FROM pragma_table_info(?1) ORDER BY cid";
	static const char idx_sql[] =
		"SELECT il.name, il.\"unique\", il.origin, il.partial, ii.name"
		" FROM pragma_index_list(?1) AS il, pragma_index_info(il.name) AS ii ORDER BY il.seq, ii.seqno";
	sqlite3_stmt *st = NULL;
	sq_idx_acc acc = {.t = out};
	sq_deadline_start(c);
	int rc = sq_prepare(c, cols_sql, -1, 0, &st, NULL, err);
	if (rc)
		return rc;
	sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
	rc = sq_rows(c, st, sq_desc_column, &acc, "describing a table", err);
	sqlite3_finalize(st);
	st = NULL;
	if (rc)
		return rc;
	if (acc.columns == 0)
		return EMH_ENOTFOUND;
	if ((rc = sq_prepare(c, idx_sql, -1, 0, &st, NULL, err)) != 0)
		return rc;
	sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
	rc = sq_rows(c, st, sq_desc_index, &acc, "describing the indexes of a table", err);
	if (!rc && sq_idx_flush(&acc))
		rc = emh_error_set(err, EMH_ENOMEM, "out of memory");
	sq_idx_flush(&acc);
	sqlite3_finalize(st);
	return rc;
}
