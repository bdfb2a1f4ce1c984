/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/test_budget.c: the host's connection budget (max_connections,
 * the file descriptors RLIMIT_NOFILE leaves connections), closing the
 * longest-idle connection of any context for room, waiting and timing out
 * when none is idle, idle connections reaped after idle_timeout_ms, and
 * EMH_ENOFD never marking a context down, and a reload changing
 * max_connections and pool limits on a running host.  On memdrv, whose
 * connections the test counts; each subtest is a function announced by a
 * TAP comment.
 */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <emhost/emhost.h>

#include "../fixture.h"
#include "../tap.h"
#include "memdrv.h"

static const emh_driver *const drivers[] = {&memdrv};
static fixture fx;

static emh_host *host_with(const char *config, const char *const *env, emh_error *err)
{
	emh_host_opts o = {.config_path = config, .no_plugins = true, .drivers = drivers, .ndrivers = 1, .envp = env};
	emh_host *h = NULL;
	return emh_host_new(&o, &h, err) == 0 ? h : NULL;
}

static emh_host *must_host(const char *const *env)
{
	emh_error err;
	emh_host *h = host_with(NULL, env, &err);
	if (!h)
		bail("host: %s", err.message);
	return h;
}

static emh_budget_info budget_of(emh_host *h)
{
	emh_budget_info bi;
	if (emh_host_budget(h, &bi, sizeof bi) != 0)
		bail("emh_host_budget failed");
	return bi;
}

/* A fork holding a connection of ctx until closed. */
static emh_em *holding(emh_host *h, const char *ctx)
{
	emh_error err;
	emh_em *em = fixture_fork(h, ctx);
	if (emh_em_execute(em, "ok", &err) != 0)
		bail("a connection of '%s': %s", ctx, err.message);
	return em;
}

static void set_nofile(rlim_t soft)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		bail("getrlimit failed");
	rl.rlim_cur = soft < rl.rlim_max ? soft : rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
		bail("setrlimit(RLIMIT_NOFILE, %lu) failed", (unsigned long)soft);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (!f || fputs(text, f) < 0 || fclose(f) != 0)
		bail("cannot write '%s'", path);
}

static void test_limits(void)
{
	emh_error err;
	char path[256];
	struct rlimit saved;
	diag("the budget's limits: max_connections from the file and the environment, default from RLIMIT_NOFILE");
	if (getrlimit(RLIMIT_NOFILE, &saved) != 0)
		bail("getrlimit failed");

	set_nofile(1024);
	emh_host *h = must_host((const char *[]){"EMH_CONTEXT_A_DRIVER=memdrv", NULL});
	emh_budget_info bi = budget_of(h);
	is_int(bi.nofile, 1024, "the host read RLIMIT_NOFILE");
	is_int(bi.max_fds, 736, "connections get 1024 - 32 - 1024/4 descriptors");
	is_int(bi.max_connections, 736, "max_connections defaults to that many");
	is_str(bi.origin, "default", "its origin is the default");
	is_int(bi.connections, 0, "nothing open yet");
	emh_host_free(h);
	set_nofile(4096);
	h = must_host((const char *[]){"EMH_CONTEXT_A_DRIVER=memdrv", NULL});
	is_int(budget_of(h).max_fds, 4096 - 32 - 1024, "4096: a quarter is capped at 1024");
	emh_host_free(h);
	set_nofile(64);
	h = must_host((const char *[]){"EMH_CONTEXT_A_DRIVER=memdrv", NULL});
	is_int(budget_of(h).max_fds, 32, "64: never less than half the limit");
	emh_host_free(h);
	if (setrlimit(RLIMIT_NOFILE, &saved) != 0)
		bail("restoring RLIMIT_NOFILE failed");

	fixture_path(&fx, "budget.conf", path, sizeof path);
	write_file(path, "max_connections = 7;\ncontexts = ( { name = \"a\"; driver = \"memdrv\"; } );\n");
	h = host_with(path, NULL, &err);
	if (!ok(h != NULL, "max_connections in the file"))
		bail("host: %s", err.message);
	bi = budget_of(h);
	is_int(bi.max_connections, 7, "is the budget");
	like_str(bi.origin, "budget.conf:1", "its origin is FILE:LINE");
	emh_host_free(h);
	h = host_with(path, (const char *[]){"EMH_MAX_CONNECTIONS=9", NULL}, &err);
	if (!h)
		bail("host: %s", err.message);
	bi = budget_of(h);
	is_int(bi.max_connections, 9, "EMH_MAX_CONNECTIONS wins over the file");
	is_str(bi.origin, "env EMH_MAX_CONNECTIONS", "and is named as the origin");
	emh_host_free(h);

	write_file(path, "max_connections = 0;\ncontexts = ( { name = \"a\"; driver = \"memdrv\"; } );\n");
	h = host_with(path, NULL, &err);
	is_int(h ? 0 : err.code, EMH_ECONFIG, "max_connections = 0 is refused");
	like_str(err.message, "budget.conf:1: max_connections: 'max_connections' must be in [1, 2147483647], got 0",
		 "at FILE:LINE with the range");
	emh_host_free(h);
	write_file(path, "max_connections = \"many\";\ncontexts = ( { name = \"a\"; driver = \"memdrv\"; } );\n");
	h = host_with(path, NULL, &err);
	is_int(h ? 0 : err.code, EMH_ECONFIG, "a max_connections that is no integer is refused");
	like_str(err.message, "max_connections: expected integer", "saying what was expected");
	emh_host_free(h);
	h = host_with(NULL, (const char *[]){"EMH_CONTEXT_A_DRIVER=memdrv", "EMH_MAX_CONNECTIONS=12x", NULL}, &err);
	is_int(h ? 0 : err.code, EMH_ECONFIG, "a bad EMH_MAX_CONNECTIONS is refused");
	like_str(err.message, "env EMH_MAX_CONNECTIONS: expected integer, got '12x'", "naming the variable");
	emh_host_free(h);
	h = host_with(NULL, (const char *[]){"EMH_CONTEXT_A_DRIVER=memdrv", "EMH_MAX_CONNECTIONS=-3", NULL}, &err);
	is_int(h ? 0 : err.code, EMH_ECONFIG, "a negative EMH_MAX_CONNECTIONS is refused");
	like_str(err.message, "env EMH_MAX_CONNECTIONS: 'max_connections' must be in [1, 2147483647], got -3",
		 "with the range");
	emh_host_free(h);
}

static void test_eviction(void)
{
	emh_error err;
	diag("a full budget closes the longest-idle connection of any context");
	emh_host *h = must_host((const char *[]){"EMH_MAX_CONNECTIONS=2", "EMH_DEFAULT_CONTEXT=a",
						 "EMH_CONTEXT_A_DRIVER=memdrv", "EMH_CONTEXT_B_DRIVER=memdrv",
						 "EMH_CONTEXT_C_DRIVER=memdrv", NULL});
	atomic_store(&md.max_live, 0);
	int live = atomic_load(&md.live);
	is_int(fixture_exec(h, "a", "ok", &err), 0, "a uses a connection");
	is_int(fixture_exec(h, "b", "ok", &err), 0, "b uses a connection");
	is_int(fixture_exec(h, "a", "ok", &err), 0, "a again: its connection is now the most recently used");
	is_int(budget_of(h).connections, 2, "the budget is full");
	is_int(fixture_exec(h, "c", "ok", &err), 0, "c needs one: it gets one");
	is_int(fixture_context_info(h, "b").idle, 0, "b's connection, the longest idle, was closed for it");
	is_int(fixture_context_info(h, "a").idle, 1, "a's stayed");
	is_int(fixture_context_info(h, "c").idle, 1, "c's is idle now");
	emh_budget_info bi = budget_of(h);
	is_int(bi.evicted, 1, "one eviction counted");
	is_int(bi.connections, 2, "still 2 open");
	is_int(bi.idle, 2, "both idle");
	is_int(fixture_exec(h, "b", "ok", &err), 0, "b again: a's connection goes");
	is_int(fixture_context_info(h, "a").idle, 0, "a holds none");
	is_int(atomic_load(&md.max_live) - live, 2, "never more than 2 connections were open");
	is_int(atomic_load(&md.live) - live, 2, "2 are open");
	emh_host_free(h);
}

typedef struct waiter {
	emh_host *h;
	const char *ctx;
	int rc;
	emh_error err;
} waiter;

static void *wait_for_one(void *arg)
{
	waiter *w = arg;
	w->rc = fixture_exec(w->h, w->ctx, "ok", &w->err);
	return NULL;
}

static void test_wait_and_timeout(void)
{
	emh_error err;
	diag("with every connection in use, an acquire waits for one to come back, else EMH_ETIMEOUT");
	emh_host *h = must_host((const char *[]){"EMH_MAX_CONNECTIONS=2", "EMH_DEFAULT_CONTEXT=a",
						 "EMH_CONTEXT_A_DRIVER=memdrv", "EMH_CONTEXT_B_DRIVER=memdrv",
						 "EMH_CONTEXT_C_DRIVER=memdrv", "EMH_CONTEXT_C_POOL_ACQUIRE_TIMEOUT_MS=10000",
						 "EMH_CONTEXT_D_DRIVER=memdrv", "EMH_CONTEXT_D_POOL_ACQUIRE_TIMEOUT_MS=100",
						 NULL});
	emh_em *ha = holding(h, "a"), *hb = holding(h, "b");
	is_int(fixture_exec(h, "d", "ok", &err), EMH_ETIMEOUT, "both connections in use: EMH_ETIMEOUT");
	like_str(err.message, "context 'd': the host's connection budget (2 connections",
		 "the message says the host's budget, not the database, is exhausted");
	ok(err.retryable, "retryable");
	is_str(err.context, "d", "err.context is set");
	emh_context_info di = fixture_context_info(h, "d");
	ok(di.up && !di.last_error[0], "the context is not marked down");
	is_int(di.timeouts, 1, "the context counts the timeout");
	emh_budget_info bi = budget_of(h);
	ok(bi.waits == 1 && bi.timeouts == 1, "the budget counts the wait and the timeout (%llu, %llu)",
	   (unsigned long long)bi.waits, (unsigned long long)bi.timeouts);

	waiter w = {.h = h, .ctx = "c"};
	pthread_t t;
	fixture_thread(&t, wait_for_one, &w);
	for (int i = 0; i < 1000 && budget_of(h).waiting == 0; i++)
		usleep(1000);
	is_int(budget_of(h).waiting, 1, "a fork on c waits for room");
	is_int(fixture_context_info(h, "c").waiting, 1, "counted as waiting on c");
	emh_em_close(ha); /* a's connection goes idle: c closes it and takes the room */
	pthread_join(t, NULL);
	is_int(w.rc, 0, "it gets a connection once a's comes back (not after its 10 s timeout)");
	is_int(fixture_context_info(h, "a").idle, 0, "a's idle connection made the room");
	is_int(budget_of(h).waits, 2, "that wait counted");
	emh_em_close(hb);
	emh_host_free(h);
}

static void test_fd_cost(void)
{
	emh_error err;
	struct rlimit saved;
	diag("connections count at what their driver says they hold: 10 descriptors each, 32 allowed -> 3");
	if (getrlimit(RLIMIT_NOFILE, &saved) != 0)
		bail("getrlimit failed");
	set_nofile(64);
	atomic_store(&md.conn_fds, 10);
	emh_host *h = must_host((const char *[]){"EMH_CONTEXT_A_DRIVER=memdrv", "EMH_CONTEXT_A_POOL_MAX=8",
						 "EMH_CONTEXT_A_POOL_ACQUIRE_TIMEOUT_MS=100", NULL});
	atomic_store(&md.conn_fds, 0);
	if (setrlimit(RLIMIT_NOFILE, &saved) != 0)
		bail("restoring RLIMIT_NOFILE failed");
	emh_em *f[3];
	for (int i = 0; i < 3; i++)
		f[i] = holding(h, "a");
	emh_budget_info bi = budget_of(h);
	ok(bi.fds == 30 && bi.connections == 3, "3 connections hold 30 of %u descriptors", bi.max_fds);
	is_int(fixture_exec(h, "a", "ok", &err), EMH_ETIMEOUT, "a 4th would pass the descriptors: it times out");
	like_str(err.message, "32 file descriptors", "the message gives the descriptor budget");
	for (int i = 0; i < 3; i++)
		emh_em_close(f[i]);
	emh_host_free(h);
}

static void test_reaping(void)
{
	emh_error err;
	diag("idle_timeout_ms reaps without further activity; pool.min connections stay");
	emh_host *h = must_host((const char *[]){"EMH_DEFAULT_CONTEXT=r", "EMH_CONTEXT_R_DRIVER=memdrv",
						 "EMH_CONTEXT_R_POOL_IDLE_TIMEOUT_MS=100", "EMH_CONTEXT_K_DRIVER=memdrv",
						 "EMH_CONTEXT_K_POOL_IDLE_TIMEOUT_MS=100", "EMH_CONTEXT_K_POOL_MIN=1",
						 "EMH_CONTEXT_N_DRIVER=memdrv", "EMH_CONTEXT_N_POOL_IDLE_TIMEOUT_MS=0", NULL});
	int live = atomic_load(&md.live);
	emh_em *k1 = holding(h, "k"), *k2 = holding(h, "k");
	emh_em_close(k1);
	emh_em_close(k2);
	is_int(fixture_exec(h, "n", "ok", &err), 0, "n (idle_timeout_ms = 0) uses a connection");
	is_int(fixture_exec(h, "r", "ok", &err), 0, "r (min 0) uses a connection");
	is_int(atomic_load(&md.live) - live, 4, "4 connections open");
	/* no timing assertion: wait (at most 10 s) for the reaper */
	for (int i = 0; i < 1000 && (fixture_context_info(h, "r").idle || fixture_context_info(h, "k").idle > 1); i++)
		usleep(10000);
	emh_context_info ri = fixture_context_info(h, "r");
	is_int(ri.idle + ri.in_use, 0, "r holds no connection after its idle timeout, with no further use");
	is_int(fixture_context_info(h, "k").idle, 1, "k keeps pool.min = 1 of its 2");
	usleep(300000);
	is_int(fixture_context_info(h, "k").idle, 1, "and still does 3 idle timeouts later");
	is_int(fixture_context_info(h, "n").idle, 1, "n's connection is never reaped");
	emh_budget_info bi = budget_of(h);
	is_int(bi.reaped, 2, "2 reaped");
	is_int(bi.connections, 2, "the budget counts the 2 left");
	is_int(atomic_load(&md.live) - live, 2, "and so does the driver");
	is_int(fixture_exec(h, "r", "ok", &err), 0, "r works on: a new connection");
	emh_host_free(h);
	is_int(atomic_load(&md.live), live, "freeing the host (and its reaper) closed the rest");
}

/* More kept idle connections than the reaper's batch (1024) at the head of
 * the list: the reaper used its batch up on them at every pass, spinning,
 * and never reached the connection behind them that was due. */
static void test_reap_past_kept(void)
{
	emh_error err;
	struct rlimit saved;
	enum { KEPT = 1100 };
	diag("the reaper reaches a due connection behind %d it keeps", KEPT);
	if (getrlimit(RLIMIT_NOFILE, &saved) != 0)
		bail("getrlimit failed");
	if (saved.rlim_max != RLIM_INFINITY && saved.rlim_max < 4096) {
		/* the budget's descriptors come from the limit: too few for KEPT */
		ok(0, "RLIMIT_NOFILE's hard limit %lu is below 4096: cannot hold %d connections",
		   (unsigned long)saved.rlim_max, KEPT);
		return;
	}
	set_nofile(4096);
	emh_host *h = must_host((const char *[]){"EMH_DEFAULT_CONTEXT=r", "EMH_CONTEXT_R_DRIVER=memdrv",
						 "EMH_CONTEXT_R_POOL_IDLE_TIMEOUT_MS=50", "EMH_CONTEXT_N_DRIVER=memdrv",
						 "EMH_CONTEXT_N_POOL_IDLE_TIMEOUT_MS=0", "EMH_CONTEXT_N_POOL_MAX=1100",
						 NULL});
	if (setrlimit(RLIMIT_NOFILE, &saved) != 0)
		bail("restoring RLIMIT_NOFILE failed");
	emh_em **held = calloc(KEPT, sizeof *held);
	if (!held)
		bail("out of memory");
	for (int i = 0; i < KEPT; i++)
		held[i] = holding(h, "n");
	for (int i = 0; i < KEPT; i++)
		emh_em_close(held[i]);
	free(held);
	is_int(fixture_exec(h, "r", "ok", &err), 0, "r uses a connection after n's %d went idle", KEPT);
	/* no timing assertion: wait (at most 10 s) for the reaper */
	for (int i = 0; i < 1000 && fixture_context_info(h, "r").idle; i++)
		usleep(10000);
	is_int(fixture_context_info(h, "r").idle, 0, "r's idle connection is reaped behind them");
	is_int(fixture_context_info(h, "n").idle, KEPT, "n (idle_timeout_ms = 0) keeps all %d", KEPT);
	ok(budget_of(h).reaped >= 1, "the budget counts the reaped one");
	emh_host_free(h);
}

/* An acquire whose own pool's idle connection expired (max_lifetime_ms)
 * took it out to close, then found the budget full -- of that very
 * connection -- and waited for room until acquire_timeout_ms. */
static void test_expired_makes_room(void)
{
	emh_error err = {0};
	diag("a connection past its lifetime makes room for its replacement in a full budget");
	emh_host *h = must_host((const char *[]){"EMH_MAX_CONNECTIONS=1", "EMH_CONTEXT_A_DRIVER=memdrv",
						 "EMH_CONTEXT_A_POOL_MAX_LIFETIME_MS=50",
						 "EMH_CONTEXT_A_POOL_ACQUIRE_TIMEOUT_MS=2000", NULL});
	int live = atomic_load(&md.live);
	is_int(fixture_exec(h, "a", "ok", &err), 0, "a first call opens the budget's only connection");
	usleep(200000); /* past its lifetime */
	is_int(fixture_exec(h, "a", "ok", &err), 0, "a call after its lifetime gets a new one: %s",
	       err.message);
	is_int(atomic_load(&md.live) - live, 1, "the expired one was closed: one open");
	emh_budget_info bi = budget_of(h);
	is_int(bi.connections, 1, "the budget counts one");
	is_int((int)bi.timeouts, 0, "and no acquire timed out");
	emh_host_free(h);
}

static void test_nofd(void)
{
	emh_error err;
	diag("a connect out of file descriptors: EMH_ENOFD, retryable, the context not marked down");
	emh_host *h = must_host((const char *[]){"EMH_CONTEXT_A_DRIVER=memdrv", NULL});
	atomic_store(&md.nofd, 1);
	is_int(fixture_exec(h, "a", "ok", &err), EMH_ENOFD, "EMH_ENOFD");
	is_str(emh_status_name(EMH_ENOFD), "EMH_ENOFD", "its name");
	is_str(emh_strerror(EMH_ENOFD), "out of file descriptors", "its message");
	like_str(err.message, "context 'a': memdrv: socket: out of file descriptors", "the driver's words, in context");
	ok(err.retryable, "retryable");
	emh_context_info ai = fixture_context_info(h, "a");
	ok(ai.up && !ai.last_error[0], "the context is not down (not 'database down')");
	is_int(budget_of(h).connections, 0, "the failed connect gave its room back");
	atomic_store(&md.nofd, 0);
	is_int(fixture_exec(h, "a", "ok", &err), 0, "descriptors back: the next fork works");
	emh_host_free(h);
}

/* ---- a reload changes the limits of a running host ---- */

/* The budget test's file: max_connections m; a (pool max amax, idle timeout a_idle_ms), b (pool max 3). */
static void reload_conf(const char *path, int m, int amax, int a_idle_ms)
{
	char text[512];
	snprintf(text, sizeof text,
		 "max_connections = %d;\ndefault_context = \"a\";\ncontexts = (\n"
		 "  { name = \"a\"; driver = \"memdrv\"; pool = { max = %d; idle_timeout_ms = %d; }; },\n"
		 "  { name = \"b\"; driver = \"memdrv\"; pool = { max = 3; acquire_timeout_ms = 10000; }; }\n);\n",
		 m, amax, a_idle_ms);
	write_file(path, text);
}

static void test_reload(void)
{
	static const char *const no_env[] = {NULL};
	const emh_reload_opts ro = {.envp = no_env};
	emh_error err;
	char path[256], sum[512];
	diag("a reload lowers and raises max_connections and pool limits on the live budget");
	fixture_path(&fx, "reload.conf", path, sizeof path);
	reload_conf(path, 4, 3, 300000);
	emh_host *h = host_with(path, no_env, &err);
	if (!h)
		bail("host: %s", err.message);
	int live = atomic_load(&md.live);
	emh_em *a1 = holding(h, "a"), *a2 = holding(h, "a"), *a3 = holding(h, "a");
	emh_em_close(a1);
	emh_em_close(a2);
	emh_em_close(a3);
	is_int(fixture_exec(h, "b", "ok", &err), 0, "b uses a connection");
	is_int(budget_of(h).idle, 4, "4 connections idle, a's the longest");

	reload_conf(path, 2, 3, 300000);
	is_int(emh_host_reload(h, &ro, sum, sizeof sum, &err), 0, "reload lowering max_connections to 2");
	like_str(sum, "max_connections 4 -> 2", "the summary says so");
	emh_budget_info bi = budget_of(h);
	ok(bi.max_connections == 2 && bi.connections == 2, "the budget is 2, and 2 are open (%u)", bi.connections);
	like_str(bi.origin, "reload.conf:1", "its origin is the file");
	is_int(atomic_load(&md.live) - live, 2, "the driver agrees");
	ok(fixture_context_info(h, "a").idle == 1 && fixture_context_info(h, "b").idle == 1,
	   "the longest idle went first: a keeps 1 of its 3, b its 1");

	/* above a lowered budget, a connection given back is closed, not kept */
	reload_conf(path, 4, 3, 300000);
	is_int(emh_host_reload(h, &ro, sum, sizeof sum, &err), 0, "max_connections back to 4");
	emh_em *ha = holding(h, "a"), *b1 = holding(h, "b"), *b2 = holding(h, "b");
	reload_conf(path, 1, 3, 300000);
	is_int(emh_host_reload(h, &ro, sum, sizeof sum, &err), 0, "max_connections 1 with 3 in use");
	is_int(budget_of(h).connections, 3, "none is closed under its fork");
	emh_em_close(b1);
	emh_em_close(b2);
	emh_em_close(ha);
	bi = budget_of(h);
	ok(bi.connections == 1 && bi.idle == 1, "given back, 2 were closed and 1 kept (%u open, %u idle)", bi.connections,
	   bi.idle);
	is_int(atomic_load(&md.live) - live, 1, "the driver agrees");

	/* a raised budget serves a fork already waiting for it */
	ha = holding(h, "a");
	waiter w = {.h = h, .ctx = "b"};
	pthread_t t;
	fixture_thread(&t, wait_for_one, &w);
	for (int i = 0; i < 1000 && budget_of(h).waiting == 0; i++)
		usleep(1000);
	is_int(budget_of(h).waiting, 1, "a fork on b waits for the budget");
	reload_conf(path, 3, 3, 300000);
	is_int(emh_host_reload(h, &ro, sum, sizeof sum, &err), 0, "reload raising max_connections to 3");
	pthread_join(t, NULL);
	is_int(w.rc, 0, "the waiting fork got its connection (not after its 10 s timeout)");

	/* a pool max lowered while its connections are lent */
	emh_em *a2b = holding(h, "a"), *a3b = holding(h, "a");
	reload_conf(path, 3, 1, 300000);
	is_int(emh_host_reload(h, &ro, sum, sizeof sum, &err), 0, "reload lowering a's pool max to 1 with 3 in use");
	like_str(sum, "pool of a: max 3 -> 1", "the summary says so");
	uint64_t discarded = fixture_context_info(h, "a").discarded;
	emh_em_close(ha);
	emh_em_close(a2b);
	emh_em_close(a3b);
	emh_context_info ai = fixture_context_info(h, "a");
	ok(ai.idle == 1 && ai.in_use == 0, "a keeps 1 connection of the 3 given back (%u idle)", ai.idle);
	is_int(ai.discarded - discarded, 2, "2 closed as they came back");

	/* a shorter idle timeout reaps connections already idle: the reaper looks again */
	is_int(fixture_exec(h, "b", "ok", &err), 0, "b uses a connection again");
	reload_conf(path, 3, 1, 50);
	is_int(emh_host_reload(h, &ro, sum, sizeof sum, &err), 0, "reload lowering a's idle_timeout_ms to 50");
	for (int i = 0; i < 1000 && fixture_context_info(h, "a").idle; i++)
		usleep(10000);
	is_int(fixture_context_info(h, "a").idle, 0, "a's idle connection was reaped (not after the old 300 s)");
	is_int(fixture_context_info(h, "b").idle, 1, "b's, under its own timeout, stays");
	emh_host_free(h);
	is_int(atomic_load(&md.live), live, "every connection closed with the host");
}

/* ---- many threads, contexts coming and going, a small budget ---- */

#define NCTX 40
#define BUDGET 5

typedef struct stress {
	emh_host *h;
	atomic_int stop;
	atomic_int ok, timeouts, nocontext, other;
	char other_msg[EMH_ERROR_MSG_MAX + 16];
} stress;

static void *stress_worker(void *arg)
{
	stress *s = arg;
	unsigned seed = (unsigned)(uintptr_t)&seed;
	while (!atomic_load(&s->stop)) {
		char name[16];
		emh_error err;
		snprintf(name, sizeof name, "s%d", (int)(rand_r(&seed) % NCTX));
		int rc = fixture_exec(s->h, name, "hold", &err);
		if (rc == 0)
			atomic_fetch_add(&s->ok, 1);
		else if (rc == EMH_ETIMEOUT)
			atomic_fetch_add(&s->timeouts, 1);
		else if (rc == EMH_ENOCONTEXT)
			atomic_fetch_add(&s->nocontext, 1);
		else if (atomic_fetch_add(&s->other, 1) == 0)
			snprintf(s->other_msg, sizeof s->other_msg, "%s", err.message);
	}
	return NULL;
}

/* Contexts s30..s39 removed and added back over and over: their idle
 * connections are in the LRU, where other threads close them for room. */
static void *stress_churn(void *arg)
{
	stress *s = arg;
	const char *kv[] = {"driver", "memdrv", "pool.max", "2", "pool.idle_timeout_ms", "5", NULL};
	for (int round = 0; !atomic_load(&s->stop); round++) {
		char name[16];
		emh_error err;
		snprintf(name, sizeof name, "s%d", 30 + round % 10);
		if (emh_host_remove_context(s->h, name, &err) != 0 ||
		    emh_host_add_context(s->h, name, kv, &err) != 0) {
			if (atomic_fetch_add(&s->other, 1) == 0)
				snprintf(s->other_msg, sizeof s->other_msg, "churn: %s", err.message);
		}
	}
	return NULL;
}

static void test_stress(void)
{
	emh_error err;
	diag("8 threads on %d contexts within a budget of %d, contexts removed and added meanwhile", NCTX, BUDGET);
	emh_host *h = must_host((const char *[]){"EMH_MAX_CONNECTIONS=5", NULL});
	for (int i = 0; i < NCTX; i++) {
		char name[16];
		snprintf(name, sizeof name, "s%d", i);
		const char *kv[] = {"driver", "memdrv", "pool.max", "2", "pool.acquire_timeout_ms", "20000",
				    "pool.idle_timeout_ms", i % 2 ? "5" : "300000", NULL};
		if (emh_host_add_context(h, name, kv, &err) != 0)
			bail("add %s: %s", name, err.message);
	}
	int live = atomic_load(&md.live);
	atomic_store(&md.max_live, live);
	atomic_store(&md.hold_us, 50);
	stress s = {.h = h};
	pthread_t t[9];
	for (int i = 0; i < 8; i++)
		fixture_thread(&t[i], stress_worker, &s);
	fixture_thread(&t[8], stress_churn, &s);
	usleep(1500 * 1000);
	atomic_store(&s.stop, 1);
	for (int i = 0; i < 9; i++)
		pthread_join(t[i], NULL);
	atomic_store(&md.hold_us, 0);
	ok(atomic_load(&s.ok) > 100, "forks succeeded (%d)", atomic_load(&s.ok));
	is_int(atomic_load(&s.timeouts), 0, "no acquire timed out");
	if (!ok(atomic_load(&s.other) == 0, "no other failure (%d)", atomic_load(&s.other)))
		diag("first: %s", s.other_msg);
	ok(atomic_load(&md.max_live) - live <= BUDGET, "never more than %d connections open (saw %d)", BUDGET,
	   atomic_load(&md.max_live) - live);
	/* Half the contexts reap after 5 ms idle: the reaper is closing what the
	 * threads left idle as they stopped, and a connection it closes leaves
	 * the driver before the budget.  Compared once both counts agree (up to
	 * 2 s): a real difference stays. */
	emh_budget_info bi = budget_of(h);
	int drv = atomic_load(&md.live) - live;
	for (int i = 0; i < 200 && drv != (int)bi.connections; i++) {
		usleep(10000);
		bi = budget_of(h);
		drv = atomic_load(&md.live) - live;
	}
	ok(bi.evicted > 0, "connections were closed for room (%llu) and reaped (%llu)", (unsigned long long)bi.evicted,
	   (unsigned long long)bi.reaped);
	ok(bi.connections <= BUDGET && bi.waiting == 0, "the budget is consistent afterwards (%u open)", bi.connections);
	is_int(drv, (int)bi.connections, "the driver agrees");
	emh_host_free(h);
	is_int(atomic_load(&md.live), live, "every connection closed with the host");
}

int main(void)
{
	fixture_init(&fx, "budget");
	test_limits();
	test_eviction();
	test_wait_and_timeout();
	test_fd_cost();
	test_reaping();
	test_reap_past_kept();
	test_expired_makes_room();
	test_nofd();
	test_reload();
	test_stress();
	fixture_release(&fx);
	return done_testing();
}
