/* SPDX-License-Identifier: MIT */
/*
 * core/daemon/server.c: start and stop emhostd's HTTP front.  Start parses
 * the listen address (srvconf.c), starts the workers, the health threads and
 * libmicrohttpd's I/O threads.  Shutdown is bounded by its timeout:
 * requests in flight are answered; at the deadline, requests still queued
 * get 503 without reaching their handler, and a handler still running is
 * abandoned (emhd_stop says so and the process must exit without freeing
 * the host).
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "httpd_int.h"
#include "srvconf.h"

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

/*
 * The listening socket, made here rather than by libmicrohttpd so that its
 * options are ours: SO_REUSEADDR (a restart binds while the old daemon's
 * connections linger in TIME_WAIT, and on Linux it never lets two sockets
 * listen on one address), SO_REUSEPORT only when asked for -- with it a
 * second daemon on the same address would silently get part of the
 * requests.  Returns the socket, or -1 with err set.
 */
static int listen_socket(const struct sockaddr_storage *ss, socklen_t sl, bool reuse_port, const char *listen_addr,
			 char *err, size_t cap)
{
	int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, cap, "cannot listen on %s: socket: %s", listen_addr, strerror(errno));
		return -1;
	}
	int one = 1;
	const char *what = "setsockopt SO_REUSEADDR";
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
	    (reuse_port && (what = "setsockopt SO_REUSEPORT",
			    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)) ||
	    (what = "bind", bind(fd, (const struct sockaddr *)ss, sl) != 0) ||
	    (what = "listen", listen(fd, SOMAXCONN) != 0)) {
		int e = errno;
		if (e == EADDRINUSE)
			snprintf(err, cap, "cannot listen on %s: address already in use (another emhostd? "
				 "server.reuse_port = true shares an address on purpose)", listen_addr);
		else
			snprintf(err, cap, "cannot listen on %s: %s: %s", listen_addr, what, strerror(e));
		close(fd);
		return -1;
	}
	return fd;
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
	/* MHD's I/O threads are gone: their responses were freed as they ended */
	if (s->res_key_made)
		pthread_key_delete(s->res_key);
	for (size_t i = 0; i < s->nprobers; i++)
		free(s->probers[i]);
	free(s->probers);
	pthread_cond_destroy(&s->hcv);
	pthread_mutex_destroy(&s->hmu);
	pthread_cond_destroy(&s->idle_cv);
	pthread_cond_destroy(&s->qcv);
	pthread_mutex_destroy(&s->qmu);
	free(s->metrics);
	free(s);
}

/*
 * Whether every context svc's needs resolve to is SQLite whose readers never
 * wait for a writer: a database file in WAL mode (the fast path, httpd.c).
 * In the rollback-journal modes, and in memory (the memdb VFS locks like a
 * rollback journal), a read waits for a writer's lock for up to
 * busy_timeout_ms, which on an I/O thread would stall every connection it
 * serves.
 */
static bool reads_never_wait(const emh_svc *svc)
{
	emh_host *h = emh_svc_host(svc);
	const emh_service *d = emh_svc_descriptor(svc);
	if (!d || d->nneeds == 0)
		return false;
	for (size_t i = 0; i < d->nneeds; i++) {
		const char *ctx = emh_svc_context(svc, d->needs[i].context);
		const char *drv = ctx ? emh_host_context_driver(h, ctx) : NULL;
		if (!drv || strcmp(drv, "sqlite") != 0)
			return false;
		const char *path = emh_host_context_setting(h, ctx, "path");
		const char *journal = emh_host_context_setting(h, ctx, "journal_mode"); /* unset: wal */
		if (!path || strcmp(path, ":memory:") == 0 ||
		    (strncmp(path, "file:", 5) == 0 && (strstr(path, "mode=memory") || strstr(path, "vfs=memdb"))) ||
		    (journal && strcasecmp(journal, "wal") != 0))
			return false;
	}
	return true;
}

int emhd_start(emh_services *svcs, const emhd_opts *o, emhd_server **out, char *errbuf, size_t cap)
{
	*out = NULL;
	struct sockaddr_storage ss;
	socklen_t sl;
	const char *listen_addr = o->listen ? o->listen : EMHD_DEFAULT_LISTEN;
	if (emhd_listen_parse(listen_addr, &ss, &sl, errbuf, cap) != 0)
		return -1;
	int lfd = listen_socket(&ss, sl, o->reuse_port, listen_addr, errbuf, cap);
	if (lfd < 0)
		return -1;
	/* the port actually bound (":0" asks the kernel for one) */
	sl = sizeof ss;
	getsockname(lfd, (struct sockaddr *)&ss, &sl);
	emhd_server *srv = calloc(1, sizeof *srv);
	if (!srv) {
		close(lfd);
		snprintf(errbuf, cap, "out of memory");
		return -1;
	}
	srv->host = emh_services_host(svcs);
	srv->svcs = svcs;
	/* only tells two runs' ids apart: no need for more than a cheap seed when getrandom fails */
	if (getrandom(&srv->rid_prefix, sizeof srv->rid_prefix, GRND_NONBLOCK) != (ssize_t)sizeof srv->rid_prefix)
		srv->rid_prefix = (uint32_t)time(NULL) ^ ((uint32_t)getpid() << 16);
	srv->max_body = o->max_body;
	srv->max_response = o->max_response;
	while (emh_services_at(svcs, srv->nsvc))
		srv->nsvc++;
	srv->metrics = calloc(srv->nsvc + 2, sizeof *srv->metrics);
	if (!srv->metrics) {
		close(lfd);
		free(srv);
		snprintf(errbuf, cap, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < srv->nsvc; i++) {
		emh_svc *svc = emh_services_at(svcs, i);
		srv->metrics[i].name = emh_svc_name(svc);
		srv->metrics[i].inline_svc = reads_never_wait(svc) ? svc : NULL;
	}
	srv->metrics[srv->nsvc].name = "_emhost";
	srv->metrics[srv->nsvc + 1].name = "_unrouted";
	pthread_mutex_init(&srv->qmu, NULL);
	pthread_cond_init(&srv->qcv, NULL);
	cond_init_mono(&srv->idle_cv);
	pthread_mutex_init(&srv->hmu, NULL);
	cond_init_mono(&srv->hcv);
	/* the fast path (httpd.c) runs handlers on contexts of this driver only */
	srv->res_key_made = pthread_key_create(&srv->res_key, emhd__res_key_free) == 0;
	srv->inline_driver = o->no_inline || !srv->res_key_made ? NULL : "sqlite";
	unsigned nthreads = o->threads ? o->threads : 1;
	srv->qmax = o->queue_max ? o->queue_max : 4 * nthreads;
	srv->workers = calloc(nthreads, sizeof *srv->workers);
	for (; srv->workers && srv->nworkers < nthreads; srv->nworkers++)
		if (pthread_create(&srv->workers[srv->nworkers], NULL, emhd__worker_main, srv) != 0)
			break;
	if (srv->nworkers == 0) {
		close(lfd);
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
				    MHD_OPTION_LISTEN_SOCKET, (MHD_socket)lfd,
				    /* 1: no pool, the one internal thread (MHD warns of a pool of 1) */
				    MHD_OPTION_THREAD_POOL_SIZE, nthreads > 1 ? nthreads : 0U,
				    MHD_OPTION_URI_LOG_CALLBACK, emhd__on_uri, srv,
				    MHD_OPTION_NOTIFY_COMPLETED, emhd__on_completed, srv,
				    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)(o->conn_timeout_s ? o->conn_timeout_s : 30),
				    MHD_OPTION_END);
	if (!srv->mhd) {
		snprintf(errbuf, cap, "cannot listen on %s: %s", listen_addr,
			 errno ? strerror(errno) : "libmicrohttpd refused to start");
		/* lfd is not closed: whether a failed start closed it already is not
		 * documented, and a second close could hit another thread's file; the
		 * process exits on this path */
		server_free(srv);
		return -1;
	}
	unsigned port = 0;
	char host[INET6_ADDRSTRLEN] = "127.0.0.1";
	if (ss.ss_family == AF_INET) {
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host, sizeof host);
		port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	} else if (ss.ss_family == AF_INET6) {
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, host, sizeof host);
		port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	}
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
	pthread_mutex_unlock(&s->qmu);
	/* a handler on an I/O thread (the fast path) has the same grace */
	while (atomic_load(&s->inline_busy) > 0 && now_ns() < until)
		sleep_ms(5);
	pthread_mutex_lock(&s->qmu);
	st->abandoned = s->busy + atomic_load(&s->inline_busy);
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
