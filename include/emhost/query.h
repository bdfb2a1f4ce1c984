/* SPDX-License-Identifier: MIT */
/* emhost/query.h: driver-neutral query criteria built in a fork's arena. */
#ifndef EMHOST_QUERY_H
#define EMHOST_QUERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <emhost/entity.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * A query belongs to the fork that made it (emh_repo_query) and lives in that
 * fork's arena until the fork closes.  Builder calls never fail loudly: the
 * first mistake (unknown field, value of the wrong type, condition of another
 * query, out of memory) is kept in the query and returned, with its message,
 * by the call that runs it (emh_repo_find, _count, ...).  So a query is checked
 * exactly once, where its result is used.
 *
 * Values given to builder calls are copied into the arena: the caller's
 * buffers may be reused at once.  A query is not thread-safe (neither is its
 * fork).
 */
typedef struct emh_query emh_query;
typedef struct emh_cond emh_cond;

/* Condition operators.  Append-only (they cross the driver ABI). */
typedef enum emh_op {
	EMH_OP_EQ = 1,
	EMH_OP_NE,
	EMH_OP_LT,
	EMH_OP_LE,
	EMH_OP_GT,
	EMH_OP_GE,
	EMH_OP_IN,
	EMH_OP_LIKE,
	EMH_OP_IS_NULL,
	EMH_OP_NOT_NULL,
	EMH_OP_AND,
	EMH_OP_OR,
	EMH_OP_NOT,
} emh_op;

/*
 * field <op> value, op one of EQ NE LT LE GT GE.  The value's type must be the
 * field's (int32 and int64 mix freely; a timestamp field takes emh_v_time or
 * emh_v_int64).  A NULL value is refused: use emh_q_is_null.  Blob fields
 * take eq/ne only; json fields only the null tests (no portable equality).
 */
emh_cond *emh_q_cmp(emh_query *q, const char *field, emh_op op, emh_value v);
#define emh_q_eq(q, f, v) emh_q_cmp((q), (f), EMH_OP_EQ, (v))
#define emh_q_ne(q, f, v) emh_q_cmp((q), (f), EMH_OP_NE, (v))
#define emh_q_lt(q, f, v) emh_q_cmp((q), (f), EMH_OP_LT, (v))
#define emh_q_le(q, f, v) emh_q_cmp((q), (f), EMH_OP_LE, (v))
#define emh_q_gt(q, f, v) emh_q_cmp((q), (f), EMH_OP_GT, (v))
#define emh_q_ge(q, f, v) emh_q_cmp((q), (f), EMH_OP_GE, (v))

/* field IN (values...); n may be 0 (matches nothing), at most EMH_QUERY_MAX_IN. */
emh_cond *emh_q_in(emh_query *q, const char *field, const emh_value *values, size_t n);
#define EMH_QUERY_MAX_IN 1000

/*
 * field LIKE pattern, on a text field, case-sensitive on every driver.
 * '%' matches any run of characters, '_' any one character, and a backslash
 * makes the next character literal ("50\%" matches "50%").  A trailing lone
 * backslash is an error.  emh_like_escape() makes any text literal.
 */
emh_cond *emh_q_like(emh_query *q, const char *field, const char *pattern);

/*
 * Write src into dst with '%', '_' and '\' escaped by a backslash, NUL-
 * terminated, cut to fit cap.  Returns the length the full result needs
 * (excluding the NUL), like snprintf.
 */
size_t emh_like_escape(char *dst, size_t cap, const char *src);

emh_cond *emh_q_is_null(emh_query *q, const char *field);
emh_cond *emh_q_not_null(emh_query *q, const char *field);

/* Conjunction / disjunction of n conditions (n >= 1) and negation. */
emh_cond *emh_q_and_n(emh_query *q, emh_cond *const *conds, size_t n);
emh_cond *emh_q_or_n(emh_query *q, emh_cond *const *conds, size_t n);
emh_cond *emh_q_not(emh_query *q, emh_cond *c);
#define emh_q_and(q, ...)                                                      \
	emh_q_and_n((q), (emh_cond *const[]){__VA_ARGS__},                     \
		    sizeof((emh_cond *const[]){__VA_ARGS__}) / sizeof(emh_cond *))
#define emh_q_or(q, ...)                                                       \
	emh_q_or_n((q), (emh_cond *const[]){__VA_ARGS__},                      \
		   sizeof((emh_cond *const[]){__VA_ARGS__}) / sizeof(emh_cond *))

/* Set the query's condition (replacing any earlier one).  c must come from q. */
void emh_q_where(emh_query *q, emh_cond *c);
/* Append an ordering key; rows are ordered by the keys in the order given. */
void emh_q_order_by(emh_query *q, const char *field, bool descending);
/* At most n rows (n >= 0). */
void emh_q_limit(emh_query *q, int64_t n);
/* Skip the first n rows (n >= 0). */
void emh_q_offset(emh_query *q, int64_t n);
/*
 * Opt this query out of the entity's global filters (EMH_F_FILTER): it then
 * reads every row, whatever the fork's parameters -- for administration
 * across tenants.  Said explicitly, per query; writes stay filtered.
 */
void emh_q_unfiltered(emh_query *q);
/*
 * Eager-load relation path (as emh_em_load: "author", "posts.comments") on
 * the objects emh_repo_find / emh_repo_find_one / emh_repo_find_page
 * return, right after the find: one query per target context per level,
 * whatever the number of rows.  Repeatable (each path is loaded, in the
 * order given; at most 8).  An unknown relation is reported by the find.
 * What loads no objects to fill refuses such a query with EMH_EINVAL rather
 * than ignore the paths: emh_repo_count, emh_repo_iter (call emh_em_load
 * on the objects it returns), emh_repo_aggregate, update_where and
 * delete_where.
 */
void emh_q_with(emh_query *q, const char *path);

/*
 * Row locks (pessimistic locking): the rows q finds are locked until the
 * end of the fork's transaction.  EMH_LOCK_UPDATE: no other transaction can
 * change, delete or lock them meanwhile; EMH_LOCK_SHARE: others may take
 * share locks too, but none can change, delete or lock them for update.
 * wait says what happens when another transaction holds a conflicting
 * lock: EMH_LOCK_WAIT waits for it, EMH_LOCK_NOWAIT fails at once with
 * EMH_ECONFLICT (retryable), EMH_LOCK_SKIP_LOCKED leaves those rows out
 * (a work queue's "take the next free job").
 *
 * SQL: FOR UPDATE / FOR SHARE (MariaDB: LOCK IN SHARE MODE) [NOWAIT | SKIP
 * LOCKED] on PostgreSQL, MySQL 8 and MariaDB 10.6+.  SQLite has no row
 * locks: its transactions (BEGIN IMMEDIATE) already hold the database's
 * write lock, so no other writer can change any row until they end, and the
 * lock is a no-op there (wait included).  A context without EMH_CAP_LOCKS
 * (MongoDB, older MySQL servers) refuses a locked query with
 * EMH_EUNSUPPORTED.
 *
 * A locked query runs only inside a transaction (emh_em_begin): outside one
 * it is EMH_ESTATE, since the lock would end with the statement.  It loads
 * rows fresh: an object of the identity map is reloaded from its locked row
 * (EMH_ESTATE when it has unflushed changes: lock before you change).
 * Counting locks nothing: emh_repo_count of a locked query is EMH_EINVAL,
 * and so are emh_repo_find_page, emh_repo_iter and emh_repo_aggregate of
 * one (they load no objects to lock either).
 * mode 0 (EMH_LOCK_NONE) removes the lock.
 */
enum { EMH_LOCK_NONE = 0, EMH_LOCK_UPDATE = 1, EMH_LOCK_SHARE = 2 };
enum { EMH_LOCK_WAIT = 0, EMH_LOCK_NOWAIT = 1, EMH_LOCK_SKIP_LOCKED = 2 };
void emh_q_lock(emh_query *q, int mode, int wait);

/*
 * Assignments of a set-based update (emh_repo_update_where, em.h), made by
 * emh_repo_sets and filled by the calls below.  Like a query, a set list
 * belongs to its fork, copies the values given into the fork's arena, and
 * keeps the first mistake to report it from the call that uses it: an
 * unknown field, the key, the version field, a value of the wrong type
 * (the query rules: int32 and int64 mix, a timestamp takes int64), NULL in
 * a non-nullable field, a field assigned twice, a delta on a field that is
 * not int32/int64/double or that is nullable (field + delta on NULL is NULL
 * in SQL and an error in MongoDB, so it is refused everywhere).
 */
typedef struct emh_sets emh_sets;
/* field = v (a NULL value for a nullable field). */
void emh_sets_value(emh_sets *s, const char *field, emh_value v);
/* field = field + delta: int32/int64 fields take an integer, double fields a
 * double or an integer; a negative delta subtracts. */
void emh_sets_add(emh_sets *s, const char *field, emh_value delta);

/* One assignment as drivers get it (emh_driver.update_where). */
enum { EMH_SET_VALUE = 1, EMH_SET_ADD = 2 };
typedef struct emh_set {
	int field;       /* index into the entity's fields */
	int op;          /* EMH_SET_VALUE: field = value; EMH_SET_ADD: field = field + value */
	emh_value value; /* of the field's own type; ADD: never NULL */
} emh_set;

/* Accessors for drivers (driver.h) and for tests. */
const emh_entity *emh_query_entity(const emh_query *q);
/* The condition tree, or NULL for "every row". */
const emh_cond *emh_query_cond(const emh_query *q);
size_t emh_query_norder(const emh_query *q);
/* Ordering key i: field index into the entity, and direction. */
void emh_query_order(const emh_query *q, size_t i, int *field, bool *descending);
/* -1 when not set. */
int64_t emh_query_limit(const emh_query *q);
int64_t emh_query_offset(const emh_query *q);
/* EMH_LOCK_* of q (0: none) and its wait mode in *wait (may be NULL). */
int emh_query_lock(const emh_query *q, int *wait);

/* Read-only view of a condition node, for drivers that do not speak SQL. */
emh_op emh_cond_op(const emh_cond *c);
/* Field index (comparison, IN, LIKE, null tests); -1 for AND/OR/NOT. */
int emh_cond_field(const emh_cond *c);
/* Values of a comparison (1), IN (n) or LIKE (1, the pattern as text). */
size_t emh_cond_nvalues(const emh_cond *c);
const emh_value *emh_cond_values(const emh_cond *c);
/* Children of AND/OR (n >= 1) and NOT (1). */
size_t emh_cond_nchildren(const emh_cond *c);
const emh_cond *emh_cond_child(const emh_cond *c, size_t i);

#ifdef __cplusplus
}
#endif
#endif
