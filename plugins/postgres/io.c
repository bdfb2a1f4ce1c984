/* SPDX-License-Identifier: MIT */
/*
 * plugins/postgres/io.c: every round trip of the driver under its call's
 * deadline.  Statements are sent with libpq's asynchronous functions on a
 * connection in non-blocking mode, and the answer is awaited by polling
 * PQsocket until the deadline (statement_timeout_ms, or for a ping the
 * smaller of it and connect_timeout_ms): libpq's blocking calls would wait
 * forever for a server that stopped answering (SIGSTOP, a silent network
 * path).  A call past its deadline returns EMH_ETIMEOUT at once, leaves the
 * connection abandoned (the core closes it) and asks the server to cancel
 * the statement from a short-lived child process (pg_cancel_send: libpq 15's
 * PQcancel waits without bound for the server to close its socket).
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include <emhost/error.h>

#include "postgres_int.h"

int64_t pg_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int pg_call(emh_conn *c, int ms, const char *key, emh_error *err)
{
	if (c->abandoned) {
		emh_error_set(err, EMH_EUNAVAILABLE, "connection abandoned: an earlier call passed its deadline");
		pg_error_state(err, "08006", false);
		return EMH_EUNAVAILABLE;
	}
	/* armed at the call's first wait (pg_wait_io): what runs before it only
	 * queues output on the non-blocking socket, and a call answered without
	 * waiting reads no clock at all */
	c->deadline_ms = 0;
	c->deadline_len = ms > 0 ? ms : 0;
	c->deadline_key = key;
	return 0;
}

/* ---- cancel requests ---- */

/* How long pg_dctx_free lets a cancel request still running finish before it
 * kills it: a live server answers one within a round trip. */
#define PG_CANCEL_CLOSE_GRACE_MS 250

emh_dctx *pg_dctx_new(int cancel_ms)
{
	emh_dctx *dc = calloc(1, sizeof *dc);
	if (!dc)
		return NULL;
	if (pthread_mutex_init(&dc->lock, NULL) != 0) {
		free(dc);
		return NULL;
	}
	dc->cancel_ms = cancel_ms > 0 ? cancel_ms : 1;
	return dc;
}

/* Reap child pid when it has ended (or is not ours to reap: another waiter
 * of __WALL took it); true when it is gone.  Never waits. */
static bool pg_child_gone(pid_t pid)
{
	int st;
	pid_t r;
	while ((r = waitpid(pid, &st, WNOHANG | __WCLONE)) < 0 && errno == EINTR)
		;
	return r != 0;
}

static void pg_cancel_reap_locked(emh_dctx *dc)
{
	for (int i = 0; i < PG_CANCEL_MAX; i++)
		if (dc->cancel[i].pid > 0 && pg_child_gone(dc->cancel[i].pid))
			dc->cancel[i].pid = 0;
}

void pg_cancel_reap(emh_dctx *dc)
{
	if (!dc)
		return;
	pthread_mutex_lock(&dc->lock);
	pg_cancel_reap_locked(dc);
	pthread_mutex_unlock(&dc->lock);
}

/*
 * Every connection is closed (driver.h): no cancel can start any more.  Each
 * one still running gets until its own end or the grace, whichever comes
 * first, then SIGKILL: the close of a context whose server is stopped waits
 * PG_CANCEL_CLOSE_GRACE_MS at most, and leaves no process behind.  The kill
 * is safe: an unreaped child keeps its pid, and a child whose end signals
 * nothing is reaped by no one else (waitpid without __WALL does not see it).
 */
void pg_dctx_free(emh_dctx *dc)
{
	if (!dc)
		return;
	int64_t grace = pg_now_ms() + PG_CANCEL_CLOSE_GRACE_MS;
	for (int i = 0; i < PG_CANCEL_MAX; i++) {
		pid_t pid = dc->cancel[i].pid;
		if (pid <= 0)
			continue;
		int64_t until = dc->cancel[i].due_ms < grace ? dc->cancel[i].due_ms : grace;
		while (!pg_child_gone(pid)) {
			if (pg_now_ms() >= until) {
				int st;
				kill(pid, SIGKILL);
				while (waitpid(pid, &st, __WCLONE) < 0 && errno == EINTR)
					;
				break;
			}
			struct timespec ts = {0, 2 * 1000000L};
			nanosleep(&ts, NULL);
		}
	}
	pthread_mutex_destroy(&dc->lock);
	free(dc);
}

/*
 * The child: a copy of this process, possibly taken while another thread
 * held a lock (malloc's, stdio's), so it makes async-signal-safe calls only,
 * and PQcancel is one (libpq's documentation: safe in a signal handler with
 * errbuf on the stack).  Its own timer (SIGALRM, the one signal it leaves
 * unblocked, at its default action) ends it after ms whatever the server
 * does; the other signals are blocked so that the application's handlers
 * never run in it (a SIGTERM to the process group), and it closes every
 * descriptor it inherited so that it holds no socket of the parent's open
 * (an HTTP client would otherwise wait for its end to see a close).
 */
static _Noreturn void pg_cancel_child(PGcancel *cn, int ms)
{
	sigset_t set;
	struct sigaction dfl = {.sa_handler = SIG_DFL};
	struct itimerval it = {.it_value = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000}};
	char errbuf[256];

	sigemptyset(&dfl.sa_mask);
	sigaction(SIGALRM, &dfl, NULL);
	sigfillset(&set);
	sigdelset(&set, SIGALRM);
	sigprocmask(SIG_SETMASK, &set, NULL);
	setitimer(ITIMER_REAL, &it, NULL); /* a plain system call, like alarm() but in ms */
#ifdef SYS_close_range
	syscall(SYS_close_range, 3U, ~0U, 0U);
#endif
	_exit(PQcancel(cn, errbuf, (int)sizeof errbuf) ? 0 : 1);
}

/*
 * Ask the server to cancel c's statement, without waiting for it.  A child
 * process sends the request because nothing bounds libpq 15's PQcancel
 * (connect, send, then wait for the server to close: forever on a stopped
 * server) and a process, unlike a thread, can be killed when it outlives its
 * bound, runs none of this plugin's code once dlclose()d, and holds nothing
 * of ours.  It is made with clone() and exit signal 0 rather than fork():
 * its end sends no SIGCHLD to the application, no waitpid(-1) of the
 * application reaps it, and no pthread_atfork handler runs.  The connection
 * is abandoned, so a request that lands late can only hit this connection's
 * backend, never another call.  When the child cannot be made, or
 * PG_CANCEL_MAX are running, the server's statement_timeout ends the
 * statement (pg_connect sets it past the deadline).
 */
static void pg_cancel_send(emh_conn *c)
{
	emh_dctx *dc = c->dc;
	int slot = -1;
	if (!dc)
		return;
	PGcancel *cn = PQgetCancel(c->pg);
	if (!cn)
		return;
	pthread_mutex_lock(&dc->lock);
	pg_cancel_reap_locked(dc);
	for (int i = 0; i < PG_CANCEL_MAX && slot < 0; i++)
		if (dc->cancel[i].pid == 0)
			slot = i;
	if (slot >= 0)
		dc->cancel[slot].pid = -1; /* the clone happens outside the lock */
	pthread_mutex_unlock(&dc->lock);
	if (slot >= 0) {
		int64_t due = pg_now_ms() + dc->cancel_ms;
		/* clone(flags 0): fork's copy of the process, exit signal 0; every
		 * other argument 0, so their order (which differs by architecture)
		 * does not matter */
		/* every signal blocked across the clone: one sent to the process
		 * group in between must not run the application's handler in the
		 * child (it sets its own mask first thing) */
		sigset_t all, old;
		sigfillset(&all);
		pthread_sigmask(SIG_SETMASK, &all, &old);
		pid_t pid = (pid_t)syscall(SYS_clone, 0UL, 0UL, 0UL, 0UL, 0UL);
		if (pid == 0)
			pg_cancel_child(cn, dc->cancel_ms);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		pthread_mutex_lock(&dc->lock);
		dc->cancel[slot].pid = pid > 0 ? pid : 0;
		dc->cancel[slot].due_ms = due;
		pthread_mutex_unlock(&dc->lock);
	}
	PQfreeCancel(cn);
}

/* The deadline passed: the connection may be anywhere inside the call, so it
 * is never used again, and the server is asked to cancel the statement. */
static int pg_timed_out(emh_conn *c, const char *what, emh_error *err)
{
	c->abandoned = true;
	pg_cancel_send(c);
	emh_error_set(err, EMH_ETIMEOUT, "%s%sno answer from the server within %s=%d", what ? what : "",
		      what ? ": " : "", c->deadline_key, c->deadline_len);
	if (err)
		err->retryable = true;
	return EMH_ETIMEOUT;
}

/*
 * Wait until the socket is readable (or writable, when write) or the
 * deadline passes.  0: ready (or the socket failed: the caller's next libpq
 * call reports why); EMH_ETIMEOUT: past the deadline; EMH_EUNAVAILABLE: poll
 * itself failed (the connection is abandoned: waiting cannot go on).
 */
static int pg_wait_io(emh_conn *c, bool write, const char *what, emh_error *err)
{
	for (;;) {
		int wait = -1;
		if (c->deadline_len) {
			int64_t now = pg_now_ms();
			if (!c->deadline_ms)
				c->deadline_ms = now + c->deadline_len;
			int64_t left = c->deadline_ms - now;
			if (left <= 0)
				return pg_timed_out(c, what, err);
			wait = left > 60000 ? 60000 : (int)left;
		}
		struct pollfd pfd = {.fd = PQsocket(c->pg), .events = POLLIN | (write ? POLLOUT : 0)};
		if (pfd.fd < 0)
			return 0;
		int r = poll(&pfd, 1, wait);
		if (r > 0)
			return 0;
		if (r < 0 && errno != EINTR) {
			c->abandoned = true;
			emh_error_set(err, EMH_EUNAVAILABLE, "%s%swaiting for the server: %s", what ? what : "",
				      what ? ": " : "", strerror(errno));
			pg_error_state(err, "08006", false);
			return EMH_EUNAVAILABLE;
		}
	}
}

/* pg_result's body, inlined into pg_collect: every statement passes here twice. */
static inline int pg_result_in(emh_conn *c, const char *what, PGresult **out, emh_error *err)
{
	*out = NULL;
	for (;;) {
		/* Big sends leave output queued in non-blocking mode: push it
		 * out while waiting, or the server never sees the whole call. */
		int f = PQflush(c->pg);
		if (f < 0 || (f == 0 && !PQisBusy(c->pg)))
			break;
		int rc = pg_wait_io(c, f == 1, what, err);
		if (rc)
			return rc;
		if (!PQconsumeInput(c->pg))
			break; /* the connection failed: PQgetResult says how, at once */
	}
	*out = PQgetResult(c->pg);
	return 0;
}

int pg_result(emh_conn *c, const char *what, PGresult **out, emh_error *err)
{
	return pg_result_in(c, what, out, err);
}

int pg_collect(emh_conn *c, const char *what, PGresult **out, emh_error *err)
{
	PGresult *last = NULL, *res;
	*out = NULL;
	for (;;) {
		int rc = pg_result_in(c, what, &res, err);
		if (rc) {
			PQclear(last);
			return rc;
		}
		if (!res)
			break;
		PQclear(last);
		last = res;
		ExecStatusType s = PQresultStatus(res);
		if (s == PGRES_COPY_IN || s == PGRES_COPY_OUT || s == PGRES_COPY_BOTH ||
		    PQstatus(c->pg) == CONNECTION_BAD)
			break;
	}
	*out = last;
	return 0;
}

int pg_run(emh_conn *c, const char *sql, const char *what, PGresult **out, emh_error *err)
{
	*out = NULL;
	if (!PQsendQuery(c->pg, sql))
		return pg_fail(c, NULL, what, err);
	return pg_collect(c, what, out, err);
}

int pg_run_params(emh_conn *c, const char *sql, int n, const char *const *vals, const char *what, PGresult **out,
		  emh_error *err)
{
	*out = NULL;
	if (!PQsendQueryParams(c->pg, sql, n, NULL, vals, NULL, NULL, 0))
		return pg_fail(c, NULL, what, err);
	return pg_collect(c, what, out, err);
}

int pg_copy_drain(emh_conn *c, ExecStatusType s, const char *what, emh_error *err)
{
	PGresult *res;
	int rc;
	if (s == PGRES_COPY_IN) {
		/* non-blocking: 0 means no room to queue it yet; pg_collect flushes it */
		int r;
		while ((r = PQputCopyEnd(c->pg, "COPY is not supported through emhost")) == 0) {
			if ((rc = pg_wait_io(c, true, what, err)) != 0)
				return rc;
			if (PQflush(c->pg) < 0)
				break;
		}
	} else if (s == PGRES_COPY_OUT) {
		for (;;) {
			char *buf;
			int n = PQgetCopyData(c->pg, &buf, 1);
			if (n > 0) {
				PQfreemem(buf);
				continue;
			}
			if (n != 0)
				break; /* -1: done, -2: failed; the results say which */
			if ((rc = pg_wait_io(c, false, what, err)) != 0)
				return rc;
			if (!PQconsumeInput(c->pg))
				break;
		}
	}
	if ((rc = pg_collect(c, what, &res, err)) != 0)
		return rc;
	PQclear(res);
	return 0;
}
