/* SPDX-License-Identifier: MIT */
/*
 * tests/daemon/t_shutdown.c: SIGTERM under load.  Writers POST users
 * continuously; emhostd gets SIGTERM mid-load and must stop accepting, answer
 * what is in flight, close its pools and exit 0 within its shutdown timeout.
 * Every write a client saw acknowledged (201) must be in the database,
 * checked through the library on the files emhostd wrote.
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

#define WRITERS 12
#define MAX_IDS 400000

static dtest_daemon d;
static long long *ids;
static _Atomic long nids, refused, bad, after_signal;
static _Atomic bool signalled;

static void *writer(void *arg)
{
	int cn = (int)(intptr_t)arg;
	CURL *c = dtest_curl();
	char body[256];
	int consecutive_refused = 0;
	for (long i = 0; consecutive_refused < 20; i++) {
		dtest_resp r;
		snprintf(body, sizeof body, "{\"name\":\"w%d\",\"email\":\"w%d-%ld@shutdown.test\"}", cn, cn, i);
		bool late = atomic_load(&signalled);
		dtest_http(c, d.url, "POST", "/users", body, strlen(body), false, &r);
		json_t *j = dtest_json(&r);
		if (r.status == 201 && dtest_jint(j, "id", NULL) > 0) {
			long k = atomic_fetch_add(&nids, 1);
			if (k < MAX_IDS)
				ids[k] = dtest_jint(j, "id", NULL);
			if (late)
				atomic_fetch_add(&after_signal, 1);
			consecutive_refused = 0;
		} else if (r.status == 0) {
			/* connection refused or closed: not acknowledged, fine once stopping */
			if (!atomic_load(&signalled) && atomic_fetch_add(&bad, 1) < 5)
				diag("writer %d: request failed before SIGTERM: %s", cn, r.curl_error);
			atomic_fetch_add(&refused, 1);
			consecutive_refused++;
			struct timespec ts = {0, 5 * 1000000};
			nanosleep(&ts, NULL);
		} else {
			if (atomic_fetch_add(&bad, 1) < 5)
				diag("writer %d: status %ld %.200s", cn, r.status, r.body ? r.body : "");
		}
		json_decref(j);
		dtest_resp_free(&r);
	}
	curl_easy_cleanup(c);
	return NULL;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(void)
{
	char dir[256], svc[512], conf[4096], plug[1024], probe[1200];
	snprintf(plug, sizeof plug, "%s/plugins-build", dtest_builddir());
	snprintf(probe, sizeof probe, "%s/sqlite.so", plug);
	if (access(probe, R_OK) != 0) {
		printf("1..0 # SKIP sqlite driver not built\n");
		return 0;
	}
	ids = calloc(MAX_IDS, sizeof *ids);
	dtest_tmpdir(dir, sizeof dir, "shutdown");
	dtest_service_dir(dir, svc, sizeof svc);
	snprintf(conf, sizeof conf,
		 "plugin_dir = \"%s\";\n"
		 "service_dir = \"%s\";\n"
		 "contexts = ( { name = \"default\"; driver = \"sqlite\"; path = \"%s/app.db\"; schema = \"sync\";\n"
		 "    pool = { max = 4; }; } );\n"
		 "services = ( { name = \"users\"; } );\n"
		 "server = { threads = 6; shutdown_timeout_ms = 5000; };\n",
		 plug, svc, dir);
	if (dtest_start(&d, dir, conf, NULL) != 0) {
		ok(0, "emhostd starts");
		return done_testing();
	}
	ok(1, "emhostd starts on %s", d.url);
	pthread_t th[WRITERS];
	for (int i = 0; i < WRITERS; i++)
		pthread_create(&th[i], NULL, writer, (void *)(intptr_t)i);
	struct timespec ts = {1, 500 * 1000000};
	nanosleep(&ts, NULL);
	long before = atomic_load(&nids);
	atomic_store(&signalled, true);
	double t0 = now_s();
	int st = dtest_stop(&d, SIGTERM, 30000);
	double took = now_s() - t0;
	for (int i = 0; i < WRITERS; i++)
		pthread_join(th[i], NULL);
	diag("%ld users acknowledged before SIGTERM, %ld in all, %ld while stopping; %ld refused after", before,
	     atomic_load(&nids), atomic_load(&after_signal), atomic_load(&refused));
	ok(before > 0, "the writers were busy when SIGTERM came");
	is_int(st, 0, "emhostd exits 0 on SIGTERM under load");
	ok(took < 5.0 + 3.0, "within the shutdown timeout (%.2f s)", took);
	is_int(atomic_load(&bad), 0, "no request got an error answer: acknowledged, or refused once stopping");
	ok(dtest_log_contains(&d, "SIGTERM: stopping"), "the log says why it stopped");
	if (st != 0)
		dtest_log_tail(&d, 30);

	/* every acknowledged user is in the database */
	char path[512];
	snprintf(path, sizeof path, "%s/count.conf", dir);
	FILE *f = fopen(path, "w");
	fprintf(f, "contexts = ( { name = \"default\"; driver = \"sqlite\"; path = \"%s/app.db\"; } );\n", dir);
	fclose(f);
	emh_host_opts o = {.config_path = path, .plugin_dir = plug};
	emh_host *h = NULL;
	emh_error err;
	long lost = 0, n = atomic_load(&nids);
	if (n > MAX_IDS)
		n = MAX_IDS;
	if (emh_host_new(&o, &h, &err) == 0 && emh_host_register_entity(h, NULL, &user_entity, &err) == 0) {
		emh_em *em;
		emh_repo *repo;
		if (emh_host_fork(h, NULL, &em, &err) == 0 && emh_em_set_readonly(em, &err) == 0 &&
		    emh_em_repo(em, &user_entity, &repo, &err) == 0) {
			for (long i = 0; i < n; i++) {
				void *u;
				if (emh_repo_get(repo, emh_v_int64(ids[i]), &u, &err) != 0)
					lost++;
			}
			int64_t rows = -1;
			emh_repo_count(repo, NULL, &rows, &err);
			ok(rows >= n, "the table holds at least the %ld acknowledged users (%lld rows)", n, (long long)rows);
		} else {
			ok(0, "fork: %s", err.message);
		}
		emh_em_close(em);
		emh_host_free(h);
	} else {
		ok(0, "library host: %s", err.message);
		emh_host_free(h);
	}
	is_int(lost, 0, "no acknowledged write was lost (%ld checked)", n);
	free(ids);
	int rc = done_testing();
	if (rc == 0)
		dtest_rmtree(dir);
	else
		diag("kept %s", dir);
	return rc;
}
