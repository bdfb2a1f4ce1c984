/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/test_context.c: contexts by name at tenant scale (the host's
 * hash table: add, find, remove, configuration order), removal woken by the
 * last fork rather than by a timer, and errors of a driver's context_open
 * and connect naming the context; names that differ only past their first
 * 32 bytes (the part kept beside the fork's counters) and those counters
 * reused by a later context.  A static driver that opens nothing; the
 * removal counters are read from the host's internals.
 */
#include "config.h"

#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <emhost/emhost.h>

#include "../../core/internal.h"
#include "../../core/migrate_int.h"
#include "../tap.h"

/* ---- a driver that opens nothing, and fails where told ---- */

struct emh_conn {
	int unused;
};

static int nd_context_open(const emh_params *p, emh_dctx **out, emh_error *err)
{
	bool fail;
	*out = NULL;
	if (emh_params_bool(p, "fail_open", false, &fail, err) != 0)
		return EMH_ECONFIG;
	return fail ? emh_error_set(err, EMH_EDRIVER, "nulldrv: cannot set up the client pool") : 0;
}

static void nd_context_close(emh_dctx *dc) { (void)dc; }

static int nd_connect(const emh_params *p, emh_dctx *dc, emh_conn **out, emh_error *err)
{
	(void)dc;
	bool fail;
	if (emh_params_bool(p, "fail_connect", false, &fail, err) != 0)
		return EMH_ECONFIG;
	if (fail)
		return emh_error_set(err, EMH_EUNAVAILABLE, "nulldrv: connection refused");
	*out = calloc(1, sizeof **out);
	return *out ? 0 : emh_error_set(err, EMH_ENOMEM, "out of memory");
}

static void nd_disconnect(emh_conn *c) { free(c); }
static int nd_ping(emh_conn *c, emh_error *err) { (void)c, (void)err; return 0; }
static int nd_execute(emh_conn *c, const char *t, emh_error *err) { (void)c, (void)t, (void)err; return 0; }
static int nd_sync(emh_conn *c, const emh_meta *m, emh_error *err) { (void)c, (void)m, (void)err; return 0; }
static int nd_insert(emh_conn *c, const emh_meta *m, const emh_value *v, emh_value *k, emh_error *err)
{
	(void)c, (void)m, (void)v, (void)k;
	return emh_error_set(err, EMH_EUNSUPPORTED, "nulldrv stores nothing");
}
static int nd_update(emh_conn *c, const emh_meta *m, const emh_value *v, uint64_t mask, emh_error *err)
{
	(void)c, (void)m, (void)v, (void)mask;
	return emh_error_set(err, EMH_EUNSUPPORTED, "nulldrv stores nothing");
}
static int nd_remove(emh_conn *c, const emh_meta *m, const emh_value *k, emh_error *err)
{
	(void)c, (void)m, (void)k;
	return emh_error_set(err, EMH_EUNSUPPORTED, "nulldrv stores nothing");
}
static int nd_find(emh_conn *c, const emh_meta *m, const emh_query *q, emh_rowsink *s, emh_error *err)
{
	(void)c, (void)m, (void)q, (void)s, (void)err;
	return 0;
}
static int nd_count(emh_conn *c, const emh_meta *m, const emh_query *q, int64_t *n, emh_error *err)
{
	(void)c, (void)m, (void)q, (void)err;
	*n = 0;
	return 0;
}

static const emh_param_spec nd_params[] = {
	{.key = "fail_open", .kind = EMH_PARAM_BOOL, .help = "context_open fails"},
	{.key = "fail_connect", .kind = EMH_PARAM_BOOL, .help = "connect fails"},
	{.key = NULL},
};

static const emh_driver nulldrv = {
	EMH_DRIVER_HEADER,
	.name = "nulldrv",
	.version = "test",
	.params = nd_params,
	.context_open = nd_context_open,
	.context_close = nd_context_close,
	.connect = nd_connect,
	.disconnect = nd_disconnect,
	.ping = nd_ping,
	.execute = nd_execute,
	.sync = nd_sync,
	.insert = nd_insert,
	.update = nd_update,
	.remove = nd_remove,
	.find = nd_find,
	.count = nd_count,
};
static const emh_driver *const drivers[] = {&nulldrv};

static emh_host *new_host(const char *const *env, emh_error *err)
{
	emh_host_opts o = {.no_plugins = true, .drivers = drivers, .ndrivers = 1, .envp = env};
	emh_host *h = NULL;
	emh_host_new(&o, &h, err);
	return h;
}

static int add(emh_host *h, const char *name, emh_error *err)
{
	const char *kv[] = {"driver", "nulldrv", NULL};
	return emh_host_add_context(h, name, kv, err);
}

static int fork_close(emh_host *h, const char *name, emh_error *err)
{
	emh_em *em;
	int rc = emh_host_fork(h, name, &em, err);
	emh_em_close(em);
	return rc;
}

/* ---- many contexts ---- */

#define NTENANTS 3000

static void test_many_contexts(void)
{
	const char *env[] = {"EMH_CONTEXT_DEFAULT_DRIVER=nulldrv", NULL};
	emh_error err;
	emh_host *h = new_host(env, &err);
	if (!h)
		bail("host: %s", err.message);
	char name[32];
	int fails = 0;
	for (int i = 0; i < NTENANTS; i++) {
		snprintf(name, sizeof name, "t%d", i);
		fails += add(h, name, &err) != 0;
	}
	is_int(fails, 0, "%d contexts added at run time", NTENANTS);
	/* Every other one removed: the table shifts entries back over the holes. */
	for (int i = 0; i < NTENANTS; i += 2) {
		snprintf(name, sizeof name, "t%d", i);
		fails += emh_host_remove_context(h, name, &err) != 0;
	}
	is_int(fails, 0, "half of them removed");
	int found = 0, gone = 0;
	for (int i = 0; i < NTENANTS; i++) {
		snprintf(name, sizeof name, "t%d", i);
		int rc = fork_close(h, name, &err);
		if (i % 2 && rc == 0)
			found++;
		else if (i % 2 == 0 && rc == EMH_ENOCONTEXT)
			gone++;
		else
			diag("%s: fork gave %s", name, emh_status_name(rc));
		if (i % 2 && emh_host_context_driver(h, name) == NULL)
			diag("%s: no driver", name);
	}
	is_int(found, NTENANTS / 2, "every remaining context is found by name");
	is_int(gone, NTENANTS / 2, "no removed one is");
	ok(emh_host_context_driver(h, "t1") && !emh_host_context_driver(h, "t0"),
	   "setting lookups use the same table");

	emh_context_info *infos;
	size_t n;
	bool in_order = emh_host_contexts(h, &infos, &n, &err) == 0 && n == 1 + NTENANTS / 2;
	for (size_t i = 1; in_order && i < n; i++) {
		snprintf(name, sizeof name, "t%zu", 2 * i - 1);
		in_order = strcmp(infos[i].name, name) == 0;
	}
	if (in_order)
		emh_context_info_free(infos, n);
	ok(in_order, "emh_host_contexts keeps configuration order after removals");

	for (int i = 0; i < NTENANTS; i += 2) {
		snprintf(name, sizeof name, "t%d", i);
		fails += add(h, name, &err) != 0;
	}
	is_int(fails, 0, "removed names can be added again");
	is_int(add(h, "t7", &err), EMH_ECONFIG, "a name still present is a duplicate");
	is_int(fork_close(h, "t0", &err), 0, "a re-added context is found");
	is_int(fork_close(h, "nosuch", &err), EMH_ENOCONTEXT, "an unknown name is not");
	like_str(err.message, "no context 'nosuch' (contexts: default, t1, t3", "listing contexts in order");
	emh_host_free(h);
}

/* ---- removal is woken by the last fork ---- */

typedef struct remover {
	emh_host *h;
	const char *name;
	int rc;
	bool done;
	pthread_mutex_t mu;
	pthread_cond_t cv;
} remover;

static void *remove_main(void *arg)
{
	remover *r = arg;
	emh_error err;
	int rc = emh_host_remove_context(r->h, r->name, &err);
	pthread_mutex_lock(&r->mu);
	r->rc = rc;
	r->done = true;
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
	return NULL;
}

/*
 * Join a remover.  The removal has no timer of its own: a missed wakeup
 * would hang it for ever, so the test gives up after a minute (a hang
 * guard, not a timing assertion: the remover is woken in microseconds).
 */
static bool remover_join(remover *r, pthread_t t)
{
	struct timespec dl;
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += 60;
	pthread_mutex_lock(&r->mu);
	while (!r->done)
		if (pthread_cond_timedwait(&r->cv, &r->mu, &dl) != 0)
			break;
	bool done = r->done;
	pthread_mutex_unlock(&r->mu);
	if (!done)
		bail("context removal still waiting after 60 s: the last fork's put did not wake it");
	pthread_join(t, NULL);
	return r->rc == 0;
}

#define ROUNDS 300

static void test_removal_wakeup(void)
{
	const char *env[] = {"EMH_CONTEXT_DEFAULT_DRIVER=nulldrv", NULL};
	emh_error err;
	emh_host *h = new_host(env, &err);
	if (!h)
		bail("host: %s", err.message);
	int fails = 0;

	/* idle: nothing to wait for */
	for (int i = 0; i < ROUNDS; i++)
		fails += add(h, "idle", &err) != 0 || emh_host_remove_context(h, "idle", &err) != 0;
	is_int(fails, 0, "an idle context added and removed %d times", ROUNDS);
	is_int((int)atomic_load(&h->removals_waited), 0, "removing an idle context never waits");

	/* the remover is already waiting when the last fork closes */
	for (int i = 0; i < ROUNDS; i++) {
		emh_em *a, *b;
		remover r = {.h = h, .name = "busy"};
		pthread_mutex_init(&r.mu, NULL);
		pthread_cond_init(&r.cv, NULL);
		uint64_t waited = atomic_load(&h->removals_waited);
		if (add(h, "busy", &err) || emh_host_fork(h, "busy", &a, &err) || emh_host_fork(h, "busy", &b, &err))
			bail("setup: %s", err.message);
		pthread_t t;
		pthread_create(&t, NULL, remove_main, &r);
		while (atomic_load(&h->removals_waited) == waited)
			sched_yield(); /* until the remover has seen the forks and gone to wait */
		emh_em_close(a);
		emh_em_close(b); /* the last one */
		fails += !remover_join(&r, t);
		pthread_cond_destroy(&r.cv);
		pthread_mutex_destroy(&r.mu);
	}
	is_int(fails, 0, "a context whose last fork closes during the wait is removed, %d times", ROUNDS);
	is_int((int)atomic_load(&h->removals_waited), ROUNDS, "each of those removals waited");
	is_int((int)atomic_load(&h->removals_woken), ROUNDS, "and each was woken by the last fork's close");

	/* the fork closes while the removal starts: the race the old code lost */
	uint64_t w0 = atomic_load(&h->removals_waited), k0 = atomic_load(&h->removals_woken);
	for (int i = 0; i < ROUNDS; i++) {
		emh_em *a;
		remover r = {.h = h, .name = "race"};
		pthread_mutex_init(&r.mu, NULL);
		pthread_cond_init(&r.cv, NULL);
		if (add(h, "race", &err) || emh_host_fork(h, "race", &a, &err))
			bail("setup: %s", err.message);
		pthread_t t;
		pthread_create(&t, NULL, remove_main, &r);
		/* A spin that grows with the round moves the close across the
		 * remover's start, so some rounds close first and some after. */
		for (volatile int k = 0; k < i * 300; k++)
			;
		emh_em_close(a);
		fails += !remover_join(&r, t);
		pthread_cond_destroy(&r.cv);
		pthread_mutex_destroy(&r.mu);
	}
	is_int(fails, 0, "removal racing the last fork's close completes, %d times", ROUNDS);
	uint64_t waited = atomic_load(&h->removals_waited) - w0, woken = atomic_load(&h->removals_woken) - k0;
	ok(waited == woken, "every removal that waited was woken by a close (%llu waited, %llu woken)",
	   (unsigned long long)waited, (unsigned long long)woken);
	emh_host_free(h);
}

/* ---- driver errors name the context ---- */

static void test_driver_errors(void)
{
	const char *env[] = {"EMH_CONTEXT_DEFAULT_DRIVER=nulldrv", NULL};
	emh_error err;
	emh_host *h = new_host(env, &err);
	if (!h)
		bail("host: %s", err.message);

	const char *bad_open[] = {"driver", "nulldrv", "fail_open", "true", NULL};
	memset(&err, 0, sizeof err);
	is_int(emh_host_add_context(h, "ledger", bad_open, &err), EMH_EDRIVER, "context_open's failure is returned");
	is_str(err.message, "context 'ledger': nulldrv: cannot set up the client pool",
	       "prefixed with the context like every context error");
	is_str(err.context, "ledger", "err.context is set");

	const char *envo[] = {"EMH_CONTEXT_DEFAULT_DRIVER=nulldrv", "EMH_CONTEXT_DEFAULT_FAIL_OPEN=true", NULL};
	memset(&err, 0, sizeof err);
	emh_host *h2 = new_host(envo, &err);
	ok(!h2, "a configured context whose context_open fails stops the host");
	is_str(err.message, "context 'default': nulldrv: cannot set up the client pool", "naming the context");

	const char *bad_conn[] = {"driver", "nulldrv", "fail_connect", "true", NULL};
	is_int(emh_host_add_context(h, "down", bad_conn, &err), 0, "a context whose connect fails is added");
	memset(&err, 0, sizeof err);
	is_int(emh_host_ping(h, "down", &err), EMH_EUNAVAILABLE, "ping: connect's failure is returned");
	is_str(err.message, "context 'down': nulldrv: connection refused", "prefixed once");
	memset(&err, 0, sizeof err);
	is_int(emh_host_sync_schema(h, "down", &err), EMH_EUNAVAILABLE, "schema sync: connect's failure");
	is_str(err.message, "context 'down': nulldrv: connection refused", "prefixed once");
	emh_em *em;
	memset(&err, 0, sizeof err);
	if (emh_host_fork(h, "down", &em, &err) != 0)
		bail("fork: %s", err.message);
	is_int(emh_em_execute(em, "x", &err), EMH_EUNAVAILABLE, "a fork's first call: connect's failure");
	is_str(err.message, "context 'down': nulldrv: connection refused", "prefixed once");
	emh_em_close(em);

	emh_context_info *infos;
	size_t n;
	const char *last = NULL;
	if (emh_host_contexts(h, &infos, &n, &err) == 0) {
		for (size_t i = 0; i < n; i++)
			if (strcmp(infos[i].name, "down") == 0)
				last = infos[i].last_error;
		is_str(last, "nulldrv: connection refused", "health keeps the driver's words (the context is its row)");
		emh_context_info_free(infos, n);
	} else {
		ok(0, "emh_host_contexts: %s", err.message);
	}
	emh_host_free(h);
}

/* ---- long names; a removed context's hot part reused ---- */

/* A counter of context name as emh_host_contexts lists it: its open forks, or its queries; UINT64_MAX when not listed. */
static uint64_t counter_of(emh_host *h, const char *name, bool forks)
{
	emh_context_info *infos;
	size_t n;
	uint64_t v = UINT64_MAX;
	if (emh_host_contexts(h, &infos, &n, NULL) != 0)
		return v;
	for (size_t i = 0; i < n; i++)
		if (strcmp(infos[i].name, name) == 0)
			v = forks ? infos[i].forks_open : infos[i].queries;
	emh_context_info_free(infos, n);
	return v;
}

static uint64_t forks_open_of(emh_host *h, const char *name) { return counter_of(h, name, true); }
static uint64_t queries_of(emh_host *h, const char *name) { return counter_of(h, name, false); }

/* The context a fork of name lands on, "" when the fork fails. */
static const char *fork_lands(emh_host *h, const char *name, char *buf, size_t cap)
{
	emh_em *em;
	emh_error err;
	buf[0] = '\0';
	if (emh_host_fork(h, name, &em, &err) == 0) {
		snprintf(buf, cap, "%s", emh_em_context(em));
		emh_em_close(em);
	}
	return buf;
}

static void test_long_names_and_reuse(void)
{
	emh_error err;
	emh_host *h = new_host(NULL, &err), *h2 = new_host(NULL, &err);
	if (!h || !h2)
		bail("host: %s", err.message);
	/* 31, 32, 33 and 63 bytes, the longer ones alike in their first 32 */
	const char *names[] = {
		"abcdefghijklmnopqrstuvwxyz01234",
		"abcdefghijklmnopqrstuvwxyz012345",
		"abcdefghijklmnopqrstuvwxyz012345a",
		"abcdefghijklmnopqrstuvwxyz012345abcdefghijklmnopqrstuvwxyz01234",
		"abcdefghijklmnopqrstuvwxyz012345abcdefghijklmnopqrstuvwxyz01235",
	};
	size_t nn = sizeof names / sizeof *names;
	int fails = 0;
	char buf[80];
	for (size_t i = 0; i < nn; i++)
		fails += add(h, names[i], &err) != 0;
	is_int(fails, 0, "names of 31 to 63 bytes, alike in their first 32, added");
	for (size_t i = 0; i < nn; i++)
		fails += strcmp(fork_lands(h, names[i], buf, sizeof buf), names[i]) != 0;
	is_int(fails, 0, "a fork of each lands on its own context");
	is_int(fork_close(h, "abcdefghijklmnopqrstuvwxyz012345b", &err), EMH_ENOCONTEXT,
	       "a name alike in its first 32 bytes but no context's is unknown");
	is_int(fork_close(h, "abcdefghijklmnopqrstuvwxyz0123", &err), EMH_ENOCONTEXT, "so is a prefix of one");
	is_int(emh_host_remove_context(h, names[3], &err), 0, "the 63-byte one removed");
	is_int(fork_close(h, names[3], &err), EMH_ENOCONTEXT, "is gone");
	ok(strcmp(fork_lands(h, names[4], buf, sizeof buf), names[4]) == 0, "its neighbour is still found");

	/* a context refused and busy, removed: whoever gets its hot part next starts clean */
	emh_em *em;
	if (add(h, "old", &err) || emh_host_fork(h, "old", &em, &err))
		bail("setup: %s", err.message);
	emh_context *c = emh__host_get_context(h, "old", &err);
	if (!c)
		bail("context: %s", err.message);
	emh__context_refuse(c, "test refusal");
	emh__context_put(c);
	is_int(fork_close(h, "old", &err), EMH_ESCHEMA, "a refused context refuses forks");
	emh_em_close(em);
	is_int(emh_host_remove_context(h, "old", &err), 0, "and is removed once its fork closed");
	is_int(add(h, "new", &err), 0, "a context added after it");
	ok(emh_host_context_refusal(h, "new") == NULL, "has no refusal");
	is_int((int)forks_open_of(h, "new"), 0, "and no fork open");
	is_int(fork_close(h, "new", &err), 0, "forks");

	/* two hosts: the same names, counters of their own */
	if (add(h2, names[0], &err) || add(h2, "new", &err))
		bail("setup: %s", err.message);
	emh_em *a, *b;
	if (emh_host_fork(h, "new", &a, &err) || emh_host_fork(h2, names[0], &b, &err))
		bail("fork: %s", err.message);
	ok(forks_open_of(h, "new") == 1 && forks_open_of(h2, "new") == 0 && forks_open_of(h2, names[0]) == 1 &&
		   forks_open_of(h, names[0]) == 0,
	   "two hosts count the forks of their own contexts");
	emh_em_close(a);
	emh_em_close(b);
	emh_host_free(h2);
	ok(strcmp(fork_lands(h, names[0], buf, sizeof buf), names[0]) == 0, "freeing one host leaves the other's");
	emh_host_free(h);
}

/* ---- an idle context carries no query counters ---- */

static void test_idle_counters(void)
{
	emh_error err;
	emh_host *h = new_host(NULL, &err);
	if (!h || add(h, "idle", &err) != 0)
		bail("host or context: %s", err.message);
	emh_context *c = emh__host_get_context(h, "idle", &err);
	if (!c)
		bail("context: %s", err.message);
	ok(atomic_load(&c->qstats) == NULL, "an added context has no query counters before its first call");
	is_int((long long)queries_of(h, "idle"), 0, "and counts 0 queries");
	if (fork_close(h, "idle", &err) != 0)
		bail("fork: %s", err.message);
	ok(atomic_load(&c->qstats) == NULL, "a fork that calls nothing makes none");
	emh_em *em;
	if (emh_host_fork(h, "idle", &em, &err) != 0)
		bail("fork: %s", err.message);
	is_int(emh_em_execute(em, "x", &err), 0, "a call");
	is_int(emh_em_execute(em, "y", &err), 0, "another");
	emh_em_close(em);
	ok(atomic_load(&c->qstats) != NULL, "the first call made them");
	is_int((long long)queries_of(h, "idle"), 2, "and both calls are counted");
	emh__context_put(c);
	emh_host_free(h);
}

/* ---- the pool's idle hint, read without the budget's lock ---- */

typedef struct churner {
	emh_host *h;
	int failed;
	atomic_int *running;
} churner;

static void *churn_main(void *arg)
{
	churner *ch = arg;
	for (int i = 0; i < 2000; i++) {
		emh_em *em;
		emh_error e;
		if (emh_host_fork(ch->h, NULL, &em, &e) != 0 || emh_em_execute(em, "x", &e) != 0)
			ch->failed++;
		emh_em_close(em);
	}
	atomic_fetch_sub(ch->running, 1);
	return NULL;
}

static void test_idle_hint(void)
{
	const char *env[] = {"EMH_CONTEXT_DEFAULT_DRIVER=nulldrv", "EMH_CONTEXT_DEFAULT_POOL_MAX=2", NULL};
	emh_error err;
	emh_host *h = new_host(env, &err);
	if (!h)
		bail("host: %s", err.message);
	emh_context *c = emh__host_get_context(h, NULL, &err);
	if (!c)
		bail("default context: %s", err.message);
	emh__pool *p = &c->pool;
	ok(!emh__pool_idle_now(p), "idle hint: none idle before the first call");
	emh_em *a, *b;
	if (emh_host_fork(h, NULL, &a, &err) || emh_em_execute(a, "x", &err))
		bail("fork a: %s", err.message);
	ok(!emh__pool_idle_now(p), "idle hint: none idle while the only connection is in use");
	emh_em_close(a);
	ok(emh__pool_idle_now(p), "idle hint: one idle once it is given back");
	if (emh_host_fork(h, NULL, &a, &err) || emh_em_execute(a, "x", &err))
		bail("fork a again: %s", err.message);
	ok(!emh__pool_idle_now(p), "idle hint: none once a fork took it again");
	if (emh_host_fork(h, NULL, &b, &err) || emh_em_execute(b, "x", &err))
		bail("fork b: %s", err.message);
	emh_em_close(a);
	emh_em_close(b);
	if (emh_host_fork(h, NULL, &a, &err) || emh_em_execute(a, "x", &err))
		bail("fork a, third: %s", err.message);
	ok(emh__pool_idle_now(p), "idle hint: one of two still idle while the other is in use");
	emh_em_close(a);

	/* Two threads take and give back while this one reads the hint: the
	 * hint is a relaxed atomic beside the list (ThreadSanitizer run). */
	pthread_t t[2];
	atomic_int running = 2;
	churner ch[2] = {{.h = h, .running = &running}, {.h = h, .running = &running}};
	for (int i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, churn_main, &ch[i]);
	unsigned long seen_idle = 0, reads = 0;
	while (atomic_load(&running) > 0) {
		seen_idle += emh__pool_idle_now(p);
		reads++;
	}
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	is_int(ch[0].failed + ch[1].failed, 0, "idle hint: 4000 forks on two threads, none failed");
	emh_context_info *all;
	size_t n = 0;
	unsigned idle = 0;
	if (emh_host_contexts(h, &all, &n, &err))
		bail("emh_host_contexts: %s", err.message);
	for (size_t i = 0; i < n; i++)
		if (strcmp(all[i].name, "default") == 0)
			idle = all[i].idle;
	emh_context_info_free(all, n);
	ok(idle == 2 && emh__pool_idle_now(p), "idle hint: both idle afterwards, as the list says (%u)", idle);
	diag("idle hint read %lu times, idle %lu of them", reads, seen_idle);
	emh__context_put(c);
	emh_host_free(h);
}

/* ---- lookups without the host's lock ---- */

/* refs of the context called name, read under the host's lock (0 when there is none). */
static unsigned refs_of(emh_host *h, const char *name)
{
	pthread_rwlock_rdlock(&h->lock);
	emh_context *c = emh__context_find_locked(h, name);
	unsigned refs = c ? atomic_load(&c->hot->refs) : 0;
	pthread_rwlock_unlock(&h->lock);
	return refs;
}

typedef struct lone_fork {
	emh_host *h;
	const char *name;
	int rc;
	atomic_int done;
} lone_fork;

static void *lone_fork_main(void *arg)
{
	lone_fork *f = arg;
	emh_error e;
	f->rc = fork_close(f->h, f->name, &e);
	atomic_store(&f->done, 1);
	return NULL;
}

/* A fork and close of name on another thread while this one holds the host's
 * write lock: done while it is held (without the lock), or only after. */
static bool forks_under_write_lock(emh_host *h, const char *name, int *rc)
{
	lone_fork f = {.h = h, .name = name};
	pthread_t t;
	pthread_rwlock_wrlock(&h->lock);
	pthread_create(&t, NULL, lone_fork_main, &f);
	/* up to two seconds: ample for a fork that takes no lock on a loaded
	 * (sanitizer, parallel make check) machine, and a shorter wait could
	 * only miss a fork that wrongly went without it */
	for (int i = 0; i < 200 && !atomic_load(&f.done); i++)
		nanosleep(&(struct timespec){.tv_nsec = 10 * 1000000}, NULL);
	bool done = atomic_load(&f.done);
	pthread_rwlock_unlock(&h->lock);
	pthread_join(t, NULL);
	*rc = f.rc;
	return done;
}

#define RACE_NAMES 6

typedef struct racer {
	emh_host *h;
	atomic_int *stop;
	atomic_ulong *attempts; /* of both racers */
	unsigned long forks, absent, wrong, failed;
} racer;

static const char *race_name(unsigned i)
{
	static const char *const v[RACE_NAMES] = {"r0", "r1", "r2", "tenant_with_a_name_longer_than_32_a",
						  "tenant_with_a_name_longer_than_32_b", "r5"};
	return v[i % RACE_NAMES];
}

static void *race_fork_main(void *arg)
{
	racer *r = arg;
	for (unsigned i = 0; !atomic_load(r->stop); i++) {
		const char *name = race_name(i);
		emh_em *em;
		emh_error e;
		int rc = emh_host_fork(r->h, name, &em, &e);
		if (rc == 0) {
			r->forks++;
			if (strcmp(emh_em_context(em), name) != 0)
				r->wrong++;
			emh_em_close(em);
		} else if (rc == EMH_ENOCONTEXT) {
			r->absent++;
		} else {
			r->failed++;
		}
		atomic_fetch_add_explicit(r->attempts, 1, memory_order_relaxed);
	}
	return NULL;
}

/*
 * Forks by name on two threads while this one adds and removes those names
 * (each removal frees the context's hot part, the next add reuses it under
 * another name) and grows the table with filler contexts: every fork must
 * land on the context it named, and every removal end.  Run under
 * ThreadSanitizer and ASan, this is the check of hot_get_unlocked.
 */
static void test_lookup_race(void)
{
	const char *env[] = {"EMH_CONTEXT_DEFAULT_DRIVER=nulldrv", NULL};
	emh_error err;
	emh_host *h = new_host(env, &err);
	if (!h)
		bail("host: %s", err.message);

	/* the states of refs that lookups without the lock rely on */
	if (add(h, "r0", &err))
		bail("add r0: %s", err.message);
	ok(refs_of(h, "r0") == EMH__CTX_HIDDEN, "a context just added is hidden from lookups without the lock");
	is_int(fork_close(h, "r0", &err), 0, "its first fork (under the lock)");
	is_int((int)refs_of(h, "r0"), 0, "made it visible to them, with no reference left");
	emh_em *em;
	if (emh_host_fork(h, "r0", &em, &err))
		bail("fork r0: %s", err.message);
	is_int((int)refs_of(h, "r0"), 1, "a fork without the lock takes one reference");
	emh_em_close(em);
	is_int((int)refs_of(h, "r0"), 0, "and its close puts it back");
	int rc;
	ok(forks_under_write_lock(h, "r0", &rc) && rc == 0, "a fork needs no lock once its context was seen");
	if (add(h, "r9", &err))
		bail("add r9: %s", err.message);
	ok(!forks_under_write_lock(h, "r9", &rc) && rc == 0,
	   "a fork of a context never seen waits for the lock, then works");
	/* A slot read in passing (in the middle of a move, or its hot part since
	 * given to another context) is caught once the reference is held: here
	 * r9's slot is made to point at r0's hot part, by hand. */
	pthread_rwlock_rdlock(&h->lock);
	emh_context *c0 = emh__context_find_locked(h, "r0"), *c9 = emh__context_find_locked(h, "r9");
	pthread_rwlock_unlock(&h->lock);
	if (!c0 || !c9)
		bail("r0 and r9 not found");
	emh__ctxtable *tab = atomic_load(&h->byname);
	size_t s9 = c9->hot->hash & tab->mask;
	while (atomic_load(&tab->slot[s9].hot) != c9->hot)
		s9 = (s9 + 1) & tab->mask;
	pthread_rwlock_wrlock(&h->lock);
	atomic_store(&tab->slot[s9].hot, c0->hot);
	pthread_rwlock_unlock(&h->lock);
	char buf[64];
	const char *landed = fork_lands(h, "r9", buf, sizeof buf);
	pthread_rwlock_wrlock(&h->lock);
	atomic_store(&tab->slot[s9].hot, c9->hot);
	pthread_rwlock_unlock(&h->lock);
	ok(strcmp(landed, "r0") != 0, "a slot pointing at another context's hot part is not taken for it (%s)", landed);
	is_int((int)refs_of(h, "r0"), 0, "the reference taken on it was put back");
	is_int(emh_host_remove_context(h, "r9", &err), 0, "r9 removed");
	emh_context *c = emh__host_get_context(h, "r0", &err);
	emh__ctxhot *hot = c ? c->hot : NULL;
	if (c)
		emh__context_put(c);
	is_int(emh_host_remove_context(h, "r0", &err), 0, "removed");
	if (add(h, "r1", &err))
		bail("add r1: %s", err.message);
	c = emh__host_get_context(h, "r1", &err);
	ok(c && c->hot == hot && (atomic_load(&c->hot->refs) & ~1u) == 0,
	   "the next context reuses its hot part (taken once under the lock now)");
	if (c)
		emh__context_put(c);
	is_int(emh_host_remove_context(h, "r1", &err), 0, "and is removed in turn");
	ok(atomic_load(&hot->refs) == EMH__CTX_REMOVING, "a free hot part says removing: no lookup takes it");

	atomic_int stop = 0;
	atomic_ulong attempts = 0;
	racer r[2] = {{.h = h, .stop = &stop, .attempts = &attempts}, {.h = h, .stop = &stop, .attempts = &attempts}};
	pthread_t t[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, race_fork_main, &r[i]);
	bool present[RACE_NAMES] = {false};
	int add_fail = 0, remove_fail = 0, fillers = 0;
	char filler[32];
	for (unsigned round = 0; round < 1200; round++) {
		unsigned i = round % RACE_NAMES;
		if (present[i])
			remove_fail += emh_host_remove_context(h, race_name(i), &err) != 0;
		else
			add_fail += add(h, race_name(i), &err) != 0;
		present[i] = !present[i];
		if (round % 10 == 0) { /* 120 more: the table grows from 16 to 256 slots meanwhile */
			snprintf(filler, sizeof filler, "filler%d", fillers++);
			add_fail += add(h, filler, &err) != 0;
		}
		/* However the threads are scheduled, they fork meanwhile: 20 tries,
		 * every name, with some names present and some not (rounds + 1 is
		 * never a multiple of 6 here). */
		if (round % 100 == 0)
			for (unsigned long a = atomic_load(&attempts); atomic_load(&attempts) < a + 20;)
				sched_yield();
	}
	atomic_store(&stop, 1);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	unsigned long forks = r[0].forks + r[1].forks, absent = r[0].absent + r[1].absent;
	is_int(add_fail + remove_fail, 0, "1200 adds and removals of 6 names beside forks of them, and 120 more added");
	ok(forks > 0 && absent > 0, "forks found their context (%lu) or none (%lu)", forks, absent);
	is_int((int)(r[0].wrong + r[1].wrong), 0, "every fork landed on the context it named");
	is_int((int)(r[0].failed + r[1].failed), 0, "no other error");
	int left = 0;
	for (unsigned i = 0; i < RACE_NAMES; i++)
		left += present[i] && (refs_of(h, race_name(i)) & ~EMH__CTX_HIDDEN) != 0;
	is_int(left, 0, "no reference left on any context");
	emh_host_free(h);
}

/*
 * An emh_host_add_context error says where: which context and which key
 * (found by review: "api: environment variable 'X' is not set" named
 * neither).
 */
static void test_add_context_where(void)
{
	const char *env[] = {"EMH_CONTEXT_DEFAULT_DRIVER=nulldrv", NULL};
	emh_error err;
	emh_host *h = new_host(env, &err);
	if (!h)
		bail("host: %s", err.message);
	const char *kv[] = {"driver", "nulldrv", "fail_open", "${EMH_TEST_NOT_SET_9}", NULL};
	memset(&err, 0, sizeof err);
	is_int(emh_host_add_context(h, "ledger", kv, &err), EMH_ECONFIG, "a missing ${VAR} in a value: EMH_ECONFIG");
	like_str(err.message,
		 "api: context 'ledger', key 'fail_open': environment variable 'EMH_TEST_NOT_SET_9' is not set",
		 "names the context and the key");
	ok(emh_host_context_driver(h, "ledger") == NULL, "and the context is not added");
	emh_host_free(h);
}

int main(void)
{
	test_many_contexts();
	test_removal_wakeup();
	test_driver_errors();
	test_add_context_where();
	test_long_names_and_reuse();
	test_idle_counters();
	test_idle_hint();
	test_lookup_race();
	return done_testing();
}
