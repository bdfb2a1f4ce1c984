/* SPDX-License-Identifier: MIT */
/*
 * tests/replicas/t_daemon.c: emhostd with a PostgreSQL context that has the
 * test standby as its replica: a write request answers with X-Emhost-After;
 * with the standby's replay paused, a read request carrying that token
 * sees the write (it reads the primary) while one without it reads the
 * stale standby; /_emhost/metrics and /_emhost/health show the replica.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <emhost/emhost.h>

#include "../daemon/dtest.h"
#include "../tap.h"

static void sleep_ms(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* A raw request with an optional X-Emhost-After header; the answer in out. */
static long request(const dtest_daemon *d, const char *method, const char *path, const char *body,
		    const char *after, dtest_resp *out)
{
	char req[2048];
	snprintf(req, sizeof req,
		 "%s %s HTTP/1.1\r\nHost: t\r\n%s%s%sContent-Length: %zu\r\nConnection: close\r\n\r\n%s", method, path,
		 after ? "X-Emhost-After: " : "", after ? after : "", after ? "\r\n" : "", body ? strlen(body) : 0,
		 body ? body : "");
	memset(out, 0, sizeof *out);
	return dtest_raw(d->url, req, strlen(req), out);
}

/* The body of GET /good/count as a number (-1 on failure). */
static long count(const dtest_daemon *d, const char *after)
{
	dtest_resp r;
	long st = request(d, "GET", "/good/count", NULL, after, &r);
	long n = st == 200 && r.body ? strtol(r.body, NULL, 10) : -1;
	dtest_resp_free(&r);
	return n;
}

/* Pause or resume the standby's replay, as the test role, through a host of our own. */
static void replay(const char *standby_url, const char *fn)
{
	static const char *const none[] = {NULL};
	char plugins[1024], sql[64];
	snprintf(plugins, sizeof plugins, "%s/plugins-build", dtest_builddir());
	emh_host_opts o = {.plugin_dir = plugins, .envp = none, .log_level = EMH_LOG_WARN};
	emh_host *h;
	emh_error err;
	const char *kv[] = {"url", standby_url, NULL};
	emh_em *em;
	snprintf(sql, sizeof sql, "SELECT %s()", fn);
	if (emh_host_new(&o, &h, &err) || emh_host_add_context(h, "s", kv, &err) || emh_host_fork(h, "s", &em, &err))
		bail("standby: %s", err.message);
	if (emh_em_execute(em, sql, &err))
		bail("%s on the standby: %s", fn, err.message);
	emh_em_close(em);
	emh_host_free(h);
}

int main(void)
{
	const char *url = getenv("EMH_TEST_PG_URL"), *standby = getenv("EMH_TEST_PG_STANDBY_URL");
	if (!url || !standby) {
		need_server(10, "emhostd with a replica: the PostgreSQL test server and its standby are not running");
		return done_testing();
	}
	char dir[256], svc[1024], conf[4096];
	dtest_tmpdir(dir, sizeof dir, "replicas-daemon");
	snprintf(conf, sizeof conf,
		 "plugin_dir = \"%s/plugins-build\";\n"
		 "service_dir = \"%s\";\n"
		 "contexts = (\n"
		 "  { name = \"default\"; url = \"%s\"; schema = \"sync\"; pool = { max = 2; };\n"
		 "    replicas = ( { url = \"%s\"; pool = { max = 2; }; } ); },\n"
		 "  { name = \"analytics\"; driver = \"sqlite\"; path = \"%s/analytics.db\"; schema = \"sync\"; }\n"
		 ");\n"
		 "services = ( { name = \"good\"; module = \"fx_good\"; } );\n",
		 dtest_builddir(), dtest_service_dir(dir, svc, sizeof svc), url, standby, dir);
	dtest_daemon d;
	if (dtest_start(&d, dir, conf, NULL) != 0)
		bail("emhostd did not start");

	dtest_resp r;
	long st = request(&d, "POST", "/good/add?flush=1", "first", NULL, &r);
	ok(st == 201, "a write request succeeds (%ld)", st);
	ok(strncmp(r.emh_after, "default=", 8) == 0, "it answers with X-Emhost-After naming the context (%s)",
	   r.emh_after);
	char tok1[256];
	snprintf(tok1, sizeof tok1, "%s", r.emh_after);
	dtest_resp_free(&r);
	/* the rows as the primary has them (the table keeps earlier runs' rows), then the standby caught up */
	long want = -1, n = -1;
	for (int waited = 0; waited < 20000 && want < 1; waited += 100)
		if ((want = count(&d, tok1)) < 1)
			sleep_ms(100);
	for (int waited = 0; waited < 20000 && n != want; waited += 100)
		if ((n = count(&d, NULL)) != want)
			sleep_ms(100);
	ok(want >= 1 && n == want, "a read request sees the row once the standby replayed it (%ld of %ld)", n, want);
	st = request(&d, "GET", "/good/count", NULL, NULL, &r);
	ok(st == 200 && !r.emh_after[0], "a read request answers with no token");
	dtest_resp_free(&r);

	replay(standby, "pg_wal_replay_pause");
	st = request(&d, "POST", "/good/add?flush=1", "second", NULL, &r);
	char tok[256];
	snprintf(tok, sizeof tok, "%s", r.emh_after);
	ok(st == 201 && tok[0], "a write with the standby paused, its token %s", tok);
	dtest_resp_free(&r);
	long stale = count(&d, NULL), fresh = count(&d, tok);
	ok(stale == want && fresh == want + 1, "with the token the read sees the write, without it the paused standby "
	   "does not (with %ld, without %ld, before the write %ld)", fresh, stale, want);
	replay(standby, "pg_wal_replay_resume");

	CURL *cu = dtest_curl();
	st = dtest_http(cu, d.url, "GET", "/_emhost/metrics", NULL, 0, false, &r);
	double q = st == 200 ? dtest_metric(r.body, "emhost_replica_queries_total{context=\"default\",replica=\"1\"}") : -1;
	double s = st == 200 ? dtest_metric(r.body, "emhost_replica_stale_total{context=\"default\",replica=\"1\"}") : -1;
	ok(q >= 1, "metrics: the replica's reads are counted (%g)", q);
	ok(s >= 1, "metrics: the fork whose token it had not replayed is counted (%g)", s);
	dtest_resp_free(&r);
	st = dtest_http(cu, d.url, "GET", "/_emhost/health", NULL, 0, false, &r);
	json_t *j = st == 200 ? dtest_json(&r) : NULL;
	json_t *reps = j ? json_object_get(json_object_get(json_object_get(j, "contexts"), "default"), "replicas") : NULL;
	json_t *r0 = reps ? json_array_get(reps, 0) : NULL;
	const char *status = r0 ? json_string_value(json_object_get(r0, "status")) : NULL;
	const char *where = r0 ? json_string_value(json_object_get(r0, "where")) : NULL;
	ok(status && strcmp(status, "up") == 0, "health: the replica is listed up under its context (%s)",
	   status ? status : "missing");
	ok(where && strstr(where, ":********@"), "health: its URL with the password masked (%s)", where ? where : "");
	json_decref(j);
	dtest_resp_free(&r);
	curl_easy_cleanup(cu);

	dtest_stop(&d, 15, 10000);
	dtest_rmtree(dir);
	return done_testing();
}
