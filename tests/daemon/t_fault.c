/* SPDX-License-Identifier: MIT */
/*
 * tests/daemon/t_fault.c: the analytics database dies under load.  emhostd
 * runs etc/emhost-servers.conf (users on PostgreSQL, analytics on MongoDB)
 * against the test servers of scripts/test-servers.sh (EMH_TEST_STATE_DIR,
 * EMH_TEST_PG_URL, EMH_TEST_MONGO_URI).  While writers hit both services the
 * Mongo server is stopped: analytics must answer 503 promptly while users
 * keeps answering 201; the server comes back and analytics answers 201
 * again without restarting emhostd; no acknowledged write is lost.
 */
#include "config.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../tap.h"
#include "dtest.h"

#define NPLAN 24
#define USER_WRITERS 3
#define EVENT_WRITERS 3
#define MAX_IDS 200000

/* Requests are counted in the phase they started and ended in; the windows
 * while the server is being stopped or restarted count in none. */
enum { PH_UP, PH_DOWN, PH_BACK, PH_N, PH_STOPPING = PH_N, PH_RESTARTING, PH_ALL };
static const char *const phase_name[PH_ALL] = {"before", "down", "after", "stopping", "restarting"};

static dtest_daemon d;
static _Atomic int phase = PH_UP;
static _Atomic bool stop_load;
static _Atomic long ev_ok[PH_ALL], ev_503[PH_ALL], ev_other[PH_ALL], user_ok[PH_ALL], user_bad[PH_ALL];
static _Atomic long max_503_us;
static long long *user_ids;
static _Atomic long nuser_ids;
static int run_id;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *user_writer(void *arg)
{
	int cn = (int)(intptr_t)arg;
	CURL *c = dtest_curl();
	char body[256];
	for (long i = 0; !atomic_load(&stop_load); i++) {
		int ph = atomic_load(&phase);
		dtest_resp r;
		snprintf(body, sizeof body, "{\"name\":\"fault %d\",\"email\":\"f%d-%d-%ld@fault.test\"}", cn, run_id, cn, i);
		dtest_http(c, d.url, "POST", "/users", body, strlen(body), false, &r);
		json_t *j = dtest_json(&r);
		long long id = dtest_jint(j, "id", NULL);
		if (r.status == 201 && id > 0) {
			atomic_fetch_add(&user_ok[ph], 1);
			long k = atomic_fetch_add(&nuser_ids, 1);
			if (k < MAX_IDS)
				user_ids[k] = id;
		} else {
			if (atomic_fetch_add(&user_bad[ph], 1) < 5)
				diag("users during '%s': status %ld %s %.200s", phase_name[ph], r.status, r.curl_error,
				     r.body ? r.body : "");
		}
		json_decref(j);
		dtest_resp_free(&r);
	}
	curl_easy_cleanup(c);
	return NULL;
}

static void *event_writer(void *arg)
{
	int cn = (int)(intptr_t)arg;
	CURL *c = dtest_curl();
	char body[256];
	for (long i = 0; !atomic_load(&stop_load); i++) {
		int ph = atomic_load(&phase);
		dtest_resp r;
		snprintf(body, sizeof body, "{\"user_id\":%d,\"type\":\"%s%d\"}", cn + 1, phase_name[ph], run_id);
		dtest_http(c, d.url, "POST", "/analytics/events", body, strlen(body), false, &r);
		/* a request that started in one phase may end in another: count it
		 * only when the phase did not change meanwhile */
		if (atomic_load(&phase) == ph) {
			if (r.status == 201) {
				atomic_fetch_add(&ev_ok[ph], 1);
			} else if (r.status == 503) {
				atomic_fetch_add(&ev_503[ph], 1);
				long us = (long)(r.seconds * 1e6);
				if (us > atomic_load(&max_503_us))
					atomic_store(&max_503_us, us);
			} else {
				if (atomic_fetch_add(&ev_other[ph], 1) < 5)
					diag("analytics during '%s': status %ld %s %.200s", phase_name[ph], r.status,
					     r.curl_error, r.body ? r.body : "");
			}
		}
		dtest_resp_free(&r);
		if (r.status == 503) {
			struct timespec ts = {0, 20 * 1000000};
			nanosleep(&ts, NULL);
		}
	}
	curl_easy_cleanup(c);
	return NULL;
}

static int server_cmd_of(const char *kind, const char *cmd)
{
	char line[2048];
	snprintf(line, sizeof line, "%s/scripts/servers/%s.sh %s '%s' >/dev/null", getenv("EMH_SRCDIR"), kind, cmd,
		 getenv("EMH_TEST_STATE_DIR"));
	int st = system(line);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int server_cmd(const char *cmd) { return server_cmd_of("mongo", cmd); }

static void sleep_s(double s)
{
	struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
	nanosleep(&ts, NULL);
}

static char *read_file(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *s = malloc((size_t)n + 1);
	size_t k = fread(s, 1, (size_t)n, f);
	s[k] = '\0';
	fclose(f);
	return s;
}

static const char *health_of(CURL *c, const char *ctx, char *buf, size_t cap)
{
	dtest_resp r;
	dtest_http(c, d.url, "GET", "/_emhost/health", NULL, 0, false, &r);
	json_t *j = dtest_json(&r);
	snprintf(buf, cap, "%ld %s", r.status, dtest_jstr(j, "contexts", ctx, "status", NULL) ?
		 dtest_jstr(j, "contexts", ctx, "status", NULL) : "?");
	json_decref(j);
	dtest_resp_free(&r);
	return buf;
}

int main(void)
{
	plan(NPLAN);
	const char *state = getenv("EMH_TEST_STATE_DIR"), *pg = getenv("EMH_TEST_PG_URL"),
		   *mongo = getenv("EMH_TEST_MONGO_URI"), *src = getenv("EMH_SRCDIR");
	char plug[1024], probe[1200];
	snprintf(plug, sizeof plug, "%s/plugins-build", dtest_builddir());
	const char *missing = !state ? "EMH_TEST_STATE_DIR not set (start scripts/test-servers.sh)"
			      : !pg ? "postgres: EMH_TEST_PG_URL not set"
			      : !mongo ? "mongo: EMH_TEST_MONGO_URI not set"
			      : !src ? "EMH_SRCDIR not set"
			      : NULL;
	const char *kind = getenv("EMH_TEST_MONGO_KIND");
	if (!missing && kind && strcmp(kind, "external") == 0)
		missing = "mongo is an external server: the test cannot stop it";
	for (const char *drv = "postgres"; !missing && drv; drv = strcmp(drv, "postgres") == 0 ? "mongo" : NULL) {
		snprintf(probe, sizeof probe, "%s/%s.so", plug, drv);
		if (access(probe, R_OK) != 0)
			missing = strcmp(drv, "postgres") == 0 ? "postgres driver not built" : "mongo driver not built";
	}
	if (missing) {
		need_server(NPLAN, missing);
		return done_testing();
	}
	run_id = (int)getpid();
	user_ids = calloc(MAX_IDS, sizeof *user_ids);
	char dir[256], svc[512], path[1024];
	dtest_tmpdir(dir, sizeof dir, "fault");
	dtest_service_dir(dir, svc, sizeof svc);
	snprintf(path, sizeof path, "%s/etc/emhost-servers.conf", src);
	char *conf = read_file(path);
	if (!conf)
		bail("cannot read %s", path);
	char env_plug[1100], env_svc[600];
	snprintf(env_plug, sizeof env_plug, "EMH_PLUGIN_DIR=%s", plug);
	snprintf(env_svc, sizeof env_svc, "EMH_SERVICE_DIR=%s", svc);
	const char *env[] = {env_plug, env_svc, NULL};
	if (dtest_start(&d, dir, conf, env) != 0) {
		ok(0, "emhostd starts with etc/emhost-servers.conf");
		skip(NPLAN - 1, "no daemon");
		free(conf);
		return done_testing();
	}
	free(conf);
	ok(1, "emhostd starts with etc/emhost-servers.conf on %s", d.url);
	pid_t daemon_pid = d.pid;
	CURL *c = dtest_curl();
	char hb[64];
	is_str(health_of(c, "analytics", hb, sizeof hb), "200 up", "health: analytics up before the fault");

	pthread_t th[USER_WRITERS + EVENT_WRITERS];
	for (int i = 0; i < USER_WRITERS; i++)
		pthread_create(&th[i], NULL, user_writer, (void *)(intptr_t)i);
	for (int i = 0; i < EVENT_WRITERS; i++)
		pthread_create(&th[USER_WRITERS + i], NULL, event_writer, (void *)(intptr_t)i);
	sleep_s(1.5);

	atomic_store(&phase, PH_STOPPING);
	is_int(server_cmd("stop"), 0, "mongo.sh stop");
	atomic_store(&phase, PH_DOWN);
	sleep_s(4.0);
	is_str(health_of(c, "analytics", hb, sizeof hb), "200 down",
	       "health: analytics down, still 200 (it is not required)");
	atomic_store(&phase, PH_RESTARTING);
	is_int(server_cmd("restart"), 0, "mongo.sh restart (same port)");
	double t0 = now_s(), recovered = -1;
	/* analytics answers again, through the same emhostd */
	while (now_s() - t0 < 30 && recovered < 0) {
		dtest_resp r;
		const char *probe_body = "{\"user_id\":1,\"type\":\"probe\"}";
		dtest_http(c, d.url, "POST", "/analytics/events", probe_body, strlen(probe_body), false, &r);
		if (r.status == 201)
			recovered = now_s() - t0;
		dtest_resp_free(&r);
		if (recovered < 0)
			sleep_s(0.1);
	}
	ok(recovered >= 0, "analytics answers 201 again after the restart (%.2f s)", recovered);
	atomic_store(&phase, PH_BACK);
	sleep_s(1.5);
	atomic_store(&stop_load, true);
	for (int i = 0; i < USER_WRITERS + EVENT_WRITERS; i++)
		pthread_join(th[i], NULL);
	ok(kill(daemon_pid, 0) == 0 && d.pid == daemon_pid, "without restarting emhostd (pid %d)", (int)daemon_pid);

	for (int p = 0; p < PH_ALL; p++)
		diag("%-6s users 201: %ld bad: %ld | events 201: %ld 503: %ld other: %ld", phase_name[p],
		     atomic_load(&user_ok[p]), atomic_load(&user_bad[p]), atomic_load(&ev_ok[p]),
		     atomic_load(&ev_503[p]), atomic_load(&ev_other[p]));
	ok(atomic_load(&ev_ok[PH_UP]) > 0, "events were written before the fault");
	ok(atomic_load(&ev_503[PH_DOWN]) > 0 && atomic_load(&ev_ok[PH_DOWN]) == 0 && atomic_load(&ev_other[PH_DOWN]) == 0,
	   "while Mongo is down every analytics request gets 503");
	ok(atomic_load(&max_503_us) < 2500000, "promptly: the slowest 503 took %.3f s",
	   (double)atomic_load(&max_503_us) / 1e6);
	ok(atomic_load(&user_ok[PH_DOWN]) > 0 && atomic_load(&user_bad[PH_DOWN]) == 0,
	   "while Mongo is down users keeps answering 201 (%ld)", atomic_load(&user_ok[PH_DOWN]));
	ok(atomic_load(&user_bad[PH_UP]) + atomic_load(&user_bad[PH_BACK]) + atomic_load(&user_bad[PH_STOPPING]) +
		   atomic_load(&user_bad[PH_RESTARTING]) == 0,
	   "and before, after, and while Mongo stops and restarts");
	ok(atomic_load(&ev_ok[PH_BACK]) > 0 && atomic_load(&ev_other[PH_BACK]) == 0, "after the restart events are written");
	is_str(health_of(c, "analytics", hb, sizeof hb), "200 up", "health: analytics up again");

	/* no acknowledged write lost */
	long n = atomic_load(&nuser_ids), missing_users = 0;
	if (n > MAX_IDS)
		n = MAX_IDS;
	for (long i = 0; i < n; i++) {
		char p[64];
		dtest_resp r;
		snprintf(p, sizeof p, "/users/%lld", user_ids[i]);
		if (dtest_http(c, d.url, "GET", p, NULL, 0, false, &r) != 200)
			missing_users++;
		dtest_resp_free(&r);
	}
	is_int(missing_users, 0, "every acknowledged user (%ld) is in PostgreSQL", n);
	dtest_resp r;
	dtest_http(c, d.url, "GET", "/analytics/counts", NULL, 0, false, &r);
	json_t *j = dtest_json(&r);
	char type[64];
	snprintf(type, sizeof type, "after%d", run_id);
	long long after = dtest_jint(j, "counts", type, NULL);
	ok(after >= atomic_load(&ev_ok[PH_BACK]), "every event acknowledged after the restart is stored (%lld >= %ld)",
	   after, atomic_load(&ev_ok[PH_BACK]));
	const char *persistent = getenv("EMH_TEST_MONGO_PERSISTENT");
	snprintf(type, sizeof type, "before%d", run_id);
	long long before = dtest_jint(j, "counts", type, NULL);
	if (persistent && strcmp(persistent, "1") == 0)
		ok(before >= atomic_load(&ev_ok[PH_UP]), "every event acknowledged before the fault survived (%lld >= %ld)",
		   before, atomic_load(&ev_ok[PH_UP]));
	else
		skip(1, "the Mongo test server keeps its data in memory: a restart empties it");
	json_decref(j);
	dtest_resp_free(&r);

	/* the required context goes down: health 503, users 503, analytics still 201 */
	const char *pgkind = getenv("EMH_TEST_PG_KIND");
	if (pgkind && strcmp(pgkind, "external") == 0) {
		skip(6, "postgres is an external server: the test cannot stop it");
	} else {
		is_int(server_cmd_of("pg", "stop"), 0, "pg.sh stop (the required default context)");
		is_str(health_of(c, "default", hb, sizeof hb), "503 down", "health: 503 while a required context is down");
		char body[128];
		snprintf(body, sizeof body, "{\"name\":\"down\",\"email\":\"down%d@fault.test\"}", run_id);
		dtest_http(c, d.url, "POST", "/users", body, strlen(body), false, &r);
		json_t *e = dtest_json(&r);
		ok(r.status == 503 && dtest_jstr(e, "error", "code", NULL) &&
			   strcmp(dtest_jstr(e, "error", "code", NULL), "unavailable") == 0,
		   "users answers 503 'unavailable' (%ld, %.3f s)", r.status, r.seconds);
		json_decref(e);
		dtest_resp_free(&r);
		const char *ev = "{\"user_id\":1,\"type\":\"pgdown\"}";
		is_int(dtest_http(c, d.url, "POST", "/analytics/events", ev, strlen(ev), false, &r), 201,
		       "analytics keeps answering 201");
		dtest_resp_free(&r);
		is_int(server_cmd_of("pg", "restart"), 0, "pg.sh restart");
		double t1 = now_s(), back = -1;
		while (now_s() - t1 < 30 && back < 0) {
			snprintf(body, sizeof body, "{\"name\":\"back\",\"email\":\"back%d@fault.test\"}", run_id);
			if (dtest_http(c, d.url, "POST", "/users", body, strlen(body), false, &r) == 201)
				back = now_s() - t1;
			dtest_resp_free(&r);
			if (back < 0)
				sleep_s(0.1);
		}
		ok(back >= 0 && strcmp(health_of(c, "default", hb, sizeof hb), "200 up") == 0,
		   "users and health recover without restarting emhostd (%.2f s)", back);
	}
	curl_easy_cleanup(c);

	int st = dtest_stop(&d, SIGTERM, 60000);
	is_int(st, 0, "emhostd stops with status 0");
	if (st != 0)
		dtest_log_tail(&d, 40);
	free(user_ids);
	int rc = done_testing();
	if (rc == 0)
		dtest_rmtree(dir);
	else
		diag("kept %s", dir);
	return rc;
}
