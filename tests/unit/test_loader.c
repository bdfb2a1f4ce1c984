/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/test_loader.c: the plugin loader against fixture plugins built
 * as real shared objects (tests/fixtures/), each with one defect: file
 * checks, the descriptor's ABI and size, required members, a file not named
 * after its driver, and every capability bit checked against the members
 * that serve it.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <emhost/emhost.h>
#include <emhost/driver.h>

#include "../tap.h"

static char dir[256];

static void copy(const char *from, const char *to_name, mode_t mode)
{
	char dst[512], cmd[1200];
	snprintf(dst, sizeof dst, "%s/%s", dir, to_name);
	snprintf(cmd, sizeof cmd, "cp '%s' '%s'", from, dst);
	if (system(cmd) != 0)
		bail("cannot copy %s", from);
	if (chmod(dst, mode) != 0)
		bail("chmod %s", dst);
}

static void write_file(const char *name, const char *text)
{
	char path[512];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	if (!f || fputs(text, f) < 0 || fclose(f) != 0)
		bail("cannot write %s", path);
}

static const char *reason_of(emh_host *h, const char *file_part)
{
	const emh_refused_info *r;
	size_t n = emh_host_refused(h, &r);
	for (size_t i = 0; i < n; i++)
		if (strstr(r[i].file, file_part))
			return r[i].reason;
	return NULL;
}

static const emh_driver_info *driver_named(emh_host *h, const char *name)
{
	const emh_driver_info *d;
	size_t n = emh_host_drivers(h, &d);
	for (size_t i = 0; i < n; i++)
		if (strcmp(d[i].name, name) == 0)
			return &d[i];
	return NULL;
}

static emh_host *host_on(const char *const *env, emh_error *err)
{
	emh_host_opts o = {.plugin_dir = dir, .envp = env};
	emh_host *h = NULL;
	emh_host_new(&o, &h, err);
	return h;
}

/* A statically registered driver named fx_good, for the duplicate case. */
static int st_connect(const emh_params *p, emh_dctx *dc, emh_conn **out, emh_error *err)
{
	(void)p, (void)dc, (void)err;
	static int token;
	*out = (emh_conn *)(void *)&token;
	return 0;
}
static void st_disconnect(emh_conn *c) { (void)c; }
static int st_conn(emh_conn *c, emh_error *err) { (void)c, (void)err; return 0; }
static int st_text(emh_conn *c, const char *t, emh_error *err) { (void)c, (void)t, (void)err; return 0; }
static int st_meta(emh_conn *c, const emh_meta *m, emh_error *err) { (void)c, (void)m, (void)err; return 0; }
static int st_write(emh_conn *c, const emh_meta *m, const emh_value *v, emh_value *k, emh_error *err)
{
	(void)c, (void)m, (void)v, (void)k, (void)err;
	return 0;
}
static int st_update(emh_conn *c, const emh_meta *m, const emh_value *v, uint64_t mask, emh_error *err)
{
	(void)c, (void)m, (void)v, (void)mask, (void)err;
	return 0;
}
static int st_remove(emh_conn *c, const emh_meta *m, const emh_value *k, emh_error *err)
{
	(void)c, (void)m, (void)k, (void)err;
	return 0;
}
static int st_find(emh_conn *c, const emh_meta *m, const emh_query *q, emh_rowsink *s, emh_error *err)
{
	(void)c, (void)m, (void)q, (void)s, (void)err;
	return 0;
}
static int st_count(emh_conn *c, const emh_meta *m, const emh_query *q, int64_t *n, emh_error *err)
{
	(void)c, (void)m, (void)q, (void)err;
	*n = 0;
	return 0;
}
static const emh_driver static_good = {
	EMH_DRIVER_HEADER, .name = "fx_good", .version = "static", .connect = st_connect,
	.disconnect = st_disconnect, .ping = st_conn, .execute = st_text, .sync = st_meta,
	.insert = st_write, .update = st_update, .remove = st_remove, .find = st_find, .count = st_count,
};

/* The fixtures, and the refusal each must get (NULL: it loads). */
static const struct {
	const char *file;
	const char *reason;
} fixtures[] = {
	{"fx_good", NULL},
	{"fx_sqlok", NULL},
	{"fx_doctx", NULL},
	{"fx_capnewer", NULL},
	{"fx_badabi", "ABI major 99"},
	{"fx_small", "struct_size 8"},
	{"fx_nosym", "no symbol 'emh_driver_descriptor'"},
	{"fx_noconnect", "required member 'connect' is NULL"},
	{"fx_nofind", "document driver (no dialect) without 'find'"},
	{"fx_nostmt", "'dialect' is set without 'stmt_exec'"},
	{"fx_capsql", "advertises EMH_CAP_SQL (bit 5) without 'dialect', 'stmt_exec'"},
	{"fx_captx", "advertises EMH_CAP_TRANSACTIONS (bit 0) without 'rollback' (a driver without a dialect"},
	{"fx_capsp", "advertises EMH_CAP_SAVEPOINTS (bit 1) without 'rollback_to'"},
	{"fx_capsptx", "advertises EMH_CAP_SAVEPOINTS (bit 1) without EMH_CAP_TRANSACTIONS (bit 0)"},
	{"fx_capatomic", "advertises EMH_CAP_ATOMIC_FLUSH (bit 6) without EMH_CAP_TRANSACTIONS (bit 0)"},
	{"fx_capret", "advertises EMH_CAP_RETURNING (bit 2) without a 'dialect'"},
	{"fx_capretsql", "advertises EMH_CAP_RETURNING (bit 2) but its dialect says returning = false"},
	{"fx_capupsert", "advertises EMH_CAP_UPSERT (bit 3) without 'upsert'"},
	{"fx_capupsql", "advertises EMH_CAP_UPSERT (bit 3) but its dialect has no upsert style"},
	{"fx_cap2pc", "advertises EMH_CAP_TWO_PHASE (bit 4), which no member of this ABI serves"},
	{"fx_capunknown", "unknown capability bit 40 (caps 0x10000000000)"},
	{"fx_capcond", "advertises EMH_CAP_CONDITIONAL_WRITES (bit 7) without 'update_where', 'delete_where'"},
	{"fx_caplocks", "advertises EMH_CAP_LOCKS (bit 8) without a 'dialect'"},
	{"fx_caplocksql", "advertises EMH_CAP_LOCKS (bit 8) without 'lock_clause'"},
	{"fx_capiso", "advertises EMH_CAP_ISOLATION (bit 9) without 'begin_isolation'"},
	{"fx_capagg", "advertises EMH_CAP_AGGREGATE (bit 10) without 'aggregate'"},
};
#define NFIXTURES (sizeof fixtures / sizeof fixtures[0])

static void t_directory(const char *const *noenv)
{
	emh_error err;
	emh_host *h = host_on(noenv, &err);
	if (!ok(h != NULL, "refused plugins do not stop a host whose contexts do not need them"))
		bail("%s", err.message);
	const emh_driver_info *d;
	size_t nd = emh_host_drivers(h, &d);
	is_int(nd, 4, "four drivers loaded: fx_good, fx_sqlok, fx_doctx, fx_capnewer");
	const emh_driver_info *good = driver_named(h, "fx_good");
	ok(good && strstr(good->file, "/fx_good.so"), "fx_good is served by fx_good.so, not by fx_a_stub.so");
	is_int(good ? (int)good->abi_major : -1, EMH_DRIVER_ABI_MAJOR, "its ABI major is recorded");
	const emh_driver_info *newer = driver_named(h, "fx_capnewer");
	ok(newer && newer->abi_minor == EMH_DRIVER_ABI_MINOR + 1,
	   "a plugin built against a newer minor loads (its newer members are ignored)");
	ok(newer && newer->caps == 0, "and so are its capability bits this host does not know");
	const emh_refused_info *r;
	size_t nr = emh_host_refused(h, &r);
	is_int(nr, NFIXTURES - 4 + 3, "every defective fixture, the stub, the writable file and the non-ELF file refused; "
				      "README.txt not even considered");
	for (size_t i = 0; i < nr; i++)
		diag("refused %s: %s", r[i].file, r[i].reason);
	for (size_t i = 0; i < NFIXTURES; i++) {
		char file[64];
		snprintf(file, sizeof file, "/%s.so", fixtures[i].file);
		if (fixtures[i].reason)
			like_str(reason_of(h, file), fixtures[i].reason, "%s refused, saying why", fixtures[i].file);
		else
			ok(reason_of(h, file) == NULL && driver_named(h, fixtures[i].file), "%s loads", fixtures[i].file);
	}
	like_str(reason_of(h, "fx_a_stub.so"),
		 "file 'fx_a_stub.so' declares driver 'fx_good': a plugin file is named after its driver (fx_good.so)",
		 "a plugin whose file name is not its driver's name is refused, though it sorts first");
	like_str(reason_of(h, "fx_worldwritable"), "writable by others", "world-writable file refused");
	like_str(reason_of(h, "notelf"), "not an ELF", "non-ELF file refused");
	emh_host_free(h);
}

static void t_contexts(void)
{
	emh_error err;
	/* a context that needs a refused driver stops the host, with the reason */
	const char *needs[] = {"EMH_CONTEXT_X_DRIVER=fx_small", NULL};
	emh_host *h = host_on(needs, &err);
	ok(h == NULL, "a context needing a refused driver stops the host");
	is_int(err.code, EMH_EPLUGIN, "with EMH_EPLUGIN");
	like_str(err.message, "fx_small.so' was refused: descriptor struct_size 8", "saying which file and why");
	emh_host_free(h);

	const char *upsert[] = {"EMH_CONTEXT_X_DRIVER=fx_capupsert", NULL};
	h = host_on(upsert, &err);
	ok(h == NULL && err.code == EMH_EPLUGIN, "a context on a driver refused for a capability stops the host");
	like_str(err.message, "fx_capupsert.so' was refused: advertises EMH_CAP_UPSERT (bit 3) without 'upsert'",
		 "naming the bit and the missing member");
	emh_host_free(h);

	const char *unknown[] = {"EMH_CONTEXT_X_DRIVER=nosuch", NULL};
	h = host_on(unknown, &err);
	ok(h == NULL && err.code == EMH_EPLUGIN, "an unknown driver stops the host");
	like_str(err.message, "unknown driver 'nosuch' (loaded drivers: ", "listing the loaded drivers");
	like_str(err.message, "fx_good", "fx_good among them");
	emh_host_free(h);

	const char *good[] = {"EMH_CONTEXT_X_DRIVER=fx_good", NULL};
	h = host_on(good, &err);
	ok(h != NULL, "a context on the good plugin works");
	emh_em *em = NULL;
	ok(h && emh_host_fork(h, "x", &em, &err) == 0 && emh_em_execute(em, "noop", &err) == 0,
	   "and reaches the plugin's code");
	emh_em_close(em);
	emh_host_free(h);
}

static void t_static(const char *const *noenv)
{
	emh_error err;
	/* static registration is checked like a plugin, file name aside */
	static emh_driver bad_static;
	bad_static = (emh_driver){.abi_version = 7u << 16, .struct_size = sizeof(emh_driver), .name = "st"};
	const emh_driver *statics[] = {&bad_static};
	emh_host_opts o = {.no_plugins = true, .drivers = statics, .ndrivers = 1, .envp = noenv};
	emh_host *h = NULL;
	const emh_refused_info *r;
	ok(emh_host_new(&o, &h, &err) == 0, "host with a bad static driver starts");
	like_str(h && emh_host_refused(h, &r) ? r[0].reason : NULL, "ABI major 7", "the static driver is refused too");
	emh_host_free(h);

	static emh_driver caps_static;
	caps_static = static_good;
	caps_static.name = "st_upsert";
	caps_static.caps = EMH_CAP_UPSERT;
	statics[0] = &caps_static;
	h = NULL;
	ok(emh_host_new(&o, &h, &err) == 0 && emh_host_refused(h, &r) == 1, "a static driver's capabilities are checked");
	like_str(h && emh_host_refused(h, &r) ? r[0].reason : NULL, "EMH_CAP_UPSERT (bit 3) without 'upsert'",
		 "with the plugin's reasons");
	emh_host_free(h);

	/* a static driver has no file: its name is all it has */
	statics[0] = &static_good;
	o.no_plugins = false;
	o.plugin_dir = dir;
	h = NULL;
	ok(emh_host_new(&o, &h, &err) == 0, "a static fx_good with the plugin directory starts");
	const emh_driver_info *d = h ? driver_named(h, "fx_good") : NULL;
	is_str(d ? d->file : NULL, "(static)", "the static driver comes first");
	like_str(h ? reason_of(h, "/fx_good.so") : NULL, "duplicate driver name 'fx_good' (already loaded from (static))",
		 "the plugin of the same name is refused as a duplicate");
	emh_host_free(h);
}

/* Log lines of a host, for the warning about a shared url scheme. */
static char logged[4096];
static void log_keep(void *ud, int level, const char *context, const char *msg)
{
	(void)ud, (void)level, (void)context;
	size_t n = strlen(logged);
	snprintf(logged + n, sizeof logged - n, "%s\n", msg);
}

/*
 * Two drivers declaring one url scheme: the first loaded used to serve every
 * url of it without a word (found by review: a stray pgstray.so declaring
 * "postgres" sorted before postgres.so took its contexts).  Now such a url
 * is refused unless the context's driver says which, and loading them warns
 * with both files.
 */
static void t_shared_scheme(const char *const *noenv)
{
	static const char *const schemes[] = {"pgx", NULL};
	static const emh_param_spec params[] = {
		{.key = "host", .kind = EMH_PARAM_STRING, .help = "server host"},
		{.key = "database", .kind = EMH_PARAM_STRING, .help = "database name"},
		{.key = NULL},
	};
	static emh_driver a, b;
	a = static_good;
	a.params = params;
	a.name = "st_pga";
	a.url_schemes = schemes;
	a.url_form = EMH_URL_NETWORK;
	b = a;
	b.name = "st_pgb";
	const emh_driver *statics[] = {&a, &b};
	emh_host_opts o = {.no_plugins = true, .drivers = statics, .ndrivers = 2, .log = log_keep,
			   .log_level = EMH_LOG_WARN};
	emh_error err;
	emh_host *h = NULL;

	const char *url_only[] = {"EMH_CONTEXT_MAIN_URL=pgx://h/db", NULL};
	o.envp = url_only;
	logged[0] = 0;
	ok(emh_host_new(&o, &h, &err) != 0 && h == NULL, "a url whose scheme two drivers declare stops the host");
	is_int(err.code, EMH_ECONFIG, "with EMH_ECONFIG");
	like_str(err.message, "url scheme 'pgx' is declared by drivers 'st_pga' and 'st_pgb'", "naming both drivers");
	like_str(err.message, "set the context's driver", "and what to do");
	like_str(logged, "url scheme 'pgx' of driver 'st_pgb' ((static)) is declared by driver 'st_pga' ((static)) too",
		 "loading them warned, with both files");
	emh_host_free(h);

	/* the context's driver says which: either of them, in any order */
	for (int i = 0; i < 2; i++) {
		const char *pick = i ? "st_pga" : "st_pgb";
		char var[64];
		snprintf(var, sizeof var, "EMH_CONTEXT_MAIN_DRIVER=%s", pick);
		const char *env[] = {"EMH_CONTEXT_MAIN_URL=pgx://h/db", var, NULL};
		o.envp = env;
		h = NULL;
		ok(emh_host_new(&o, &h, &err) == 0, "with EMH_CONTEXT_MAIN_DRIVER=%s the host starts", pick);
		is_str(h ? emh_host_context_driver(h, "main") : NULL, pick, "and main runs on %s", pick);
		emh_host_free(h);
	}
	(void)noenv;
}

int main(void)
{
	const char *b = getenv("EMH_BUILDDIR");
	if (!b)
		bail("EMH_BUILDDIR is not set (run through make check)");
	snprintf(dir, sizeof dir, "/tmp/emh-loader-XXXXXX");
	if (!mkdtemp(dir))
		bail("mkdtemp");
	if (chmod(dir, 0755) != 0)
		bail("chmod %s", dir);
	char src[512];
	for (size_t i = 0; i < NFIXTURES; i++) {
		char name[64];
		snprintf(src, sizeof src, "%s/tests/fixtures/.libs/%s.so", b, fixtures[i].file);
		snprintf(name, sizeof name, "%s.so", fixtures[i].file);
		copy(src, name, 0755);
	}
	/* declares fx_good and sorts before fx_good.so: it used to load first and
	 * serve fx_good's contexts, the real fx_good.so refused as a duplicate */
	snprintf(src, sizeof src, "%s/tests/fixtures/.libs/fx_stub.so", b);
	copy(src, "fx_a_stub.so", 0755);
	snprintf(src, sizeof src, "%s/tests/fixtures/.libs/fx_good.so", b);
	copy(src, "fx_worldwritable.so", 0666);
	write_file("notelf.so", "this is not a shared object\n");
	write_file("README.txt", "ignored: not *.so\n");

	const char *noenv[] = {NULL};
	t_directory(noenv);
	t_contexts();

	/* a directory writable by others: nothing is loaded from it */
	emh_error err;
	const emh_driver_info *d;
	const emh_refused_info *r;
	if (chmod(dir, 0777) != 0)
		bail("chmod %s", dir);
	emh_host *h = host_on(noenv, &err);
	ok(h != NULL, "host starts with a world-writable plugin directory");
	is_int(h ? emh_host_drivers(h, &d) : 99, 0, "but loads nothing from it");
	like_str(h && emh_host_refused(h, &r) ? r[0].reason : NULL, "directory is writable by others",
		 "and says why");
	emh_host_free(h);
	if (chmod(dir, 0755) != 0)
		bail("chmod %s", dir);

	t_static(noenv);
	t_shared_scheme(noenv);

	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		diag("could not remove %s", dir);
	return done_testing();
}
