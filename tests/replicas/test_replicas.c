/* SPDX-License-Identifier: MIT */
/*
 * tests/replicas/test_replicas.c: read replicas against the real test
 * servers (scripts/servers/pg.sh's streaming standby, mariadb.sh's GTID
 * replica): reads land on the replica (pg_is_in_recovery() / server_id of
 * the connection that answered), a fork that wrote reads the primary (its
 * own writes), so do transactions and primary-only forks; the replica
 * stopped, reads go to the primary with no error; back, it is used again.
 * Which server answered is read through an entity on a view that says so.
 * The configuration side (file, environment, shown settings) runs on SQLite
 * files without servers.
 */
#include "config.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <dlfcn.h>
#include <unistd.h>

#include <emhost/emhost.h>

#include "../fixture.h"
#include "../tap.h"

/* One row: standby = 1 when the server that answers is the replica. */
typedef struct who {
	int64_t id;
	int64_t standby;
} who;
static const emh_field who_fields[] = {
	EMH_FIELD(who, id, EMH_T_INT64, EMH_F_PK),
	EMH_FIELD(who, standby, EMH_T_INT64, 0),
};
static const emh_entity who_entity = EMH_ENTITY(who, "emh_rep_who", who_fields);

typedef struct item {
	int64_t id;
	const char *v;
} item;
static const emh_field item_fields[] = {
	EMH_FIELD(item, id, EMH_T_INT64, EMH_F_PK),
	EMH_FIELD(item, v, EMH_T_TEXT, 0),
};
static const emh_entity item_entity = EMH_ENTITY(item, "emh_rep_item", item_fields);

typedef struct server {
	const char *name;        /* pg, mysql */
	const char *url, *rurl;  /* primary, replica */
	const char *script;      /* scripts/servers/<script>.sh */
	const char *stop, *start; /* its commands for the replica alone */
	const char *setup;       /* DDL on the primary */
	const char *admin;       /* a URL of the replica that may pause its replay */
	const char *pause, *resume;
	bool lag;                /* the driver measures lag */
	bool lag_stopped_infinite; /* paused replication is reported as EMH_LAG_INFINITE */
} server;

static void sleep_ms(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* -1: the read failed; else who.standby of the server that answered in a fresh fork (opts may be NULL). */
static int who_answers_in(emh_host *h, const char *ctx, const emh_fork_opts *opts, emh_error *err)
{
	emh_em *em;
	if (emh_host_fork_opts(h, ctx, opts, &em, err))
		return -1;
	emh_repo *r;
	who *w = NULL;
	int rc = emh_em_repo(em, &who_entity, &r, err);
	if (!rc)
		rc = emh_repo_get(r, emh_v_int64(1), (void **)&w, err);
	int out = rc || !w ? -1 : (int)w->standby;
	emh_em_close(em);
	return out;
}

static int who_answers(emh_host *h, const emh_fork_opts *opts, emh_error *err)
{
	return who_answers_in(h, "r", opts, err);
}

/* In a fresh fork (opts may be NULL): 1 when item id is found with v, 0 when not found, -1 error. */
static int item_seen(emh_host *h, const emh_fork_opts *opts, int64_t id, const char *v, int *standby)
{
	emh_error err;
	emh_em *em;
	if (emh_host_fork_opts(h, "r", opts, &em, &err))
		return -1;
	emh_repo *r = fixture_repo(em, &item_entity), *rw = fixture_repo(em, &who_entity);
	item *it = NULL;
	who *w = NULL;
	int rc = emh_repo_get(r, emh_v_int64(id), (void **)&it, &err);
	int out = rc == EMH_ENOTFOUND ? 0 : rc ? -1 : strcmp(it->v, v) == 0;
	if (rc && rc != EMH_ENOTFOUND)
		diag("item %lld: %s", (long long)id, err.message);
	*standby = emh_repo_get(rw, emh_v_int64(1), (void **)&w, &err) == 0 ? (int)w->standby : -1;
	emh_em_close(em);
	return out;
}

static void admin(emh_host *h, const char *sql)
{
	emh_error err;
	emh_em *em = fixture_fork(h, "s");
	if (emh_em_execute(em, sql, &err))
		bail("on the replica: %s: %s", sql, err.message);
	emh_em_close(em);
}

/*
 * The causal token with the replica's replay paused: a fork opened with it
 * never reads older data (it reads the primary) while a fork without it
 * reads the stale replica; resumed, the token's forks read the replica.
 */
static void test_token(emh_host *h, const server *s)
{
	emh_error err;
	const char *kv[] = {"url", s->admin, NULL};
	if (emh_host_add_context(h, "s", kv, &err))
		bail("%s: the replica's own context: %s", s->name, err.message);
	admin(h, s->pause);
	emh_em *em = fixture_fork(h, "r");
	item *it = fixture_new(fixture_repo(em, &item_entity));
	it->id = 9;
	it->v = "nine";
	ok(emh_em_flush(em, &err) == 0, "%s: token: insert a row with the replica paused", s->name);
	char tok[256] = "";
	int rc = emh_em_token(em, tok, sizeof tok, &err);
	ok(rc == 0 && tok[0], "%s: emh_em_token after the flush (%s)", s->name, rc ? err.message : tok);
	emh_em_close(em);
	int standby = -1;
	int seen = item_seen(h, NULL, 9, "nine", &standby);
	ok(seen == 0 && standby == 1, "%s: token: without it a fork reads the paused replica, which lacks the row "
	   "(seen %d, standby %d)", s->name, seen, standby);
	emh_fork_opts after = {.after = tok};
	seen = item_seen(h, &after, 9, "nine", &standby);
	ok(seen == 1 && standby == 0, "%s: token: with it the fork reads the row, from the primary (seen %d, standby %d)",
	   s->name, seen, standby);
	if (s->lag) {
		/* measured lag: the paused standby falls behind while the primary commits */
		char rurl[2048];
		snprintf(rurl, sizeof rurl, "%s", s->rurl);
		const char *lkv[] = {"url", s->url, "replica_urls", rurl, "max_replica_lag_ms", "500", NULL};
		if (emh_host_add_context(h, "l", lkv, &err))
			bail("%s: a context with max_replica_lag_ms: %s", s->name, err.message);
		fixture_register(h, "l", &who_entity);
		sleep_ms(1200); /* the last replayed commit (before the pause) is older than 500 ms by now */
		is_int(who_answers_in(h, "l", NULL, &err), 0, "%s: lag: a replica further behind than max_replica_lag_ms "
		       "serves no reads", s->name);
		emh_replica_info *reps;
		size_t nr;
		if (emh_host_replicas(h, &reps, &nr, &err))
			bail("emh_host_replicas: %s", err.message);
		const emh_replica_info *li = NULL;
		for (size_t i = 0; i < nr; i++)
			if (strcmp(reps[i].context, "l") == 0)
				li = &reps[i];
		/* MariaDB's Seconds_Behind_Master is NULL with the SQL thread stopped: no bound */
		ok(li && li->lagging && li->lag_ms > 500 && (!s->lag_stopped_infinite || li->lag_ms == INT64_MAX),
		   "%s: lag: emh_host_replicas shows it lagging (lag_ms %lld)", s->name, li ? (long long)li->lag_ms : -2);
		free(reps);
	}
	admin(h, s->resume);
	if (s->lag) {
		int got = -1;
		for (int waited = 0; waited < 20000 && got != 1; waited += 100) {
			if ((got = who_answers_in(h, "l", NULL, &err)) != 1)
				sleep_ms(100);
		}
		is_int(got, 1, "%s: lag: caught up, the replica serves reads again", s->name);
	}
	for (int waited = 0; waited < 20000; waited += 100) {
		if ((seen = item_seen(h, &after, 9, "nine", &standby)) == 1 && standby == 1)
			break;
		sleep_ms(100);
	}
	ok(seen == 1 && standby == 1, "%s: token: replay resumed, the token's fork reads the row on the replica",
	   s->name);
	char small[2];
	em = fixture_fork(h, "r");
	is_int(emh_em_token(em, small, sizeof small, &err), EMH_EINVAL, "%s: a token buffer too small is EMH_EINVAL",
	       s->name);
	emh_em_close(em);
	emh_fork_opts bad = {.after = "not a position"};
	emh_fork_opts *bp = &bad;
	ok(who_answers(h, bp, &err) != 1, "%s: a malformed token never reads the replica", s->name);
}

/* Wait (bounded) until a fresh fork's read is answered by the replica (want 1). */
static int wait_for(emh_host *h, int want, int max_ms)
{
	emh_error err = {0};
	int got = -1;
	for (int waited = 0; waited <= max_ms; waited += 100) {
		if ((got = who_answers(h, NULL, &err)) == want)
			return got;
		sleep_ms(100);
	}
	diag("last answer %d: %s", got, err.message);
	return got;
}

static int run_script(const server *s, const char *cmd)
{
	const char *src = getenv("EMH_SRCDIR") ? getenv("EMH_SRCDIR") : ".";
	char line[2048];
	snprintf(line, sizeof line, "'%s/scripts/servers/%s.sh' %s '%s' >/dev/null", src, s->script, cmd,
		 getenv("EMH_TEST_STATE_DIR"));
	return system(line);
}

static emh_context_info ctx_info(emh_host *h) { return fixture_context_info(h, "r"); }

static void test_server(const fixture *fx, const server *s)
{
	char v1[2048], v2[2048];
	snprintf(v1, sizeof v1, "EMH_CONTEXT_R_URL=%s", s->url);
	snprintf(v2, sizeof v2, "EMH_CONTEXT_R_REPLICA_URLS=%s", s->rurl);
	const char *env[] = {v1, v2, "EMH_CONTEXT_R_CONNECT_TIMEOUT_MS=2000", NULL};
	emh_host *h;
	emh_error err;
	if (fixture_host(fx, env, &h, &err))
		bail("%s: host with a replica: %s", s->name, err.message);
	fixture_register(h, "r", &who_entity);
	fixture_register(h, "r", &item_entity);

	/* the tables, on the primary (a raw statement is a write: the fork stays there) */
	emh_em *em = fixture_fork(h, "r");
	if (emh_em_execute(em, s->setup, &err))
		bail("%s: setup: %s", s->name, err.message);
	emh_em_close(em);

	ok(wait_for(h, 1, 20000) == 1, "%s: a fork's read lands on the replica", s->name);
	emh_fork_opts prim = {.flags = EMH_FORK_PRIMARY};
	is_int(who_answers(h, &prim, &err), 0, "%s: a primary-only fork reads the primary", s->name);

	/* read your writes: after a flush the fork reads the primary */
	em = fixture_fork(h, "r");
	emh_repo *ri = fixture_repo(em, &item_entity), *rw = fixture_repo(em, &who_entity);
	who *w = NULL;
	int rc = emh_repo_get(rw, emh_v_int64(1), (void **)&w, &err);
	ok(rc == 0 && w && w->standby == 1, "%s: the fork's first read is the replica's", s->name);
	item *it = fixture_new(ri);
	it->id = 7;
	it->v = "seven";
	ok(emh_em_flush(em, &err) == 0, "%s: insert a row", s->name);
	item *back = NULL;
	rc = emh_repo_get(ri, emh_v_int64(7), (void **)&back, &err);
	ok(rc == 0 && back && strcmp(back->v, "seven") == 0, "%s: the fork reads its own write", s->name);
	emh_em_clear(em);
	w = NULL;
	rc = emh_repo_get(rw, emh_v_int64(1), (void **)&w, &err);
	ok(rc == 0 && w && w->standby == 0, "%s: after its write the fork reads the primary", s->name);
	emh_em_close(em);

	/* a transaction reads the primary */
	em = fixture_fork(h, "r");
	rw = fixture_repo(em, &who_entity);
	ok(emh_em_begin(em, &err) == 0, "%s: begin", s->name);
	w = NULL;
	rc = emh_repo_get(rw, emh_v_int64(1), (void **)&w, &err);
	ok(rc == 0 && w && w->standby == 0, "%s: inside a transaction the fork reads the primary", s->name);
	emh_em_rollback(em, &err);
	emh_em_close(em);

	test_token(h, s);

	/* the replica stopped: reads go to the primary, with no error */
	ok(run_script(s, s->stop) == 0, "%s: %s.sh %s", s->name, s->script, s->stop);
	int errors = 0, primary = 0;
	for (int i = 0; i < 10; i++) {
		int a = who_answers(h, NULL, &err);
		errors += a < 0;
		primary += a == 0;
		if (a < 0)
			diag("read %d: %s", i, err.message);
	}
	is_int(errors, 0, "%s: the replica down, no read fails", s->name);
	is_int(primary, 10, "%s: every read went to the primary", s->name);
	emh_context_info ci = ctx_info(h);
	ok(ci.up, "%s: the context itself stays up", s->name);
	emh_replica_info *reps;
	size_t nr;
	if (emh_host_replicas(h, &reps, &nr, &err))
		bail("emh_host_replicas: %s", err.message);
	const emh_replica_info *mine = NULL;
	for (size_t i = 0; i < nr; i++)
		if (strcmp(reps[i].context, "r") == 0)
			mine = &reps[i];
	ok(mine && !mine->up && mine->fallbacks >= 1 && mine->queries >= 1 && mine->last_error[0] &&
		   strstr(mine->where, ":********@"),
	   "%s: emh_host_replicas: down, its reads and fallbacks counted, why it is down, its URL masked (%s)",
	   s->name, mine ? mine->where : "missing");
	free(reps);

	ok(run_script(s, s->start) == 0, "%s: %s.sh %s", s->name, s->script, s->start);
	ok(wait_for(h, 1, 40000) == 1, "%s: the replica back, reads land on it again", s->name);

	emh_host_free(h);
}

/* The setting key of context name as emh_host_contexts shows it: value and origin; NULL when absent. */
static const emh_setting_info *shown(const emh_context_info *ci, const char *key)
{
	for (size_t i = 0; i < ci->nsettings; i++)
		if (strcmp(ci->settings[i].key, key) == 0)
			return &ci->settings[i];
	return NULL;
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (!f || fputs(text, f) < 0 || fclose(f) != 0)
		bail("cannot write %s", path);
}

/*
 * Configuration without servers: SQLite files, the primary's row says 0 and
 * the replica's 1, so the answer tells which file a read used.  The file's
 * replicas list (a URL and a pool of its own), the environment's list,
 * what emh_host_contexts shows (origins, secrets masked) and the keys a
 * replica may not set.
 */
static void test_config(const fixture *fx)
{
	char prim[1024], rep[1024], conf[1024], text[4096];
	fixture_path(fx, "primary.db", prim, sizeof prim);
	fixture_path(fx, "replica.db", rep, sizeof rep);
	fixture_path(fx, "emhost.conf", conf, sizeof conf);
	emh_error err;
	const char *files[2] = {prim, rep};
	for (int i = 0; i < 2; i++) { /* each file its own table and row */
		char url[1100], sql[256];
		snprintf(url, sizeof url, "sqlite://%s", files[i]);
		const char *kv[] = {"url", url, NULL};
		emh_host *h;
		if (fixture_host(fx, NULL, &h, &err) || emh_host_add_context(h, "r", kv, &err))
			bail("sqlite setup: %s", err.message);
		emh_em *em = fixture_fork(h, "r");
		snprintf(sql, sizeof sql, "CREATE TABLE emh_rep_who (id INTEGER PRIMARY KEY, standby INTEGER); "
			 "INSERT INTO emh_rep_who VALUES (1, %d)", i);
		if (emh_em_execute(em, sql, &err))
			bail("sqlite setup: %s", err.message);
		emh_em_close(em);
		emh_host_free(h);
	}
	snprintf(text, sizeof text,
		 "contexts = ( { name = \"r\"; url = \"sqlite://%s\";\n"
		 "  replicas = ( { url = \"sqlite://%s\"; pool = { max = 3; }; } ); } );\n", prim, rep);
	write_file(conf, text);
	static const char *const none[] = {NULL};
	emh_host_opts o = {.config_path = conf, .plugin_dir = fx->plugin_dir, .envp = none, .log_level = EMH_LOG_WARN};
	emh_host *h;
	int rc = emh_host_new(&o, &h, &err);
	ok(rc == 0, "config: a context with a replicas list starts");
	if (rc) {
		diag("%s", err.message);
		return;
	}
	fixture_register(h, "r", &who_entity);
	is_int(who_answers(h, NULL, &err), 1, "config: a fork reads the replica's file");
	emh_fork_opts prim_only = {.flags = EMH_FORK_PRIMARY};
	is_int(who_answers(h, &prim_only, &err), 0, "config: a primary-only fork reads the primary's file");
	emh_context_info *ci;
	size_t n;
	if (emh_host_contexts(h, &ci, &n, &err))
		bail("emh_host_contexts: %s", err.message);
	const emh_setting_info *u = shown(&ci[0], "replicas.1.url"), *pm = shown(&ci[0], "replicas.1.pool.max");
	ok(u && strstr(u->value, "replica.db") && strstr(u->origin, "emhost.conf:"),
	   "config: replicas.1.url shown with its origin (%s)", u ? u->origin : "missing");
	ok(pm && strcmp(pm->value, "3") == 0, "config: the replica's own pool.max is shown");
	emh_context_info_free(ci, n);
	emh_host_free(h);

	/* the environment's list, secrets masked */
	char v1[1100], v2[1200];
	snprintf(v1, sizeof v1, "EMH_CONTEXT_R_URL=sqlite://%s", prim);
	snprintf(v2, sizeof v2, "EMH_CONTEXT_R_REPLICA_URLS=sqlite://%s", rep);
	const char *env[] = {v1, v2, NULL};
	if (fixture_host(fx, env, &h, &err))
		bail("host from the environment: %s", err.message);
	fixture_register(h, "r", &who_entity);
	is_int(who_answers(h, NULL, &err), 1, "env: EMH_CONTEXT_R_REPLICA_URLS: a fork reads the replica");
	if (emh_host_contexts(h, &ci, &n, &err))
		bail("emh_host_contexts: %s", err.message);
	u = shown(&ci[0], "replica_urls");
	ok(u && strcmp(u->origin, "env EMH_CONTEXT_R_REPLICA_URLS") == 0, "env: replica_urls shown with its origin");
	emh_context_info_free(ci, n);
	emh_host_free(h);

	/* a replica's password is masked where it is shown */
	const char *envpw[] = {v1, "EMH_CONTEXT_R_REPLICA_URLS=postgres://u:s3cr3t@127.0.0.1:1/db", NULL};
	if (fixture_host(fx, envpw, &h, &err) == 0) {
		ok(0, "env: a postgres replica of a sqlite context is refused");
		emh_host_free(h);
	} else {
		ok(strstr(err.message, "driver") != NULL && !strstr(err.message, "s3cr3t"),
		   "env: a replica of another driver is refused, its password unsaid (%s)", err.message);
	}
	/* what only the context may set */
	snprintf(text, sizeof text,
		 "contexts = ( { name = \"r\"; url = \"sqlite://%s\"; replicas = ( { schema = \"sync\"; } ); } );\n", prim);
	write_file(conf, text);
	rc = emh_host_new(&o, &h, &err);
	ok(rc == EMH_ECONFIG && strstr(err.message, "replicas.1.schema"), "config: a replica may not set schema (%s)",
	   rc ? err.message : "started");
	if (!rc)
		emh_host_free(h);
}

/*
 * Two forks of ctx open at once, each reading: the first takes the
 * replica's connection and keeps it; what answered the second (1 the
 * replica, 0 the primary: the replica's pool had no room).
 */
static int second_fork_reads(emh_host *h, const char *ctx)
{
	emh_error err;
	emh_em *a = NULL;
	int got = -1;
	if (emh_host_fork(h, ctx, &a, &err) == 0) {
		emh_repo *r = fixture_repo(a, &who_entity);
		who *w = NULL;
		/* -2: the first read did not land on the replica (skipped for its back-off) */
		got = emh_repo_get(r, emh_v_int64(1), (void **)&w, &err) == 0 && w && w->standby == 1
			      ? who_answers_in(h, ctx, NULL, &err)
			      : -2;
	}
	emh_em_close(a);
	return got;
}

/* A host started from the configuration text, written to conf. */
static emh_host *host_from(const fixture *fx, const char *conf, const char *text, const char *what)
{
	static const char *const none[] = {NULL};
	emh_host_opts o = {.config_path = conf, .plugin_dir = fx->plugin_dir, .envp = none, .log_level = EMH_LOG_ERROR};
	emh_host *h;
	emh_error err;
	write_file(conf, text);
	if (emh_host_new(&o, &h, &err))
		bail("%s: host: %s", what, err.message);
	return h;
}

static int reload_with(emh_host *h, const char *conf, const char *text, char *sum, size_t cap, emh_error *err)
{
	static const char *const none[] = {NULL};
	write_file(conf, text);
	emh_reload_opts ro = {.envp = none};
	return emh_host_reload(h, &ro, sum, cap, err);
}

/*
 * A reload reaches the replicas' pools: r's replica inherits its pool from
 * r (max 1: a second fork finds no room and reads the primary), q's has a
 * pool.max of its own.  r's pool.max 1 -> 2 applies to r's replica too, not
 * to q's; q's replicas.1.pool.max 1 -> 2 applies to q's replica;
 * max_replica_lag_ms applies; a replica moved, added or given a pool key
 * it did not have is refused, saying so, with nothing changed.
 */
static void test_reload(const fixture *fx)
{
	char prim[1024], rep[1024], conf[1024], text[8192], sum[512];
	fixture_path(fx, "primary.db", prim, sizeof prim);
	fixture_path(fx, "replica.db", rep, sizeof rep);
	fixture_path(fx, "reload.conf", conf, sizeof conf);
	static const char fmt[] =
		"default_context = \"r\";\n"
		"contexts = ( { name = \"r\"; url = \"sqlite://%s\"; pool = { max = %d; acquire_timeout_ms = 100; };\n"
		"    max_replica_lag_ms = %d; replicas = ( { url = \"sqlite://%s\"; } ); },\n"
		"  { name = \"q\"; url = \"sqlite://%s\"; pool = { max = %d; acquire_timeout_ms = 100; };\n"
		"    replicas = ( { url = \"sqlite://%s\"; pool = { max = %d; }; } ); } );\n";
	snprintf(text, sizeof text, fmt, prim, 1, 0, rep, prim, 1, rep, 1);
	emh_host *h = host_from(fx, conf, text, "reload");
	emh_error err;
	fixture_register(h, "r", &who_entity);
	fixture_register(h, "q", &who_entity);
	is_int(second_fork_reads(h, "r"), 0, "reload: r's replica inherits pool.max 1: a second fork reads the primary");
	/* busy is not failing: the replica is neither marked down nor skipped for a back-off */
	is_int(second_fork_reads(h, "r"), 0, "a replica with no connection free is used again by the next fork at once");
	emh_replica_info *ri = NULL;
	size_t nr = 0;
	bool up = false;
	if (emh_host_replicas(h, &ri, &nr, &err) == 0)
		for (size_t i = 0; i < nr; i++)
			up |= strcmp(ri[i].context, "r") == 0 && ri[i].up && ri[i].errors == 0;
	free(ri);
	ok(up, "a replica with no connection free is not marked down and counts no error");

	snprintf(text, sizeof text, fmt, prim, 2, 500, rep, prim, 2, rep, 1);
	int rc = reload_with(h, conf, text, sum, sizeof sum, &err);
	is_int(rc, 0, "reload: r's pool.max 1 -> 2, q's 1 -> 2, r's max_replica_lag_ms 0 -> 500 (%s)",
	       rc ? err.message : sum);
	like_str(sum, "pool of r replica 1: max 1 -> 2", "reload: the summary names the replica's pool");
	like_str(sum, "max_replica_lag_ms of r: 0 -> 500", "reload: and max_replica_lag_ms");
	ok(!strstr(sum, "q replica"), "reload: q's replica keeps its own pool.max (%s)", sum);
	is_int(second_fork_reads(h, "r"), 1, "reload: r's replica pool took max 2: the second fork reads it");
	is_int(second_fork_reads(h, "q"), 0, "reload: q's replica pool is still max 1");
	const char *lag = emh_host_context_setting(h, "r", "max_replica_lag_ms");
	is_str(lag ? lag : "(unset)", "500", "reload: r's max_replica_lag_ms shows the new value");

	snprintf(text, sizeof text, fmt, prim, 2, 500, rep, prim, 2, rep, 2);
	rc = reload_with(h, conf, text, sum, sizeof sum, &err);
	ok(rc == 0 && strstr(sum, "pool of q replica 1: max 1 -> 2") && !strstr(sum, "pool of q:"),
	   "reload: q's replicas.1.pool.max 1 -> 2 (%s)", rc ? err.message : sum);
	is_int(second_fork_reads(h, "q"), 1, "reload: q's replica pool took max 2: the second fork reads it");

	/* what a reload refuses: the replica list, a replica's URL, a pool key a replica did not have */
	char other[1100];
	snprintf(other, sizeof other, "%s-other", rep);
	const char *bad[3];
	char t1[8192], t2[8192], t3[8192];
	snprintf(t1, sizeof t1, fmt, prim, 2, 500, other, prim, 2, rep, 2);
	snprintf(t2, sizeof t2,
		 "default_context = \"r\";\n"
		 "contexts = ( { name = \"r\"; url = \"sqlite://%s\"; pool = { max = 2; acquire_timeout_ms = 100; };\n"
		 "    max_replica_lag_ms = 500; replicas = ( { url = \"sqlite://%s\"; }, { url = \"sqlite://%s\"; } ); },\n"
		 "  { name = \"q\"; url = \"sqlite://%s\"; pool = { max = 2; acquire_timeout_ms = 100; };\n"
		 "    replicas = ( { url = \"sqlite://%s\"; pool = { max = 2; }; } ); } );\n", prim, rep, rep, prim, rep);
	snprintf(t3, sizeof t3,
		 "default_context = \"r\";\n"
		 "contexts = ( { name = \"r\"; url = \"sqlite://%s\"; pool = { max = 2; acquire_timeout_ms = 100; };\n"
		 "    max_replica_lag_ms = 500; replicas = ( { url = \"sqlite://%s\"; pool = { min = 1; }; } ); },\n"
		 "  { name = \"q\"; url = \"sqlite://%s\"; pool = { max = 2; acquire_timeout_ms = 100; };\n"
		 "    replicas = ( { url = \"sqlite://%s\"; pool = { max = 2; }; } ); } );\n", prim, rep, prim, rep);
	bad[0] = t1, bad[1] = t2, bad[2] = t3;
	static const char *const why[] = {"replicas.1.url cannot change", "replicas.2.url cannot change",
					  "replicas.1.pool.min cannot be set or unset"};
	static const char *const what[] = {"a replica's URL", "a replica added", "a pool key the replica inherited"};
	for (int i = 0; i < 3; i++) {
		rc = reload_with(h, conf, bad[i], sum, sizeof sum, &err);
		ok(rc == EMH_ECONFIG && strstr(err.message, why[i]), "reload: %s is refused, saying so (%s)", what[i],
		   rc ? err.message : sum);
	}
	is_int(second_fork_reads(h, "r"), 1, "reload: after the refusals r's replica is still in use");
	emh_host_free(h);
}

/*
 * A fork's reads never go back in time (docs/replicas.md): a read the
 * primary answered in the replica's place (its only connection busy) keeps
 * the rest of the fork on the primary, though the replica is free by its
 * next read.  Before, that read went to the replica, which may be behind.
 */
static void test_monotonic(const fixture *fx)
{
	char prim[1024], rep[1024], conf[1024], text[4096];
	fixture_path(fx, "primary.db", prim, sizeof prim);
	fixture_path(fx, "replica.db", rep, sizeof rep);
	fixture_path(fx, "monotonic.conf", conf, sizeof conf);
	snprintf(text, sizeof text,
		 "contexts = ( { name = \"r\"; url = \"sqlite://%s\";\n"
		 "  replicas = ( { url = \"sqlite://%s\"; pool = { max = 1; }; } ); } );\n", prim, rep);
	emh_host *h = host_from(fx, conf, text, "monotonic");
	emh_error err;
	fixture_register(h, "r", &who_entity);
	/* b read-only: no identity map, so its second get of the key reads again */
	emh_fork_opts ro = {.flags = EMH_FORK_READONLY};
	emh_em *a = fixture_fork(h, "r"), *b = NULL;
	if (emh_host_fork_opts(h, "r", &ro, &b, &err))
		bail("monotonic: fork: %s", err.message);
	emh_repo *ra = fixture_repo(a, &who_entity), *rb = fixture_repo(b, &who_entity);
	who *w = NULL;
	int rc = emh_repo_get(ra, emh_v_int64(1), (void **)&w, &err);
	ok(rc == 0 && w && w->standby == 1, "monotonic: fork a reads the replica and keeps its one connection");
	w = NULL;
	rc = emh_repo_get(rb, emh_v_int64(1), (void **)&w, &err);
	ok(rc == 0 && w && w->standby == 0, "monotonic: fork b finds the replica busy and reads the primary");
	emh_em_close(a);
	w = NULL;
	rc = emh_repo_get(rb, emh_v_int64(1), (void **)&w, &err);
	ok(rc == 0 && w && w->standby == 0,
	   "monotonic: the replica free again, fork b still reads the primary (never back in time; standby %d)",
	   rc == 0 && w ? (int)w->standby : -1);
	emh_em_close(b);
	is_int(who_answers(h, NULL, &err), 1, "monotonic: a new fork reads the replica again");
	emh_host_free(h);
}

/*
 * libpq's own failover: a two-host URL whose first host is down (a closed
 * port) connects to the second; target_session_attrs=read-write on a URL
 * listing the standby first finds the primary.
 */
/* Warnings a host logged that contain what (test_lag_unmeasured's sink). */
typedef struct warn_count {
	pthread_mutex_t mu;
	const char *what;
	int n;
} warn_count;

static void count_warn(void *ud, int level, const char *context, const char *msg)
{
	warn_count *w = ud;
	(void)context;
	if (level > EMH_LOG_WARN || !strstr(msg, w->what))
		return;
	pthread_mutex_lock(&w->mu);
	w->n++;
	pthread_mutex_unlock(&w->mu);
}

/*
 * A replica whose lag cannot be measured (its user may not run SHOW SLAVE
 * STATUS: no SLAVE MONITOR grant) serves no reads, and says why once, not
 * at every measurement (every 500 ms: before the fix, a warning each time).
 * The user exists on the replica only (made there, nothing replicates back).
 */
static void test_lag_unmeasured(const fixture *fx, const char *url, const char *rurl, const char *radmin)
{
	emh_error err;
	emh_host *a;
	const char *aenv[] = {NULL};
	emh_host_opts ao = {.plugin_dir = fx->plugin_dir, .envp = aenv, .log_level = EMH_LOG_ERROR};
	if (emh_host_new(&ao, &a, &err) || emh_host_add_context(a, "s", (const char *[]){"url", radmin, NULL}, &err))
		bail("the replica's admin context: %s", err.message);
	admin(a, "CREATE USER IF NOT EXISTS 'emh_nomon'@'127.0.0.1' IDENTIFIED BY 'nomon-pw-1'");
	admin(a, "GRANT SELECT ON emh_test.* TO 'emh_nomon'@'127.0.0.1'");
	emh_host_free(a);

	/* rurl with the user emh_nomon: mysql://USER:PW@HOST... */
	char nurl[2048];
	const char *at = strchr(rurl, '@');
	if (!at || strncmp(rurl, "mysql://", 8) != 0)
		bail("EMH_TEST_MYSQL_REPLICA_URL has no user part: cannot make emh_nomon's");
	snprintf(nurl, sizeof nurl, "mysql://emh_nomon:nomon-pw-1%s", at);

	warn_count w = {.mu = PTHREAD_MUTEX_INITIALIZER, .what = "its lag cannot be measured"};
	const char *env[] = {NULL};
	emh_host_opts o = {.plugin_dir = fx->plugin_dir, .envp = env, .log = count_warn, .log_ud = &w,
			   .log_level = EMH_LOG_WARN};
	emh_host *h;
	const char *kv[] = {"url", url, "replica_urls", nurl, "max_replica_lag_ms", "500", NULL};
	if (emh_host_new(&o, &h, &err) || emh_host_add_context(h, "n", kv, &err))
		bail("a context whose replica cannot measure its lag: %s", err.message);
	fixture_register(h, "n", &who_entity);
	/* 1.6 s of reads: four measurements due (one per 500 ms), each failing */
	int primary = 0, reads = 0;
	for (int i = 0; i < 16; i++, sleep_ms(100), reads++)
		primary += who_answers_in(h, "n", NULL, &err) == 0;
	is_int(primary, reads, "mysql: lag unmeasured: every read is served by the primary");
	pthread_mutex_lock(&w.mu);
	int n = w.n;
	pthread_mutex_unlock(&w.mu);
	is_int(n, 1, "mysql: lag unmeasured: said once in 1.6 s, not at every measurement");
	emh_host_free(h);
}

static void test_multihost(const fixture *fx, const char *url, const char *standby_url)
{
	char user[128], pw[128], host[128], port[16], db[128], sport[16] = "";
	const char *p = strstr(url, "://");
	if (!p || sscanf(p + 3, "%127[^:]:%127[^@]@%127[^:]:%15[^/]/%127[^?]", user, pw, host, port, db) != 5)
		bail("cannot read the test server's URL");
	const char *sp = standby_url ? strrchr(standby_url, ':') : NULL;
	if (sp)
		sscanf(sp + 1, "%15[0-9]", sport);
	char two[1024], rw[1024], v1[1100], v2[1100];
	/* port 1: nothing listens there (a privileged port, never a test server) */
	snprintf(two, sizeof two, "postgres://%s:%s@%s:1,%s:%s/%s", user, pw, host, host, port, db);
	snprintf(rw, sizeof rw, "postgres://%s:%s@%s:%s,%s:%s/%s?target_session_attrs=read-write", user, pw, host,
		 sport[0] ? sport : "1", host, port, db);
	snprintf(v1, sizeof v1, "EMH_CONTEXT_R_URL=%s", two);
	snprintf(v2, sizeof v2, "EMH_CONTEXT_W_URL=%s", rw);
	const char *env[] = {v1, v2, "EMH_DEFAULT_CONTEXT=r", NULL};
	emh_host *h;
	emh_error err;
	if (fixture_host(fx, env, &h, &err))
		bail("multi-host URLs: %s", err.message);
	fixture_register(h, "r", &who_entity);
	fixture_register(h, "w", &who_entity);
	int ok_forks = 0;
	for (int i = 0; i < 3; i++)
		ok_forks += who_answers_in(h, "r", NULL, &err) == 0;
	is_int(ok_forks, 3, "libpq two-host URL, the first host down: every fork reads on the second");
	is_int(who_answers_in(h, "w", NULL, &err), 0,
	       "libpq target_session_attrs=read-write with the standby listed first: the primary answers");
	emh_host_free(h);
}

int main(void)
{
	/*
	 * libpq stays loaded to the end, as in a process that never frees its
	 * host: it (or a library it loads) keeps process-wide state that is
	 * referenced only from its own data, so once the plugin's last host is
	 * freed and libpq unloaded, LeakSanitizer would report that state
	 * (with libpq kept loaded it reports nothing).
	 */
	(void)dlopen("libpq.so.5", RTLD_NOW | RTLD_NODELETE);
	fixture fx;
	fixture_init(&fx, "replicas");
	test_config(&fx);
	test_reload(&fx);
	test_monotonic(&fx);
	server servers[] = {
		{.name = "pg", .url = getenv("EMH_TEST_PG_URL"), .rurl = getenv("EMH_TEST_PG_STANDBY_URL"),
		 .script = "pg", .stop = "standby-stop", .start = "standby-start",
		 .setup = "DROP TABLE IF EXISTS emh_rep_item; CREATE TABLE emh_rep_item (id bigint PRIMARY KEY, v text); "
			  "CREATE OR REPLACE VIEW emh_rep_who AS SELECT 1::bigint AS id, "
			  "pg_is_in_recovery()::int::bigint AS standby",
		 .admin = getenv("EMH_TEST_PG_STANDBY_URL"), .pause = "SELECT pg_wal_replay_pause()",
		 .resume = "SELECT pg_wal_replay_resume()", .lag = true},
		{.name = "mysql", .url = getenv("EMH_TEST_MYSQL_URL"), .rurl = getenv("EMH_TEST_MYSQL_REPLICA_URL"),
		 .script = "mariadb", .stop = "replica-stop", .start = "replica-start",
		 .setup = "DROP TABLE IF EXISTS emh_rep_item; CREATE TABLE emh_rep_item (id BIGINT PRIMARY KEY, v TEXT); "
			  "CREATE OR REPLACE FUNCTION emh_rep_standby() RETURNS BIGINT NOT DETERMINISTIC "
			  "RETURN @@server_id = 2; "
			  "CREATE OR REPLACE VIEW emh_rep_who AS SELECT CAST(1 AS SIGNED) AS id, emh_rep_standby() AS standby",
		 .admin = getenv("EMH_TEST_MYSQL_REPLICA_ADMIN_URL"), .pause = "STOP SLAVE SQL_THREAD",
		 .resume = "START SLAVE SQL_THREAD", .lag = true, .lag_stopped_infinite = true},
	};
	for (size_t i = 0; i < sizeof servers / sizeof *servers; i++) {
		const server *s = &servers[i];
		if (!s->url || !s->rurl || !s->admin || !getenv("EMH_TEST_STATE_DIR")) {
			char why[160];
			snprintf(why, sizeof why, "%s replica: the test servers with their replicas are not running "
				 "(scripts/test-servers.sh start)", s->name);
			need_server(strcmp(s->name, "pg") == 0 ? 27 : 27, why);
			continue;
		}
		test_server(&fx, s);
		if (strcmp(s->name, "pg") == 0)
			test_multihost(&fx, s->url, s->rurl);
		else
			test_lag_unmeasured(&fx, s->url, s->rurl, s->admin);
	}
	fixture_release(&fx);
	return done_testing();
}
