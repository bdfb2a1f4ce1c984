/* SPDX-License-Identifier: MIT */
/*
 * tests/config/test_qlog.c: the query log and the query duration histograms
 * (issue 13), on the real SQLite plugin and on memdoc (a document driver):
 * log_queries logs each statement with its duration and its parameters
 * masked; log_query_values shows values, never on an entity with an
 * EMH_F_SECRET field; slow_query_ms logs only slower calls, at warning; with
 * both off nothing is logged; emh_host_query_stats counts every call by
 * context and operation, and those counts are emh_context_info.queries.
 */
#include "config.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <emhost/emhost.h>

#include "../fixture.h"
#include "../tap.h"

typedef struct note {
	int64_t id;
	const char *text;
} note;
static const emh_field note_fields[] = {
	EMH_FIELD(note, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(note, text, EMH_T_TEXT, 0),
};
static const emh_entity note_entity = EMH_ENTITY(note, "notes", note_fields);

/* An account with an API token: the token is secret. */
typedef struct account {
	int64_t id;
	const char *name;
	const char *token;
} account;
static const emh_field account_fields[] = {
	EMH_FIELD(account, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(account, name, EMH_T_TEXT, 0),
	EMH_FIELD(account, token, EMH_T_TEXT, EMH_F_SECRET),
};
static const emh_entity account_entity = EMH_ENTITY(account, "accts", account_fields);

/* ---- the log, captured ---- */

#define MAXLINES 4096
static struct {
	pthread_mutex_t mu;
	char *line[MAXLINES];
	int level[MAXLINES];
	char ctx[MAXLINES][64];
	int n;
} cap = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void capture(void *ud, int level, const char *context, const char *msg)
{
	(void)ud;
	pthread_mutex_lock(&cap.mu);
	if (cap.n < MAXLINES) {
		cap.line[cap.n] = strdup(msg);
		cap.level[cap.n] = level;
		snprintf(cap.ctx[cap.n], sizeof cap.ctx[cap.n], "%s", context ? context : "");
		cap.n++;
	}
	pthread_mutex_unlock(&cap.mu);
}

static void cap_clear(void)
{
	pthread_mutex_lock(&cap.mu);
	for (int i = 0; i < cap.n; i++)
		free(cap.line[i]);
	cap.n = 0;
	pthread_mutex_unlock(&cap.mu);
}

/* Index of the first captured line of context ctx containing every needle (NULL-ended), or -1. */
static int cap_find(const char *ctx, ...)
{
	int found = -1;
	pthread_mutex_lock(&cap.mu);
	for (int i = 0; i < cap.n && found < 0; i++) {
		if (strcmp(cap.ctx[i], ctx) != 0)
			continue;
		va_list ap;
		va_start(ap, ctx);
		bool all = true;
		for (const char *s; all && (s = va_arg(ap, const char *));)
			all = strstr(cap.line[i], s) != NULL;
		va_end(ap);
		if (all)
			found = i;
	}
	pthread_mutex_unlock(&cap.mu);
	return found;
}

/* Lines captured for ctx. */
static int cap_count(const char *ctx)
{
	int n = 0;
	pthread_mutex_lock(&cap.mu);
	for (int i = 0; i < cap.n; i++)
		n += strcmp(cap.ctx[i], ctx) == 0;
	pthread_mutex_unlock(&cap.mu);
	return n;
}

/* Does any captured line contain s? */
static bool cap_any(const char *s)
{
	bool any = false;
	pthread_mutex_lock(&cap.mu);
	for (int i = 0; i < cap.n && !any; i++)
		any = strstr(cap.line[i], s) != NULL;
	pthread_mutex_unlock(&cap.mu);
	return any;
}

static void cap_dump(const char *ctx)
{
	pthread_mutex_lock(&cap.mu);
	for (int i = 0; i < cap.n; i++)
		if (!ctx || strcmp(cap.ctx[i], ctx) == 0)
			diag("[%s] %d %s", cap.ctx[i], cap.level[i], cap.line[i]);
	pthread_mutex_unlock(&cap.mu);
}

/* ---- setup ---- */

static fixture fx;
static emh_host *h;

static void add_context(const char *name, const char *driver, const char *const *kv)
{
	const char *all[32] = {"driver", driver};
	size_t n = 2;
	if (strcmp(driver, "sqlite") == 0) {
		all[n++] = "path";
		all[n++] = ":memory:";
	}
	for (size_t i = 0; kv && kv[i] && n < 30; i++)
		all[n++] = kv[i];
	all[n] = NULL;
	emh_error err;
	if (emh_host_add_context(h, name, all, &err) != 0)
		bail("add context '%s': %s", name, err.message);
	fixture_register(h, name, &note_entity);
	fixture_register(h, name, &account_entity);
	fixture_sync(h, name);
}

static int64_t add_note(const char *ctx, const char *text)
{
	emh_em *em = fixture_fork(h, ctx);
	note *n = fixture_new(fixture_repo(em, &note_entity));
	n->text = text;
	emh_error err;
	if (emh_em_flush(em, &err) != 0)
		bail("[%s] flush of a note: %s", ctx, err.message);
	int64_t id = n->id;
	emh_em_close(em);
	return id;
}

static void add_account(const char *ctx, const char *name, const char *token)
{
	emh_em *em = fixture_fork(h, ctx);
	account *a = fixture_new(fixture_repo(em, &account_entity));
	a->name = name;
	a->token = token;
	emh_error err;
	if (emh_em_flush(em, &err) != 0)
		bail("[%s] flush of an account: %s", ctx, err.message);
	emh_em_close(em);
}

/* Get by key, a query with a condition, and a count, on notes of ctx. */
static void read_notes(const char *ctx, int64_t id, const char *text)
{
	emh_em *em = fixture_fork(h, ctx);
	emh_repo *r = fixture_repo(em, &note_entity);
	emh_error err;
	void *p;
	if (emh_repo_get(r, emh_v_int64(id), &p, &err) != 0)
		bail("[%s] get: %s", ctx, err.message);
	emh_query *q = fixture_query(r);
	emh_q_where(q, emh_q_eq(q, "text", emh_v_text(text)));
	emh_list ls;
	int64_t n;
	if (emh_repo_find(r, q, &ls, &err) != 0 || emh_repo_count(r, NULL, &n, &err) != 0)
		bail("[%s] find/count: %s", ctx, err.message);
	emh_em_close(em);
}

/* The duration of a log line "query (1.234 ms...", or -1. */
static double line_ms(int i)
{
	const char *p = i >= 0 ? strchr(cap.line[i], '(') : NULL;
	return p ? strtod(p + 1, NULL) : -1;
}

/* ---- the cases ---- */

static void test_log_queries(void)
{
	cap_clear();
	add_context("all", "sqlite", (const char *const[]){"log_queries", "true", NULL});
	int64_t id = add_note("all", "Plain-Value-11");
	add_account("all", "Visible-Name-12", "Secret-Token-13");
	read_notes("all", id, "Plain-Value-11");
	emh_em *em = fixture_fork(h, "all");
	emh_error err;
	is_int(emh_em_execute(em, "UPDATE \"notes\" SET \"text\" = \"text\"", &err), 0, "raw execute runs");
	note *n = fixture_new(fixture_repo(em, &note_entity));
	n->text = "Plain-Value-14";
	int rc = emh_em_begin(em, &err);
	if (rc == 0 && (rc = emh_em_flush(em, &err)) == 0)
		rc = emh_em_commit(em, &err);
	is_int(rc, 0, "an explicit transaction");
	emh_em_close(em);

	int i = cap_find("all", "query (", "INSERT INTO \"notes\"", "[$1=?]", NULL);
	ok(i >= 0, "log_queries: the insert is logged with its parameter masked");
	ok(i >= 0 && cap.level[i] == EMH_LOG_INFO, "at info");
	ok(i >= 0 && line_ms(i) >= 0, "with its duration in ms");
	ok(cap_find("all", "query (", "SELECT", "WHERE \"id\" = ", "[$1=?]", NULL) >= 0, "the get by key");
	ok(cap_find("all", "query (", "WHERE \"text\" = ", "[$1=?]", NULL) >= 0, "the query with a condition");
	ok(cap_find("all", "query (", "SELECT COUNT(*)", NULL) >= 0 || cap_find("all", "query (", "count(", NULL) >= 0,
	   "the count");
	ok(cap_find("all", "query (", "UPDATE \"notes\" SET \"text\" = \"text\"", NULL) >= 0, "raw SQL as written");
	ok(cap_find("all", "query (", "BEGIN", NULL) >= 0 && cap_find("all", "query (", "COMMIT", NULL) >= 0,
	   "the transaction's BEGIN and COMMIT");
	ok(cap_find("all", "query (", "SAVEPOINT emh_sp_2", NULL) >= 0, "and the savepoint of the flush inside it");
	ok(!cap_any("Plain-Value-11") && !cap_any("Visible-Name-12") && !cap_any("Plain-Value-14"),
	   "no value at all by default");
	ok(!cap_any("Secret-Token-13"), "and no secret");
	if (i < 0 || getenv("EMH_TEST_VERBOSE"))
		cap_dump("all");
}

static void test_log_values(void)
{
	cap_clear();
	add_context("vals", "sqlite", (const char *const[]){"log_queries", "true", "log_query_values", "true", NULL});
	int64_t id = add_note("vals", "Plain-Value-21");
	add_account("vals", "Visible-Name-22", "Secret-Token-23");
	read_notes("vals", id, "Plain-Value-21");
	emh_em *em = fixture_fork(h, "vals");
	emh_repo *r = fixture_repo(em, &account_entity);
	emh_query *q = fixture_query(r);
	emh_q_where(q, emh_q_eq(q, "token", emh_v_text("Secret-Token-23")));
	emh_list ls;
	emh_error err;
	is_int(emh_repo_find(r, q, &ls, &err), 0, "an account found by its token");
	emh_em_close(em);

	ok(cap_find("vals", "INSERT INTO \"notes\"", "[$1='Plain-Value-21']", NULL) >= 0,
	   "log_query_values: a value is shown");
	char key[64];
	snprintf(key, sizeof key, "[$1=%lld]", (long long)id);
	ok(cap_find("vals", "WHERE \"id\" = ", key, NULL) >= 0, "the key of the get too");
	ok(cap_find("vals", "INSERT INTO \"accts\"", "[$1=?, $2=?]", NULL) >= 0,
	   "an entity with a secret field: no value of its statements");
	ok(cap_find("vals", "FROM \"accts\"", "[$1=?]", NULL) >= 0, "not even of a query on it");
	ok(!cap_any("Secret-Token-23"), "the secret is never in the log");
	ok(!cap_any("Visible-Name-22"), "nor its entity's other values");
}

static void test_slow(void)
{
	cap_clear();
	add_context("slow", "sqlite", (const char *const[]){"slow_query_ms", "1", NULL});
	add_context("never", "sqlite", (const char *const[]){"slow_query_ms", "60000", NULL});
	emh_em *em = fixture_fork(h, "slow");
	emh_error err;
	/* far above a millisecond on any machine: 200,000 rows made by a recursive CTE, then scanned */
	int rc = emh_em_execute(em,
				"INSERT INTO \"notes\" (\"text\") WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL "
				"SELECT x + 1 FROM c WHERE x < 200000) SELECT 'row ' || x FROM c",
				&err);
	is_int(rc, 0, "200,000 rows inserted through raw SQL");
	emh_repo *r = fixture_repo(em, &note_entity);
	emh_query *q = fixture_query(r);
	emh_q_where(q, emh_q_like(q, "text", "%Needle-31%"));
	emh_list ls;
	is_int(emh_repo_find(r, q, &ls, &err), 0, "a LIKE scan of them");
	emh_em_close(em);

	int i = cap_find("slow", "slow query (", "WITH RECURSIVE", NULL);
	ok(i >= 0, "slow_query_ms: the recursive CTE is logged");
	ok(i >= 0 && cap.level[i] == EMH_LOG_WARN, "at warning");
	ok(i >= 0 && line_ms(i) >= 1.0, "with its duration, at least slow_query_ms");
	i = cap_find("slow", "slow query (", "LIKE", NULL);
	ok(i >= 0, "the slow scan is logged");
	ok(i >= 0 && strstr(cap.line[i], "[$1=?]") && !cap_any("Needle-31"), "without its parameter");
	ok(i >= 0 && strstr(cap.line[i], "slow_query_ms = 1)"), "naming the threshold");
	if (i < 0)
		cap_dump("slow");

	int64_t id = add_note("never", "fast");
	read_notes("never", id, "fast");
	is_int(cap_count("never"), 0, "calls below slow_query_ms are not logged (and log_queries is off)");
}

static void test_off(void)
{
	cap_clear();
	add_context("off", "sqlite", NULL);
	int64_t id = add_note("off", "quiet");
	read_notes("off", id, "quiet");
	is_int(cap_count("off"), 0, "both off: nothing is logged");
}

/* A document driver: the operation and its table, the fields' names, values masked. */
static void test_document(bool have)
{
	if (!have) {
		skip(4, "memdoc fixture driver not built");
		return;
	}
	cap_clear();
	add_context("docs", "memdoc", (const char *const[]){"log_queries", "true", NULL});
	int64_t id = add_note("docs", "Doc-Value-41");
	add_account("docs", "Doc-Name-42", "Doc-Secret-43");
	read_notes("docs", id, "Doc-Value-41");
	ok(cap_find("docs", "query (", "memdoc insert notes", "[id=?, text=?]", NULL) >= 0,
	   "a document insert: driver, operation, table and the fields' names");
	ok(cap_find("docs", "query (", "memdoc get notes", NULL) >= 0, "a get by key is a get");
	ok(cap_find("docs", "query (", "memdoc find notes", "[$1=?]", NULL) >= 0, "a find with its query's parameter");
	ok(!cap_any("Doc-Value-41") && !cap_any("Doc-Secret-43"), "no value");
}

/* Every call counted, by context and operation; the counts are emh_context_info.queries. */
static void test_stats(bool have_doc)
{
	emh_query_stats *qs;
	size_t n;
	emh_error err;
	if (emh_host_query_stats(h, &qs, &n, &err) != 0)
		bail("emh_host_query_stats: %s", err.message);
	uint64_t get = 0, insert = 0, find = 0, count = 0, execute = 0, begin = 0, commit = 0, sync = 0, all = 0,
		 docget = 0;
	bool monotonic = true, cum_le_count = true;
	for (size_t i = 0; i < n; i++) {
		const emh_query_stats *s = &qs[i];
		for (size_t b = 1; b < s->nbuckets; b++)
			monotonic = monotonic && s->cumulative[b] >= s->cumulative[b - 1] && s->le[b] > s->le[b - 1];
		cum_le_count = cum_le_count && s->nbuckets && s->cumulative[s->nbuckets - 1] <= s->count;
		if (strcmp(s->context, "docs") == 0 && strcmp(s->op, "get") == 0)
			docget = s->count;
		if (strcmp(s->context, "all") != 0)
			continue;
		all += s->count;
		uint64_t *slot = strcmp(s->op, "get") == 0	   ? &get
				 : strcmp(s->op, "insert") == 0  ? &insert
				 : strcmp(s->op, "find") == 0	   ? &find
				 : strcmp(s->op, "count") == 0   ? &count
				 : strcmp(s->op, "execute") == 0 ? &execute
				 : strcmp(s->op, "begin") == 0   ? &begin
				 : strcmp(s->op, "commit") == 0  ? &commit
				 : strcmp(s->op, "sync") == 0	   ? &sync
								   : NULL;
		if (slot)
			*slot = s->count;
	}
	/* context "all": three flushes (notes, an account; one in a transaction), read_notes, one raw execute */
	is_int((long long)get, 1, "stats: one get");
	is_int((long long)insert, 3, "three inserts");
	is_int((long long)find, 1, "one find");
	is_int((long long)count, 1, "one count");
	is_int((long long)execute, 1, "one raw execute");
	/* BEGIN, and the flush's SAVEPOINT inside it; RELEASE SAVEPOINT and COMMIT */
	ok(begin == 2 && commit == 2, "the transaction and its flush's savepoint (begin %llu, commit %llu)",
	   (unsigned long long)begin, (unsigned long long)commit);
	ok(monotonic, "buckets ascend and their counts are cumulative");
	ok(cum_le_count, "the last bucket never counts more than count");
	if (have_doc)
		is_int((long long)docget, 1, "a document driver's get counts as a get");
	else
		skip(1, "memdoc fixture driver not built");
	emh_query_stats_free(qs);

	emh_context_info *ci;
	size_t nc;
	uint64_t queries = 0;
	if (emh_host_contexts(h, &ci, &nc, &err) != 0)
		bail("emh_host_contexts: %s", err.message);
	for (size_t i = 0; i < nc; i++)
		if (strcmp(ci[i].name, "all") == 0)
			queries = ci[i].queries;
	emh_context_info_free(ci, nc);
	is_int((long long)queries, (long long)all, "emh_context_info.queries is the sum of the histograms");
}

static void test_config_keys(void)
{
	emh_error err;
	int rc = emh_host_add_context(h, "bad", (const char *const[]){"driver", "sqlite", "path", ":memory:",
									"log_queries", "maybe", NULL}, &err);
	is_int(rc, EMH_ECONFIG, "log_queries must be a boolean");
	like_str(err.message, "expected boolean (true or false), got 'maybe'", "saying so");
	rc = emh_host_add_context(h, "bad", (const char *const[]){"driver", "sqlite", "path", ":memory:",
								   "slow_query_ms", "-5", NULL}, &err);
	is_int(rc, EMH_ECONFIG, "slow_query_ms must not be negative");
	like_str(err.message, "'slow_query_ms' must be in [0, 2147483647], got -5", "saying so");
}

int main(void)
{
	fixture_init(&fx, "qlog");
	char src[1200], dst[1200], plugins[512];
	snprintf(src, sizeof src, "%s/sqlite.so", fx.plugin_dir);
	if (access(src, R_OK) != 0) {
		printf("1..0 # SKIP sqlite driver not built (%s)\n", src);
		fixture_release(&fx);
		return 0;
	}
	/* a plugin directory of sqlite and memdoc (a document driver), linked from the build */
	fixture_path(&fx, "plugins", plugins, sizeof plugins);
	if (mkdir(plugins, 0755) != 0)
		bail("mkdir %s", plugins);
	snprintf(dst, sizeof dst, "%s/sqlite.so", plugins);
	if (symlink(src, dst) != 0)
		bail("symlink %s", dst);
	const char *b = getenv("EMH_BUILDDIR");
	snprintf(src, sizeof src, "%s/tests/fixtures/.libs/memdoc.so", b ? b : ".");
	snprintf(dst, sizeof dst, "%s/memdoc.so", plugins);
	bool have_doc = access(src, R_OK) == 0 && symlink(src, dst) == 0;

	emh_host_opts o = {.plugin_dir = plugins, .envp = (const char *const[]){NULL}, .log = capture,
			   .log_level = EMH_LOG_INFO};
	emh_error err;
	if (emh_host_new(&o, &h, &err) != 0)
		bail("emh_host_new: %s", err.message);
	test_log_queries();
	test_log_values();
	test_slow();
	test_off();
	test_document(have_doc);
	test_stats(have_doc);
	test_config_keys();
	emh_host_free(h);
	cap_clear();
	fixture_release(&fx);
	return done_testing();
}
