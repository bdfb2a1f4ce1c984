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
} emhd_opts;

/*
 * Start serving the services of h.  h must outlive the server.  On failure
 * errbuf says why (bad listen address, port in use).  Returns 0 or -1.
 */
int emhd_start(emh_host *h, const emhd_opts *o, emhd_server **out, char *errbuf, size_t cap);

/* The address actually bound, as "http://127.0.0.1:8080" (port 0 resolved). */
const char *emhd_url(const emhd_server *s);

/*
 * Graceful stop: stop accepting connections, answer requests already in
 * flight (responses then carry "Connection: close"), wait up to timeout_ms
 * for them, then stop the worker threads and free s.  Returns the number of
 * requests still unanswered when the wait ended (0 = clean).
 */
unsigned emhd_stop(emhd_server *s, unsigned timeout_ms);

/* HTTP status for an EMH_E* code: 404 409 400 503 or 500. */
int emhd_http_status(int code);

#endif
