/* SPDX-License-Identifier: MIT */
/* core/daemon/httpd.h: emhostd's HTTP front (libmicrohttpd): routing to services, errors, health, metrics. */
#ifndef EMH_DAEMON_HTTPD_H
#define EMH_DAEMON_HTTPD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <emhost/emhost.h>
#include <emhost/service.h>

typedef struct emhd_server emhd_server;

typedef struct emhd_opts {
	const char *listen;  /* "127.0.0.1:8080", "[::1]:0", ":8080", "8080" */
	unsigned threads;    /* libmicrohttpd I/O threads (its thread pool), and as many handler workers */
	size_t max_body;     /* request bodies above this get 413 */
	unsigned conn_timeout_s; /* idle keep-alive connections are closed after this */
	unsigned queue_max;  /* requests waiting for a worker before more get 503; 0 = 4 x threads */
	bool reuse_port;     /* SO_REUSEPORT: share the address with other processes (off: "address already in use") */
	size_t max_response; /* a service's answer above this is a 500 with a fixed body; 0 = no cap */
	bool no_inline;      /* never run a handler on an I/O thread (the fast path, httpd.c), always hand off */
} emhd_opts;

/*
 * Start serving the services of svcs (and the health of its host).  svcs
 * must outlive the server.  On failure errbuf says why (bad listen address,
 * port in use), cut to cap bytes like snprintf: it is a message, not data.
 * Returns 0 or -1.
 */
int emhd_start(emh_services *svcs, const emhd_opts *o, emhd_server **out, char *errbuf, size_t cap);

/* The address actually bound, as "http://127.0.0.1:8080" (port 0 resolved). */
const char *emhd_url(const emhd_server *s);

/* What emhd_stop did. */
typedef struct emhd_stop_stats {
	unsigned refused;    /* requests queued at the deadline, answered 503 without running */
	unsigned abandoned;  /* handlers still running when the wait ended */
	unsigned unanswered; /* other requests open when the wait ended (slow uploads, unsent answers) */
	unsigned probes;     /* health pings still running */
} emhd_stop_stats;

/*
 * Graceful stop, bounded by timeout_ms: stop accepting connections and
 * answer the requests in flight (responses then carry "Connection: close").
 * At the deadline nothing more starts: requests still queued, and new ones
 * on open connections, get 503; handlers still running get a short grace.
 * Returns 0 when everything stopped and s is freed.  Returns -1 when a
 * handler (or a health ping) was still running: s is left as it is, the
 * host must not be freed (forks are open) and the caller should exit the
 * process.  st (may be NULL) gets the counts.
 */
int emhd_stop(emhd_server *s, unsigned timeout_ms, emhd_stop_stats *st);

/* The work queue's cap (emhd_opts.queue_max, or its default). */
unsigned emhd_queue_max(const emhd_server *s);

/* HTTP status for an EMH_E* code: 404 409 400 503 (EMH_EUNAVAILABLE, EMH_ETIMEOUT, EMH_ERETRY) or 500. */
int emhd_http_status(int code);

/*
 * The request id of the request the calling thread is working on (an I/O
 * thread answering it, or the worker running its handler), or NULL: the
 * log sink adds it to every line logged meanwhile, whoever logs it.
 */
const char *emhd_request_id(void);

/* The host's contexts changed (a reload): health probes the new set. */
void emhd_contexts_changed(emhd_server *s);
/* ---- the request path without a socket (call.c) ---- */

/* One request as the HTTP front hands it to a service. */
typedef struct emhd_call {
	const char *method;
	const char *uri;       /* raw path and query: "/users/7?x=1" */
	const emh_kv *args;    /* the query's arguments, decoded */
	size_t nargs;
	const emh_kv *headers;
	size_t nheaders;
	const char *body;      /* may be NULL when body_len is 0 */
	size_t body_len;
	unsigned fork_flags;   /* EMH_FORK_* of the scope's forks (emh_scope_fork_opts) */
} emhd_call;

/*
 * Route c by the first segment of its path to a service of svcs and run it
 * in a scope of its own, closed before this returns (every fork closed,
 * every connection back in its pool: nothing is held while a client reads
 * the answer).  The answer goes to res (reset first): the service's, the
 * error body of a failure (database text replaced and logged, reply.c), a
 * 404 for a path without a service, or a fixed 500 with a log line when
 * the body is over max_response bytes (0: no cap), never part of it.  The
 * HTTP front's workers call it; so do the fuzzer and its replay in make
 * check (tests/fuzz), which then run the real request path.  Thread-safe.
 * Returns 0, or 1 when c->fork_flags has EMH_FORK_NOWAIT and a fork would
 * have waited for a connection (emh_scope_would_wait): res is then empty
 * and the request is to be run again where waiting is allowed.
 */
int emhd_call_service(emh_services *svcs, const emhd_call *c, size_t max_response, emh_response *res);

/* The service segment of a raw URI ("/users/7?x" -> "users"): its length, *name its start. */
size_t emhd_route(const char *uri, const char **name);

#endif
