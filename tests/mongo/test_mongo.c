/* SPDX-License-Identifier: MIT */
/* tests/mongo/test_mongo.c: the mongo driver against a real server: verbatim values, like, keys, errors, storage layout. */
#include "config.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sys/file.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mongoc/mongoc.h>

#include <emhost/driver.h>
#include <emhost/emhost.h>

#include "../fixture.h"
#include "../tap.h"

/* ---- entities (collections named per run) ---- */

typedef struct mt_doc {
	int64_t id;
	const char *tag;  /* unique, not nullable */
	const char *txt;  /* nullable */
	const char *mail; /* unique and nullable: stored absent when NULL */
	const char *js;
	emh_time ts;
	emh_blob bin;
} mt_doc;

static const emh_field mt_doc_fields[] = {
	EMH_FIELD(mt_doc, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(mt_doc, tag, EMH_T_TEXT, EMH_F_UNIQUE),
	EMH_FIELD(mt_doc, txt, EMH_T_TEXT, EMH_F_NULLABLE | EMH_F_INDEXED),
	EMH_FIELD(mt_doc, mail, EMH_T_TEXT, EMH_F_NULLABLE | EMH_F_UNIQUE),
	EMH_FIELD(mt_doc, js, EMH_T_JSON, EMH_F_NULLABLE),
	EMH_FIELD(mt_doc, ts, EMH_T_TIMESTAMP, EMH_F_NULLABLE),
	EMH_FIELD(mt_doc, bin, EMH_T_BLOB, EMH_F_NULLABLE),
};

/* A text key chosen by the caller. */
typedef struct mt_kv {
	const char *k;
	int32_t v;
} mt_kv;

static const emh_field mt_kv_fields[] = {
	EMH_FIELD(mt_kv, k, EMH_T_TEXT, EMH_F_PK),
	EMH_FIELD(mt_kv, v, EMH_T_INT32, 0),
};

/* A natural key and a unique nullable field, for upsert. */
typedef struct mt_up {
	const char *k;
	const char *mail; /* unique and nullable: absent when NULL */
	int64_t n;
} mt_up;

static const emh_field mt_up_fields[] = {
	EMH_FIELD(mt_up, k, EMH_T_TEXT, EMH_F_PK),
	EMH_FIELD(mt_up, mail, EMH_T_TEXT, EMH_F_NULLABLE | EMH_F_UNIQUE),
	EMH_FIELD(mt_up, n, EMH_T_INT64, 0),
};

/* Generated keys and a unique field, for drop. */
typedef struct mt_dr {
	int64_t id;
	const char *name; /* unique */
} mt_dr;

static const emh_field mt_dr_fields[] = {
	EMH_FIELD(mt_dr, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(mt_dr, name, EMH_T_TEXT, EMH_F_UNIQUE),
};

static char g_doc_table[64], g_kv_table[64], g_up_table[64], g_dr_table[64];
static emh_entity g_doc = {0}, g_kv = {0}, g_up = {0}, g_dr = {0};

static emh_host *g_host;
static mongoc_client_t *g_raw;
static char g_db[64];

/*
 * The driver's drop member, reached before the core calls it: the test
 * registers the mongo plugin's own descriptor a second time, statically, as
 * "mongo_probe", whose execute runs drop on g_dr's collection for the text
 * "probe-drop" (and on a collection the driver reserves for
 * "probe-drop-reserved"), and passes anything else to the plugin.
 */
static const emh_driver *g_mongo; /* the plugin's descriptor (dlsym) */
static emh_driver g_probe;

static int probe_execute(emh_conn *c, const char *text, emh_error *err)
{
	static const emh_entity reserved = {.name = "mt_reserved", .table = "emh_counters", .size = sizeof(mt_dr),
					    .fields = mt_dr_fields, .nfields = 2};
	/* ids far from the context's own entities' (the driver caches by id) */
	emh_meta m = {.entity = &g_dr, .pk = 0, .generated = true, .id = 1000, .context = "mgprobe"};
	if (strcmp(text, "probe-drop") == 0)
		return g_mongo->drop(c, &m, err);
	if (strcmp(text, "probe-drop-reserved") == 0) {
		m.entity = &reserved;
		m.id = 1001;
		return g_mongo->drop(c, &m, err);
	}
	return g_mongo->execute(c, text, err);
}

/* ---- helpers ---- */

static mt_doc *new_doc(emh_em *em, emh_repo *r, const char *tag)
{
	mt_doc *d;
	emh_error err;
	if (emh_repo_new(r, (void **)&d, &err)) {
		diag("emh_repo_new: %s", err.message);
		return NULL;
	}
	d->tag = emh_em_strdup(em, tag);
	emh_em_set_null(em, d, "ts", true, &err);
	return d;
}

static int insert_doc(const char *tag, const char *txt, const char *js, int64_t *id, emh_error *err)
{
	emh_em *em;
	emh_repo *r;
	int rc = emh_host_fork(g_host, "mg", &em, err);
	if (rc)
		return rc;
	if ((rc = emh_em_repo(em, &g_doc, &r, err)) == 0) {
		mt_doc *d = new_doc(em, r, tag);
		if (!d) {
			rc = EMH_ENOMEM;
		} else {
			d->txt = txt ? emh_em_strdup(em, txt) : NULL;
			d->js = js ? emh_em_strdup(em, js) : NULL;
			rc = emh_em_flush(em, err);
			if (rc == 0 && id)
				*id = d->id;
		}
	}
	emh_em_close(em);
	return rc;
}

/* Tags of the rows where field op value, sorted by tag, comma-separated, into out. */
static int query_tags(emh_cond *(*build)(emh_query *q, const void *arg), const void *arg, char *out, size_t cap,
		      int64_t *count, emh_error *err)
{
	emh_em *em;
	emh_repo *r;
	emh_query *q;
	emh_list l;
	int rc = emh_host_fork(g_host, "mg", &em, err);
	out[0] = '\0';
	if (rc)
		return rc;
	if ((rc = emh_em_repo(em, &g_doc, &r, err)) == 0 && (rc = emh_repo_query(r, &q, err)) == 0) {
		emh_q_where(q, build(q, arg));
		emh_q_order_by(q, "tag", false);
		if ((rc = emh_repo_find(r, q, &l, err)) == 0) {
			size_t n = 0;
			for (size_t i = 0; i < l.count; i++)
				n += (size_t)snprintf(out + n, n < cap ? cap - n : 0, "%s%s", i ? "," : "",
						      ((mt_doc *)l.items[i])->tag);
			if (count)
				rc = emh_repo_count(r, q, count, err);
		}
	}
	emh_em_close(em);
	return rc;
}

static emh_cond *q_txt_eq(emh_query *q, const void *arg) { return emh_q_eq(q, "txt", emh_v_text(arg)); }
static emh_cond *q_txt_like(emh_query *q, const void *arg) { return emh_q_like(q, "txt", arg); }
static emh_cond *q_txt_ne(emh_query *q, const void *arg) { return emh_q_ne(q, "txt", emh_v_text(arg)); }
static emh_cond *q_not_like(emh_query *q, const void *arg)
{
	return emh_q_not(q, emh_q_like(q, "txt", arg));
}

/* The stored document with _id key (its first value), as canonical extended JSON (malloc'd) or NULL. */
static char *raw_doc_by(const char *table, const bson_t *key)
{
	mongoc_collection_t *coll = mongoc_client_get_collection(g_raw, g_db, table);
	bson_t filter = BSON_INITIALIZER;
	bson_iter_t it;
	const bson_t *doc;
	char *out = NULL;
	if (bson_iter_init(&it, key) && bson_iter_next(&it))
		bson_append_iter(&filter, "_id", 3, &it);
	mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, &filter, NULL, NULL);
	if (mongoc_cursor_next(cur, &doc)) {
		char *s = bson_as_canonical_extended_json(doc, NULL);
		out = strdup(s);
		bson_free(s);
	}
	mongoc_cursor_destroy(cur);
	bson_destroy(&filter);
	mongoc_collection_destroy(coll);
	return out;
}

static char *raw_doc(const char *table, int64_t id)
{
	bson_t key = BSON_INITIALIZER;
	BSON_APPEND_INT64(&key, "k", id);
	char *out = raw_doc_by(table, &key);
	bson_destroy(&key);
	return out;
}

/* JSON text without the spaces outside strings, into out (cap bytes). */
static void json_strip(const char *in, char *out, size_t cap)
{
	size_t x = 0;
	bool in_str = false;
	for (const char *p = in; *p && x + 1 < cap; p++) {
		if (*p == '"' && (p == in || p[-1] != '\\'))
			in_str = !in_str;
		if (in_str || *p != ' ')
			out[x++] = *p;
	}
	out[x] = '\0';
}

/* The json field of row id as read back through emhost (malloc'd), or NULL. */
static char *read_js(int64_t id, emh_error *err)
{
	emh_em *em;
	emh_repo *r;
	mt_doc *d = NULL;
	char *out = NULL;
	if (emh_host_fork(g_host, "mg", &em, err))
		return NULL;
	if (emh_em_repo(em, &g_doc, &r, err) == 0 && emh_repo_get(r, emh_v_int64(id), (void **)&d, err) == 0)
		out = strdup(d->js ? d->js : "(null)");
	emh_em_close(em);
	return out;
}

/* ---- cases ---- */

/* Text that looks like operators or paths: stored and matched as data. */
static void test_verbatim(void)
{
	static const char *const texts[] = {
		"{\"$gt\": \"\"}", "$gt", "$where", "{\"$ne\": null}", "a.b", "$", ".", "{\"$regex\": \".*\"}",
		"'; db.dropDatabase(); '", "{$set: {x: 1}}",
	};
	const size_t n = sizeof texts / sizeof texts[0];
	emh_error err;
	char tags[512], tag[32];

	diag("operator-looking text values");
	for (size_t i = 0; i < n; i++) {
		snprintf(tag, sizeof tag, "v%zu", i);
		int rc = insert_doc(tag, texts[i], NULL, NULL, &err);
		if (rc)
			diag("%s", err.message);
		is_int(rc, 0, "insert text %s", texts[i]);
	}
	for (size_t i = 0; i < n; i++) {
		int64_t cnt = -1;
		int rc = query_tags(q_txt_eq, texts[i], tags, sizeof tags, &cnt, &err);
		snprintf(tag, sizeof tag, "v%zu", i);
		if (rc)
			diag("%s", err.message);
		is_str(tags, tag, "eq '%s' matches exactly its own row", texts[i]);
		is_int(cnt, 1, "count of eq '%s' is 1", texts[i]);
	}
	{
		int64_t cnt = -1;
		int rc = query_tags(q_txt_ne, "$gt", tags, sizeof tags, &cnt, &err);
		ok(rc == 0 && cnt == (int64_t)n - 1, "ne '$gt' matches the %zu other rows (got %lld)", n - 1,
		   (long long)cnt);
	}
	{
		/* Read back byte for byte. */
		emh_em *em;
		emh_repo *r;
		emh_query *q;
		emh_list l = {0};
		int rc = emh_host_fork(g_host, "mg", &em, &err);
		if (rc == 0 && (rc = emh_em_repo(em, &g_doc, &r, &err)) == 0 && (rc = emh_repo_query(r, &q, &err)) == 0) {
			emh_q_where(q, emh_q_like(q, "tag", "v%"));
			emh_q_order_by(q, "tag", false);
			rc = emh_repo_find(r, q, &l, &err);
		}
		is_int(rc, 0, "find the verbatim rows");
		size_t same = 0;
		for (size_t i = 0; i < l.count; i++) {
			mt_doc *d = l.items[i];
			size_t k = (size_t)atoi(d->tag + 1);
			if (k < n && d->txt && strcmp(d->txt, texts[k]) == 0)
				same++;
		}
		is_int(same, n, "every operator-looking text reads back verbatim");
		emh_em_close(em);
	}

	diag("json with '$' and '.' keys, extended-json look-alikes");
	static const char *const docs[] = {
		"{\"$gt\": 1}",
		"{\"a.b\": {\"$where\": \"sleep(1000)\"}}",
		"{\"n\": {\"$numberLong\": \"5\"}, \"d\": {\"$date\": 0}}",
		"{\"plain\": [1, 2.5, \"x\", true, null, {\"k\": \"v\"}]}",
		"[1, {\"$oid\": \"0123456789abcdef01234567\"}]",
		"\"just a string\"",
		"12",
		"{\"big\": 123456789012345678901234567890, \"exp\": 1e2, \"frac\": 1.50}",
		"{\"esc\": \"caf\\u00e9 \\\"q\\\" \\\\ \\/\"}",
	};
	const size_t nd = sizeof docs / sizeof docs[0];
	for (size_t i = 0; i < nd; i++) {
		int64_t id = 0;
		snprintf(tag, sizeof tag, "j%zu", i);
		int rc = insert_doc(tag, NULL, docs[i], &id, &err);
		if (rc)
			diag("%s", err.message);
		is_int(rc, 0, "insert json %s", docs[i]);
		/* stored as text (utf8) or as a document, either way exactly this JSON (modulo spaces) */
		char *js = read_js(id, &err);
		if (js) {
			char a[512], b[512];
			json_strip(docs[i], a, sizeof a);
			json_strip(js, b, sizeof b);
			is_str(b, a, "json %zu reads back as written (modulo whitespace)", i);
		} else {
			ok(0, "json %zu reads back: %s", i, err.message);
		}
		free(js);
		char *raw = raw_doc(g_doc_table, id);
		if (i == 3)
			like_str(raw, "\"plain\" : [ { \"$numberInt\" : \"1\" }", "a plain object is stored as an embedded document");
		else if (i < 3 || i == 4)
			like_str(raw, "\"js\" : \"", "json %zu with '$'/'.' keys is stored as its text, never interpreted", i);
		free(raw);
	}
}

/* LIKE with every regex metacharacter in the text: literal. */
static void test_like(void)
{
	static const char *const texts[] = {"a.b*c(d)", "aXb*c(d)", "a.b*c(d)e", "[x]", "x", "^$", "", "a+b?",
					    "a|b", "{2}", "back\\slash", "50%", "5_0", "line\nbreak", "tail", "tail\n"};
	const size_t n = sizeof texts / sizeof texts[0];
	emh_error err;
	char tag[32], want[32], got[512], pat[64];

	diag("like with regex metacharacters in the text");
	for (size_t i = 0; i < n; i++) {
		snprintf(tag, sizeof tag, "L%02zu", i);
		int rc = insert_doc(tag, texts[i], NULL, NULL, &err);
		if (rc)
			diag("%s", err.message);
		is_int(rc, 0, "insert '%s'", texts[i]);
	}
	for (size_t i = 0; i < n; i++) {
		int64_t cnt = -1;
		emh_like_escape(pat, sizeof pat, texts[i]);
		snprintf(want, sizeof want, "L%02zu", i);
		int rc = query_tags(q_txt_like, pat, got, sizeof got, &cnt, &err);
		if (rc)
			diag("%s", err.message);
		is_str(got, want, "like escaped '%s' matches only itself", texts[i]);
		is_int(cnt, 1, "count like escaped '%s'", texts[i]);
	}
	struct {
		const char *pat, *want;
	} cases[] = {
		{"a.b*%", "L00,L02"},  /* '.' and '*' literal, % any run */
		{"a_b*c(d)", "L00,L01"}, /* _ any one character */
		{"[_]", "L03"},
		{"%|%", "L08"},
		{"^%", "L05"},
		{"%$", "L05"},
		{"%\\\\%", "L10"},     /* a literal backslash */
		{"50\\%", "L11"},
		{"5\\_0", "L12"},
		{"line_break", "L13"}, /* _ matches a newline */
		{"tail", "L14"},       /* not "tail\n": nothing may follow (PCRE's '$' allowed a final newline) */
		{"tail_", "L15"},
		{"tail%", "L14,L15"},
		{"%", NULL},           /* every row with a text, even the empty one */
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		int rc = query_tags(q_txt_like, cases[i].pat, got, sizeof got, NULL, &err);
		if (rc)
			diag("%s", err.message);
		if (cases[i].want) {
			/* only the L rows: strip the others (v, j rows of other cases) */
			char only[512] = "";
			size_t k = 0;
			for (char *s = strtok(got, ","); s; s = strtok(NULL, ","))
				if (s[0] == 'L')
					k += (size_t)snprintf(only + k, sizeof only - k, "%s%s", k ? "," : "", s);
			is_str(only, cases[i].want, "like '%s'", cases[i].pat);
		} else {
			ok(rc == 0 && strstr(got, "L06") != NULL, "like '%%' matches the empty text too");
		}
	}
	{
		/* NOT LIKE never matches a NULL text (SQL's three-valued logic). */
		int64_t cnt = -1;
		int rc = query_tags(q_not_like, "%", got, sizeof got, &cnt, &err);
		ok(rc == 0 && cnt == 0, "not like '%%' matches no row, not even the NULL texts (got %lld)", (long long)cnt);
		rc = query_tags(q_not_like, "tail", got, sizeof got, &cnt, &err);
		ok(rc == 0 && strstr(got, "L15") && !strstr(got, "L14"),
		   "not like 'tail' matches \"tail\\n\", not \"tail\" (%s)", rc ? err.message : got);
	}
}

/* What each thread of run_threads gets first in its argument. */
typedef struct thr_arg {
	int t, rc;
	char msg[EMH_ERROR_MSG_MAX];
} thr_arg;

/* Run fn on n (at most 16) threads at once, each with its element of args
 * (size bytes each, a thr_arg first); returns how many set rc. */
static int run_threads(int n, void *(*fn)(void *), void *args, size_t size)
{
	pthread_t th[16];
	int failed = 0;
	for (int t = 0; t < n; t++) {
		thr_arg *a = (thr_arg *)(void *)((char *)args + (size_t)t * size);
		a->t = t;
		a->rc = 0;
		if (pthread_create(&th[t], NULL, fn, a))
			bail("pthread_create failed");
	}
	for (int t = 0; t < n; t++) {
		thr_arg *a = (thr_arg *)(void *)((char *)args + (size_t)t * size);
		pthread_join(th[t], NULL);
		if (a->rc) {
			failed++;
			diag("thread %d: %s", t, a->msg);
		}
	}
	return failed;
}

/* Generated keys from 8 threads at once are unique. */
#define KEY_THREADS 8
#define KEY_PER_THREAD 40
typedef struct key_arg {
	thr_arg base;
	int64_t ids[KEY_PER_THREAD];
} key_arg;

static void *key_worker(void *p)
{
	key_arg *a = p;
	emh_error err;
	char tag[32];
	for (int i = 0; i < KEY_PER_THREAD && !a->base.rc; i++) {
		snprintf(tag, sizeof tag, "k%d-%d", a->base.t, i);
		a->base.rc = insert_doc(tag, "key", NULL, &a->ids[i], &err);
		if (a->base.rc)
			snprintf(a->base.msg, sizeof a->base.msg, "%s", err.message);
	}
	return NULL;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

static void test_keys(void)
{
	static key_arg args[KEY_THREADS];
	static int64_t all[KEY_THREADS * KEY_PER_THREAD];

	diag("generated keys from %d threads", KEY_THREADS);
	int failed = run_threads(KEY_THREADS, key_worker, args, sizeof args[0]);
	for (int t = 0; t < KEY_THREADS; t++)
		memcpy(all + t * KEY_PER_THREAD, args[t].ids, sizeof args[t].ids);
	is_int(failed, 0, "every thread inserted %d rows", KEY_PER_THREAD);
	qsort(all, KEY_THREADS * KEY_PER_THREAD, sizeof all[0], cmp_i64);
	int dups = 0, zero = 0;
	for (int i = 0; i < KEY_THREADS * KEY_PER_THREAD; i++) {
		if (all[i] <= 0)
			zero++;
		if (i && all[i] == all[i - 1])
			dups++;
	}
	is_int(zero, 0, "every generated key is positive");
	is_int(dups, 0, "the %d generated keys are unique", KEY_THREADS * KEY_PER_THREAD);
}

static void test_errors(void)
{
	emh_error err;
	emh_em *em;
	emh_repo *r;
	int rc;

	diag("errors");
	static const char *const bad[] = {"{bad", "{\"a\":1} {\"b\":2}", "{\"a\":1,}", "", "[1,]", "nul", "\"x",
					  "{\"a\":01}"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		rc = insert_doc("badjson", NULL, bad[i], NULL, &err);
		is_int(rc, EMH_EINVAL, "invalid json '%s' is EMH_EINVAL", bad[i]);
	}
	rc = emh_host_fork(g_host, "mg", &em, &err);
	is_int(rc, 0, "fork");
	rc = emh_em_execute(em, "{not json", &err);
	is_int(rc, EMH_EINVAL, "execute of invalid json is EMH_EINVAL");
	rc = emh_em_execute(em, "   ", &err);
	is_int(rc, EMH_EINVAL, "execute of no command is EMH_EINVAL");
	rc = emh_em_execute(em, "{\"drop\": \"mgt_never_created\"}", &err);
	is_int(rc, 0, "execute drop of a missing collection succeeds");
	rc = emh_em_execute(em, "{\"ping\": 1} {\"ping\": 1}", &err);
	is_int(rc, 0, "execute runs several command documents");
	rc = emh_em_execute(em, "{\"noSuchCommand\": 1}", &err);
	ok(rc == EMH_EDRIVER && err.native != 0, "an unknown command is EMH_EDRIVER with the server's code (%d)",
	   err.native);
	emh_em_close(em);

	/* duplicate on a unique field */
	rc = insert_doc("dup", "a", NULL, NULL, &err);
	is_int(rc, 0, "insert tag 'dup'");
	rc = insert_doc("dup", "b", NULL, NULL, &err);
	is_int(rc, EMH_ECONFLICT, "second tag 'dup' is EMH_ECONFLICT");
	is_int(err.native, 11000, "native code 11000");
	ok(strstr(err.message, "tag") != NULL && strstr(err.message, "'dup'") == NULL,
	   "the message names the index, not the value: %s", err.message);

	/* duplicate on a caller-chosen key */
	rc = emh_host_fork(g_host, "mg", &em, &err);
	if (rc == 0 && (rc = emh_em_repo(em, &g_kv, &r, &err)) == 0) {
		mt_kv *a, *b;
		emh_repo_new(r, (void **)&a, &err);
		a->k = "same";
		a->v = 1;
		rc = emh_repo_insert(r, a, &err);
		is_int(rc, 0, "insert key 'same'");
		emh_em_clear(em);
		emh_repo_new(r, (void **)&b, &err);
		b->k = "same";
		b->v = 2;
		rc = emh_repo_insert(r, b, &err);
		is_int(rc, EMH_ECONFLICT, "second key 'same' is EMH_ECONFLICT");
		is_int(err.native, 11000, "native code 11000 on _id");
	}
	emh_em_close(em);

	/* unique nullable field: several NULLs coexist, a value is unique */
	{
		int rcs = 0;
		for (int i = 0; i < 3; i++) {
			char tag[16];
			snprintf(tag, sizeof tag, "nullmail%d", i);
			rcs |= insert_doc(tag, NULL, NULL, NULL, &err);
		}
		is_int(rcs, 0, "three NULLs in a unique nullable field coexist (as in SQL)");
		rc = emh_host_fork(g_host, "mg", &em, &err);
		if (rc == 0 && (rc = emh_em_repo(em, &g_doc, &r, &err)) == 0) {
			mt_doc *a = new_doc(em, r, "mail1"), *b = new_doc(em, r, "mail2");
			a->mail = "x@example.org";
			rc = emh_repo_insert(r, a, &err);
			is_int(rc, 0, "insert mail x@example.org");
			b->mail = "x@example.org";
			rc = emh_repo_insert(r, b, &err);
			is_int(rc, EMH_ECONFLICT, "the same mail again is EMH_ECONFLICT");
			b->mail = NULL;
			rc = emh_repo_insert(r, b, &err);
			is_int(rc, 0, "with a NULL mail it goes in");
			a->mail = NULL;
			rc = emh_repo_update(r, a, &err);
			is_int(rc, 0, "updating a mail to NULL");
			char *raw = raw_doc(g_doc_table, a->id);
			ok(raw && strstr(raw, "\"mail\"") == NULL, "a NULL unique field is absent from the document");
			free(raw);
			emh_query *q;
			int64_t cnt = -1;
			if (emh_repo_query(r, &q, &err) == 0) {
				emh_q_where(q, emh_q_and(q, emh_q_is_null(q, "mail"), emh_q_like(q, "tag", "mail%")));
				emh_repo_count(r, q, &cnt, &err);
			}
			is_int(cnt, 2, "is null finds the absent fields");
		}
		emh_em_close(em);
	}
}

/* The layout docs/drivers/mongo.md promises. */
static void test_layout(void)
{
	emh_error err;
	emh_em *em;
	emh_repo *r;
	int rc = emh_host_fork(g_host, "mg", &em, &err);
	diag("storage layout");
	if (rc == 0 && (rc = emh_em_repo(em, &g_doc, &r, &err)) == 0) {
		mt_doc *d = new_doc(em, r, "layout");
		emh_em_set_null(em, d, "ts", false, &err);
		d->ts = -1; /* 1969-12-31T23:59:59.999999Z */
		d->bin = (emh_blob){"\x00\x01\xff", 3};
		d->js = "{\"a\": {\"b\": [1, 2]}}";
		rc = emh_repo_insert(r, d, &err);
		is_int(rc, 0, "insert the layout row");
		char *raw = raw_doc(g_doc_table, d->id);
		diag("%s", raw ? raw : "(none)");
		/* The driver writes int64; the mongo-wire test server hands small
		 * int64s back as int32, hence "$number". */
		like_str(raw, "{ \"_id\" : { \"$number", "the key is _id, an integer");
		like_str(raw, "\"ts\" : { \"t\" : { \"$date\" : { \"$numberLong\" : \"-1\" } }, \"us\" : { \"$number",
			 "timestamp: {t: date (floor of the ms), us: the microseconds}");
		like_str(raw, "\"us\" : { \"$number", "timestamp microseconds kept");
		like_str(raw, "\"bin\" : { \"$binary\" : { \"base64\" : \"AAH/\", \"subType\" : \"00\" } }",
			 "blob: binary subtype 0");
		like_str(raw, "\"js\" : { \"a\" : { \"b\" : [", "json object: embedded document");
		like_str(raw, "\"txt\" : null", "NULL: BSON null");
		free(raw);
		/* a range on a timestamp compares microseconds */
		emh_query *q;
		int64_t cnt = -1;
		if (emh_repo_query(r, &q, &err) == 0) {
			emh_q_where(q, emh_q_and(q, emh_q_gt(q, "ts", emh_v_time(-2)), emh_q_lt(q, "ts", emh_v_time(0))));
			emh_repo_count(r, q, &cnt, &err);
		}
		is_int(cnt, 1, "-2 us < ts < 0 us finds the row (microsecond comparison)");
	}
	emh_em_close(em);
}

/* "[[...]]" nested depth levels deep (malloc'd). */
static char *nested(size_t depth)
{
	char *s = malloc(2 * depth + 1);
	if (!s)
		bail("out of memory");
	memset(s, '[', depth);
	memset(s + depth, ']', depth);
	s[2 * depth] = '\0';
	return s;
}

/* Insert js as a new row's json: accepted, read back as written, stored as text (as_text) or an array. */
static void json_kept(const char *name, const char *js, bool as_text)
{
	emh_error err;
	int64_t id = 0;
	char tag[48];
	snprintf(tag, sizeof tag, "je-%s", name);
	int rc = insert_doc(tag, NULL, js, &id, &err);
	if (rc)
		diag("%s", err.message);
	is_int(rc, 0, "json %s is accepted", name);
	char *back = read_js(id, &err);
	size_t cap = strlen(js) + 1;
	char *a = malloc(cap), *b = malloc(cap + (back ? strlen(back) : 0));
	if (!a || !b)
		bail("out of memory");
	json_strip(js, a, cap);
	json_strip(back ? back : "", b, cap + (back ? strlen(back) : 0));
	ok(strcmp(a, b) == 0, "json %s reads back as written (modulo whitespace)", name);
	char *raw = raw_doc(g_doc_table, id);
	if (as_text)
		like_str(raw, "\"js\" : \"", "json %s is stored as its text", name);
	else
		like_str(raw, "\"js\" : [", "json %s is stored as an array", name);
	free(raw);
	free(a);
	free(b);
	free(back);
}

/*
 * What the json reader accepts and refuses.  jansson refuses some texts RFC
 * 8259 allows (numbers beyond int64/double, \u0000, lone surrogates): those
 * are still accepted and kept as text.  Refusals are EMH_EINVAL naming the
 * field and a byte offset, never quoting the value.
 */
static void test_json_edges(void)
{
	static const struct {
		const char *name, *js;
	} keep[] = {
		{"beyond-double", "[1e400, -1e400, 2.5]"},
		{"beyond-int64", "{\"n\": 99999999999999999999, \"m\": -99999999999999999999}"},
		{"nul-in-name", "{\"k\\u0000\": 1}"},
		{"nul-in-string", "[\"a\\u0000b\"]"},
		{"lone-surrogates", "[\"\\ud834\", \"\\udd1e\", \"\\ud834\\u0041\"]"},
		{"surrogate-pair", "[\"\\ud834\\udd1e\"]"},
		{"duplicate-names", "{\"a\": 1, \"a\": 2}"},
		{"numbers-as-written", "[0.1, -0, 1E+2, 1.0e-400]"},
	};
	emh_error err;
	int rc;

	diag("json: valid texts jansson refuses, nesting limits, refusals");
	for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++)
		json_kept(keep[i].name, keep[i].js, true);

	char *js = nested(91);
	json_kept("91-levels", js, false);
	free(js);
	js = nested(92);
	json_kept("92-levels", js, true);
	free(js);
	js = nested(1001);
	json_kept("1001-levels", js, true);
	free(js);
	js = nested(1002);
	rc = insert_doc("je-1002", NULL, js, NULL, &err);
	is_int(rc, EMH_EINVAL, "json nested 1002 levels is EMH_EINVAL");
	like_str(err.message, "field 'js': invalid json: nested deeper than 1000 levels", "and says so");
	free(js);
	js = nested(5000);
	rc = insert_doc("je-5000", NULL, js, NULL, &err);
	is_int(rc, EMH_EINVAL, "json nested 5000 levels is EMH_EINVAL");
	free(js);

	static const struct {
		const char *js;
		int at;
	} bad[] = {
		{"[1e400,]", 8},           /* a replaced number does not hide an error after it */
		{"[\"\\ud834\" 1]", 11},   /* nor does a replaced escape */
		{"[01e400]", 2},           /* not a number: never replaced */
		{"[\"\\u00zz\"]", 7},
		{"[\"\xff\"]", 2},         /* not UTF-8 */
		{"{\"a\":1} x", 9},
		{"{\"secret\": tru}", 14},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char at[32];
		rc = insert_doc("je-bad", NULL, bad[i].js, NULL, &err);
		is_int(rc, EMH_EINVAL, "invalid json %zu is EMH_EINVAL", i);
		like_str(err.message, "field 'js': invalid json: ", "invalid json %zu: the message names the field", i);
		snprintf(at, sizeof at, " at byte %d", bad[i].at);
		like_str(err.message, at, "invalid json %zu: and the byte offset", i);
	}
	ok(strstr(err.message, "secret") == NULL && strstr(err.message, "tru") == NULL,
	   "the message does not quote the value: %s", err.message);
}

/* Upsert one mt_up in its own fork. */
static int upsert_up(const char *k, const char *mail, int64_t n, emh_error *err)
{
	emh_em *em;
	emh_repo *r;
	mt_up *u;
	int rc = emh_host_fork(g_host, "mg", &em, err);
	if (rc)
		return rc;
	if ((rc = emh_em_repo(em, &g_up, &r, err)) == 0 && (rc = emh_repo_new(r, (void **)&u, err)) == 0) {
		u->k = k;
		u->mail = mail;
		u->n = n;
		rc = emh_repo_upsert(r, u, err);
	}
	emh_em_close(em);
	return rc;
}

static char *raw_up(const char *k)
{
	bson_t key = BSON_INITIALIZER;
	BSON_APPEND_UTF8(&key, "k", k);
	char *out = raw_doc_by(g_up_table, &key);
	bson_destroy(&key);
	return out;
}

#define UP_THREADS 8

static void *up_worker(void *p)
{
	thr_arg *a = p;
	emh_error err;
	a->rc = upsert_up("race", NULL, a->t, &err);
	if (a->rc)
		snprintf(a->msg, sizeof a->msg, "%s", err.message);
	return NULL;
}

/* Upsert replaces the whole document; another unique field still conflicts. */
static void test_upsert(void)
{
	emh_error err;
	char *raw;
	int rc;

	diag("upsert");
	rc = upsert_up("a", "a@example.org", 1, &err);
	is_int(rc, 0, "upsert of a new key");
	raw = raw_up("a");
	like_str(raw, "\"mail\" : \"a@example.org\"", "the document is inserted");
	free(raw);
	rc = upsert_up("a", NULL, 2, &err);
	is_int(rc, 0, "upsert of the same key with a NULL mail");
	raw = raw_up("a");
	ok(raw && strstr(raw, "\"mail\"") == NULL && strstr(raw, "\"2\"") != NULL,
	   "the document is replaced whole: the NULL unique field is gone, n is 2 (%s)", raw ? raw : "none");
	free(raw);
	rc = upsert_up("b", "b@example.org", 3, &err);
	is_int(rc, 0, "upsert key 'b' with mail b@");
	rc = upsert_up("a", "b@example.org", 4, &err);
	is_int(rc, EMH_ECONFLICT, "upsert of 'a' with b's mail is EMH_ECONFLICT");
	is_int(err.native, 11000, "native code 11000");
	ok(strstr(err.message, "mail") != NULL && strstr(err.message, "b@example.org") == NULL,
	   "the message names the index, not the value: %s", err.message);

	static thr_arg args[UP_THREADS];
	int failed = run_threads(UP_THREADS, up_worker, args, sizeof args[0]);
	is_int(failed, 0, "%d threads upserting one new key all succeed", UP_THREADS);
	mongoc_collection_t *coll = mongoc_client_get_collection(g_raw, g_db, g_up_table);
	bson_t filter = BSON_INITIALIZER;
	BSON_APPEND_UTF8(&filter, "_id", "race");
	int64_t n = mongoc_collection_count_documents(coll, &filter, NULL, NULL, NULL, NULL);
	is_int(n, 1, "one document for the key");
	bson_destroy(&filter);
	mongoc_collection_destroy(coll);
}

/* update_where n += d on the mt_up of key k: its status; n read back after it in *n. */
static int up_add(const char *k, int64_t d, int64_t *n, emh_error *err)
{
	emh_em *em;
	emh_repo *r;
	emh_query *q;
	emh_sets *s;
	mt_up *u = NULL;
	int64_t affected = -1;
	int rc = emh_host_fork(g_host, "mg", &em, err);
	if (rc)
		return rc;
	if (!(rc = emh_em_repo(em, &g_up, &r, err)) && !(rc = emh_repo_query(r, &q, err)) &&
	    !(rc = emh_repo_sets(r, &s, err))) {
		emh_q_where(q, emh_q_eq(q, "k", emh_v_text(k)));
		emh_sets_add(s, "n", emh_v_int64(d));
		rc = emh_repo_update_where(r, q, s, &affected, err);
		if (!rc && affected != 1)
			rc = emh_error_set(err, EMH_EDRIVER, "update_where on '%s' matched %lld documents", k,
					   (long long)affected);
		if (!rc && !(rc = emh_repo_get(r, emh_v_text(k), (void **)&u, err)))
			*n = u->n;
	}
	emh_em_close(em);
	return rc;
}

/*
 * The overflow guard of update_where's int64 deltas at its very edges: up
 * to INT64_MAX and down to INT64_MIN exactly is no overflow.  (The
 * conformance suite checks the refusals, and the int32 edges, on every
 * server.)  A real mongod only: the mongo-wire test server (CongoDB) cannot
 * $inc an int64 beyond +-2^53 at all.
 */
static void test_int64_edges(void)
{
	const char *kind = getenv("EMH_TEST_MONGO_KIND");
	emh_error err;
	int64_t n = 0;

	diag("update_where: int64 deltas up to the edges of int64");
	if (kind && strcmp(kind, "congo") == 0) {
		skip(4, "the mongo-wire test server (CongoDB) cannot $inc an int64 beyond +-2^53");
		return;
	}
	if (upsert_up("i64max", NULL, INT64_MAX - 1, &err) || upsert_up("i64min", NULL, INT64_MIN + 1, &err))
		bail("upsert the int64 rows: %s", err.message);
	int rc = up_add("i64max", 1, &n, &err);
	if (rc)
		diag("%s", err.message);
	is_int(rc, 0, "int64 + 1 up to INT64_MAX exactly is no overflow");
	ok(rc == 0 && n == INT64_MAX, "and reads back INT64_MAX (%lld)", (long long)n);
	rc = up_add("i64min", -1, &n, &err);
	if (rc)
		diag("%s", err.message);
	is_int(rc, 0, "int64 - 1 down to INT64_MIN exactly is no overflow");
	ok(rc == 0 && n == INT64_MIN, "and reads back INT64_MIN (%lld)", (long long)n);
}

static int insert_dr(const char *name, int64_t *id, emh_error *err)
{
	emh_em *em;
	emh_repo *r;
	mt_dr *d;
	int rc = emh_host_fork(g_host, "mg", &em, err);
	if (rc)
		return rc;
	if ((rc = emh_em_repo(em, &g_dr, &r, err)) == 0 && (rc = emh_repo_new(r, (void **)&d, err)) == 0) {
		d->name = name;
		if ((rc = emh_repo_insert(r, d, err)) == 0)
			*id = d->id;
	}
	emh_em_close(em);
	return rc;
}

static int probe_run(const char *text, emh_error *err)
{
	emh_em *em;
	int rc = emh_host_fork(g_host, "mgprobe", &em, err);
	if (rc)
		return rc;
	rc = emh_em_execute(em, text, err);
	emh_em_close(em);
	return rc;
}

static bool raw_has_collection(const char *name)
{
	mongoc_database_t *db = mongoc_client_get_database(g_raw, g_db);
	bool has = mongoc_database_has_collection(db, name, NULL);
	mongoc_database_destroy(db);
	return has;
}

/* drop: the collection and its key counter go; a missing one is fine; sync makes it again. */
static void test_drop(const char *uri)
{
	emh_error err;
	int64_t id = 0;
	int rc;

	diag("drop");
	if (!uri) {
		skip(12, "cannot parse EMH_TEST_MONGO_URI into host and port");
		return;
	}
	for (int i = 0; i < 3; i++) {
		char name[16];
		snprintf(name, sizeof name, "dr%d", i);
		rc = insert_dr(name, &id, &err);
	}
	ok(rc == 0 && id == 3, "three rows with generated keys 1..3 (last %lld)", (long long)id);
	ok(raw_has_collection(g_dr_table), "the collection exists");
	rc = probe_run("probe-drop", &err);
	if (rc)
		diag("%s", err.message);
	is_int(rc, 0, "drop");
	ok(!raw_has_collection(g_dr_table), "the collection is gone");
	mongoc_collection_t *counters = mongoc_client_get_collection(g_raw, g_db, "emh_counters");
	bson_t filter = BSON_INITIALIZER;
	BSON_APPEND_UTF8(&filter, "_id", g_dr_table);
	is_int(mongoc_collection_count_documents(counters, &filter, NULL, NULL, NULL, NULL), 0,
	       "its key counter is gone");
	rc = probe_run("probe-drop", &err);
	is_int(rc, 0, "dropping a missing collection succeeds");
	rc = probe_run("probe-drop-reserved", &err);
	is_int(rc, EMH_EINVAL, "the counters collection is never dropped");
	ok(mongoc_collection_count_documents(counters, &(bson_t)BSON_INITIALIZER, NULL, NULL, NULL, NULL) > 0,
	   "the other counters are kept");
	bson_destroy(&filter);
	mongoc_collection_destroy(counters);

	rc = emh_host_sync_schema(g_host, "mg", &err);
	is_int(rc, 0, "sync makes the collection again");
	rc = insert_dr("again", &id, &err);
	ok(rc == 0 && id == 1, "keys start at 1 again (got %lld)", (long long)id);
	rc = insert_dr("again", &id, &err);
	is_int(rc, EMH_ECONFLICT, "the unique index is back");
	rc = probe_run("{\"ping\": 1}", &err);
	is_int(rc, 0, "other commands pass through the probe");
}

/* Contexts from parameters (no url) and bad parameters. */
static void test_params(const char *uri)
{
	emh_error err;
	bson_error_t be;
	mongoc_uri_t *u = mongoc_uri_new_with_error(uri, &be);
	const mongoc_host_list_t *hl = u ? mongoc_uri_get_hosts(u) : NULL;
	char port[16];
	int rc;

	diag("contexts from host/port parameters");
	if (!hl) {
		skip(7, "cannot parse EMH_TEST_MONGO_URI");
		mongoc_uri_destroy(u);
		return;
	}
	snprintf(port, sizeof port, "%u", (unsigned)hl->port);
	rc = emh_host_add_context(g_host, "mgp",
				  (const char *const[]){"driver", "mongo", "host", hl->host, "port", port, "database",
							g_db, "server_selection_timeout_ms", "3000", "app_name",
							"emh-test", "retryWrites", "true", NULL},
				  &err);
	if (rc)
		diag("%s", err.message);
	is_int(rc, 0, "context from host, port, database and options");
	rc = emh_host_ping(g_host, "mgp", &err);
	if (rc)
		diag("%s", err.message);
	is_int(rc, 0, "ping it");
	{
		/* A server that is down does not stop the context, and is reported promptly. */
		struct timespec t0, t1;
		rc = emh_host_add_context(g_host, "mgdown",
					  (const char *const[]){"driver", "mongo", "host", "127.0.0.1", "port", "1",
								"server_selection_timeout_ms", "300", NULL},
					  &err);
		is_int(rc, 0, "a context on a closed port is created (no I/O)");
		clock_gettime(CLOCK_MONOTONIC, &t0);
		rc = emh_host_ping(g_host, "mgdown", &err);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
		is_int(rc, EMH_EUNAVAILABLE, "ping it: EMH_EUNAVAILABLE");
		ok(ms < 2000, "within server_selection_timeout_ms (300) plus slack: %.0f ms", ms);
	}
	rc = emh_host_add_context(g_host, "mgbad",
				  (const char *const[]){"driver", "mongo", "host", "h/?x=1&", NULL}, &err);
	ok(rc != 0, "a host with URI characters is refused (%s)", emh_status_name(rc));
	rc = emh_host_add_context(g_host, "mgbad2",
				  (const char *const[]){"driver", "mongo", "host", "127.0.0.1", "tls", "maybe", NULL}, &err);
	ok(rc != 0, "a malformed option is refused (%s)", emh_status_name(rc));
	mongoc_uri_destroy(u);
}

/*
 * A connect with no file descriptor left: EMH_ENOFD, retryable, "out of file
 * descriptors" (driver.h), not EMH_EUNAVAILABLE marking the context down.
 */
static void test_out_of_fds(const char *uri)
{
	emh_error err;
	diag("a connect with no file descriptor left: EMH_ENOFD, not 'database down'");
	if (emh_host_add_context(g_host, "nofd", (const char *const[]){"url", uri, NULL}, &err))
		bail("add 'nofd': %s", err.message);
	int rc = fixture_ping_without_fds(g_host, "nofd", &err);
	is_int(rc, EMH_ENOFD, "EMH_ENOFD");
	like_str(err.message, "out of file descriptors", "the message says so: %s", err.message);
	ok(err.retryable, "retryable");
	ok(fixture_context_info(g_host, "nofd").up, "the context is not marked down");
	is_int(emh_host_ping(g_host, "nofd", &err), 0, "descriptors back: it connects");
	if (emh_host_remove_context(g_host, "nofd", &err))
		bail("remove 'nofd': %s", err.message);
}

int main(void)
{
	const char *uri = getenv("EMH_TEST_MONGO_URI");
	const char *builddir = getenv("EMH_BUILDDIR");
	char plugin_dir[1024];
	emh_error err;
	bson_error_t be;

	plan_lazy();
	if (!uri || !*uri) {
		need_server(1, "mongo: EMH_TEST_MONGO_URI not set (run scripts/servers/mongo.sh start STATE_DIR)");
		return done_testing();
	}
	/* Shared hold on the server: fault tests take this lock exclusively
	 * before stopping it (see fault.sh). */
	const char *state = getenv("EMH_TEST_STATE_DIR");
	if (state && *state) {
		char lock[1024];
		snprintf(lock, sizeof lock, "%s/mongo/use.lock", state);
		int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
		if (fd >= 0 && flock(fd, LOCK_SH) != 0)
			diag("cannot lock %s", lock);
	}
	snprintf(g_doc_table, sizeof g_doc_table, "mgt_%ld_doc", (long)getpid());
	snprintf(g_kv_table, sizeof g_kv_table, "mgt_%ld_kv", (long)getpid());
	snprintf(g_up_table, sizeof g_up_table, "mgt_%ld_up", (long)getpid());
	snprintf(g_dr_table, sizeof g_dr_table, "mgt_%ld_dr", (long)getpid());
	g_doc = (emh_entity){.name = "mt_doc", .table = g_doc_table, .size = sizeof(mt_doc), .fields = mt_doc_fields,
			     .nfields = sizeof mt_doc_fields / sizeof mt_doc_fields[0]};
	g_kv = (emh_entity){.name = "mt_kv", .table = g_kv_table, .size = sizeof(mt_kv), .fields = mt_kv_fields,
			    .nfields = sizeof mt_kv_fields / sizeof mt_kv_fields[0]};
	g_up = (emh_entity){.name = "mt_up", .table = g_up_table, .size = sizeof(mt_up), .fields = mt_up_fields,
			    .nfields = sizeof mt_up_fields / sizeof mt_up_fields[0]};
	g_dr = (emh_entity){.name = "mt_dr", .table = g_dr_table, .size = sizeof(mt_dr), .fields = mt_dr_fields,
			    .nfields = sizeof mt_dr_fields / sizeof mt_dr_fields[0]};

	mongoc_init();
	mongoc_uri_t *u = mongoc_uri_new_with_error(uri, &be);
	if (!u)
		bail("EMH_TEST_MONGO_URI: %s", be.message);
	snprintf(g_db, sizeof g_db, "%s", mongoc_uri_get_database(u) ? mongoc_uri_get_database(u) : "emh");
	const mongoc_host_list_t *hl = mongoc_uri_get_hosts(u);
	char host[256] = "", port[16] = "";
	if (hl) {
		snprintf(host, sizeof host, "%s", hl->host);
		snprintf(port, sizeof port, "%u", (unsigned)hl->port);
	}
	g_raw = mongoc_client_new_from_uri(u);
	mongoc_uri_destroy(u);

	snprintf(plugin_dir, sizeof plugin_dir, "%s/plugins-build", builddir ? builddir : ".");
	/* The plugin the host loads from plugin_dir (dlopen hands back the same
	 * object), registered once more as the drop probe. */
	char plugin[1100];
	snprintf(plugin, sizeof plugin, "%s/mongo.so", plugin_dir);
	void *dl = dlopen(plugin, RTLD_NOW | RTLD_LOCAL);
	if (!dl || !(g_mongo = dlsym(dl, EMH_DRIVER_SYMBOL)))
		bail("%s: %s", plugin, dlerror());
	if (!g_mongo->drop || !g_mongo->upsert)
		bail("%s: no drop or upsert member", plugin);
	g_probe = *g_mongo;
	g_probe.name = "mongo_probe";
	g_probe.url_schemes = NULL;
	g_probe.execute = probe_execute;
	const emh_driver *statics[] = {&g_probe};
	const char *envp[] = {NULL};
	emh_host_opts o = {.plugin_dir = plugin_dir, .drivers = statics, .ndrivers = 1, .envp = envp,
			   .log_level = EMH_LOG_ERROR};
	if (emh_host_new(&o, &g_host, &err))
		bail("emh_host_new: %s", err.message);
	if (emh_host_add_context(g_host, "mg", (const char *const[]){"url", uri, "pool.max", "8", NULL}, &err) ||
	    emh_host_register_entity(g_host, "mg", &g_doc, &err) ||
	    emh_host_register_entity(g_host, "mg", &g_kv, &err) ||
	    emh_host_register_entity(g_host, "mg", &g_up, &err) ||
	    emh_host_register_entity(g_host, "mg", &g_dr, &err))
		bail("context mg: %s", err.message);
	if (hl && emh_host_add_context(g_host, "mgprobe",
				       (const char *const[]){"driver", "mongo_probe", "host", host, "port", port,
							     "database", g_db, NULL},
				       &err))
		bail("context mgprobe: %s", err.message);
	int rc = emh_host_sync_schema(g_host, "mg", &err);
	if (rc)
		diag("%s", err.message);
	is_int(rc, 0, "sync the test collections");
	rc = emh_host_sync_schema(g_host, "mg", &err);
	is_int(rc, 0, "sync again (idempotent)");

	test_verbatim();
	test_like();
	test_keys();
	test_errors();
	test_layout();
	test_json_edges();
	test_upsert();
	test_int64_edges();
	test_drop(hl ? uri : NULL);
	test_params(uri);
	test_out_of_fds(uri);

	{
		emh_em *em;
		char cmd[256];
		if (emh_host_fork(g_host, "mg", &em, &err) == 0) {
			snprintf(cmd, sizeof cmd, "{\"drop\": \"%s\"} {\"drop\": \"%s\"} {\"drop\": \"%s\"} {\"drop\": \"%s\"}",
				 g_doc_table, g_kv_table, g_up_table, g_dr_table);
			rc = emh_em_execute(em, cmd, &err);
			is_int(rc, 0, "drop the test collections");
			emh_em_close(em);
		}
	}
	emh_host_free(g_host);
	dlclose(dl);
	mongoc_client_destroy(g_raw);
	mongoc_cleanup();
	return done_testing();
}
