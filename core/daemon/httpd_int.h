/* SPDX-License-Identifier: MIT */
/*
 * core/daemon/httpd_int.h: what the files of emhostd's HTTP front share (never
 * installed): the server and request structures, and the functions one file
 * calls in another, prefixed emhd__.
 *
 *   httpd.c    the request path: libmicrohttpd callbacks, the work queue and
 *              its workers
 *   call.c     a request's way to its service without a socket: routing,
 *              the service's scope, the answer's size cap
 *   reply.c    answers: the status mapping, JSON error bodies, queueing a
 *              response on its connection
 *   health.c   /_emhost/health: per-context probers and the health timer
 *   metrics.c  /_emhost/metrics: request counts and latency, Prometheus text
 *   server.c   start (listen address, threads) and the bounded graceful stop
 */
#ifndef EMH_DAEMON_HTTPD_INT_H
#define EMH_DAEMON_HTTPD_INT_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>
#include <microhttpd.h>

#include <emhost/buf.h>

#include "httpd.h"

/* latency buckets (bucket_le in metrics.c) */
#define NBUCKETS 14
/* status_slots (metrics.c) + "other" */
#define NSTATUS 11

/* Request counts and latency of one service (or of the daemon's own routes). */
typedef struct svc_metrics {
	const char *name;
	/* the service when the fast path may serve it (its contexts are SQLite
	 * files in WAL mode, server.c); NULL for every other service, the
	 * daemon's own routes and unrouted requests */
	const emh_svc *inline_svc;
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
	bool gone;         /* its context was removed (a reload): the thread ended */
} emhd_prober;

/* Longest X-Request-Id taken from a request; a longer one is replaced. */
#define EMHD_RID_MAX 128

struct emhd_server {
	emh_host *host;
	emh_services *svcs;
	struct MHD_Daemon *mhd;
	size_t max_body;
	size_t max_response;
	char url[sizeof "http://[]:65535" + INET6_ADDRSTRLEN];
	_Atomic unsigned in_flight;
	_Atomic bool stopping;
	_Atomic uint64_t rejected; /* 503s for a full queue */
	/* the fast path (httpd.c): handlers run on the I/O thread */
	const char *inline_driver;    /* contexts of this driver only; NULL: the fast path is off */
	pthread_key_t res_key;        /* the I/O thread's reused emh_response */
	bool res_key_made;
	_Atomic unsigned inline_busy; /* handlers running on I/O threads now */
	_Atomic uint64_t inline_total, handoff_total; /* handlers run on an I/O thread, by a worker */
	_Atomic uint64_t inline_missed; /* fast-path requests handed off: their connection was taken first */
	uint32_t rid_prefix;       /* random per start: ids of two runs differ */
	_Atomic uint64_t rid_next; /* generated request ids: prefix-counter */
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
	emhd_prober **probers;  /* one allocation each: their threads keep pointers while a reload adds more */
	size_t nprobers, capprobers;
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
	emh_buf body;         /* the body read so far; empty once it is too large */
	size_t received;      /* body bytes received, kept or dropped */
	int64_t t0;
	svc_metrics *m;
	const char *svc;      /* service name the path routes to (borrowed), or NULL */
	size_t svc_len;
	/* handed to a worker or to the health timer */
	struct MHD_Connection *conn;
	const char *method;   /* MHD's, valid for the request */
	char rid[EMHD_RID_MAX + 1]; /* X-Request-Id: the client's when valid, else generated */
	bool health;          /* /_emhost/health rather than a service */
	emh_response *res;    /* the answer the worker prepared */
	_Atomic bool done;
	struct emhd_req *next;
} emhd_req;

static inline int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline struct timespec abs_mono(int64_t ns)
{
	struct timespec ts = {.tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000};
	return ts;
}

/* ---- httpd.c ---- */

/* The request the calling thread works on, for the log sink (NULL: none). */
void emhd__set_request(const emhd_req *r);

void *emhd__worker_main(void *arg);
/* The destructor of an I/O thread's reused response (res_key). */
void emhd__res_key_free(void *res);
void *emhd__on_uri(void *cls, const char *uri, struct MHD_Connection *conn);
void emhd__on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe);
enum MHD_Result emhd__on_access(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
				const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls);

/* ---- reply.c ---- */

/* Fill res with a JSON body (takes the reference to j). */
void emhd__res_json(emh_response *res, int status, json_t *j);
/* An error body; message and context are cleaned (they may hold request text). */
void emhd__res_error(emh_response *res, int status, const char *message, const char *context);
/* The error body of an EMH_E* failure (database text replaced, and logged through h). */
void emhd__res_emh_error(emh_host *h, const char *uri, emh_response *res, const emh_error *err);
/* 503 with Retry-After into res, for a request no handler will see. */
void emhd__res_refused(emh_response *res, const char *why);
/* Queue res on the connection: its body is taken out of res and handed to
 * libmicrohttpd, which frees it once sent; records metrics, logs at debug. */
enum MHD_Result emhd__queue_response(struct MHD_Connection *conn, emhd_req *r, emh_response *res);
/* Answer at once from the I/O thread (only for what does no database work). */
enum MHD_Result emhd__reply_error(struct MHD_Connection *conn, emhd_req *r, int status, const char *message,
				  const char *context);

/* ---- health.c ---- */

/* The health answer from the contexts' state into res. */
void emhd__health_into(emhd_server *srv, emh_response *res);
/* GET /_emhost/health. */
enum MHD_Result emhd__serve_health(struct MHD_Connection *conn, emhd_req *r);
/* Start the health timer and the probers; stop them (returns how many still ping). */
void emhd__health_start(emhd_server *srv);
unsigned emhd__health_stop(emhd_server *srv, int64_t deadline);

/* ---- metrics.c ---- */

/* Count one answer of status that took ns; m may be NULL. */
void emhd__metrics_record(svc_metrics *m, int status, int64_t ns);
/* GET /_emhost/metrics. */
enum MHD_Result emhd__serve_metrics(struct MHD_Connection *conn, emhd_req *r);

#endif
