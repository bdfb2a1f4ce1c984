/* SPDX-License-Identifier: MIT */
/* plugins/sqlite/test_sqlite.c: the SQLite driver through the host API, plus its descriptor. */
#include "config.h"

#include <dlfcn.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include <emhost/driver.h>
#include <emhost/emhost.h>
#include <emhost/sql.h>

#include "tap.h"

typedef struct sq_item {
	int64_t id;
	const char *name;
	int64_t counter;
	double score;
	bool flag;
	emh_time at;
	emh_blob data;
	const char *doc;
	int32_t small;
} sq_item;

static const emh_field item_fields[] = {
	EMH_FIELD(sq_item, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(sq_item, name, EMH_T_TEXT, EMH_F_UNIQUE),
	EMH_FIELD(sq_item, counter, EMH_T_INT64, EMH_F_INDEXED),
	EMH_FIELD(sq_item, score, EMH_T_DOUBLE, 0),
	EMH_FIELD(sq_item, flag, EMH_T_BOOL, 0),
	EMH_FIELD(sq_item, at, EMH_T_TIMESTAMP, EMH_F_NULLABLE),
	EMH_FIELD(sq_item, data, EMH_T_BLOB, EMH_F_NULLABLE),
	EMH_FIELD(sq_item, doc, EMH_T_JSON, EMH_F_NULLABLE),
	EMH_FIELD(sq_item, small, EMH_T_INT32, 0),
};
static const emh_entity item_entity = EMH_ENTITY(sq_item, "sq_items", item_fields);

/* An entity whose table the test creates by hand with a wrong column type. */
typedef struct sq_thing {
	int64_t id;
	const char *label;
	double score;
} sq_thing;
static const emh_field thing_fields[] = {
	EMH_FIELD(sq_thing, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(sq_thing, label, EMH_T_TEXT, 0),
	EMH_FIELD(sq_thing, score, EMH_T_DOUBLE, 0),
};
static const emh_entity thing_entity = EMH_ENTITY(sq_thing, "sq_things", thing_fields);

/* A text-keyed entity whose existing table lacks a column. */
typedef struct sq_tag {
	const char *code;
	int32_t weight;
} sq_tag;
static const emh_field tag_fields[] = {
	EMH_FIELD(sq_tag, code, EMH_T_TEXT, EMH_F_PK),
	EMH_FIELD(sq_tag, weight, EMH_T_INT32, 0),
};
static const emh_entity tag_entity = EMH_ENTITY(sq_tag, "sq_tags", tag_fields);

static char dir[64];
static char plugdir[4096];

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* is_int that also says whether it passed. */
static int is_int_ok(long long got, long long want, const char *name)
{
	is_int(got, want, "%s", name);
	return got == want;
}

static emh_host *host_new(const char *const *env, emh_error *err)
{
	emh_host_opts o = {.plugin_dir = plugdir, .envp = env, .log_level = EMH_LOG_WARN};
	emh_host *h = NULL;
	if (emh_host_new(&o, &h, err) != 0)
		return NULL;
	return h;
}

static int item_add(emh_em *em, const char *name, int64_t counter, sq_item **out, emh_error *err)
{
	emh_repo *r;
	sq_item *it;
	int rc = emh_em_repo(em, &item_entity, &r, err);
	if (!rc)
		rc = emh_repo_new(r, (void **)&it, err);
	if (rc)
		return rc;
	it->name = emh_em_strdup(em, name);
	it->counter = counter;
	it->score = counter / 2.0;
	it->small = (int32_t)counter;
	rc = emh_repo_insert(r, it, err);
	if (!rc && out)
		*out = it;
	return rc;
}

/* Number of items in context ctx, through a fresh fork; -1 on error. */
static int64_t item_count(emh_host *h, const char *ctx)
{
	emh_em *em;
	emh_repo *r;
	emh_error err;
	int64_t n = -1;
	if (emh_host_fork(h, ctx, &em, &err))
		return -1;
	if (emh_em_repo(em, &item_entity, &r, &err) || emh_repo_count(r, NULL, &n, &err)) {
		diag("count on '%s': %s", ctx ? ctx : "(default)", err.message);
		n = -1;
	}
	emh_em_close(em);
	return n;
}

/* First column of the first row of sql on a raw connection to file, as text. */
static char *raw_text(const char *file, const char *sql)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	char *out = NULL;
	if (sqlite3_open_v2(file, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
	    sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
		if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
			out = strdup((const char *)sqlite3_column_text(st, 0));
		sqlite3_finalize(st);
	}
	sqlite3_close(db);
	return out;
}

static void is_raw(const char *file, const char *sql, const char *want, const char *name)
{
	char *got = raw_text(file, sql);
	is_str(got, want, "%s", name);
	free(got);
}

/* ---- the descriptor ---- */

static void test_descriptor(void)
{
	char so[4200];
	snprintf(so, sizeof so, "%s/sqlite.so", plugdir);
	void *dl = dlopen(so, RTLD_NOW | RTLD_LOCAL);
	ok(dl != NULL, "dlopen %s", so);
	if (!dl) {
		diag("%s", dlerror());
		return;
	}
	const emh_driver *d = dlsym(dl, EMH_DRIVER_SYMBOL);
	ok(d != NULL, "exports %s", EMH_DRIVER_SYMBOL);
	if (d) {
		is_int(d->abi_version, EMH_DRIVER_ABI_VERSION, "abi version");
		is_int(d->struct_size, sizeof(emh_driver), "struct size");
		is_str(d->name, "sqlite", "name");
		uint64_t want = EMH_CAP_SQL | EMH_CAP_TRANSACTIONS | EMH_CAP_SAVEPOINTS | EMH_CAP_ATOMIC_FLUSH |
				EMH_CAP_RETURNING | EMH_CAP_UPSERT;
		ok((d->caps & want) == want, "caps: sql, transactions, savepoints, atomic flush, returning, upsert");
		is_str(d->url_schemes ? d->url_schemes[0] : NULL, "sqlite", "url scheme");
		ok(d->dialect && d->dialect->returning && d->dialect->quote == '"' && !d->dialect->numbered_params,
		   "dialect: '\"' quotes, ? params, RETURNING");
		ok(d->stmt_exec && d->context_open && d->context_close && !d->insert && !d->find,
		   "SQL driver members set, document members NULL");
		int nkeys = 0;
		for (const emh_param_spec *p = d->params; p && p->key; p++)
			nkeys++;
		is_int(nkeys, 5, "five parameters");
	}
	ok(dlsym(dl, "sq_connect") == NULL && dlsym(dl, "sq_stmt_exec") == NULL, "nothing else exported");
	dlclose(dl);
}

/* ---- a file database ---- */

static void test_file(void)
{
	char file[128], env_url[192], env_busy[64];
	emh_error err;
	emh_em *em, *em2;
	emh_repo *r;
	sq_item *a = NULL, *b = NULL, *got;
	int rc;

	snprintf(file, sizeof file, "%s/t.db", dir);
	snprintf(env_url, sizeof env_url, "EMH_CONTEXT_T_URL=sqlite://%s", file);
	snprintf(env_busy, sizeof env_busy, "EMH_CONTEXT_T_BUSY_TIMEOUT_MS=200");
	const char *env[] = {env_url, env_busy, "EMH_DEFAULT_CONTEXT=t", NULL};

	emh_host *h = host_new(env, &err);
	ok(h != NULL, "host with a file context from a URL");
	if (!h) {
		diag("%s", err.message);
		return;
	}
	is_str(emh_host_context_driver(h, "t"), "sqlite", "context driver");
	is_int(emh_host_ping(h, "t", &err), 0, "ping");
	is_int(emh_host_register_entity(h, "t", &item_entity, &err), 0, "register entity");
	is_int(emh_host_register_entity(h, "t", &tag_entity, &err), 0, "register a text-keyed entity");
	rc = emh_host_sync_schema(h, "t", &err);
	if (!is_int_ok(rc, 0, "sync schema"))
		diag("%s", err.message);
	is_int(emh_host_sync_schema(h, "t", &err), 0, "sync schema again (idempotent)");
	is_raw(file, "PRAGMA journal_mode", "wal", "journal_mode is wal");
	is_raw(file, "SELECT type FROM pragma_table_info('sq_items') WHERE name='id'", "INTEGER",
	       "generated key column is INTEGER");
	is_raw(file, "SELECT count(*) FROM sqlite_master WHERE type='index' AND name='sq_items_counter_idx'", "1",
	       "secondary index created");
	is_raw(file, "SELECT \"notnull\" || pk FROM pragma_table_info('sq_tags') WHERE name='code'", "11",
	       "a text primary key is NOT NULL");

	/* insert, generated keys */
	emh_host_fork(h, "t", &em, &err);
	rc = item_add(em, "Alice", 10, &a, &err);
	if (!is_int_ok(rc, 0, "insert"))
		diag("%s", err.message);
	rc = item_add(em, "alice", 20, &b, &err);
	is_int(rc, 0, "insert a second row");
	ok(a && b && a->id > 0 && b->id == a->id + 1, "generated keys written back (%lld, %lld)",
	   a ? (long long)a->id : -1, b ? (long long)b->id : -1);
	if (!a || !b) {
		emh_em_close(em);
		emh_host_free(h);
		return;
	}
	int64_t ida = a->id, idb = b->id; /* a and b die with the fork */

	/* every type round-trips; empty blob vs NULL blob */
	a->flag = true;
	a->at = INT64_C(1700000000123456);
	a->data = (emh_blob){"", 0};
	a->doc = "{\"k\": [1, 2]}";
	a->score = -1.25;
	a->small = -7;
	b->at = 5;
	is_int(emh_em_set_null(em, b, "at", true, &err), 0, "set a timestamp NULL");
	rc = emh_em_flush(em, &err);
	if (!is_int_ok(rc, 0, "flush an update of several columns"))
		diag("%s", err.message);
	emh_em_close(em);
	is_raw(file, "SELECT typeof(at) || ':' || at FROM sq_items WHERE name='Alice'", "integer:1700000000123456",
	       "timestamp stored as INTEGER microseconds");
	is_raw(file, "SELECT typeof(data) || ':' || length(data) FROM sq_items WHERE name='Alice'", "blob:0",
	       "empty blob stored as an empty blob");
	is_raw(file, "SELECT typeof(data) FROM sq_items WHERE name='alice'", "null", "NULL blob stored as NULL");
	is_raw(file, "SELECT typeof(at) FROM sq_items WHERE name='alice'", "null", "NULL timestamp stored as NULL");

	emh_host_fork(h, "t", &em, &err);
	emh_em_repo(em, &item_entity, &r, &err);
	got = NULL;
	rc = emh_repo_get(r, emh_v_int64(ida), (void **)&got, &err);
	is_int(rc, 0, "get by key");
	if (got) {
		is_str(got->name, "Alice", "text");
		is_int(got->counter, 10, "int64");
		ok(got->score == -1.25, "double");
		ok(got->flag == true, "bool");
		is_int(got->at, INT64_C(1700000000123456), "timestamp");
		ok(got->data.data != NULL && got->data.len == 0, "empty blob comes back empty, not NULL");
		is_str(got->doc, "{\"k\": [1, 2]}", "json");
		is_int(got->small, -7, "int32");
	} else {
		skip(8, "no row");
	}
	got = NULL;
	rc = emh_repo_get(r, emh_v_int64(idb), (void **)&got, &err);
	ok(rc == 0 && got, "get the second row");
	ok(got && got->data.data == NULL, "NULL blob comes back NULL");
	ok(got && got->doc == NULL, "NULL json comes back NULL");
	ok(got && emh_em_is_null(em, got, "at"), "NULL timestamp comes back NULL");
	rc = emh_repo_get(r, emh_v_int64(999999), (void **)&got, &err);
	is_int(rc, EMH_ENOTFOUND, "get of a missing key");

	/* LIKE is case-sensitive; backslash escapes */
	emh_query *q;
	int64_t n = -1;
	emh_repo_query(r, &q, &err);
	emh_q_where(q, emh_q_like(q, "name", "Al%"));
	rc = emh_repo_count(r, q, &n, &err);
	ok(rc == 0 && n == 1, "LIKE 'Al%%' is case-sensitive (%lld)", (long long)n);
	emh_em_close(em);

	emh_host_fork(h, "t", &em, &err);
	item_add(em, "50%off", 1, NULL, &err);
	item_add(em, "50xoff", 2, NULL, &err);
	emh_em_repo(em, &item_entity, &r, &err);
	emh_repo_query(r, &q, &err);
	emh_q_where(q, emh_q_like(q, "name", "50\\%off"));
	n = -1;
	rc = emh_repo_count(r, q, &n, &err);
	ok(rc == 0 && n == 1, "LIKE with an escaped %% (%lld)", (long long)n);

	/* find with conditions, order, offset without limit */
	emh_list list = {0};
	emh_repo_query(r, &q, &err);
	emh_q_where(q, emh_q_ge(q, "counter", emh_v_int64(2)));
	emh_q_order_by(q, "counter", true);
	emh_q_offset(q, 1);
	rc = emh_repo_find(r, q, &list, &err);
	if (!is_int_ok(rc, 0, "find with where, order by, offset"))
		diag("%s", err.message);
	ok(list.count == 2 && ((sq_item *)list.items[0])->counter == 10 && ((sq_item *)list.items[1])->counter == 2,
	   "rows in order after the offset (%zu)", list.count);

	/* unique violation */
	rc = item_add(em, "Alice", 3, NULL, &err);
	is_int(rc, EMH_ECONFLICT, "duplicate unique value is EMH_ECONFLICT");
	is_int(err.native, SQLITE_CONSTRAINT_UNIQUE, "native code is SQLITE_CONSTRAINT_UNIQUE");
	ok(strstr(err.message, "Alice") == NULL, "message holds no bound value: %s", err.message);
	emh_em_close(em);

	/* update and delete */
	emh_host_fork(h, "t", &em, &err);
	emh_em_repo(em, &item_entity, &r, &err);
	got = NULL;
	emh_repo_get(r, emh_v_int64(idb), (void **)&got, &err);
	if (got) {
		got->counter = 77;
		is_int(emh_repo_update(r, got, &err), 0, "update");
		is_int(emh_repo_remove(r, got, &err), 0, "remove");
	} else {
		skip(2, "no row");
	}
	emh_em_close(em);
	is_int(item_count(h, "t"), 3, "three rows left");

	/* raw execute, several statements; foreign keys are on */
	emh_host_fork(h, "t", &em, &err);
	rc = emh_em_execute(em, "CREATE TABLE IF NOT EXISTS notes (x TEXT); INSERT INTO notes VALUES ('a');"
				"\n-- a comment\nINSERT INTO notes VALUES ('b');", &err);
	if (!is_int_ok(rc, 0, "execute several statements"))
		diag("%s", err.message);
	is_raw(file, "SELECT count(*) FROM notes", "2", "both inserts ran");
	rc = emh_em_execute(em, "INSERT INTO notes VALUES ('c'); INSERT INTO nosuch VALUES (1)", &err);
	is_int(rc, EMH_EDRIVER, "execute stops at a failing statement");
	like_str(err.message, "no such table", "its message");
	rc = emh_em_execute(em, "CREATE TABLE parent (id INTEGER PRIMARY KEY);"
				"CREATE TABLE child (pid INTEGER REFERENCES parent (id));"
				"INSERT INTO child VALUES (42)", &err);
	is_int(rc, EMH_EINVAL, "foreign keys are enforced: orphan insert is EMH_EINVAL");
	is_int(err.native, SQLITE_CONSTRAINT_FOREIGNKEY, "native SQLITE_CONSTRAINT_FOREIGNKEY");
	emh_em_close(em);

	/* transactions and savepoints */
	int64_t before = item_count(h, "t");
	emh_host_fork(h, "t", &em, &err);
	is_int(emh_em_begin(em, &err), 0, "begin");
	item_add(em, "tx-rolled-back", 5, NULL, &err);
	is_int(emh_em_rollback(em, &err), 0, "rollback");
	is_int(item_count(h, "t"), before, "rolled back insert is gone");
	is_int(emh_em_begin(em, &err), 0, "begin again");
	item_add(em, "tx-kept", 5, NULL, &err);
	is_int(emh_em_begin(em, &err), 0, "nested begin (savepoint)");
	is_int(emh_em_tx_depth(em), 2, "depth 2");
	item_add(em, "tx-inner", 5, NULL, &err);
	is_int(emh_em_rollback(em, &err), 0, "rollback to the savepoint");
	is_int(emh_em_commit(em, &err), 0, "commit the outer transaction");
	emh_em_close(em);
	is_int(item_count(h, "t"), before + 1, "outer insert kept, inner one rolled back");

	/* busy: another connection holds the write lock */
	sqlite3 *raw;
	sqlite3_open(file, &raw);
	rc = sqlite3_exec(raw, "BEGIN IMMEDIATE", NULL, NULL, NULL);
	is_int(rc, SQLITE_OK, "raw connection takes the write lock");
	emh_host_fork(h, "t", &em, &err);
	double t0 = now_ms();
	rc = item_add(em, "busy", 1, NULL, &err);
	double waited = now_ms() - t0;
	is_int(rc, EMH_ERETRY, "insert while locked is EMH_ERETRY");
	ok(err.retryable, "and retryable");
	is_int(err.native & 0xff, SQLITE_BUSY, "native SQLITE_BUSY");
	ok(waited >= 150 && waited < 3000, "waited for busy_timeout_ms=200 (%.0f ms)", waited);
	sqlite3_exec(raw, "ROLLBACK", NULL, NULL, NULL);
	sqlite3_close(raw);
	rc = emh_em_flush(em, &err);
	if (!is_int_ok(rc, 0, "the same flush succeeds once the lock is gone"))
		diag("%s", err.message);
	emh_em_close(em);

	/* two forks at once: WAL lets a reader run beside an open write transaction */
	emh_host_fork(h, "t", &em, &err);
	emh_host_fork(h, "t", &em2, &err);
	emh_em_begin(em, &err);
	item_add(em, "uncommitted", 1, NULL, &err);
	emh_repo *r2;
	emh_em_repo(em2, &item_entity, &r2, &err);
	n = -1;
	rc = emh_repo_count(r2, NULL, &n, &err);
	ok(rc == 0 && n == before + 2, "a second fork reads committed rows during a write transaction (%lld)",
	   (long long)n);
	emh_em_commit(em, &err);
	emh_em_close(em);
	emh_em_close(em2);

	emh_host_free(h);
}

/* ---- writers in several threads queue on BEGIN IMMEDIATE ---- */

typedef struct writer_arg {
	emh_host *h;
	const char *ctx;
	int id, n, failed;
	char msg[EMH_ERROR_MSG_MAX];
} writer_arg;

static void *writer(void *p)
{
	writer_arg *a = p;
	for (int i = 0; i < a->n; i++) {
		emh_em *em;
		emh_error err;
		char name[64];
		snprintf(name, sizeof name, "w%d-%d", a->id, i);
		if (emh_host_fork(a->h, a->ctx, &em, &err) == 0) {
			if (item_add(em, name, i, NULL, &err) != 0) {
				a->failed++;
				snprintf(a->msg, sizeof a->msg, "%s", err.message);
			}
			emh_em_close(em);
		} else {
			a->failed++;
		}
	}
	return NULL;
}

static void test_writers(emh_host *h, const char *ctx, const char *what)
{
	writer_arg args[3];
	pthread_t th[3];
	int64_t before = item_count(h, ctx);
	for (int i = 0; i < 3; i++) {
		args[i] = (writer_arg){.h = h, .ctx = ctx, .id = i, .n = 40};
		pthread_create(&th[i], NULL, writer, &args[i]);
	}
	int failed = 0;
	for (int i = 0; i < 3; i++) {
		pthread_join(th[i], NULL);
		failed += args[i].failed;
		if (args[i].failed)
			diag("writer %d: %s", i, args[i].msg);
	}
	is_int(failed, 0, "%s: three threads writing at once all succeed", what);
	is_int(item_count(h, ctx), before + 120, "%s: every row is there", what);
}

static void test_file_writers(void)
{
	char env_path[192];
	emh_error err;
	snprintf(env_path, sizeof env_path, "EMH_CONTEXT_W_PATH=%s/w.db", dir);
	const char *env[] = {"EMH_CONTEXT_W_DRIVER=sqlite", env_path, "EMH_DEFAULT_CONTEXT=w", NULL};
	emh_host *h = host_new(env, &err);
	ok(h != NULL, "host with a file context");
	if (!h) {
		diag("%s", err.message);
		return;
	}
	emh_host_register_entity(h, "w", &item_entity, &err);
	is_int(emh_host_sync_schema(h, "w", &err), 0, "sync");
	test_writers(h, "w", "file");
	emh_host_free(h);
}

/* ---- settings ---- */

static void test_settings(void)
{
	char env_path[192], file[128];
	emh_error err;
	snprintf(file, sizeof file, "%s/j.db", dir);
	snprintf(env_path, sizeof env_path, "EMH_CONTEXT_J_PATH=%s", file);

	const char *env[] = {"EMH_CONTEXT_J_DRIVER=sqlite", env_path, "EMH_CONTEXT_J_JOURNAL_MODE=delete",
			     "EMH_CONTEXT_J_FOREIGN_KEYS=false", "EMH_DEFAULT_CONTEXT=j", NULL};
	emh_host *h = host_new(env, &err);
	ok(h != NULL, "journal_mode and foreign_keys settings accepted");
	if (h) {
		is_int(emh_host_ping(h, "j", &err), 0, "ping opens the file");
		is_raw(file, "PRAGMA journal_mode", "delete", "journal_mode=delete: the file is not switched to WAL");
		emh_em *em;
		emh_host_fork(h, "j", &em, &err);
		int rc = emh_em_execute(em, "CREATE TABLE parent (id INTEGER PRIMARY KEY);"
					    "CREATE TABLE child (pid INTEGER REFERENCES parent (id));"
					    "INSERT INTO child VALUES (42)", &err);
		is_int(rc, 0, "foreign_keys=false: orphan insert allowed");
		emh_em_close(em);
		emh_host_free(h);
	} else {
		diag("%s", err.message);
		skip(3, "no host");
	}

	const char *bad[] = {"EMH_CONTEXT_J_DRIVER=sqlite", env_path, "EMH_CONTEXT_J_JOURNAL_MODE=wal; DROP",
			     "EMH_DEFAULT_CONTEXT=j", NULL};
	h = host_new(bad, &err);
	ok(h == NULL, "a bad journal_mode is refused");
	if (!h)
		like_str(err.message, "journal_mode", "the message names the setting");
	else
		skip(1, "accepted");
	emh_host_free(h);

	const char *nodir[] = {"EMH_CONTEXT_X_DRIVER=sqlite", "EMH_CONTEXT_X_PATH=/nonexistent-emh-dir/sub/x.db",
			       "EMH_DEFAULT_CONTEXT=x", NULL};
	h = host_new(nodir, &err);
	ok(h != NULL, "a context whose directory is missing does not stop the host");
	if (h) {
		int rc = emh_host_ping(h, "x", &err);
		is_int(rc, EMH_EUNAVAILABLE, "ping: EMH_EUNAVAILABLE");
		like_str(err.message, "/nonexistent-emh-dir/sub", "message names the directory");
		emh_host_free(h);
	} else {
		diag("%s", err.message);
		skip(2, "no host");
	}

	snprintf(file, sizeof file, "%s/notadb.db", dir);
	FILE *f = fopen(file, "w");
	fputs("this is not a database file, just some text that is long enough to hold a header ...\n", f);
	fclose(f);
	snprintf(env_path, sizeof env_path, "EMH_CONTEXT_N_PATH=%s", file);
	const char *notdb[] = {"EMH_CONTEXT_N_DRIVER=sqlite", env_path, "EMH_DEFAULT_CONTEXT=n", NULL};
	h = host_new(notdb, &err);
	if (h) {
		int rc = emh_host_ping(h, "n", &err);
		is_int(rc, EMH_EUNAVAILABLE, "a file that is not a database: EMH_EUNAVAILABLE");
		like_str(err.message, "notadb.db", "message names the file");
		emh_host_free(h);
	} else {
		diag("%s", err.message);
		skip(2, "no host");
	}
}

/* ---- schema mismatch ---- */

static void test_schema(void)
{
	char env_path[192], file[128];
	emh_error err;
	snprintf(file, sizeof file, "%s/s.db", dir);
	snprintf(env_path, sizeof env_path, "EMH_CONTEXT_S_PATH=%s", file);
	const char *env[] = {"EMH_CONTEXT_S_DRIVER=sqlite", env_path, "EMH_DEFAULT_CONTEXT=s", NULL};

	sqlite3 *raw;
	sqlite3_open(file, &raw);
	sqlite3_exec(raw, "CREATE TABLE sq_things (id INTEGER PRIMARY KEY, label VARCHAR(20), score TEXT);"
			  "CREATE TABLE sq_tags (code TEXT PRIMARY KEY);",
		     NULL, NULL, NULL);
	sqlite3_close(raw);

	emh_host *h = host_new(env, &err);
	ok(h != NULL, "host");
	if (!h) {
		diag("%s", err.message);
		return;
	}
	emh_host_register_entity(h, "s", &thing_entity, &err);
	int rc = emh_host_sync_schema(h, "s", &err);
	is_int(rc, EMH_ESCHEMA, "incompatible column type: EMH_ESCHEMA");
	like_str(err.message, "sq_things", "names the table");
	like_str(err.message, "score", "names the column");
	emh_host_free(h);

	h = host_new(env, &err);
	emh_host_register_entity(h, "s", &tag_entity, &err);
	rc = emh_host_sync_schema(h, "s", &err);
	is_int(rc, EMH_ESCHEMA, "missing column: EMH_ESCHEMA");
	like_str(err.message, "weight", "names the column");
	emh_host_free(h);

	sqlite3_open(file, &raw);
	sqlite3_exec(raw, "DROP TABLE sq_things;"
			  "CREATE TABLE sq_things (id BIGINT PRIMARY KEY, label TEXT, score DOUBLE)",
		     NULL, NULL, NULL);
	sqlite3_close(raw);
	h = host_new(env, &err);
	emh_host_register_entity(h, "s", &thing_entity, &err);
	rc = emh_host_sync_schema(h, "s", &err);
	is_int(rc, EMH_ESCHEMA, "generated key not INTEGER (not the rowid): EMH_ESCHEMA");
	like_str(err.message, "id", "names the key column");
	emh_host_free(h);

	sqlite3_open(file, &raw);
	sqlite3_exec(raw, "DROP TABLE sq_things;"
			  "CREATE TABLE sq_things (id integer PRIMARY KEY, label NVARCHAR(40), score DOUBLE PRECISION,"
			  " extra INT)",
		     NULL, NULL, NULL);
	sqlite3_close(raw);
	h = host_new(env, &err);
	emh_host_register_entity(h, "s", &thing_entity, &err);
	rc = emh_host_sync_schema(h, "s", &err);
	if (!is_int_ok(rc, 0, "affinity-equivalent types and an extra column are accepted"))
		diag("%s", err.message);
	emh_host_free(h);
}

/* ---- in-memory databases ---- */

static void test_memory(void)
{
	emh_error err;
	const char *env[] = {"EMH_CONTEXT_M_URL=sqlite::memory:", "EMH_CONTEXT_M_POOL_MAX_LIFETIME_MS=1",
			     "EMH_DEFAULT_CONTEXT=m", NULL};
	emh_host *h = host_new(env, &err);
	ok(h != NULL, "host with an in-memory context");
	if (!h) {
		diag("%s", err.message);
		return;
	}
	emh_host_register_entity(h, "m", &item_entity, &err);
	int rc = emh_host_sync_schema(h, "m", &err);
	if (!is_int_ok(rc, 0, "sync schema in memory"))
		diag("%s", err.message);

	emh_em *a, *b;
	emh_host_fork(h, "m", &a, &err);
	rc = item_add(a, "one", 1, NULL, &err);
	is_int(rc, 0, "insert in fork a");
	emh_host_fork(h, "m", &b, &err);
	emh_repo *rb;
	int64_t n = -1;
	emh_em_repo(b, &item_entity, &rb, &err);
	rc = emh_repo_count(rb, NULL, &n, &err);
	ok(rc == 0 && n == 1, "fork b, on another connection, sees it (%lld)", (long long)n);
	item_add(b, "two", 2, NULL, &err);
	emh_repo *ra;
	emh_em_repo(a, &item_entity, &ra, &err);
	n = -1;
	emh_repo_count(ra, NULL, &n, &err);
	is_int(n, 2, "and fork a sees fork b's row");
	emh_em_close(a);
	emh_em_close(b);

	/* max_lifetime_ms=1: every pooled connection is closed before reuse, so
	 * only the context's own connection keeps the database alive. */
	sleep_ms(20);
	is_int(item_count(h, "m"), 2, "data survives every fork and connection closing");
	sleep_ms(20);
	is_int(item_count(h, "m"), 2, "and again on yet another connection");
	emh_context_info *infos = NULL;
	size_t ninfo = 0;
	uint64_t opened = 0;
	if (emh_host_contexts(h, &infos, &ninfo, &err) == 0) {
		for (size_t i = 0; i < ninfo; i++)
			if (strcmp(infos[i].name, "m") == 0)
				opened = infos[i].opened;
		emh_context_info_free(infos, ninfo);
	}
	ok(opened >= 4, "the pool did close and reopen connections meanwhile (opened %llu)",
	   (unsigned long long)opened);
	test_writers(h, "m", "memory");

	emh_host *h2 = host_new(env, &err);
	ok(h2 != NULL, "a second host with a context of the same name");
	if (h2) {
		emh_host_register_entity(h2, "m", &item_entity, &err);
		emh_host_sync_schema(h2, "m", &err);
		is_int(item_count(h2, "m"), 0, "has its own in-memory database");
		emh_host_free(h2);
	}
	is_int(item_count(h, "m"), 122, "the first one is untouched");
	emh_host_free(h);
}

/* A user-given shared-cache URI: table locks (SQLITE_LOCKED) are waited on up to busy_timeout_ms. */
static void test_shared_cache(void)
{
	emh_error err;
	const char *env[] = {"EMH_CONTEXT_C_DRIVER=sqlite",
			     "EMH_CONTEXT_C_PATH=file:emh-sq-test-shared?mode=memory&cache=shared",
			     "EMH_CONTEXT_C_BUSY_TIMEOUT_MS=150", "EMH_CONTEXT_C_POOL_MAX_LIFETIME_MS=1",
			     "EMH_DEFAULT_CONTEXT=c", NULL};
	emh_host *h = host_new(env, &err);
	ok(h != NULL, "host with a shared-cache URI path");
	if (!h) {
		diag("%s", err.message);
		return;
	}
	emh_em *a, *b;
	emh_host_register_entity(h, "c", &item_entity, &err);
	emh_host_fork(h, "c", &a, &err);
	/* a keeps its connection for the whole test, and with it the database */
	int rc = emh_host_sync_schema(h, "c", &err);
	is_int(rc, 0, "sync");
	rc = emh_em_begin(a, &err);
	if (!is_int_ok(rc, 0, "fork a begins"))
		diag("%s", err.message);
	item_add(a, "locked", 1, NULL, &err);
	emh_host_fork(h, "c", &b, &err);
	emh_repo *rb;
	int64_t n = -1;
	emh_em_repo(b, &item_entity, &rb, &err);
	double t0 = now_ms();
	rc = emh_repo_count(rb, NULL, &n, &err);
	double waited = now_ms() - t0;
	is_int(rc, EMH_ERETRY, "reading a table locked by another connection: EMH_ERETRY");
	ok(err.retryable && err.native == SQLITE_LOCKED_SHAREDCACHE, "retryable, native SQLITE_LOCKED_SHAREDCACHE (%d)",
	   err.native);
	ok(waited >= 100, "after waiting busy_timeout_ms (%.0f ms)", waited);
	is_int(emh_em_commit(a, &err), 0, "fork a commits");
	n = -1;
	rc = emh_repo_count(rb, NULL, &n, &err);
	ok(rc == 0 && n == 1, "fork b reads once the lock is gone (%lld)", (long long)n);
	emh_em_close(b);
	emh_em_close(a);
	sleep_ms(20);
	is_int(item_count(h, "c"), 1, "an in-memory URI path also outlives every pooled connection");
	emh_host_free(h);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

int main(void)
{
	const char *bd = getenv("EMH_BUILDDIR");
	snprintf(plugdir, sizeof plugdir, "%s/plugins-build", bd ? bd : ".");
	snprintf(dir, sizeof dir, "/tmp/emh-sqtest-XXXXXX");
	if (!mkdtemp(dir))
		bail("mkdtemp failed");
	diag("sqlite %s, files in %s", sqlite3_libversion(), dir);

	test_descriptor();
	test_file();
	test_file_writers();
	test_settings();
	test_schema();
	test_memory();
	test_shared_cache();

	nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
	return done_testing();
}
