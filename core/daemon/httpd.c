/* SPDX-License-Identifier: MIT */
/*
 * core/daemon/httpd.c: emhostd's request path.  libmicrohttpd runs a pool of
 * I/O threads (each with its own epoll loop); a request is read whole
 * (bodies above server.max_body are refused with 413 before any service
 * sees them), routed by its first path segment to a service, and handled in
 * a scope of its own that closes before the answer is queued (call.c).
 * Errors become JSON bodies with one status mapping (reply.c);
 * /_emhost/health (health.c) and /_emhost/metrics (metrics.c) report the
 * contexts and per-service request latency, /_emhost/openapi.json describes
 * the services' declared routes (emhost/web.h); start and the bounded stop
 * are in server.c.
 *
 * Handlers may block on databases (a pool acquire, a lock, a server that
 * stopped answering), and a handler that blocks on an I/O thread stalls
 * every other connection that thread serves.  So by default the connection
 * is suspended, the request goes to a bounded queue served by worker
 * threads, and the worker resumes the connection with the answer ready.  A
 * database that hangs then holds workers, not unrelated clients' sockets;
 * once the queue is full, further requests get 503 at once instead of
 * piling up.  Health and metrics never wait for a worker: they are answered
 * on the I/O thread.
 *
 * The fast path: the hand-off costs more than a key lookup (a suspend, a
 * futex wake, an eventfd write and epoll changes to resume), so a request
 * that cannot block runs its handler on the I/O thread instead
 * (inline_ok).  "Cannot block" means every wait a handler can meet is ruled
 * out: a GET without a body (HTTP's read-only method: no transaction that
 * writes, no write lock), no pool acquire that waits (every context of the
 * service has an idle connection right now, emh_svc_idle_now), and no
 * database on the other side of a network (contexts on SQLite only: a
 * server that stops answering would hold the I/O thread until a driver's
 * timeout; SQLite's own waits are for writers' locks, which WAL readers do
 * not take, so only database files in WAL mode: in memory and in the
 * rollback-journal modes a reader waits out a writer's transaction).
 * Everything else is handed off.  The idle check reserves nothing, so the
 * handler's forks may not wait (EMH_FORK_NOWAIT): if another thread took
 * the connection first, the call fails at once, emh_scope_would_wait says
 * so, and the request is handed to a worker, which runs it again (a GET,
 * safe to repeat).  A GET handler that opens a transaction, locks or
 * writes can still wait here (SQLite's BEGIN IMMEDIATE waits for writers):
 * server.inline = false turns the fast path off.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <emhost/web.h>

#include "httpd_int.h"

#define MAX_KV 64

/*
 * The request a thread is working on, so that every line logged meanwhile
 * -- by the core, a driver or a service, all through the host's sink --
 * carries its id.  Per thread, not per process: two servers in one process
 * each set it on their own threads.
 */
static _Thread_local const char *current_rid;

void emhd__set_request(const emhd_req *r) { current_rid = r && r->rid[0] ? r->rid : NULL; }

const char *emhd_request_id(void) { return current_rid; }

/* A client's X-Request-Id is kept when it is 1 to EMHD_RID_MAX visible ASCII
 * characters; its length then, else 0. */
static size_t rid_valid(const char *v)
{
	size_t n = 0;
	for (; v && v[n]; n++)
		if (n >= EMHD_RID_MAX || (unsigned char)v[n] < 0x21 || (unsigned char)v[n] > 0x7e)
			return 0;
	return n;
}

/* "<prefix>-<counter>" as "%08x-%llx" would write it, without a printf per request. */
static void rid_format(char *out, uint32_t prefix, uint64_t n)
{
	static const char hex[] = "0123456789abcdef";
	for (int i = 7; i >= 0; i--, prefix >>= 4)
		out[i] = hex[prefix & 15];
	out[8] = '-';
	char tmp[16];
	size_t k = 0;
	do
		tmp[k++] = hex[n & 15];
	while (n >>= 4);
	for (size_t i = 0; i < k; i++)
		out[9 + i] = tmp[k - 1 - i];
	out[9 + k] = '\0';
}
_Static_assert(EMHD_RID_MAX >= 8 + 1 + 16, "a generated request id fits");

/* The request's id: the client's when valid, else "<prefix>-<counter>", unique in this process. */
static void take_request_id(emhd_server *srv, struct MHD_Connection *conn, emhd_req *r)
{
	const char *v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Id");
	size_t len = rid_valid(v);
	if (len) {
		memcpy(r->rid, v, len + 1);
		return;
	}
	uint64_t n = atomic_fetch_add_explicit(&srv->rid_next, 1, memory_order_relaxed) + 1;
	rid_format(r->rid, srv->rid_prefix, n);
	if (v)
		emh_host_log(srv->host, EMH_LOG_DEBUG, NULL, "X-Request-Id of %zu bytes is not 1-%d visible characters: "
			     "replaced", strlen(v), EMHD_RID_MAX);
}

/* A chunked body over max_body is read on (and dropped) for at least this
 * much more, so that a client that sends it whole gets its 413. */
#define DISCARD_MIN (1024 * 1024)

typedef struct kv_collect {
	emh_kv *v;
	size_t n, cap;
} kv_collect;

static enum MHD_Result kv_iter(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	(void)kind;
	kv_collect *c = cls;
	if (c->n < c->cap) {
		c->v[c->n].name = key;
		c->v[c->n].value = value ? value : "";
		c->n++;
	}
	return MHD_YES;
}

/*
 * The values of one kind, every one of them, plus extra free slots: in
 * stack (MAX_KV) when they fit, the common case, else in a block of their
 * own (free it when it is not stack).  Their number is bounded by
 * libmicrohttpd's memory per connection.  NULL: out of memory.
 */
static emh_kv *kv_take(struct MHD_Connection *conn, enum MHD_ValueKind kind, emh_kv *stack, size_t extra,
		       size_t *n)
{
	int count = MHD_get_connection_values(conn, kind, NULL, NULL); /* no iterator: counts */
	kv_collect c = {.v = stack, .cap = (count > 0 ? (size_t)count : 0) + extra};
	if (c.cap > MAX_KV && !(c.v = malloc(c.cap * sizeof *c.v)))
		return NULL;
	MHD_get_connection_values(conn, kind, kv_iter, &c);
	*n = c.n;
	return c.v;
}

/* Run the request through emhd_call_service with what libmicrohttpd parsed.  A worker,
 * or the I/O thread on the fast path (fork_flags EMH_FORK_NOWAIT); its result. */
static int service_into(emhd_req *r, struct MHD_Connection *conn, emh_response *res, unsigned fork_flags)
{
	emh_kv argv[MAX_KV], hdrv[MAX_KV]; /* 2 kB on the stack: no allocation for most requests */
	size_t nargs = 0, nhdrs = 0;
	emh_kv *args = kv_take(conn, MHD_GET_ARGUMENT_KIND, argv, 0, &nargs);
	emh_kv *hdrs = args ? kv_take(conn, MHD_HEADER_KIND, hdrv, 1, &nhdrs) : NULL;
	int rc = 0;
	if (!hdrs) {
		emhd__res_error(res, 500, "out of memory", NULL);
		goto out_free;
	}
	/* the handler sees the id the answer and the log carry, given or generated */
	size_t ri = 0;
	while (ri < nhdrs && strcasecmp(hdrs[ri].name, "X-Request-Id") != 0)
		ri++;
	if (ri < nhdrs)
		hdrs[ri].value = r->rid;
	else
		hdrs[nhdrs++] = (emh_kv){.name = "X-Request-Id", .value = r->rid}; /* kv_take's extra slot */
	emhd_call c = {
		.method = r->method,
		.uri = r->uri,
		.args = args,
		.nargs = nargs,
		.headers = hdrs,
		.nheaders = nhdrs,
		.body = r->body.ptr,
		.body_len = r->body.len,
		.fork_flags = fork_flags,
	};
	rc = emhd_call_service(r->srv->svcs, &c, r->srv->max_response, res);
out_free:
	if (hdrs && hdrs != hdrv)
		free(hdrs);
	if (args && args != argv)
		free(args);
	return rc;
}

void *emhd__worker_main(void *arg)
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
		emhd__set_request(r);
		service_into(r, conn, r->res, 0);
		emhd__set_request(NULL);
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
 * Hand the request to a worker: suspend the connection (MHD calls emhd__on_access
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
	bool stopping = srv->expired || srv->qstop; /* read under qmu, as emhd_stop writes them */
	if (stopping)
		refuse = "the server is shutting down";
	else if (srv->qlen >= srv->qmax)
		refuse = "the server is overloaded, retry later";
	if (refuse) {
		pthread_mutex_unlock(&srv->qmu);
		if (!stopping)
			atomic_fetch_add(&srv->rejected, 1);
		emhd__res_refused(r->res, refuse);
		return emhd__queue_response(conn, r, r->res);
	}
	MHD_suspend_connection(conn);
	r->next = NULL;
	if (srv->qtail)
		srv->qtail->next = r;
	else
		srv->qhead = r;
	srv->qtail = r;
	srv->qlen++;
	atomic_fetch_add_explicit(&srv->handoff_total, 1, memory_order_relaxed);
	pthread_cond_signal(&srv->qcv);
	pthread_mutex_unlock(&srv->qmu);
	return MHD_YES;
}

void emhd__res_key_free(void *res) { emh_response_free(res); }

/* Whether r's handler cannot block, so may run on the I/O thread (the header says why). */
static bool inline_ok(const emhd_req *r, const char *method)
{
	const emhd_server *srv = r->srv;
	/* inline_svc is set only for services whose contexts are all of
	 * inline_driver (server.c): no driver to compare per request */
	return srv->inline_driver && r->m->inline_svc && r->body.len == 0 && strcmp(method, "GET") == 0 &&
	       emh_svc_idle_now(r->m->inline_svc, NULL);
}

/*
 * The fast path: the handler runs here, on the I/O thread, and the answer is
 * queued at once; the scope is closed (its connections back in their pools)
 * before that, as on a worker.  The I/O thread's response object is reused
 * from request to request (its body is the handler's own allocation,
 * handed to libmicrohttpd, which frees it once sent).
 */
static enum MHD_Result serve_inline(struct MHD_Connection *conn, emhd_req *r, const char *method)
{
	emhd_server *srv = r->srv;
	emh_response *res = pthread_getspecific(srv->res_key);
	if (!res) {
		if (!(res = emh_response_new()))
			return MHD_NO;
		if (pthread_setspecific(srv->res_key, res) != 0) {
			emh_response_free(res);
			return MHD_NO;
		}
	}
	r->method = method;
	atomic_fetch_add(&srv->inline_busy, 1);
	int again = service_into(r, conn, res, EMH_FORK_NOWAIT);
	atomic_fetch_sub(&srv->inline_busy, 1);
	if (again) {
		/* the idle connection went to another thread first: a worker may wait for one */
		atomic_fetch_add_explicit(&srv->inline_missed, 1, memory_order_relaxed);
		return dispatch(conn, r, method);
	}
	atomic_fetch_add_explicit(&srv->inline_total, 1, memory_order_relaxed);
	enum MHD_Result ret = emhd__queue_response(conn, r, res);
	emh_response_reset(res); /* libmicrohttpd has the body */
	return ret;
}

void *emhd__on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
	emhd_server *srv = cls;
	if (!uri)
		uri = "/";
	/* one allocation: the request and its URI after it */
	size_t len = strlen(uri);
	emhd_req *r = calloc(1, sizeof *r + len + 1);
	if (!r)
		return NULL;
	r->srv = srv;
	r->t0 = now_ns();
	r->uri = memcpy((char *)(r + 1), uri, len + 1);
	atomic_fetch_add(&srv->in_flight, 1);
	return r;
}

void emhd__on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			enum MHD_RequestTerminationCode toe)
{
	emhd_req *r = *con_cls;
	if (!r)
		return;
	atomic_fetch_sub(&r->srv->in_flight, 1);
	emh_response_free(r->res);
	emh_buf_release(&r->body);
	free(r); /* and its URI */
	*con_cls = NULL;
}

/* Route by the raw URI: which service (and so which metrics) it is for. */
static void route(emhd_req *r)
{
	emhd_server *srv = r->srv;
	const char *p;
	size_t n = emhd_route(r->uri, &p);
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

/* GET /_emhost/openapi.json: the services' declared routes as OpenAPI 3.1,
 * built from their descriptors (no database work: on the I/O thread). */
static enum MHD_Result serve_openapi(struct MHD_Connection *conn, emhd_req *r)
{
	emh_response *res = emh_response_new();
	if (!res)
		return MHD_NO;
	emhd__res_json(res, 200, emh_web_openapi(r->srv->svcs, "emhost services"));
	enum MHD_Result ret = emhd__queue_response(conn, r, res);
	emh_response_free(res);
	return ret;
}

static enum MHD_Result access_request(emhd_server *srv, struct MHD_Connection *conn, emhd_req *r, const char *url,
				      const char *method, const char *upload_data, size_t *upload_data_size)
{
	if (r->answered) {
		*upload_data_size = 0; /* answered early (413): the rest is dropped */
		return MHD_YES;
	}
	if (!r->started) {
		r->started = true;
		take_request_id(srv, conn, r);
		emhd__set_request(r);
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
				return emhd__reply_error(conn, r, 413, msg, NULL);
			}
		}
		return MHD_YES;
	}
	if (*upload_data_size) {
		size_t n = *upload_data_size;
		*upload_data_size = 0;
		r->received += n;
		if (r->too_large) {
			/* libmicrohttpd (0.9.75) takes no response while a body is
			 * being received: the rest of a chunked body too large is
			 * read and dropped, up to a bound, past which the
			 * connection is closed unanswered */
			return r->received > srv->max_body + discard_max(srv) ? MHD_NO : MHD_YES;
		}
		if (r->received > srv->max_body) {
			r->too_large = true; /* the 413 goes when the body ends */
			emh_buf_release(&r->body);
			return MHD_YES;
		}
		emh_buf_add(&r->body, upload_data, n);
		return r->body.oom ? MHD_NO : MHD_YES;
	}
	if (r->too_large) {
		char msg[128];
		snprintf(msg, sizeof msg, "request body is over the limit of %zu bytes", srv->max_body);
		return emhd__reply_error(conn, r, 413, msg, NULL);
	}
	if (atomic_load_explicit(&r->done, memory_order_acquire)) {
		/* resumed by its worker, or by the health timer */
		if (r->health)
			emhd__health_into(srv, r->res);
		enum MHD_Result ret = emhd__queue_response(conn, r, r->res);
		/* libmicrohttpd has the body: the client may read it slowly, the rest goes now */
		emh_response_reset(r->res);
		return ret;
	}
	if (r->m == &srv->metrics[srv->nsvc]) {
		if (strcmp(url, "/_emhost/health") == 0 && strcmp(method, "GET") == 0)
			return emhd__serve_health(conn, r);
		if (strcmp(url, "/_emhost/metrics") == 0 && strcmp(method, "GET") == 0)
			return emhd__serve_metrics(conn, r);
		if (strcmp(url, "/_emhost/openapi.json") == 0 && strcmp(method, "GET") == 0)
			return serve_openapi(conn, r);
		return emhd__reply_error(conn, r, 404, "no such endpoint (have GET /_emhost/health, GET /_emhost/metrics, "
				   "GET /_emhost/openapi.json)", NULL);
	}
	if (r->svc_len == 0)
		return emhd__reply_error(conn, r, 404, "no service in the path: use /<service>/...", NULL);
	if (!atomic_load_explicit(&srv->stopping, memory_order_relaxed) && inline_ok(r, method))
		return serve_inline(conn, r, method);
	return dispatch(conn, r, method);
}

enum MHD_Result emhd__on_access(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
				const char *version, const char *upload_data, size_t *upload_data_size,
				void **con_cls)
{
	emhd_req *r = *con_cls;
	if (!r || !r->uri)
		return MHD_NO; /* out of memory in emhd__on_uri: drop the connection */
	/* lines logged on this I/O thread for the request carry its id */
	emhd__set_request(r);
	enum MHD_Result ret = access_request(cls, conn, r, url, method, upload_data, upload_data_size);
	emhd__set_request(NULL);
	return ret;
}
