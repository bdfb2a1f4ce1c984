/* SPDX-License-Identifier: MIT */
/*
 * tests/mysql/test_mysql_errors.c: MySQL driver errors, text/time/blob round
 * trips and pool bounds against a real server.  Each subtest is a static
 * function announced by a TAP comment; setup that fails bails out.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include <emhost/emhost.h>

#include "../fixture.h"
#include "../tap.h"

#define NTESTS 111
#define TABLE "emh_mytest_items"

typedef struct myt_item {
	int64_t id;
	const char *email; /* unique: VARCHAR(255) */
	const char *note;  /* LONGTEXT */
	emh_time at;
	emh_blob data;
	bool flag;
	int32_t n;
	double score;
	const char *doc;
} myt_item;

static const emh_field myt_fields[] = {
	EMH_FIELD(myt_item, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(myt_item, email, EMH_T_TEXT, EMH_F_UNIQUE),
	EMH_FIELD(myt_item, note, EMH_T_TEXT, EMH_F_NULLABLE),
	EMH_FIELD(myt_item, at, EMH_T_TIMESTAMP, EMH_F_NULLABLE),
	EMH_FIELD(myt_item, data, EMH_T_BLOB, EMH_F_NULLABLE),
	EMH_FIELD(myt_item, flag, EMH_T_BOOL, 0),
	EMH_FIELD(myt_item, n, EMH_T_INT32, 0),
	EMH_FIELD(myt_item, score, EMH_T_DOUBLE, 0),
	EMH_FIELD(myt_item, doc, EMH_T_JSON, EMH_F_NULLABLE),
};
static const emh_entity myt_entity = EMH_ENTITY(myt_item, TABLE, myt_fields);

/* A second layout on the same connection: column 1 is a number here, text in myt_item. */
typedef struct myt_pair {
	int64_t id;
	int64_t k;
	const char *label;
} myt_pair;
static const emh_field myt_pair_fields[] = {
	EMH_FIELD(myt_pair, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(myt_pair, k, EMH_T_INT64, 0),
	EMH_FIELD(myt_pair, label, EMH_T_TEXT, 0),
};
static const emh_entity myt_pair_entity = EMH_ENTITY(myt_pair, "emh_mytest_pairs", myt_pair_fields);

/* Numbers for aggregates: a sum of n overflows int64, d is a double. */
typedef struct myt_num {
	int64_t id;
	int64_t n;
	double d;
} myt_num;
static const emh_field myt_num_fields[] = {
	EMH_FIELD(myt_num, id, EMH_T_INT64, EMH_F_PK),
	EMH_FIELD(myt_num, n, EMH_T_INT64, 0),
	EMH_FIELD(myt_num, d, EMH_T_DOUBLE, 0),
};
static const emh_entity myt_num_entity = EMH_ENTITY(myt_num, "emh_mytest_nums", myt_num_fields);

/* A double field, for tables whose column rounds doubles. */
typedef struct myt_dbl {
	int64_t id;
	double d;
} myt_dbl;
static const emh_field myt_dbl_fields[] = {
	EMH_FIELD(myt_dbl, id, EMH_T_INT64, EMH_F_PK),
	EMH_FIELD(myt_dbl, d, EMH_T_DOUBLE, 0),
};
static const emh_entity myt_dbl_entity = EMH_ENTITY(myt_dbl, "emh_mytest_dbl", myt_dbl_fields);

/* Parts of mysql://user:password@host:port/database. */
static char u_user[128], u_pw[128], u_host[128], u_port[16], u_db[128];

static int parse_url(const char *url)
{
	const char *p = strstr(url, "://"), *at, *colon, *slash;
	if (!p)
		return -1;
	p += 3;
	at = strrchr(p, '@');
	if (!at)
		return -1;
	colon = memchr(p, ':', (size_t)(at - p));
	if (!colon)
		return -1;
	snprintf(u_user, sizeof u_user, "%.*s", (int)(colon - p), p);
	snprintf(u_pw, sizeof u_pw, "%.*s", (int)(at - colon - 1), colon + 1);
	p = at + 1;
	slash = strchr(p, '/');
	colon = memchr(p, ':', slash ? (size_t)(slash - p) : strlen(p));
	if (!slash || !colon)
		return -1;
	snprintf(u_host, sizeof u_host, "%.*s", (int)(colon - p), p);
	snprintf(u_port, sizeof u_port, "%.*s", (int)(slash - colon - 1), colon + 1);
	snprintf(u_db, sizeof u_db, "%.*s", (int)strcspn(slash + 1, "?"), slash + 1);
	return 0;
}

static emh_host *host_open(const char *url)
{
	static char env_url[1024], env_dir[1024];
	const char *bdir = getenv("EMH_BUILDDIR");
	snprintf(env_url, sizeof env_url, "EMH_CONTEXT_MY_URL=%s", url);
	snprintf(env_dir, sizeof env_dir, "%s/plugins-build", bdir ? bdir : ".");
	const char *envp[] = {env_url, "EMH_CONTEXT_MY_POOL_MAX=4", "EMH_DEFAULT_CONTEXT=my", NULL};
	emh_host_opts o = {.plugin_dir = env_dir, .envp = envp, .log_level = EMH_LOG_ERROR};
	emh_host *h = NULL;
	emh_error err;
	if (emh_host_new(&o, &h, &err) != 0)
		bail("emh_host_new: %s", err.message);
	return h;
}

/* A context that cannot work: the error names it, has the right code, and no password. */
static void check_bad_context(emh_host *h, const char *name, const char *const *kv, int want,
			      const char *want_text, const char *secret)
{
	emh_error err;
	emh_em *em = NULL;
	int rc = emh_host_add_context(h, name, kv, &err);
	if (!ok(rc == 0, "%s: context added without connecting", name)) {
		diag("%s", err.message);
		skip(5, "context not added");
		return;
	}
	memset(&err, 0, sizeof err);
	rc = emh_host_ping(h, name, &err);
	is_str(emh_status_name(rc), emh_status_name(want), "%s: ping fails with %s", name, emh_status_name(want));
	ok(strcmp(err.context, name) == 0, "%s: the error names the context (%s)", name, err.context);
	like_str(err.message, want_text, "%s: the message says why", name);
	ok(strstr(err.message, secret) == NULL, "%s: the message holds no password", name);
	diag("%s: %s", name, err.message);
	/* Through a fork too. */
	memset(&err, 0, sizeof err);
	if (emh_host_fork(h, name, &em, &err) == 0) {
		rc = emh_em_execute(em, "SELECT 1", &err);
		ok(rc == want && strcmp(err.context, name) == 0 && !strstr(err.message, secret),
		   "%s: a fork's first statement fails the same way (%s)", name, emh_status_name(rc));
		emh_em_close(em);
	} else
		ok(0, "%s: fork failed: %s", name, err.message);
}

static int64_t insert_item(emh_host *h, myt_item tmpl, emh_error *err, int *rc_out)
{
	emh_em *em;
	emh_repo *r;
	myt_item *it;
	int64_t id = -1;
	*rc_out = emh_host_fork(h, "my", &em, err);
	if (*rc_out)
		return -1;
	if ((*rc_out = emh_em_repo(em, &myt_entity, &r, err)) == 0 && (*rc_out = emh_repo_new(r, (void **)&it, err)) == 0) {
		*it = tmpl;
		it->id = 0;
		if ((*rc_out = emh_em_flush(em, err)) == 0)
			id = it->id;
	}
	emh_em_close(em);
	return id;
}

/* Load id in a fresh fork and copy what we compare into *out (strings into bufs). */
static int load_item(emh_host *h, int64_t id, myt_item *out, char *note, size_t notecap, unsigned char **data)
{
	emh_em *em;
	emh_repo *r;
	myt_item *it;
	emh_error err;
	int rc = emh_host_fork(h, "my", &em, &err);
	if (rc)
		return rc;
	if ((rc = emh_em_repo(em, &myt_entity, &r, &err)) == 0 && (rc = emh_repo_get(r, emh_v_int64(id), (void **)&it, &err)) == 0) {
		*out = *it;
		snprintf(note, notecap, "%s", it->note ? it->note : "(null)");
		out->note = note;
		out->email = NULL;
		out->doc = NULL;
		if (data) {
			*data = NULL;
			if (it->data.data) {
				if (!(*data = malloc(it->data.len ? it->data.len : 1)))
					bail("out of memory");
				memcpy(*data, it->data.data, it->data.len);
			}
		}
	} else
		diag("load %lld: %s", (long long)id, err.message);
	emh_em_close(em);
	return rc;
}

static int count_where_email(emh_host *h, bool like, const char *v, int64_t *n)
{
	emh_em *em;
	emh_repo *r;
	emh_query *q;
	emh_error err;
	int rc = emh_host_fork(h, "my", &em, &err);
	if (rc)
		return rc;
	if ((rc = emh_em_repo(em, &myt_entity, &r, &err)) == 0 && (rc = emh_repo_query(r, &q, &err)) == 0) {
		emh_q_where(q, like ? emh_q_like(q, "email", v) : emh_q_eq(q, "email", emh_v_text(v)));
		rc = emh_repo_count(r, q, n, &err);
	}
	if (rc)
		diag("count: %s", err.message);
	emh_em_close(em);
	return rc;
}

/* ---- pool bounds ---- */

typedef struct pool_run {
	emh_host *h;
	int64_t id;
	int failures;
	volatile int stop;
	unsigned max_total, max_in_use;
	pthread_mutex_t mu;
} pool_run;

static void *pool_worker(void *arg)
{
	pool_run *pr = arg;
	for (int i = 0; i < 40; i++) {
		emh_em *em;
		emh_repo *r;
		void *obj;
		emh_error err;
		int rc = emh_host_fork(pr->h, "pooled", &em, &err);
		if (!rc) {
			if ((rc = emh_em_repo(em, &myt_entity, &r, &err)) == 0)
				rc = emh_repo_get(r, emh_v_int64(pr->id), &obj, &err);
			emh_em_close(em);
		}
		if (rc) {
			pthread_mutex_lock(&pr->mu);
			if (pr->failures++ == 0)
				diag("pooled worker: %s", err.message);
			pthread_mutex_unlock(&pr->mu);
		}
	}
	return NULL;
}

static void *pool_sampler(void *arg)
{
	pool_run *pr = arg;
	while (!pr->stop) {
		emh_context_info *ci;
		size_t n;
		emh_error err;
		if (emh_host_contexts(pr->h, &ci, &n, &err) == 0) {
			for (size_t i = 0; i < n; i++) {
				if (strcmp(ci[i].name, "pooled") != 0)
					continue;
				unsigned total = ci[i].in_use + ci[i].idle;
				if (total > pr->max_total)
					pr->max_total = total;
				if (ci[i].in_use > pr->max_in_use)
					pr->max_in_use = ci[i].in_use;
			}
			emh_context_info_free(ci, n);
		}
		struct timespec ts = {0, 200000};
		nanosleep(&ts, NULL);
	}
	return NULL;
}

/* ---- lock conflicts ---- */

typedef struct lock_pair {
	emh_host *h;
	int64_t x, y;
	emh_em *em[2];
	emh_repo *r[2];
	myt_item *x_of[2], *y_of[2];
	int rc_thread;
	emh_error err_thread;
} lock_pair;

static int lock_open(lock_pair *lp, int i, emh_error *err)
{
	int rc = emh_host_fork(lp->h, "my", &lp->em[i], err);
	if (rc == 0)
		rc = emh_em_repo(lp->em[i], &myt_entity, &lp->r[i], err);
	if (rc == 0)
		rc = emh_em_begin(lp->em[i], err);
	if (rc == 0)
		rc = emh_repo_get(lp->r[i], emh_v_int64(lp->x), (void **)&lp->x_of[i], err);
	if (rc == 0)
		rc = emh_repo_get(lp->r[i], emh_v_int64(lp->y), (void **)&lp->y_of[i], err);
	return rc;
}

static void lock_close(lock_pair *lp)
{
	for (int i = 0; i < 2; i++) {
		emh_em_close(lp->em[i]); /* rolls back */
		lp->em[i] = NULL;
	}
}

/* A holds x; B, with innodb_lock_wait_timeout = 1, updates x: 1205 after a second.  A lock
 * that cannot be had (MariaDB's NOWAIT is the same error) is a conflict, retryable. */
static void check_lock_wait(lock_pair *lp)
{
	emh_error err;
	diag("a lock wait timeout is EMH_ECONFLICT, retryable");
	int rc = lock_open(lp, 0, &err);
	if (rc == 0)
		rc = lock_open(lp, 1, &err);
	if (rc == 0)
		rc = emh_em_execute(lp->em[1], "SET SESSION innodb_lock_wait_timeout = 1", &err);
	if (rc)
		bail("two forks holding rows x and y in transactions: %s", err.message);
	lp->x_of[0]->n = 100;
	is_int(emh_em_flush(lp->em[0], &err), 0, "fork A updates x inside its transaction");
	lp->x_of[1]->n = 200;
	memset(&err, 0, sizeof err);
	rc = emh_em_flush(lp->em[1], &err);
	is_str(emh_status_name(rc), "EMH_ECONFLICT", "fork B waiting for x past the lock timeout gets EMH_ECONFLICT");
	like_str(err.message, "Lock wait timeout", "saying the lock could not be had (not a duplicate key)");
	ok(err.native == 1205 && err.retryable, "native 1205, retryable (native %d)", err.native);
	diag("%s", err.message);
	/* Put the pooled connection's setting back before it is reused. */
	rc = emh_em_rollback(lp->em[1], &err);
	if (rc == 0)
		rc = emh_em_execute(lp->em[1], "SET SESSION innodb_lock_wait_timeout = DEFAULT", &err);
	if (!ok(rc == 0, "the connection is usable after the lock timeout (rollback, then a statement)"))
		diag("%s", err.message);
	lock_close(lp);
}

static void *lock_thread(void *arg)
{
	lock_pair *lp = arg;
	lp->y_of[0]->n = 3;
	lp->rc_thread = emh_em_flush(lp->em[0], &lp->err_thread);
	return NULL;
}

/* A locks x, B locks y, A wants y (in a thread), B wants x: InnoDB kills one with 1213. */
static void check_deadlock(lock_pair *lp)
{
	emh_error err;
	pthread_t th;
	diag("a deadlock is EMH_ERETRY, retryable");
	int rc = lock_open(lp, 0, &err);
	if (rc == 0)
		rc = lock_open(lp, 1, &err);
	if (rc)
		bail("two forks holding rows x and y in transactions: %s", err.message);
	lp->x_of[0]->n = 1;
	rc = emh_em_flush(lp->em[0], &err);
	lp->y_of[1]->n = 2;
	if (rc == 0)
		rc = emh_em_flush(lp->em[1], &err);
	is_int(rc, 0, "A holds x, B holds y");
	fixture_thread(&th, lock_thread, lp);
	struct timespec ts = {0, 300 * 1000000};
	nanosleep(&ts, NULL);
	lp->x_of[1]->n = 4;
	memset(&err, 0, sizeof err);
	rc = emh_em_flush(lp->em[1], &err);
	pthread_join(th, NULL);
	const emh_error *victim = rc ? &err : &lp->err_thread;
	int vrc = rc ? rc : lp->rc_thread;
	ok((rc == 0) != (lp->rc_thread == 0), "exactly one side of the deadlock fails (A: %s, B: %s)",
	   emh_status_name(lp->rc_thread), emh_status_name(rc));
	ok(vrc == EMH_ERETRY && victim->native == 1213 && victim->retryable,
	   "the victim gets EMH_ERETRY, native 1213, retryable (%s, %d)", emh_status_name(vrc), victim->native);
	diag("%s", victim->message);
	lock_close(lp);
}

/* ---- the subtests, in the order main runs them ---- */

/* Bad password, closed port, unknown database: the right code, the context named, no password. */
static void test_connection_errors(emh_host *h)
{
	emh_error err;

	diag("connection errors: codes, context names, no passwords");
	{
		char badurl[512];
		snprintf(badurl, sizeof badurl, "mysql://%s:wrong-secret-4711@%s:%s/%s", u_user, u_host, u_port, u_db);
		const char *kv[] = {"url", badurl, NULL};
		check_bad_context(h, "badpw", kv, EMH_ECONFIG, "Access denied", "wrong-secret-4711");
	}
	{
		const char *kv[] = {"driver", "mysql", "host", "127.0.0.1", "port", "1", "user", u_user,
				    "password", "closed-port-secret", "database", u_db, "connect_timeout_ms", "2000",
				    NULL};
		check_bad_context(h, "nohost", kv, EMH_EUNAVAILABLE, "127.0.0.1:1", "closed-port-secret");
	}
	{
		const char *kv[] = {"driver", "mysql", "host", u_host, "port", u_port, "user", u_user,
				    "password", u_pw, "database", "emh_no_such_db", NULL};
		check_bad_context(h, "nodb", kv, EMH_ECONFIG, "emh_no_such_db", u_pw);
	}
	emh_context_info *ci;
	size_t n;
	bool found = false, leak = false, down = false;
	if (emh_host_contexts(h, &ci, &n, &err) != 0)
		bail("emh_host_contexts: %s", err.message);
	for (size_t i = 0; i < n; i++) {
		if (strcmp(ci[i].name, "badpw") == 0) {
			found = true;
			down = !ci[i].up;
		}
		if (strstr(ci[i].last_error, "wrong-secret-4711"))
			leak = true;
		for (size_t k = 0; k < ci[i].nsettings; k++)
			if (ci[i].settings[k].value && (strstr(ci[i].settings[k].value, "wrong-secret-4711") ||
							strstr(ci[i].settings[k].value, u_pw)))
				leak = true;
	}
	emh_context_info_free(ci, n);
	ok(found, "emh_host_contexts lists the failing context");
	ok(down, "the failing context is reported down");
	ok(!leak, "no password in context settings or last errors");
}

static void test_schema_sync(emh_host *h)
{
	emh_error err;
	emh_em *em;
	int rc;

	diag("schema: the table created, then left alone");
	em = fixture_fork(h, "my");
	rc = emh_em_execute(em, "DROP TABLE IF EXISTS " TABLE, &err);
	is_int(rc, 0, "drop the test table");
	emh_em_close(em);
	rc = emh_host_register_entity(h, "my", &myt_entity, &err);
	is_int(rc, 0, "register the entity");
	rc = emh_host_sync_schema(h, "my", &err);
	if (!ok(rc == 0, "schema sync creates the table"))
		bail("the other subtests need the table: %s", err.message);
	rc = emh_host_sync_schema(h, "my", &err);
	ok(rc == 0, "schema sync again is a no-op");
}

/* The row every later subtest builds on: 4-byte UTF-8, a 1 MiB blob, JSON. */
static myt_item base_item(const unsigned char *blob, size_t blen)
{
	return (myt_item){.email = "a@x",
			  .note = "\xF0\x9F\x98\x80 grin, \xF0\x9D\x84\x9E clef, \xE2\x82\xAC euro, \xC3\xA9",
			  .at = INT64_C(1700000000123456), .data = {blob, blen}, .flag = true, .n = -5, .score = 2.5,
			  .doc = "{\"k\": [1, 2],  \"s\": \"\xF0\x9F\x98\x80\"}"};
}

/* Text, time, blob, JSON and extreme timestamps written and read back; returns the base row's key. */
static int64_t test_round_trips(emh_host *h, const myt_item *base)
{
	emh_error err;
	int rc;

	diag("round trips: 4-byte UTF-8, microseconds, a 1 MiB blob, JSON verbatim, extreme timestamps");
	int64_t id = insert_item(h, *base, &err, &rc);
	if (!ok(rc == 0 && id > 0, "insert with a 1 MiB blob gets a generated key (%lld)", (long long)id))
		bail("the other subtests need this row: %s", err.message);
	{
		myt_item got;
		char note[512];
		unsigned char *data = NULL;
		rc = load_item(h, id, &got, note, sizeof note, &data);
		is_int(rc, 0, "reload in a new fork");
		is_str(note, base->note, "4-byte UTF-8 text round-trips byte for byte");
		is_int(got.at, base->at, "DATETIME(6) keeps microseconds");
		ok(data && got.data.len == base->data.len && memcmp(data, base->data.data, base->data.len) == 0,
		   "1 MiB blob round-trips");
		ok(got.flag == true && got.n == -5 && got.score == 2.5, "bool, int32, double round-trip");
		free(data);
	}
	{
		emh_em *e2 = fixture_fork(h, "my");
		emh_repo *r = fixture_repo(e2, &myt_entity);
		myt_item *it;
		if (emh_repo_get(r, emh_v_int64(id), (void **)&it, &err) == 0)
			is_str(it->doc, base->doc, "json is stored verbatim (LONGTEXT, not reformatted)");
		else
			ok(0, "json reload: %s", err.message);
		emh_em_close(e2);
	}
	static const int64_t stamps[] = {0, -1, INT64_C(-62135596800000000) /* 0001-01-01 */,
					 INT64_C(253402300799999999) /* 9999-12-31 23:59:59.999999 */,
					 INT64_C(951782400000001) /* 2000-02-29 00:00:00.000001 */,
					 INT64_C(-86400000000) + 1};
	for (size_t i = 0; i < sizeof stamps / sizeof stamps[0]; i++) {
		char email[32], note[64];
		myt_item t = {.email = email, .at = stamps[i], .n = (int32_t)i}, got;
		snprintf(email, sizeof email, "ts%zu@x", i);
		int64_t tid = insert_item(h, t, &err, &rc);
		if (rc == 0)
			rc = load_item(h, tid, &got, note, sizeof note, NULL);
		ok(rc == 0 && got.at == stamps[i], "timestamp %lld us round-trips", (long long)stamps[i]);
		if (rc)
			diag("%s", err.message);
		else if (got.at != stamps[i])
			diag("got %lld", (long long)got.at);
	}
	{
		char email[1024];
		size_t o = 0;
		for (int i = 0; i < 255; i++) {
			memcpy(email + o, "\xF0\x9F\x98\x80", 4);
			o += 4;
		}
		email[o] = '\0';
		myt_item t = {.email = email};
		insert_item(h, t, &err, &rc);
		ok(rc == 0, "a unique text of 255 four-byte characters fits (VARCHAR(255), utf8mb4)");
		if (rc)
			diag("%s", err.message);
		int64_t n = -1;
		rc = count_where_email(h, false, email, &n);
		ok(rc == 0 && n == 1, "and is found by equality");
	}
	return id;
}

/* A duplicate unique value and a too-long text: the code, native error, SQLSTATE, message. */
static void test_statement_errors(emh_host *h, const myt_item *base)
{
	emh_error err;
	int rc;

	diag("statement errors: a duplicate, a value too long");
	{
		myt_item t = *base;
		t.data = (emh_blob){NULL, 0};
		memset(&err, 0, sizeof err);
		insert_item(h, t, &err, &rc);
		is_str(emh_status_name(rc), "EMH_ECONFLICT", "duplicate unique value is EMH_ECONFLICT");
		is_int(err.native, 1062, "native error 1062");
		is_str(err.sqlstate, "23000", "SQLSTATE 23000");
		ok(strcmp(err.context, "my") == 0, "the conflict names the context (%s)", err.context);
		ok(!err.retryable, "a conflict is not retryable");
		ok(strstr(err.message, "a@x") == NULL, "the message does not quote the duplicate value");
		diag("%s", err.message);
	}
	{
		char email[400];
		memset(email, 'x', 300);
		email[300] = '\0';
		myt_item t = {.email = email};
		memset(&err, 0, sizeof err);
		insert_item(h, t, &err, &rc);
		is_str(emh_status_name(rc), "EMH_EINVAL", "a 300-character unique text is refused with EMH_EINVAL");
		like_str(err.message, "email", "the message names the column");
		is_int(err.native, 1406, "native error 1406 (data too long)");
		diag("%s", err.message);
	}
}

/* Unique text, equality and LIKE are exact: case and trailing spaces count. */
static void test_text_comparison(emh_host *h)
{
	emh_error err;
	int rc;

	diag("text comparison: case-sensitive, trailing spaces significant, LIKE escapes");
	myt_item t = {.email = "Case@x"};
	int64_t a = insert_item(h, t, &err, &rc);
	t.email = "case@x";
	int64_t b = insert_item(h, t, &err, &rc);
	ok(a > 0 && b > 0, "unique text is case-sensitive ('Case@x' and 'case@x' both insert)");
	t.email = "case@x ";
	int64_t c = insert_item(h, t, &err, &rc);
	ok(c > 0, "trailing spaces are significant (NO PAD collation)");
	if (c <= 0)
		diag("%s", err.message);
	int64_t n = -1;
	rc = count_where_email(h, false, "case@x", &n);
	ok(rc == 0 && n == 1, "equality is exact (1 row, got %lld)", (long long)n);
	rc = count_where_email(h, true, "C%", &n);
	ok(rc == 0 && n == 1, "LIKE is case-sensitive (1 row, got %lld)", (long long)n);
	rc = count_where_email(h, true, "case@x\\ ", &n);
	ok(rc == 0 && n == 1, "LIKE with a backslash escape (1 row, got %lld)", (long long)n);
}

/*
 * Two forks hold the same row.  B writes n = 7; A then writes n = 7 too:
 * the row matches but does not change, which must count as found
 * (CLIENT_FOUND_ROWS).  Then B deletes it and A's next update matches
 * nothing: EMH_ENOTFOUND.
 */
static void test_found_rows(emh_host *h)
{
	emh_error err;
	emh_em *ea, *eb;
	emh_repo *ra, *rb;
	myt_item *a, *b;
	int rc;

	diag("an update that changes nothing still finds its row (CLIENT_FOUND_ROWS)");
	myt_item t = {.email = "found-rows@x", .n = 1};
	int64_t fid = insert_item(h, t, &err, &rc);
	if (rc)
		bail("insert the row two forks share: %s", err.message);
	ea = fixture_fork(h, "my");
	eb = fixture_fork(h, "my");
	ra = fixture_repo(ea, &myt_entity);
	rb = fixture_repo(eb, &myt_entity);
	if ((rc = emh_repo_get(ra, emh_v_int64(fid), (void **)&a, &err)) != 0 ||
	    (rc = emh_repo_get(rb, emh_v_int64(fid), (void **)&b, &err)) != 0)
		bail("load the row in two forks: %s", err.message);
	b->n = 7;
	is_int(emh_repo_update(rb, b, &err), 0, "fork B updates n");
	a->n = 7;
	rc = emh_repo_update(ra, a, &err);
	is_str(emh_status_name(rc), "EMH_OK", "fork A writing the same value counts the row as found");
	if (rc)
		diag("%s", err.message);
	is_int(emh_repo_remove(rb, b, &err), 0, "fork B deletes the row");
	a->n = 8;
	rc = emh_repo_update(ra, a, &err);
	is_str(emh_status_name(rc), "EMH_ENOTFOUND", "fork A updating the deleted row gets EMH_ENOTFOUND");
	emh_em_close(ea);
	emh_em_close(eb);
}

/* Lock wait timeout (EMH_ECONFLICT) and deadlock (EMH_ERETRY), both retryable. */
static void test_locks(emh_host *h)
{
	emh_error err;
	int rc;
	myt_item t = {.email = "lock-x@x"};
	int64_t xid = insert_item(h, t, &err, &rc);
	if (rc)
		bail("insert row x: %s", err.message);
	t.email = "lock-y@x";
	int64_t yid = insert_item(h, t, &err, &rc);
	if (rc)
		bail("insert row y: %s", err.message);
	lock_pair lp = {.h = h, .x = xid, .y = yid};
	check_lock_wait(&lp);
	check_deadlock(&lp);
}

/* 8 threads x 40 forks on a pool of 3: the pool never exceeds its max. */
static void test_pool_bound(emh_host *h, const char *url, int64_t id)
{
	const char *kv[] = {"url", url, "pool.max", "3", "pool.acquire_timeout_ms", "20000", NULL};
	emh_error err;
	int rc;

	diag("the pool never exceeds its max");
	rc = emh_host_add_context(h, "pooled", kv, &err);
	if (!ok(rc == 0, "add a context with pool.max = 3"))
		bail("%s", err.message);
	rc = emh_host_register_entity(h, "pooled", &myt_entity, &err);
	if (!ok(rc == 0, "register the entity there"))
		bail("%s", err.message);
	pool_run pr = {.h = h, .id = id};
	pthread_mutex_init(&pr.mu, NULL);
	pthread_t th[8], sampler;
	fixture_thread(&sampler, pool_sampler, &pr);
	for (int i = 0; i < 8; i++)
		fixture_thread(&th[i], pool_worker, &pr);
	for (int i = 0; i < 8; i++)
		pthread_join(th[i], NULL);
	pr.stop = 1;
	pthread_join(sampler, NULL);
	is_int(pr.failures, 0, "8 threads x 40 forks on a pool of 3: every load works");
	ok(pr.max_total <= 3, "connections never above pool.max (max seen %u)", pr.max_total);
	ok(pr.max_in_use >= 1, "the sampler saw connections in use (max %u)", pr.max_in_use);
	emh_context_info *ci;
	size_t n;
	bool found = false;
	if (emh_host_contexts(h, &ci, &n, &err) != 0)
		bail("emh_host_contexts: %s", err.message);
	for (size_t i = 0; i < n; i++)
		if (strcmp(ci[i].name, "pooled") == 0) {
			found = true;
			ok(ci[i].opened - ci[i].discarded <= 3, "opened %llu, discarded %llu: at most 3 live",
			   (unsigned long long)ci[i].opened, (unsigned long long)ci[i].discarded);
			ok(ci[i].acquires >= 320, "every fork acquired (%llu)", (unsigned long long)ci[i].acquires);
		}
	emh_context_info_free(ci, n);
	if (!found)
		bail("context 'pooled' is not listed");
	pthread_mutex_destroy(&pr.mu);
}

/* begin, a savepoint rolled back, commit: only the outer insert stays. */
static void test_transactions(emh_host *h)
{
	emh_error err;
	emh_em *e1;
	emh_repo *r;
	myt_item *a, *b;
	int64_t n;
	int rc;

	diag("transactions and savepoints");
	e1 = fixture_fork(h, "my");
	r = fixture_repo(e1, &myt_entity);
	is_int(emh_em_begin(e1, &err), 0, "begin");
	a = fixture_new(r);
	a->email = "tx-outer@x";
	is_int(emh_em_flush(e1, &err), 0, "flush inside the transaction");
	is_int(emh_em_begin(e1, &err), 0, "nested begin (savepoint)");
	b = fixture_new(r);
	b->email = "tx-inner@x";
	is_int(emh_em_flush(e1, &err), 0, "flush inside the savepoint");
	is_int(emh_em_rollback(e1, &err), 0, "roll back to the savepoint");
	is_int(emh_em_commit(e1, &err), 0, "commit the outer level");
	emh_em_close(e1);
	n = -1;
	rc = count_where_email(h, false, "tx-outer@x", &n);
	ok(rc == 0 && n == 1, "the outer insert is committed (%lld)", (long long)n);
	n = -1;
	rc = count_where_email(h, false, "tx-inner@x", &n);
	ok(rc == 0 && n == 0, "the inner insert was rolled back (%lld)", (long long)n);
}

/*
 * A statement's result stays bound across calls (my_prep.bound_gen) to the
 * connection's column storage, which other statements grow and move: a
 * wider result reallocates it, a longer text grows a column's buffer, and a
 * truncated fetch must lay the bindings out for its own statement, not for
 * the one bound last.  One transaction keeps every get on one connection of
 * a fresh host, so the storage starts empty.
 */
static void test_bound_results(const char *url)
{
	emh_host *h = host_open(url);
	emh_error err;
	emh_em *em;
	emh_repo *ri, *rp;
	myt_item *it;
	myt_pair *pr;
	char wide[512];
	int rc;

	diag("result bindings kept per statement survive other statements moving the column storage");
	size_t o = 0;
	for (int i = 0; i < 200; i++) { /* 200 characters, 400 bytes: longer than a first text buffer */
		memcpy(wide + o, "\xC3\xA9", 2);
		o += 2;
	}
	wide[o] = '\0';
	if (emh_host_register_entity(h, "my", &myt_entity, &err) ||
	    emh_host_register_entity(h, "my", &myt_pair_entity, &err) || emh_host_sync_schema(h, "my", &err))
		bail("bound results setup: %s", err.message);
	em = fixture_fork(h, "my");
	ri = fixture_repo(em, &myt_entity);
	rp = fixture_repo(em, &myt_pair_entity);
	myt_pair *p = fixture_new(rp);
	p->k = 41;
	p->label = "first pair";
	myt_item *a = fixture_new(ri);
	a->email = "bind-short@x";
	a->n = 3;
	myt_item *b = fixture_new(ri);
	b->email = wide;
	b->n = 4;
	if (emh_em_flush(em, &err))
		bail("bound results rows: %s", err.message);
	int64_t pid = p->id, aid = a->id, bid = b->id;
	emh_em_close(em);

	em = fixture_fork(h, "my");
	ri = fixture_repo(em, &myt_entity);
	rp = fixture_repo(em, &myt_pair_entity);
	is_int(emh_em_begin(em, &err), 0, "begin (one connection for every get)");
	rc = emh_repo_get(rp, emh_v_int64(pid), (void **)&pr, &err);
	ok(rc == 0 && pr->k == 41 && strcmp(pr->label, "first pair") == 0, "three columns bound and read");
	emh_em_clear(em);
	rc = emh_repo_get(ri, emh_v_int64(aid), (void **)&it, &err);
	ok(rc == 0 && strcmp(it->email, "bind-short@x") == 0 && it->n == 3,
	   "nine columns: the storage grows and moves");
	emh_em_clear(em);
	rc = emh_repo_get(rp, emh_v_int64(pid), (void **)&pr, &err);
	ok(rc == 0 && pr->k == 41 && strcmp(pr->label, "first pair") == 0,
	   "the three-column statement is bound again to the moved storage");
	emh_em_clear(em);
	rc = emh_repo_get(ri, emh_v_int64(bid), (void **)&it, &err);
	ok(rc == 0 && strcmp(it->email, wide) == 0 && it->n == 4,
	   "a text longer than its buffer, bound earlier, read whole after another statement's binding");
	if (rc)
		diag("%s", err.message);
	emh_em_clear(em);
	rc = emh_repo_get(rp, emh_v_int64(pid), (void **)&pr, &err);
	ok(rc == 0 && pr->k == 41 && strcmp(pr->label, "first pair") == 0,
	   "the grown buffer rebinds the other statement");
	emh_em_clear(em);
	rc = emh_repo_get(ri, emh_v_int64(aid), (void **)&it, &err);
	ok(rc == 0 && strcmp(it->email, "bind-short@x") == 0 && it->n == 3, "and the grown one reads a short row");
	emh_em_clear(em);
	rc = emh_repo_get(ri, emh_v_int64(bid), (void **)&it, &err);
	ok(rc == 0 && strcmp(it->email, wide) == 0, "and the long row, now without truncation");
	{
		/* a parameter kept bound: the same text buffer, new contents */
		char key[32];
		int64_t n1 = -1, n2 = -1;
		emh_query *q;
		snprintf(key, sizeof key, "%s", "bind-short@x");
		if ((rc = emh_repo_query(ri, &q, &err)) == 0) {
			emh_q_where(q, emh_q_eq(q, "email", emh_v_text(key)));
			rc = emh_repo_count(ri, q, &n1, &err);
		}
		ok(rc == 0 && n1 == 1, "count by a text parameter (1 row, got %lld)", (long long)n1);
		snprintf(key, sizeof key, "%s", "bind-shorT@x");
		if (rc == 0 && (rc = emh_repo_query(ri, &q, &err)) == 0) {
			emh_q_where(q, emh_q_eq(q, "email", emh_v_text(key)));
			rc = emh_repo_count(ri, q, &n2, &err);
		}
		ok(rc == 0 && n2 == 0, "the same buffer with other contents counts what it holds now (0, got %lld)",
		   (long long)n2);
	}
	is_int(emh_em_commit(em, &err), 0, "commit");
	rc = emh_em_execute(em, "DROP TABLE emh_mytest_pairs", &err);
	is_int(rc, 0, "drop the pairs table");
	emh_em_close(em);
	em = fixture_fork(h, "my");
	ri = fixture_repo(em, &myt_entity);
	rc = emh_repo_get(ri, emh_v_int64(aid), (void **)&it, &err);
	ok(rc == 0 && strcmp(it->email, "bind-short@x") == 0, "a later fork reads the row");
	if (rc == 0 && (rc = emh_repo_remove(ri, it, &err)) == 0)
		rc = emh_repo_get(ri, emh_v_int64(bid), (void **)&it, &err);
	if (rc == 0 && (rc = emh_repo_remove(ri, it, &err)) == 0)
		rc = emh_em_flush(em, &err);
	is_int(rc, 0, "remove the two rows");
	emh_em_close(em);
	emh_host_free(h);
}

/* One aggregate without groups: its single column into *out (rc 0), or the error. */
static int agg_one(emh_repo *r, emh_agg_fn fn, const char *field, emh_value *out, emh_error *err)
{
	emh_agg *a;
	emh_rows *rows;
	int rc = emh_repo_agg(r, &a, err);
	if (rc)
		return rc;
	emh_agg_add(a, fn, field, "x");
	if ((rc = emh_repo_aggregate(r, NULL, a, &rows, err)))
		return rc;
	if (emh_rows_count(rows) != 1)
		return emh_error_set(err, EMH_EDRIVER, "%zu rows, expected 1", emh_rows_count(rows));
	*out = *emh_rows_value(rows, 0, 0);
	return 0;
}

/*
 * A column's truncation flag lives in the connection's column storage,
 * shared by every statement, and the client library never writes it for a
 * double read into a double: a read that did not fit (a sum beyond int64)
 * must not make the next double read at that column index fail.  One
 * connection (pool.max = 1), so every statement shares its storage.
 */
static void test_truncation_flag(emh_host *h, const char *url)
{
	emh_error err;
	emh_em *em;
	emh_repo *r;
	emh_value v;
	int rc;

	diag("a value that did not fit leaves no stale truncation flag for the next statement");
	if (emh_host_add_context(h, "my1", (const char *const[]){"url", url, "pool.max", "1", NULL}, &err) ||
	    emh_host_register_entity(h, "my1", &myt_num_entity, &err) ||
	    fixture_exec(h, "my1", "DROP TABLE IF EXISTS emh_mytest_nums", &err) ||
	    emh_host_sync_schema(h, "my1", &err))
		bail("truncation flag setup: %s", err.message);
	em = fixture_fork(h, "my1");
	r = fixture_repo(em, &myt_num_entity);
	for (int i = 1; i <= 2; i++) {
		myt_num *x = fixture_new(r);
		x->id = i;
		x->n = INT64_MAX;
		x->d = i + 0.5;
	}
	is_int(emh_em_flush(em, &err), 0, "two rows whose n sum beyond int64");
	rc = agg_one(r, EMH_AGG_AVG, "d", &v, &err);
	ok(rc == 0 && !v.is_null && v.u.d == 2.0, "avg(d) before: 2.0 (%s)", rc ? err.message : "ok");
	rc = agg_one(r, EMH_AGG_SUM, "n", &v, &err);
	ok(rc != 0, "sum(n) beyond int64 fails (%s: %s)", emh_status_name(rc), rc ? err.message : "");
	rc = agg_one(r, EMH_AGG_AVG, "d", &v, &err);
	ok(rc == 0 && !v.is_null && v.u.d == 2.0, "avg(d) after the failed sum still works (%s)",
	   rc ? err.message : "ok");
	rc = agg_one(r, EMH_AGG_MAX, "d", &v, &err);
	ok(rc == 0 && !v.is_null && v.u.d == 2.5, "max(d) too (%s)", rc ? err.message : "ok");
	emh_em_close(em);
	em = fixture_fork(h, "my1");
	is_int(emh_em_execute(em, "DROP TABLE emh_mytest_nums", &err), 0, "drop the numbers table");
	emh_em_close(em);
	emh_context_info ci = fixture_context_info(h, "my1");
	ok(ci.opened == 1, "every statement ran on one connection (opened %llu)", (unsigned long long)ci.opened);
}

/*
 * Existing columns that would round a double (decimal, numeric, float) are
 * refused by sync, naming the column and its type; double and real (a
 * DOUBLE unless sql_mode has REAL_AS_FLOAT) are accepted.
 */
static void test_double_columns(emh_host *h)
{
	static const struct {
		const char *type;
		const char *shown; /* as the server reports it; NULL: accepted */
	} cols[] = {
		{"DECIMAL(10,2)", "decimal"}, {"NUMERIC(20,6)", "decimal"}, {"FLOAT", "float"},
		{"DOUBLE", NULL},             {"REAL", NULL},
	};
	emh_error err;
	int rc;

	diag("a column that would round a double is refused for a double field");
	if (emh_host_add_context(h, "mydbl", (const char *const[]){"url", getenv("EMH_TEST_MYSQL_URL"), NULL}, &err) ||
	    emh_host_register_entity(h, "mydbl", &myt_dbl_entity, &err))
		bail("double columns setup: %s", err.message);
	for (size_t i = 0; i < sizeof cols / sizeof cols[0]; i++) {
		char sql[200];
		snprintf(sql, sizeof sql, "DROP TABLE IF EXISTS emh_mytest_dbl; CREATE TABLE emh_mytest_dbl "
					  "(id BIGINT PRIMARY KEY, d %s NOT NULL)", cols[i].type);
		if (fixture_exec(h, "mydbl", sql, &err))
			bail("create emh_mytest_dbl: %s", err.message);
		rc = emh_host_sync_schema(h, "mydbl", &err);
		diag("%s: %s", cols[i].type, rc ? err.message : "accepted");
		if (!cols[i].shown)
			is_int(rc, 0, "a %s column is accepted for a double field", cols[i].type);
		else
			ok(rc == EMH_ESCHEMA && strstr(err.message, "column 'd'") && strstr(err.message, cols[i].shown),
			   "a %s column is refused for a double field: EMH_ESCHEMA naming the column and its type",
			   cols[i].type);
	}
	is_int(fixture_exec(h, "mydbl", "DROP TABLE emh_mytest_dbl", &err), 0, "drop the doubles table");
}

/* Raw execute: several statements, results drained, errors mapped. */
static void test_raw_execute(emh_host *h)
{
	emh_error err;
	emh_em *em = fixture_fork(h, "my");
	int rc;

	diag("raw statements");
	rc = emh_em_execute(em, "CREATE TABLE IF NOT EXISTS emh_mytest_raw (a INT); "
				"INSERT INTO emh_mytest_raw VALUES (1); SELECT * FROM emh_mytest_raw; "
				"DROP TABLE emh_mytest_raw;",
			    &err);
	is_int(rc, 0, "raw execute runs several statements and drains their results");
	if (rc)
		diag("%s", err.message);
	rc = emh_em_execute(em, "SELECT 1", &err);
	is_int(rc, 0, "the connection is usable afterwards");
	rc = emh_em_execute(em, "SELEKT nonsense", &err);
	ok(rc == EMH_EDRIVER && err.native == 1064, "a syntax error is EMH_EDRIVER with native 1064 (%s)",
	   emh_status_name(rc));
	emh_em_close(em);
}

int main(void)
{
	const char *url = getenv("EMH_TEST_MYSQL_URL");
	const char *state = getenv("EMH_TEST_STATE_DIR");
	int lockfd = -1;

	plan(NTESTS);
	if (!url || !*url) {
		need_server(NTESTS, "mysql: EMH_TEST_MYSQL_URL not set (scripts/servers/mariadb.sh start DIR)");
		return done_testing();
	}
	if (parse_url(url) != 0)
		bail("cannot parse EMH_TEST_MYSQL_URL (want mysql://user:password@host:port/database)");
	/* The fault test stops the server: hold a shared lock so it waits for us. */
	if (state) {
		char lp[1024];
		snprintf(lp, sizeof lp, "%s/mariadb.lock", state);
		if ((lockfd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) < 0 || flock(lockfd, LOCK_SH) != 0)
			bail("lock %s (the fault test waits on it): %s", lp, strerror(errno));
	}
	emh_host *h = host_open(url);

	size_t blen = 1024 * 1024;
	unsigned char *blob = malloc(blen);
	if (!blob)
		bail("out of memory");
	for (size_t i = 0; i < blen; i++)
		blob[i] = (unsigned char)((i * 131 + 7) ^ (i >> 9));
	blob[0] = 0;
	blob[blen - 1] = 0xFF;
	const myt_item base = base_item(blob, blen);

	test_connection_errors(h);
	test_schema_sync(h);
	int64_t id = test_round_trips(h, &base);
	test_statement_errors(h, &base);
	test_text_comparison(h);
	test_found_rows(h);
	test_locks(h);
	test_pool_bound(h, url, id);
	test_transactions(h);
	test_raw_execute(h);
	test_bound_results(url);
	test_truncation_flag(h, url);
	test_double_columns(h);

	free(blob);
	emh_host_free(h);
	if (lockfd >= 0)
		close(lockfd);
	return done_testing();
}
