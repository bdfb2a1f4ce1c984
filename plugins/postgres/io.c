/* SPDX-License-Identifier: MIT */
/*
 * plugins/postgres/io.c: every round trip of the driver under its call's
 * deadline.  Statements are sent with libpq's asynchronous functions on a
 * connection in non-blocking mode, and the answer is awaited by polling
 * PQsocket until the deadline (statement_timeout_ms, or for a ping the
 * smaller of it and connect_timeout_ms): libpq's blocking calls would wait
 * forever for a server that stopped answering (SIGSTOP, a silent network
 * path), and so would its PQcancel.  A call past its deadline returns
 * EMH_ETIMEOUT and leaves the connection abandoned: the core closes it.
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

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
	c->deadline_ms = ms > 0 ? pg_now_ms() + ms : 0;
	c->deadline_len = ms;
	c->deadline_key = key;
	return 0;
}

/* The deadline passed: the connection may be anywhere inside the call, so it
 * is never used again.  (Its statement, if the server is alive, ends at the
 * session's statement_timeout, which the driver sets to the same value.) */
static int pg_timed_out(emh_conn *c, const char *what, emh_error *err)
{
	c->abandoned = true;
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
		if (c->deadline_ms) {
			int64_t left = c->deadline_ms - pg_now_ms();
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

int pg_result(emh_conn *c, const char *what, PGresult **out, emh_error *err)
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

int pg_collect(emh_conn *c, const char *what, PGresult **out, emh_error *err)
{
	PGresult *last = NULL, *res;
	*out = NULL;
	for (;;) {
		int rc = pg_result(c, what, &res, err);
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
