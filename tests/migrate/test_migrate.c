/* SPDX-License-Identifier: MIT */
/*
 * tests/migrate/test_migrate.c: a two-context project against the real test
 * servers, driven through the `emhost` tool as a user would, and checked
 * through the library (emh_migrate_status, the rows the migrations wrote).
 *
 *   test_migrate sqlite-postgres   contexts "lite" (a SQLite file) and "pg"
 *   test_migrate mariadb-mongo     contexts "maria" and "mongo"
 *
 * Each context has its own folder.  On each: status, up --to, up, down,
 * a down refused for a missing down file, a changed file (nothing runs), two
 * migrations with one number, a statement failing in the middle (rolled back
 * where DDL is transactional, "partly changed" where not), a statement
 * past statement_timeout_ms on MariaDB ("may still complete"), two `migrate up`
 * processes at once, and the schema diff of an entity (tests/migrate/
 * fxm_service.c) before and after adding a field and an index: the generated
 * migration applied, the diff then empty.  Server URLs come from
 * EMH_TEST_PG_URL, EMH_TEST_MYSQL_URL and EMH_TEST_MONGO_URI.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <emhost/emhost.h>

#include "../fixture.h"
#include "../tap.h"

static fixture fx;
static char emhost_bin[1100], svc_dir[600], prefix[32];

/* One context of the project. */
typedef struct tctx {
	const char *name;   /* context name */
	const char *kind;   /* "sqlite", "postgres", "mysql", "mongo" */
	const char *url;
	bool json;          /* migrations are JSON commands */
	bool transactional; /* DDL in transactions */
	char dir[600];      /* its migrations folder */
} tctx;

static tctx ctxs[2];
static char conf_plain[600], conf_v1[600], conf_v2[600], conf_slow[600];

/* ---- files ---- */

static void write_file(const char *path, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void write_file(const char *path, const char *fmt, ...)
{
	FILE *f = fopen(path, "w");
	if (!f)
		bail("cannot write %s: %s", path, strerror(errno));
	va_list ap;
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fclose(f);
}

/* "<ctx folder>/<name>" */
static const char *in_dir(const tctx *c, const char *name)
{
	static char buf[4][800];
	static int i;
	i = (i + 1) % 4;
	snprintf(buf[i], sizeof buf[i], "%s/%s", c->dir, name);
	return buf[i];
}

static char *read_all(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		bail("cannot read %s: %s", path, strerror(errno));
	char *buf = calloc(1, 1 << 16);
	size_t n = buf ? fread(buf, 1, (1 << 16) - 1, f) : 0;
	fclose(f);
	if (!buf)
		bail("out of memory");
	buf[n] = '\0';
	return buf;
}

/* The configuration: both contexts, and the fixture service on each when module is set; extra in each context. */
static void write_conf_with(const char *path, const char *module, const char *extra)
{
	char services[2048] = "";
	if (module)
		snprintf(services, sizeof services,
			 "service_dir = \"%s\";\nservices = (\n"
			 "  { name = \"t_%s\"; module = \"%s\"; contexts = { default = \"%s\"; }; },\n"
			 "  { name = \"t_%s\"; module = \"%s\"; contexts = { default = \"%s\"; }; }\n);\n",
			 svc_dir, ctxs[0].name, module, ctxs[0].name, ctxs[1].name, module, ctxs[1].name);
	write_file(path,
		   "default_context = \"%s\";\ncontexts = (\n"
		   "  { name = \"%s\"; url = \"%s\"; migrations = \"%s\"; pool = { max = 2; };%s },\n"
		   "  { name = \"%s\"; url = \"%s\"; migrations = \"%s\"; pool = { max = 2; };%s }\n);\n%s",
		   ctxs[0].name, ctxs[0].name, ctxs[0].url, ctxs[0].dir, extra, ctxs[1].name, ctxs[1].url, ctxs[1].dir,
		   extra, services);
}

static void write_conf(const char *path, const char *module)
{
	write_conf_with(path, module, "");
}

/* ---- the tool ---- */

/* Start `emhost -c conf -p plugins args...`; its output goes to the file out. */
static pid_t cli_start(const char *conf, const char *out, const char *const *args)
{
	const char *argv[32];
	int n = 0;
	argv[n++] = emhost_bin;
	argv[n++] = "-c";
	argv[n++] = conf;
	argv[n++] = "-p";
	argv[n++] = fx.plugin_dir;
	for (; *args && n < 31; args++)
		argv[n++] = *args;
	argv[n] = NULL;
	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0)
		bail("fork: %s", strerror(errno));
	if (pid == 0) {
		FILE *f = freopen(out, "w", stdout);
		if (!f || dup2(fileno(stdout), 2) < 0)
			_exit(127);
		execv(emhost_bin, (char *const *)argv);
		_exit(127);
	}
	return pid;
}

static int cli_wait(pid_t pid)
{
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			bail("waitpid: %s", strerror(errno));
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static char last_out[1 << 16];

/* Run the tool to its end: its exit status, its output in last_out. */
static int cli(const char *conf, const char *const *args)
{
	char out[700];
	fixture_path(&fx, "cli.out", out, sizeof out);
	int rc = cli_wait(cli_start(conf, out, args));
	char *text = read_all(out);
	snprintf(last_out, sizeof last_out, "%s", text);
	free(text);
	return rc;
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* The tool exits with want; its output shown when not. */
#define cli_is(want, conf, args, ...)                                          \
	do {                                                                   \
		int cli_rc_ = cli(conf, args);                                 \
		is_int(cli_rc_, want, __VA_ARGS__);                            \
		if (cli_rc_ != (want))                                         \
			diag("output:\n%s", last_out);                         \
	} while (0)

/* The tool's output holds want; shown when not. */
static void out_has(const char *want, const char *name)
{
	if (!ok(strstr(last_out, want) != NULL, "%s: output says '%s'", name, want))
		diag("output:\n%s", last_out);
}

/* ---- the library's view ---- */

static emh_host *host_open(void)
{
	emh_host_opts o = {.config_path = conf_plain, .plugin_dir = fx.plugin_dir, .log_level = EMH_LOG_ERROR};
	emh_host *h;
	emh_error err;
	if (emh_host_new(&o, &h, &err) != 0)
		bail("host on %s: %s", conf_plain, err.message);
	return h;
}

/* State of migration number in the context ('-' when not listed). */
static void states(emh_host *h, const tctx *c, char *out, size_t cap)
{
	emh_migration *v;
	size_t n;
	emh_error err;
	if (emh_migrate_status(h, c->name, &v, &n, &err) != 0) {
		diag("%s: status: %s", c->name, err.message);
		snprintf(out, cap, "error");
		return;
	}
	size_t k = 0;
	for (size_t i = 0; i < n && k + 1 < cap; i++)
		out[k++] = "?PACM"[v[i].state];
	out[k] = '\0';
	emh_migrations_free(v, n);
}

/* The states as one letter per migration, in order: P pending, A applied, C changed, M missing. */
static void states_are(emh_host *h, const tctx *c, const char *want, const char *name)
{
	char got[64];
	states(h, c, got, sizeof got);
	if (!ok(strcmp(got, want) == 0, "%s: %s: migrations are %s", c->name, name, want))
		diag("  got: %s", got);
}

typedef struct tlog {
	int64_t id;
	const char *note;
} tlog;
static const emh_field tlog_fields[] = {
	EMH_FIELD(tlog, id, EMH_T_INT64, EMH_F_PK),
	EMH_FIELD(tlog, note, EMH_T_TEXT, EMH_F_NULLABLE),
};

/* Rows of the table <prefix><table> (entity registered on first use), -1 when it cannot be read. */
static long long rows(emh_host *h, const tctx *c, const char *table)
{
	char *name = malloc(64);
	if (!name)
		bail("out of memory");
	snprintf(name, 64, "%s%s", prefix, table);
	emh_entity e = EMH_ENTITY(tlog, "", tlog_fields);
	e.table = name;
	emh_error err;
	long long n = -1;
	if (emh_host_register_entity(h, c->name, &e, &err) != 0)
		bail("register %s in %s: %s", name, c->name, err.message);
	emh_em *em;
	emh_repo *r;
	int64_t cnt;
	if (emh_host_fork(h, c->name, &em, &err) == 0) {
		if (emh_em_repo(em, &e, &r, &err) == 0 && emh_repo_count(r, NULL, &cnt, &err) == 0)
			n = cnt;
		emh_em_close(em);
	}
	free(name);
	return n;
}

/* Does the table exist?  SQL: a SELECT on it runs; documents: it holds a row. */
static bool table_there(emh_host *h, const tctx *c, const char *table)
{
	if (c->json)
		return rows(h, c, table) > 0;
	char sql[160];
	snprintf(sql, sizeof sql, "SELECT 1 FROM %s%s", prefix, table);
	emh_em *em = fixture_fork(h, c->name);
	emh_error err;
	int rc = emh_em_execute(em, sql, &err);
	emh_em_close(em);
	return rc == 0;
}

/* Drop what the test makes, before and after (the servers outlive one run). */
static void clean(emh_host *h, const tctx *c)
{
	static const char *const tables[] = {"items", "log", "t4", NULL};
	char cmd[256];
	emh_em *em = fixture_fork(h, c->name);
	emh_error err;
	for (size_t i = 0; tables[i]; i++) {
		if (c->json)
			snprintf(cmd, sizeof cmd, "{\"drop\": \"%s%s\"}", prefix, tables[i]);
		else
			snprintf(cmd, sizeof cmd, "DROP TABLE IF EXISTS %s%s", prefix, tables[i]);
		emh_em_execute(em, cmd, &err);
	}
	static const char *const shared[] = {"mig_things", "emh_migrations", "emh_locks", NULL};
	for (size_t i = 0; shared[i]; i++) {
		if (c->json)
			snprintf(cmd, sizeof cmd, "{\"drop\": \"%s\"}", shared[i]);
		else if (strcmp(shared[i], "emh_locks") == 0)
			continue;
		else
			snprintf(cmd, sizeof cmd, "DROP TABLE IF EXISTS %s", shared[i]);
		if (emh_em_execute(em, cmd, &err) != 0)
			diag("cleaning %s: %s", c->name, err.message);
	}
	emh_em_close(em);
}

/* ---- the migrations ---- */

/* 0001..0003 (with down files) for c, writing one row to <prefix>log each. */
static void write_migrations(const tctx *c)
{
	const char *p = prefix;
	if (c->json) {
		write_file(in_dir(c, "0001_create.json"),
			   "[\n  {\"create\": \"%sitems\"},\n  {\"create\": \"%slog\"},\n"
			   "  {\"insert\": \"%slog\", \"documents\": [{\"_id\": 1, \"note\": \"create; ]\"}]}\n]\n",
			   p, p, p);
		write_file(in_dir(c, "0001_create.down.json"), "[{\"drop\": \"%slog\"}, {\"drop\": \"%sitems\"}]\n", p, p);
		write_file(in_dir(c, "0002_fill.json"),
			   "[{\"insert\": \"%sitems\", \"documents\": [{\"_id\": 1, \"name\": \"x\"}]},\n"
			   " {\"insert\": \"%slog\", \"documents\": [{\"_id\": 2, \"note\": \"fill\"}]}]\n",
			   p, p);
		write_file(in_dir(c, "0002_fill.down.json"),
			   "[{\"delete\": \"%sitems\", \"deletes\": [{\"q\": {\"_id\": 1}, \"limit\": 1}]},\n"
			   " {\"delete\": \"%slog\", \"deletes\": [{\"q\": {\"_id\": 2}, \"limit\": 1}]}]\n",
			   p, p);
		write_file(in_dir(c, "0003_more.json"), "[{\"insert\": \"%slog\", \"documents\": [{\"_id\": 3}]}]\n", p);
		write_file(in_dir(c, "0003_more.down.json"),
			   "[{\"delete\": \"%slog\", \"deletes\": [{\"q\": {\"_id\": 3}, \"limit\": 1}]}]\n", p);
		return;
	}
	write_file(in_dir(c, "0001_create.sql"),
		   "-- items, and a log of what ran; the note holds the statement delimiter\n"
		   "CREATE TABLE %sitems (id BIGINT PRIMARY KEY, name VARCHAR(100) NOT NULL);\n"
		   "CREATE TABLE %slog (id BIGINT PRIMARY KEY, note VARCHAR(100));\n"
		   "INSERT INTO %slog (id, note) VALUES (1, 'create; it''s');\n",
		   p, p, p);
	write_file(in_dir(c, "0001_create.down.sql"), "DROP TABLE %slog;\nDROP TABLE %sitems;\n", p, p);
	write_file(in_dir(c, "0002_fill.sql"),
		   "INSERT INTO %sitems (id, name) VALUES (1, 'x');\nINSERT INTO %slog (id, note) VALUES (2, 'fill');\n",
		   p, p);
	write_file(in_dir(c, "0002_fill.down.sql"), "DELETE FROM %sitems WHERE id = 1;\nDELETE FROM %slog WHERE id = 2;\n",
		   p, p);
	/* The drivers' own files wait a little, so that two runs at once overlap. */
	write_file(in_dir(c, "0003_more.sql"), "INSERT INTO %slog (id, note) VALUES (3, 'more');\n", p);
	write_file(in_dir(c, "0003_more.postgres.sql"), "SELECT pg_sleep(0.3);\nINSERT INTO %slog (id, note) VALUES (3, 'more');\n", p);
	write_file(in_dir(c, "0003_more.mysql.sql"), "DO SLEEP(0.3);\nINSERT INTO %slog (id, note) VALUES (3, 'more');\n", p);
	write_file(in_dir(c, "0003_more.down.sql"), "DELETE FROM %slog WHERE id = 3;\n", p);
}

static void test_up_down(emh_host *h, const tctx *c)
{
	const char *n = c->name;
	cli_is(0, conf_plain, ARGS("migrate", "status", "--context", n), "%s: status", n);
	out_has("0 applied, 3 pending", n);
	cli_is(0, conf_plain, ARGS("migrate", "up", "--to", "2", "--context", n), "%s: up --to 2", n);
	out_has("2 migrations applied", n);
	states_are(h, c, "AAP", "after up --to 2");
	is_int(rows(h, c, "log"), 2, "%s: the two migrations wrote their rows", n);
	cli_is(0, conf_plain, ARGS("migrate", "up", "--context", n), "%s: up", n);
	out_has("1 migration applied", n);
	states_are(h, c, "AAA", "after up");
	is_int(rows(h, c, "log"), 3, "%s: three rows", n);
	cli_is(0, conf_plain, ARGS("migrate", "up", "--context", n), "%s: up again", n);
	out_has("nothing to apply", n);
	cli_is(0, conf_plain, ARGS("migrate", "status", "--context", n), "%s: status", n);
	out_has("3 applied, 0 pending", n);

	cli_is(0, conf_plain, ARGS("migrate", "down", "--to", "1", "--context", n), "%s: down --to 1", n);
	out_has("2 migrations undone", n);
	states_are(h, c, "APP", "after down --to 1");
	is_int(rows(h, c, "log"), 1, "%s: their rows are gone", n);

	char hidden[800];
	snprintf(hidden, sizeof hidden, "%s.away", in_dir(c, c->json ? "0001_create.down.json" : "0001_create.down.sql"));
	if (rename(in_dir(c, c->json ? "0001_create.down.json" : "0001_create.down.sql"), hidden) != 0)
		bail("rename: %s", strerror(errno));
	cli_is(1, conf_plain, ARGS("migrate", "down", "--to", "0", "--context", n),
	       "%s: down refused when a step has no down file", n);
	out_has("has no down file", n);
	states_are(h, c, "APP", "nothing undone");
	if (rename(hidden, in_dir(c, c->json ? "0001_create.down.json" : "0001_create.down.sql")) != 0)
		bail("rename back: %s", strerror(errno));
}

static void test_tamper_and_duplicates(emh_host *h, const tctx *c)
{
	const char *n = c->name, *first = in_dir(c, c->json ? "0001_create.json" : "0001_create.sql");
	char *saved = read_all(first);
	write_file(first, "%s%s", saved, c->json ? "\n" : "-- changed\n");
	cli_is(1, conf_plain, ARGS("migrate", "status", "--context", n), "%s: status of a changed file fails", n);
	out_has("CHANGED", n);
	cli_is(1, conf_plain, ARGS("migrate", "up", "--context", n), "%s: up with a changed file fails", n);
	out_has("changed since", n);
	out_has(c->json ? "0001_create.json" : "0001_create.sql", n);
	states_are(h, c, "CPP", "nothing ran");
	write_file(first, "%s", saved);
	free(saved);
	states_are(h, c, "APP", "the file put back");

	const char *dup = in_dir(c, c->json ? "0002_other.json" : "0002_other.sql");
	write_file(dup, c->json ? "[]\n" : "SELECT 1;\n");
	cli_is(1, conf_plain, ARGS("migrate", "up", "--context", n), "%s: two migrations numbered 2", n);
	out_has(c->json ? "0002_fill.json" : "0002_fill.sql", n);
	out_has(c->json ? "0002_other.json" : "0002_other.sql", n);
	unlink(dup);
	states_are(h, c, "APP", "nothing ran");
}

/* 0004: a table, then a statement that fails, then one more. */
static void test_failure(emh_host *h, const tctx *c)
{
	const char *n = c->name, *p = prefix;
	const char *file = in_dir(c, c->json ? "0004_bad.json" : "0004_bad.sql");
	if (c->json)
		write_file(file,
			   "[\n  {\"insert\": \"%st4\", \"documents\": [{\"_id\": 1}]},\n"
			   "  {\"insert\": \"%slog\", \"documents\": [{\"_id\": 1, \"note\": \"a duplicate key\"}]},\n"
			   "  {\"insert\": \"%st4\", \"documents\": [{\"_id\": 2}]}\n]\n",
			   p, p, p);
	else
		write_file(file,
			   "CREATE TABLE %st4 (id BIGINT PRIMARY KEY);\n-- no such table:\n"
			   "INSERT INTO %snowhere (id) VALUES (1);\nINSERT INTO %st4 (id) VALUES (2);\n",
			   p, p, p);
	cli_is(1, conf_plain, ARGS("migrate", "up", "--context", n), "%s: up stops at the failing migration", n);
	out_has("0004_bad", n);
	out_has("statement 2 of 3 (line 3", n);
	if (c->transactional) {
		out_has("nothing of it applied", n);
		ok(!table_there(h, c, "t4"), "%s: its first statement was rolled back", n);
	} else {
		out_has("the schema may be partly changed", n);
		ok(table_there(h, c, "t4"), "%s: its first statement stays (no transactional DDL)", n);
	}
	states_are(h, c, "AAAP", "the ones before it applied, it pending");
	unlink(file);
	emh_em *em = fixture_fork(h, c->name);
	char cmd[160];
	emh_error err;
	if (c->json)
		snprintf(cmd, sizeof cmd, "{\"drop\": \"%st4\"}", p);
	else
		snprintf(cmd, sizeof cmd, "DROP TABLE IF EXISTS %st4", p);
	emh_em_execute(em, cmd, &err);
	emh_em_close(em);
}

/*
 * Without transactional DDL, a statement past statement_timeout_ms may
 * still complete on the server: the error says so, not "nothing of it
 * applied" (found by review).  conf_slow: statement_timeout_ms = 300.
 */
static void test_timeout(const tctx *c)
{
	const char *n = c->name, *p = prefix;
	const char *file = in_dir(c, "0004_slow.sql");
	write_file(file, "CREATE TABLE %st4 (id BIGINT PRIMARY KEY);\nSELECT SLEEP(10);\n", p);
	emh_host_opts o = {.config_path = conf_slow, .plugin_dir = fx.plugin_dir, .log_level = EMH_LOG_ERROR};
	emh_host *h;
	emh_error err;
	if (emh_host_new(&o, &h, &err) != 0)
		bail("host on %s: %s", conf_slow, err.message);
	size_t done = 99;
	is_int(emh_migrate_up(h, n, NULL, &done, &err), EMH_ETIMEOUT, "%s: a statement past statement_timeout_ms", n);
	like_str(err.message, "statement 2 of 2 (line 2", "%s: naming it: %s", n, err.message);
	like_str(err.message, "timed out and may still complete on the server", "%s: saying it may still complete", n);
	like_str(err.message, "the 1 before it ran and stay", "%s: and that the one before it stays", n);
	ok(!strstr(err.message, "nothing of it applied"), "%s: not that nothing of it was applied", n);
	is_int(done, 0, "%s: nothing counted as applied", n);
	write_file(file, "SELECT SLEEP(10);\n");
	is_int(emh_migrate_up(h, n, NULL, &done, &err), EMH_ETIMEOUT, "%s: its first statement times out", n);
	like_str(err.message, "timed out and may still complete on the server", "%s: saying it may still complete: %s",
		 n, err.message);
	ok(!strstr(err.message, "nothing of it applied"), "%s: not that nothing of it was applied", n);
	emh_host_free(h);
	unlink(file);
	h = host_open();
	states_are(h, c, "AAA", "the timed-out one not recorded");
	emh_em *em = fixture_fork(h, c->name);
	char cmd[160];
	snprintf(cmd, sizeof cmd, "DROP TABLE IF EXISTS %st4", p);
	emh_em_execute(em, cmd, &err);
	emh_em_close(em);
	emh_host_free(h);
}

/* N of "context X: N migration(s) applied in ..." in an output file ("nothing to apply": 0), -1 when neither. */
static int applied_in(const char *path)
{
	char *t = read_all(path);
	int n = -1;
	for (char *line = t; line && *line;) {
		char *nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		int k;
		if (sscanf(line, "context %*[^:]: %d migration", &k) == 1 && strstr(line, " applied in "))
			n = k;
		else if (strncmp(line, "context ", 8) == 0 && strstr(line, "nothing to apply"))
			n = 0;
		line = nl ? nl + 1 : NULL;
	}
	free(t);
	if (n < 0) {
		t = read_all(path);
		diag("output:\n%s", t);
		free(t);
	}
	return n;
}

static void test_concurrent(emh_host *h, const tctx *c)
{
	const char *n = c->name;
	cli_is(0, conf_plain, ARGS("migrate", "down", "--to", "0", "--context", n), "%s: down --to 0", n);
	states_are(h, c, "PPP", "all undone");
	char o1[700], o2[700];
	fixture_path(&fx, "run1.out", o1, sizeof o1);
	fixture_path(&fx, "run2.out", o2, sizeof o2);
	pid_t a = cli_start(conf_plain, o1, ARGS("migrate", "up", "--context", n));
	pid_t b = cli_start(conf_plain, o2, ARGS("migrate", "up", "--context", n));
	int ra = cli_wait(a), rb = cli_wait(b);
	is_int(ra, 0, "%s: the first of two concurrent runs succeeds", n);
	is_int(rb, 0, "%s: the second succeeds too (it waited for the lock)", n);
	for (int k = 0; k < 2; k++)
		if ((k ? rb : ra) != 0) {
			char *t = read_all(k ? o2 : o1);
			diag("output of run %d:\n%s", k + 1, t);
			free(t);
		}
	int na = applied_in(o1), nb = applied_in(o2);
	is_int(na + nb, 3, "%s: between them they applied each migration once (%d + %d)", n, na, nb);
	states_are(h, c, "AAA", "after both");
	is_int(rows(h, c, "log"), 3, "%s: one row per migration, none twice", n);
}

/* Run text on a fork of c (setup that must work). */
static void exec_ok(emh_em *em, const char *text)
{
	emh_error err;
	if (emh_em_execute(em, text, &err) != 0)
		bail("%s: %s", text, err.message);
}

/* Another session holds the migration lock: a run gives up after lock_wait_ms, saying so. */
static void test_lock_held(emh_host *h, const tctx *c)
{
	static const char my_lock[] = "CONCAT('emh_migrate_', LEFT(SHA2(COALESCE(DATABASE(), ''), 256), 40))";
	const char *n = c->name;
	emh_em *em = fixture_fork(h, n);
	char take[256], give[256];
	if (strcmp(c->kind, "postgres") == 0) {
		snprintf(take, sizeof take, "SELECT pg_advisory_lock(1701669889, 0)");
		snprintf(give, sizeof give, "SELECT pg_advisory_unlock(1701669889, 0)");
	} else if (strcmp(c->kind, "mysql") == 0) {
		snprintf(take, sizeof take, "SELECT GET_LOCK(%s, 0)", my_lock);
		snprintf(give, sizeof give, "SELECT RELEASE_LOCK(%s)", my_lock);
	} else if (strcmp(c->kind, "sqlite") == 0) {
		snprintf(take, sizeof take, "BEGIN EXCLUSIVE");
		snprintf(give, sizeof give, "ROLLBACK");
	} else {
		snprintf(take, sizeof take,
			 "{\"insert\": \"emh_locks\", \"documents\": [{\"_id\": \"migrate\", \"owner\": \"another run\","
			 " \"expires\": {\"$date\": \"2999-01-01T00:00:00Z\"}}]}");
		snprintf(give, sizeof give,
			 "{\"update\": \"emh_locks\", \"updates\": [{\"q\": {\"_id\": \"migrate\"},"
			 " \"u\": {\"$set\": {\"expires\": {\"$date\": \"2000-01-01T00:00:00Z\"}}}}]}");
	}
	exec_ok(em, take);
	emh_migrate_opts o = {.lock_wait_ms = 300};
	emh_error err;
	is_int(emh_migrate_up(h, n, &o, NULL, &err), EMH_ETIMEOUT, "%s: a run gives up while another holds the lock", n);
	ok(strstr(err.message, "migration lock") && strstr(err.message, "another migration run"), "%s: saying so: %s",
	   n, err.message);
	if (c->json)
		ok(strstr(err.message, "2999-01-01") != NULL, "%s: and until when the lock document holds", n);
	exec_ok(em, give); /* mongo: the document expired, as if its run had died */
	emh_em_close(em);
	is_int(emh_migrate_up(h, n, &o, NULL, &err), 0, "%s: once it is released (expired) a run takes it", n);
}

/* migrate new NAME --from-diff writes file; it applies; the diff is empty then. */
static void from_diff(const char *conf, const tctx *c, const char *name, const char *file)
{
	const char *n = c->name;
	cli_is(0, conf, ARGS("migrate", "new", name, "--context", n, "--from-diff"), "%s: migrate new %s --from-diff",
	       n, name);
	out_has(file, n);
	cli_is(0, conf, ARGS("migrate", "up", "--context", n), "%s: the generated %s applies", n, file);
	out_has("1 migration applied", n);
	cli_is(0, conf, ARGS("schema", "diff", "--context", n, "--exit-code"), "%s: then the diff is empty", n);
	out_has("matches the entities", n);
}

static void test_schema_diff(emh_host *h, const tctx *c)
{
	const char *n = c->name;
	(void)h;
	cli_is(3, conf_v1, ARGS("schema", "diff", "--context", n, "--exit-code"),
	       "%s: schema diff of a new entity differs", n);
	out_has(c->json ? "\"create\" : \"mig_things\"" : "CREATE TABLE IF NOT EXISTS", n);
	from_diff(conf_v1, c, "things", c->json ? "0004_things.json" : "0004_things.sql");

	/* v2: a NOT NULL int field and an index on title */
	cli_is(3, conf_v2, ARGS("schema", "diff", "--context", n, "--exit-code"),
	       "%s: a field and an index added: the diff differs", n);
	out_has("mig_things_title_ix", n);
	if (!c->json) {
		out_has("ADD COLUMN", n);
		out_has("score", n);
		out_has("NOT NULL DEFAULT 0", n);
	}
	from_diff(conf_v2, c, "score", c->json ? "0005_score.json" : "0005_score.sql");

	/* back to v1: the index is to drop, the column only reported unless --drop */
	cli_is(3, conf_v1, ARGS("schema", "diff", "--context", n, "--exit-code"),
	       "%s: the entity without them differs", n);
	out_has("no entity declares index 'mig_things_title_ix'", n);
	if (!c->json) {
		out_has("kept (--drop drops it)", n);
		ok(!strstr(last_out, "DROP COLUMN"), "%s: an unknown column is not dropped by default", n);
		cli_is(0, conf_v1, ARGS("schema", "diff", "--context", n, "--drop"), "%s: schema diff --drop", n);
		out_has("DROP COLUMN", n);
	}
}

int main(int argc, char **argv)
{
	plan_lazy();
	const char *project = argc > 1 ? argv[1] : "";
	const char *pg = getenv("EMH_TEST_PG_URL"), *my = getenv("EMH_TEST_MYSQL_URL"),
		   *mg = getenv("EMH_TEST_MONGO_URI");
	fixture_init(&fx, "migrate");
	if (strcmp(project, "sqlite-postgres") == 0) {
		char lite[700];
		fixture_path(&fx, "lite.db", lite, sizeof lite);
		static char lite_url[760];
		snprintf(lite_url, sizeof lite_url, "sqlite://%s", lite);
		ctxs[0] = (tctx){.name = "lite", .kind = "sqlite", .url = lite_url, .transactional = true};
		ctxs[1] = (tctx){.name = "pg", .kind = "postgres", .url = pg, .transactional = true};
		if (!pg) {
			need_server(1, "postgres: EMH_TEST_PG_URL not set (scripts/test-servers.sh start DIR)");
			fixture_release(&fx);
			return done_testing();
		}
	} else if (strcmp(project, "mariadb-mongo") == 0) {
		ctxs[0] = (tctx){.name = "maria", .kind = "mysql", .url = my};
		ctxs[1] = (tctx){.name = "mongo", .kind = "mongo", .url = mg, .json = true};
		if (!my || !mg) {
			need_server(1, !my ? "mysql: EMH_TEST_MYSQL_URL not set" : "mongo: EMH_TEST_MONGO_URI not set");
			fixture_release(&fx);
			return done_testing();
		}
	} else {
		bail("usage: test_migrate sqlite-postgres|mariadb-mongo");
	}
	const char *b = getenv("EMH_BUILDDIR");
	snprintf(emhost_bin, sizeof emhost_bin, "%s/core/cli/emhost", b);
	snprintf(prefix, sizeof prefix, "mt%d_", (int)getpid());
	fixture_path(&fx, "svc", svc_dir, sizeof svc_dir);
	if (mkdir(svc_dir, 0755) != 0)
		bail("mkdir %s: %s", svc_dir, strerror(errno));
	for (int v = 1; v <= 2; v++) {
		char src[1200], dst[800];
		snprintf(src, sizeof src, "%s/tests/migrate/.libs/fxm_v%d.so", b, v);
		snprintf(dst, sizeof dst, "%s/fxm_v%d.so", svc_dir, v);
		if (src[0] != '/')
			bail("EMH_BUILDDIR '%s' is not an absolute path", b);
		if (symlink(src, dst) != 0)
			bail("symlink %s: %s", dst, strerror(errno));
	}
	for (int i = 0; i < 2; i++) {
		char sub[32];
		snprintf(sub, sizeof sub, "mig_%s", ctxs[i].name);
		fixture_path(&fx, sub, ctxs[i].dir, sizeof ctxs[i].dir);
		if (mkdir(ctxs[i].dir, 0755) != 0)
			bail("mkdir %s: %s", ctxs[i].dir, strerror(errno));
	}
	fixture_path(&fx, "plain.conf", conf_plain, sizeof conf_plain);
	fixture_path(&fx, "v1.conf", conf_v1, sizeof conf_v1);
	fixture_path(&fx, "v2.conf", conf_v2, sizeof conf_v2);
	write_conf(conf_plain, NULL);
	write_conf(conf_v1, "fxm_v1");
	write_conf(conf_v2, "fxm_v2");
	fixture_path(&fx, "slow.conf", conf_slow, sizeof conf_slow);
	write_conf_with(conf_slow, NULL, " statement_timeout_ms = 300;");

	emh_host *h = host_open();
	for (int i = 0; i < 2; i++)
		clean(h, &ctxs[i]);
	for (int i = 0; i < 2; i++)
		write_migrations(&ctxs[i]);
	cli_is(2, conf_plain, ARGS("migrate", "down", "--all"), "down without --to is a usage error");
	out_has("migrate down needs --to N", "usage");
	cli_is(2, conf_plain, ARGS("migrate", "up", "--all", "--context", ctxs[0].name), "--context with --all");
	cli_is(2, conf_plain, ARGS("migrate", "sideways"), "an unknown subcommand");
	cli_is(0, conf_plain, ARGS("migrate", "status", "--all"), "status --all");
	out_has(ctxs[0].name, "status --all");
	out_has(ctxs[1].name, "status --all");
	for (int i = 0; i < 2; i++) {
		diag("context %s (%s)", ctxs[i].name, ctxs[i].kind);
		test_up_down(h, &ctxs[i]);
		test_tamper_and_duplicates(h, &ctxs[i]);
	}
	cli_is(0, conf_plain, ARGS("migrate", "up", "--all"), "up --all applies both folders");
	for (int i = 0; i < 2; i++) {
		states_are(h, &ctxs[i], "AAA", "after up --all");
		test_failure(h, &ctxs[i]);
		if (strcmp(ctxs[i].kind, "mysql") == 0)
			test_timeout(&ctxs[i]);
		test_concurrent(h, &ctxs[i]);
		test_lock_held(h, &ctxs[i]);
		test_schema_diff(h, &ctxs[i]);
	}
	for (int i = 0; i < 2; i++)
		clean(h, &ctxs[i]);
	emh_host_free(h);
	fixture_release(&fx);
	return done_testing();
}
