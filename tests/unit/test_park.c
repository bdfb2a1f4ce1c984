/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/test_park.c: the pool's park (core/pool.c).  A connection given
 * back in good order waits in its pool's one-place slot, and the next
 * acquire takes it without the budget's lock; one given back after an error
 * does not (it is pinged first); and whoever needs a parked connection as
 * an idle one still gets it: a fork waiting for the pool, the budget making
 * room for another context, the reaper closing it once idle too long.
 * Reads the pool's internals (p->park, p->in_use).
 */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "../fixture.h"
#include "../tap.h"
#include "memdrv.h"

static const emh_driver *const drivers[] = {&memdrv};

static emh_host *host_with(const char *const *env)
{
	emh_error err;
	emh_host_opts o = {.no_plugins = true, .drivers = drivers, .ndrivers = 1, .envp = env};
	emh_host *h = NULL;
	if (emh_host_new(&o, &h, &err))
		bail("host: %s", err.message);
	return h;
}

/* Run what on ctx, or bail. */
static void use(emh_host *h, const char *ctx, const char *what)
{
	emh_error err;
	if (fixture_exec(h, ctx, what, &err))
		bail("'%s' on '%s': %s", what, ctx, err.message);
}

/* The pool of context name (its reference given back at once: the host outlives the test's reads). */
static emh__pool *pool_of(emh_host *h, const char *name)
{
	emh_error err;
	emh_context *c = emh__host_get_context(h, name, &err);
	if (!c)
		bail("context '%s': %s", name, err.message);
	emh__context_put(c);
	return &c->pool;
}

static bool parked(emh__pool *p) { return atomic_load(&p->park) != NULL; }

/* A count of p's, read under the lock that guards it. */
static unsigned locked_read(emh__pool *p, const unsigned *field)
{
	pthread_mutex_lock(&p->b->mu);
	unsigned v = *field;
	pthread_mutex_unlock(&p->b->mu);
	return v;
}

typedef struct waiter {
	emh_host *h;
	int rc;
	double ms;
} waiter;

static void *wait_for_pool(void *arg)
{
	waiter *w = arg;
	emh_error err;
	double t0 = fixture_now_ms();
	w->rc = fixture_exec(w->h, "a", "ok", &err);
	w->ms = fixture_now_ms() - t0;
	return NULL;
}

int main(void)
{
	emh_error err;

	/* One context, one connection, a long acquire timeout, and no idle
	 * timeout: no reaper, whose first look drains the park at a moment of its
	 * own (the last part of this test has one). */
	const char *one[] = {"EMH_CONTEXT_A_DRIVER=memdrv", "EMH_CONTEXT_A_POOL_MAX=1",
			     "EMH_CONTEXT_A_POOL_ACQUIRE_TIMEOUT_MS=20000", "EMH_CONTEXT_A_POOL_IDLE_TIMEOUT_MS=0",
			     "EMH_DEFAULT_CONTEXT=a", NULL};
	emh_host *h = host_with(one);
	emh__pool *p = pool_of(h, "a");
	use(h, "a", "ok");
	ok(parked(p), "a connection given back in good order is parked");
	int opened = atomic_load(&md.opened);
	use(h, "a", "ok");
	is_int(atomic_load(&md.opened), opened, "the next fork took the parked connection (none opened)");
	ok(parked(p), "and parked it again");
	is_int((int)locked_read(p, &p->in_use), 1, "a parked connection counts as in use inside the pool");
	emh_context_info ci = fixture_context_info(h, "a");
	is_int((int)ci.in_use, 0, "but health shows it idle: in use 0");
	is_int((int)ci.idle, 1, "idle 1");
	ok(emh__pool_idle_now(p), "the daemon's idle check sees it");
	emh_budget_info bi;
	emh_host_budget(h, &bi, sizeof bi);
	is_int((int)bi.idle, 1, "the budget counts it idle too");

	/* an error: pinged before reuse, so never parked */
	int pings = atomic_load(&md.pings);
	is_int(fixture_exec(h, "a", "fail", &err), EMH_EDRIVER, "a statement fails");
	ok(!parked(p), "the connection it failed on is not parked");
	is_int((int)locked_read(p, &p->nidle), 1, "it is idle, on the list");
	use(h, "a", "ok");
	is_int(atomic_load(&md.pings), pings + 1, "and pinged before its reuse");

	/* a fork waiting for the pool gets the connection given back, not its timeout */
	use(h, "a", "ok");
	emh_em *holder = fixture_fork(h, "a");
	is_int(emh_em_execute(holder, "ok", &err), 0, "a fork holds the only connection");
	waiter w = {.h = h};
	pthread_t t;
	fixture_thread(&t, wait_for_pool, &w);
	while (!locked_read(p, &p->waiting))
		usleep(1000);
	usleep(20 * 1000);
	emh_em_close(holder);
	pthread_join(t, NULL);
	is_int(w.rc, 0, "the waiting fork got the connection when the holder closed");
	ok(w.ms < 10000, "at once (%.0f ms), not after its 20 s acquire timeout", w.ms);
	emh_host_free(h);
	is_int(atomic_load(&md.live), 0, "freeing the host closed the parked connection too");

	/* the budget makes room by closing a parked connection of another context */
	const char *two[] = {"EMH_MAX_CONNECTIONS=1",
			     "EMH_CONTEXT_A_DRIVER=memdrv", "EMH_CONTEXT_A_POOL_ACQUIRE_TIMEOUT_MS=20000",
			     "EMH_CONTEXT_A_POOL_IDLE_TIMEOUT_MS=0",
			     "EMH_CONTEXT_B_DRIVER=memdrv", "EMH_CONTEXT_B_POOL_ACQUIRE_TIMEOUT_MS=20000",
			     "EMH_CONTEXT_B_POOL_IDLE_TIMEOUT_MS=0", "EMH_DEFAULT_CONTEXT=a", NULL};
	h = host_with(two);
	p = pool_of(h, "a");
	use(h, "a", "ok");
	ok(parked(p), "a's connection is parked; the budget (1) is full");
	double t0 = fixture_now_ms();
	is_int(fixture_exec(h, "b", "ok", &err), 0, "b gets a connection");
	double el = fixture_now_ms() - t0;
	ok(el < 10000, "at once (%.0f ms), not after its 20 s acquire timeout", el);
	ok(!parked(p), "a's parked connection made the room");
	emh_host_budget(h, &bi, sizeof bi);
	is_int((int)bi.evicted, 1, "counted as evicted");
	is_int((int)bi.waits, 0, "without waiting for room first");
	is_int((int)bi.connections, 1, "one connection open, b's");
	emh_host_free(h);

	/* the reaper closes a parked connection idle for longer than the idle timeout */
	const char *reap[] = {"EMH_CONTEXT_A_DRIVER=memdrv", "EMH_CONTEXT_A_POOL_IDLE_TIMEOUT_MS=100",
			      "EMH_DEFAULT_CONTEXT=a", NULL};
	h = host_with(reap);
	p = pool_of(h, "a");
	/* The first release goes the locked way and starts the reaper, whose
	 * first look drains whatever is parked then: use until a release parks
	 * and stays parked (the reaper sleeps until its connection falls due). */
	use(h, "a", "ok");
	for (int i = 0; i < 100 && !parked(p); i++) {
		usleep(1000);
		use(h, "a", "ok");
	}
	ok(parked(p), "a connection is parked (idle timeout 100 ms)");
	int live = atomic_load(&md.live);
	for (int i = 0; i < 500 && atomic_load(&md.live) == live; i++)
		usleep(10 * 1000);
	is_int(atomic_load(&md.live), live - 1, "the reaper closed it");
	emh_host_budget(h, &bi, sizeof bi);
	is_int((int)bi.reaped, 1, "counted as reaped");
	ok(!parked(p), "nothing is parked");
	emh_host_free(h);
	return done_testing();
}
