/* SPDX-License-Identifier: MIT */
/*
 * tests/postgres/test_pg_errors.c: the postgres driver against a real
 * server: connection errors, error mapping, round trips, statement cache,
 * pool bound.  Each subtest is a static function announced by a TAP
 * comment; setup that fails bails out.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <emhost/emhost.h>

#include "../fixture.h"
#include "../tap.h"

typedef struct pgt_item {
	int64_t id;
	const char *email;
	int32_t n;
	bool flag;
	double score;
	emh_blob data;
	emh_time at;
	const char *doc;
	const char *note;
} pgt_item;

static const emh_field pgt_item_fields[] = {
	EMH_FIELD(pgt_item, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(pgt_item, email, EMH_T_TEXT, EMH_F_UNIQUE),
	EMH_FIELD(pgt_item, n, EMH_T_INT32, EMH_F_INDEXED),
	EMH_FIELD(pgt_item, flag, EMH_T_BOOL, 0),
	EMH_FIELD(pgt_item, score, EMH_T_DOUBLE, 0),
	EMH_FIELD(pgt_item, data, EMH_T_BLOB, EMH_F_NULLABLE),
	EMH_FIELD(pgt_item, at, EMH_T_TIMESTAMP, EMH_F_NULLABLE),
	EMH_FIELD(pgt_item, doc, EMH_T_JSON, EMH_F_NULLABLE),
	EMH_FIELD(pgt_item, note, EMH_T_TEXT, EMH_F_NULLABLE),
};
/* Tables are named per process (pgt_items_<pid>) so that runs can share a server. */
static char g_items[64], g_bad[64];
static emh_entity pgt_item_entity = EMH_ENTITY(pgt_item, g_items, pgt_item_fields);

/* The server's view of this connection's prepared statements. */
typedef struct pg_prep {
	const char *name;
	const char *statement;
} pg_prep;
static const emh_field pg_prep_fields[] = {
	EMH_FIELD(pg_prep, name, EMH_T_TEXT, EMH_F_PK),
	EMH_FIELD(pg_prep, statement, EMH_T_TEXT, 0),
};
static const emh_entity pg_prep_entity = EMH_ENTITY(pg_prep, "pg_prepared_statements", pg_prep_fields);

/* A table whose existing column type does not fit the entity. */
typedef struct pgt_bad {
	int64_t id;
	const char *email;
} pgt_bad;
static const emh_field pgt_bad_fields[] = {
	EMH_FIELD(pgt_bad, id, EMH_T_INT64, EMH_F_PK),
	EMH_FIELD(pgt_bad, email, EMH_T_TEXT, 0),
};
static emh_entity pgt_bad_entity = EMH_ENTITY(pgt_bad, g_bad, pgt_bad_fields);

/* A double field, for a table whose column is real (float4). */
typedef struct pgt_f4 {
	int64_t id;
	double f;
} pgt_f4;
static const emh_field pgt_f4_fields[] = {
	EMH_FIELD(pgt_f4, id, EMH_T_INT64, EMH_F_PK),
	EMH_FIELD(pgt_f4, f, EMH_T_DOUBLE, 0),
};
static char g_f4[64];
static emh_entity pgt_f4_entity = EMH_ENTITY(pgt_f4, g_f4, pgt_f4_fields);

static char g_user[128], g_pw[128], g_host[128], g_port[16], g_db[128];
static char g_url[512];
static int64_t g_k1, g_k2; /* two existing rows */

static int parse_url(const char *url)
{
	/* postgres://user:pw@host:port/db as written by scripts/servers/pg.sh */
	const char *p = strstr(url, "://");
	if (!p)
		return -1;
	p += 3;
	if (sscanf(p, "%127[^:]:%127[^@]@%127[^:]:%15[^/]/%127[^?]", g_user, g_pw, g_host, g_port, g_db) != 5)
		return -1;
	snprintf(g_url, sizeof g_url, "%s", url);
	return 0;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int add_ctx(emh_host *h, const char *name, const char *const *kv, emh_error *err)
{
	int rc = emh_host_add_context(h, name, kv, err);
	if (rc)
		diag("add context '%s': %s", name, err->message);
	return rc;
}

/* Checks shared by every connection failure. */
static void check_conn_error(int rc, const emh_error *err, const char *ctx, const char *sqlstate, const char *what)
{
	/* refused credentials and an unknown database are configuration errors; the rest outages */
	int want = sqlstate && (strncmp(sqlstate, "28", 2) == 0 || strcmp(sqlstate, "3D000") == 0) ? EMH_ECONFIG
												   : EMH_EUNAVAILABLE;
	is_int(rc, want, "%s: %s", what, emh_status_name(want));
	diag("%s: [%s] %s (sqlstate %s, native %d)", what, err->context, err->message, err->sqlstate, err->native);
	ok(strcmp(err->context, ctx) == 0 || strstr(err->message, ctx) != NULL, "%s: error names context '%s'", what,
	   ctx);
	ok(strstr(err->message, ctx) != NULL, "%s: message names context '%s'", what, ctx);
	ok(!strstr(err->message, g_pw), "%s: message holds no password", what);
	ok(!strstr(err->message, "WrongPassw0rd"), "%s: message holds no wrong password", what);
	if (sqlstate)
		is_str(err->sqlstate, sqlstate, "%s: sqlstate %s", what, sqlstate);
}

/*
 * A loopback TCP socket on a port the kernel picked, its number into port.
 * listening: it accepts connections and never answers (the caller closes
 * the returned descriptor); otherwise it is closed at once and nothing
 * listens there.
 */
static int loopback_port(bool listening, char *port, size_t cap)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof a;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) != 0 || (listening && listen(fd, 16) != 0))
		bail("a loopback socket for a test port: %s", strerror(errno));
	snprintf(port, cap, "%u", ntohs(a.sin_port));
	if (listening)
		return fd;
	close(fd);
	return -1;
}

static void test_connect_errors(emh_host *h)
{
	emh_error err;
	char url[600], port[16];
	int rc;
	double t0;

	diag("connection errors: wrong password, unreachable, missing database, silent server, bad settings");
	/* wrong password, through the URL */
	snprintf(url, sizeof url, "postgres://%s:WrongPassw0rd@%s:%s/%s", g_user, g_host, g_port, g_db);
	if (add_ctx(h, "badpw", (const char *const[]){"url", url, NULL}, &err) == 0) {
		rc = emh_host_ping(h, "badpw", &err);
		check_conn_error(rc, &err, "badpw", "28P01", "wrong password (url)");
		like_str(err.message, "password authentication failed", "wrong password: says so");
	} else {
		ok(0, "wrong password context added");
	}

	/* wrong password, through keys */
	if (add_ctx(h, "badpw2",
		    (const char *const[]){"driver", "postgres", "host", g_host, "port", g_port, "database", g_db,
					  "user", g_user, "password", "WrongPassw0rd", NULL},
		    &err) == 0) {
		rc = emh_host_ping(h, "badpw2", &err);
		check_conn_error(rc, &err, "badpw2", "28P01", "wrong password (keys)");
	} else {
		ok(0, "wrong password (keys) context added");
	}

	/* the right password through password_env */
	if (add_ctx(h, "envpw",
		    (const char *const[]){"driver", "postgres", "host", g_host, "port", g_port, "database", g_db,
					  "user", g_user, "password_env", "EMH_TEST_PGPW_GOOD", NULL},
		    &err) == 0) {
		rc = emh_host_ping(h, "envpw", &err);
		is_int(rc, 0, "password_env: ping works");
		if (rc)
			diag("%s", err.message);
	} else {
		ok(0, "password_env context added");
	}

	/* unreachable: a port nothing listens on */
	loopback_port(false, port, sizeof port);
	snprintf(url, sizeof url, "postgres://%s:%s@127.0.0.1:%s/%s", g_user, g_pw, port, g_db);
	if (add_ctx(h, "down", (const char *const[]){"url", url, NULL}, &err) == 0) {
		t0 = now_s();
		rc = emh_host_ping(h, "down", &err);
		check_conn_error(rc, &err, "down", "08001", "unreachable host");
		ok(now_s() - t0 < 5.0, "unreachable host: fails at once (%.3f s)", now_s() - t0);
	} else {
		ok(0, "unreachable context added");
	}

	/* missing database */
	snprintf(url, sizeof url, "postgres://%s:%s@%s:%s/emh_no_such_db", g_user, g_pw, g_host, g_port);
	if (add_ctx(h, "nodb", (const char *const[]){"url", url, NULL}, &err) == 0) {
		rc = emh_host_ping(h, "nodb", &err);
		check_conn_error(rc, &err, "nodb", "3D000", "missing database");
		like_str(err.message, "emh_no_such_db", "missing database: names it");
	} else {
		ok(0, "missing database context added");
	}

	/* a server that accepts TCP but never answers: connect_timeout_ms holds, EMH_ETIMEOUT */
	{
		int fd = loopback_port(true, port, sizeof port);
		snprintf(url, sizeof url, "postgres://%s:%s@127.0.0.1:%s/%s?sslmode=disable", g_user, g_pw, port, g_db);
		if (add_ctx(h, "mute", (const char *const[]){"url", url, "connect_timeout_ms", "300", NULL}, &err) == 0) {
			t0 = now_s();
			rc = emh_host_ping(h, "mute", &err);
			double dt = now_s() - t0;
			is_int(rc, EMH_ETIMEOUT, "silent server: EMH_ETIMEOUT");
			ok(err.retryable, "silent server: retryable");
			like_str(err.message, "context 'mute'", "silent server: names the context");
			like_str(err.message, "connect_timeout_ms", "silent server: says it timed out");
			ok(dt >= 0.25 && dt < 3.0, "silent server: gave up after the 300 ms deadline (%.3f s)", dt);
		} else {
			ok(0, "silent server context added");
		}
		close(fd);
	}

	/* An unescaped '@' in a URL's password: libpq ends the userinfo at the
	 * first '@', so the rest would become the host name its errors quote.
	 * Refused, and no piece of the password is shown anywhere. */
	snprintf(url, sizeof url, "postgres://%s:Secr3t@Tail9876@%s:%s/%s", g_user, g_host, g_port, g_db);
	rc = emh_host_add_context(h, "atpw", (const char *const[]){"url", url, NULL}, &err);
	if (rc == 0)
		rc = emh_host_ping(h, "atpw", &err);
	diag("'@' in the url password: %s", err.message);
	is_int(rc, EMH_ECONFIG, "'@' in the url password: EMH_ECONFIG");
	like_str(err.message, "%40", "'@' in the url password: says to write it %%40");
	ok(!strstr(err.message, "Secr3t") && !strstr(err.message, "Tail9876"),
	   "'@' in the url password: the message holds no piece of it");
	{
		emh_context_info *infos;
		size_t n;
		emh_error e2;
		bool leak = false;
		if (emh_host_contexts(h, &infos, &n, &e2) == 0) {
			for (size_t i = 0; i < n; i++)
				leak = leak || strstr(infos[i].last_error, "Secr3t") || strstr(infos[i].last_error, "Tail9876");
			emh_context_info_free(infos, n);
		}
		ok(!leak, "'@' in the url password: no last error holds a piece of it");
	}

	/* A password that a connection error quotes (as the user name here) is
	 * masked when it came from the URL too. */
	snprintf(url, sizeof url, "postgres://Pw7quoted:Pw7quoted@%s:%s/%s", g_host, g_port, g_db);
	if (add_ctx(h, "urlpw", (const char *const[]){"url", url, NULL}, &err) == 0) {
		rc = emh_host_ping(h, "urlpw", &err);
		diag("quoted url password: %s", err.message);
		is_int(rc, EMH_ECONFIG, "quoted url password: EMH_ECONFIG");
		ok(!strstr(err.message, "Pw7quoted"), "quoted url password: masked in the message");
		like_str(err.message, "********", "quoted url password: in its place, ********");
	} else {
		ok(0, "quoted url password context added");
	}

	/* bad settings are configuration errors */
	snprintf(url, sizeof url, "postgres://%s:%s@%s:%s/%s?sslmode=sometimes", g_user, g_pw, g_host, g_port, g_db);
	if (add_ctx(h, "badssl", (const char *const[]){"url", url, NULL}, &err) == 0) {
		rc = emh_host_ping(h, "badssl", &err);
		is_int(rc, EMH_ECONFIG, "sslmode=sometimes: EMH_ECONFIG (%s)", err.message);
	} else {
		ok(err.code == EMH_ECONFIG, "sslmode=sometimes refused when added: %s", err.message);
	}
}

static int fork_repo(emh_host *h, const char *ctx, const emh_entity *e, emh_em **em, emh_repo **r, emh_error *err)
{
	int rc = emh_host_fork(h, ctx, em, err);
	if (rc)
		return rc;
	rc = emh_em_repo(*em, e, r, err);
	if (rc) {
		emh_em_close(*em);
		*em = NULL;
	}
	return rc;
}

static void test_conflict_and_invalid(emh_host *h)
{
	emh_em *em;
	emh_repo *r;
	emh_error err;
	pgt_item *a, *b;
	int rc;

	diag("a unique violation and invalid JSON: codes, SQLSTATEs, messages");
	em = fixture_fork(h, "pg");
	r = fixture_repo(em, &pgt_item_entity);
	a = fixture_new(r);
	a->email = "dup@example.com";
	a->score = 1;
	rc = emh_repo_insert(r, a, &err);
	is_int(rc, 0, "first insert of an email");
	b = fixture_new(r);
	b->email = "dup@example.com";
	rc = emh_repo_insert(r, b, &err);
	is_int(rc, EMH_ECONFLICT, "second insert of the same email: EMH_ECONFLICT");
	is_str(err.sqlstate, "23505", "conflict: sqlstate 23505");
	diag("conflict: %s (native %d)", err.message, err.native);
	ok(err.native != 0, "conflict: native code set");
	ok(!strstr(err.message, "dup@example.com"), "conflict: message holds no bound value");
	ok(strcmp(err.context, "pg") == 0 || strstr(err.message, "pg"), "conflict: names the context");
	emh_em_close(em);

	em = fixture_fork(h, "pg");
	r = fixture_repo(em, &pgt_item_entity);
	a = fixture_new(r);
	a->email = "badjson@example.com";
	a->doc = "{not json";
	rc = emh_repo_insert(r, a, &err);
	is_int(rc, EMH_EINVAL, "invalid JSON: EMH_EINVAL");
	is_str(err.sqlstate, "22P02", "invalid JSON: sqlstate 22P02");
	diag("invalid json: %s", err.message);
	emh_em_close(em);
}

/* A syntax error quotes the statement's text where it failed, which can be a password. */
static void test_syntax_error_quote(emh_host *h)
{
	static const char *const stmts[] = {
		"CREATE ROLE rv_tmp LOGIN PASSWORD Hunter2Secret",
		"CREATE ROLE rv_tmp LOGIN PASSWORD \"Hunter2Secret\"",
		"ALTER ROLE rv_tmp PASSWORD 'Hunter2Secret",
	};
	emh_error err;
	emh_em *em = fixture_fork(h, "pg");

	diag("a syntax error does not quote the statement's text");
	for (size_t i = 0; i < sizeof stmts / sizeof stmts[0]; i++) {
		int rc = emh_em_execute(em, stmts[i], &err);
		diag("%s", err.message);
		is_int(rc, EMH_EDRIVER, "syntax error %zu: EMH_EDRIVER", i + 1);
		is_str(err.sqlstate, "42601", "syntax error %zu: sqlstate 42601", i + 1);
		ok(!strstr(err.message, "Hunter2Secret"), "syntax error %zu: the message does not quote the token", i + 1);
		like_str(err.message, "at or near", "syntax error %zu: still says where", i + 1);
	}
	is_int(emh_em_execute(em, "SELECT 1", &err), 0, "the connection is usable afterwards");
	emh_em_close(em);
}

static const emh_time ts_values[] = {
	0,
	-1,
	1,
	INT64_C(946684800000000),   /* 2000-01-01, PostgreSQL's epoch */
	INT64_C(946684799999999),
	INT64_C(1700000000123456),
	INT64_C(-62135596800000000), /* 0001-01-01 */
	INT64_C(253402300799999999), /* 9999-12-31 23:59:59.999999 */
	INT64_C(-2208988800000001),  /* 1899-12-31 23:59:59.999999 */
};
#define NTS (sizeof ts_values / sizeof ts_values[0])

static void test_roundtrip(emh_host *h)
{
	static const double doubles[] = {1.0 / 3.0, -0.0, 1e308, 5e-324, -2.5e-17};
	static const int32_t ints[] = {INT32_MIN, INT32_MAX, 0, -1, 7};
	const char *json = "{\"b\": 1,  \"a\": [1, 2], \"a\": \"dup\"}";
	const char *utf8 = "h\xc3\xa9llo \xe2\x9c\x93 \xe6\x97\xa5\xe6\x9c\xac 'quote' \"dq\" \\ back";
	unsigned char bytes[256];
	int64_t ids[NTS] = {0}, id_empty = 0, id_null = 0;
	emh_em *em;
	emh_repo *r;
	emh_error err;
	int rc;

	diag("round trips: timestamps, bytea, doubles, JSON, UTF-8, empty and NULL, infinity, LIKE");
	for (int i = 0; i < 256; i++)
		bytes[i] = (unsigned char)i;
	em = fixture_fork(h, "pg");
	r = fixture_repo(em, &pgt_item_entity);
	for (size_t i = 0; i < NTS; i++) {
		pgt_item *it = fixture_new(r);
		char email[64];
		snprintf(email, sizeof email, "rt%zu@example.com", i);
		it->email = emh_em_strdup(em, email);
		it->n = ints[i % 5];
		it->flag = i % 2;
		it->score = doubles[i % 5];
		it->data = (emh_blob){bytes, sizeof bytes};
		it->at = ts_values[i];
		it->doc = json;
		it->note = utf8;
	}
	{
		pgt_item *e1 = fixture_new(r), *e2 = fixture_new(r);
		e1->email = "empty@example.com";
		e1->data = (emh_blob){"", 0};
		e1->note = "";
		e2->email = "null@example.com";
		if (emh_em_set_null(em, e2, "at", true, &err))
			bail("set_null: %s", err.message);
		rc = emh_em_flush(em, &err);
		is_int(rc, 0, "round trip: flush of %zu rows", NTS + 2);
		if (rc)
			diag("%s", err.message);
		id_empty = e1->id;
		id_null = e2->id;
	}
	{
		emh_query *q = fixture_query(r);
		emh_list l = {0};
		emh_q_where(q, emh_q_like(q, "email", "rt%"));
		emh_q_order_by(q, "id", false);
		rc = emh_repo_find(r, q, &l, &err);
		is_int(rc, 0, "round trip: find rt%%");
		is_int(l.count, NTS, "round trip: %zu rows", NTS);
		for (size_t i = 0; i < l.count && i < NTS; i++)
			ids[i] = ((pgt_item *)l.items[i])->id;
	}
	emh_em_close(em);

	em = fixture_fork(h, "pg");
	r = fixture_repo(em, &pgt_item_entity);
	int bad_ts = 0, bad_blob = 0, bad_other = 0;
	for (size_t i = 0; i < NTS; i++) {
		pgt_item *it;
		rc = emh_repo_get(r, emh_v_int64(ids[i]), (void **)&it, &err);
		if (rc) {
			ok(0, "get row %zu: %s", i, err.message);
			continue;
		}
		if (it->at != ts_values[i]) {
			bad_ts++;
			diag("timestamp %zu: got %lld want %lld", i, (long long)it->at, (long long)ts_values[i]);
		}
		if (it->data.len != sizeof bytes || !it->data.data || memcmp(it->data.data, bytes, sizeof bytes))
			bad_blob++;
		double want = doubles[i % 5];
		if (memcmp(&it->score, &want, sizeof want) != 0 || it->n != ints[i % 5] || it->flag != (bool)(i % 2) ||
		    !it->doc || strcmp(it->doc, json) != 0 || !it->note || strcmp(it->note, utf8) != 0) {
			bad_other++;
			diag("row %zu: score %.17g n %d flag %d doc '%s' note '%s'", i, it->score, it->n, it->flag,
			     it->doc ? it->doc : "(null)", it->note ? it->note : "(null)");
		}
	}
	is_int(bad_ts, 0, "timestamps round-trip to the microsecond (before 1970, 2000, far future)");
	is_int(bad_blob, 0, "bytea with every byte value round-trips");
	is_int(bad_other, 0, "int32 extremes, bool, doubles bit-exact, JSON verbatim, UTF-8 text round-trip");
	{
		pgt_item *e1 = NULL, *e2 = NULL;
		if (emh_repo_get(r, emh_v_int64(id_empty), (void **)&e1, &err))
			diag("get the empty row: %s", err.message);
		if (emh_repo_get(r, emh_v_int64(id_null), (void **)&e2, &err))
			diag("get the NULL row: %s", err.message);
		ok(e1 && e1->data.data != NULL && e1->data.len == 0, "empty bytea stays empty, not NULL");
		ok(e1 && e1->note && e1->note[0] == '\0', "empty text stays empty, not NULL");
		ok(e2 && e2->data.data == NULL && e2->doc == NULL && e2->note == NULL, "NULL blob/json/text stay NULL");
		ok(e2 && emh_em_is_null(em, e2, "at"), "NULL timestamp stays NULL");
	}
	{
		/* 'infinity' written by another tool reads as INT64_MAX */
		emh_em *em2;
		emh_repo *r2;
		pgt_item *e3 = NULL;
		char sql[200];
		snprintf(sql, sizeof sql, "UPDATE %s SET at = 'infinity' WHERE email = 'null@example.com'", g_items);
		rc = emh_em_execute(em, sql, &err);
		is_int(rc, 0, "raw update to infinity");
		em2 = fixture_fork(h, "pg");
		r2 = fixture_repo(em2, &pgt_item_entity);
		rc = emh_repo_get(r2, emh_v_int64(id_null), (void **)&e3, &err);
		ok(rc == 0 && e3 && e3->at == INT64_MAX, "timestamp 'infinity' reads as INT64_MAX");
		emh_em_close(em2);
	}
	{
		/* LIKE is case-sensitive; backslash escapes */
		emh_query *q;
		int64_t n = -1;
		q = fixture_query(r);
		emh_q_where(q, emh_q_like(q, "email", "RT%"));
		rc = emh_repo_count(r, q, &n, &err);
		is_int(rc ? -1 : n, 0, "LIKE is case-sensitive");
		q = fixture_query(r);
		emh_q_where(q, emh_q_like(q, "note", "%\\\\ back"));
		rc = emh_repo_count(r, q, &n, &err);
		is_int(rc ? -1 : n, (int64_t)NTS, "LIKE with an escaped backslash");
		q = fixture_query(r);
		emh_q_where(q, emh_q_like(q, "email", "rt\\_%"));
		rc = emh_repo_count(r, q, &n, &err);
		is_int(rc ? -1 : n, 0, "LIKE with an escaped underscore matches it literally");
	}
	emh_em_close(em);
}

/* Prepared statements of this fork's connection whose text ends with tail. */
static int64_t count_prepared(emh_em *em, const char *tail, emh_error *err)
{
	emh_repo *r;
	emh_query *q;
	char pat[256];
	int64_t n = -1;
	pat[0] = '%';
	emh_like_escape(pat + 1, sizeof pat - 1, tail);
	if (emh_em_repo(em, &pg_prep_entity, &r, err) || emh_repo_query(r, &q, err))
		return -1;
	emh_q_where(q, emh_q_like(q, "statement", pat));
	if (emh_repo_count(r, q, &n, err))
		return -1;
	return n;
}

static bool ctx_stats(emh_host *h, const char *name, emh_context_info *out)
{
	emh_context_info *infos;
	size_t n;
	emh_error err;
	bool found = false;
	if (emh_host_contexts(h, &infos, &n, &err))
		return false;
	for (size_t i = 0; i < n; i++)
		if (strcmp(infos[i].name, name) == 0) {
			*out = infos[i];
			out->settings = NULL;
			out->nsettings = 0;
			out->name = NULL;
			out->driver = NULL;
			found = true;
		}
	emh_context_info_free(infos, n);
	return found;
}

static void test_statement_cache(emh_host *h)
{
	char get_tail[128];
	char appname[64], url[700];
	emh_em *em;
	emh_repo *r;
	emh_error err;
	pgt_item *it;
	int rc;
	int64_t key1 = 0, key2 = 0;

	diag("the statement cache: one prepare per shape and connection, again after a lost connection");
	/* two keys to load */
	{
		emh_list l;
		emh_query *q;
		em = fixture_fork(h, "pg");
		r = fixture_repo(em, &pgt_item_entity);
		q = fixture_query(r);
		emh_q_order_by(q, "id", false);
		emh_q_limit(q, 2);
		if (emh_repo_find(r, q, &l, &err) == 0 && l.count == 2) {
			key1 = ((pgt_item *)l.items[0])->id;
			key2 = ((pgt_item *)l.items[1])->id;
		}
		emh_em_close(em);
	}
	ok(key1 && key2, "statement cache: have two rows");

	snprintf(get_tail, sizeof get_tail, "FROM \"%s\" WHERE \"id\" = $1", g_items);
	snprintf(appname, sizeof appname, "emh_victim_%ld", (long)getpid());
	snprintf(url, sizeof url, "%s", g_url);
	if (add_ctx(h, "victim",
		    (const char *const[]){"url", url, "application_name", appname, "pool.max", "1", NULL}, &err) ||
	    emh_host_register_entity(h, "victim", &pgt_item_entity, &err) ||
	    emh_host_register_entity(h, "victim", &pg_prep_entity, &err)) {
		ok(0, "victim context: %s", err.message);
		return;
	}
	em = fixture_fork(h, "victim");
	r = fixture_repo(em, &pgt_item_entity);
	rc = emh_repo_get(r, emh_v_int64(key1), (void **)&it, &err);
	is_int(rc, 0, "get by key");
	rc = emh_repo_get(r, emh_v_int64(key2), (void **)&it, &err);
	is_int(rc, 0, "get by key again, same shape");
	is_int(count_prepared(em, get_tail, &err), 1, "the get shape is prepared once on the connection");
	emh_em_close(em);

	em = fixture_fork(h, "victim");
	r = fixture_repo(em, &pgt_item_entity);
	rc = emh_repo_get(r, emh_v_int64(key1), (void **)&it, &err);
	is_int(rc, 0, "a later fork reuses the prepared statement");
	is_int(count_prepared(em, get_tail, &err), 1, "still one prepared get");
	emh_em_close(em);

	/* kill the victim's backend from another connection */
	{
		char sql[256];
		em = fixture_fork(h, "pg");
		snprintf(sql, sizeof sql,
			 "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '%s'", appname);
		rc = emh_em_execute(em, sql, &err);
		is_int(rc, 0, "terminate the victim's backend (application_name was passed)");
		emh_em_close(em);
	}
	usleep(200 * 1000);

	em = fixture_fork(h, "victim");
	r = fixture_repo(em, &pgt_item_entity);
	rc = emh_repo_get(r, emh_v_int64(key1), (void **)&it, &err);
	ok(rc == 0 || rc == EMH_EUNAVAILABLE, "first use of the killed connection: ok or EMH_EUNAVAILABLE (%s)",
	   rc ? err.message : "ok");
	if (rc)
		diag("killed connection: %s [%s]", err.message, err.sqlstate);
	emh_em_close(em);
	em = fixture_fork(h, "victim");
	r = fixture_repo(em, &pgt_item_entity);
	rc = emh_repo_get(r, emh_v_int64(key1), (void **)&it, &err);
	is_int(rc, 0, "next fork works on a fresh connection, re-preparing");
	if (rc)
		diag("%s", err.message);
	is_int(count_prepared(em, get_tail, &err), 1, "the fresh connection prepared the get shape again");
	emh_em_close(em);
	g_k1 = key1;
	g_k2 = key2;

	emh_context_info ci;
	if (ctx_stats(h, "victim", &ci)) {
		is_int(ci.opened, 2, "victim pool opened 2 connections");
		is_int(ci.discarded, 1, "victim pool discarded the dead one");
	} else {
		ok(0, "victim stats");
	}
}

/* Raw SQL can drop or stale the driver's prepared statements behind its back. */
typedef struct pgt_alt {
	int64_t id;
	int64_t v;
} pgt_alt;
static const emh_field pgt_alt_fields[] = {
	EMH_FIELD(pgt_alt, id, EMH_T_INT64, EMH_F_PK),
	EMH_FIELD(pgt_alt, v, EMH_T_INT64, 0),
};
static char g_alt[64];
static emh_entity pgt_alt_entity = EMH_ENTITY(pgt_alt, g_alt, pgt_alt_fields);
/* Its generated key's type changes under a cached INSERT ... RETURNING. */
static const emh_field pgt_alt2_fields[] = {
	EMH_FIELD(pgt_alt, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(pgt_alt, v, EMH_T_INT64, 0),
};
static char g_alt2[64];
static emh_entity pgt_alt2_entity = EMH_ENTITY(pgt_alt, g_alt2, pgt_alt2_fields);
/* pgt_alt on a table of its own: statements no other subtest prepared. */
static char g_alt3[64];
static emh_entity pgt_alt3_entity = EMH_ENTITY(pgt_alt, g_alt3, pgt_alt_fields);

/* begin, insert a row, commit (rolled back when something failed). */
static int insert_in_txn(emh_em *em, emh_repo *r, int64_t v, emh_error *err)
{
	pgt_alt *a;
	emh_error e2;
	int rc = emh_em_begin(em, err);
	if (rc)
		return rc;
	if ((rc = emh_repo_new(r, (void **)&a, err)) == 0) {
		a->v = v;
		if ((rc = emh_em_flush(em, err)) == 0)
			rc = emh_em_commit(em, err);
	}
	if (rc)
		emh_em_rollback(em, &e2);
	emh_em_clear(em);
	return rc;
}

/*
 * Inside a transaction a statement whose plan went stale (0A000) aborts the
 * transaction.  When it was the transaction's first statement the driver
 * begins it again and resends; otherwise the failure stands.  Either way
 * the server's stale copy must be deallocated before it is prepared again,
 * or every later transaction fails, 0A000 and 42P05 in turn (found by
 * review).  One connection (pool.max = 1): the same server-side statement
 * every round.
 */
static void test_stale_plan_in_transactions(emh_host *h)
{
	emh_em *em;
	emh_repo *r;
	emh_error err;
	pgt_alt *a;
	char sql[512];
	int rc;

	diag("a statement gone stale inside a transaction: resent when it came first, else works in the next one");
	snprintf(sql, sizeof sql, "CREATE TABLE \"%s\" (id bigint PRIMARY KEY, v integer NOT NULL); "
				  "INSERT INTO \"%s\" VALUES (1, 7); "
				  "CREATE TABLE \"%s\" (id integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, v bigint)",
		 g_alt3, g_alt3, g_alt2);
	if (fixture_exec(h, "victim", sql, &err) || emh_host_register_entity(h, "victim", &pgt_alt3_entity, &err) ||
	    emh_host_register_entity(h, "victim", &pgt_alt2_entity, &err) ||
	    fork_repo(h, "victim", &pgt_alt3_entity, &em, &r, &err)) {
		ok(0, "stale plan setup: %s", err.message);
		return;
	}
	/* a get by key, prepared and cached, then its result type changed */
	emh_em_begin(em, &err);
	rc = emh_repo_get(r, emh_v_int64(1), (void **)&a, &err);
	is_int(rc, 0, "get in a transaction (prepared)");
	emh_em_rollback(em, &err);
	emh_em_clear(em);
	snprintf(sql, sizeof sql, "ALTER TABLE \"%s\" ALTER COLUMN v TYPE bigint", g_alt3);
	is_int(emh_em_execute(em, sql, &err), 0, "ALTER COLUMN v TYPE bigint behind the cached get");
	for (int round = 1; round <= 3; round++) {
		emh_error e2;
		emh_em_clear(em);
		rc = emh_em_begin(em, &err);
		if (rc == 0)
			rc = emh_repo_get(r, emh_v_int64(1), (void **)&a, &err);
		if (rc)
			diag("get, round %d: %s [%s]", round, err.message, err.sqlstate);
		/* round 1: the transaction's first statement, so it is begun again and resent */
		ok(rc == 0 && a->v == 7, "get in transaction %d after the ALTER works", round);
		emh_em_rollback(em, &e2);
	}
	/* Not the transaction's first statement: that transaction fails, the next one works. */
	snprintf(sql, sizeof sql, "ALTER TABLE \"%s\" ALTER COLUMN v TYPE integer", g_alt3);
	is_int(emh_em_execute(em, sql, &err), 0, "ALTER COLUMN v TYPE integer behind the cached get");
	for (int round = 1; round <= 2; round++) {
		emh_error e2;
		int64_t n = -1;
		emh_em_clear(em);
		rc = emh_em_begin(em, &err);
		if (rc == 0)
			rc = emh_repo_count(r, fixture_query(r), &n, &err);
		if (rc == 0)
			rc = emh_repo_get(r, emh_v_int64(1), (void **)&a, &err);
		if (rc)
			diag("count and get, round %d: %s [%s]", round, err.message, err.sqlstate);
		if (round == 1)
			ok(rc == EMH_EDRIVER && strcmp(err.sqlstate, "0A000") == 0,
			   "a get gone stale after another statement of its transaction fails (0A000)");
		else
			ok(rc == 0 && n == 1 && a->v == 7, "count and get in the next transaction work");
		emh_em_rollback(em, &e2);
	}
	emh_em_close(em);

	/* an insert whose RETURNING column changed type */
	if (fork_repo(h, "victim", &pgt_alt2_entity, &em, &r, &err)) {
		ok(0, "alt2 fork: %s", err.message);
		return;
	}
	is_int(insert_in_txn(em, r, 1, &err), 0, "insert in a transaction (prepared)");
	is_int(insert_in_txn(em, r, 2, &err), 0, "insert in a transaction again (cached)");
	snprintf(sql, sizeof sql, "ALTER TABLE \"%s\" ALTER COLUMN id TYPE bigint", g_alt2);
	is_int(emh_em_execute(em, sql, &err), 0, "ALTER COLUMN id TYPE bigint behind the cached insert");
	int64_t done = 2, n = -1;
	for (int round = 1; round <= 3; round++) {
		rc = insert_in_txn(em, r, 2 + round, &err);
		if (rc)
			diag("insert, round %d: %s [%s]", round, err.message, err.sqlstate);
		else
			done++;
		/* round 1 fails: a flush inside a transaction sets a savepoint
		 * first, so the insert is not the transaction's first statement */
		if (round > 1)
			is_int(rc, 0, "insert in transaction %d after the ALTER works", round);
	}
	rc = emh_repo_count(r, fixture_query(r), &n, &err);
	ok(rc == 0 && n == done, "every committed insert is there (%lld, counted %lld)", (long long)done, (long long)n);
	snprintf(sql, sizeof sql, "DROP TABLE \"%s\", \"%s\"", g_alt3, g_alt2);
	is_int(emh_em_execute(em, sql, &err), 0, "drop %s and %s", g_alt3, g_alt2);
	emh_em_close(em);
}

static void test_statement_invalidation(emh_host *h)
{
	emh_em *em;
	emh_repo *r;
	emh_error err;
	pgt_item *it;
	pgt_alt *a;
	char sql[256];

	diag("statements dropped or made stale behind the driver's back are prepared again");
	em = fixture_fork(h, "victim");
	r = fixture_repo(em, &pgt_item_entity);
	is_int(emh_repo_get(r, emh_v_int64(g_k1), (void **)&it, &err), 0, "get (prepares the shape)");
	is_int(emh_em_execute(em, "SELECT 'a discarded or deallocated word' AS w", &err), 0,
	       "raw SQL that merely mentions discard/deallocate");
	emh_em_clear(em);
	is_int(emh_repo_get(r, emh_v_int64(g_k2), (void **)&it, &err), 0, "the cached statements still work");
	is_int(emh_em_execute(em, "DEALLOCATE ALL; SELECT 1", &err), 0, "raw DEALLOCATE ALL (not the last command)");
	emh_em_clear(em);
	int rc = emh_repo_get(r, emh_v_int64(g_k1), (void **)&it, &err);
	is_int(rc, 0, "a dropped statement is prepared again (26000 noticed)");
	if (rc)
		diag("%s [%s]", err.message, err.sqlstate);
	emh_em_close(em);

	snprintf(sql, sizeof sql, "CREATE TABLE \"%s\" (id bigint PRIMARY KEY, v integer NOT NULL); "
				  "INSERT INTO \"%s\" VALUES (1, 7)", g_alt, g_alt);
	if (emh_host_fork(h, "victim", &em, &err) || emh_em_execute(em, sql, &err)) {
		ok(0, "create %s: %s", g_alt, err.message);
		return;
	}
	emh_em_close(em);
	if (emh_host_register_entity(h, "victim", &pgt_alt_entity, &err) ||
	    fork_repo(h, "victim", &pgt_alt_entity, &em, &r, &err)) {
		ok(0, "alt entity: %s", err.message);
		return;
	}
	rc = emh_repo_get(r, emh_v_int64(1), (void **)&a, &err);
	is_int(rc, 0, "get from an integer column (prepared)");
	if (rc)
		diag("%s [%s]", err.message, err.sqlstate);
	snprintf(sql, sizeof sql, "ALTER TABLE \"%s\" ALTER COLUMN v TYPE bigint", g_alt);
	is_int(emh_em_execute(em, sql, &err), 0, "ALTER COLUMN TYPE behind the cached statement");
	emh_em_clear(em);
	rc = emh_repo_get(r, emh_v_int64(1), (void **)&a, &err);
	is_int(rc, 0, "the stale plan is prepared again (0A000 noticed)");
	if (rc)
		diag("%s [%s]", err.message, err.sqlstate);
	else
		is_int(a->v, 7, "and reads the row");
	snprintf(sql, sizeof sql, "DROP TABLE \"%s\"", g_alt);
	is_int(emh_em_execute(em, sql, &err), 0, "drop %s", g_alt);
	emh_em_close(em);
}

static void test_schema_mismatch(emh_host *h)
{
	emh_em *em;
	emh_error err;
	int rc;

	diag("a schema mismatch names the table and the column");
	{
		char sql[400];
		em = fixture_fork(h, "pg");
		snprintf(sql, sizeof sql, "DROP TABLE IF EXISTS %s; CREATE TABLE %s (id bigint PRIMARY KEY, email integer)",
			 g_bad, g_bad);
		rc = emh_em_execute(em, sql, &err);
		is_int(rc, 0, "execute: several statements");
		emh_em_close(em);
	}
	if (add_ctx(h, "pgbad", (const char *const[]){"url", g_url, NULL}, &err) ||
	    emh_host_register_entity(h, "pgbad", &pgt_bad_entity, &err)) {
		ok(0, "pgbad: %s", err.message);
		return;
	}
	rc = emh_host_sync_schema(h, "pgbad", &err);
	is_int(rc, EMH_ESCHEMA, "sync onto an incompatible table: EMH_ESCHEMA");
	like_str(err.message, g_bad, "schema error names the table");
	like_str(err.message, "email", "schema error names the column");
	rc = emh_host_sync_schema(h, "pg", &err);
	is_int(rc, 0, "sync of a compatible existing table succeeds again");

	/* A real (float4) column would round every double to a float: refused,
	 * not rounded silently. */
	{
		char sql[400];
		snprintf(sql, sizeof sql, "DROP TABLE IF EXISTS %s; CREATE TABLE %s (id bigint PRIMARY KEY, f real)",
			 g_f4, g_f4);
		is_int(fixture_exec(h, "pg", sql, &err), 0, "a table with a real column");
	}
	if (add_ctx(h, "pgf4", (const char *const[]){"url", g_url, NULL}, &err) ||
	    emh_host_register_entity(h, "pgf4", &pgt_f4_entity, &err)) {
		ok(0, "pgf4: %s", err.message);
		return;
	}
	rc = emh_host_sync_schema(h, "pgf4", &err);
	diag("real column for a double field: %s", rc ? err.message : "accepted");
	is_int(rc, EMH_ESCHEMA, "sync onto a real column for a double field: EMH_ESCHEMA");
	like_str(err.message, "'f'", "the error names the column");
	like_str(err.message, "float4", "and its type");
	{
		char sql[120];
		snprintf(sql, sizeof sql, "DROP TABLE %s", g_f4);
		is_int(fixture_exec(h, "pg", sql, &err), 0, "drop %s", g_f4);
	}
}

/* ---- a deadlock is EMH_ERETRY, retryable ---- */

typedef struct deadlocker {
	emh_host *h;
	int64_t first, second;
	pthread_barrier_t *bar;
	int rc;
	emh_error err;
} deadlocker;

static int bump(emh_repo *r, int64_t key, emh_error *err)
{
	pgt_item *it;
	int rc = emh_repo_get(r, emh_v_int64(key), (void **)&it, err);
	if (rc)
		return rc;
	it->n++;
	return emh_em_flush(emh_repo_em(r), err);
}

static void *deadlock_thread(void *arg)
{
	deadlocker *d = arg;
	emh_em *em;
	emh_repo *r;
	d->rc = fork_repo(d->h, "pg", &pgt_item_entity, &em, &r, &d->err);
	if (d->rc) {
		pthread_barrier_wait(d->bar);
		return NULL;
	}
	d->rc = emh_em_begin(em, &d->err);
	if (!d->rc)
		d->rc = bump(r, d->first, &d->err);
	pthread_barrier_wait(d->bar);
	if (!d->rc)
		d->rc = bump(r, d->second, &d->err);
	if (d->rc) {
		emh_error e2;
		emh_em_rollback(em, &e2);
	} else {
		d->rc = emh_em_commit(em, &d->err);
	}
	emh_em_close(em);
	return NULL;
}

static void test_deadlock(emh_host *h, int64_t k1, int64_t k2)
{
	pthread_barrier_t bar;
	pthread_t t1, t2;
	deadlocker a = {.h = h, .first = k1, .second = k2, .bar = &bar};
	deadlocker b = {.h = h, .first = k2, .second = k1, .bar = &bar};

	diag("a deadlock is EMH_ERETRY, retryable");
	if (pthread_barrier_init(&bar, NULL, 2) != 0)
		bail("pthread_barrier_init failed");
	fixture_thread(&t1, deadlock_thread, &a);
	fixture_thread(&t2, deadlock_thread, &b);
	pthread_join(t1, NULL);
	pthread_join(t2, NULL);
	pthread_barrier_destroy(&bar);
	deadlocker *victim = a.rc ? &a : &b, *winner = a.rc ? &b : &a;
	ok((a.rc == 0) != (b.rc == 0), "deadlock: exactly one transaction failed (%s / %s)", emh_status_name(a.rc),
	   emh_status_name(b.rc));
	is_int(victim->rc, EMH_ERETRY, "deadlock: the victim gets EMH_ERETRY");
	ok(victim->err.retryable, "deadlock: marked retryable");
	is_str(victim->err.sqlstate, "40P01", "deadlock: sqlstate 40P01");
	diag("deadlock victim: %s", victim->err.message);
	is_int(winner->rc, 0, "deadlock: the other one commits");
}

/* ---- 8 threads on a pool of 4 ---- */

static emh_host *g_host_handle;
static atomic_int g_thread_failures;
static int64_t g_keys[16];

static void *worker(void *arg)
{
	long t = (long)arg;
	for (int i = 0; i < 40; i++) {
		emh_em *em;
		emh_repo *r;
		emh_error err;
		pgt_item *it;
		if (fork_repo(g_host_handle, "pg", &pgt_item_entity, &em, &r, &err)) {
			atomic_fetch_add(&g_thread_failures, 1);
			continue;
		}
		int rc = emh_repo_get(r, emh_v_int64(g_keys[(t + i) % 16]), (void **)&it, &err);
		if (rc == 0 && i % 5 == 0) {
			char email[64];
			pgt_item *n;
			snprintf(email, sizeof email, "thread%ld-%d@example.com", t, i);
			if ((rc = emh_repo_new(r, (void **)&n, &err)) == 0) {
				n->email = emh_em_strdup(em, email);
				n->n = (int32_t)i;
				rc = emh_em_flush(em, &err);
			}
		}
		if (rc) {
			atomic_fetch_add(&g_thread_failures, 1);
			diag("thread %ld: %s", t, err.message);
		}
		emh_em_close(em);
	}
	return NULL;
}

static void test_pool_bound(emh_host *h)
{
	emh_em *em;
	emh_repo *r;
	emh_error err;
	pthread_t th[8];

	diag("8 threads on a pool of 4");
	em = fixture_fork(h, "pg");
	r = fixture_repo(em, &pgt_item_entity);
	for (int i = 0; i < 16; i++) {
		pgt_item *it = fixture_new(r);
		char email[64];
		snprintf(email, sizeof email, "pool%d@example.com", i);
		it->email = emh_em_strdup(em, email);
	}
	int rc = emh_em_flush(em, &err);
	is_int(rc, 0, "pool: seed rows");
	{
		emh_query *q = fixture_query(r);
		emh_list l;
		emh_q_where(q, emh_q_like(q, "email", "pool%"));
		if ((rc = emh_repo_find(r, q, &l, &err)) != 0 || l.count != 16)
			bail("the 16 pool rows: %s", rc ? err.message : "not all found");
		for (size_t i = 0; i < l.count; i++)
			g_keys[i] = ((pgt_item *)l.items[i])->id;
	}
	emh_em_close(em);

	g_host_handle = h;
	for (long i = 0; i < 8; i++)
		fixture_thread(&th[i], worker, (void *)i);
	for (int i = 0; i < 8; i++)
		pthread_join(th[i], NULL);
	is_int(atomic_load(&g_thread_failures), 0, "8 threads x 40 forks on a pool of 4: no failures");
	emh_context_info ci;
	if (ctx_stats(h, "pg", &ci)) {
		ok(ci.opened <= 4, "pool never opened more than 4 connections (opened %llu)",
		   (unsigned long long)ci.opened);
		ok(ci.in_use == 0 && ci.idle <= 4, "pool: in_use %u idle %u after the threads", ci.in_use, ci.idle);
	} else {
		ok(0, "pg stats");
	}
}

int main(void)
{
	const char *url = getenv("EMH_TEST_PG_URL");
	const char *builddir = getenv("EMH_BUILDDIR");
	char plugin_dir[1024], envpw[256];
	emh_host *h = NULL;
	emh_error err;

	plan_lazy();
	snprintf(g_items, sizeof g_items, "pgt_items_%ld", (long)getpid());
	snprintf(g_alt, sizeof g_alt, "pgt_alt_%ld", (long)getpid());
	snprintf(g_alt2, sizeof g_alt2, "pgt_alt2_%ld", (long)getpid());
	snprintf(g_alt3, sizeof g_alt3, "pgt_alt3_%ld", (long)getpid());
	snprintf(g_bad, sizeof g_bad, "pgt_bad_%ld", (long)getpid());
	snprintf(g_f4, sizeof g_f4, "pgt_f4_%ld", (long)getpid());
	if (!url || !*url) {
		need_server(1, "postgres: EMH_TEST_PG_URL not set (run scripts/servers/pg.sh start)");
		return done_testing();
	}
	if (parse_url(url))
		bail("cannot parse EMH_TEST_PG_URL '%s'", url);
	snprintf(plugin_dir, sizeof plugin_dir, "%s/plugins-build", builddir ? builddir : ".");
	snprintf(envpw, sizeof envpw, "EMH_TEST_PGPW_GOOD=%s", g_pw);
	const char *envp[] = {envpw, NULL};
	emh_host_opts o = {.plugin_dir = plugin_dir, .envp = envp, .log_level = EMH_LOG_WARN};
	if (emh_host_new(&o, &h, &err))
		bail("emh_host_new: %s", err.message);

	if (add_ctx(h, "pg", (const char *const[]){"url", g_url, "pool.max", "4", NULL}, &err) ||
	    emh_host_register_entity(h, "pg", &pgt_item_entity, &err) ||
	    emh_host_register_entity(h, "pg", &pg_prep_entity, &err))
		bail("context pg: %s", err.message);
	{
		emh_em *em = fixture_fork(h, "pg");
		char sql[120];
		snprintf(sql, sizeof sql, "DROP TABLE IF EXISTS %s", g_items);
		if (emh_em_execute(em, sql, &err))
			bail("drop %s: %s", g_items, err.message);
		emh_em_close(em);
	}
	int rc = emh_host_sync_schema(h, "pg", &err);
	is_int(rc, 0, "schema sync creates %s", g_items);
	if (rc)
		bail("sync: %s", err.message);
	rc = emh_host_sync_schema(h, "pg", &err);
	is_int(rc, 0, "schema sync again is a no-op");

	test_connect_errors(h);
	test_conflict_and_invalid(h);
	test_syntax_error_quote(h);
	test_roundtrip(h);
	test_statement_cache(h);
	test_statement_invalidation(h);
	test_stale_plan_in_transactions(h);
	test_deadlock(h, g_k1, g_k2);
	test_schema_mismatch(h);
	test_pool_bound(h);

	{
		emh_em *em;
		char sql[200];
		snprintf(sql, sizeof sql, "DROP TABLE IF EXISTS %s, %s", g_items, g_bad);
		em = fixture_fork(h, "pg");
		is_int(emh_em_execute(em, sql, &err), 0, "drop the test tables");
		emh_em_close(em);
	}
	emh_host_free(h);
	return done_testing();
}
