/* SPDX-License-Identifier: MIT */
/*
 * tests/daemon/bench_http.c: emh-bench-http, the cost of the HTTP front.
 * The same lookup, GET a user by a random id from SQLite, measured twice in
 * one run: by the library in-process (a fork, emh_repo_get, close: what one
 * request's scope does) from N threads, then through emhostd and the users
 * service under wrk with N connections.  Prints requests/s and p50/p99 of
 * both and their ratio.
 *
 *   EMH_BENCH_SECONDS (5)  EMH_BENCH_CONNECTIONS (16)  EMH_BENCH_ROWS (10000)
 *   EMH_BENCH_SERVER_THREADS (4)  EMH_BENCH_WRK_THREADS (2)
 */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <emhost/emhost.h>

#include "../../services/common/entities.h"
#include "../tap.h"
#include "dtest.h"

static int seconds = 5, conns = 16, rows = 10000, server_threads = 4, wrk_threads = 2;

static int env_int(const char *name, int def)
{
	const char *v = getenv(name);
	return v && atoi(v) > 0 ? atoi(v) : def;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- in-process ---- */

#define MAX_SAMPLES 2000000
typedef struct lookup_thread {
	emh_host *h;
	unsigned seed;
	double deadline;
	uint32_t *lat_us; /* per lookup */
	size_t n, errors;
} lookup_thread;

static void *lookup_main(void *arg)
{
	lookup_thread *t = arg;
	emh_error err;
	while (t->n < MAX_SAMPLES / (size_t)conns) {
		double t0 = now_s();
		if (t0 >= t->deadline)
			break;
		int64_t id = 1 + (int64_t)(rand_r(&t->seed) % rows);
		emh_em *em;
		emh_repo *repo;
		void *u;
		if (emh_host_fork(t->h, NULL, &em, &err) != 0 || emh_em_set_readonly(em, &err) != 0 ||
		    emh_em_repo(em, &user_entity, &repo, &err) != 0 || emh_repo_get(repo, emh_v_int64(id), &u, &err) != 0)
			t->errors++;
		emh_em_close(em);
		t->lat_us[t->n++] = (uint32_t)((now_s() - t0) * 1e6);
	}
	return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/* ---- wrk ---- */

/* "1.23ms" / "456.00us" / "1.01s" -> milliseconds */
static double wrk_ms(const char *s)
{
	char *end;
	double v = strtod(s, &end);
	if (strncmp(end, "us", 2) == 0)
		return v / 1000;
	if (strncmp(end, "ms", 2) == 0)
		return v;
	if (strncmp(end, "s", 1) == 0)
		return v * 1000;
	return v;
}

static int run_wrk(const char *url, const char *script, double *rps, double *p50, double *p99, long *non2xx)
{
	char cmd[2048];
	snprintf(cmd, sizeof cmd, "wrk -t%d -c%d -d%ds --latency -s '%s' '%s' 2>&1", wrk_threads, conns, seconds,
		 script, url);
	FILE *p = popen(cmd, "r");
	if (!p)
		return -1;
	char line[512];
	*rps = *p50 = *p99 = -1;
	*non2xx = 0;
	while (fgets(line, sizeof line, p)) {
		char *s = line;
		while (*s == ' ')
			s++;
		if (strncmp(s, "Requests/sec:", 13) == 0)
			*rps = strtod(s + 13, NULL);
		else if (strncmp(s, "50%", 3) == 0)
			*p50 = wrk_ms(s + 3 + strspn(s + 3, " \t"));
		else if (strncmp(s, "99%", 3) == 0)
			*p99 = wrk_ms(s + 3 + strspn(s + 3, " \t"));
		else if (strncmp(s, "Non-2xx or 3xx responses:", 25) == 0)
			*non2xx = strtol(s + 25, NULL, 10);
		fputs("  wrk| ", stderr);
		fputs(line, stderr);
	}
	int st = pclose(p);
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 && *rps > 0 ? 0 : -1;
}

int main(void)
{
	seconds = env_int("EMH_BENCH_SECONDS", seconds);
	conns = env_int("EMH_BENCH_CONNECTIONS", conns);
	rows = env_int("EMH_BENCH_ROWS", rows);
	server_threads = env_int("EMH_BENCH_SERVER_THREADS", server_threads);
	wrk_threads = env_int("EMH_BENCH_WRK_THREADS", wrk_threads);
	if (system("command -v wrk >/dev/null 2>&1") != 0) {
		fprintf(stderr, "emh-bench-http: wrk not found (apt-get install wrk)\n");
		return 77;
	}
	char dir[256], svc[512], conf[4096], plug[1024], path[512];
	snprintf(plug, sizeof plug, "%s/plugins-build", dtest_builddir());
	dtest_tmpdir(dir, sizeof dir, "bench-http");
	dtest_service_dir(dir, svc, sizeof svc);
	snprintf(conf, sizeof conf,
		 "plugin_dir = \"%s\";\nservice_dir = \"%s\";\n"
		 "contexts = ( { name = \"default\"; driver = \"sqlite\"; path = \"%s/app.db\"; schema = \"sync\";\n"
		 "    pool = { max = %d; }; } );\n"
		 "services = ( { name = \"users\"; } );\n"
		 "server = { threads = %d; };\n",
		 plug, svc, dir, conns, server_threads);
	snprintf(path, sizeof path, "%s/lib.conf", dir);
	FILE *f = fopen(path, "w");
	fputs(conf, f);
	fclose(f);

	/* seed, then the in-process side on the same file */
	emh_host_opts o = {.config_path = path, .plugin_dir = plug};
	emh_host *h = NULL;
	emh_error err;
	if (emh_host_new(&o, &h, &err) != 0 || emh_host_register_entity(h, NULL, &user_entity, &err) != 0) {
		fprintf(stderr, "emh-bench-http: %s\n", err.message);
		emh_host_free(h);
		return 1;
	}
	emh_em *em;
	emh_repo *repo;
	if (emh_host_fork(h, NULL, &em, &err) || emh_em_repo(em, &user_entity, &repo, &err) || emh_em_begin(em, &err)) {
		fprintf(stderr, "emh-bench-http: %s\n", err.message);
		return 1;
	}
	for (int i = 0; i < rows; i++) {
		user *u;
		char name[32], email[64];
		snprintf(name, sizeof name, "user %d", i);
		snprintf(email, sizeof email, "user%d@bench.test", i);
		if (emh_repo_new(repo, (void **)&u, &err) != 0)
			break;
		u->name = emh_em_strdup(em, name);
		u->email = emh_em_strdup(em, email);
		if ((i + 1) % 1000 == 0 && emh_em_flush(em, &err) != 0)
			break;
	}
	if (emh_em_flush(em, &err) || emh_em_commit(em, &err)) {
		fprintf(stderr, "emh-bench-http: seeding: %s\n", err.message);
		return 1;
	}
	emh_em_close(em);

	lookup_thread *th = calloc((size_t)conns, sizeof *th);
	pthread_t *tid = calloc((size_t)conns, sizeof *tid);
	double t0 = now_s(), deadline = t0 + seconds;
	for (int i = 0; i < conns; i++) {
		th[i] = (lookup_thread){.h = h, .seed = (unsigned)(i * 7919 + 1), .deadline = deadline,
				       .lat_us = malloc(sizeof(uint32_t) * (MAX_SAMPLES / (size_t)conns))};
		pthread_create(&tid[i], NULL, lookup_main, &th[i]);
	}
	size_t total = 0, errors = 0;
	for (int i = 0; i < conns; i++) {
		pthread_join(tid[i], NULL);
		total += th[i].n;
		errors += th[i].errors;
	}
	double took = now_s() - t0;
	uint32_t *all = malloc(sizeof *all * (total ? total : 1));
	size_t k = 0;
	for (int i = 0; i < conns; i++) {
		memcpy(all + k, th[i].lat_us, th[i].n * sizeof *all);
		k += th[i].n;
		free(th[i].lat_us);
	}
	qsort(all, total, sizeof *all, cmp_u32);
	double lib_rps = (double)total / took;
	double lib_p50 = total ? all[total / 2] / 1000.0 : -1, lib_p99 = total ? all[total * 99 / 100] / 1000.0 : -1;
	free(all);
	free(th);
	free(tid);
	emh_host_free(h);

	/* the HTTP side */
	dtest_daemon d;
	const char *quiet[] = {NULL};
	char *dconf = strdup(conf);
	if (dtest_start(&d, dir, dconf, quiet) != 0) {
		fprintf(stderr, "emh-bench-http: emhostd did not start (log: %s)\n", d.log);
		return 1;
	}
	free(dconf);
	char script[512];
	snprintf(script, sizeof script, "%s/get_user.lua", dir);
	f = fopen(script, "w");
	fprintf(f,
		"local n = %d\n"
		"local counter = 0\n"
		"function setup(thread) counter = counter + 1; thread:set(\"id\", counter) end\n"
		"function init(args) math.randomseed(id * 7919) end\n"
		"function request() return wrk.format(\"GET\", \"/users/\" .. math.random(1, n)) end\n",
		rows);
	fclose(f);
	/* warm up the connections and the pool */
	CURL *c = dtest_curl();
	dtest_resp r;
	dtest_http(c, d.url, "GET", "/users/1", NULL, 0, false, &r);
	long warm = r.status;
	dtest_resp_free(&r);
	curl_easy_cleanup(c);
	double rps, p50, p99;
	long non2xx;
	int rc = warm == 200 ? run_wrk(d.url, script, &rps, &p50, &p99, &non2xx) : -1;
	int st = dtest_stop(&d, SIGTERM, 30000);
	if (rc != 0) {
		fprintf(stderr, "emh-bench-http: the HTTP run failed (warm-up status %ld)\n", warm);
		return 1;
	}
	printf("emh-bench-http: GET a user by random id, SQLite, %d rows, %d concurrent, %d s each\n", rows, conns,
	       seconds);
	printf("  %-32s %12s %10s %10s\n", "", "requests/s", "p50 us", "p99 us");
	printf("  %-32s %12.0f %10.1f %10.1f%s\n", "library in-process (fork+get)", lib_rps, lib_p50 * 1000,
	       lib_p99 * 1000, errors ? "  (ERRORS)" : "");
	printf("  %-32s %12.0f %10.1f %10.1f%s\n", "HTTP: emhostd users + wrk", rps, p50 * 1000, p99 * 1000,
	       non2xx ? "  (NON-2XX)" : "");
	printf("  HTTP front cost: in-process/HTTP throughput = %.1fx, p50 latency +%.0f us\n", lib_rps / rps,
	       (p50 - lib_p50) * 1000);
	printf("  (emhostd %d I/O threads + %d workers, wrk %d threads, all on %ld cores)\n", server_threads,
	       server_threads, wrk_threads, sysconf(_SC_NPROCESSORS_ONLN));
	if (errors || non2xx || st != 0)
		fprintf(stderr, "emh-bench-http: %zu library errors, %ld non-2xx, emhostd exit %d\n", errors, non2xx, st);
	dtest_rmtree(dir);
	return errors || non2xx || st != 0;
}
