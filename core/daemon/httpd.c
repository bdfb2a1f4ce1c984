/* SPDX-License-Identifier: MIT */
/*
 * core/daemon/httpd.c: emhostd's HTTP front.  libmicrohttpd runs a pool of
 * I/O threads (each with its own epoll loop); a request is read whole
 * (bodies above server.max_body are refused with 413 before any service sees
 * them), routed by its first path segment to a service, and handled in a
 * scope of its own that closes with the request.  Errors become JSON bodies
 * with one status mapping; /_emhost/health and /_emhost/metrics report the
 * contexts and per-service request latency.
 *
 * Handlers block on databases (a pool acquire, a server that stopped
 * answering), so they never run on an I/O thread, where they would stall
 * every other connection that thread serves: the connection is suspended,
 * the request goes to a queue served by worker threads, and the worker
 * resumes the connection with the answer ready.  A database that hangs then
 * holds workers, not unrelated clients' sockets.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>

#include "httpd.h"

#define MAX_KV 64
#define NBUCKETS 14
static const double bucket_le[NBUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
					   0.1,    0.25,  0.5,    1,     2.5,   5,    10};
static const int status_slots[] = {200, 201, 204, 400, 404, 405, 409, 413, 500, 503};
#define NSTATUS (sizeof status_slots / sizeof status_slots[0] + 1) /* + "other" */

/* Request counts and latency of one service (or of the daemon's own routes). */
typedef struct svc_metrics {
	const char *name;
	_Atomic uint64_t buckets[NBUCKETS]; /* per bucket, not cumulative */
	_Atomic uint64_t count;
	_Atomic uint64_t sum_ns;
	_Atomic uint64_t by_status[NSTATUS];
} svc_metrics;

struct emhd_req;

struct emhd_server {
	emh_host *host;
	struct MHD_Daemon *mhd;
	size_t max_body;
	char url[128];
	_Atomic unsigned in_flight;
	_Atomic bool stopping;
	size_t nsvc;        /* services at start; metrics[nsvc] = "_emhost", [nsvc+1] = "_unrouted" */
	svc_metrics *metrics;
	/* the handler queue and its workers */
	pthread_mutex_t qmu;
	pthread_cond_t qcv;
	struct emhd_req *qhead, *qtail;
	bool qstop;
	pthread_t *workers;
	unsigned nworkers;
};

/* One request, from the URI log callback to the completion callback. */
typedef struct emhd_req {
	emhd_server *srv;
	char *uri;            /* raw, with the query string */
	bool started;         /* the access handler saw the headers */
	bool too_large;
	char *body;
	size_t len, cap;
	int64_t t0;
	svc_metrics *m;
	const char *svc;      /* service name the path routes to (borrowed), or NULL */
	size_t svc_len;
	/* handed to a worker */
	struct MHD_Connection *conn;
	const char *method;   /* MHD's, valid for the request */
	bool health;          /* /_emhost/health rather than a service */
	emh_response *res;    /* the answer the worker prepared */
	_Atomic bool done;
	struct emhd_req *next;
} emhd_req;

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int emhd_http_status(int code)
{
	switch (code) {
	case EMH_ENOTFOUND:
	case EMH_ENOSERVICE:
		return 404;
	case EMH_ECONFLICT:
		return 409;
	case EMH_EINVAL:
		return 400;
	case EMH_EUNAVAILABLE:
	case EMH_ETIMEOUT:
		return 503;
	default:
		return 500;
	}
}

/* The "code" member of an error body: stable, lowercase. */
static const char *error_code_name(int http)
{
	switch (http) {
	case 400: return "invalid_argument";
	case 404: return "not_found";
	case 409: return "conflict";
	case 413: return "payload_too_large";
	case 503: return "unavailable";
	default: return "internal";
	}
}

static void metrics_record(svc_metrics *m, int status, int64_t ns)
{
	if (!m)
		return;
	double s = (double)ns / 1e9;
	size_t b = 0;
	while (b < NBUCKETS && s > bucket_le[b])
		b++;
	if (b < NBUCKETS)
		atomic_fetch_add_explicit(&m->buckets[b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&m->count, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&m->sum_ns, (uint64_t)ns, memory_order_relaxed);
	size_t k = 0;
	while (k < NSTATUS - 1 && status_slots[k] != status)
		k++;
	atomic_fetch_add_explicit(&m->by_status[k], 1, memory_order_relaxed);
}

/* Fill res with a JSON body (takes the reference to j). */
static void res_json(emh_response *res, int status, json_t *j)
{
	char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	if (!s || emh_response_set_owned(res, status, "application/json", s, strlen(s), NULL) != 0)
		emh_response_set(res, 500, "text/plain", "out of memory\n", 14, NULL);
}

static void res_error(emh_response *res, int status, const char *message, const char *context)
{
	res_json(res, status,
		 json_pack("{s:{s:s,s:s,s:s}}", "error", "code", error_code_name(status), "message",
			   message ? message : "", "context", context ? context : ""));
}

/*
 * The error body of an EMH_E* failure.  Messages of 500s are replaced by the
 * code's generic text (and logged in full): they come from the database or
 * the core and may hold SQL or server details; 4xx/503 messages are written
 * for the caller.
 */
static void res_emh_error(emhd_server *srv, const char *uri, emh_response *res, const emh_error *err)
{
	int status = emhd_http_status(err->code);
	const char *ctx = err->context[0] ? err->context : NULL;
	if (status == 500) {
		emh_host_log(srv->host, EMH_LOG_ERROR, ctx, "%s: %s (%s)", uri, err->message, emh_status_name(err->code));
		res_error(res, status, emh_strerror(err->code), ctx);
		return;
	}
	emh_host_log(srv->host, status == 503 ? EMH_LOG_WARN : EMH_LOG_DEBUG, ctx, "%s: %s", uri, err->message);
	res_error(res, status, err->message, ctx);
}

/* Queue res on the connection (body copied); records metrics, logs at debug. */
static enum MHD_Result queue(struct MHD_Connection *conn, emhd_req *r, const emh_response *res)
{
	size_t len;
	const char *body = emh_response_body(res, &len);
	int status = emh_response_status(res);
	struct MHD_Response *resp =
		MHD_create_response_from_buffer(len, (void *)(body ? body : ""), MHD_RESPMEM_MUST_COPY);
	if (!resp)
		return MHD_NO;
	const char *ctype = emh_response_content_type(res);
	if (ctype)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
	for (size_t i = 0; i < emh_response_nheaders(res); i++) {
		const emh_kv *h = emh_response_header(res, i);
		MHD_add_response_header(resp, h->name, h->value);
	}
	/* while draining for shutdown, keep-alive clients are told to go */
	if (atomic_load(&r->srv->stopping))
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
	enum MHD_Result ret = MHD_queue_response(conn, (unsigned)status, resp);
	MHD_destroy_response(resp);
	int64_t ns = now_ns() - r->t0;
	metrics_record(r->m, status, ns);
	emh_host_log(r->srv->host, EMH_LOG_DEBUG, NULL, "%s -> %d (%.3f ms)", r->uri, status, (double)ns / 1e6);
	return ret;
}

/* Answer at once from the I/O thread (only for what does no database work). */
static enum MHD_Result reply_error(struct MHD_Connection *conn, emhd_req *r, int status, const char *message,
				   const char *context)
{
	emh_response *res = emh_response_new();
	if (!res)
		return MHD_NO;
	res_error(res, status, message, context);
	enum MHD_Result ret = queue(conn, r, res);
	emh_response_free(res);
	return ret;
}

/* ---- health and metrics ---- */

/*
 * Health pings every context now (so a database that went down, or came
 * back, since the last request is seen at once) and reports the ping's
 * verdict: a context is up when a pooled connection answers.
 */
static void health_into(emhd_server *srv, const char *uri, emh_response *res)
{
	emh_host *h = srv->host;
	emh_context_info *infos;
	size_t n;
	emh_error err;
	if (emh_host_contexts(h, &infos, &n, &err) != 0) {
		res_emh_error(srv, uri, res, &err);
		return;
	}
	bool healthy = true;
	json_t *ctxs = json_object();
	for (size_t i = 0; i < n; i++) {
		const emh_context_info *c = &infos[i];
		emh_error perr;
		/* A failed ping discards its connection; a second one tells a pool
		 * holding a connection broken by an earlier outage (the server is
		 * back) from a database that is down now. */
		bool up = emh_host_ping(h, c->name, &perr) == 0 || emh_host_ping(h, c->name, &perr) == 0;
		if (c->required && !up)
			healthy = false;
		json_object_set_new(ctxs, c->name,
				    json_pack("{s:s,s:s,s:b,s:b,s:s}", "status", up ? "up" : "down", "driver",
					      c->driver ? c->driver : "", "required", c->required, "default",
					      c->is_default, "last_error", up ? "" : perr.message));
	}
	emh_context_info_free(infos, n);
	res_json(res, healthy ? 200 : 503, json_pack("{s:s,s:o}", "status", healthy ? "up" : "down", "contexts", ctxs));
}

static void prom_header(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static enum MHD_Result serve_metrics(struct MHD_Connection *conn, emhd_req *r)
{
	emhd_server *srv = r->srv;
	emh_context_info *infos;
	size_t n;
	emh_error err;
	if (emh_host_contexts(srv->host, &infos, &n, &err) != 0)
		return reply_error(conn, r, emhd_http_status(err.code), err.message, NULL);
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f) {
		emh_context_info_free(infos, n);
		return reply_error(conn, r, 500, "out of memory", NULL);
	}
#define PER_CTX(metric, type, help, fmt, expr)                                                \
	do {                                                                                  \
		prom_header(f, metric, type, help);                                           \
		for (size_t i = 0; i < n; i++) {                                              \
			const emh_context_info *c = &infos[i];                                \
			fprintf(f, metric "{context=\"%s\"} " fmt "\n", c->name, expr);      \
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
	prom_header(f, "emhost_errors_total", "counter", "Errors by kind.");
	for (size_t i = 0; i < n; i++)
		for (int k = 1; k < 32; k++)
			if (infos[i].errors[k])
				fprintf(f, "emhost_errors_total{context=\"%s\",kind=\"%s\"} %llu\n", infos[i].name,
					emh_status_name(-k), (unsigned long long)infos[i].errors[k]);
	emh_context_info_free(infos, n);

	prom_header(f, "emhost_http_requests_total", "counter", "HTTP requests answered, by service and status.");
	for (size_t s = 0; s < srv->nsvc + 2; s++) {
		const svc_metrics *m = &srv->metrics[s];
		for (size_t k = 0; k < NSTATUS; k++) {
			uint64_t v = atomic_load_explicit(&m->by_status[k], memory_order_relaxed);
			if (!v)
				continue;
			if (k < NSTATUS - 1)
				fprintf(f, "emhost_http_requests_total{service=\"%s\",code=\"%d\"} %llu\n", m->name,
					status_slots[k], (unsigned long long)v);
			else
				fprintf(f, "emhost_http_requests_total{service=\"%s\",code=\"other\"} %llu\n", m->name,
					(unsigned long long)v);
		}
	}
	prom_header(f, "emhost_http_request_duration_seconds", "histogram",
		    "Time from the request's headers to its response being queued.");
	for (size_t s = 0; s < srv->nsvc + 2; s++) {
		const svc_metrics *m = &srv->metrics[s];
		uint64_t cum = 0;
		for (size_t b = 0; b < NBUCKETS; b++) {
			cum += atomic_load_explicit(&m->buckets[b], memory_order_relaxed);
			fprintf(f, "emhost_http_request_duration_seconds_bucket{service=\"%s\",le=\"%g\"} %llu\n",
				m->name, bucket_le[b], (unsigned long long)cum);
		}
		uint64_t count = atomic_load_explicit(&m->count, memory_order_relaxed);
		fprintf(f, "emhost_http_request_duration_seconds_bucket{service=\"%s\",le=\"+Inf\"} %llu\n", m->name,
			(unsigned long long)count);
		fprintf(f, "emhost_http_request_duration_seconds_sum{service=\"%s\"} %.6f\n", m->name,
			(double)atomic_load_explicit(&m->sum_ns, memory_order_relaxed) / 1e9);
		fprintf(f, "emhost_http_request_duration_seconds_count{service=\"%s\"} %llu\n", m->name,
			(unsigned long long)count);
	}
	prom_header(f, "emhost_http_in_flight", "gauge", "Requests being received or handled.");
	fprintf(f, "emhost_http_in_flight %u\n", atomic_load(&srv->in_flight));
	emh_response *res = fclose(f) == 0 ? emh_response_new() : NULL;
	if (!res || emh_response_set_owned(res, 200, "text/plain; version=0.0.4; charset=utf-8", buf, len, NULL) != 0) {
		if (!res)
			free(buf);
		emh_response_free(res);
		return reply_error(conn, r, 500, "out of memory", NULL);
	}
	enum MHD_Result ret = queue(conn, r, res);
	emh_response_free(res);
	return ret;
}

/* ---- dispatch to a service ---- */

typedef struct kv_collect {
	emh_kv v[MAX_KV];
	size_t n;
} kv_collect;

static enum MHD_Result kv_iter(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	kv_collect *c = cls;
	if (c->n < MAX_KV) {
		c->v[c->n].name = key;
		c->v[c->n].value = value ? value : "";
		c->n++;
	}
	return MHD_YES;
}

/* Run the request in its service's scope; the answer goes to res.  Worker thread. */
static void service_into(emhd_req *r, struct MHD_Connection *conn, emh_response *res)
{
	emhd_server *srv = r->srv;
	char name[128];
	snprintf(name, sizeof name, "%.*s", (int)r->svc_len, r->svc);
	/* the path below the service and the raw query, from the raw URI */
	const char *rest = r->svc + r->svc_len;
	const char *q = strchr(rest, '?');
	char *path = strndup(rest, q ? (size_t)(q - rest) : strlen(rest));
	kv_collect *args = malloc(2 * sizeof *args);
	if (!path || !args) {
		free(path);
		free(args);
		res_error(res, 500, "out of memory", NULL);
		return;
	}
	kv_collect *hdrs = args + 1;
	args->n = hdrs->n = 0;
	MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, kv_iter, args);
	MHD_get_connection_values(conn, MHD_HEADER_KIND, kv_iter, hdrs);
	emh_request req = {
		.method = r->method,
		.path = path,
		.query = q ? q + 1 : "",
		.args = args->v,
		.nargs = args->n,
		.headers = hdrs->v,
		.nheaders = hdrs->n,
		.body = r->body,
		.body_len = r->len,
	};
	emh_error err;
	emh_scope *scope = NULL;
	int rc = emh_scope_open(srv->host, name, &scope, &err);
	if (rc == 0) {
		rc = emh_scope_handle(scope, &req, res, &err);
		/* forks close (connections go back to their pools) before the reply is sent */
		emh_scope_close(scope);
	}
	if (rc) {
		emh_response_reset(res);
		res_emh_error(srv, r->uri, res, &err);
	}
	free(args);
	free(path);
}

static void run_job(emhd_req *r)
{
	if (r->health)
		health_into(r->srv, r->uri, r->res);
	else
		service_into(r, r->conn, r->res);
	atomic_store_explicit(&r->done, true, memory_order_release);
}

static void *worker_main(void *arg)
{
	emhd_server *srv = arg;
	pthread_mutex_lock(&srv->qmu);
	for (;;) {
		while (!srv->qhead && !srv->qstop)
			pthread_cond_wait(&srv->qcv, &srv->qmu);
		emhd_req *r = srv->qhead;
		if (!r)
			break; /* stopping and the queue is empty */
		srv->qhead = r->next;
		if (!srv->qhead)
			srv->qtail = NULL;
		pthread_mutex_unlock(&srv->qmu);
		run_job(r);
		MHD_resume_connection(r->conn);
		pthread_mutex_lock(&srv->qmu);
	}
	pthread_mutex_unlock(&srv->qmu);
	return NULL;
}

/*
 * Hand the request to a worker: suspend the connection (MHD calls on_access
 * again once the worker resumes it, and the answer is queued then).  When
 * the workers are gone (shutdown) the request runs here instead.
 */
static enum MHD_Result dispatch(struct MHD_Connection *conn, emhd_req *r, const char *method, bool health)
{
	emhd_server *srv = r->srv;
	r->conn = conn;
	r->method = method;
	r->health = health;
	if (!(r->res = emh_response_new()))
		return MHD_NO;
	pthread_mutex_lock(&srv->qmu);
	if (srv->qstop) {
		pthread_mutex_unlock(&srv->qmu);
		run_job(r);
		return queue(conn, r, r->res);
	}
	MHD_suspend_connection(conn);
	r->next = NULL;
	if (srv->qtail)
		srv->qtail->next = r;
	else
		srv->qhead = r;
	srv->qtail = r;
	pthread_cond_signal(&srv->qcv);
	pthread_mutex_unlock(&srv->qmu);
	return MHD_YES;
}

/* ---- libmicrohttpd callbacks ---- */

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
	emhd_server *srv = cls;
	emhd_req *r = calloc(1, sizeof *r);
	if (!r)
		return NULL;
	r->srv = srv;
	r->t0 = now_ns();
	r->uri = strdup(uri ? uri : "/");
	atomic_fetch_add(&srv->in_flight, 1);
	return r;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	emhd_req *r = *con_cls;
	if (!r)
		return;
	atomic_fetch_sub(&r->srv->in_flight, 1);
	emh_response_free(r->res);
	free(r->body);
	free(r->uri);
	free(r);
	*con_cls = NULL;
}

/* Route by the raw URI: which service (and so which metrics) it is for. */
static void route(emhd_req *r)
{
	emhd_server *srv = r->srv;
	const char *p = r->uri ? r->uri : "";
	if (*p == '/')
		p++;
	size_t n = strcspn(p, "/?");
	r->svc = p;
	r->svc_len = n;
	if (n == 7 && strncmp(p, "_emhost", 7) == 0) {
		r->m = &srv->metrics[srv->nsvc];
		return;
	}
	r->m = &srv->metrics[srv->nsvc + 1];
	for (size_t i = 0; i < srv->nsvc; i++)
		if (strlen(srv->metrics[i].name) == n && strncmp(srv->metrics[i].name, p, n) == 0)
			r->m = &srv->metrics[i];
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
				 const char *version, const char *upload_data, size_t *upload_data_size,
				 void **con_cls)
{
	emhd_server *srv = cls;
	emhd_req *r = *con_cls;
	if (!r || !r->uri)
		return MHD_NO; /* out of memory in on_uri: drop the connection */
	if (!r->started) {
		r->started = true;
		route(r);
		const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (cl) {
			char *end;
			errno = 0;
			unsigned long long v = strtoull(cl, &end, 10);
			if (errno || *end || v > srv->max_body) {
				char msg[128];
				snprintf(msg, sizeof msg, "request body of %s bytes is over the limit of %zu", cl,
					 srv->max_body);
				return reply_error(conn, r, 413, msg, NULL);
			}
		}
		return MHD_YES;
	}
	if (*upload_data_size) {
		size_t n = *upload_data_size;
		*upload_data_size = 0;
		if (r->too_large)
			return MHD_YES;
		if (r->len + n > srv->max_body) {
			r->too_large = true; /* chunked body: read and drop the rest, then answer 413 */
			free(r->body);
			r->body = NULL;
			r->len = r->cap = 0;
			return MHD_YES;
		}
		if (r->len + n + 1 > r->cap) {
			size_t cap = r->cap ? r->cap : 1024;
			while (cap < r->len + n + 1)
				cap *= 2;
			char *b = realloc(r->body, cap);
			if (!b)
				return MHD_NO;
			r->body = b;
			r->cap = cap;
		}
		memcpy(r->body + r->len, upload_data, n);
		r->len += n;
		r->body[r->len] = '\0';
		return MHD_YES;
	}
	if (atomic_load_explicit(&r->done, memory_order_acquire))
		return queue(conn, r, r->res); /* resumed by its worker */
	if (r->too_large) {
		char msg[128];
		snprintf(msg, sizeof msg, "request body is over the limit of %zu bytes", srv->max_body);
		return reply_error(conn, r, 413, msg, NULL);
	}
	if (r->m == &srv->metrics[srv->nsvc]) {
		if (strcmp(url, "/_emhost/health") == 0 && strcmp(method, "GET") == 0)
			return dispatch(conn, r, method, true); /* pings: may block */
		if (strcmp(url, "/_emhost/metrics") == 0 && strcmp(method, "GET") == 0)
			return serve_metrics(conn, r);
		return reply_error(conn, r, 404, "no such endpoint (have GET /_emhost/health, GET /_emhost/metrics)",
				   NULL);
	}
	if (r->svc_len == 0)
		return reply_error(conn, r, 404, "no service in the path: use /<service>/...", NULL);
	return dispatch(conn, r, method, false);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	emhd_server *srv = cls;
	char buf[512];
	vsnprintf(buf, sizeof buf, fmt, ap);
	size_t n = strlen(buf);
	while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	emh_host_log(srv->host, EMH_LOG_WARN, NULL, "http: %s", buf);
}

/* ---- start / stop ---- */

/* "host:port", "[v6]:port", ":port" or "port" into a socket address. */
static int parse_listen(const char *listen, struct sockaddr_storage *ss, socklen_t *sl, char *err, size_t cap)
{
	char host[256] = "127.0.0.1", port[16];
	const char *colon;
	if (listen[0] == '[') {
		const char *close = strchr(listen, ']');
		if (!close || close[1] != ':') {
			snprintf(err, cap, "listen address '%s': expected [address]:port", listen);
			return -1;
		}
		snprintf(host, sizeof host, "%.*s", (int)(close - listen - 1), listen + 1);
		colon = close + 1;
	} else if ((colon = strrchr(listen, ':')) != NULL) {
		if (colon > listen)
			snprintf(host, sizeof host, "%.*s", (int)(colon - listen), listen);
	} else {
		colon = listen - 1; /* just a port */
	}
	snprintf(port, sizeof port, "%s", colon + 1);
	char *end;
	long pn = strtol(port, &end, 10);
	if (!port[0] || *end || pn < 0 || pn > 65535) {
		snprintf(err, cap, "listen address '%s': bad port '%s'", listen, port);
		return -1;
	}
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai;
	int rc = getaddrinfo(host, port, &hints, &ai);
	if (rc) {
		snprintf(err, cap, "listen address '%s': %s", listen, gai_strerror(rc));
		return -1;
	}
	memcpy(ss, ai->ai_addr, ai->ai_addrlen);
	*sl = ai->ai_addrlen;
	freeaddrinfo(ai);
	return 0;
}

/* Stop the workers (they finish what is queued first) and free s; MHD is already stopped. */
static void server_free(emhd_server *s)
{
	pthread_mutex_lock(&s->qmu);
	s->qstop = true;
	pthread_cond_broadcast(&s->qcv);
	pthread_mutex_unlock(&s->qmu);
	for (unsigned i = 0; i < s->nworkers; i++)
		pthread_join(s->workers[i], NULL);
	free(s->workers);
	pthread_cond_destroy(&s->qcv);
	pthread_mutex_destroy(&s->qmu);
	free(s->metrics);
	free(s);
}

int emhd_start(emh_host *h, const emhd_opts *o, emhd_server **out, char *errbuf, size_t cap)
{
	*out = NULL;
	struct sockaddr_storage ss;
	socklen_t sl;
	if (parse_listen(o->listen ? o->listen : "127.0.0.1:8080", &ss, &sl, errbuf, cap) != 0)
		return -1;
	emhd_server *srv = calloc(1, sizeof *srv);
	if (!srv) {
		snprintf(errbuf, cap, "out of memory");
		return -1;
	}
	srv->host = h;
	srv->max_body = o->max_body;
	while (emh_host_service_at(h, srv->nsvc))
		srv->nsvc++;
	srv->metrics = calloc(srv->nsvc + 2, sizeof *srv->metrics);
	if (!srv->metrics) {
		free(srv);
		snprintf(errbuf, cap, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < srv->nsvc; i++)
		srv->metrics[i].name = emh_svc_name(emh_host_service_at(h, i));
	srv->metrics[srv->nsvc].name = "_emhost";
	srv->metrics[srv->nsvc + 1].name = "_unrouted";
	pthread_mutex_init(&srv->qmu, NULL);
	pthread_cond_init(&srv->qcv, NULL);
	unsigned nthreads = o->threads ? o->threads : 1;
	srv->workers = calloc(nthreads, sizeof *srv->workers);
	for (; srv->workers && srv->nworkers < nthreads; srv->nworkers++)
		if (pthread_create(&srv->workers[srv->nworkers], NULL, worker_main, srv) != 0)
			break;
	if (srv->nworkers == 0) {
		snprintf(errbuf, cap, "cannot start worker threads");
		server_free(srv);
		return -1;
	}
	unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG | MHD_ALLOW_SUSPEND_RESUME;
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	srv->mhd = MHD_start_daemon(flags, 0, NULL, NULL, on_access, srv,
				    MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, srv, /* first, or MHD logs before it */
				    MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
				    MHD_OPTION_THREAD_POOL_SIZE, nthreads,
				    MHD_OPTION_URI_LOG_CALLBACK, on_uri, srv,
				    MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
				    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)(o->conn_timeout_s ? o->conn_timeout_s : 30),
				    MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned int)1,
				    MHD_OPTION_END);
	if (!srv->mhd) {
		snprintf(errbuf, cap, "cannot listen on %s: %s", o->listen ? o->listen : "127.0.0.1:8080",
			 errno ? strerror(errno) : "libmicrohttpd refused to start");
		server_free(srv);
		return -1;
	}
	const union MHD_DaemonInfo *di = MHD_get_daemon_info(srv->mhd, MHD_DAEMON_INFO_BIND_PORT);
	unsigned port = di ? di->port : 0;
	char host[INET6_ADDRSTRLEN] = "127.0.0.1";
	if (ss.ss_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host, sizeof host);
	else if (ss.ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, host, sizeof host);
	if (ss.ss_family == AF_INET6)
		snprintf(srv->url, sizeof srv->url, "http://[%s]:%u", host, port);
	else
		snprintf(srv->url, sizeof srv->url, "http://%s:%u", host, port);
	*out = srv;
	return 0;
}

const char *emhd_url(const emhd_server *s) { return s->url; }

unsigned emhd_stop(emhd_server *s, unsigned timeout_ms)
{
	if (!s)
		return 0;
	atomic_store(&s->stopping, true);
	MHD_socket lfd = MHD_quiesce_daemon(s->mhd);
	if (lfd != MHD_INVALID_SOCKET)
		close(lfd);
	int64_t deadline = now_ns() + (int64_t)timeout_ms * 1000000;
	while (atomic_load(&s->in_flight) > 0 && now_ns() < deadline) {
		struct timespec ts = {0, 5 * 1000000};
		nanosleep(&ts, NULL);
	}
	unsigned left = atomic_load(&s->in_flight);
	/* No connection may stay suspended when MHD stops: let the workers finish
	 * what they hold (each resumes its connection), then stop MHD, whose I/O
	 * threads send those last answers or drop them. */
	pthread_mutex_lock(&s->qmu);
	s->qstop = true;
	pthread_cond_broadcast(&s->qcv);
	pthread_mutex_unlock(&s->qmu);
	for (unsigned i = 0; i < s->nworkers; i++)
		pthread_join(s->workers[i], NULL);
	s->nworkers = 0;
	MHD_stop_daemon(s->mhd);
	server_free(s);
	return left;
}
