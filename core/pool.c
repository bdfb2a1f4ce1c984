/* SPDX-License-Identifier: MIT */
/*
 * core/pool.c: the connection pool of a context.
 *
 * Connections are opened lazily, up to max; an idle one is reused LIFO (the
 * warmest first).  A connection that saw an error is pinged before reuse; one
 * that lost its server (EMH_EUNAVAILABLE) is discarded together with every
 * idle connection, and bumps the pool's epoch so that the connections in use
 * at that moment are pinged before their next use; one whose call passed its
 * deadline (EMH_ETIMEOUT) is discarded alone.
 * Connecting and pinging happen outside the lock.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* An idle connection older than this is pinged before it is handed out. */
#define EMH__VALIDATE_IDLE_NS (1000 * 1000000LL)

static long long conf_int(const emh__ctxconf *c, const char *key, long long def)
{
	const char *v = emh__ctxconf_get(c, key);
	return v ? strtoll(v, NULL, 10) : def;
}

/* The pool.* settings of a context. */
typedef struct pool_limits {
	int min, max;
	int64_t acquire_timeout_ns, idle_timeout_ns, max_lifetime_ns;
} pool_limits;

static int limits_read(const emh__ctxconf *conf, const char *ctxname, pool_limits *l, emh_error *err)
{
	*l = (pool_limits){
		.min = (int)conf_int(conf, "pool.min", 0),
		.max = (int)conf_int(conf, "pool.max", 8),
		.acquire_timeout_ns = conf_int(conf, "pool.acquire_timeout_ms", 5000) * 1000000LL,
		.idle_timeout_ns = conf_int(conf, "pool.idle_timeout_ms", 300000) * 1000000LL,
		.max_lifetime_ns = conf_int(conf, "pool.max_lifetime_ms", 0) * 1000000LL,
	};
	if (l->max < 1 || l->min < 0 || l->min > l->max)
		return emh_error_set(err, EMH_ECONFIG, "context '%s': pool needs 0 <= min <= max and max >= 1",
				     ctxname);
	return 0;
}

static void limits_apply(emh__pool *p, const pool_limits *l)
{
	p->min = l->min;
	p->max = l->max;
	p->acquire_timeout_ns = l->acquire_timeout_ns;
	p->idle_timeout_ns = l->idle_timeout_ns;
	p->max_lifetime_ns = l->max_lifetime_ns;
}

int emh__pool_init(emh__pool *p, const emh__driver *drv, emh_dctx *dctx, const emh_params *params,
		   const emh__ctxconf *conf, emh_error *err)
{
	memset(p, 0, sizeof *p);
	p->drv = drv;
	p->dctx = dctx;
	p->params = params;
	p->ctxname = params->context;
	pool_limits l;
	int rc = limits_read(conf, p->ctxname, &l, err);
	if (rc)
		return rc;
	limits_apply(p, &l);
	p->up = true;
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&p->cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&p->mu, NULL);
	return 0;
}

static void conn_close(emh__pool *p, emh__pconn *pc)
{
	p->drv->d.disconnect(pc->conn);
	free(pc);
}

/* Is an idle connection too old to hand out?  Called with the lock held. */
static bool expired(const emh__pool *p, const emh__pconn *pc, int64_t now)
{
	if (p->max_lifetime_ns > 0 && now - pc->created_ns > p->max_lifetime_ns)
		return true;
	return p->idle_timeout_ns > 0 && now - pc->idle_since_ns > p->idle_timeout_ns &&
	       p->total > (unsigned)p->min;
}

/*
 * EMH_ETIMEOUT never marks the context down: a deadline that passed, or a
 * server with no connection slot free (PostgreSQL 53300), is slowness or
 * back-pressure, and the server may well answer the next call.  Its
 * message is kept as last_error all the same, until a success clears it.
 */
void emh__pool_note(emh__pool *p, const emh_error *e)
{
	pthread_mutex_lock(&p->mu);
	if (!e) {
		p->up = true;
		p->last_error[0] = '\0';
	} else {
		if (e->code != EMH_ETIMEOUT)
			p->up = false;
		snprintf(p->last_error, sizeof p->last_error, "%s", e->message);
	}
	pthread_mutex_unlock(&p->mu);
}

/*
 * The fast path (an idle connection is there) reads only the coarse clock;
 * the precise one is read when the caller has to wait or connect, which is
 * what the acquire-wait metric measures.
 */
int emh__pool_acquire(emh__pool *p, emh__pconn **out, emh_error *err)
{
	emh_error local;
	if (!err)
		err = &local; /* the pool records the message of a failed connect */
	int64_t start = 0, deadline = 0;
	atomic_fetch_add_explicit(&p->acquires, 1, memory_order_relaxed);
	for (;;) {
		emh__pconn *reap = NULL, *pc = NULL;
		bool need_ping = false, open_new = false;
		pthread_mutex_lock(&p->mu);
		for (;;) {
			int64_t now = emh__coarse_ns();
			while (p->idle) {
				pc = p->idle;
				p->idle = pc->next;
				p->nidle--;
				if (expired(p, pc, now)) {
					p->total--;
					pc->next = reap;
					reap = pc;
					pc = NULL;
					continue;
				}
				break;
			}
			if (pc) {
				/* Pinged before reuse: after an error, after a lost
				 * connection elsewhere (epoch), or when idle long enough
				 * for the server to have gone away unseen. */
				need_ping = pc->suspect || pc->epoch != p->epoch ||
					    now - pc->idle_since_ns > EMH__VALIDATE_IDLE_NS;
				pc->fresh = false;
				break;
			}
			if (!start) {
				start = emh__now_ns();
				deadline = start + p->acquire_timeout_ns;
			}
			if (p->total < (unsigned)p->max) {
				p->total++;
				open_new = true;
				break;
			}
			if (emh__now_ns() >= deadline) {
				pthread_mutex_unlock(&p->mu);
				atomic_fetch_add_explicit(&p->timeouts, 1, memory_order_relaxed);
				atomic_fetch_add_explicit(&p->wait_ns, (uint64_t)(emh__now_ns() - start),
							  memory_order_relaxed);
				while (reap) {
					emh__pconn *n = reap->next;
					conn_close(p, reap);
					reap = n;
				}
				return emh_error_set(err, EMH_ETIMEOUT,
						     "context '%s': no connection free within %lld ms (pool max %d)",
						     p->ctxname, (long long)(p->acquire_timeout_ns / 1000000), p->max);
			}
			struct timespec ts = {.tv_sec = deadline / 1000000000, .tv_nsec = deadline % 1000000000};
			p->waiting++;
			pthread_cond_timedwait(&p->cv, &p->mu, &ts);
			p->waiting--;
		}
		p->in_use++;
		uint32_t epoch = p->epoch;
		pthread_mutex_unlock(&p->mu);
		while (reap) {
			emh__pconn *n = reap->next;
			conn_close(p, reap);
			reap = n;
		}
		if (open_new) {
			pc = calloc(1, sizeof *pc);
			int rc = pc ? p->drv->d.connect(p->params, p->dctx, &pc->conn, err)
				    : emh_error_set(err, EMH_ENOMEM, "out of memory");
			if (rc) {
				free(pc);
				emh__pool_note(p, err); /* health shows the driver's words; callers get the context's name */
				emh__error_in_context(err, rc, p->ctxname);
				pthread_mutex_lock(&p->mu);
				p->total--;
				p->in_use--;
				pthread_cond_signal(&p->cv);
				pthread_mutex_unlock(&p->mu);
				atomic_fetch_add_explicit(&p->wait_ns, (uint64_t)(emh__now_ns() - start),
							  memory_order_relaxed);
				return rc;
			}
			atomic_fetch_add_explicit(&p->opened, 1, memory_order_relaxed);
			pc->created_ns = emh__coarse_ns();
			pc->epoch = epoch;
			pc->fresh = true;
			emh__pool_note(p, NULL);
		} else if (need_ping) {
			emh_error perr;
			int prc = p->drv->d.ping(pc->conn, &perr);
			if (prc != 0) {
				/* Broken: never hand it out again; try the next one.  A
				 * check that passed its deadline is the answer for now:
				 * a fresh connect to a server that does not answer would
				 * only wait its own deadline again. */
				emh__pool_release(p, pc, EMH_EUNAVAILABLE);
				if (prc == EMH_ETIMEOUT) {
					*err = perr;
					emh__pool_note(p, err);
					return emh__error_in_context(err, prc, p->ctxname);
				}
				continue;
			}
			pc->suspect = false;
			pc->epoch = epoch;
		}
		if (start)
			atomic_fetch_add_explicit(&p->wait_ns, (uint64_t)(emh__now_ns() - start), memory_order_relaxed);
		*out = pc;
		return 0;
	}
}

void emh__pool_release(emh__pool *p, emh__pconn *pc, int status)
{
	if (!pc)
		return;
	pthread_mutex_lock(&p->mu);
	p->in_use--;
	if (status == EMH_EUNAVAILABLE) {
		/* The server went away: the idle connections are almost surely
		 * dead too, and pinging each one would cost a full timeout while
		 * it is down.  Drop them; the ones in use get pinged (epoch). */
		emh__pconn *idle = p->idle;
		unsigned n = p->nidle;
		p->idle = NULL;
		p->nidle = 0;
		p->total -= 1 + n;
		p->epoch++;
		pthread_cond_broadcast(&p->cv);
		pthread_mutex_unlock(&p->mu);
		atomic_fetch_add_explicit(&p->discarded, 1 + n, memory_order_relaxed);
		conn_close(p, pc);
		while (idle) {
			emh__pconn *next = idle->next;
			conn_close(p, idle);
			idle = next;
		}
		return;
	}
	if (status == EMH_ETIMEOUT || p->total > (unsigned)p->max) {
		/* A call past its deadline: the connection may still be inside it
		 * (an answer on its way, a server stopped mid-call), so it is
		 * closed, never reused; the others stay, one slow call says
		 * nothing about them.  Or max was lowered while it was lent (a
		 * reload).  Either way a waiter may now open one in its place. */
		p->total--;
		if (p->total < (unsigned)p->max)
			pthread_cond_signal(&p->cv);
		pthread_mutex_unlock(&p->mu);
		atomic_fetch_add_explicit(&p->discarded, 1, memory_order_relaxed);
		conn_close(p, pc);
		return;
	}
	if (status)
		pc->suspect = true;
	pc->idle_since_ns = emh__coarse_ns();
	pc->next = p->idle;
	p->idle = pc;
	p->nidle++;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
}

void emh__pool_destroy(emh__pool *p)
{
	if (!p->drv)
		return;
	emh__pconn *pc = p->idle;
	while (pc) {
		emh__pconn *n = pc->next;
		conn_close(p, pc);
		pc = n;
	}
	p->idle = NULL;
	p->nidle = 0;
	p->total = 0;
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->cv);
	p->drv = NULL;
}

int emh__pool_configure(emh__pool *p, const emh__ctxconf *conf, emh_error *err)
{
	pool_limits l;
	int rc = limits_read(conf, p->ctxname, &l, err);
	if (rc)
		return rc;
	emh__pconn *surplus = NULL;
	unsigned n = 0;
	pthread_mutex_lock(&p->mu);
	limits_apply(p, &l);
	while (p->idle && p->total > (unsigned)p->max) {
		emh__pconn *pc = p->idle;
		p->idle = pc->next;
		p->nidle--;
		p->total--;
		pc->next = surplus;
		surplus = pc;
		n++;
	}
	/* waiters look again: there may be room now, or a shorter timeout */
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	atomic_fetch_add_explicit(&p->discarded, n, memory_order_relaxed);
	while (surplus) {
		emh__pconn *next = surplus->next;
		conn_close(p, surplus);
		surplus = next;
	}
	return 0;
}
