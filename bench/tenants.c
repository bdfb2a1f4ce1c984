/* SPDX-License-Identifier: MIT */
/*
 * bench/tenants.c: emh-bench's `tenants` workload (issue 12).  For each N
 * (default 1, 100, 10000) a fresh host gets N SQLite file contexts added at
 * run time, each with bench_item registered and one row in it; then:
 *
 *   bench tenants N=<n> rss_kb_per_idle_context=<kB>      no connection open
 *   bench tenants N=<n> rss_kb_per_idle_context_conn=<kB> one idle connection each
 *   bench tenants N=<n> fork_close_ns=<ns>                fork + close of a random one
 *   bench tenants N=<n> fork_get_ns=<ns>                  fork + get by key + close
 *
 * Times are the measuring thread's CPU time (best of 3 rounds), so that a
 * machine shared with other work gives comparable numbers; cache misses,
 * which is what 10,000 contexts add, still count.
 * Each N runs in a child process of its own, so that memory freed by an
 * earlier N cannot hide growth.  RSS is the growth of the resident set over
 * the empty host, divided by N (so it includes what SQLite allocates per
 * connection, and malloc's overhead).  The soft RLIMIT_NOFILE is raised to the hard limit
 * first, so that the budget (docs/configuration.md, "Many tenants") holds
 * as many connections as the system allows; a line says how many were
 * open and how many closed for room during the measurement.  Files go
 * to DIR (--tenant-dir, default /dev/shm when writable, else $TMPDIR or
 * /tmp) and are removed afterwards; journal_mode is --tenant-journal
 * (default "memory": one descriptor per connection, so that 10,000
 * connections fit the usual limits; "wal" holds three).
 */
#include "config.h"

#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <emhost/emhost.h>

#include "bench.h"

typedef struct tenants {
	emh_host *h;
	char (*names)[24];
	size_t n;
	uint64_t rng;
	size_t sink;
	emh_error err;
} tenants;

/* The measuring thread's CPU time: what a fork costs, not how busy the machine is. */
static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long rss_kb(void)
{
	long pages = 0, resident = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (!f)
		return -1;
	if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
		resident = -1;
	fclose(f);
	return resident < 0 ? -1 : resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static const char *pick(tenants *t)
{
	t->rng ^= t->rng >> 12;
	t->rng ^= t->rng << 25;
	t->rng ^= t->rng >> 27;
	return t->names[(t->rng * UINT64_C(2685821657736338717)) % t->n];
}

static int fork_close(tenants *t)
{
	emh_em *em;
	int rc = emh_host_fork(t->h, pick(t), &em, &t->err);
	if (!rc)
		emh_em_close(em);
	return rc;
}

static int fork_get(tenants *t)
{
	emh_em *em;
	emh_repo *r;
	void *p;
	int rc = emh_host_fork(t->h, pick(t), &em, &t->err);
	if (rc)
		return rc;
	rc = emh_em_repo(em, &bench_entity, &r, &t->err);
	if (!rc)
		rc = emh_repo_get(r, emh_v_int64(1), &p, &t->err);
	if (!rc)
		t->sink += (size_t)((bench_item *)p)->counter;
	emh_em_close(em);
	return rc;
}

/* Best of 3 rounds of secs seconds, in ns per operation; -1 when an operation failed. */
static double best_ns(tenants *t, int (*op)(tenants *), double secs)
{
	double best = -1;
	for (int round = 0; round < 4; round++) { /* the first warms up */
		uint64_t n = 0;
		double t0 = now_s(), el;
		do {
			for (int i = 0; i < 256; i++)
				if (op(t))
					return -1;
			n += 256;
		} while ((el = now_s() - t0) < (round ? secs : secs / 4));
		double ns = el * 1e9 / (double)n;
		if (round && (best < 0 || ns < best))
			best = ns;
	}
	return best;
}

/* Add tenant i (its own file), register the entity; no connection yet (schema none). */
static int add_one(tenants *t, const char *dir, const char *journal, size_t i)
{
	char path[PATH_MAX];
	snprintf(t->names[i], sizeof t->names[i], "t%zu", i);
	int n = snprintf(path, sizeof path, "%s/t%zu.db", dir, i);
	if (n < 0 || (size_t)n >= sizeof path)
		return emh_error_set(&t->err, EMH_EINVAL, "directory '%s' is too long", dir);
	const char *kv[] = {"driver", "sqlite", "path", path, "journal_mode", journal, "synchronous", "off",
			    "pool.max", "1", NULL};
	int rc = emh_host_add_context(t->h, t->names[i], kv, &t->err);
	return rc ? rc : emh_host_register_entity(t->h, t->names[i], &bench_entity, &t->err);
}

/* Its table and one row (id 1), which leaves one idle connection. */
static int fill_one(tenants *t, size_t i)
{
	emh_em *em;
	emh_repo *r;
	void *p;
	int rc = emh_host_sync_schema(t->h, t->names[i], &t->err);
	if (!rc)
		rc = emh_host_fork(t->h, t->names[i], &em, &t->err);
	if (rc)
		return rc;
	rc = emh_em_repo(em, &bench_entity, &r, &t->err);
	if (!rc)
		rc = emh_repo_new(r, &p, &t->err);
	if (!rc) {
		((bench_item *)p)->name = "tenant";
		rc = emh_em_flush(em, &t->err);
	}
	emh_em_close(em);
	return rc;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb, (void)flag, (void)ftw;
	remove(path);
	return 0;
}

static int run_one(const char *plugin_dir, const char *base, const char *journal, size_t n, double secs)
{
	char dir[PATH_MAX];
	tenants t = {.n = n, .rng = UINT64_C(0x9E3779B97F4A7C15)};
	int status = -1;
	int len = snprintf(dir, sizeof dir, "%s/emh-bench-tenants-XXXXXX", base);
	if (len < 0 || (size_t)len >= sizeof dir || !mkdtemp(dir)) {
		printf("# bench tenants: cannot make a directory under '%s'\n", base);
		return -1;
	}
	if (!(t.names = calloc(n, sizeof *t.names)))
		goto out_rmdir;
	emh_host_opts o = {.plugin_dir = plugin_dir, .envp = (const char *const[]){NULL}, .log_level = EMH_LOG_WARN};
	if (emh_host_new(&o, &t.h, &t.err)) {
		printf("# bench tenants: host: %s\n", t.err.message);
		goto out_free;
	}
	long rss0 = rss_kb();
	for (size_t i = 0; i < n; i++)
		if (add_one(&t, dir, journal, i)) {
			printf("# bench tenants N=%zu: adding t%zu: %s\n", n, i, t.err.message);
			goto out_host;
		}
	long rss1 = rss_kb();
	for (size_t i = 0; i < n; i++)
		if (fill_one(&t, i)) {
			printf("# bench tenants N=%zu: filling t%zu: %s\n", n, i, t.err.message);
			goto out_host;
		}
	long rss2 = rss_kb();
	emh_budget_info b0, b1;
	emh_host_budget(t.h, &b0, sizeof b0);
	printf("bench tenants N=%zu rss_kb_per_idle_context=%.1f\n", n, (double)(rss1 - rss0) / (double)n);
	printf("bench tenants N=%zu rss_kb_per_idle_context_conn=%.1f\n", n, (double)(rss2 - rss0) / (double)n);
	printf("# bench tenants N=%zu: %u connections open after filling (budget %u connections, %u descriptors)\n",
	       n, b0.connections, b0.max_connections, b0.max_fds);
	double fc = best_ns(&t, fork_close, secs), fg = fc < 0 ? -1 : best_ns(&t, fork_get, secs);
	emh_host_budget(t.h, &b1, sizeof b1);
	if (fc < 0 || fg < 0) {
		printf("# bench tenants N=%zu: failed: %s: %s\n", n, emh_status_name(t.err.code), t.err.message);
		goto out_host;
	}
	printf("bench tenants N=%zu fork_close_ns=%.0f\n", n, fc);
	printf("bench tenants N=%zu fork_get_ns=%.0f\n", n, fg);
	printf("# bench tenants N=%zu: %llu connections closed for room while measuring\n", n,
	       (unsigned long long)(b1.evicted - b0.evicted));
	status = 0;
out_host:
	emh_host_free(t.h);
out_free:
	free(t.names);
out_rmdir:
	nftw(dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
	fflush(stdout);
	return status;
}

int bench_tenants(const char *plugin_dir, const char *list, const char *base, const char *journal, double secs)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
		printf("# bench tenants: RLIMIT_NOFILE %llu, journal_mode %s\n", (unsigned long long)rl.rlim_cur, journal);
	if (!base)
		base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	int status = 0;
	for (const char *p = list; *p;) {
		char *end;
		unsigned long long n = strtoull(p, &end, 10);
		if (end == p || n == 0 || (*end && *end != ',')) {
			printf("# bench tenants: '%s' is not a list of counts (1,100,10000)\n", list);
			return -1;
		}
		fflush(stdout);
		pid_t pid = fork();
		if (pid == 0)
			_exit(run_one(plugin_dir, base, journal, (size_t)n, secs) ? 1 : 0);
		int st = 0;
		if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			printf("# bench tenants N=%llu: failed (see above)\n", n);
			status = -1;
		}
		p = *end ? end + 1 : end;
	}
	return status;
}
