/* SPDX-License-Identifier: MIT */
/*
 * tests/daemon/t_load.c: 16 concurrent clients x 2,000 requests mixed across
 * users, analytics and profile on SQLite, with pools (max 3) smaller than the
 * client count.  Every response is checked; a monitor polls /_emhost/metrics
 * so that no pool ever holds more than its max; afterwards the rows are
 * counted through the library and must match the requests made; emhostd
 * must stop with status 0 (under --enable-sanitizers that includes
 * LeakSanitizer's verdict; EMH_TEST_DAEMON_WRAP can add valgrind).
 *
 * EMH_LOAD_CLIENTS / EMH_LOAD_REQUESTS change the shape (e.g. under valgrind).
 */
#include "config.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <emhost/emhost.h>

#include "../../services/common/entities.h"
#include "../tap.h"
#include "dtest.h"

#define POOL_MAX 3
#define NTYPES 3

static dtest_daemon d;
static int nclients = 16, nrequests = 2000;
static _Atomic long bad, done_requests, users_made, events_made, type_made[NTYPES];
static _Atomic bool load_over;
static _Atomic int max_conns[2], max_waiting[2];

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void failure(int client, int i, const char *what, const dtest_resp *r)
{
	long n = atomic_fetch_add(&bad, 1);
	if (n < 10)
		diag("client %d request %d: %s: status %ld %s %.200s", client, i, what, r->status, r->curl_error,
		     r->body ? r->body : "");
}

static void *client(void *arg)
{
	int cn = (int)(intptr_t)arg;
	CURL *c = dtest_curl();
	char body[256], path[128], email[64];
	long long uid = 0;
	dtest_resp r;
	for (int i = 0; i < nrequests; i++) {
		json_t *j = NULL;
		const char *type = NULL;
		bool good = false;
		switch (i % 5) {
		case 0:
			snprintf(email, sizeof email, "u%d-%d@load.test", cn, i);
			snprintf(body, sizeof body, "{\"name\":\"user %d-%d\",\"email\":\"%s\"}", cn, i, email);
			dtest_http(c, d.url, "POST", "/users", body, strlen(body), false, &r);
			j = dtest_json(&r);
			uid = dtest_jint(j, "id", NULL);
			good = r.status == 201 && uid > 0 && dtest_jstr(j, "email", NULL) &&
			       strcmp(dtest_jstr(j, "email", NULL), email) == 0;
			if (good)
				atomic_fetch_add(&users_made, 1);
			break;
		case 1:
			snprintf(path, sizeof path, "/users/%lld", uid);
			dtest_http(c, d.url, "GET", path, NULL, 0, false, &r);
			j = dtest_json(&r);
			good = r.status == 200 && dtest_jint(j, "id", NULL) == uid && dtest_jstr(j, "email", NULL) &&
			       strcmp(dtest_jstr(j, "email", NULL), email) == 0;
			break;
		case 2:
			type = cn % NTYPES == 0 ? "click" : cn % NTYPES == 1 ? "view" : "buy";
			snprintf(body, sizeof body, "{\"user_id\":%lld,\"type\":\"%s\"}", uid, type);
			dtest_http(c, d.url, "POST", "/analytics/events", body, strlen(body), false, &r);
			j = dtest_json(&r);
			good = r.status == 201 && dtest_jint(j, "id", NULL) > 0 && dtest_jint(j, "user_id", NULL) == uid;
			if (good) {
				atomic_fetch_add(&events_made, 1);
				atomic_fetch_add(&type_made[cn % NTYPES], 1);
			}
			break;
		case 3:
			snprintf(path, sizeof path, "/analytics/events?user_id=%lld", uid);
			dtest_http(c, d.url, "GET", path, NULL, 0, false, &r);
			j = dtest_json(&r);
			good = r.status == 200 && json_array_size(json_object_get(j, "events")) == 1 &&
			       dtest_jint(json_array_get(json_object_get(j, "events"), 0), "user_id", NULL) == uid;
			break;
		case 4:
			snprintf(path, sizeof path, "/profile/%lld", uid);
			dtest_http(c, d.url, "GET", path, NULL, 0, false, &r);
			j = dtest_json(&r);
			good = r.status == 200 && dtest_jint(j, "user", "id", NULL) == uid &&
			       dtest_jint(j, "event_count", NULL) == 1;
			break;
		}
		if (!good)
			failure(cn, i, i % 5 == 0 ? "POST /users" : i % 5 == 1 ? "GET /users/id" : i % 5 == 2 ? "POST event"
				: i % 5 == 3 ? "GET events" : "GET profile", &r);
		json_decref(j);
		dtest_resp_free(&r);
		atomic_fetch_add(&done_requests, 1);
	}
	curl_easy_cleanup(c);
	return NULL;
}

/* Poll the metrics: connections open (in use + idle) and waiters per context. */
static void *monitor(void *arg)
{
	(void)arg;
	CURL *c = dtest_curl();
	const char *ctx[2] = {"default", "analytics"};
	while (!atomic_load(&load_over)) {
		dtest_resp r;
		if (dtest_http(c, d.url, "GET", "/_emhost/metrics", NULL, 0, false, &r) == 200) {
			for (int k = 0; k < 2; k++) {
				char p1[96], p2[96], p3[96];
				snprintf(p1, sizeof p1, "emhost_pool_in_use{context=\"%s\"}", ctx[k]);
				snprintf(p2, sizeof p2, "emhost_pool_idle{context=\"%s\"}", ctx[k]);
				snprintf(p3, sizeof p3, "emhost_pool_waiting{context=\"%s\"}", ctx[k]);
				int open = (int)(dtest_metric(r.body, p1) + dtest_metric(r.body, p2));
				int waiting = (int)dtest_metric(r.body, p3);
				if (open > atomic_load(&max_conns[k]))
					atomic_store(&max_conns[k], open);
				if (waiting > atomic_load(&max_waiting[k]))
					atomic_store(&max_waiting[k], waiting);
			}
		}
		dtest_resp_free(&r);
		struct timespec ts = {0, 20 * 1000000};
		nanosleep(&ts, NULL);
	}
	curl_easy_cleanup(c);
	return NULL;
}

/* Count the rows through the library, on the files emhostd wrote. */
static void count_rows(const char *dir)
{
	char conf[1024], path[512], plug[600];
	snprintf(plug, sizeof plug, "%s/plugins-build", dtest_builddir());
	snprintf(path, sizeof path, "%s/count.conf", dir);
	snprintf(conf, sizeof conf,
		 "contexts = ( { name = \"default\"; driver = \"sqlite\"; path = \"%s/app.db\"; },\n"
		 "             { name = \"analytics\"; driver = \"sqlite\"; path = \"%s/analytics.db\"; } );\n",
		 dir, dir);
	FILE *f = fopen(path, "w");
	fputs(conf, f);
	fclose(f);
	emh_host_opts o = {.config_path = path, .plugin_dir = plug};
	emh_host *h;
	emh_error err;
	if (emh_host_new(&o, &h, &err) != 0) {
		ok(0, "library host on the daemon's files: %s", err.message);
		skip(1 + NTYPES, "no host");
		return;
	}
	emh_host_register_entity(h, "default", &user_entity, &err);
	emh_host_register_entity(h, "analytics", &event_entity, &err);
	emh_em *em;
	emh_repo *repo;
	int64_t n = -1;
	if (emh_host_fork(h, "default", &em, &err) == 0 && emh_em_repo(em, &user_entity, &repo, &err) == 0)
		emh_repo_count(repo, NULL, &n, &err);
	is_int(n, atomic_load(&users_made), "users rows = users created (%ld)", atomic_load(&users_made));
	emh_em_close(em);
	n = -1;
	if (emh_host_fork(h, "analytics", &em, &err) == 0 && emh_em_repo(em, &event_entity, &repo, &err) == 0)
		emh_repo_count(repo, NULL, &n, &err);
	is_int(n, atomic_load(&events_made), "events rows = events created (%ld)", atomic_load(&events_made));
	const char *types[NTYPES] = {"click", "view", "buy"};
	for (int t = 0; t < NTYPES; t++) {
		emh_query *q;
		n = -1;
		if (emh_repo_query(repo, &q, &err) == 0) {
			emh_q_where(q, emh_q_eq(q, "type", emh_v_text(types[t])));
			emh_repo_count(repo, q, &n, &err);
		}
		is_int(n, atomic_load(&type_made[t]), "'%s' events match", types[t]);
	}
	emh_em_close(em);
	emh_host_free(h);
}

int main(void)
{
	if (getenv("EMH_LOAD_CLIENTS"))
		nclients = atoi(getenv("EMH_LOAD_CLIENTS"));
	if (getenv("EMH_LOAD_REQUESTS"))
		nrequests = atoi(getenv("EMH_LOAD_REQUESTS"));
	if (nclients < 1 || nclients > 256 || nrequests < 5)
		bail("bad EMH_LOAD_CLIENTS/EMH_LOAD_REQUESTS");
	char dir[256], svc[512], conf[4096], plug[1024], probe[1200];
	snprintf(plug, sizeof plug, "%s/plugins-build", dtest_builddir());
	snprintf(probe, sizeof probe, "%s/sqlite.so", plug);
	if (access(probe, R_OK) != 0) {
		printf("1..0 # SKIP sqlite driver not built\n");
		return 0;
	}
	dtest_tmpdir(dir, sizeof dir, "load");
	dtest_service_dir(dir, svc, sizeof svc);
	snprintf(conf, sizeof conf,
		 "plugin_dir = \"%s\";\n"
		 "service_dir = \"%s\";\n"
		 "contexts = (\n"
		 "  { name = \"default\"; driver = \"sqlite\"; path = \"%s/app.db\"; schema = \"sync\"; required = true;\n"
		 "    pool = { max = %d; acquire_timeout_ms = 20000; }; },\n"
		 "  { name = \"analytics\"; driver = \"sqlite\"; path = \"%s/analytics.db\"; schema = \"sync\";\n"
		 "    pool = { max = %d; acquire_timeout_ms = 20000; }; }\n"
		 ");\n"
		 "services = ( { name = \"users\"; }, { name = \"analytics\"; }, { name = \"profile\"; } );\n"
		 "server = { threads = 8; shutdown_timeout_ms = 10000; };\n",
		 plug, svc, dir, POOL_MAX, dir, POOL_MAX);
	if (dtest_start(&d, dir, conf, NULL) != 0) {
		ok(0, "emhostd starts");
		return done_testing();
	}
	ok(1, "emhostd starts on %s", d.url);
	diag("%d clients x %d requests, pools of %d", nclients, nrequests, POOL_MAX);
	pthread_t mon, *th = calloc((size_t)nclients, sizeof *th);
	double t0 = now_s();
	pthread_create(&mon, NULL, monitor, NULL);
	for (int i = 0; i < nclients; i++)
		pthread_create(&th[i], NULL, client, (void *)(intptr_t)i);
	for (int i = 0; i < nclients; i++)
		pthread_join(th[i], NULL);
	double secs = now_s() - t0;
	atomic_store(&load_over, true);
	pthread_join(mon, NULL);
	free(th);
	long total = (long)nclients * nrequests;
	diag("%ld requests in %.2f s: %.0f requests/s", total, secs, (double)total / secs);
	is_int(atomic_load(&done_requests), total, "every request was made");
	is_int(atomic_load(&bad), 0, "every response was correct");
	ok(atomic_load(&max_conns[0]) <= POOL_MAX && atomic_load(&max_conns[1]) <= POOL_MAX,
	   "no pool went beyond max = %d connections (seen: default %d, analytics %d)", POOL_MAX,
	   atomic_load(&max_conns[0]), atomic_load(&max_conns[1]));
	diag("most forks seen waiting for a connection: default %d, analytics %d", atomic_load(&max_waiting[0]),
	     atomic_load(&max_waiting[1]));

	/* counts over HTTP too */
	CURL *c = dtest_curl();
	dtest_resp r;
	dtest_http(c, d.url, "GET", "/analytics/counts", NULL, 0, false, &r);
	json_t *j = dtest_json(&r);
	is_int(dtest_jint(j, "total", NULL), atomic_load(&events_made), "GET /analytics/counts totals every event");
	json_decref(j);
	dtest_resp_free(&r);
	dtest_http(c, d.url, "GET", "/_emhost/metrics", NULL, 0, false, &r);
	ok(dtest_metric(r.body, "emhost_forks_open{context=\"default\"}") == 0 &&
	   dtest_metric(r.body, "emhost_forks_open{context=\"analytics\"}") == 0 &&
	   dtest_metric(r.body, "emhost_pool_in_use{context=\"default\"}") == 0 &&
	   dtest_metric(r.body, "emhost_pool_in_use{context=\"analytics\"}") == 0,
	   "after the load no fork is open and no connection is in use");
	ok(dtest_metric(r.body, "emhost_pool_timeouts_total{context=\"default\"}") == 0, "no acquire timed out");
	dtest_resp_free(&r);
	curl_easy_cleanup(c);

	int st = dtest_stop(&d, SIGTERM, 120000);
	is_int(st, 0, "emhostd exits 0 (no leak reported by the sanitizer or valgrind wrapper)");
	if (st != 0)
		dtest_log_tail(&d, 40);
	count_rows(dir);
	int rc = done_testing();
	if (rc == 0)
		dtest_rmtree(dir);
	else
		diag("kept %s", dir);
	return rc;
}
