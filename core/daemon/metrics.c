/* SPDX-License-Identifier: MIT */
/*
 * core/daemon/metrics.c: GET /_emhost/metrics, in Prometheus text format:
 * the contexts' pools and errors, their database calls' durations per
 * operation (counted by the core), per service the requests answered by
 * status and a latency histogram, counted with relaxed atomics as each
 * response is queued, and the build.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>

#include "httpd_int.h"

static const double bucket_le[NBUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
					   0.1,    0.25,  0.5,    1,     2.5,   5,    10};
static const int status_slots[] = {200, 201, 204, 400, 404, 405, 409, 413, 500, 503};
_Static_assert(NSTATUS == sizeof status_slots / sizeof status_slots[0] + 1, "NSTATUS is status_slots + \"other\"");

void emhd__metrics_record(svc_metrics *m, int status, int64_t ns)
{
	if (!m)
		return;
	double s = (double)ns / 1e9;
	size_t b = 0;
	while (b < NBUCKETS && s > bucket_le[b])
		b++;
	atomic_fetch_add_explicit(&m->buckets[b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&m->sum_ns, (uint64_t)ns, memory_order_relaxed);
	size_t k = 0;
	while (k < NSTATUS - 1 && status_slots[k] != status)
		k++;
	atomic_fetch_add_explicit(&m->by_status[k], 1, memory_order_relaxed);
}

static void prom_header(emh_buf *b, const char *name, const char *type, const char *help)
{
	emh_buf_addf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

enum MHD_Result emhd__serve_metrics(struct MHD_Connection *conn, emhd_req *r)
{
	emhd_server *srv = r->srv;
	emh_context_info *infos;
	size_t n;
	emh_error err;
	if (emh_host_contexts(srv->host, &infos, &n, &err) != 0)
		return emhd__reply_error(conn, r, 500, emh_strerror(err.code), NULL);
	emh_buf out = EMH_BUF_INIT; /* out of memory shows once, at the end */
#define PER_CTX(metric, type, help, fmt, expr)                                                \
	do {                                                                                  \
		prom_header(&out, metric, type, help);                                        \
		for (size_t i = 0; i < n; i++) {                                              \
			const emh_context_info *c = &infos[i];                                \
			emh_buf_addf(&out, metric "{context=\"%s\"} " fmt "\n", c->name, expr); \
		}                                                                             \
	} while (0)
	PER_CTX("emhost_context_up", "gauge", "1 when the last connection attempt succeeded.", "%d", c->up ? 1 : 0);
	PER_CTX("emhost_pool_in_use", "gauge", "Pooled connections lent to forks.", "%u", c->in_use);
	PER_CTX("emhost_pool_idle", "gauge", "Pooled connections open and idle.", "%u", c->idle);
	PER_CTX("emhost_pool_waiting", "gauge", "Forks waiting for a pooled connection.", "%u", c->waiting);
	PER_CTX("emhost_pool_max", "gauge", "Most connections the pool opens.", "%d", c->pool_max);
	PER_CTX("emhost_pool_acquires_total", "counter", "Connections taken from the pool.", "%llu",
		(unsigned long long)c->acquires);
	PER_CTX("emhost_pool_acquire_wait_seconds_total", "counter", "Time forks spent waiting for a connection.",
		"%.6f", (double)c->acquire_wait_ns / 1e9);
	PER_CTX("emhost_pool_timeouts_total", "counter", "Acquires that timed out.", "%llu",
		(unsigned long long)c->timeouts);
	PER_CTX("emhost_pool_opened_total", "counter", "Connections opened.", "%llu", (unsigned long long)c->opened);
	PER_CTX("emhost_pool_discarded_total", "counter", "Connections closed as broken or expired.", "%llu",
		(unsigned long long)c->discarded);
	PER_CTX("emhost_forks_open", "gauge", "Entity managers open.", "%u", c->forks_open);
	PER_CTX("emhost_queries_total", "counter", "Statements and commands sent to the database.", "%llu",
		(unsigned long long)c->queries);
#undef PER_CTX
	prom_header(&out, "emhost_errors_total", "counter", "Errors by kind.");
	for (size_t i = 0; i < n; i++)
		for (int k = 1; k < 32; k++)
			if (infos[i].errors[k])
				emh_buf_addf(&out, "emhost_errors_total{context=\"%s\",kind=\"%s\"} %llu\n", infos[i].name,
					emh_status_name(-k), (unsigned long long)infos[i].errors[k]);
	emh_context_info_free(infos, n);

	/* read replicas (docs/replicas.md), one series per context and replica */
	emh_replica_info *reps;
	size_t nr;
	if (emh_host_replicas(srv->host, &reps, &nr, &err) != 0) {
		emh_buf_release(&out);
		return emhd__reply_error(conn, r, 500, emh_strerror(err.code), NULL);
	}
#define PER_REPLICA(metric, type, help, fmt, expr)                                                           \
	do {                                                                                                 \
		prom_header(&out, metric, type, help);                                                       \
		for (size_t i = 0; i < nr; i++) {                                                            \
			const emh_replica_info *ri = &reps[i];                                               \
			emh_buf_addf(&out, metric "{context=\"%s\",replica=\"%u\"} " fmt "\n", ri->context, ri->index, \
				     expr);                                                                  \
		}                                                                                            \
	} while (0)
	if (nr) {
		PER_REPLICA("emhost_replica_up", "gauge", "1 unless the replica is skipped after a failure.", "%d",
			    ri->up ? 1 : 0);
		PER_REPLICA("emhost_replica_lag_ms", "gauge", "Last measured replication lag (-1: not measured; 9223372036854775807, INT64_MAX: replication stopped or broken).", "%lld",
			    (long long)ri->lag_ms);
		PER_REPLICA("emhost_replica_queries_total", "counter", "Reads the replica answered.", "%llu",
			    (unsigned long long)ri->queries);
		PER_REPLICA("emhost_replica_errors_total", "counter", "Calls on the replica that failed.", "%llu",
			    (unsigned long long)ri->errors);
		PER_REPLICA("emhost_replica_fallbacks_total", "counter",
			    "Reads sent to the primary because the replica failed or had no connection free.", "%llu",
			    (unsigned long long)ri->fallbacks);
		PER_REPLICA("emhost_replica_stale_total", "counter",
			    "Forks whose causal token the replica had not replayed (they read the primary).", "%llu",
			    (unsigned long long)ri->stale);
	}
#undef PER_REPLICA
	free(reps);

	emh_query_stats *qs;
	size_t nq;
	if (emh_host_query_stats(srv->host, &qs, &nq, &err) != 0) {
		emh_buf_release(&out);
		return emhd__reply_error(conn, r, 500, emh_strerror(err.code), NULL);
	}
	prom_header(&out, "emhost_query_duration_seconds", "histogram",
		    "Database calls of forks by context and operation, from the call to the driver's answer.");
#define QD "emhost_query_duration_seconds"
	for (size_t i = 0; i < nq; i++) {
		const emh_query_stats *q = &qs[i];
		for (size_t b = 0; b < q->nbuckets; b++)
			emh_buf_addf(&out, QD "_bucket{context=\"%s\",op=\"%s\",le=\"%g\"} %llu\n", q->context, q->op,
				q->le[b], (unsigned long long)q->cumulative[b]);
		/* +Inf and _count are the count: never below the buckets, taken from the same loads */
		emh_buf_addf(&out, QD "_bucket{context=\"%s\",op=\"%s\",le=\"+Inf\"} %llu\n", q->context, q->op,
			(unsigned long long)q->count);
		emh_buf_addf(&out, QD "_sum{context=\"%s\",op=\"%s\"} %.6f\n", q->context, q->op, q->sum_seconds);
		emh_buf_addf(&out, QD "_count{context=\"%s\",op=\"%s\"} %llu\n", q->context, q->op,
			(unsigned long long)q->count);
	}
#undef QD
	emh_query_stats_free(qs);

	prom_header(&out, "emhost_http_requests_total", "counter", "HTTP requests answered, by service and status.");
	for (size_t s = 0; s < srv->nsvc + 2; s++) {
		const svc_metrics *m = &srv->metrics[s];
		for (size_t k = 0; k < NSTATUS; k++) {
			uint64_t v = atomic_load_explicit(&m->by_status[k], memory_order_relaxed);
			if (!v)
				continue;
			if (k < NSTATUS - 1)
				emh_buf_addf(&out, "emhost_http_requests_total{service=\"%s\",code=\"%d\"} %llu\n", m->name,
					status_slots[k], (unsigned long long)v);
			else
				emh_buf_addf(&out, "emhost_http_requests_total{service=\"%s\",code=\"other\"} %llu\n", m->name,
					(unsigned long long)v);
		}
	}
	prom_header(&out, "emhost_http_request_duration_seconds", "histogram",
		    "Time from the request's headers to its response being queued.");
	for (size_t s = 0; s < srv->nsvc + 2; s++) {
		const svc_metrics *m = &srv->metrics[s];
		uint64_t cum = 0;
		for (size_t b = 0; b < NBUCKETS; b++) {
			cum += atomic_load_explicit(&m->buckets[b], memory_order_relaxed);
			emh_buf_addf(&out, "emhost_http_request_duration_seconds_bucket{service=\"%s\",le=\"%g\"} %llu\n",
				m->name, bucket_le[b], (unsigned long long)cum);
		}
		/* +Inf and _count from the same loads as the buckets: never below them */
		cum += atomic_load_explicit(&m->buckets[NBUCKETS], memory_order_relaxed);
		emh_buf_addf(&out, "emhost_http_request_duration_seconds_bucket{service=\"%s\",le=\"+Inf\"} %llu\n", m->name,
			(unsigned long long)cum);
		emh_buf_addf(&out, "emhost_http_request_duration_seconds_sum{service=\"%s\"} %.6f\n", m->name,
			(double)atomic_load_explicit(&m->sum_ns, memory_order_relaxed) / 1e9);
		emh_buf_addf(&out, "emhost_http_request_duration_seconds_count{service=\"%s\"} %llu\n", m->name,
			(unsigned long long)cum);
	}
	pthread_mutex_lock(&srv->qmu);
	unsigned qlen = srv->qlen, busy = srv->busy;
	pthread_mutex_unlock(&srv->qmu);
	prom_header(&out, "emhost_http_queued", "gauge", "Requests waiting for a worker.");
	emh_buf_addf(&out, "emhost_http_queued %u\n", qlen);
	prom_header(&out, "emhost_http_queue_max", "gauge", "Requests that may wait for a worker; more get 503.");
	emh_buf_addf(&out, "emhost_http_queue_max %u\n", srv->qmax);
	prom_header(&out, "emhost_http_workers_busy", "gauge", "Workers running a handler.");
	emh_buf_addf(&out, "emhost_http_workers_busy %u\n", busy);
	prom_header(&out, "emhost_http_handled_inline_total", "counter",
		    "Handlers run on an I/O thread (the fast path: GET, SQLite, an idle connection).");
	emh_buf_addf(&out, "emhost_http_handled_inline_total %llu\n",
		     (unsigned long long)atomic_load(&srv->inline_total));
	prom_header(&out, "emhost_http_inline_missed_total", "counter",
		    "Fast-path requests handed to a worker because another thread took their idle connection first.");
	emh_buf_addf(&out, "emhost_http_inline_missed_total %llu\n",
		     (unsigned long long)atomic_load(&srv->inline_missed));
	prom_header(&out, "emhost_http_handed_off_total", "counter", "Handlers handed to a worker.");
	emh_buf_addf(&out, "emhost_http_handed_off_total %llu\n", (unsigned long long)atomic_load(&srv->handoff_total));
	prom_header(&out, "emhost_http_rejected_total", "counter", "Requests answered 503 because the queue was full.");
	emh_buf_addf(&out, "emhost_http_rejected_total %llu\n", (unsigned long long)atomic_load(&srv->rejected));
	prom_header(&out, "emhost_http_in_flight", "gauge", "Requests being received or handled.");
	emh_buf_addf(&out, "emhost_http_in_flight %u\n", atomic_load(&srv->in_flight));
	prom_header(&out, "emhost_build_info", "gauge", "The emhost version serving, as a label; always 1.");
	emh_buf_addf(&out, "emhost_build_info{version=\"%s\"} 1\n", EMH_VERSION_STRING);
	size_t len = out.len;
	char *text = emh_buf_take(&out);
	emh_response *res = text ? emh_response_new() : NULL;
	if (!res || emh_response_set_owned(res, 200, "text/plain; version=0.0.4; charset=utf-8", text, len, NULL) != 0) {
		if (!res)
			free(text);
		emh_response_free(res);
		return emhd__reply_error(conn, r, 500, "out of memory", NULL);
	}
	enum MHD_Result ret = emhd__queue_response(conn, r, res);
	emh_response_free(res);
	return ret;
}
