/* SPDX-License-Identifier: MIT */
/*
 * core/qlog.c: the query log and the query duration histograms (qlog.h):
 * a context's settings, the log line of one call, and the snapshot of the
 * histograms for /_emhost/metrics (emh_host_query_stats).
 *
 * Parameters are never shown by default ("$1=?").  log_query_values shows
 * them, except on an entity with an EMH_F_SECRET field: a statement's
 * parameters are not tied to fields here (a query binds its conditions'
 * values, an update its changed columns), so the whole statement is masked
 * rather than guessing which one is the secret.  Raw SQL (emh_em_execute)
 * is logged as written: values pasted into it are the caller's.
 */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <emhost/buf.h>

#include "em_int.h"

const int64_t emh__q_bound_ns[EMH__Q_BUCKETS] = {
	100000,    250000,    500000,    1000000,    2500000,    5000000,    10000000,   25000000,
	50000000,  100000000, 250000000, 500000000,  1000000000, 2500000000, 5000000000, 10000000000,
};
/* The same bounds in seconds, as emh_query_stats.le hands them out. */
static const double bound_s[EMH__Q_BUCKETS] = {
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
};
static const char *const op_names[EMH__Q_NOPS] = {
	"get", "find", "count", "insert", "update", "delete",
	"upsert", "execute", "sync", "begin", "commit", "rollback", "aggregate",
};
_Static_assert(sizeof op_names / sizeof *op_names == EMH__Q_NOPS, "a name for every operation");

/* Parameters shown in one line at most; the rest are counted. */
#define SHOWN_PARAMS 32

emh__qstats *emh__qstats_make(emh__qstats *_Atomic *slot)
{
	emh__qstats *mine = calloc(1, sizeof *mine), *none = NULL;
	if (!mine)
		return NULL;
	if (atomic_compare_exchange_strong_explicit(slot, &none, mine, memory_order_acq_rel, memory_order_acquire))
		return mine;
	free(mine); /* another thread's call made them first */
	return none;
}

uint64_t emh__qstats_total(const emh__qstats *s)
{
	uint64_t n = 0;
	for (int op = 0; s && op < EMH__Q_NOPS; op++)
		for (int b = 0; b <= EMH__Q_BUCKETS; b++)
			n += atomic_load_explicit(&s->n[op][b], memory_order_relaxed);
	return n;
}

void emh__qlog_init(emh__qlog *q, const emh__ctxconf *conf)
{
	/* checked and made canonical ("true"/"false", decimal) with the context */
	const char *all = emh__ctxconf_get(conf, "log_queries");
	const char *values = emh__ctxconf_get(conf, "log_query_values");
	const char *slow = emh__ctxconf_get(conf, "slow_query_ms");
	long long ms = slow ? strtoll(slow, NULL, 10) : 0;
	*q = (emh__qlog){
		.all = all && strcmp(all, "true") == 0,
		.values = values && strcmp(values, "true") == 0,
		.slow_ns = ms > 0 ? ms * 1000000 : 0,
	};
	q->on = q->all || q->slow_ns > 0;
}

/* ---- the log line ---- */

/* v as a log shows it: numbers as they are, text quoted and cut at 64 bytes, blobs by their size. */
static void value_add(emh_buf *b, const emh_value *v)
{
	if (v->is_null) {
		emh_buf_adds(b, "NULL");
		return;
	}
	switch (v->type) {
	case EMH_T_BOOL: emh_buf_adds(b, v->u.b ? "true" : "false"); break;
	case EMH_T_INT32: emh_buf_addf(b, "%" PRId32, v->u.i32); break;
	case EMH_T_INT64:
	case EMH_T_TIMESTAMP: emh_buf_addf(b, "%" PRId64, v->u.i64); break;
	case EMH_T_DOUBLE: emh_buf_addf(b, "%.17g", v->u.d); break;
	case EMH_T_BLOB: emh_buf_addf(b, "<%zu bytes>", v->u.s.len); break;
	default: /* text, json */
		emh_buf_addf(b, "'%.*s'%s", (int)(v->u.s.len > 64 ? 64 : v->u.s.len), v->u.s.ptr,
			     v->u.s.len > 64 ? "..." : "");
	}
}

static bool has_secret(const emh_entity *e)
{
	for (size_t i = 0; e && i < e->nfields; i++)
		if (e->fields[i].flags & EMH_F_SECRET)
			return true;
	return false;
}

/* One parameter: "$3=?", "email=?", or with show its value. */
static void param_add(emh_buf *b, size_t i, const char *name, const emh_value *v, bool show)
{
	if (i == SHOWN_PARAMS) {
		emh_buf_adds(b, ", ...");
		return;
	}
	if (i > SHOWN_PARAMS)
		return;
	if (i)
		emh_buf_adds(b, ", ");
	if (name)
		emh_buf_addf(b, "%s=", name);
	else
		emh_buf_addf(b, "$%zu=", i + 1);
	if (show)
		value_add(b, v);
	else
		emh_buf_add(b, "?", 1);
}

/* The parameters of o into b, " [$1=?, ...]"; nothing when it has none. */
static void params_add(emh_buf *b, const emh__op *o, bool show)
{
	const emh_entity *e = o->m ? o->m->pub.entity : NULL;
	emh_buf p = EMH_BUF_INIT;
	size_t k = 0;
	switch (o->kind) {
	case OP_STMT:
		for (; k < o->st->nparams; k++)
			param_add(&p, k, NULL, &o->params[k], show);
		break;
	case OP_INSERT:
	case OP_UPSERT:
	case OP_UPDATE: /* the fields' values, in field order (an update: the changed ones and the key) */
		for (size_t i = 0; i < e->nfields; i++)
			if (o->kind != OP_UPDATE || ((o->mask >> i) & 1) || (int)i == o->m->pub.pk)
				param_add(&p, k++, e->fields[i].name, &o->params[i], show);
		break;
	case OP_REMOVE:
		param_add(&p, k++, e->fields[o->m->pub.pk].name, o->params, show);
		break;
	case OP_FIND:
	case OP_COUNT: {
		size_t np = o->q ? emh__query_nparams(o->q, o->kind == OP_COUNT) : 0;
		emh_value *v = np ? calloc(np, sizeof *v) : NULL;
		if (v) {
			emh__query_params(o->q, o->kind == OP_COUNT, v);
			for (; k < np; k++)
				param_add(&p, k, NULL, &v[k], show);
		} else if (np) {
			emh_buf_addf(&p, "%zu parameters", np);
			k = np;
		}
		free(v);
		break;
	}
	}
	if (k)
		emh_buf_addf(b, " [%s]", p.oom ? "..." : p.ptr);
	emh_buf_release(&p);
}

/* Log a call of context c that took ns and returned rc, whose statement is in b, at level (qlog_level's). */
static void qlog_line(const emh_context *c, int level, emh_buf *b, int rc, int64_t ns)
{
	if (b->oom)
		return;
	double ms = (double)ns / 1e6;
	char status[64] = "";
	if (rc)
		snprintf(status, sizeof status, ", %s", emh_status_name(rc));
	if (level == EMH_LOG_WARN)
		emh__log(&c->host->log, level, c->name, "slow query (%.3f ms%s; slow_query_ms = %" PRId64 "): %s", ms,
			 status, c->qlog.slow_ns / 1000000, b->ptr);
	else
		emh__log(&c->host->log, level, c->name, "query (%.3f ms%s): %s", ms, status, b->ptr);
}

/* The level a call that took ns is logged at, or -1 for none. */
static int qlog_level(const emh__qlog *q, int64_t ns)
{
	if (q->slow_ns > 0 && ns >= q->slow_ns)
		return EMH_LOG_WARN;
	return q->all ? EMH_LOG_INFO : -1;
}

void emh__qlog_op(emh_em *em, const emh__op *o, int op, int rc, int64_t ns)
{
	const emh_context *c = em->ctx;
	int level = qlog_level(&c->qlog, ns);
	if (level < 0 || level > c->host->log.level)
		return;
	emh_buf b = EMH_BUF_INIT;
	const emh_entity *e = o->m ? o->m->pub.entity : NULL;
	switch (o->kind) {
	case OP_STMT: emh_buf_add(&b, o->st->sql, o->st->sql_len); break;
	case OP_EXECUTE: emh_buf_adds(&b, o->text); break;
	case OP_SYNC: emh_buf_addf(&b, "schema sync of table '%s'", e->table); break;
	default: /* a document driver's own operation */
		emh_buf_addf(&b, "%s %s %s", c->drv->d.name, op_names[op], e->table);
	}
	params_add(&b, o, c->qlog.values && !has_secret(e));
	qlog_line(c, level, &b, rc, ns);
	emh_buf_release(&b);
}

void emh__qlog_tx(emh_em *em, int op, const char *text, const char *name, int rc, int64_t ns)
{
	const emh_context *c = em->ctx;
	int level = qlog_level(&c->qlog, ns);
	if (level < 0 || level > c->host->log.level)
		return;
	emh_buf b = EMH_BUF_INIT;
	if (c->drv->d.dialect)
		emh_buf_addf(&b, "%s%s", text, name);
	else /* a document driver's own transaction call, not SQL */
		emh_buf_addf(&b, "%s %s%s%s", c->drv->d.name, op_names[op], *name ? " " : "", name);
	qlog_line(c, level, &b, rc, ns);
	emh_buf_release(&b);
}

/* ---- the histograms, for /_emhost/metrics ---- */

int emh_host_query_stats(emh_host *h, emh_query_stats **out, size_t *n, emh_error *err)
{
	*out = NULL;
	*n = 0;
	pthread_rwlock_rdlock(&h->lock);
	/* Counts only grow: what is not zero now is not zero below either. */
	size_t ns = 0, bytes = 0;
	for (size_t i = 0; i < h->nctx; i++) {
		const emh__qstats *qs = atomic_load_explicit(&h->ctxs[i]->qstats, memory_order_acquire);
		bytes += strlen(h->ctxs[i]->name) + 1;
		for (int op = 0; qs && op < EMH__Q_NOPS; op++)
			for (int b = 0; b <= EMH__Q_BUCKETS; b++)
				if (atomic_load_explicit(&qs->n[op][b], memory_order_relaxed)) {
					ns++;
					break;
				}
	}
	/* One block: the entries, their cumulative counts, then the names. */
	emh_query_stats *v = calloc(1, ns * (sizeof *v + EMH__Q_BUCKETS * sizeof(uint64_t)) + bytes + 1);
	if (!v) {
		pthread_rwlock_unlock(&h->lock);
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	}
	uint64_t *cum = (uint64_t *)(v + ns);
	char *names = (char *)(cum + ns * EMH__Q_BUCKETS);
	size_t k = 0;
	for (size_t i = 0; i < h->nctx && k < ns; i++) {
		emh_context *c = h->ctxs[i];
		const emh__qstats *qs = atomic_load_explicit(&c->qstats, memory_order_acquire);
		const char *name = NULL;
		for (int op = 0; qs && op < EMH__Q_NOPS && k < ns; op++) {
			uint64_t slot[EMH__Q_BUCKETS + 1], total = 0;
			for (int b = 0; b <= EMH__Q_BUCKETS; b++)
				total += slot[b] = atomic_load_explicit(&qs->n[op][b], memory_order_relaxed);
			if (!total)
				continue;
			if (!name) {
				name = memcpy(names, c->name, strlen(c->name) + 1);
				names += strlen(c->name) + 1;
			}
			emh_query_stats *s = &v[k];
			*s = (emh_query_stats){.context = name, .op = op_names[op], .nbuckets = EMH__Q_BUCKETS,
					       .le = bound_s, .cumulative = cum + k * EMH__Q_BUCKETS};
			uint64_t run = 0;
			for (int b = 0; b < EMH__Q_BUCKETS; b++)
				cum[k * EMH__Q_BUCKETS + (size_t)b] = run += slot[b];
			/* count from the same loads as the buckets: never below them */
			s->count = total;
			uint64_t sum = atomic_load_explicit(&qs->sum_ns[op], memory_order_relaxed);
			s->sum_seconds = (double)sum / 1e9;
			k++;
		}
	}
	pthread_rwlock_unlock(&h->lock);
	*out = v;
	*n = k;
	return 0;
}

void emh_query_stats_free(emh_query_stats *s) { free(s); }
