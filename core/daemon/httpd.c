/* SPDX-License-Identifier: MIT */
/*
 * core/daemon/httpd.c: emhostd's HTTP front.  libmicrohttpd runs a pool of
 * I/O threads (each with its own epoll loop); a request is read whole
 * (bodies above server.max_body are refused with 413 before any service
 * sees them), routed by its first path segment to a service, and handled in a
 * scope of its own that closes with the request.  Errors become JSON bodies
 * with one status mapping; /_emhost/health and /_emhost/metrics report the
 * contexts and per-service request latency.
 *
 * Handlers block on databases (a pool acquire, a server that stopped
 * answering), so they never run on an I/O thread, where they would stall
 * every other connection that thread serves: the connection is suspended,
 * the request goes to a bounded queue served by worker threads, and the
 * worker resumes the connection with the answer ready.  A database that
 * hangs then holds workers, not unrelated clients' sockets; once the queue
 * is full, further requests get 503 at once instead of piling up.
 *
 * Health and metrics never wait for a worker: they are answered on the I/O
 * thread from the contexts' state.  Health first asks one prober thread per
 * context to ping it (so a database that went down, or came back, since the
 * last request is seen) and waits for those pings at most HEALTH_WAIT_MS,
 * suspended like a service request but on no worker.
 *
 * Shutdown is bounded by its timeout: requests in flight are answered;
 * at the deadline, requests still queued get 503 without reaching their
 * handler, and a handler still running is abandoned (emhd_stop says so and
 * the process must exit without freeing the host).
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
/* How long a health request waits for its pings before answering from the
 * state the contexts are in. */
#define HEALTH_WAIT_MS 1000
/* After the shutdown deadline: time for the 503s of refused requests to be
 * written, and for a handler finishing just then. */
#define STOP_GRACE_MS 200
/* A chunked body over max_body is read on (and dropped) for at least this
 * much more, so that a client that sends it whole gets its 413. */
#define DISCARD_MIN (1024 * 1024)
#define NBUCKETS 14
static const double bucket_le[NBUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
					   0.1,    0.25,  0.5,    1,     2.5,   5,    10};
static const int status_slots[] = {200, 201, 204, 400, 404, 405, 409, 413, 500, 503};
#define NSTATUS (sizeof status_slots / sizeof status_slots[0] + 1) /* + "other" */

/* Request counts and latency of one service (or of the daemon's own routes). */
typedef struct svc_metrics {
	const char *name;
	/* per bucket, not cumulative; [NBUCKETS] counts what is over the last
	 * bound, so the buckets' sum is the request count (+Inf and _count) */
	_Atomic uint64_t buckets[NBUCKETS + 1];
	_Atomic uint64_t sum_ns;
	_Atomic uint64_t by_status[NSTATUS];
} svc_metrics;

struct emhd_req;

/* One health prober: pings its context when a health request asks. */
typedef struct emhd_prober {
	struct emhd_server *srv;
	char *context;
	pthread_t th;
	uint64_t done_gen; /* the last round it finished (under hmu) */
	bool running;      /* the thread exists and has not exited */
	bool was_down;     /* what its last ping said, for logging changes */
} emhd_prober;

struct emhd_server {
	emh_host *host;
	struct MHD_Daemon *mhd;
	size_t max_body;
	char url[sizeof "http://[]:65535" + INET6_ADDRSTRLEN];
	_Atomic unsigned in_flight;
	_Atomic bool stopping;
	_Atomic uint64_t rejected; /* 503s for a full queue */
	size_t nsvc;        /* services at start; metrics[nsvc] = "_emhost", [nsvc+1] = "_unrouted" */
	svc_metrics *metrics;
	/* the handler queue and its workers */
	pthread_mutex_t qmu;
	pthread_cond_t qcv;     /* workers wait for jobs */
	pthread_cond_t idle_cv; /* emhd_stop waits for busy workers (monotonic clock) */
	struct emhd_req *qhead, *qtail;
	unsigned qlen, qmax;    /* jobs queued and not started, and the cap */
	unsigned busy;          /* jobs being handled */
	bool qstop;             /* workers exit once the queue is empty */
	bool expired;           /* shutdown deadline passed: refuse, run nothing more */
	pthread_t *workers;
	unsigned nworkers;
	/* health probing */
	pthread_mutex_t hmu;
	pthread_cond_t hcv;     /* monotonic clock */
	uint64_t hgen;          /* the latest round asked for */
	int64_t hdeadline;      /* when round hgen's waiters are answered regardless */
	struct emhd_req *hwait; /* health requests suspended for round hgen */
	bool hstop;
	emhd_prober *probers;
	size_t nprobers;
	pthread_t htimer;
	bool htimer_running;
};

/* One request, from the URI log callback to the completion callback. */
typedef struct emhd_req {
	emhd_server *srv;
	char *uri;            /* raw, with the query string */
	bool started;         /* the access handler saw the headers */
	bool too_large;
	bool answered;        /* a response is queued on the connection */
	char *body;
	size_t len, cap;
	int64_t t0;
	svc_metrics *m;
	const char *svc;      /* service name the path routes to (borrowed), or NULL */
	size_t svc_len;
	/* handed to a worker or to the health timer */
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

static struct timespec abs_mono(int64_t ns)
{
	struct timespec ts = {.tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000};
	return ts;
}

static void cond_init_mono(pthread_cond_t *cv)
{
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(cv, &ca);
	pthread_condattr_destroy(&ca);
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
	case EMH_ERETRY: /* still failing after the service's retries: try later */
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
	case 405: return "method_not_allowed";
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
	atomic_fetch_add_explicit(&m->buckets[b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&m->sum_ns, (uint64_t)ns, memory_order_relaxed);
	size_t k = 0;
	while (k < NSTATUS - 1 && status_slots[k] != status)
		k++;
	atomic_fetch_add_explicit(&m->by_status[k], 1, memory_order_relaxed);
}

/* A fixed error body for status, for when a JSON answer cannot be built. */
static void res_fallback(emh_response *res, int status)
{
#define FALLBACK_BODY "{\"error\":{\"code\":\"%s\",\"message\":\"the answer could not be encoded\",\"context\":\"\"}}"
	/* room for the longest code name error_code_name has */
	char body[sizeof FALLBACK_BODY + sizeof "method_not_allowed"];
	int n = snprintf(body, sizeof body, FALLBACK_BODY, error_code_name(status));
#undef FALLBACK_BODY
	emh_response_reset(res);
	/* n is the length sent: never past the buffer, whatever a new code name is */
	if (n > 0 && (size_t)n < sizeof body)
		emh_response_set(res, status, "application/json", body, (size_t)n, NULL);
	else
		emh_response_set(res, status, NULL, NULL, 0, NULL);
}

/* Fill res with a JSON body (takes the reference to j). */
static void res_json(emh_response *res, int status, json_t *j)
{
	char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	/* set_owned frees s when it fails */
	if (!s || emh_response_set_owned(res, status, "application/json", s, strlen(s), NULL) != 0)
		res_fallback(res, status);
}

/* An error body; message and context are cleaned (they may hold request text). */
static void res_error(emh_response *res, int status, const char *message, const char *context)
{
	char msg[4 * EMH_ERROR_MSG_MAX], ctx[4 * EMH_ERROR_CTX_MAX];
	res_json(res, status,
		 json_pack("{s:{s:s,s:s,s:s}}", "error", "code", error_code_name(status), "message",
			   emh_text_clean(message, msg, sizeof msg), "context", emh_text_clean(context, ctx, sizeof ctx)));
	if (status == 503)
		emh_response_add_header(res, "Retry-After", "1", NULL);
}

/*
 * Did the database write this message?  A driver fills the native code,
 * the SQLSTATE or the retry flag with its own text ("duplicate key value
 * violates unique constraint ... DETAIL: Key (email)=(...)"); a message a
 * service wrote with emh_error_set has none of them.
 */
static bool error_from_driver(const emh_error *err)
{
	return err->native != 0 || err->sqlstate[0] != '\0' || err->retryable;
}

/*
 * The error body of an EMH_E* failure.  The caller sees the service's own
 * messages (a parse error, "a user with email ... already exists"); text
 * that comes from the database or the core -- every 500 and 503, and 4xx
 * messages a driver wrote -- may hold SQL, values or server details, so it
 * is replaced by a fixed text for its code and logged in full.
 */
static void res_emh_error(emhd_server *srv, const char *uri, emh_response *res, const emh_error *err)
{
	int status = emhd_http_status(err->code);
	const char *ctx = err->context[0] ? err->context : NULL;
	char generic[sizeof "context '' is unavailable, retry later" + EMH_ERROR_CTX_MAX];
	switch (status) {
	case 500:
		emh_host_log(srv->host, EMH_LOG_ERROR, ctx, "%s: %s (%s)", uri, err->message, emh_status_name(err->code));
		res_error(res, status, emh_strerror(err->code), ctx);
		return;
	case 503:
		if (ctx)
			snprintf(generic, sizeof generic, "context '%s' is unavailable, retry later", ctx);
		else
			snprintf(generic, sizeof generic, "a database is unavailable, retry later");
		emh_host_log(srv->host, EMH_LOG_WARN, ctx, "%s: %s (%s)", uri, err->message, emh_status_name(err->code));
		res_error(res, status, generic, ctx);
		return;
	case 400:
	case 409:
		if (error_from_driver(err)) {
			emh_host_log(srv->host, EMH_LOG_WARN, ctx, "%s: %s (%s)", uri, err->message,
				     emh_status_name(err->code));
			res_error(res, status, status == 409 ? "conflict" : "invalid argument", ctx);
			return;
		}
		break;
	default:
		break;
	}
	emh_host_log(srv->host, EMH_LOG_DEBUG, ctx, "%s: %s", uri, err->message);
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
	if (ret == MHD_YES)
		r->answered = true;
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
 * Health from the contexts' state (what the last connect, ping or lost
 * connection said), never from a database call here: this runs on an I/O
 * thread.  The probers' pings, when they answered in time, are part of
 * that state.  Why a context is down goes to the log, not to the answer.
 */
static void health_into(emhd_server *srv, emh_response *res)
{
	emh_context_info *infos;
	size_t n;
	emh_error err;
	if (emh_host_contexts(srv->host, &infos, &n, &err) != 0) {
		res_emh_error(srv, "/_emhost/health", res, &err);
		return;
	}
	bool healthy = true;
	json_t *ctxs = json_object();
	for (size_t i = 0; i < n; i++) {
		const emh_context_info *c = &infos[i];
		if (c->required && !c->up)
			healthy = false;
		json_object_set_new(ctxs, c->name,
				    json_pack("{s:s,s:s,s:b,s:b}", "status", c->up ? "up" : "down", "driver",
					      c->driver ? c->driver : "", "required", c->required, "default",
					      c->is_default));
	}
	emh_context_info_free(infos, n);
	res_json(res, healthy ? 200 : 503, json_pack("{s:s,s:o}", "status", healthy ? "up" : "down", "contexts", ctxs));
}

/* Has every prober finished round hgen?  Under hmu. */
static bool probes_done(const emhd_server *srv)
{
	for (size_t i = 0; i < srv->nprobers; i++)
		if (srv->probers[i].running && srv->probers[i].done_gen < srv->hgen)
			return false;
	return true;
}

/*
 * Is the pool of context name saturated (every connection lent, none idle)?
 * Then its state is current -- requests are using it -- and a ping would
 * only wait for a connection.
 */
static bool pool_saturated(emh_host *h, const char *name)
{
	emh_context_info *infos;
	size_t n;
	bool full = false;
	if (emh_host_contexts(h, &infos, &n, NULL) != 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (strcmp(infos[i].name, name) == 0)
			full = infos[i].idle == 0 && (int)infos[i].in_use >= infos[i].pool_max;
	emh_context_info_free(infos, n);
	return full;
}

/* One ping of p's context, retried once: a failed ping discards its
 * connection, and a second one tells a pool holding a connection broken by
 * an earlier outage (the server is back) from a database that is down now. */
static void probe(emhd_prober *p)
{
	emhd_server *srv = p->srv;
	if (pool_saturated(srv->host, p->context))
		return;
	emh_error err;
	int rc = emh_host_ping(srv->host, p->context, &err);
	if (rc && rc != EMH_ETIMEOUT)
		rc = emh_host_ping(srv->host, p->context, &err);
	if (rc == EMH_ETIMEOUT)
		return; /* no connection free: busy, not down */
	if (rc && !p->was_down)
		emh_host_log(srv->host, EMH_LOG_WARN, p->context, "health: context is down: %s", err.message);
	else if (!rc && p->was_down)
		emh_host_log(srv->host, EMH_LOG_INFO, p->context, "health: context is up again");
	p->was_down = rc != 0;
}

static void *prober_main(void *arg)
{
	emhd_prober *p = arg;
	emhd_server *srv = p->srv;
	pthread_mutex_lock(&srv->hmu);
	for (;;) {
		while (p->done_gen >= srv->hgen && !srv->hstop)
			pthread_cond_wait(&srv->hcv, &srv->hmu);
		if (srv->hstop)
			break;
		uint64_t gen = srv->hgen;
		pthread_mutex_unlock(&srv->hmu);
		probe(p);
		pthread_mutex_lock(&srv->hmu);
		p->done_gen = gen;
		pthread_cond_broadcast(&srv->hcv);
	}
	p->running = false;
	pthread_cond_broadcast(&srv->hcv);
	pthread_mutex_unlock(&srv->hmu);
	return NULL;
}

/* Answers the health requests of a round when its pings are done or its
 * time is up, whichever comes first. */
static void *health_timer_main(void *arg)
{
	emhd_server *srv = arg;
	pthread_mutex_lock(&srv->hmu);
	for (;;) {
		while (!srv->hwait && !srv->hstop)
			pthread_cond_wait(&srv->hcv, &srv->hmu);
		if (!srv->hwait)
			break; /* stopping, nobody waiting */
		while (!srv->hstop && !probes_done(srv) && now_ns() < srv->hdeadline) {
			struct timespec ts = abs_mono(srv->hdeadline);
			pthread_cond_timedwait(&srv->hcv, &srv->hmu, &ts);
		}
		emhd_req *w = srv->hwait;
		srv->hwait = NULL;
		pthread_mutex_unlock(&srv->hmu);
		while (w) {
			emhd_req *next = w->next;
			struct MHD_Connection *conn = w->conn;
			atomic_store_explicit(&w->done, true, memory_order_release);
			MHD_resume_connection(conn); /* w may be gone from here on */
			w = next;
		}
		pthread_mutex_lock(&srv->hmu);
	}
	pthread_mutex_unlock(&srv->hmu);
	return NULL;
}

/* GET /_emhost/health: start (or join) a round of pings and wait for it, suspended. */
static enum MHD_Result serve_health(struct MHD_Connection *conn, emhd_req *r)
{
	emhd_server *srv = r->srv;
	r->health = true;
	if (!(r->res = emh_response_new()))
		return MHD_NO;
	pthread_mutex_lock(&srv->hmu);
	if (srv->hstop || !srv->htimer_running || srv->nprobers == 0) {
		pthread_mutex_unlock(&srv->hmu);
		health_into(srv, r->res);
		return queue(conn, r, r->res);
	}
	if (!srv->hwait) {
		srv->hgen++;
		srv->hdeadline = now_ns() + (int64_t)HEALTH_WAIT_MS * 1000000;
		pthread_cond_broadcast(&srv->hcv);
	}
	r->conn = conn;
	MHD_suspend_connection(conn);
	r->next = srv->hwait;
	srv->hwait = r;
	pthread_mutex_unlock(&srv->hmu);
	return MHD_YES;
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
		return reply_error(conn, r, 500, emh_strerror(err.code), NULL);
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
		/* +Inf and _count from the same loads as the buckets: never below them */
		cum += atomic_load_explicit(&m->buckets[NBUCKETS], memory_order_relaxed);
		fprintf(f, "emhost_http_request_duration_seconds_bucket{service=\"%s\",le=\"+Inf\"} %llu\n", m->name,
			(unsigned long long)cum);
		fprintf(f, "emhost_http_request_duration_seconds_sum{service=\"%s\"} %.6f\n", m->name,
			(double)atomic_load_explicit(&m->sum_ns, memory_order_relaxed) / 1e9);
		fprintf(f, "emhost_http_request_duration_seconds_count{service=\"%s\"} %llu\n", m->name,
			(unsigned long long)cum);
	}
	pthread_mutex_lock(&srv->qmu);
	unsigned qlen = srv->qlen, busy = srv->busy;
	pthread_mutex_unlock(&srv->qmu);
	prom_header(f, "emhost_http_queued", "gauge", "Requests waiting for a worker.");
	fprintf(f, "emhost_http_queued %u\n", qlen);
	prom_header(f, "emhost_http_queue_max", "gauge", "Requests that may wait for a worker; more get 503.");
	fprintf(f, "emhost_http_queue_max %u\n", srv->qmax);
	prom_header(f, "emhost_http_workers_busy", "gauge", "Workers running a handler.");
	fprintf(f, "emhost_http_workers_busy %u\n", busy);
	prom_header(f, "emhost_http_rejected_total", "counter", "Requests answered 503 because the queue was full.");
	fprintf(f, "emhost_http_rejected_total %llu\n", (unsigned long long)atomic_load(&srv->rejected));
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
	/* A service name is an identifier of at most 63 bytes: a longer path
	 * segment names no service whether it is cut here or not. */
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

/* 503 with Retry-After into res, for a request no handler will see. */
static void res_refused(emh_response *res, const char *why)
{
	emh_response_reset(res);
	res_error(res, 503, why, NULL);
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
		srv->qlen--;
		srv->busy++;
		pthread_mutex_unlock(&srv->qmu);
		struct MHD_Connection *conn = r->conn;
		service_into(r, conn, r->res);
		atomic_store_explicit(&r->done, true, memory_order_release);
		MHD_resume_connection(conn); /* r may be gone from here on */
		pthread_mutex_lock(&srv->qmu);
		if (--srv->busy == 0)
			pthread_cond_broadcast(&srv->idle_cv);
	}
	pthread_mutex_unlock(&srv->qmu);
	return NULL;
}

/*
 * Hand the request to a worker: suspend the connection (MHD calls on_access
 * again once the worker resumes it, and the answer is queued then).  A full
 * queue, or a shutdown past its deadline, is answered 503 at once, without
 * suspending.
 */
static enum MHD_Result dispatch(struct MHD_Connection *conn, emhd_req *r, const char *method)
{
	emhd_server *srv = r->srv;
	r->conn = conn;
	r->method = method;
	if (!(r->res = emh_response_new()))
		return MHD_NO;
	pthread_mutex_lock(&srv->qmu);
	const char *refuse = NULL;
	if (srv->expired || srv->qstop)
		refuse = "the server is shutting down";
	else if (srv->qlen >= srv->qmax)
		refuse = "the server is overloaded, retry later";
	if (refuse) {
		pthread_mutex_unlock(&srv->qmu);
		if (!srv->expired && !srv->qstop)
			atomic_fetch_add(&srv->rejected, 1);
		res_refused(r->res, refuse);
		return queue(conn, r, r->res);
	}
	MHD_suspend_connection(conn);
	r->next = NULL;
	if (srv->qtail)
		srv->qtail->next = r;
	else
		srv->qhead = r;
	srv->qtail = r;
	srv->qlen++;
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

/* How much of a chunked body over max_body is read (and dropped) before the
 * connection is closed instead of answered 413. */
static size_t discard_max(const emhd_server *srv)
{
	return srv->max_body > DISCARD_MIN ? srv->max_body : DISCARD_MIN;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
				 const char *version, const char *upload_data, size_t *upload_data_size,
				 void **con_cls)
{
	emhd_server *srv = cls;
	emhd_req *r = *con_cls;
	if (!r || !r->uri)
		return MHD_NO; /* out of memory in on_uri: drop the connection */
	if (r->answered) {
		*upload_data_size = 0; /* answered early (413): the rest is dropped */
		return MHD_YES;
	}
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
				snprintf(msg, sizeof msg, "request body of %.40s bytes is over the limit of %zu", cl,
					 srv->max_body);
				return reply_error(conn, r, 413, msg, NULL);
			}
		}
		return MHD_YES;
	}
	if (*upload_data_size) {
		size_t n = *upload_data_size;
		*upload_data_size = 0;
		if (r->too_large) {
			/* libmicrohttpd (0.9.75) takes no response while a body is
			 * being received: the rest of a chunked body too large is
			 * read and dropped, up to a bound, past which the
			 * connection is closed unanswered */
			r->len += n;
			return r->len > srv->max_body + discard_max(srv) ? MHD_NO : MHD_YES;
		}
		if (r->len + n > srv->max_body) {
			r->too_large = true; /* the 413 goes when the body ends */
			free(r->body);
			r->body = NULL;
			r->cap = 0;
			r->len += n;
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
	if (r->too_large) {
		char msg[128];
		snprintf(msg, sizeof msg, "request body is over the limit of %zu bytes", srv->max_body);
		return reply_error(conn, r, 413, msg, NULL);
	}
	if (atomic_load_explicit(&r->done, memory_order_acquire)) {
		/* resumed by its worker, or by the health timer */
		if (r->health)
			health_into(srv, r->res);
		return queue(conn, r, r->res);
	}
	if (r->m == &srv->metrics[srv->nsvc]) {
		if (strcmp(url, "/_emhost/health") == 0 && strcmp(method, "GET") == 0)
			return serve_health(conn, r);
		if (strcmp(url, "/_emhost/metrics") == 0 && strcmp(method, "GET") == 0)
			return serve_metrics(conn, r);
		return reply_error(conn, r, 404, "no such endpoint (have GET /_emhost/health, GET /_emhost/metrics)",
				   NULL);
	}
	if (r->svc_len == 0)
		return reply_error(conn, r, 404, "no service in the path: use /<service>/...", NULL);
	return dispatch(conn, r, method);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	emhd_server *srv = cls;
	/* one log line: a longer message is cut, and says so */
	char buf[512];
	int len = vsnprintf(buf, sizeof buf, fmt, ap);
	if (len < 0)
		return;
	if ((size_t)len >= sizeof buf)
		memcpy(buf + sizeof buf - sizeof "...", "...", sizeof "...");
	size_t n = strlen(buf);
	while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	emh_host_log(srv->host, EMH_LOG_WARN, NULL, "http: %s", buf);
}

/* ---- start / stop ---- */

/* n bytes of s into dst as a string; false when they do not fit (never cut:
 * part of a host name or port is another address). */
static bool copy_part(char *dst, size_t cap, const char *s, size_t n)
{
	if (n >= cap)
		return false;
	memcpy(dst, s, n);
	dst[n] = '\0';
	return true;
}

/* "host:port", "[v6]:port", ":port" or "port" into a socket address. */
static int parse_listen(const char *listen, struct sockaddr_storage *ss, socklen_t *sl, char *err, size_t cap)
{
	char host[256] = "127.0.0.1", port[16];
	const char *colon;
	bool host_fits = true;
	if (listen[0] == '[') {
		const char *close = strchr(listen, ']');
		if (!close || close[1] != ':') {
			snprintf(err, cap, "listen address '%s': expected [address]:port", listen);
			return -1;
		}
		host_fits = copy_part(host, sizeof host, listen + 1, (size_t)(close - listen - 1));
		colon = close + 1;
	} else if ((colon = strrchr(listen, ':')) != NULL) {
		if (colon > listen)
			host_fits = copy_part(host, sizeof host, listen, (size_t)(colon - listen));
	} else {
		colon = listen - 1; /* just a port */
	}
	if (!host_fits) {
		snprintf(err, cap, "listen address '%s': host is longer than %zu bytes", listen, sizeof host - 1);
		return -1;
	}
	char *end;
	long pn = copy_part(port, sizeof port, colon + 1, strlen(colon + 1)) ? strtol(port, &end, 10) : -1;
	if (pn < 0 || !port[0] || *end || pn > 65535) {
		snprintf(err, cap, "listen address '%s': bad port '%s'", listen, colon + 1);
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

/* Start the health timer and one prober per context; without them health
 * answers from the state alone. */
static void health_start(emhd_server *srv)
{
	emh_context_info *infos;
	size_t n;
	if (emh_host_contexts(srv->host, &infos, &n, NULL) != 0)
		return;
	emhd_prober *pr = calloc(n ? n : 1, sizeof *pr);
	if (!pr) {
		emh_context_info_free(infos, n);
		return;
	}
	pthread_mutex_lock(&srv->hmu);
	srv->probers = pr;
	srv->nprobers = n;
	for (size_t i = 0; i < n; i++) {
		pr[i].srv = srv;
		if (!(pr[i].context = strdup(infos[i].name)))
			continue;
		pr[i].running = pthread_create(&pr[i].th, NULL, prober_main, &pr[i]) == 0;
	}
	srv->htimer_running = pthread_create(&srv->htimer, NULL, health_timer_main, srv) == 0;
	pthread_mutex_unlock(&srv->hmu);
	emh_context_info_free(infos, n);
}

/*
 * Stop health probing: waiting health requests are answered now; probers
 * in a ping get until deadline to finish.  Returns how many are still
 * pinging (they hold a fork of the host: it must not be freed then).
 */
static unsigned health_stop(emhd_server *srv, int64_t deadline)
{
	pthread_mutex_lock(&srv->hmu);
	srv->hstop = true;
	pthread_cond_broadcast(&srv->hcv);
	bool timer = srv->htimer_running;
	srv->htimer_running = false;
	for (;;) {
		unsigned left = 0;
		for (size_t i = 0; i < srv->nprobers; i++)
			left += srv->probers[i].running;
		if (!left || now_ns() >= deadline)
			break;
		struct timespec ts = abs_mono(deadline);
		pthread_cond_timedwait(&srv->hcv, &srv->hmu, &ts);
	}
	pthread_mutex_unlock(&srv->hmu);
	if (timer)
		pthread_join(srv->htimer, NULL); /* it only resumes connections */
	unsigned stuck = 0;
	for (size_t i = 0; i < srv->nprobers; i++) {
		emhd_prober *p = &srv->probers[i];
		if (!p->context)
			continue;
		pthread_mutex_lock(&srv->hmu);
		bool running = p->running;
		pthread_mutex_unlock(&srv->hmu);
		if (running) {
			stuck++;
			continue;
		}
		pthread_join(p->th, NULL);
		free(p->context);
		p->context = NULL;
	}
	return stuck;
}

/* Stop the workers and the health threads (all idle by now) and free s; MHD is already stopped. */
static void server_free(emhd_server *s)
{
	health_stop(s, INT64_MAX);
	pthread_mutex_lock(&s->qmu);
	s->qstop = true;
	pthread_cond_broadcast(&s->qcv);
	pthread_mutex_unlock(&s->qmu);
	for (unsigned i = 0; i < s->nworkers; i++)
		pthread_join(s->workers[i], NULL);
	free(s->workers);
	free(s->probers);
	pthread_cond_destroy(&s->hcv);
	pthread_mutex_destroy(&s->hmu);
	pthread_cond_destroy(&s->idle_cv);
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
	cond_init_mono(&srv->idle_cv);
	pthread_mutex_init(&srv->hmu, NULL);
	cond_init_mono(&srv->hcv);
	unsigned nthreads = o->threads ? o->threads : 1;
	srv->qmax = o->queue_max ? o->queue_max : 4 * nthreads;
	srv->workers = calloc(nthreads, sizeof *srv->workers);
	for (; srv->workers && srv->nworkers < nthreads; srv->nworkers++)
		if (pthread_create(&srv->workers[srv->nworkers], NULL, worker_main, srv) != 0)
			break;
	if (srv->nworkers == 0) {
		snprintf(errbuf, cap, "cannot start worker threads");
		server_free(srv);
		return -1;
	}
	health_start(srv);
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

unsigned emhd_queue_max(const emhd_server *s) { return s->qmax; }

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

int emhd_stop(emhd_server *s, unsigned timeout_ms, emhd_stop_stats *st)
{
	emhd_stop_stats local;
	if (!st)
		st = &local;
	memset(st, 0, sizeof *st);
	if (!s)
		return 0;
	atomic_store(&s->stopping, true);
	MHD_socket lfd = MHD_quiesce_daemon(s->mhd);
	if (lfd != MHD_INVALID_SOCKET)
		close(lfd);
	int64_t deadline = now_ns() + (int64_t)timeout_ms * 1000000;
	/* health answers from the state from now on; waiting ones are answered */
	pthread_mutex_lock(&s->hmu);
	s->hstop = true;
	pthread_cond_broadcast(&s->hcv);
	pthread_mutex_unlock(&s->hmu);

	/* requests in flight -- being received, queued or handled -- are answered */
	while (atomic_load(&s->in_flight) > 0 && now_ns() < deadline)
		sleep_ms(5);

	/* Then (at the deadline, or with nothing left) nothing more starts: what is
	 * still queued gets 503, and so do requests that come on open connections. */
	pthread_mutex_lock(&s->qmu);
	s->expired = true;
	s->qstop = true;
	emhd_req *drained = s->qhead;
	s->qhead = s->qtail = NULL;
	s->qlen = 0;
	pthread_cond_broadcast(&s->qcv);
	pthread_mutex_unlock(&s->qmu);
	while (drained) {
		emhd_req *r = drained;
		drained = r->next;
		struct MHD_Connection *conn = r->conn;
		res_refused(r->res, "the server is shutting down");
		atomic_store_explicit(&r->done, true, memory_order_release);
		MHD_resume_connection(conn);
		st->refused++;
	}

	/* handlers still running get until the deadline, and a moment */
	int64_t now = now_ns();
	int64_t until = (now > deadline ? now : deadline) + (int64_t)STOP_GRACE_MS * 1000000;
	pthread_mutex_lock(&s->qmu);
	while (s->busy > 0 && now_ns() < until) {
		struct timespec ts = abs_mono(until);
		pthread_cond_timedwait(&s->idle_cv, &s->qmu, &ts);
	}
	st->abandoned = s->busy;
	pthread_mutex_unlock(&s->qmu);

	/* the 503s and last answers are written before the connections close */
	int64_t flush_end = now_ns() + (int64_t)STOP_GRACE_MS * 1000000;
	while (atomic_load(&s->in_flight) > st->abandoned && now_ns() < flush_end)
		sleep_ms(5);
	unsigned in_flight = atomic_load(&s->in_flight);
	st->unanswered = in_flight > st->abandoned ? in_flight - st->abandoned : 0;
	st->probes = health_stop(s, until);
	if (st->abandoned || st->probes)
		return -1; /* their connections are suspended, their forks open: leave everything */

	/* No connection is suspended any more (MHD must not stop with one). */
	for (unsigned i = 0; i < s->nworkers; i++)
		pthread_join(s->workers[i], NULL);
	s->nworkers = 0;
	MHD_stop_daemon(s->mhd);
	server_free(s);
	return 0;
}
