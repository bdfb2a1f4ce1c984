/* SPDX-License-Identifier: MIT */
/*
 * plugins/mysql/schema.c: the MySQL dialect (column types, LIMIT/ESCAPE
 * spelling, ON DUPLICATE KEY upsert) and schema sync: create a table (InnoDB,
 * utf8mb4, a binary NO PAD collation) and its indexes, or check an existing
 * table's columns, from information_schema.
 */
#include "config.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <mysql.h>

#include <emhost/buf.h>
#include <emhost/driver.h>
#include <emhost/sql.h>

#include "mysql_int.h"

/* True when field i is the key, unique, indexed, or in a composite index. */
static bool my_field_indexed(const emh_meta *m, int i)
{
	const emh_entity *e = m->entity;
	if (i == m->pk || (e->fields[i].flags & (EMH_F_PK | EMH_F_UNIQUE | EMH_F_INDEXED)))
		return true;
	for (size_t k = 0; k < e->nindexes; k++)
		for (const char *const *f = e->indexes[k].fields; f && *f; f++)
			if (strcmp(*f, e->fields[i].name) == 0)
				return true;
	return false;
}

/*
 * Column types.  Text that is a key or indexed is VARCHAR(255): InnoDB
 * indexes at most 3072 bytes, and a full-length index (255 x 4 bytes of
 * utf8mb4 = 1020) keeps uniqueness exact where a prefix index would not.
 * Other text and JSON are LONGTEXT (stored verbatim; MySQL's JSON type
 * would reformat it).  The collation comes from the table default.
 */
static void my_column_type(const emh_meta *m, int field, char *buf, size_t cap)
{
	const emh_field *f = &m->entity->fields[field];
	bool gen = field == m->pk && m->generated;
	switch (f->type) {
	case EMH_T_BOOL:
		snprintf(buf, cap, "TINYINT(1)");
		break;
	case EMH_T_INT32:
		snprintf(buf, cap, "INT%s", gen ? " AUTO_INCREMENT" : "");
		break;
	case EMH_T_INT64:
		snprintf(buf, cap, "BIGINT%s", gen ? " AUTO_INCREMENT" : "");
		break;
	case EMH_T_DOUBLE:
		snprintf(buf, cap, "DOUBLE");
		break;
	case EMH_T_TEXT:
		if (my_field_indexed(m, field))
			snprintf(buf, cap, "VARCHAR(%d)", MY_INDEXED_TEXT_LEN);
		else
			snprintf(buf, cap, "LONGTEXT");
		break;
	case EMH_T_BLOB:
		snprintf(buf, cap, "LONGBLOB");
		break;
	case EMH_T_TIMESTAMP:
		snprintf(buf, cap, "DATETIME(6)");
		break;
	case EMH_T_JSON:
		snprintf(buf, cap, "LONGTEXT");
		break;
	default:
		snprintf(buf, cap, "LONGTEXT");
		break;
	}
}

static bool my_column_fits(const emh_meta *m, int field, const char *type);

/*
 * DEFAULT of a NOT NULL column added to a table with rows: the zero of its
 * type.  LONGTEXT and LONGBLOB take an expression in parentheses (MariaDB
 * 10.2.1+, MySQL 8.0.13+), not a literal.
 */
static void my_column_default(const emh_meta *m, int field, char *buf, size_t cap)
{
	switch (m->entity->fields[field].type) {
	case EMH_T_TEXT: snprintf(buf, cap, "%s", my_field_indexed(m, field) ? "''" : "('')"); break;
	case EMH_T_JSON: snprintf(buf, cap, "('null')"); break;
	case EMH_T_BLOB: snprintf(buf, cap, "('')"); break;
	case EMH_T_TIMESTAMP: snprintf(buf, cap, "'1970-01-01 00:00:00'"); break;
	default: snprintf(buf, cap, "0"); break;
	}
}

const emh_sql_dialect my_dialect = {
	.quote = '`',
	.numbered_params = false,
	.returning = false,
	.limit_all = "18446744073709551615",
	/* sql_mode never has NO_BACKSLASH_ESCAPES (set at connect), so '\\' is one backslash. */
	.like_escape = " ESCAPE '\\\\'",
	.begin_sql = "START TRANSACTION",
	.column_type = my_column_type,
	.upsert = EMH_SQL_UPSERT_ON_DUPLICATE_KEY,
	.transactional_ddl = false, /* every DDL statement commits */
	.alter = EMH_SQL_ALTER_MODIFY,
	.drop_index_on_table = true,
	.column_fits = my_column_fits,
	.column_default = my_column_default,
	/* AVG of integers is a DECIMAL cut to 4 decimals: averaged as DOUBLE.
	 * SUM's DECIMAL is read as int64 by the client library, which reports a
	 * sum that does not fit (no CAST: it would clamp it). */
	.cast_double = "DOUBLE",
};

/* Base name of a reported column type: "varchar(255)" -> "varchar". */
static bool my_type_is(const char *type, const char *const *names)
{
	size_t n = strcspn(type, "( ");
	for (; *names; names++)
		if (strlen(*names) == n && strncasecmp(type, *names, n) == 0)
			return true;
	return false;
}

static bool my_compatible(const emh_meta *m, int field, const char *type)
{
	static const char *const small_ints[] = {"tinyint", "smallint", "mediumint", "int", "integer", NULL};
	/* Not "bit": the client library returns BIT as bytes, which no integer
	 * field can read. */
	static const char *const ints[] = {"tinyint", "smallint", "mediumint", "int", "integer",
					   "bigint", "bool", "boolean", NULL};
	/* Not float, decimal or numeric: they would round every double written
	 * (a DECIMAL(10,2) to 2 places).  real is DOUBLE unless sql_mode has
	 * REAL_AS_FLOAT (then the server reports it as float). */
	static const char *const reals[] = {"double", "real", NULL};
	static const char *const texts[] = {"varchar", "char", "text", "tinytext", "mediumtext",
					    "longtext", NULL};
	static const char *const jsons[] = {"varchar", "char", "text", "tinytext", "mediumtext",
					    "longtext", "json", NULL};
	static const char *const blobs[] = {"blob", "tinyblob", "mediumblob", "longblob",
					    "binary", "varbinary", NULL};
	static const char *const times[] = {"datetime", "timestamp", NULL};
	switch (m->entity->fields[field].type) {
	case EMH_T_BOOL:
	case EMH_T_INT64:
		return my_type_is(type, ints);
	case EMH_T_INT32:
		return my_type_is(type, small_ints);
	case EMH_T_DOUBLE:
		return my_type_is(type, reals);
	case EMH_T_TEXT:
		return my_type_is(type, texts);
	case EMH_T_JSON:
		return my_type_is(type, jsons);
	case EMH_T_BLOB:
		return my_type_is(type, blobs);
	case EMH_T_TIMESTAMP:
		return my_type_is(type, times);
	default:
		return false;
	}
}

void my_strtab_release(my_strtab *t)
{
	for (size_t i = 0; i < t->n * t->ncols; i++)
		free(t->v[i]);
	free(t->v);
	t->v = NULL;
	t->n = 0;
}

/* What sync accepts, except that an indexed text field needs VARCHAR (InnoDB
 * indexes no LONGTEXT without a prefix length, which would make uniqueness inexact). */
static bool my_column_fits(const emh_meta *m, int field, const char *type)
{
	static const char *const short_texts[] = {"varchar", "char", NULL};
	if (!my_compatible(m, field, type))
		return false;
	return m->entity->fields[field].type != EMH_T_TEXT || !my_field_indexed(m, field) ||
	       my_type_is(type, short_texts);
}

/*
 * Run a catalogue query with at most one string parameter (a table name:
 * bound, never pasted) and collect its rows as strings, each cut at 511 bytes
 * (names and type names are far shorter).
 */
int my_select_strings(emh_conn *c, const char *sql, const char *param, unsigned ncols, my_strtab *out,
		      const char *what, const char *table, emh_error *err)
{
	enum { CAP = 512, MAXCOLS = 4 };
	char bufs[MAXCOLS][CAP];
	unsigned long lens[MAXCOLS], plen = param ? (unsigned long)strlen(param) : 0;
	my_flag nulls[MAXCOLS], errs[MAXCOLS];
	MYSQL_BIND pb, rb[MAXCOLS];
	MYSQL_STMT *s;
	size_t cap = 0;
	int rc = 0, f;

	out->v = NULL;
	out->n = 0;
	out->ncols = ncols;
	s = mysql_stmt_init(c->my);
	if (!s)
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	if (mysql_stmt_prepare(s, sql, (unsigned long)strlen(sql)) != 0) {
		rc = my_stmt_fail(s, what, table, err);
		goto out_close;
	}
	if (param) {
		memset(&pb, 0, sizeof pb);
		pb.buffer_type = MYSQL_TYPE_STRING;
		pb.buffer = (void *)(uintptr_t)param;
		pb.buffer_length = plen;
		pb.length = &plen;
		if (mysql_stmt_bind_param(s, &pb) != 0) {
			rc = my_stmt_fail(s, what, table, err);
			goto out_close;
		}
	}
	if (mysql_stmt_execute(s) != 0 || mysql_stmt_store_result(s) != 0) {
		rc = my_stmt_fail(s, what, table, err);
		goto out_close;
	}
	memset(rb, 0, sizeof rb);
	for (unsigned i = 0; i < ncols; i++) {
		rb[i].buffer_type = MYSQL_TYPE_STRING;
		rb[i].buffer = bufs[i];
		rb[i].buffer_length = CAP;
		rb[i].length = &lens[i];
		rb[i].is_null = &nulls[i];
		rb[i].error = &errs[i];
	}
	if (mysql_stmt_bind_result(s, rb) != 0) {
		rc = my_stmt_fail(s, what, table, err);
		goto out_free;
	}
	while ((f = mysql_stmt_fetch(s)) == 0 || f == MYSQL_DATA_TRUNCATED) {
		if (out->n == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			char **v = realloc(out->v, ncap * ncols * sizeof *v);
			if (!v) {
				rc = emh_error_set(err, EMH_ENOMEM, "out of memory");
				goto out_free;
			}
			out->v = v;
			cap = ncap;
		}
		for (unsigned i = 0; i < ncols; i++) {
			size_t n = nulls[i] ? 0 : (lens[i] < CAP ? lens[i] : CAP - 1);
			char *sv = malloc(n + 1);
			if (!sv) {
				for (unsigned k = 0; k < i; k++)
					free(out->v[out->n * ncols + k]);
				rc = emh_error_set(err, EMH_ENOMEM, "out of memory");
				goto out_free;
			}
			memcpy(sv, bufs[i], n);
			sv[n] = '\0';
			out->v[out->n * ncols + i] = sv;
		}
		out->n++;
	}
	if (f != MYSQL_NO_DATA)
		rc = my_stmt_fail(s, what, table, err);
out_free:
	mysql_stmt_free_result(s);
out_close:
	mysql_stmt_close(s);
	if (rc)
		my_strtab_release(out);
	return rc;
}

/*
 * Collation of new tables: binary and NO PAD where the server has one, so
 * that text compares, sorts and is unique exactly as the other drivers
 * ('a' and 'a ' differ; 'A' and 'a' differ).  utf8mb4_nopad_bin (MariaDB),
 * utf8mb4_0900_bin (MySQL 8), else utf8mb4_bin.
 */
static int my_table_collation(emh_conn *c, const char **out, emh_error *err)
{
	my_strtab t;
	int rc;
	if (c->collation[0]) {
		*out = c->collation;
		return 0;
	}
	rc = my_select_strings(c,
			       "SELECT COLLATION_NAME FROM information_schema.COLLATIONS WHERE COLLATION_NAME"
			       " IN ('utf8mb4_nopad_bin', 'utf8mb4_0900_bin') ORDER BY COLLATION_NAME DESC",
			       NULL, 1, &t, "looking up collations", NULL, err);
	if (rc)
		return rc;
	snprintf(c->collation, sizeof c->collation, "%s", t.n ? t.v[0] : "utf8mb4_bin");
	my_strtab_release(&t);
	*out = c->collation;
	return 0;
}

static int my_sync_run(emh_conn *c, const emh_meta *m, emh_error *err)
{
	const char *table = m->entity->table, *coll, *name;
	emh_buf b = EMH_BUF_INIT;
	my_strtab cols = {0}, idx = {0};
	int rc = my_select_strings(c,
			       "SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS"
			       " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
			       table, 2, &cols, "reading the columns", table, err);
	if (rc)
		return rc;
	if (cols.n == 0) {
		if ((rc = my_table_collation(c, &coll, err)))
			goto out;
		if ((rc = emh_sql_create_table(&my_dialect, m, &b)) || b.oom || !b.ptr) {
			rc = emh_error_set(err, EMH_ENOMEM, "out of memory");
			goto out;
		}
		while (b.len && (b.ptr[b.len - 1] == ';' || b.ptr[b.len - 1] == ' ' || b.ptr[b.len - 1] == '\n'))
			b.ptr[--b.len] = '\0';
		emh_buf_addf(&b, " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=%s", coll);
		if (b.oom) {
			rc = emh_error_set(err, EMH_ENOMEM, "out of memory");
			goto out;
		}
		if ((rc = my_run_text(c, b.ptr, b.len, "creating the table", table, err)))
			goto out;
	} else {
		const char **names = malloc(cols.n * sizeof *names), **types = malloc(cols.n * sizeof *types);
		if (!names || !types) {
			free(names);
			free(types);
			rc = emh_error_set(err, EMH_ENOMEM, "out of memory");
			goto out;
		}
		for (size_t i = 0; i < cols.n; i++) {
			names[i] = cols.v[i * 2];
			types[i] = cols.v[i * 2 + 1];
		}
		rc = emh_sql_check_columns(m, names, types, cols.n, my_compatible, err);
		free(names);
		free(types);
		if (rc)
			goto out;
	}
	rc = my_select_strings(c,
			       "SELECT DISTINCT INDEX_NAME FROM information_schema.STATISTICS"
			       " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?",
			       table, 1, &idx, "reading the indexes", table, err);
	if (rc)
		goto out;
	for (size_t i = 0, n = emh_sql_index_count(m); i < n; i++) {
		bool have = false;
		emh_buf_reset(&b);
		name = NULL;
		if ((rc = emh_sql_create_index(&my_dialect, m, i, false, &b, &name)) || b.oom || !b.ptr) {
			rc = emh_error_set(err, EMH_ENOMEM, "out of memory");
			goto out;
		}
		for (size_t k = 0; name && k < idx.n && !have; k++)
			have = strcasecmp(idx.v[k], name) == 0;
		if (have)
			continue;
		rc = my_run_text(c, b.ptr, b.len, "creating an index", table, err);
		/* Another connection synced the same entity first. */
		if (rc && mysql_errno(c->my) == MY_ER_DUP_KEYNAME)
			rc = 0;
		if (rc)
			goto out;
	}
out:
	emh_buf_release(&b);
	my_strtab_release(&cols);
	my_strtab_release(&idx);
	return rc;
}

int my_sync(emh_conn *c, const emh_meta *m, emh_error *err)
{
	int rc = my_call_enter(c, err);
	return rc ? rc : my_deadline(c, my_sync_run(c, m, err), err);
}

/* ---- describing a table (schema diff, schema = "check") ---- */

/* Columns and indexes from information_schema; indexes on expressions (no column) left out. */
static int my_describe_run(emh_conn *c, const char *table, emh_table_desc *out, emh_error *err)
{
	my_strtab cols = {0}, idx = {0};
	const char *coll;
	int rc;
	/* What a new table gets after its columns, as sync creates it. */
	if ((rc = my_table_collation(c, &coll, err)) != 0)
		return rc;
	char suffix[160];
	snprintf(suffix, sizeof suffix, " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=%s", coll);
	if (emh_table_desc_create_suffix(out, suffix))
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	rc = my_select_strings(c,
			       "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE FROM information_schema.COLUMNS"
			       " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
			       table, 3, &cols, "reading the columns", table, err);
	if (rc)
		return rc;
	for (size_t i = 0; i < cols.n && !rc; i++)
		if (emh_table_desc_column(out, cols.v[i * 3], cols.v[i * 3 + 1], strcmp(cols.v[i * 3 + 2], "YES") == 0))
			rc = emh_error_set(err, EMH_ENOMEM, "out of memory");
	if (!rc && cols.n == 0)
		rc = EMH_ENOTFOUND;
	if (!rc)
		rc = my_select_strings(c,
				       "SELECT INDEX_NAME, NON_UNIQUE, COLUMN_NAME FROM information_schema.STATISTICS"
				       " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND INDEX_NAME <> 'PRIMARY'"
				       " ORDER BY INDEX_NAME, SEQ_IN_INDEX",
				       table, 3, &idx, "reading the indexes", table, err);
	const char *icols[EMH_ENTITY_MAX_FIELDS];
	size_t n = 0;
	bool skip = false;
	for (size_t i = 0; !rc && i < idx.n; i++) {
		const char *name = idx.v[i * 3];
		if (!idx.v[i * 3 + 2][0] || n == EMH_ENTITY_MAX_FIELDS)
			skip = true;
		else
			icols[n++] = idx.v[i * 3 + 2];
		if (i + 1 < idx.n && strcmp(idx.v[(i + 1) * 3], name) == 0)
			continue;
		if (!skip && emh_table_desc_index(out, name, strcmp(idx.v[i * 3 + 1], "0") == 0, false, icols, n))
			rc = emh_error_set(err, EMH_ENOMEM, "out of memory");
		n = 0;
		skip = false;
	}
	my_strtab_release(&cols);
	my_strtab_release(&idx);
	return rc;
}

int my_describe(emh_conn *c, const char *table, emh_table_desc *out, emh_error *err)
{
	int rc = my_call_enter(c, err);
	return rc ? rc : my_deadline(c, my_describe_run(c, table, out, err), err);
}
