/* SPDX-License-Identifier: MIT */
/*
 * core/sql_int.h: what the SQL compiler's files share (core only): the
 * statement builder, conditions, query shapes and the per-entity statement
 * cache of core/sql.c, used by core/sql_agg.c (aggregates).
 */
#ifndef EMH_CORE_SQL_INT_H
#define EMH_CORE_SQL_INT_H

#include "internal.h"
#include "query_int.h"

/* A statement being written: its text and the types of its parameters. */
typedef struct stmt_builder {
	emh_buf sql;
	const emh_sql_dialect *d;
	emh_type params[EMH_QUERY_MAX_IN + 2 * EMH_ENTITY_MAX_FIELDS + 64];
	size_t nparams;
	bool too_many;
} stmt_builder;

/* A new builder for dialect d (malloc'd: free() it); NULL on out of memory. */
stmt_builder *emh__sql_builder(const emh_sql_dialect *d);
/* Append a parameter placeholder of type t ($n or ?). */
void emh__sql_param(stmt_builder *sb, emh_type t);
/* The statement written so far, in one allocation (free()); the builder's
 * text is released and may be reused.  NULL with err on failure. */
emh_stmt *emh__sql_finish(stmt_builder *sb, emh__meta *m, int kind, const emh_type *cols, size_t ncols,
			  emh_error *err);
/* Append condition c of entity e (values as parameters, in walk order). */
void emh__sql_cond(stmt_builder *sb, const emh_entity *e, const emh_cond *c);
/* Append the shape of c (operators, fields, IN sizes; never values) to b. */
void emh__sql_shape_cond(emh_buf *b, const emh_cond *c);

/* Compile the statement a cache key stands for (arg: the caller's). */
typedef emh_stmt *(*emh__sql_compile_fn)(emh__meta *m, const emh_sql_dialect *d, const void *arg, emh_error *err);
/* The statement cached under key in m's cache, compiled by fn on first use. */
const emh_stmt *emh__sql_cached(emh__meta *m, const emh_sql_dialect *d, const unsigned char *key, size_t klen,
				emh__sql_compile_fn fn, const void *arg, emh_error *err);

/* ---- sql_agg.c ---- */

/* The statement of aggregate a over q (checked and filtered; may be NULL). */
const emh_stmt *emh__sql_agg_stmt(emh__meta *m, const emh_sql_dialect *d, const emh_query *q, const emh_agg *a,
				  emh_error *err);
/* Its parameters, in binding order: q's condition, having values, limit. */
size_t emh__sql_agg_nparams(const emh_query *q, const emh_agg *a);
void emh__sql_agg_params(const emh_query *q, const emh_agg *a, emh_value *out);

#endif
