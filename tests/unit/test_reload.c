/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/test_reload.c: emh_host_reload on SQLite contexts: contexts
 * added, removed (after their open forks close) and their pools changed;
 * a driver copied into the plugin directory after start loaded; every
 * change that cannot apply live refused with the running configuration
 * kept; the summary line.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../fixture.h"
#include "../tap.h"

static fixture fx;
static char conf[256], plugdir[256];
static const char *const no_env[] = {NULL};
static const emh_reload_opts ropts = {.envp = no_env};

/* Write the configuration file: body is the contexts list's entries. */
static void write_conf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void write_conf(const char *fmt, ...)
{
	FILE *f = fopen(conf, "w");
	if (!f)
		bail("cannot write %s: %s", conf, strerror(errno));
	va_list ap;
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fclose(f);
}

/* A SQLite context entry named n on file n.db with pool max m. */
static const char *ctx(char *buf, size_t cap, const char *n, int m)
{
	snprintf(buf, cap, "{ name = \"%s\"; driver = \"sqlite\"; path = \"%s/%s.db\"; pool = { max = %d; }; }", n,
		 fx.dir, n, m);
	return buf;
}

static void copy_plugin(const char *from, const char *name)
{
	char cmd[2048];
	snprintf(cmd, sizeof cmd, "cp '%s' '%s/%s' && chmod 755 '%s/%s'", from, plugdir, name, plugdir, name);
	if (system(cmd) != 0)
		bail("cannot run: %s", cmd);
}

/* The contexts' names, "a,b,c", and one's pool max. */
static const char *names(emh_host *h, char *buf, size_t cap, const char *which, int *max)
{
	emh_context_info *ci;
	size_t n;
	emh_error err;
	buf[0] = '\0';
	if (emh_host_contexts(h, &ci, &n, &err) != 0)
		bail("emh_host_contexts: %s", err.message);
	size_t off = 0;
	for (size_t i = 0; i < n; i++) {
		off += (size_t)snprintf(buf + off, cap - off, "%s%s", i ? "," : "", ci[i].name);
		if (which && max && strcmp(ci[i].name, which) == 0)
			*max = ci[i].pool_max;
	}
	emh_context_info_free(ci, n);
	return buf;
}

/* The shown value and origin of a context setting. */
static void setting_of(emh_host *h, const char *c, const char *key, char *val, char *origin, size_t cap)
{
	emh_context_info *ci;
	size_t n;
	val[0] = origin[0] = '\0';
	if (emh_host_contexts(h, &ci, &n, NULL) != 0)
		bail("emh_host_contexts failed");
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; strcmp(ci[i].name, c) == 0 && j < ci[i].nsettings; j++)
			if (strcmp(ci[i].settings[j].key, key) == 0) {
				snprintf(val, cap, "%s", ci[i].settings[j].value);
				snprintf(origin, cap, "%s", ci[i].settings[j].origin);
			}
	emh_context_info_free(ci, n);
}

typedef struct reloader {
	emh_host *h;
	int rc;
	char summary[512];
	emh_error err;
} reloader;

static void *reload_main(void *arg)
{
	reloader *r = arg;
	r->rc = emh_host_reload(r->h, &ropts, r->summary, sizeof r->summary, &r->err);
	return NULL;
}

/* A fork of a that waits for a connection while the pool is full. */
static void *waiter_main(void *arg)
{
	emh_host *h = arg;
	emh_em *em;
	emh_error err;
	intptr_t rc = emh_host_fork(h, "a", &em, &err);
	if (rc == 0) {
		rc = emh_em_execute(em, "SELECT 1", &err);
		emh_em_close(em);
	}
	if (rc)
		diag("waiter: %s", err.message);
	return (void *)rc;
}

/* Lists the drivers and the refused plugins until told to stop. */
typedef struct looker {
	emh_host *h;
	atomic_bool stop;
	unsigned long rounds, bad;
} looker;

static void *looker_main(void *arg)
{
	looker *lk = arg;
	while (!atomic_load(&lk->stop)) {
		const emh_driver_info *di;
		const emh_refused_info *ri;
		size_t nd = emh_host_drivers(lk->h, &di), nr = emh_host_refused(lk->h, &ri);
		if (nd < 2 || nr < 1 || !strstr(ri[nr - 1].reason, "not an ELF"))
			lk->bad++;
		lk->rounds++;
	}
	return NULL;
}

int main(void)
{
	fixture_init(&fx, "reload");
	fixture_path(&fx, "emhost.conf", conf, sizeof conf);
	fixture_path(&fx, "plugins", plugdir, sizeof plugdir);
	if (mkdir(plugdir, 0755) != 0)
		bail("mkdir %s: %s", plugdir, strerror(errno));
	char src[1200], c1[512], c2[512], c3[512], c4[512];
	snprintf(src, sizeof src, "%s/sqlite.so", fx.plugin_dir);
	copy_plugin(src, "sqlite.so");

	write_conf("default_context = \"default\";\ncontexts = (\n  %s,\n  %s,\n  %s\n);\n",
		   ctx(c1, sizeof c1, "default", 2), ctx(c2, sizeof c2, "a", 4), ctx(c3, sizeof c3, "c", 2));
	emh_host *h;
	emh_error err;
	emh_host_opts ho = {.config_path = conf, .plugin_dir = plugdir, .envp = no_env, .log_level = EMH_LOG_WARN};
	if (emh_host_new(&ho, &h, &err) != 0)
		bail("emh_host_new: %s", err.message);
	char buf[512], sum[512];
	int max = 0;

	is_int(emh_host_reload(h, &ropts, sum, sizeof sum, &err), 0, "reload of an unchanged file");
	is_str(sum, "no change", "says there is no change");

	/* ---- add b, remove c (while a fork on it is open), pool of a 4 -> 16 ---- */
	emh_em *on_c = fixture_fork(h, "c");
	if (emh_em_execute(on_c, "CREATE TABLE t (x INTEGER)", &err) != 0)
		bail("execute on c: %s", err.message);
	write_conf("default_context = \"default\";\ncontexts = (\n  %s,\n  %s,\n  %s\n);\n",
		   ctx(c1, sizeof c1, "default", 2), ctx(c2, sizeof c2, "a", 16), ctx(c3, sizeof c3, "b", 2));
	reloader r = {.h = h};
	pthread_t th;
	fixture_thread(&th, reload_main, &r);
	/* the removal has begun once c takes no new fork */
	emh_em *probe = NULL;
	int tries = 0;
	while (emh_host_fork(h, "c", &probe, &err) == 0 && tries++ < 60000) {
		emh_em_close(probe);
		usleep(1000);
	}
	is_int(err.code, EMH_ENOCONTEXT, "during the reload, new forks on the removed context are refused");
	is_int(emh_em_execute(on_c, "INSERT INTO t VALUES (1)", &err), 0,
	       "the fork open on it keeps working until it closes");
	emh_em_close(on_c);
	pthread_join(th, NULL);
	is_int(r.rc, 0, "reload adding b, removing c, growing a's pool");
	if (r.rc)
		diag("%s", r.err.message);
	is_str(r.summary, "added contexts b; removed c; pool of a: max 4 -> 16", "the summary says what changed");
	is_str(names(h, buf, sizeof buf, "a", &max), "default,a,b", "contexts now: default, a, b");
	is_int(max, 16, "a's pool takes the new max");
	char val[128], origin[128];
	setting_of(h, "a", "pool.max", val, origin, sizeof val);
	is_str(val, "16", "and shows it");
	like_str(origin, "emhost.conf:", "with its place in the file");
	is_int(emh_host_ping(h, "b", &err), 0, "the new context works");

	/* ---- a larger max serves a fork already waiting ---- */
	snprintf(c2, sizeof c2,
		 "{ name = \"a\"; driver = \"sqlite\"; path = \"%s/a.db\"; pool = { max = 1; acquire_timeout_ms = 120000; }; }",
		 fx.dir);
	write_conf("default_context = \"default\";\ncontexts = (\n  %s,\n  %s,\n  %s\n);\n", c1, c2, c3);
	is_int(emh_host_reload(h, &ropts, sum, sizeof sum, &err), 0, "reload shrinking a's pool to 1");
	like_str(sum, "pool of a: max 16 -> 1, acquire_timeout_ms 5000 -> 120000", "both changes are listed");
	emh_em *holder = fixture_fork(h, "a");
	if (emh_em_execute(holder, "SELECT 1", &err) != 0)
		bail("holder: %s", err.message);
	pthread_t wt;
	fixture_thread(&wt, waiter_main, h);
	emh_context_info *ci;
	size_t n;
	for (unsigned waiting = 0, spins = 0; waiting == 0 && spins < 60000; spins++) {
		if (emh_host_contexts(h, &ci, &n, &err) != 0)
			bail("contexts: %s", err.message);
		for (size_t i = 0; i < n; i++)
			if (strcmp(ci[i].name, "a") == 0)
				waiting = ci[i].waiting;
		emh_context_info_free(ci, n);
		usleep(1000);
	}
	snprintf(c2, sizeof c2,
		 "{ name = \"a\"; driver = \"sqlite\"; path = \"%s/a.db\"; pool = { max = 2; acquire_timeout_ms = 120000; }; }",
		 fx.dir);
	write_conf("default_context = \"default\";\ncontexts = (\n  %s,\n  %s,\n  %s\n);\n", c1, c2, c3);
	is_int(emh_host_reload(h, &ropts, sum, sizeof sum, &err), 0, "reload growing a's pool to 2 while a fork waits");
	void *wrc;
	pthread_join(wt, &wrc);
	is_int((intptr_t)wrc, 0, "the waiting fork got the new connection while the first is still held");
	emh_em_close(holder);

	/* ---- refusals: the running configuration is kept ---- */
	write_conf("default_context = \"default\";\ncontexts = (\n  %s\n  %s\n);\n", c1, c2);
	is_int(emh_host_reload(h, &ropts, sum, sizeof sum, &err), EMH_ECONFIG, "a file with a syntax error is refused");
	like_str(err.message, "emhost.conf:", "naming the file and line");
	is_str(names(h, buf, sizeof buf, NULL, NULL), "default,a,b", "nothing changed");

	snprintf(c4, sizeof c4, "{ name = \"a\"; driver = \"sqlite\"; path = \"%s/moved.db\"; pool = { max = 2; acquire_timeout_ms = 120000; }; }",
		 fx.dir);
	write_conf("default_context = \"default\";\ncontexts = (\n  %s,\n  %s,\n  %s,\n  %s\n);\n", c1, c4, c3,
		   ctx(buf, sizeof buf, "d", 2));
	is_int(emh_host_reload(h, &ropts, sum, sizeof sum, &err), EMH_ECONFIG, "a changed connection setting is refused");
	like_str(err.message, "context 'a': path cannot change while it runs", "naming the context and the key");
	is_str(err.context, "a", "err.context is the context");
	is_str(names(h, buf, sizeof buf, NULL, NULL), "default,a,b", "the new context d of the same file was not added");

	/* the deadlines are built into each connection when it opens (docs/operations.md) */
	snprintf(c4, sizeof c4, "{ name = \"a\"; driver = \"sqlite\"; path = \"%s/a.db\"; statement_timeout_ms = 1000; "
		 "pool = { max = 2; acquire_timeout_ms = 120000; }; }", fx.dir);
	write_conf("default_context = \"default\";\ncontexts = (\n  %s,\n  %s,\n  %s\n);\n", c1, c4, c3);
	is_int(emh_host_reload(h, &ropts, sum, sizeof sum, &err), EMH_ECONFIG, "a changed statement_timeout_ms is refused");
	like_str(err.message, "context 'a': statement_timeout_ms cannot change while it runs", "naming the key");

	write_conf("default_context = \"default\";\ncontexts = (\n  %s,\n  %s\n);\n", c2, c3);
	is_int(emh_host_reload(h, &ropts, sum, sizeof sum, &err), EMH_ECONFIG, "removing the default context is refused");
	like_str(err.message, "default_context: no context 'default'", "saying why");

	write_conf("default_context = \"a\";\ncontexts = (\n  %s,\n  %s,\n  %s\n);\n", c1, c2, c3);
	is_int(emh_host_reload(h, &ropts, sum, sizeof sum, &err), EMH_ECONFIG, "another default context is refused");
	like_str(err.message, "'default' -> 'a'", "naming both");

	write_conf("default_context = \"default\";\ncontexts = (\n  %s,\n  %s\n);\n", c1, c2);
	const char *const pinned[] = {"b", "service 'notes'", NULL};
	emh_reload_opts popts = {.envp = no_env, .pinned = pinned};
	is_int(emh_host_reload(h, &popts, sum, sizeof sum, &err), EMH_ECONFIG, "removing a pinned context is refused");
	like_str(err.message, "context 'b' cannot be removed: service 'notes' uses it", "naming who uses it");

	snprintf(c4, sizeof c4, "{ name = \"r\"; driver = \"sqlite\"; required = true; path = \"%s/no/such/dir/r.db\"; }",
		 fx.dir);
	write_conf("default_context = \"default\";\ncontexts = (\n  %s,\n  %s,\n  %s,\n  %s\n);\n", c1, c2, c3, c4);
	ok(emh_host_reload(h, &ropts, sum, sizeof sum, &err) != 0, "a new required context that is down is refused");
	like_str(err.message, "required context 'r'", "naming it");
	is_str(names(h, buf, sizeof buf, NULL, NULL), "default,a,b", "nothing changed after every refusal");

	/* ---- contexts added through the API are not the file's ---- */
	snprintf(buf, sizeof buf, "%s/api.db", fx.dir);
	const char *kv[] = {"driver", "sqlite", "path", buf, NULL};
	if (emh_host_add_context(h, "tenant", kv, &err) != 0)
		bail("add_context: %s", err.message);
	write_conf("default_context = \"default\";\ncontexts = (\n  %s,\n  %s,\n  %s\n);\n", c1, c2, c3);
	is_int(emh_host_reload(h, &ropts, sum, sizeof sum, &err), 0, "reload with an API context");
	is_str(names(h, buf, sizeof buf, NULL, NULL), "default,a,b,tenant", "keeps it");

	/* ---- a driver dropped into the plugin directory after start ---- */
	snprintf(c4, sizeof c4, "{ name = \"docs\"; driver = \"memdoc\"; }");
	write_conf("default_context = \"default\";\ncontexts = (\n  %s,\n  %s,\n  %s,\n  %s\n);\n", c1, c2, c3, c4);
	is_int(emh_host_reload(h, &ropts, sum, sizeof sum, &err), EMH_EPLUGIN, "a context on a driver not loaded is refused");
	like_str(err.message, "unknown driver 'memdoc' (loaded drivers: sqlite)", "listing the loaded drivers");
	snprintf(src, sizeof src, "%s/tests/fixtures/.libs/memdoc.so", getenv("EMH_BUILDDIR"));
	copy_plugin(src, "memdoc.so");
	snprintf(buf, sizeof buf, "%s/broken.so", plugdir);
	FILE *bf = fopen(buf, "w");
	if (!bf)
		bail("cannot write %s", buf);
	fputs("not a shared object\n", bf);
	fclose(bf);
	const emh_driver_info *di;
	size_t nd_before = emh_host_drivers(h, &di);
	is_int(emh_host_reload(h, &ropts, sum, sizeof sum, &err), 0, "reload after memdoc.so was copied in");
	is_str(sum, "added contexts docs; drivers loaded: memdoc", "the summary names the new driver");
	is_int(emh_host_drivers(h, &di), nd_before + 1, "one more driver");
	is_str(di[nd_before].name, "memdoc", "memdoc");
	is_str(emh_host_context_driver(h, "docs"), "memdoc", "the new context runs on it");
	is_int(emh_host_ping(h, "docs", &err), 0, "and works");
	const emh_refused_info *ri;
	size_t nr = emh_host_refused(h, &ri);
	is_int(emh_host_reload(h, &ropts, sum, sizeof sum, &err), 0, "another reload");
	is_str(sum, "no change", "loads nothing twice");
	is_int(emh_host_refused(h, &ri), nr, "and lists a refused file once, however often it is tried");
	like_str(nr ? ri[nr - 1].reason : NULL, "not an ELF", "with its reason");

	/* ---- a plugin's constructors run inside dlopen, for as long as they
	 * take: forks go on meanwhile (the host lock is not held across it) ---- */
	{
		char gate[300], path[400];
		fixture_path(&fx, "gate", gate, sizeof gate);
		if (mkdir(gate, 0755) != 0)
			bail("mkdir %s: %s", gate, strerror(errno));
		setenv("FX_GATE_DIR", gate, 1);
		snprintf(src, sizeof src, "%s/tests/fixtures/.libs/fx_ctorgate.so", getenv("EMH_BUILDDIR"));
		copy_plugin(src, "fx_ctorgate.so");
		reloader rg = {.h = h};
		pthread_t gt;
		fixture_thread(&gt, reload_main, &rg);
		snprintf(path, sizeof path, "%s/started", gate);
		for (int i = 0; access(path, F_OK) != 0; i++) {
			if (i > 60000)
				bail("fx_ctorgate's constructor never started");
			usleep(1000);
		}
		emh_em *em = fixture_fork(h, "a");
		is_int(emh_em_execute(em, "SELECT 1", &err), 0, "a fork works while a plugin's constructor runs");
		emh_em_close(em);
		snprintf(path, sizeof path, "%s/open", gate);
		FILE *gf = fopen(path, "w");
		if (!gf)
			bail("cannot write %s", path);
		fclose(gf);
		pthread_join(gt, NULL);
		snprintf(path, sizeof path, "%s/gave-up", gate);
		ok(access(path, F_OK) != 0, "before the constructor returned (it did not wait for the fork)");
		is_int(rg.rc, 0, "the reload then loads the plugin");
		is_str(rg.summary, "drivers loaded: fx_ctorgate", "and says so");
		unsetenv("FX_GATE_DIR");
	}

	/* ---- introspection while reloads run: both keep memory callers may
	 * still borrow (a reload the environment it replaced, emh_host_refused
	 * the refusals it replaced) in one list, which must not be grown by
	 * both at once (under ASan a reload wrote into the list's old block) ---- */
	{
		enum { NENV = 256 };
		static char envbuf[NENV][32];
		static const char *bigenv[NENV + 1];
		for (int i = 0; i < NENV; i++) {
			snprintf(envbuf[i], sizeof envbuf[i], "RELOAD_TEST_VAR_%d=%d", i, i);
			bigenv[i] = envbuf[i];
		}
		emh_reload_opts bo = {.envp = bigenv};
		looker lk = {.h = h};
		pthread_t lt;
		fixture_thread(&lt, looker_main, &lk);
		int failed = 0;
		for (int i = 0; i < 150 && !failed; i++)
			failed = emh_host_reload(h, &bo, sum, sizeof sum, &err) != 0;
		atomic_store(&lk.stop, true);
		pthread_join(lt, NULL);
		is_int(failed, 0, "150 reloads while another thread lists drivers and refused plugins");
		ok(lk.rounds > 0 && lk.bad == 0, "every listing was whole (%lu rounds)", lk.rounds);
	}

	emh_host_free(h);

	/* ---- the environment is read again: a password from it that changed is a connection change ---- */
	snprintf(c2, sizeof c2, "{ name = \"default\"; driver = \"sqlite\"; path = \"%s/pw.db\"; password_env = \"PW\"; }",
		 fx.dir);
	write_conf("contexts = (\n  %s\n);\n", c2);
	const char *const env1[] = {"PW=first", NULL}, *const env2[] = {"PW=second", NULL};
	ho.envp = env1;
	ho.plugin_dir = fx.plugin_dir;
	if (emh_host_new(&ho, &h, &err) != 0)
		bail("emh_host_new: %s", err.message);
	emh_reload_opts eo = {.envp = env1};
	is_int(emh_host_reload(h, &eo, sum, sizeof sum, &err), 0, "the same environment: no change");
	eo.envp = env2;
	is_int(emh_host_reload(h, &eo, sum, sizeof sum, &err), EMH_ECONFIG, "a new value of password_env's variable");
	like_str(err.message, "context 'default': password cannot change while it runs", "is refused, naming the key");
	ok(!strstr(err.message, "second") && !strstr(err.message, "first"), "and never the values");
	emh_host_free(h);
	fixture_release(&fx);
	return done_testing();
}
