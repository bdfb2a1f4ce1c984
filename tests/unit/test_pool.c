/* SPDX-License-Identifier: MIT */
/* tests/unit/test_pool.c: the connection pool under threads, timeouts, broken and stale connections. */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <emhost/emhost.h>

#include "../fixture.h"
#include "../tap.h"
#include "memdrv.h"

static const emh_driver *const drivers[] = {&memdrv};

typedef struct thing {
	int64_t id;
} thing;
static const emh_field thing_fields[] = {EMH_FIELD(thing, id, EMH_T_INT64, EMH_F_PK)};
static const emh_entity thing_entity = EMH_ENTITY(thing, "things", thing_fields);

static emh_host *host_with(const char *const *env, emh_error *err)
{
	emh_host_opts o = {.no_plugins = true, .drivers = drivers, .ndrivers = 1, .envp = env};
	emh_host *h = NULL;
	return emh_host_new(&o, &h, err) == 0 ? h : NULL;
}

typedef struct worker {
	emh_host *h;
	int ok, failed;
} worker;

static void *work(void *arg)
{
	worker *w = arg;
	for (int i = 0; i < 200; i++) {
		emh_error err;
		if (fixture_exec(w->h, "p", "hold", &err) == 0)
			w->ok++;
		else
			w->failed++;
	}
	return NULL;
}

int main(void)
{
	emh_error err;
	const char *env[] = {"EMH_CONTEXT_P_DRIVER=memdrv",
			     "EMH_CONTEXT_P_POOL_MAX=3",
			     "EMH_CONTEXT_P_POOL_ACQUIRE_TIMEOUT_MS=2000",
			     "EMH_CONTEXT_Q_DRIVER=memdrv",
			     "EMH_CONTEXT_Q_POOL_MAX=1",
			     "EMH_CONTEXT_Q_POOL_ACQUIRE_TIMEOUT_MS=150",
			     "EMH_DEFAULT_CONTEXT=p",
			     NULL};
	emh_host *h = host_with(env, &err);
	if (!ok(h != NULL, "host with two memdrv contexts starts"))
		bail("host: %s", err.message);
	is_int(atomic_load(&md.opened), 0, "no connection is opened at start (lazy)");

	/* 8 threads, pool of 3 */
	atomic_store(&md.hold_us, 200);
	pthread_t t[8];
	worker w[8];
	for (int i = 0; i < 8; i++) {
		w[i] = (worker){.h = h};
		fixture_thread(&t[i], work, &w[i]);
	}
	int okn = 0, failed = 0;
	for (int i = 0; i < 8; i++) {
		pthread_join(t[i], NULL);
		okn += w[i].ok;
		failed += w[i].failed;
	}
	is_int(okn, 1600, "8 threads x 200 uses of a pool of 3 all succeed");
	is_int(failed, 0, "no acquire failed");
	ok(atomic_load(&md.max_live) <= 3, "never more than max=3 connections open (saw %d)", atomic_load(&md.max_live));
	emh_context_info ci = fixture_context_info(h, "p");
	is_int(ci.in_use, 0, "every connection came back");
	ok(ci.opened <= 3 && ci.idle == ci.opened, "connections reused: opened %llu, idle %u",
	   (unsigned long long)ci.opened, ci.idle);
	ok(ci.acquires >= 1600, "acquires counted (%llu)", (unsigned long long)ci.acquires);

	/* acquire timeout on a pool of 1 */
	emh_em *holder = fixture_fork(h, "q");
	is_int(emh_em_execute(holder, "ok", &err), 0, "first fork takes q's only connection");
	double t0 = fixture_now_ms();
	int rc = fixture_exec(h, "q", "ok", &err);
	double el = fixture_now_ms() - t0;
	is_int(rc, EMH_ETIMEOUT, "second fork times out while the connection is held");
	like_str(err.message, "context 'q'", "timeout error names the context");
	is_str(err.context, "q", "err.context is set");
	ok(el >= 140 && el < 2000, "acquire timeout honoured: waited %.0f ms for 150 ms", el);
	emh_em_close(holder);
	is_int(fixture_exec(h, "q", "ok", &err), 0, "after the holder closes, the connection is free again");
	ci = fixture_context_info(h, "q");
	is_int((int)ci.timeouts, 1, "the timeout is counted");

	/* a lost connection is discarded, never handed out again */
	int opened = atomic_load(&md.opened), live = atomic_load(&md.live);
	emh_em *lf = fixture_fork(h, "q");
	is_int(emh_em_execute(lf, "ok", &err), 0, "a fork uses a pooled connection");
	is_int(emh_em_execute(lf, "lose", &err), EMH_EUNAVAILABLE, "connection loss maps to EMH_EUNAVAILABLE");
	emh_em_close(lf);
	is_int(atomic_load(&md.live), live - 1, "the lost connection was closed");
	is_int(fixture_exec(h, "q", "ok", &err), 0, "next fork works");
	is_int(atomic_load(&md.opened), opened + 1, "on a new connection");
	ci = fixture_context_info(h, "q");
	is_int((int)ci.discarded, 1, "discard counted");

	/* on p, with idle connections: a lost one takes the idle ones with it */
	ci = fixture_context_info(h, "p");
	unsigned idle_before = ci.idle;
	uint64_t disc_before = ci.discarded;
	lf = fixture_fork(h, "p");
	if (emh_em_execute(lf, "ok", &err))
		bail("a statement on p before losing its connection: %s", err.message);
	is_int(emh_em_execute(lf, "lose", &err), EMH_EUNAVAILABLE, "a connection of p is lost");
	emh_em_close(lf);
	ci = fixture_context_info(h, "p");
	ok(idle_before >= 2, "p had several idle connections (%u)", idle_before);
	is_int((int)(ci.discarded - disc_before), (int)idle_before, "the lost one and every idle one were discarded");
	is_int(ci.idle, 0, "no idle connection left to ping one by one");
	is_int(fixture_exec(h, "p", "ok", &err), 0, "the next fork connects afresh");

	/* any other error: ping before reuse */
	int pings = atomic_load(&md.pings);
	is_int(fixture_exec(h, "q", "fail", &err), EMH_EDRIVER, "a statement error comes back as is");
	is_int(atomic_load(&md.pings), pings, "no ping yet");
	is_int(fixture_exec(h, "q", "ok", &err), 0, "the connection is reused");
	is_int(atomic_load(&md.pings), pings + 1, "after being pinged once");

	/* server restarted while connections sat idle: a read is resent once on
	 * a fresh connection; a write is never sent twice */
	is_int(emh_host_register_entity(h, "p", &thing_entity, &err), 0, "register an entity on p");
	opened = atomic_load(&md.opened);
	atomic_fetch_add(&md.generation, 1);
	emh_em *rf = fixture_fork(h, "p");
	emh_repo *rr = fixture_repo(rf, &thing_entity);
	int64_t cnt = -1;
	is_int(emh_repo_count(rr, NULL, &cnt, &err), 0, "first read after a silent server restart succeeds (stale connection, read resent)");
	emh_em_close(rf);
	ok(atomic_load(&md.opened) > opened, "on a fresh connection");
	if (fixture_exec(h, "p", "ok", &err)) /* warm every idle connection of p again */
		bail("warming p: %s", err.message);
	atomic_fetch_add(&md.generation, 1);
	is_int(fixture_exec(h, "p", "write", &err), EMH_EUNAVAILABLE,
	       "a write on a stale connection is not resent (the server may have applied it)");
	is_int(fixture_exec(h, "p", "write", &err), 0, "the next fork works");

	/* a connection idle for more than a second is pinged before reuse */
	pings = atomic_load(&md.pings);
	usleep(1200 * 1000);
	is_int(fixture_exec(h, "p", "ok", &err), 0, "use after a long idle time");
	is_int(atomic_load(&md.pings), pings + 1, "the long-idle connection was pinged first");

	/* server down: prompt EMH_EUNAVAILABLE, and back without restarting the host */
	atomic_store(&md.down, 1);
	t0 = fixture_now_ms();
	rc = fixture_exec(h, "p", "ok", &err);
	el = fixture_now_ms() - t0;
	is_int(rc, EMH_EUNAVAILABLE, "database down: EMH_EUNAVAILABLE");
	ok(el < 1000, "returned promptly (%.0f ms), not after the 2000 ms acquire timeout", el);
	like_str(err.message, "context 'p'", "error names the context");
	ci = fixture_context_info(h, "p");
	ok(!ci.up && ci.last_error[0], "context reported down with its last error: %s", ci.last_error);
	t0 = fixture_now_ms();
	is_int(fixture_exec(h, "p", "ok", &err), EMH_EUNAVAILABLE, "still down: the next fork gets EMH_EUNAVAILABLE too");
	ok(fixture_now_ms() - t0 < 1000, "promptly, from a failed connect");
	ci = fixture_context_info(h, "p");
	ok(!ci.up && strstr(ci.last_error, "refused"), "the last error is the refused connect: %s", ci.last_error);
	atomic_store(&md.down, 0);
	is_int(fixture_exec(h, "p", "ok", &err), 0, "database back: next use succeeds with no restart");
	ci = fixture_context_info(h, "p");
	ok(ci.up, "context reported up again");
	emh_host_free(h);
	is_int(atomic_load(&md.live), 0, "freeing the host closed every connection");

	/* required contexts */
	atomic_store(&md.down, 1);
	const char *req[] = {"EMH_CONTEXT_R_DRIVER=memdrv", "EMH_CONTEXT_R_REQUIRED=true", NULL};
	h = host_with(req, &err);
	ok(h == NULL, "a required context that is down stops the host");
	is_int(err.code, EMH_EUNAVAILABLE, "with EMH_EUNAVAILABLE");
	like_str(err.message, "'r'", "naming the context");
	emh_host_free(h);
	const char *opt[] = {"EMH_CONTEXT_R_DRIVER=memdrv", NULL};
	h = host_with(opt, &err);
	ok(h != NULL, "the same context not required: host starts while the database is down");
	emh_host_free(h);
	atomic_store(&md.down, 0);

	const char *bad[] = {"EMH_CONTEXT_R_DRIVER=memdrv", "EMH_CONTEXT_R_POOL_MIN=5", "EMH_CONTEXT_R_POOL_MAX=2", NULL};
	h = host_with(bad, &err);
	ok(h == NULL && err.code == EMH_ECONFIG, "pool min > max is a configuration error: %s", err.message);
	emh_host_free(h);
	return done_testing();
}
