/* SPDX-License-Identifier: MIT */
/*
 * core/daemon/server.c: start and stop emhostd's HTTP front.  Start parses
 * the listen address, starts the workers, the health threads and
 * libmicrohttpd's I/O threads.  Shutdown is bounded by its timeout:
 * requests in flight are answered; at the deadline, requests still queued
 * get 503 without reaching their handler, and a handler still running is
 * abandoned (emhd_stop says so and the process must exit without freeing
 * the host).
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "httpd_int.h"

/* After the shutdown deadline: time for the 503s of refused requests to be
 * written, and for a handler finishing just then. */
#define STOP_GRACE_MS 200

static void cond_init_mono(pthread_cond_t *cv)
{
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(cv, &ca);
	pthread_condattr_destroy(&ca);
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

/* Stop the workers and the health threads (all idle by now) and free s; MHD is already stopped. */
static void server_free(emhd_server *s)
{
	emhd__health_stop(s, INT64_MAX);
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

int emhd_start(emh_services *svcs, const emhd_opts *o, emhd_server **out, char *errbuf, size_t cap)
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
	srv->host = emh_services_host(svcs);
	srv->svcs = svcs;
	srv->max_body = o->max_body;
	srv->max_response = o->max_response;
	while (emh_services_at(svcs, srv->nsvc))
		srv->nsvc++;
	srv->metrics = calloc(srv->nsvc + 2, sizeof *srv->metrics);
	if (!srv->metrics) {
		free(srv);
		snprintf(errbuf, cap, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < srv->nsvc; i++)
		srv->metrics[i].name = emh_svc_name(emh_services_at(svcs, i));
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
		if (pthread_create(&srv->workers[srv->nworkers], NULL, emhd__worker_main, srv) != 0)
			break;
	if (srv->nworkers == 0) {
		snprintf(errbuf, cap, "cannot start worker threads");
		server_free(srv);
		return -1;
	}
	emhd__health_start(srv);
	unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG | MHD_ALLOW_SUSPEND_RESUME;
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	srv->mhd = MHD_start_daemon(flags, 0, NULL, NULL, emhd__on_access, srv,
				    MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, srv, /* first, or MHD logs before it */
				    MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
				    MHD_OPTION_THREAD_POOL_SIZE, nthreads,
				    MHD_OPTION_URI_LOG_CALLBACK, emhd__on_uri, srv,
				    MHD_OPTION_NOTIFY_COMPLETED, emhd__on_completed, srv,
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
		emhd__res_refused(r->res, "the server is shutting down");
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
	st->probes = emhd__health_stop(s, until);
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
