/* SPDX-License-Identifier: MIT */
/*
 * tests/fixture.c: the shared test setup (see fixture.h).  It only bails
 * and never calls ok(): this file has its own copy of tap.h's counters, so
 * an assertion made here would be lost from the test's plan.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "fixture.h"
#include "tap.h"

#define FIXTURE_MAX_ENV 30

static const char *ctx_name(const char *ctx)
{
	return ctx ? ctx : "(default)";
}

void fixture_init(fixture *fx, const char *tag)
{
	const char *b = getenv("EMH_BUILDDIR");
	int n;

	memset(fx, 0, sizeof *fx);
	fx->log_level = EMH_LOG_WARN;
	if (!b || !*b)
		bail("EMH_BUILDDIR is not set (run the test through make check)");
	n = snprintf(fx->plugin_dir, sizeof fx->plugin_dir, "%s/plugins-build", b);
	if (n < 0 || (size_t)n >= sizeof fx->plugin_dir)
		bail("EMH_BUILDDIR '%s' is too long", b);
	n = snprintf(fx->dir, sizeof fx->dir, "/tmp/emh-%s-XXXXXX", tag);
	if (n < 0 || (size_t)n >= sizeof fx->dir)
		bail("fixture tag '%s' is too long", tag);
	if (!mkdtemp(fx->dir))
		bail("mkdtemp '%s': %s", fx->dir, strerror(errno));
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	if (remove(path) != 0)
		diag("fixture: cannot remove '%s': %s", path, strerror(errno));
	return 0;
}

void fixture_release(fixture *fx)
{
	if (!fx->dir[0])
		return;
	/* a leftover directory is litter, not a test failure: say so and go on */
	if (nftw(fx->dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS) != 0)
		diag("fixture: cannot walk '%s': %s", fx->dir, strerror(errno));
	fx->dir[0] = '\0';
}

void fixture_path(const fixture *fx, const char *name, char *buf, size_t cap)
{
	int n = snprintf(buf, cap, "%s/%s", fx->dir, name);
	if (n < 0 || (size_t)n >= cap)
		bail("path '%s/%s' does not fit in %zu bytes", fx->dir, name, cap);
}

int fixture_host(const fixture *fx, const char *const *envp, emh_host **out, emh_error *err)
{
	static const char *const none[] = {NULL};
	emh_host_opts o = {.plugin_dir = fx->plugin_dir, .envp = envp ? envp : none, .log_level = fx->log_level};
	*out = NULL;
	int rc = emh_host_new(&o, out, err);
	if (rc)
		*out = NULL;
	return rc;
}

emh_host *fixture_sqlite_host(const fixture *fx, const char *db, const char *const *extra_env,
			      const emh_entity *const *entities)
{
	char path[1024], url[1100];
	const char *env[FIXTURE_MAX_ENV + 2];
	size_t n = 0;
	emh_host *h;
	emh_error err;

	fixture_path(fx, db, path, sizeof path);
	snprintf(url, sizeof url, "EMH_CONTEXT_DEFAULT_URL=sqlite://%s", path);
	env[n++] = url;
	for (; extra_env && *extra_env; extra_env++) {
		if (n > FIXTURE_MAX_ENV)
			bail("fixture_sqlite_host: more than %d variables", FIXTURE_MAX_ENV);
		env[n++] = *extra_env;
	}
	env[n] = NULL;
	if (fixture_host(fx, env, &h, &err))
		bail("host with a SQLite default context on '%s': %s: %s", path, emh_status_name(err.code),
		     err.message);
	for (; entities && *entities; entities++)
		fixture_register(h, NULL, *entities);
	return h;
}

void fixture_register(emh_host *h, const char *ctx, const emh_entity *e)
{
	emh_error err;
	if (emh_host_register_entity(h, ctx, e, &err))
		bail("register entity '%s' on context '%s': %s", e->name, ctx_name(ctx), err.message);
}

void fixture_sync(emh_host *h, const char *ctx)
{
	emh_error err;
	if (emh_host_sync_schema(h, ctx, &err))
		bail("sync the schema of context '%s': %s", ctx_name(ctx), err.message);
}

emh_em *fixture_fork(emh_host *h, const char *ctx)
{
	emh_em *em = NULL;
	emh_error err;
	if (emh_host_fork(h, ctx, &em, &err))
		bail("fork context '%s': %s", ctx_name(ctx), err.message);
	return em;
}

double fixture_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int fixture_exec(emh_host *h, const char *ctx, const char *text, emh_error *err)
{
	emh_em *em;
	int rc = emh_host_fork(h, ctx, &em, err);
	if (rc)
		return rc;
	rc = emh_em_execute(em, text, err);
	emh_em_close(em);
	return rc;
}

emh_repo *fixture_repo(emh_em *em, const emh_entity *e)
{
	emh_repo *r = NULL;
	emh_error err;
	if (emh_em_repo(em, e, &r, &err))
		bail("repository of '%s' in context '%s': %s", e->name, emh_em_context(em), err.message);
	return r;
}

emh_query *fixture_query(emh_repo *r)
{
	emh_query *q = NULL;
	emh_error err;
	if (emh_repo_query(r, &q, &err))
		bail("new query: %s", err.message);
	return q;
}

void *fixture_new(emh_repo *r)
{
	void *p = NULL;
	emh_error err;
	if (emh_repo_new(r, &p, &err))
		bail("new object: %s", err.message);
	return p;
}

void fixture_thread(pthread_t *t, void *(*fn)(void *), void *arg)
{
	int rc = pthread_create(t, NULL, fn, arg);
	if (rc)
		bail("pthread_create: %s", strerror(rc));
}

emh_context_info fixture_context_info(emh_host *h, const char *name)
{
	emh_context_info *v, out = {0};
	size_t n;
	emh_error err;
	bool found = false;
	if (emh_host_contexts(h, &v, &n, &err))
		bail("emh_host_contexts: %s", err.message);
	for (size_t i = 0; i < n && !found; i++)
		if (strcmp(v[i].name, name) == 0) {
			out = v[i];
			out.name = out.driver = NULL;
			out.settings = NULL;
			out.nsettings = 0;
			found = true;
		}
	emh_context_info_free(v, n);
	if (!found)
		bail("context '%s' is not listed", name);
	return out;
}

int fixture_ping_without_fds(emh_host *h, const char *ctx, emh_error *err)
{
	struct rlimit saved, rl;
	if (getrlimit(RLIMIT_NOFILE, &saved) != 0)
		bail("getrlimit: %s", strerror(errno));
	int top = open("/dev/null", O_RDONLY);
	if (top < 0)
		bail("open /dev/null: %s", strerror(errno));
	int held[16], nheld = 0;
	held[nheld++] = top;
	rl = saved;
	rl.rlim_cur = (rlim_t)top + 8;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
		bail("setrlimit(RLIMIT_NOFILE, %d): %s", top + 8, strerror(errno));
	while (nheld < 16) {
		int fd = open("/dev/null", O_RDONLY);
		if (fd < 0)
			break;
		held[nheld++] = fd;
	}
	int rc = nheld < 16 ? emh_host_ping(h, ctx, err) : 1;
	for (int i = 0; i < nheld; i++)
		close(held[i]);
	if (setrlimit(RLIMIT_NOFILE, &saved) != 0)
		bail("restoring RLIMIT_NOFILE: %s", strerror(errno));
	if (rc == 1)
		bail("/dev/null kept opening under the lowered descriptor limit");
	return rc;
}
