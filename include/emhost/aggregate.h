/* SPDX-License-Identifier: MIT */
/* emhost/aggregate.h: aggregates and grouping (emh_repo_aggregate) and the rows they return. */
#ifndef EMHOST_AGGREGATE_H
#define EMHOST_AGGREGATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <emhost/em.h>
#include <emhost/entity.h>
#include <emhost/error.h>
#include <emhost/query.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * An aggregate specification says what to compute over the rows a query
 * matches: group fields, aggregates, conditions on the results (having),
 * their order and how many.  Built like a query (emh_repo_agg, then builder
 * calls that never fail loudly: the first mistake is kept and returned by
 * emh_repo_aggregate), in the fork's arena, valid until the fork closes.
 *
 *   emh_agg *a;
 *   emh_repo_agg(events, &a, &err);
 *   emh_agg_group_by(a, "type");
 *   emh_agg_count(a, "n");
 *   emh_agg_having(a, "n", EMH_OP_GE, emh_v_int64(10));
 *   emh_agg_order_by(a, "n", true);
 *   emh_agg_limit(a, 5);
 *   emh_rows *rows;
 *   emh_repo_aggregate(events, q, a, &rows, &err);   // q: WHERE, or NULL
 *   for (size_t i = 0; i < emh_rows_count(rows); i++)
 *       printf("%s %lld\n", emh_rows_value(rows, i, 0)->u.s.ptr,
 *              (long long)emh_rows_value(rows, i, 1)->u.i64);
 *
 * Result columns are the group fields in the order given, then the
 * aggregates in the order added.  Their types:
 *
 *   group field           the field's type; NULLs form one group, as in SQL
 *   EMH_AGG_COUNT         int64: the rows of the group (field NULL)
 *   EMH_AGG_COUNT_DISTINCT int64: distinct non-NULL values of the field
 *   EMH_AGG_SUM           int64 over an int32/int64 field, double over a double
 *                         field; NULL when the group holds no non-NULL value.
 *                         A sum beyond int64 fails (never a wrapped or rounded
 *                         value): EMH_EINVAL or EMH_EDRIVER as the database
 *                         reports it; SQLite checks every partial sum, so
 *                         there it fails even when later values bring the
 *                         total back in range
 *   EMH_AGG_MIN, _MAX     the field's type (int32, int64, double, text,
 *                         timestamp); NULL when no non-NULL value.  Text
 *                         compares as the database's collation does (byte
 *                         order on MySQL, MongoDB and SQLite; PostgreSQL's
 *                         database collation otherwise)
 *   EMH_AGG_AVG           double over an int32/int64/double field; NULL when
 *                         no non-NULL value
 *
 * Without group fields the result is one row, also when no row matches
 * (count 0, the others NULL), unless having rejects it -- as SQL has it.
 * Group fields and count distinct take every type but json and blob.
 *
 * A context serves aggregates when it has EMH_CAP_AGGREGATE (emh_em_caps):
 * SQL drivers through the core's compiler (statements cached per shape,
 * like queries), document drivers through their aggregate member (MongoDB:
 * an aggregation pipeline).  Without it emh_repo_aggregate is
 * EMH_EUNSUPPORTED.
 */
typedef struct emh_agg emh_agg;
/* Result rows of an aggregate; in the fork's arena, valid until it closes. */
typedef struct emh_rows emh_rows;

/* Aggregate functions.  Append-only (they cross the driver ABI). */
typedef enum emh_agg_fn {
	EMH_AGG_COUNT = 1,
	EMH_AGG_COUNT_DISTINCT,
	EMH_AGG_SUM,
	EMH_AGG_MIN,
	EMH_AGG_MAX,
	EMH_AGG_AVG,
} emh_agg_fn;

/* At most this many result columns (groups and aggregates together). */
#define EMH_AGG_MAX_COLS 32

/*
 * A new, empty aggregate specification on the repository's entity, into
 * *out.  Returns 0 or EMH_ENOMEM.
 */
int emh_repo_agg(emh_repo *r, emh_agg **out, emh_error *err);

/* Group by field; its result column is named after the field. */
void emh_agg_group_by(emh_agg *a, const char *field);

/*
 * Add an aggregate column.  field is NULL for EMH_AGG_COUNT and names a field
 * otherwise.  name is the result column's name (at most 63 bytes, unique in
 * the result); NULL names it "count", "count_distinct_<field>",
 * "sum_<field>", "min_<field>", "max_<field>" or "avg_<field>".
 */
void emh_agg_add(emh_agg *a, emh_agg_fn fn, const char *field, const char *name);
#define emh_agg_count(a, name) emh_agg_add((a), EMH_AGG_COUNT, NULL, (name))
#define emh_agg_count_distinct(a, field, name) emh_agg_add((a), EMH_AGG_COUNT_DISTINCT, (field), (name))
#define emh_agg_sum(a, field, name) emh_agg_add((a), EMH_AGG_SUM, (field), (name))
#define emh_agg_min(a, field, name) emh_agg_add((a), EMH_AGG_MIN, (field), (name))
#define emh_agg_max(a, field, name) emh_agg_add((a), EMH_AGG_MAX, (field), (name))
#define emh_agg_avg(a, field, name) emh_agg_add((a), EMH_AGG_AVG, (field), (name))

/*
 * Keep only result rows where column <op> v holds (op EQ NE LT LE GT GE; v of
 * the column's type, int32 and int64 mixing freely; a NULL column value
 * never holds, as in SQL).  Several calls must all hold.  The column must be
 * added before.
 */
void emh_agg_having(emh_agg *a, const char *column, emh_op op, emh_value v);
/* Order the result rows by a column (added before); keys in the order given.
 * Where NULLs sort is the driver's, as for queries. */
void emh_agg_order_by(emh_agg *a, const char *column, bool descending);
/* At most n result rows (n >= 0). */
void emh_agg_limit(emh_agg *a, int64_t n);

/*
 * Compute a over the rows q matches (q NULL: every row; q's ordering, limit
 * and offset are refused -- they belong to a -- and so is a lock), global
 * filters applied.
 * *out receives the rows, in the fork's arena until it closes.  Returns 0,
 * EMH_EINVAL (a mistake kept by a builder call, a spec or query of another
 * repository), EMH_EUNSUPPORTED (no EMH_CAP_AGGREGATE), EMH_ESTATE (a filter
 * parameter unset), or the database's error.  Not thread-safe (the fork is not).
 */
int emh_repo_aggregate(emh_repo *r, const emh_query *q, const emh_agg *a, emh_rows **out,
		       emh_error *err);

/* ---- result rows ---- */

/* Number of rows and of columns. */
size_t emh_rows_count(const emh_rows *rows);
size_t emh_rows_ncols(const emh_rows *rows);
/* Name and type of column col (borrowed like the rows). */
const char *emh_rows_name(const emh_rows *rows, size_t col);
emh_type emh_rows_type(const emh_rows *rows, size_t col);
/* Index of the column called name, or -1. */
int emh_rows_col(const emh_rows *rows, const char *name);
/*
 * The value at (row, col), of the column's type (is_null for NULL); text is
 * NUL-terminated in the fork's arena.  NULL when row or col is out of range.
 */
const emh_value *emh_rows_value(const emh_rows *rows, size_t row, size_t col);

/* ---- read-only view of a specification, for document drivers ---- */

/* Result columns: the first emh_agg_ngroups are group fields. */
size_t emh_agg_ncols(const emh_agg *a);
size_t emh_agg_ngroups(const emh_agg *a);
/* Column i: its function (0 for a group column, else EMH_AGG_*), its field
 * index (-1 for EMH_AGG_COUNT), and the type of its result values. */
void emh_agg_col(const emh_agg *a, size_t i, int *fn, int *field, emh_type *type);
/* Having condition i: column index, operator, value (of the column's type). */
size_t emh_agg_nhaving(const emh_agg *a);
void emh_agg_having_at(const emh_agg *a, size_t i, size_t *col, emh_op *op, const emh_value **v);
/* Ordering key i: column index and direction. */
size_t emh_agg_norder(const emh_agg *a);
void emh_agg_order_at(const emh_agg *a, size_t i, size_t *col, bool *descending);
/* The row limit, -1 when none. */
int64_t emh_agg_max_rows(const emh_agg *a);

#ifdef __cplusplus
}
#endif
#endif
