/* SPDX-License-Identifier: MIT */
/* core/query_int.h: the query, condition and aggregate structures (core only). */
#ifndef EMH_CORE_QUERY_INT_H
#define EMH_CORE_QUERY_INT_H

#include <emhost/aggregate.h>
#include <emhost/query.h>

#include "arena.h"

struct emh_cond {
	emh_op op;
	int field;
	const emh_query *q;
	emh_value *vals;
	size_t nvals;
	emh_cond **kids;
	size_t nkids;
	/*
	 * Set by the builder once the node is complete (emh__cond_seal), so that
	 * running a query neither walks its tree for a statement-cache key nor
	 * to count its parameters: shape is a hash of what the node's SQL
	 * depends on (sql.c's shape key: operator, field, IN size or children,
	 * children's shapes in order; a comparison's is exact: its word), never
	 * 0; nparams counts the values of the subtree and nnodes its nodes (a
	 * key's length), both valid only with shape set.  A node built by hand
	 * (uow.c) leaves shape 0: it is hashed and counted by walking it
	 * (emh__cond_walk), with the same definition.
	 */
	uint64_t shape;
	uint32_t nparams, nnodes;
};

/* One step of a shape hash: x mixed into h. */
static inline uint64_t emh__shape_step(uint64_t h, uint64_t x)
{
	h = (h ^ x) * UINT64_C(0x9e3779b97f4a7c15);
	return h ^ (h >> 29);
}

/* c's own word in a shape key (sql.c): its operator, field, and IN size or
 * number of children.  Never 0 for a comparison (its field + 1 is not). */
static inline uint64_t emh__cond_word(const emh_cond *c)
{
	uint64_t n = (uint32_t)(c->op == EMH_OP_IN ? c->nvals : c->nkids);
	return (uint64_t)(unsigned char)c->op | (uint64_t)(unsigned char)(c->field + 1) << 8 | n << 32;
}

/* What emh__cond_seal records of a node: its shape hash (never 0), the
 * values its subtree binds and its number of nodes. */
typedef struct emh__cond_sum {
	uint64_t shape, nparams, nnodes;
} emh__cond_sum;

/* emh__cond_sum_of, out of line (query.c): for a node built by hand, walked. */
emh__cond_sum emh__cond_walk(const emh_cond *c);

/* c's figures: as sealed, or, for a node built by hand (shape 0), walked. */
static inline emh__cond_sum emh__cond_figures(const emh_cond *c)
{
	return c->shape ? (emh__cond_sum){c->shape, c->nparams, c->nnodes} : emh__cond_walk(c);
}

/* c's figures from its own members and its children's (the one definition
 * of the shape hash, for sealed nodes and walked ones alike). */
static inline emh__cond_sum emh__cond_sum_of(const emh_cond *c)
{
	emh__cond_sum s = {emh__cond_word(c), c->op == EMH_OP_IS_NULL || c->op == EMH_OP_NOT_NULL ? 0 : c->nvals, 1};
	for (size_t i = 0; i < c->nkids; i++) {
		emh__cond_sum k = emh__cond_figures(c->kids[i]);
		s.shape = emh__shape_step(s.shape, k.shape);
		s.nparams += k.nparams;
		s.nnodes += k.nnodes;
	}
	if (c->nkids)
		s.shape |= 1;
	return s;
}

/* Record c's figures (a builder's node, once complete); shape left 0 (the
 * node is walked when run) if a count does not fit. */
static inline void emh__cond_seal(emh_cond *c)
{
	emh__cond_sum s = emh__cond_sum_of(c);
	c->shape = s.nparams <= UINT32_MAX && s.nnodes <= UINT32_MAX ? s.shape : 0;
	c->nparams = (uint32_t)s.nparams;
	c->nnodes = (uint32_t)s.nnodes;
}

typedef struct emh__order {
	int field;
	bool desc;
} emh__order;

struct emh_query {
	const emh_entity *e;
	emh__arena *arena;
	emh_cond *where;
	emh__order *order;
	size_t norder, ordcap;
	int64_t limit, offset;
	const char **with; /* emh_q_with: relation paths loaded on what a find returns */
	size_t nwith;
	int lock, lock_wait; /* emh_q_lock: EMH_LOCK_* */
	bool unfiltered; /* emh_q_unfiltered: global filters do not apply */
	int err_code;
	const char *err_msg; /* in the arena (or a constant when that failed): a query that never fails carries no buffer */
};

/* At most this many emh_q_with paths per query. */
#define EMH__QUERY_MAX_WITH 8

/* Start a query on e allocating from arena. NULL on out of memory. */
emh_query *emh__query_new(emh__arena *arena, const emh_entity *e);

/*
 * v checked against field f as a condition value is (the field's type, with
 * int32/int64/timestamp mixing and ranges checked; NULL refused) and copied
 * into q's arena: true with *out set, or false with the mistake kept in q.
 * For other builders that take values (emh_sets).
 */
bool emh__query_value(emh_query *q, const emh_field *f, emh_value v, emh_value *out);

/*
 * A copy of q in arena (q NULL: a new query on e, every row): the same
 * condition, ordering (copied, so the copy may add keys), limit and offset.
 * The caller narrows it with emh__query_restrict.  NULL on out of memory.
 */
emh_query *emh__query_copy(emh__arena *arena, const emh_entity *e, const emh_query *q);

/* Narrow q: its condition becomes (c AND the old one), c first; c was built
 * on q (NULL: no change). */
void emh__query_restrict(emh_query *q, emh_cond *c);

/*
 * Global filters (EMH_F_FILTER) are applied by turning a query into the
 * filtered query: emh__em_filter (em_int.h) gives back q itself when the
 * entity has no filter field or q is emh_q_unfiltered, and otherwise a copy
 * of q whose condition is (filter = parameter AND ... AND q's condition),
 * or fails with EMH_ESTATE when a parameter is unset.  Whatever reads or
 * writes rows by query -- find, count, aggregate, iterators, pages,
 * update_where, delete_where -- runs the query it returns, never q itself.
 */

/* ---- aggregates (emhost/aggregate.h) ---- */

/* A result column: a group field (fn 0) or an aggregate. */
typedef struct emh__aggcol {
	int fn;        /* 0 for a group column, else EMH_AGG_* */
	int field;     /* field index; -1 for the count of rows */
	emh_type type; /* of the result value */
	const char *name;
} emh__aggcol;

/* A column named by a builder call: group i, or aggregate i. */
typedef struct emh__aggref {
	bool group;
	size_t i;
} emh__aggref;

typedef struct emh__having {
	emh__aggref col;
	emh_op op;
	emh_value v; /* of the column's type */
} emh__having;

typedef struct emh__aggorder {
	emh__aggref col;
	bool desc;
} emh__aggorder;

/* Result columns are the groups (in emh_agg_group_by order), then the aggregates. */
struct emh_agg {
	const emh_entity *e;
	emh__arena *arena;
	emh__aggcol *groups, *aggs;
	size_t ngroups, naggs, gcap, acap;
	emh__having *having;
	size_t nhaving, hcap;
	emh__aggorder *order;
	size_t norder, ocap;
	int64_t limit;
	int err_code;
	char err_msg[256];
};

/* Start an aggregate specification on e allocating from arena.  NULL on out of memory. */
emh_agg *emh__agg_new(emh__arena *arena, const emh_entity *e);
/* The column index of a reference (groups first). */
static inline size_t emh__agg_col(const emh_agg *a, emh__aggref r) { return r.group ? r.i : a->ngroups + r.i; }
/* Column i (groups first). */
static inline const emh__aggcol *emh__agg_colp(const emh_agg *a, size_t i)
{
	return i < a->ngroups ? &a->groups[i] : &a->aggs[i - a->ngroups];
}
/* The kept builder error of a, with its message ("aggregate on 'e': ..."), or 0. */
int emh__agg_error(const emh_agg *a, emh_error *err);

#endif
