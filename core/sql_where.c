/* SPDX-License-Identifier: MIT */
/*
 * core/sql_where.c: the SQL of conditional writes.  Set-based updates and
 * deletes (emh_repo_update_where, _delete_where: "UPDATE t SET a = ?, b = b
 * + ? WHERE <condition>") and the checked writes of versioned objects
 * ("... WHERE key = ? AND version = ?").  Cached per entity like queries,
 * by shape: which fields are set and how, and the condition's shape --
 * never values.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "sql_int.h"

/* Append " WHERE <key> = ? AND <version> = ?". */
static void where_key_version(emh__sqlb *sb, const emh__meta *m)
{
	const emh_field *v = &m->pub.entity->fields[m->version];
	emh__sqlb_where_key(sb, m);
	emh_buf_adds(&sb->sql, " AND ");
	emh_buf_ident(&sb->sql, sb->d, v->column);
	emh_buf_adds(&sb->sql, " = ");
	emh__sqlb_param(sb, v->type);
}

/* Append "a = ?" or "a = a + ?" for one assignment. */
static void set_sql(emh__sqlb *sb, const emh_field *f, int op)
{
	emh_buf_ident(&sb->sql, sb->d, f->column);
	emh_buf_adds(&sb->sql, " = ");
	if (op == EMH_SET_ADD) {
		emh_buf_ident(&sb->sql, sb->d, f->column);
		emh_buf_adds(&sb->sql, " + ");
	}
	emh__sqlb_param(sb, f->type);
}

/* ---- versioned update and delete ---- */

static emh_stmt *compile_versioned(emh__meta *m, const emh_sql_dialect *d, const void *arg, emh_error *err)
{
	uint64_t mask = *(const uint64_t *)arg;
	const emh_entity *e = m->pub.entity;
	emh__sqlb *sb = emh__sqlb_new(d);
	if (!sb)
		return emh_error_set(err, EMH_ENOMEM, "out of memory"), NULL;
	emh_buf_adds(&sb->sql, mask ? "UPDATE " : "DELETE FROM ");
	emh_buf_ident(&sb->sql, d, e->table);
	for (size_t i = 0, n = 0; i < e->nfields; i++) {
		if (!(mask & (UINT64_C(1) << i)))
			continue;
		emh_buf_adds(&sb->sql, n++ ? ", " : " SET ");
		set_sql(sb, &e->fields[i], EMH_SET_VALUE);
	}
	where_key_version(sb, m);
	emh_stmt *st = emh__sqlb_finish(sb, m, mask ? EMH_STMT_UPDATE : EMH_STMT_DELETE, NULL, 0, err);
	free(sb);
	return st;
}

const emh_stmt *emh__sql_versioned_stmt(emh__meta *m, const emh_sql_dialect *d, uint64_t mask, emh_error *err)
{
	unsigned char key[9] = {'V'};
	memcpy(key + 1, &mask, sizeof mask);
	return emh__sql_cached(m, d, key, sizeof key, compile_versioned, &mask, err);
}

/* ---- update_where, delete_where ---- */

typedef struct where_arg {
	const emh_query *q;
	const emh_set *sets; /* NULL: a delete */
	size_t nsets;
} where_arg;

static emh_stmt *compile_where(emh__meta *m, const emh_sql_dialect *d, const void *arg, emh_error *err)
{
	const where_arg *wa = arg;
	const emh_entity *e = m->pub.entity;
	emh__sqlb *sb = emh__sqlb_new(d);
	if (!sb)
		return emh_error_set(err, EMH_ENOMEM, "out of memory"), NULL;
	emh_buf_adds(&sb->sql, wa->sets ? "UPDATE " : "DELETE FROM ");
	emh_buf_ident(&sb->sql, d, e->table);
	for (size_t i = 0; wa->sets && i < wa->nsets; i++) {
		emh_buf_adds(&sb->sql, i ? ", " : " SET ");
		set_sql(sb, &e->fields[wa->sets[i].field], wa->sets[i].op);
	}
	if (wa->q && wa->q->where) {
		emh_buf_adds(&sb->sql, " WHERE ");
		emh__sqlb_cond(sb, e, wa->q->where);
	}
	emh_stmt *st = emh__sqlb_finish(sb, m, wa->sets ? EMH_STMT_UPDATE : EMH_STMT_DELETE, NULL, 0, err);
	free(sb);
	return st;
}

const emh_stmt *emh__sql_where_stmt(emh__meta *m, const emh_sql_dialect *d, const emh_query *q, const emh_set *sets,
				    size_t nsets, emh_error *err)
{
	emh_buf b = EMH_BUF_INIT;
	emh_buf_add(&b, sets ? "W" : "X", 1);
	for (size_t i = 0; sets && i < nsets; i++) {
		unsigned char fo[2] = {(unsigned char)sets[i].field, (unsigned char)sets[i].op};
		emh_buf_add(&b, (const char *)fo, 2);
	}
	emh_buf_add(&b, "|", 1);
	if (q && q->where)
		emh__sql_shape_cond(&b, q->where);
	if (b.oom) {
		emh_buf_release(&b);
		return emh_error_set(err, EMH_ENOMEM, "out of memory"), NULL;
	}
	where_arg wa = {q, sets, nsets};
	const emh_stmt *st = emh__sql_cached(m, d, (const unsigned char *)b.ptr, b.len, compile_where, &wa, err);
	emh_buf_release(&b);
	return st;
}
