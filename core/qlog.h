/* SPDX-License-Identifier: MIT */
/*
 * core/qlog.h: what every database call of a fork records (core only):
 * its duration in a histogram per context and operation, always, with
 * relaxed atomics; and, when the context says log_queries or slow_query_ms,
 * a log line with the statement, its duration and its parameters masked.
 * With both off the query log costs one test of a byte per call.
 */
#ifndef EMH_CORE_QLOG_H
#define EMH_CORE_QLOG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "cfg.h"

struct emh_context;
struct emh_em;
struct emh__op;

/* The operations counted, in the order emh_host_query_stats lists them (names in qlog.c). */
enum {
	EMH__Q_GET,
	EMH__Q_FIND,
	EMH__Q_COUNT,
	EMH__Q_INSERT,
	EMH__Q_UPDATE,
	EMH__Q_DELETE,
	EMH__Q_UPSERT,
	EMH__Q_EXECUTE,
	EMH__Q_SYNC,
	EMH__Q_BEGIN,
	EMH__Q_COMMIT,
	EMH__Q_ROLLBACK,
	EMH__Q_AGGREGATE,
	EMH__Q_NOPS
};

/* Upper bounds of the buckets in nanoseconds, ascending (100 us .. 10 s). */
#define EMH__Q_BUCKETS 16
extern const int64_t emh__q_bound_ns[EMH__Q_BUCKETS];

/* A context's durations: per operation and bucket, not cumulative; the last
 * slot counts what is above the last bound, so the slots add up to the
 * number of calls. */
typedef struct emh__qstats {
	_Atomic uint64_t n[EMH__Q_NOPS][EMH__Q_BUCKETS + 1];
	_Atomic uint64_t sum_ns[EMH__Q_NOPS];
} emh__qstats;

/* A context's query log settings; fixed while the context lives. */
typedef struct emh__qlog {
	bool on;         /* log_queries, or slow_query_ms > 0: the one test on the hot path */
	bool all;        /* log_queries: every call, at info */
	bool values;     /* log_query_values: non-secret parameter values shown */
	int64_t slow_ns; /* slow_query_ms: calls at least this long at warning; 0 = none */
} emh__qlog;

/* The counters *slot points at, made (zeroed) and published by the first
 * caller; NULL when out of memory (that call is not counted). */
emh__qstats *emh__qstats_make(emh__qstats *_Atomic *slot);

/* Count a call of ns into a context's counters (emh_context.qstats),
 * allocated at its first call: an idle context holds none. */
static inline void emh__qstats_add(emh__qstats *_Atomic *slot, int op, int64_t ns)
{
	emh__qstats *s = atomic_load_explicit(slot, memory_order_acquire);
	if (!s && !(s = emh__qstats_make(slot)))
		return;
	size_t b = 0;
	while (b < EMH__Q_BUCKETS && ns > emh__q_bound_ns[b])
		b++;
	atomic_fetch_add_explicit(&s->n[op][b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&s->sum_ns[op], (uint64_t)(ns > 0 ? ns : 0), memory_order_relaxed);
}

/* Calls counted in s, every operation (emh_context_info.queries); s may be NULL (none). */
uint64_t emh__qstats_total(const emh__qstats *s);

/* The settings of a context's configuration (log_queries, log_query_values, slow_query_ms). */
void emh__qlog_init(emh__qlog *q, const emh__ctxconf *conf);

/*
 * Log one call of fork em that took ns and returned rc, when the context's
 * settings ask for it (q->on is tested by the caller): o describes it, op
 * is its EMH__Q_*.  The statement is the SQL text (the driver's operation
 * and table for a document driver), the parameters "$1=?" unless
 * log_query_values is set and the entity has no EMH_F_SECRET field.
 */
void emh__qlog_op(struct emh_em *em, const struct emh__op *o, int op, int rc, int64_t ns);

/*
 * The same for a transaction step of em (op EMH__Q_BEGIN, _COMMIT or
 * _ROLLBACK): a SQL driver's statement is text then name ("BEGIN",
 * "SAVEPOINT " "emh_sp_2"), a document driver's "mongo begin".
 */
void emh__qlog_tx(struct emh_em *em, int op, const char *text, const char *name, int rc, int64_t ns);

#endif
