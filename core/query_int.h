/* SPDX-License-Identifier: MIT */
/* core/query_int.h: the query and condition structures (core only). */
#ifndef EMH_CORE_QUERY_INT_H
#define EMH_CORE_QUERY_INT_H

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
};

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
	int err_code;
	char err_msg[256];
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

#endif
