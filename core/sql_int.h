/* SPDX-License-Identifier: MIT */
/*
 * core/sql_int.h: the statement builder of the SQL compiler, shared by the
 * files that compile statements (sql.c: entity statements and queries;
 * sql_where.c: set-based and versioned writes; sql_agg.c: aggregates).
 * Core only, never installed.
 */
#ifndef EMH_CORE_SQL_INT_H
#define EMH_CORE_SQL_INT_H

#include <emhost/buf.h>

#include "internal.h"
#include "query_int.h"

/* SQL text being written and the types of its parameters, in order. */
typedef struct emh__sqlb {
	emh_buf sql;
	const emh_sql_dialect *d;
	emh_type params[EMH_QUERY_MAX_IN + 2 * EMH_ENTITY_MAX_FIELDS + 64];
	size_t nparams;
	bool too_many;
} emh__sqlb;

/* A builder for dialect d (malloc'd: its parameter array is large); NULL on out of memory. */
emh__sqlb *emh__sqlb_new(const emh_sql_dialect *d);
/* Append the next parameter's placeholder ($n or ?), of type t. */
void emh__sqlb_param(emh__sqlb *sb, emh_type t);
/* Append " WHERE <key> = ?". */
void emh__sqlb_where_key(emh__sqlb *sb, const emh__meta *m);
/* Append condition c of entity e, its values as parameters. */
void emh__sqlb_cond(emh__sqlb *sb, const emh_entity *e, const emh_cond *c);
/* The statement written so far, in one allocation (the builder's text is
 * released; the builder itself is the caller's to free).  NULL with err set. */
emh_stmt *emh__sqlb_finish(emh__sqlb *sb, emh__meta *m, int kind, const emh_type *cols, size_t ncols,
			   emh_error *err);

/* Append the shape of c (operators, fields, IN sizes: what its SQL depends on) to b. */
void emh__sql_shape_cond(emh_buf *b, const emh_cond *c);

/*
 * The statement cached in m under key (klen bytes, a shape), compiled by fn
 * (with arg) on first use.  Thread-safe; the statement lives as long as m.
 */
typedef emh_stmt *(*emh__sql_compile_fn)(emh__meta *m, const emh_sql_dialect *d, const void *arg, emh_error *err);
const emh_stmt *emh__sql_cached(emh__meta *m, const emh_sql_dialect *d, const unsigned char *key, size_t klen,
				emh__sql_compile_fn fn, const void *arg, emh_error *err);

/*
 * The statement of q as emh__sql_query_stmt (lock NULL) or
 * emh__sql_select_stmt give it, looked up under hash instead of the hash of
 * q's shape: for tests, which put different shapes under one hash to see
 * that a hash hit is checked against the shape.
 */
const emh_stmt *emh__sql_query_stmt_hashed(emh__meta *m, const emh_sql_dialect *d, const emh_query *q, bool count,
					   const char *lock, uint64_t hash, emh_error *err);

/* ---- sql_agg.c ---- */

/* The statement of aggregate a over q (checked and filtered; may be NULL). */
const emh_stmt *emh__sql_agg_stmt(emh__meta *m, const emh_sql_dialect *d, const emh_query *q, const emh_agg *a,
				  emh_error *err);
/* Its parameters, in binding order: q's condition, having values, limit. */
size_t emh__sql_agg_nparams(const emh_query *q, const emh_agg *a);
void emh__sql_agg_params(const emh_query *q, const emh_agg *a, emh_value *out);

#endif
