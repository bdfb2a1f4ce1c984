/* SPDX-License-Identifier: MIT */
/*
 * tests/sqlite/test_sqlite.c: the SQLite driver through the host API, plus
 * its descriptor.  Each subtest is a static function announced by a TAP
 * comment; the database files live in one fixture directory.
 */
#include "config.h"

#include <dlfcn.h>
#include <inttypes.h>
#include <errno.h>
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

#include "../fixture.h"
#include "../tap.h"

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

/* Integer fields that an update_where can take past their range (test_ranges). */
typedef struct sq_count {
	int64_t id;
	int32_t n;
	int64_t m;
} sq_count;
static const emh_field count_fields[] = {
	EMH_FIELD(sq_count, id, EMH_T_INT64, EMH_F_PK),
	EMH_FIELD(sq_count, n, EMH_T_INT32, 0),
	EMH_FIELD(sq_count, m, EMH_T_INT64, 0),
};
static const emh_entity count_entity = EMH_ENTITY(sq_count, "sq_counts", count_fields);

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

/* A host on envp; NULL (the error in err) when it cannot start. */
static emh_host *host_new(const fixture *fx, const char *const *env, emh_error *err)
{
	emh_host *h;
	return fixture_host(fx, env, &h, err) == 0 ? h : NULL;
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

/* A row the checks after it depend on: bail when it cannot be inserted. */
static void item_seed(emh_em *em, const char *name, int64_t counter)
{
	emh_error err;
	if (item_add(em, name, counter, NULL, &err))
		bail("insert item '%s' in context '%s': %s", name, emh_em_context(em), err.message);
}

/* Number of items in context ctx, through a fresh fork; -1 on error. */
static int64_t item_count(emh_host *h, const char *ctx)
{
	emh_em *em;
	emh_repo *r;
	emh_error err;
	int64_t n = -1;
	if (emh_host_fork(h, ctx, &em, &err)) {
		diag("fork '%s': %s", ctx ? ctx : "(default)", err.message);
		return -1;
	}
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
	} else {
		diag("raw '%s' on %s: %s", sql, file, sqlite3_errmsg(db));
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

/* Run sql on a raw read-write connection to file: setup, so bail when it fails. */
static void raw_exec(const char *file, const char *sql)
{
	sqlite3 *db = NULL;
	char *msg = NULL;
	if (sqlite3_open(file, &db) != SQLITE_OK)
		bail("sqlite3_open %s: %s", file, sqlite3_errmsg(db));
	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
		bail("raw '%s' on %s: %s", sql, file, msg ? msg : "?");
	sqlite3_close(db);
}

/* ---- the descriptor ---- */

static void test_descriptor(const fixture *fx)
{
	char so[1100];
	diag("the descriptor: ABI, caps, dialect, parameters, one exported symbol");
	snprintf(so, sizeof so, "%s/sqlite.so", fx->plugin_dir);
	void *dl = dlopen(so, RTLD_NOW | RTLD_LOCAL);
	if (!ok(dl != NULL, "dlopen %s", so))
		bail("cannot load the plugin under test: %s", dlerror());
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
	} else {
		skip(8, "no descriptor");
	}
	ok(dlsym(dl, "sq_connect") == NULL && dlsym(dl, "sq_stmt_exec") == NULL, "nothing else exported");
	dlclose(dl);
}

/* ---- a file database ---- */

/* What the file-database subtests share: one host on t.db, two rows. */
typedef struct file_db {
	emh_host *h;
	char file[1100];
	int64_t ida, idb; /* "Alice" and "alice" */
} file_db;

/* A host on a file from a URL; the schema, made twice; the file as SQLite sees it. */
static bool file_open(const fixture *fx, file_db *fd)
{
	char env_url[1200];
	emh_error err;
	int rc;

	diag("a file database: the host, the schema");
	fixture_path(fx, "t.db", fd->file, sizeof fd->file);
	snprintf(env_url, sizeof env_url, "EMH_CONTEXT_T_URL=sqlite://%s", fd->file);
	const char *env[] = {env_url, "EMH_CONTEXT_T_BUSY_TIMEOUT_MS=200", "EMH_DEFAULT_CONTEXT=t", NULL};

	fd->h = host_new(fx, env, &err);
	if (!ok(fd->h != NULL, "host with a file context from a URL")) {
		diag("%s", err.message);
		return false;
	}
	is_str(emh_host_context_driver(fd->h, "t"), "sqlite", "context driver");
	is_int(emh_host_ping(fd->h, "t", &err), 0, "ping");
	is_int(emh_host_register_entity(fd->h, "t", &item_entity, &err), 0, "register entity");
	is_int(emh_host_register_entity(fd->h, "t", &tag_entity, &err), 0, "register a text-keyed entity");
	rc = emh_host_sync_schema(fd->h, "t", &err);
	if (!is_int_ok(rc, 0, "sync schema"))
		diag("%s", err.message);
	is_int(emh_host_sync_schema(fd->h, "t", &err), 0, "sync schema again (idempotent)");
	is_raw(fd->file, "PRAGMA journal_mode", "wal", "journal_mode is wal");
	is_raw(fd->file, "SELECT type FROM pragma_table_info('sq_items') WHERE name='id'", "INTEGER",
	       "generated key column is INTEGER");
	is_raw(fd->file, "SELECT count(*) FROM sqlite_master WHERE type='index' AND name='sq_items_counter_idx'", "1",
	       "secondary index created");
	is_raw(fd->file, "SELECT \"notnull\" || pk FROM pragma_table_info('sq_tags') WHERE name='code'", "11",
	       "a text primary key is NOT NULL");
	return true;
}

/* Generated keys; every type written, stored and read back; NULL versus empty. */
static bool file_types(file_db *fd)
{
	emh_error err;
	emh_em *em;
	emh_repo *r;
	sq_item *a = NULL, *b = NULL, *got;
	int rc;

	diag("a file database: generated keys, every type, NULL and empty values");
	em = fixture_fork(fd->h, "t");
	rc = item_add(em, "Alice", 10, &a, &err);
	if (!is_int_ok(rc, 0, "insert"))
		diag("%s", err.message);
	rc = item_add(em, "alice", 20, &b, &err);
	is_int(rc, 0, "insert a second row");
	ok(a && b && a->id > 0 && b->id == a->id + 1, "generated keys written back (%lld, %lld)",
	   a ? (long long)a->id : -1, b ? (long long)b->id : -1);
	if (!a || !b) {
		emh_em_close(em);
		return false;
	}
	fd->ida = a->id; /* a and b die with the fork */
	fd->idb = b->id;

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
	is_raw(fd->file, "SELECT typeof(at) || ':' || at FROM sq_items WHERE name='Alice'",
	       "integer:1700000000123456", "timestamp stored as INTEGER microseconds");
	is_raw(fd->file, "SELECT typeof(data) || ':' || length(data) FROM sq_items WHERE name='Alice'", "blob:0",
	       "empty blob stored as an empty blob");
	is_raw(fd->file, "SELECT typeof(data) FROM sq_items WHERE name='alice'", "null", "NULL blob stored as NULL");
	is_raw(fd->file, "SELECT typeof(at) FROM sq_items WHERE name='alice'", "null", "NULL timestamp stored as NULL");

	em = fixture_fork(fd->h, "t");
	r = fixture_repo(em, &item_entity);
	got = NULL;
	rc = emh_repo_get(r, emh_v_int64(fd->ida), (void **)&got, &err);
	is_int(rc, 0, "get by key");
	if (rc == 0 && got) {
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
	rc = emh_repo_get(r, emh_v_int64(fd->idb), (void **)&got, &err);
	ok(rc == 0 && got, "get the second row");
	ok(rc == 0 && got && got->data.data == NULL, "NULL blob comes back NULL");
	ok(rc == 0 && got && got->doc == NULL, "NULL json comes back NULL");
	ok(rc == 0 && got && emh_em_is_null(em, got, "at"), "NULL timestamp comes back NULL");
	rc = emh_repo_get(r, emh_v_int64(999999), (void **)&got, &err);
	is_int(rc, EMH_ENOTFOUND, "get of a missing key");
	emh_em_close(em);
	return true;
}

/* LIKE (case, escapes), find with conditions and paging, a unique violation. */
static void file_queries(file_db *fd)
{
	emh_error err;
	emh_em *em;
	emh_repo *r;
	emh_query *q;
	emh_list list = {0};
	int64_t n = -1;
	int rc;

	diag("a file database: LIKE, find, unique violations");
	em = fixture_fork(fd->h, "t");
	r = fixture_repo(em, &item_entity);
	q = fixture_query(r);
	emh_q_where(q, emh_q_like(q, "name", "Al%"));
	rc = emh_repo_count(r, q, &n, &err);
	ok(rc == 0 && n == 1, "LIKE 'Al%%' is case-sensitive (%lld)", (long long)n);
	emh_em_close(em);

	em = fixture_fork(fd->h, "t");
	item_seed(em, "50%off", 1);
	item_seed(em, "50xoff", 2);
	r = fixture_repo(em, &item_entity);
	q = fixture_query(r);
	emh_q_where(q, emh_q_like(q, "name", "50\\%off"));
	n = -1;
	rc = emh_repo_count(r, q, &n, &err);
	ok(rc == 0 && n == 1, "LIKE with an escaped %% (%lld)", (long long)n);

	/* find with conditions, order, offset without limit */
	q = fixture_query(r);
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
}

/* Update and remove through the repository; raw execute; foreign keys on. */
static void file_writes(file_db *fd)
{
	emh_error err;
	emh_em *em;
	emh_repo *r;
	sq_item *got = NULL;
	int rc;

	diag("a file database: update, remove, raw statements, foreign keys");
	em = fixture_fork(fd->h, "t");
	r = fixture_repo(em, &item_entity);
	rc = emh_repo_get(r, emh_v_int64(fd->idb), (void **)&got, &err);
	if (rc == 0 && got) {
		got->counter = 77;
		is_int(emh_repo_update(r, got, &err), 0, "update");
		is_int(emh_repo_remove(r, got, &err), 0, "remove");
	} else {
		diag("get %lld: %s", (long long)fd->idb, err.message);
		skip(2, "no row");
	}
	emh_em_close(em);
	is_int(item_count(fd->h, "t"), 3, "three rows left");

	em = fixture_fork(fd->h, "t");
	rc = emh_em_execute(em, "CREATE TABLE IF NOT EXISTS notes (x TEXT); INSERT INTO notes VALUES ('a');"
				"\n-- a comment\nINSERT INTO notes VALUES ('b');", &err);
	if (!is_int_ok(rc, 0, "execute several statements"))
		diag("%s", err.message);
	is_raw(fd->file, "SELECT count(*) FROM notes", "2", "both inserts ran");
	rc = emh_em_execute(em, "INSERT INTO notes VALUES ('c'); INSERT INTO nosuch VALUES (1)", &err);
	is_int(rc, EMH_EDRIVER, "execute stops at a failing statement");
	like_str(err.message, "no such table", "its message");
	rc = emh_em_execute(em, "CREATE TABLE parent (id INTEGER PRIMARY KEY);"
				"CREATE TABLE child (pid INTEGER REFERENCES parent (id));"
				"INSERT INTO child VALUES (42)", &err);
	is_int(rc, EMH_EINVAL, "foreign keys are enforced: orphan insert is EMH_EINVAL");
	is_int(err.native, SQLITE_CONSTRAINT_FOREIGNKEY, "native SQLITE_CONSTRAINT_FOREIGNKEY");
	emh_em_close(em);
}

static void file_transactions(file_db *fd)
{
	emh_error err;
	emh_em *em;
	int64_t before = item_count(fd->h, "t");

	diag("a file database: transactions and savepoints");
	em = fixture_fork(fd->h, "t");
	is_int(emh_em_begin(em, &err), 0, "begin");
	item_seed(em, "tx-rolled-back", 5);
	is_int(emh_em_rollback(em, &err), 0, "rollback");
	is_int(item_count(fd->h, "t"), before, "rolled back insert is gone");
	is_int(emh_em_begin(em, &err), 0, "begin again");
	item_seed(em, "tx-kept", 5);
	is_int(emh_em_begin(em, &err), 0, "nested begin (savepoint)");
	is_int(emh_em_tx_depth(em), 2, "depth 2");
	item_seed(em, "tx-inner", 5);
	is_int(emh_em_rollback(em, &err), 0, "rollback to the savepoint");
	is_int(emh_em_commit(em, &err), 0, "commit the outer transaction");
	emh_em_close(em);
	is_int(item_count(fd->h, "t"), before + 1, "outer insert kept, inner one rolled back");
}

/* Another connection holds the write lock: busy_timeout_ms, then EMH_ERETRY; WAL readers. */
static void file_locks(file_db *fd)
{
	emh_error err;
	emh_em *em, *em2;
	emh_repo *r2;
	sqlite3 *raw = NULL;
	int64_t n = -1, before = item_count(fd->h, "t");
	int rc;

	diag("a file database: a busy write lock, a reader beside a writer (WAL)");
	if (sqlite3_open(fd->file, &raw) != SQLITE_OK)
		bail("sqlite3_open %s: %s", fd->file, sqlite3_errmsg(raw));
	rc = sqlite3_exec(raw, "BEGIN IMMEDIATE", NULL, NULL, NULL);
	is_int(rc, SQLITE_OK, "raw connection takes the write lock");
	em = fixture_fork(fd->h, "t");
	double t0 = fixture_now_ms();
	rc = item_add(em, "busy", 1, NULL, &err);
	double waited = fixture_now_ms() - t0;
	is_int(rc, EMH_ERETRY, "insert while locked is EMH_ERETRY");
	ok(err.retryable, "and retryable");
	is_int(err.native & 0xff, SQLITE_BUSY, "native SQLITE_BUSY");
	ok(waited >= 150 && waited < 3000, "waited for busy_timeout_ms=200 (%.0f ms)", waited);
	if (sqlite3_exec(raw, "ROLLBACK", NULL, NULL, NULL) != SQLITE_OK)
		bail("raw ROLLBACK: %s", sqlite3_errmsg(raw));
	sqlite3_close(raw);
	rc = emh_em_flush(em, &err);
	if (!is_int_ok(rc, 0, "the same flush succeeds once the lock is gone"))
		diag("%s", err.message);
	emh_em_close(em);

	/* two forks at once: WAL lets a reader run beside an open write transaction */
	em = fixture_fork(fd->h, "t");
	em2 = fixture_fork(fd->h, "t");
	if (emh_em_begin(em, &err))
		bail("begin: %s", err.message);
	item_seed(em, "uncommitted", 1);
	r2 = fixture_repo(em2, &item_entity);
	rc = emh_repo_count(r2, NULL, &n, &err);
	ok(rc == 0 && n == before + 1, "a second fork reads committed rows during a write transaction (%lld)",
	   (long long)n);
	if (emh_em_commit(em, &err))
		bail("commit: %s", err.message);
	emh_em_close(em);
	emh_em_close(em2);
}

static void test_file(const fixture *fx)
{
	file_db fd = {0};
	if (file_open(fx, &fd) && file_types(&fd)) {
		file_queries(&fd);
		file_writes(&fd);
		file_transactions(&fd);
		file_locks(&fd);
	}
	emh_host_free(fd.h);
}

/* ---- the deadline of a call (statement_timeout_ms) ---- */

/* Never ends on its own: counts an endless recursive sequence. */
#define SQ_ENDLESS "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"

/*
 * A statement past statement_timeout_ms is interrupted (the progress
 * handler): EMH_ETIMEOUT, retryable, its connection discarded, an open
 * transaction spoiled until rolled back.  A wait for a lock is not cut by
 * the deadline: busy_timeout_ms governs it.  The time bounds only tell
 * "returned" from "hung".
 */
static void test_deadline(const fixture *fx)
{
	char file[1100], url[1200];
	emh_error err;
	fixture_path(fx, "deadline.db", file, sizeof file);
	snprintf(url, sizeof url, "EMH_CONTEXT_D_URL=sqlite://%s", file);
	const char *env[] = {url, "EMH_CONTEXT_D_STATEMENT_TIMEOUT_MS=300", "EMH_CONTEXT_D_BUSY_TIMEOUT_MS=1500",
			     "EMH_CONTEXT_D_SCHEMA=sync", NULL};
	diag("a call past statement_timeout_ms: interrupted, EMH_ETIMEOUT, connection discarded");
	emh_host *h = host_new(fx, env, &err);
	if (!h)
		bail("host with a sqlite context 'd': %s", err.message);
	fixture_register(h, "d", &item_entity);

	emh_em *em = fixture_fork(h, "d");
	item_seed(em, "before", 1);
	uint64_t discarded = fixture_context_info(h, "d").discarded;
	double t0 = fixture_now_ms();
	int rc = emh_em_execute(em, SQ_ENDLESS, &err);
	double took = fixture_now_ms() - t0;
	is_int(rc, EMH_ETIMEOUT, "an endless statement comes back as EMH_ETIMEOUT");
	ok(took < 300 + 1000, "at its deadline instead of hanging (%.0f ms for 300 ms)", took);
	ok(err.retryable, "retryable");
	like_str(err.message, "context 'd'", "naming the context");
	like_str(err.message, "statement_timeout_ms=300", "and the deadline: %s", err.message);
	is_int(err.native & 0xff, SQLITE_INTERRUPT, "native SQLITE_INTERRUPT");
	is_int((int)(fixture_context_info(h, "d").discarded - discarded), 1, "its connection was discarded");
	is_int(item_count(h, "d"), 1, "the context serves the next fork");
	item_seed(em, "same fork, next call", 2);
	emh_em_close(em);

	diag("inside a transaction: the transaction is spoiled until rolled back");
	em = fixture_fork(h, "d");
	if (emh_em_begin(em, &err))
		bail("begin: %s", err.message);
	item_seed(em, "in the transaction", 3);
	if (emh_em_flush(em, &err))
		bail("flush: %s", err.message);
	is_int(emh_em_execute(em, SQ_ENDLESS, &err), EMH_ETIMEOUT, "the endless statement times out");
	is_int(emh_em_execute(em, "SELECT 1", &err), EMH_ESTATE, "the next call is refused: the transaction is gone");
	is_int(emh_em_rollback(em, &err), 0, "rollback");
	emh_em_close(em);
	is_int(item_count(h, "d"), 2, "nothing of the transaction stayed");

	diag("a wait for a lock stays under busy_timeout_ms, past the deadline");
	sqlite3 *raw = NULL;
	if (sqlite3_open(file, &raw) != SQLITE_OK || sqlite3_exec(raw, "BEGIN IMMEDIATE", NULL, NULL, NULL))
		bail("raw write lock on %s: %s", file, sqlite3_errmsg(raw));
	em = fixture_fork(h, "d");
	t0 = fixture_now_ms();
	rc = item_add(em, "locked out", 4, NULL, &err);
	took = fixture_now_ms() - t0;
	is_int(rc, EMH_ERETRY, "an insert behind a held lock ends as EMH_ERETRY, not EMH_ETIMEOUT");
	ok(took >= 1000 && took < 1500 + 3000, "after busy_timeout_ms=1500 (%.0f ms), not statement_timeout_ms=300",
	   took);
	emh_em_close(em);
	sqlite3_exec(raw, "ROLLBACK", NULL, NULL, NULL);
	sqlite3_close(raw);
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
			snprintf(a->msg, sizeof a->msg, "%s", err.message);
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
		fixture_thread(&th[i], writer, &args[i]);
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

static void test_file_writers(const fixture *fx)
{
	static const emh_entity *const entities[] = {&item_entity, NULL};
	char file[1100];
	emh_error err;

	diag("a file database: three writer threads");
	emh_host *h = fixture_sqlite_host(fx, "w.db", NULL, entities);
	is_int(emh_host_sync_schema(h, NULL, &err), 0, "sync");
	test_writers(h, NULL, "file");
	fixture_path(fx, "w.db", file, sizeof file);
	is_raw(file, "SELECT count(*) FROM sq_items", "120", "file: the rows are in the default context's file");
	emh_host_free(h);
}

/* ---- settings ---- */

/* journal_mode and foreign_keys change what the file does. */
static void settings_accepted(const fixture *fx)
{
	char env_path[1200], file[1100];
	emh_error err;

	fixture_path(fx, "j.db", file, sizeof file);
	snprintf(env_path, sizeof env_path, "EMH_CONTEXT_J_PATH=%s", file);
	const char *env[] = {"EMH_CONTEXT_J_DRIVER=sqlite", env_path, "EMH_CONTEXT_J_JOURNAL_MODE=delete",
			     "EMH_CONTEXT_J_FOREIGN_KEYS=false", "EMH_DEFAULT_CONTEXT=j", NULL};
	emh_host *h = host_new(fx, env, &err);
	if (!ok(h != NULL, "journal_mode and foreign_keys settings accepted")) {
		diag("%s", err.message);
		skip(3, "no host");
		return;
	}
	is_int(emh_host_ping(h, "j", &err), 0, "ping opens the file");
	is_raw(file, "PRAGMA journal_mode", "delete", "journal_mode=delete: the file is not switched to WAL");
	emh_em *em = fixture_fork(h, "j");
	int rc = emh_em_execute(em, "CREATE TABLE parent (id INTEGER PRIMARY KEY);"
				    "CREATE TABLE child (pid INTEGER REFERENCES parent (id));"
				    "INSERT INTO child VALUES (42)", &err);
	is_int(rc, 0, "foreign_keys=false: orphan insert allowed");
	emh_em_close(em);
	emh_host_free(h);
}

/* A bad setting stops the host; a missing directory or a file that is no database does not. */
static void settings_refused(const fixture *fx)
{
	char env_path[1200], file[1100];
	emh_error err;
	emh_host *h;

	fixture_path(fx, "j.db", file, sizeof file);
	snprintf(env_path, sizeof env_path, "EMH_CONTEXT_J_PATH=%s", file);
	const char *bad[] = {"EMH_CONTEXT_J_DRIVER=sqlite", env_path, "EMH_CONTEXT_J_JOURNAL_MODE=wal; DROP",
			     "EMH_DEFAULT_CONTEXT=j", NULL};
	h = host_new(fx, bad, &err);
	ok(h == NULL, "a bad journal_mode is refused");
	if (!h)
		like_str(err.message, "journal_mode", "the message names the setting");
	else
		skip(1, "accepted");
	emh_host_free(h);

	const char *nodir[] = {"EMH_CONTEXT_X_DRIVER=sqlite", "EMH_CONTEXT_X_PATH=/nonexistent-emh-dir/sub/x.db",
			       "EMH_DEFAULT_CONTEXT=x", NULL};
	h = host_new(fx, nodir, &err);
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

	fixture_path(fx, "notadb.db", file, sizeof file);
	FILE *f = fopen(file, "w");
	if (!f || fputs("this is not a database file, just some text that is long enough to hold a header ...\n", f) < 0 ||
	    fclose(f) != 0)
		bail("write %s: %s", file, strerror(errno));
	snprintf(env_path, sizeof env_path, "EMH_CONTEXT_N_PATH=%s", file);
	const char *notdb[] = {"EMH_CONTEXT_N_DRIVER=sqlite", env_path, "EMH_DEFAULT_CONTEXT=n", NULL};
	h = host_new(fx, notdb, &err);
	if (!ok(h != NULL, "a file that is not a database does not stop the host")) {
		diag("%s", err.message);
		skip(2, "no host");
		return;
	}
	int rc = emh_host_ping(h, "n", &err);
	is_int(rc, EMH_EUNAVAILABLE, "a file that is not a database: EMH_EUNAVAILABLE");
	like_str(err.message, "notadb.db", "message names the file");
	emh_host_free(h);
}

/* ---- schema mismatch ---- */

/* Sync entity e onto the file as it is now: a fresh host each time. */
static int schema_sync(const fixture *fx, const char *const *env, const emh_entity *e, emh_error *err)
{
	emh_host *h = host_new(fx, env, err);
	if (!h)
		bail("host on the schema file: %s", err->message);
	fixture_register(h, "s", e);
	int rc = emh_host_sync_schema(h, "s", err);
	emh_host_free(h);
	return rc;
}

static void test_schema(const fixture *fx)
{
	char env_path[1200], file[1100];
	emh_error err;
	int rc;

	diag("schema mismatch: column types, missing columns, the generated key");
	fixture_path(fx, "s.db", file, sizeof file);
	snprintf(env_path, sizeof env_path, "EMH_CONTEXT_S_PATH=%s", file);
	const char *env[] = {"EMH_CONTEXT_S_DRIVER=sqlite", env_path, "EMH_DEFAULT_CONTEXT=s", NULL};
	raw_exec(file, "CREATE TABLE sq_things (id INTEGER PRIMARY KEY, label VARCHAR(20), score TEXT);"
		       "CREATE TABLE sq_tags (code TEXT PRIMARY KEY);");

	emh_host *h = host_new(fx, env, &err);
	if (!ok(h != NULL, "host")) {
		diag("%s", err.message);
		return;
	}
	emh_host_free(h);
	rc = schema_sync(fx, env, &thing_entity, &err);
	is_int(rc, EMH_ESCHEMA, "incompatible column type: EMH_ESCHEMA");
	like_str(err.message, "sq_things", "names the table");
	like_str(err.message, "score", "names the column");

	rc = schema_sync(fx, env, &tag_entity, &err);
	is_int(rc, EMH_ESCHEMA, "missing column: EMH_ESCHEMA");
	like_str(err.message, "weight", "names the column");

	raw_exec(file, "DROP TABLE sq_things;"
		       "CREATE TABLE sq_things (id BIGINT PRIMARY KEY, label TEXT, score DOUBLE)");
	rc = schema_sync(fx, env, &thing_entity, &err);
	is_int(rc, EMH_ESCHEMA, "generated key not INTEGER (not the rowid): EMH_ESCHEMA");
	like_str(err.message, "id", "names the key column");

	raw_exec(file, "DROP TABLE sq_things;"
		       "CREATE TABLE sq_things (id integer PRIMARY KEY, label NVARCHAR(40), score DOUBLE PRECISION,"
		       " extra INT)");
	rc = schema_sync(fx, env, &thing_entity, &err);
	if (!is_int_ok(rc, 0, "affinity-equivalent types and an extra column are accepted"))
		diag("%s", err.message);
}

/* ---- integer ranges ---- */

/* update_where n += dn, m += dm on row id of sq_counts in h's default context. */
static int count_add(emh_host *h, int64_t id, int32_t dn, int64_t dm, emh_error *err)
{
	emh_em *em = fixture_fork(h, NULL);
	emh_repo *r = fixture_repo(em, &count_entity);
	emh_query *q = fixture_query(r);
	emh_sets *s;
	int64_t n = -1;
	int rc = emh_repo_sets(r, &s, err);
	if (!rc) {
		emh_q_where(q, emh_q_eq(q, "id", emh_v_int64(id)));
		if (dn)
			emh_sets_add(s, "n", emh_v_int32(dn));
		if (dm)
			emh_sets_add(s, "m", emh_v_int64(dm));
		rc = emh_repo_update_where(r, q, s, &n, err);
	}
	emh_em_close(em);
	return rc;
}

/* emh_repo_get of row id of sq_counts: its status; the row in *out when 0. */
static int count_get(emh_host *h, int64_t id, sq_count *out, emh_error *err)
{
	emh_em *em = fixture_fork(h, NULL);
	sq_count *p = NULL;
	int rc = emh_repo_get(fixture_repo(em, &count_entity), emh_v_int64(id), (void **)&p, err);
	if (!rc)
		*out = *p;
	emh_em_close(em);
	return rc;
}

/* Whether schema diff finds nothing to change in h's default context. */
static void diff_none(emh_host *h, const char *what)
{
	emh_schema_diff *d = NULL;
	emh_error err;
	int rc = emh_schema_diff_new(h, NULL, 0, &d, &err);
	if (rc) {
		ok(0, "%s: schema diff (%s)", what, err.message);
		return;
	}
	const char *script = emh_schema_diff_script(d);
	if (!ok(!emh_schema_diff_differs(d), "%s: schema diff finds nothing to change", what))
		diag("%s", script ? script : "(no script)");
	emh_schema_diff_free(d);
}

/*
 * An integer update past the field's range: refused on a table the driver
 * creates (range checks, as PostgreSQL refuses it); on a table created
 * before those checks, where SQLite stores the result, the row then fails
 * to read (EMH_ESCHEMA naming the column) instead of reading back wrong:
 * an int32 cut to 32 bits, an int64 sum past its range (stored as a REAL)
 * clamped.  Either table passes the schema check and schema diff.
 */
static void test_ranges(const fixture *fx)
{
	const emh_entity *const ents[] = {&count_entity, NULL};
	char file[1100];
	emh_error err;
	sq_count row;
	int rc;

	diag("integer ranges: an update past int32 or int64 is refused, or the row refuses to read");
	emh_host *h = fixture_sqlite_host(fx, "ranges-new.db", NULL, ents);
	fixture_sync(h, NULL);
	diff_none(h, "a table sync created");
	fixture_path(fx, "ranges-new.db", file, sizeof file);
	is_raw(file, "SELECT group_concat(type) FROM pragma_table_info('sq_counts')", "INTEGER,INTEGER,INTEGER",
	       "its columns are declared INTEGER, as before");
	raw_exec(file, "INSERT INTO sq_counts VALUES (1, 2147483647, 9223372036854775807)");
	rc = count_add(h, 1, 1, 0, &err);
	is_int(rc, EMH_EINVAL, "new table: int32 + 1 at INT32_MAX is EMH_EINVAL");
	like_str(rc ? err.message : "", "CHECK", "saying which check failed: %s", rc ? err.message : "");
	is_int(count_add(h, 1, 0, 1, &err), EMH_EINVAL, "new table: int64 + 1 at INT64_MAX is EMH_EINVAL");
	rc = count_get(h, 1, &row, &err);
	ok(rc == 0 && row.n == INT32_MAX && row.m == INT64_MAX, "new table: the row is unchanged");
	emh_host_free(h);

	fixture_path(fx, "ranges-old.db", file, sizeof file);
	raw_exec(file, "CREATE TABLE sq_counts (id INTEGER NOT NULL PRIMARY KEY, n INTEGER NOT NULL, m INTEGER NOT NULL);"
		       "INSERT INTO sq_counts VALUES (1, 2147483647, 9223372036854775807),"
		       " (2, -2147483648, -9223372036854775808), (3, 7, 8)");
	h = fixture_sqlite_host(fx, "ranges-old.db", NULL, ents);
	rc = emh_host_sync_schema(h, NULL, &err);
	if (!is_int_ok(rc, 0, "a table created before the range checks passes the schema check"))
		diag("%s", err.message);
	diff_none(h, "that table");
	is_int(count_get(h, 3, &row, &err), 0, "old table: a row in range reads");
	/* SQLite stores these: the old table has no check */
	count_add(h, 1, 1, 0, &err);
	rc = count_get(h, 1, &row, &err);
	if (!is_int_ok(rc, EMH_ESCHEMA, "old table: int32 stored past INT32_MAX: the row refuses to read"))
		diag("read back n = %" PRId32, row.n);
	like_str(rc ? err.message : "", "'n'", "naming the column: %s", rc ? err.message : "");
	raw_exec(file, "UPDATE sq_counts SET n = 0 WHERE id = 1");
	count_add(h, 1, 0, 1, &err);
	rc = count_get(h, 1, &row, &err);
	if (!is_int_ok(rc, EMH_ESCHEMA, "old table: int64 + 1 at INT64_MAX (stored as a REAL): the row refuses to read"))
		diag("read back m = %" PRId64, row.m);
	like_str(rc ? err.message : "", "'m'", "naming the column: %s", rc ? err.message : "");
	count_add(h, 2, -1, -1, &err);
	rc = count_get(h, 2, &row, &err);
	is_int(rc, EMH_ESCHEMA, "old table: both past their minimum: the row refuses to read");
	raw_exec(file, "UPDATE sq_counts SET n = -2147483648 WHERE id = 2");
	rc = count_get(h, 2, &row, &err);
	is_int(rc, EMH_ESCHEMA, "old table: int64 - 1 at INT64_MIN alone: refuses to read too");
	raw_exec(file, "UPDATE sq_counts SET m = 9223372036854775807, n = 2147483647 WHERE id = 2");
	rc = count_get(h, 2, &row, &err);
	ok(rc == 0 && row.n == INT32_MAX && row.m == INT64_MAX, "old table: the extremes themselves, as integers, read");
	emh_host_free(h);
}

/* ---- in-memory databases ---- */

static void test_memory(const fixture *fx)
{
	emh_error err;
	const char *env[] = {"EMH_CONTEXT_M_URL=sqlite::memory:", "EMH_CONTEXT_M_POOL_MAX_LIFETIME_MS=1",
			     "EMH_DEFAULT_CONTEXT=m", NULL};
	diag("in-memory databases: shared by the pool, one per host");
	emh_host *h = host_new(fx, env, &err);
	if (!ok(h != NULL, "host with an in-memory context")) {
		diag("%s", err.message);
		return;
	}
	fixture_register(h, "m", &item_entity);
	int rc = emh_host_sync_schema(h, "m", &err);
	if (!is_int_ok(rc, 0, "sync schema in memory"))
		diag("%s", err.message);

	emh_em *a = fixture_fork(h, "m"), *b;
	rc = item_add(a, "one", 1, NULL, &err);
	is_int(rc, 0, "insert in fork a");
	b = fixture_fork(h, "m");
	emh_repo *rb = fixture_repo(b, &item_entity), *ra;
	int64_t n = -1;
	rc = emh_repo_count(rb, NULL, &n, &err);
	ok(rc == 0 && n == 1, "fork b, on another connection, sees it (%lld)", (long long)n);
	item_seed(b, "two", 2);
	ra = fixture_repo(a, &item_entity);
	n = -1;
	rc = emh_repo_count(ra, NULL, &n, &err);
	if (rc)
		diag("count in fork a: %s", err.message);
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
	if (emh_host_contexts(h, &infos, &ninfo, &err) != 0)
		bail("emh_host_contexts: %s", err.message);
	for (size_t i = 0; i < ninfo; i++)
		if (strcmp(infos[i].name, "m") == 0)
			opened = infos[i].opened;
	emh_context_info_free(infos, ninfo);
	ok(opened >= 4, "the pool did close and reopen connections meanwhile (opened %llu)",
	   (unsigned long long)opened);
	test_writers(h, "m", "memory");

	emh_host *h2 = host_new(fx, env, &err);
	if (ok(h2 != NULL, "a second host with a context of the same name")) {
		fixture_register(h2, "m", &item_entity);
		fixture_sync(h2, "m");
		is_int(item_count(h2, "m"), 0, "has its own in-memory database");
		emh_host_free(h2);
	} else {
		diag("%s", err.message);
		skip(1, "no second host");
	}
	is_int(item_count(h, "m"), 122, "the first one is untouched");
	emh_host_free(h);
}

/* A user-given shared-cache URI: table locks (SQLITE_LOCKED) are waited on up to busy_timeout_ms. */
static void test_shared_cache(const fixture *fx)
{
	emh_error err;
	const char *env[] = {"EMH_CONTEXT_C_DRIVER=sqlite",
			     "EMH_CONTEXT_C_PATH=file:emh-sq-test-shared?mode=memory&cache=shared",
			     "EMH_CONTEXT_C_BUSY_TIMEOUT_MS=150", "EMH_CONTEXT_C_POOL_MAX_LIFETIME_MS=1",
			     "EMH_DEFAULT_CONTEXT=c", NULL};
	diag("a shared-cache URI: table locks");
	emh_host *h = host_new(fx, env, &err);
	if (!ok(h != NULL, "host with a shared-cache URI path")) {
		diag("%s", err.message);
		return;
	}
	fixture_register(h, "c", &item_entity);
	/* a keeps its connection for the whole test, and with it the database */
	emh_em *a = fixture_fork(h, "c"), *b;
	int rc = emh_host_sync_schema(h, "c", &err);
	is_int(rc, 0, "sync");
	rc = emh_em_begin(a, &err);
	if (!is_int_ok(rc, 0, "fork a begins"))
		diag("%s", err.message);
	item_seed(a, "locked", 1);
	b = fixture_fork(h, "c");
	emh_repo *rb = fixture_repo(b, &item_entity);
	int64_t n = -1;
	double t0 = fixture_now_ms();
	rc = emh_repo_count(rb, NULL, &n, &err);
	double waited = fixture_now_ms() - t0;
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

int main(void)
{
	fixture fx;
	fixture_init(&fx, "sqtest");
	diag("sqlite %s, files in %s", sqlite3_libversion(), fx.dir);

	test_descriptor(&fx);
	test_file(&fx);
	test_file_writers(&fx);
	test_deadline(&fx);
	diag("settings: accepted, refused, files that cannot be opened");
	settings_accepted(&fx);
	settings_refused(&fx);
	test_schema(&fx);
	test_ranges(&fx);
	test_memory(&fx);
	test_shared_cache(&fx);

	fixture_release(&fx);
	return done_testing();
}
