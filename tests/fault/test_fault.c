/* SPDX-License-Identifier: MIT */
/*
 * tests/fault/test_fault.c: a database server stops and comes back under a
 * running host, for any driver: `test_fault postgres|mysql|mongo`, run by
 * tests/<driver>/fault.sh (which also brings the server back if this
 * program dies half-way).
 *
 * The cases and their assertions are the same for every driver; what
 * differs (the server script, the context's timeouts, how the table is
 * dropped, whether the server keeps data across a restart) is one row of
 * fault_drivers[].  The cases, in order:
 *
 *   seed            the table, committed rows, a warm pool, a SQLite context
 *   server down     every fork fails fast with EMH_EUNAVAILABLE, naming the
 *                   context, without the password; ping says so; the
 *                   context is reported down
 *   other context   the SQLite context keeps reading and writing
 *   server back     the same host recovers without a restart, data intact
 *   clean up        the table is dropped
 */
#include "config.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <emhost/emhost.h>

#include "../fixture.h"
#include "../tap.h"

#define NROWS 20
#define LITE_ROWS 5

typedef struct fault_driver {
	const char *name;            /* the program's argument */
	const char *ctx;             /* the context under test */
	const char *url_var;         /* the variable holding the test server's URL */
	const char *server;          /* scripts/servers/<server>.sh; its state in STATE_DIR/<server>/ */
	const char *const *settings; /* the context's settings after "url" */
	int pool_max;                /* as in settings */
	/* A failing fork returns within this: not a performance figure, just
	 * "it returned an error instead of hanging". */
	double bound_ms;
	const char *persistent_var; /* "1" there when the server keeps data across a restart; NULL: always */
} fault_driver;

static const char *const pg_settings[] = {"pool.max", "4", "pool.acquire_timeout_ms", "1000",
					  "connect_timeout_ms", "2000", NULL};
static const char *const my_settings[] = {"pool.max", "2", "pool.acquire_timeout_ms", "3000",
					  "connect_timeout_ms", "2000", NULL};
/* The mongo driver waits server_selection_timeout_ms for its ping, twice at
 * most for the first fork (the stale pooled connection's retried read, then
 * the fresh connection's ping): within the acquire timeout. */
static const char *const mg_settings[] = {"pool.max", "4", "pool.acquire_timeout_ms", "3000",
					  "server_selection_timeout_ms", "1000", NULL};

static const fault_driver fault_drivers[] = {
	{.name = "postgres", .ctx = "pg", .url_var = "EMH_TEST_PG_URL", .server = "pg", .settings = pg_settings,
	 .pool_max = 4, .bound_ms = 1000 + 2000 + 3000},
	{.name = "mysql", .ctx = "my", .url_var = "EMH_TEST_MYSQL_URL", .server = "mariadb", .settings = my_settings,
	 .pool_max = 2, .bound_ms = 3000 + 1000},
	{.name = "mongo", .ctx = "mg", .url_var = "EMH_TEST_MONGO_URI", .server = "mongo", .settings = mg_settings,
	 .pool_max = 4, .bound_ms = 3000, .persistent_var = "EMH_TEST_MONGO_PERSISTENT"},
};

typedef struct fault_item {
	int64_t id;
	const char *name;
	int64_t n;
} fault_item;

static const emh_field fault_item_fields[] = {
	EMH_FIELD(fault_item, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(fault_item, name, EMH_T_TEXT, 0),
	EMH_FIELD(fault_item, n, EMH_T_INT64, 0),
};

/* One run against one driver's server. */
typedef struct fault_run {
	const fault_driver *d;
	const char *url, *state;
	char script[1024];
	char pw[128]; /* the URL's password, "" when none */
	char table[64];
	emh_entity entity;
	fixture fx;
	emh_host *h;
	bool lite; /* the SQLite context "lite" exists */
	int64_t first_id, last_id, lite_id;
} fault_run;

/* The password of scheme://user:password@host... into pw ("" when none). */
static void url_password(const char *url, char *pw, size_t cap)
{
	const char *p = strstr(url, "://"), *at = NULL, *colon;
	pw[0] = '\0';
	if (!p)
		return;
	p += 3;
	for (const char *c = p; *c && *c != '/' && *c != '?'; c++)
		if (*c == '@')
			at = c;
	if (!at)
		return;
	colon = memchr(p, ':', (size_t)(at - p));
	if (colon && (size_t)(at - colon - 1) < cap)
		snprintf(pw, cap, "%.*s", (int)(at - colon - 1), colon + 1);
}

/* What STATE_DIR/<server>/kind says started the server ("" when nothing did). */
static void server_kind(const fault_run *fr, char *kind, size_t cap)
{
	char path[1024];
	FILE *f;
	kind[0] = '\0';
	snprintf(path, sizeof path, "%s/%s/kind", fr->state, fr->d->server);
	if (!(f = fopen(path, "r")))
		return;
	if (fgets(kind, (int)cap, f))
		kind[strcspn(kind, "\n")] = '\0';
	fclose(f);
}

/* Run `scripts/servers/<server>.sh CMD STATE_DIR`; its exit status. */
static int fault_server(const fault_run *fr, const char *cmd)
{
	char line[2200];
	snprintf(line, sizeof line, "'%s' %s '%s' >&2", fr->script, cmd, fr->state);
	return system(line);
}

/* Insert n rows named PREFIX-i in one flush on ctx; their first and last keys (when asked). */
static int fault_insert(const fault_run *fr, const char *ctx, int n, const char *prefix, int64_t *first,
			int64_t *last, emh_error *err)
{
	emh_em *em;
	emh_repo *r;
	fault_item *it = NULL, *it0 = NULL;
	int rc = emh_host_fork(fr->h, ctx, &em, err);
	if (rc)
		return rc;
	if ((rc = emh_em_repo(em, &fr->entity, &r, err)) == 0) {
		for (int i = 0; i < n && rc == 0; i++) {
			char name[64];
			if ((rc = emh_repo_new(r, (void **)&it, err)) != 0)
				break;
			if (!it0)
				it0 = it;
			snprintf(name, sizeof name, "%s-%d", prefix, i);
			it->name = emh_em_strdup(em, name);
			it->n = i;
		}
		if (rc == 0)
			rc = emh_em_flush(em, err);
		if (rc == 0 && first)
			*first = it0->id;
		if (rc == 0 && last)
			*last = it->id;
	}
	emh_em_close(em);
	return rc;
}

static int fault_count(const fault_run *fr, const char *ctx, int64_t *n, emh_error *err)
{
	emh_em *em;
	emh_repo *r;
	int rc = emh_host_fork(fr->h, ctx, &em, err);
	if (rc)
		return rc;
	if ((rc = emh_em_repo(em, &fr->entity, &r, err)) == 0)
		rc = emh_repo_count(r, NULL, n, err);
	emh_em_close(em);
	return rc;
}

/* Load key in ctx; its name into name. */
static int fault_get(const fault_run *fr, const char *ctx, int64_t key, char *name, size_t cap, emh_error *err)
{
	emh_em *em;
	emh_repo *r;
	fault_item *it;
	int rc = emh_host_fork(fr->h, ctx, &em, err);
	if (rc)
		return rc;
	name[0] = '\0';
	if ((rc = emh_em_repo(em, &fr->entity, &r, err)) == 0 &&
	    (rc = emh_repo_get(r, emh_v_int64(key), (void **)&it, err)) == 0)
		snprintf(name, cap, "%s", it->name ? it->name : "(null)");
	emh_em_close(em);
	return rc;
}

/* The counters and state of context name (strings not kept); false when absent. */
static bool fault_context_info(const fault_run *fr, const char *name, emh_context_info *out)
{
	emh_context_info *v;
	size_t n;
	emh_error err;
	bool found = false;
	if (emh_host_contexts(fr->h, &v, &n, &err) != 0) {
		diag("emh_host_contexts: %s", err.message);
		return false;
	}
	for (size_t i = 0; i < n && !found; i++)
		if (strcmp(v[i].name, name) == 0) {
			*out = v[i];
			out->name = out->driver = NULL;
			out->settings = NULL;
			out->nsettings = 0;
			found = true;
		}
	emh_context_info_free(v, n);
	return found;
}

static bool driver_loaded(const fault_run *fr, const char *name)
{
	const emh_driver_info *di;
	size_t n = emh_host_drivers(fr->h, &di);
	for (size_t i = 0; i < n; i++)
		if (strcmp(di[i].name, name) == 0)
			return true;
	return false;
}

/* Drop the context's tables through the driver, whatever its kind. */
static int fault_drop(const fault_run *fr, emh_error *err)
{
	return emh_host_drop_schema(fr->h, fr->d->ctx, err);
}

/* The host, the context under test, a SQLite context beside it when the driver is built. */
static void fault_setup(fault_run *fr)
{
	const fault_driver *d = fr->d;
	const char *kv[32];
	size_t n = 0;
	emh_error err;

	fixture_init(&fr->fx, "fault");
	fr->fx.log_level = EMH_LOG_ERROR;
	if (fixture_host(&fr->fx, NULL, &fr->h, &err))
		bail("emh_host_new: %s", err.message);
	kv[n++] = "url";
	kv[n++] = fr->url;
	for (const char *const *s = d->settings; *s; s++) {
		if (n + 1 >= sizeof kv / sizeof kv[0])
			bail("too many settings for context '%s'", d->ctx);
		kv[n++] = *s;
	}
	kv[n] = NULL;
	if (emh_host_add_context(fr->h, d->ctx, kv, &err))
		bail("context '%s' (url from %s): %s", d->ctx, d->url_var, err.message);
	fixture_register(fr->h, d->ctx, &fr->entity);
	/* a table left by an earlier run that died (the name is per process, but pids come round) */
	if (fault_drop(fr, &err))
		bail("drop '%s' before the test: %s", fr->table, err.message);

	fr->lite = driver_loaded(fr, "sqlite");
	if (fr->lite) {
		char path[1024];
		fixture_path(&fr->fx, "lite.db", path, sizeof path);
		if (emh_host_add_context(fr->h, "lite", (const char *const[]){"driver", "sqlite", "path", path, NULL},
					 &err))
			bail("context 'lite' on %s: %s", path, err.message);
		fixture_register(fr->h, "lite", &fr->entity);
	} else {
		diag("the sqlite driver is not built: the 'other context unaffected' checks are skipped");
	}
}

static void case_seed(fault_run *fr)
{
	const fault_driver *d = fr->d;
	emh_error err;
	int rc;

	diag("%s: seed: the table, %d committed rows, a warm pool", d->name, NROWS);
	rc = emh_host_sync_schema(fr->h, d->ctx, &err);
	if (!ok(rc == 0, "sync %s", d->ctx))
		diag("%s", err.message);
	if (fr->lite) {
		rc = emh_host_sync_schema(fr->h, "lite", &err);
		if (!ok(rc == 0, "sync lite"))
			diag("%s", err.message);
		rc = fault_insert(fr, "lite", 1, "lite", &fr->lite_id, NULL, &err);
		is_int(rc, 0, "one row committed on lite");
	} else {
		skip(2, "no sqlite driver");
	}
	rc = fault_insert(fr, d->ctx, NROWS, "before", &fr->first_id, &fr->last_id, &err);
	if (!ok(rc == 0, "%d rows committed on %s", NROWS, d->ctx))
		bail("the rows the rest of the test counts: %s", err.message);

	/* As many forks at once as the pool allows, each holding a connection
	 * until all are closed: the pool ends up full of idle connections that
	 * the stop will break. */
	emh_em *ems[8] = {NULL};
	int held = 0;
	for (int i = 0; i < d->pool_max && i < 8; i++) {
		emh_repo *r;
		int64_t cnt;
		ems[i] = fixture_fork(fr->h, d->ctx);
		r = fixture_repo(ems[i], &fr->entity);
		if (emh_repo_count(r, NULL, &cnt, &err) == 0)
			held++;
		else
			diag("warm fork %d: %s", i, err.message);
	}
	for (int i = 0; i < d->pool_max && i < 8; i++)
		emh_em_close(ems[i]);
	emh_context_info ci;
	bool found = fault_context_info(fr, d->ctx, &ci);
	ok(held == d->pool_max && found && ci.idle == (unsigned)d->pool_max,
	   "the pool holds %d idle connections (%d forks read, %u idle)", d->pool_max, held, found ? ci.idle : 0);
}

static void case_server_down(fault_run *fr)
{
	const fault_driver *d = fr->d;
	int unavailable = 0, other = 0, slow = 0;
	emh_error err;
	int rc;

	diag("%s: server down: forks fail fast with EMH_EUNAVAILABLE", d->name);
	rc = fault_server(fr, "stop");
	is_int(rc, 0, "%s.sh stop", d->server);
	for (int i = 0; i < 6; i++) {
		int64_t n = 0;
		double t0 = fixture_now_ms(), dt;
		memset(&err, 0, sizeof err);
		rc = fault_count(fr, d->ctx, &n, &err);
		dt = fixture_now_ms() - t0;
		if (rc == EMH_EUNAVAILABLE)
			unavailable++;
		else
			other++;
		if (dt > d->bound_ms)
			slow++;
		diag("fork %d on the stopped server: %s after %.0f ms: %s", i, emh_status_name(rc), dt,
		     rc ? err.message : "(no error)");
		if (i > 0)
			continue;
		is_str(emh_status_name(rc), "EMH_EUNAVAILABLE", "the first fork on the stopped server: EMH_EUNAVAILABLE");
		is_str(err.context, d->ctx, "the error names the context");
		if (fr->pw[0])
			ok(strstr(err.message, fr->pw) == NULL, "no password in the error");
		else
			skip_named("no password in the error", "the URL has no password");
		ok(dt <= d->bound_ms, "it returned within %.0f ms (%.0f ms)", d->bound_ms, dt);
	}
	is_int(unavailable, 6, "every fork on the stopped server got EMH_EUNAVAILABLE");
	is_int(other, 0, "no other outcome");
	is_int(slow, 0, "each returned within %.0f ms", d->bound_ms);

	double t0 = fixture_now_ms();
	rc = emh_host_ping(fr->h, d->ctx, &err);
	is_str(emh_status_name(rc), "EMH_EUNAVAILABLE", "ping says unavailable (%.0f ms)", fixture_now_ms() - t0);
	emh_context_info ci;
	ok(fault_context_info(fr, d->ctx, &ci) && !ci.up && ci.errors[-EMH_EUNAVAILABLE] > 0,
	   "the context is reported down with its unavailable errors counted");
}

static void case_other_context(fault_run *fr)
{
	char name[64];
	int64_t n = -1;
	emh_error err;
	int rc;

	diag("%s: the other context does not care", fr->d->name);
	if (!fr->lite) {
		skip(4, "no sqlite driver");
		return;
	}
	rc = fault_get(fr, "lite", fr->lite_id, name, sizeof name, &err);
	is_int(rc, 0, "the sqlite context still loads");
	is_str(name, "lite-0", "with its data");
	rc = fault_insert(fr, "lite", LITE_ROWS, "lite-more", NULL, NULL, &err);
	is_int(rc, 0, "and writes");
	rc = fault_count(fr, "lite", &n, &err);
	ok(rc == 0 && n == 1 + LITE_ROWS, "and reads (%lld rows)", (long long)n);
}

static void case_server_back(fault_run *fr)
{
	const fault_driver *d = fr->d;
	const char *persistent = d->persistent_var ? getenv(d->persistent_var) : "1";
	char name[64], last[32];
	int64_t n = -1;
	emh_error err;
	int rc;

	diag("%s: server back: the same host recovers without a restart", d->name);
	rc = fault_server(fr, "restart");
	is_int(rc, 0, "%s.sh restart (same port)", d->server);
	double t0 = fixture_now_ms();
	memset(&err, 0, sizeof err);
	rc = fault_count(fr, d->ctx, &n, &err);
	if (!ok(rc == 0, "the next fork works without restarting the host"))
		diag("%s", err.message);
	diag("first fork after the restart took %.0f ms", fixture_now_ms() - t0);
	if (persistent && strcmp(persistent, "1") == 0) {
		is_int(n, NROWS, "every row committed before the stop is there");
		rc = fault_get(fr, d->ctx, fr->first_id, name, sizeof name, &err);
		is_str(rc ? emh_status_name(rc) : name, "before-0", "the first row is intact");
		rc = fault_get(fr, d->ctx, fr->last_id, name, sizeof name, &err);
		snprintf(last, sizeof last, "before-%d", NROWS - 1);
		is_str(rc ? emh_status_name(rc) : name, last, "the last row is intact");
	} else {
		skip(3, "the test server keeps data in memory only (mongo-wire/CongoDB): rows written before a "
			"restart are gone, so 'data intact' cannot hold; checked with mongod");
	}
	rc = fault_insert(fr, d->ctx, 3, "after", NULL, NULL, &err);
	if (!ok(rc == 0, "writes work again"))
		diag("%s", err.message);
	rc = emh_host_ping(fr->h, d->ctx, &err);
	is_int(rc, 0, "ping works again");
	emh_context_info ci;
	bool found = fault_context_info(fr, d->ctx, &ci);
	ok(found && ci.up && ci.in_use + ci.idle <= (unsigned)d->pool_max,
	   "the context is reported up again, its pool within its max of %d", d->pool_max);
	if (found)
		diag("%s pool: opened %llu discarded %llu unavailable errors %llu", d->ctx,
		     (unsigned long long)ci.opened, (unsigned long long)ci.discarded,
		     (unsigned long long)ci.errors[-EMH_EUNAVAILABLE]);
}

static void fault_teardown(fault_run *fr)
{
	emh_error err;
	int rc = fault_drop(fr, &err);
	if (!ok(rc == 0, "drop the test table"))
		diag("%s", err.message);
	emh_host_free(fr->h);
	fixture_release(&fr->fx);
}

int main(int argc, char **argv)
{
	fault_run fr = {0};
	char kind[64];

	for (size_t i = 0; argc == 2 && i < sizeof fault_drivers / sizeof fault_drivers[0]; i++)
		if (strcmp(argv[1], fault_drivers[i].name) == 0)
			fr.d = &fault_drivers[i];
	if (!fr.d) {
		fprintf(stderr, "usage: test_fault postgres|mysql|mongo\n");
		return 2;
	}
	plan_lazy();
	fr.url = getenv(fr.d->url_var);
	fr.state = getenv("EMH_TEST_STATE_DIR");
	if (!fr.url || !*fr.url || !fr.state || !*fr.state) {
		char why[256];
		snprintf(why, sizeof why, "%s fault test: %s or EMH_TEST_STATE_DIR not set (run scripts/servers/%s.sh "
			 "start STATE_DIR)", fr.d->name, fr.d->url_var, fr.d->server);
		need_server(1, why);
		return done_testing();
	}
	server_kind(&fr, kind, sizeof kind);
	if (!kind[0] || strcmp(kind, "external") == 0) {
		char why[256];
		snprintf(why, sizeof why, "%s fault test: the server was not started by scripts/servers/%s.sh "
			 "(kind '%s'): it cannot be stopped", fr.d->name, fr.d->server, kind);
		skip(1, why);
		return done_testing();
	}
	url_password(fr.url, fr.pw, sizeof fr.pw);
	snprintf(fr.script, sizeof fr.script, "%s/scripts/servers/%s.sh", getenv("EMH_SRCDIR") ? getenv("EMH_SRCDIR") : ".",
		 fr.d->server);
	snprintf(fr.table, sizeof fr.table, "emh_fault_%s_%ld", fr.d->ctx, (long)getpid());
	fr.entity = (emh_entity)EMH_ENTITY(fault_item, fr.table, fault_item_fields);

	fault_setup(&fr);
	case_seed(&fr);
	case_server_down(&fr);
	case_other_context(&fr);
	case_server_back(&fr);
	fault_teardown(&fr);
	return done_testing();
}
