/* SPDX-License-Identifier: MIT */
/*
 * tests/web/test_web.c: the service toolkit (emhost/web.h) and declared
 * routes (service ABI 1.1) without a daemon: entities to and from JSON with
 * every field type and per-field problems, RFC 3339 times, the one error
 * mapping, routes matched by emh_scope_handle (parameters, 404, 405 +
 * Allow, a fallback handle) and refused at load (shadowing pairs named,
 * malformed patterns), paged listings, the retry wrapper and the OpenAPI
 * document's shape, on a SQLite default context.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <emhost/emhost.h>
#include <emhost/service.h>
#include <emhost/web.h>

#include "../fixture.h"
#include "../tap.h"

typedef struct item {
	int64_t id;
	const char *name;
	int32_t qty;
	bool active;
	double price;
	emh_blob data;
	emh_time created_at;
	const char *meta;
	const char *secret;
	int64_t big;
	const char *note; /* nullable */
	int64_t rank;     /* nullable scalar */
} item;

static const emh_field item_fields[] = {
	EMH_FIELD(item, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD_LEN(item, name, EMH_T_TEXT, 0, 8),
	EMH_FIELD(item, qty, EMH_T_INT32, 0),
	EMH_FIELD(item, active, EMH_T_BOOL, 0),
	EMH_FIELD(item, price, EMH_T_DOUBLE, 0),
	EMH_FIELD_LEN(item, data, EMH_T_BLOB, EMH_F_NULLABLE, 4),
	EMH_FIELD(item, created_at, EMH_T_TIMESTAMP, EMH_F_READONLY),
	EMH_FIELD(item, meta, EMH_T_JSON, EMH_F_NULLABLE),
	EMH_FIELD(item, secret, EMH_T_TEXT, EMH_F_HIDDEN | EMH_F_NULLABLE),
	EMH_FIELD(item, big, EMH_T_INT64, EMH_F_NULLABLE),
	EMH_FIELD(item, note, EMH_T_TEXT, EMH_F_NULLABLE),
	EMH_FIELD(item, rank, EMH_T_INT64, EMH_F_NULLABLE),
};
static const emh_entity item_entity = EMH_ENTITY(item, "web_items", item_fields);

/* Every type emh_web_reply_object writes without a jansson tree. */
typedef struct plain {
	int64_t id;
	const char *name;
	int32_t n32;
	bool on;
	emh_time at;
	emh_blob data; /* nullable */
	const char *note; /* nullable */
	int64_t rank;     /* nullable scalar */
	const char *secret;
} plain;

static const emh_field plain_fields[] = {
	EMH_FIELD(plain, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(plain, name, EMH_T_TEXT, 0),
	EMH_FIELD(plain, n32, EMH_T_INT32, 0),
	EMH_FIELD(plain, on, EMH_T_BOOL, 0),
	EMH_FIELD(plain, at, EMH_T_TIMESTAMP, 0),
	EMH_FIELD(plain, data, EMH_T_BLOB, EMH_F_NULLABLE),
	EMH_FIELD(plain, note, EMH_T_TEXT, EMH_F_NULLABLE),
	EMH_FIELD(plain, rank, EMH_T_INT64, EMH_F_NULLABLE),
	EMH_FIELD(plain, secret, EMH_T_TEXT, EMH_F_HIDDEN | EMH_F_NULLABLE),
};
static const emh_entity plain_entity = EMH_ENTITY(plain, "web_plain", plain_fields);

static fixture fx;
static emh_host *host;

/* ---- a service with routes ---- */

static int r_get(emh_scope *s, const emh_request *req, emh_response *res, emh_error *err)
{
	char body[128];
	int n = snprintf(body, sizeof body, "get %lld", (long long)emh_request_param_int64(req, "id"));
	return emh_response_set(res, 200, "text/plain", body, (size_t)n, err);
}

static int r_name(emh_scope *s, const emh_request *req, emh_response *res, emh_error *err)
{
	const char *v = emh_request_param(req, "name");
	return emh_response_set(res, 200, "text/plain", v, strlen(v), err);
}

/* "<a>|<b>|<params>": two text parameters and how many the route got. */
static int r_pair(emh_scope *s, const emh_request *req, emh_response *res, emh_error *err)
{
	const char *a = emh_request_param(req, "a"), *b = emh_request_param(req, "b");
	size_t n = strlen(a) + strlen(b) + 32;
	char *body = malloc(n);
	int len = snprintf(body, n, "%s|%s|%zu", a, b, req->nparams);
	int rc = emh_response_set(res, 200, "text/plain", body, (size_t)len, err);
	free(body);
	return rc;
}

static int r_list(emh_scope *s, const emh_request *req, emh_response *res, emh_error *err)
{
	emh_repo *repo;
	int rc = emh_scope_repo_at(s, 0, &repo, err);
	return rc ? rc : emh_web_list(repo, NULL, req, &(emh_web_list_opts){.max_limit = 3}, res, err);
}

static int r_create(emh_scope *s, const emh_request *req, emh_response *res, emh_error *err)
{
	emh_repo *repo;
	item *it;
	int rc;
	if ((rc = emh_scope_repo_at(s, 0, &repo, err)) || (rc = emh_repo_new(repo, (void **)&it, err)) ||
	    (rc = emh_web_read_body(req, emh_repo_em(repo), &item_entity, it, 0, res, err)))
		return rc;
	it->created_at = emh_web_now();
	if ((rc = emh_em_flush(emh_repo_em(repo), err)))
		return rc;
	return emh_web_reply_created(s, res, "/items", emh_repo_em(repo), &item_entity, it, err);
}

static int fallback(emh_scope *s, const emh_request *req, emh_response *res, emh_error *err)
{
	return emh_response_set(res, 200, "text/plain", "fallback", 8, err);
}

static int fini_calls;
static void count_fini(emh_svc *svc, void *state)
{
	(void)svc, (void)state;
	fini_calls++;
}

static const emh_need needs[] = {EMH_NEED_REPO(&item_entity, NULL)};

static const emh_route routes[] = {
	EMH_ROUTE_DOC("GET", "/items", r_list, .summary = "list", .reply = &item_entity, .flags = EMH_ROUTE_LIST),
	EMH_ROUTE_DOC("POST", "/items", r_create, .body = &item_entity, .reply = &item_entity,
		      .flags = EMH_ROUTE_CREATED),
	EMH_ROUTE("GET", "/items/:id", r_get),
	EMH_ROUTE("DELETE", "/items/{id:int64}", r_get),
	EMH_ROUTE("GET", "/by-name/{name:text}", r_name),
	EMH_ROUTE("GE", "/items/:id", r_get), /* a method inside another's name */
	EMH_ROUTE("PUT", "/items/{id:int64}", r_get),
	EMH_ROUTE("GET", "/pair/{a:text}/{b}", r_pair),
};

static const emh_service web_svc = {
	EMH_SERVICE_HEADER,
	.name = "shopweb",
	.version = "1",
	.needs = needs,
	.nneeds = 1,
	.routes = routes,
	.nroutes = EMH_ROUTES_COUNT(routes),
};

/* Run one request through a scope; the answer's status, body into buf. */
static int call(emh_services *svcs, const char *svc, const char *method, const char *path, const char *query,
		const emh_kv *args, size_t nargs, const char *body, emh_response *res, emh_error *err)
{
	emh_scope *scope;
	emh_response_reset(res);
	int rc = emh_scope_open(svcs, svc, &scope, err);
	if (rc)
		return rc;
	emh_request req = {.method = method, .path = path, .query = query ? query : "", .args = args, .nargs = nargs,
			   .body = body, .body_len = body ? strlen(body) : 0};
	rc = emh_scope_handle(scope, &req, res, err);
	emh_scope_close(scope);
	emh_web_answer(res, rc, err, NULL, path);
	return rc;
}

static json_t *res_json(const emh_response *res)
{
	size_t len;
	const char *b = emh_response_body(res, &len);
	return b ? json_loadb(b, len, 0, NULL) : NULL;
}

static const char *res_header(const emh_response *res, const char *name)
{
	for (size_t i = 0; i < emh_response_nheaders(res); i++)
		if (strcmp(emh_response_header(res, i)->name, name) == 0)
			return emh_response_header(res, i)->value;
	return NULL;
}

static void test_json(void)
{
	emh_error err;
	emh_em *em = fixture_fork(host, NULL);
	emh_repo *repo = fixture_repo(em, &item_entity);
	item *it = fixture_new(repo);
	json_t *in = json_loads("{\"name\":\"pen\",\"qty\":3,\"active\":true,\"price\":1.5,\"data\":\"AQID\","
				"\"meta\":{\"a\":[1,2]},\"secret\":\"pw\",\"big\":9007199254740993,\"note\":null,"
				"\"created_at\":\"2001-01-01T00:00:00Z\",\"id\":77}",
				0, NULL);
	json_t *problems = NULL;
	is_int(emh_json_into_object(em, &item_entity, in, it, 0, &problems, &err), 0, "a good body is read");
	json_decref(in);
	ok(problems == NULL, "with no problems");
	is_str(it->name, "pen", "text");
	is_int(it->qty, 3, "int32");
	ok(it->active && it->price == 1.5, "bool and double");
	ok(it->data.len == 3 && memcmp(it->data.data, "\1\2\3", 3) == 0, "base64 decoded into the blob");
	is_str(it->meta, "{\"a\":[1,2]}", "a JSON member kept as JSON text");
	is_str(it->secret, "pw", "a hidden field is accepted on input");
	ok(it->big == 9007199254740993LL, "int64 beyond 2^53 exact");
	ok(it->id == 0 && it->created_at == 0, "the generated key and a read-only field are ignored");
	it->created_at = 1714564800123456LL;
	emh_em_set_null(em, it, "rank", true, NULL);

	json_t *out = emh_json_from_object(em, &item_entity, it, 0);
	ok(!json_object_get(out, "secret"), "a hidden field is never serialised");
	is_str(json_string_value(json_object_get(out, "created_at")), "2024-05-01T12:00:00.123456Z",
	       "a timestamp as RFC 3339 UTC");
	is_str(json_string_value(json_object_get(out, "data")), "AQID", "a blob as base64");
	ok(json_is_object(json_object_get(out, "meta")), "a JSON field as its value");
	ok(json_is_integer(json_object_get(out, "big")), "int64 as a number by default");
	ok(json_is_null(json_object_get(out, "note")) && json_is_null(json_object_get(out, "rank")),
	   "NULL text and a NULL scalar as null");
	json_decref(out);
	out = emh_json_from_object(em, &item_entity, it, EMH_JSON_INT64_STRINGS);
	is_str(json_string_value(json_object_get(out, "big")), "9007199254740993", "beyond 2^53 as a string when asked");
	ok(json_is_integer(json_object_get(out, "qty")), "small numbers stay numbers");
	json_decref(out);

	/* every problem, and nothing written */
	in = json_loads("{\"name\":\"far too long\",\"qty\":4294967296,\"active\":\"yes\",\"pad\":1,"
			"\"data\":\"!!\"}", 0, NULL);
	is_int(emh_json_into_object(em, &item_entity, in, it, EMH_JSON_REFUSE_READONLY, &problems, &err), EMH_EINVAL,
	       "a bad body is EMH_EINVAL");
	like_str(err.message, "invalid request body: ", "the message says so");
	like_str(err.message, "more)", "and counts the other problems");
	size_t np = json_array_size(problems);
	is_int(np, 6, "six problems: too long, range, type, unknown, base64, missing price");
	char kinds[256] = "";
	for (size_t i = 0; i < np; i++) {
		json_t *p = json_array_get(problems, i);
		strcat(kinds, json_string_value(json_object_get(p, "field")));
		strcat(kinds, ":");
		strcat(kinds, json_string_value(json_object_get(p, "problem")));
		strcat(kinds, " ");
	}
	like_str(kinds, "name:too_long", "too long");
	like_str(kinds, "qty:type", "an int32 out of range");
	like_str(kinds, "active:type", "wrong type");
	like_str(kinds, "pad:unknown", "an unknown member");
	like_str(kinds, "data:type", "bad base64");
	like_str(kinds, "price:missing", "a missing required field");
	is_str(it->name, "pen", "nothing was written");
	json_decref(problems);
	json_decref(in);

	in = json_loads("{\"id\":5,\"pad\":1}", 0, NULL);
	is_int(emh_json_into_object(em, &item_entity, in, it, EMH_JSON_PARTIAL | EMH_JSON_REFUSE_READONLY, &problems,
				    &err),
	       EMH_EINVAL, "a read-only member refused when asked");
	like_str(err.message, "field 'id' is read-only", "naming it");
	json_decref(problems);
	is_int(emh_json_into_object(em, &item_entity, in, it, EMH_JSON_PARTIAL | EMH_JSON_IGNORE_UNKNOWN, NULL, &err), 0,
	       "partial, unknown ignored: nothing required");
	json_decref(in);
	in = json_loads("{\"name\":\"n\",\"qty\":1,\"active\":false,\"price\":2,\"data\":\"AQIDBAU=\"}", 0, NULL);
	emh_json_into_object(em, &item_entity, in, it, 0, NULL, &err);
	like_str(err.message, "field 'data' is 5 bytes, longer than its max_len of 4", "a blob's max_len is its bytes");
	json_decref(in);
	emh_em_close(em);

	emh_time t;
	ok(emh_web_time_parse("2024-05-01T14:00:00.5+02:00", &t) && t == 1714564800500000LL, "an offset is applied");
	ok(!emh_web_time_parse("2023-02-29T00:00:00Z", &t), "no 29 February in 2023");
	ok(!emh_web_time_parse("2024-05-01 12:00", &t), "a time without seconds or zone is refused");
	char tb[64];
	ok(emh_web_time_parse("0999-01-01T00:00:00Z", &t), "year 999 is read");
	is_str(emh_web_time_format(t, tb, sizeof tb), "0999-01-01T00:00:00.000000Z", "and written with 4 digits");
	emh_time t2;
	ok(emh_web_time_parse(tb, &t2) && t2 == t, "so what is written reads back");

	/* an int64 string is its decimal digits: no blank, no '+' */
	em = fixture_fork(host, NULL);
	it = fixture_new(fixture_repo(em, &item_entity));
	static const char *const loose[] = {"{\"name\":\"n\",\"qty\":1,\"active\":true,\"price\":1,\"big\":\" 42\"}",
					    "{\"name\":\"n\",\"qty\":1,\"active\":true,\"price\":1,\"big\":\"+42\"}",
					    "{\"name\":\"n\",\"qty\":1,\"active\":true,\"price\":1,\"big\":\"\\t42\"}"};
	for (size_t i = 0; i < sizeof loose / sizeof loose[0]; i++) {
		in = json_loads(loose[i], 0, NULL);
		is_int(emh_json_into_object(em, &item_entity, in, it, EMH_JSON_INT64_STRINGS, NULL, &err), EMH_EINVAL,
		       "an int64 string with a blank or a '+' is refused (%zu)", i);
		json_decref(in);
	}
	in = json_loads("{\"name\":\"n\",\"qty\":1,\"active\":true,\"price\":1,\"big\":\"-42\"}", 0, NULL);
	is_int(emh_json_into_object(em, &item_entity, in, it, EMH_JSON_INT64_STRINGS, NULL, &err), 0, "'-42' is read");
	ok(it->big == -42, "as -42");
	json_decref(in);
	emh_em_close(em);
}

/* emh_web_reply_object's body against json_dumps(emh_json_from_object()): byte for byte, or both refuse. */
static bool same_text(emh_em *em, const emh_entity *e, const void *obj, unsigned flags, const char *what)
{
	emh_error err;
	emh_response *res = emh_response_new();
	int rc = emh_web_reply_object(res, 200, em, e, obj, flags, &err);
	json_t *j = emh_json_from_object(em, e, obj, flags);
	char *want = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	size_t len = 0;
	const char *got = emh_response_body(res, &len);
	bool same = want ? rc == 0 && got && len == strlen(want) && strcmp(got, want) == 0 &&
				   strcmp(emh_response_content_type(res), "application/json") == 0
			 : rc == EMH_ENOMEM;
	if (!same)
		diag("%s: rc %d, body %s, jansson %s", what, rc, got ? got : "(none)", want ? want : "(refused)");
	free(want);
	emh_response_free(res);
	return same;
}

static void test_json_text(void)
{
	emh_em *em = fixture_fork(host, NULL);
	emh_repo *repo = fixture_repo(em, &plain_entity);
	plain *p = fixture_new(repo);
	static const char *const texts[] = {
		"", "plain", "quote \" and backslash \\ and slash /", "\b\f\n\r\t", "\x01\x02\x1f\x7f end",
		"caf\xc3\xa9 \xe2\x82\xac \xf0\x9d\x84\x9e", "\xef\xbf\xbf\xf4\x8f\xbf\xbf", "\"", "\\",
	};
	static const int64_t ints[] = {0, -1, 1, 9007199254740992LL, 9007199254740993LL, -9007199254740992LL,
				       -9007199254740993LL, INT64_MAX, INT64_MIN};
	static const int32_t i32s[] = {0, -7, INT32_MAX, INT32_MIN};
	static const emh_time times[] = {0, 1714564800123456LL, -1, -86400000001LL};
	static const unsigned char bytes[] = {0, 0xff, 0xfe, 0x80, 'a'};
	bool all = true;
	char what[64];
	for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
		p->name = texts[i];
		p->note = i % 2 ? texts[i] : NULL;
		p->secret = "never shown";
		p->n32 = i32s[i % 4];
		p->on = i % 2;
		p->at = times[i % 4];
		p->data = i % 3 ? (emh_blob){.data = bytes, .len = i % 6} : (emh_blob){0};
		emh_em_set_null(em, p, "rank", i % 2, NULL);
		for (size_t k = 0; k < sizeof ints / sizeof ints[0]; k++) {
			p->id = ints[k];
			p->rank = ints[(k + i) % (sizeof ints / sizeof ints[0])];
			snprintf(what, sizeof what, "text %zu, int %zu", i, k);
			all &= same_text(em, &plain_entity, p, 0, what);
			all &= same_text(em, &plain_entity, p, EMH_JSON_INT64_STRINGS, what);
		}
	}
	ok(all, "an object's JSON written directly is jansson's text, byte for byte, for every type and escape");
	all = true;
	static const char *const bad[] = {"\xff", "a\xc0\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80", "x\xe2\x82",
					  "\xc3", "\x80"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		p->name = bad[i];
		snprintf(what, sizeof what, "not UTF-8 %zu", i);
		all &= same_text(em, &plain_entity, p, 0, what);
	}
	ok(all, "text that is not UTF-8: the same text on both paths");
	/* stored bytes that are not UTF-8 are written as U+FFFD each: one such
	 * row once made every answer holding it a 500 "out of memory" */
	p->name = "caf\xe9 \xc3";
	json_t *lossy = emh_json_from_object(em, &plain_entity, p, 0);
	is_str(json_string_value(json_object_get(lossy, "name")), "caf\xef\xbf\xbd \xef\xbf\xbd",
	       "text that is not UTF-8 is written with U+FFFD for each bad byte");
	json_decref(lossy);
	emh_response *lres = emh_response_new();
	emh_error lerr;
	is_int(emh_web_reply_object(lres, 200, em, &plain_entity, p, 0, &lerr), 0, "and the reply goes out (no 500)");
	like_str(emh_response_body(lres, NULL), "caf\xef\xbf\xbd", "with that text");
	is_int(emh_web_reply_object(lres, 200, em, &plain_entity, NULL, 0, &lerr), EMH_EINVAL,
	       "emh_web_reply_object without an object is EMH_EINVAL, not a crash");
	emh_response_free(lres);
	p->name = "ok";
	ok(same_text(NULL, &plain_entity, p, 0, "no fork"), "without a fork (no NULL lookups) too");
	emh_em_close(em);

	/* a double and a JSON member: the tree, the same text */
	em = fixture_fork(host, NULL);
	item *it = fixture_new(fixture_repo(em, &item_entity));
	it->name = "pen";
	it->price = 0.1;
	it->meta = "{\"b\":[1,2.5,\"x\"]}";
	ok(same_text(em, &item_entity, it, 0, "double and json"), "an object with a double and a JSON member");
	emh_em_close(em);
}

static void test_mapping(void)
{
	is_int(emh_web_status(EMH_EINVAL), 400, "EINVAL 400");
	is_int(emh_web_status(EMH_ENOTFOUND), 404, "ENOTFOUND 404");
	is_int(emh_web_status(EMH_ECONFLICT), 409, "ECONFLICT 409");
	is_int(emh_web_status(EMH_ERETRY), 503, "ERETRY 503");
	is_int(emh_web_status(EMH_EDRIVER), 500, "EDRIVER 500");
	emh_response *res = emh_response_new();
	emh_error err;
	emh_error_set(&err, EMH_ECONFLICT, "duplicate key value violates unique constraint \"x\"");
	err.native = 23505;
	emh_web_answer_error(res, &err, NULL, "/x");
	json_t *j = res_json(res);
	is_int(emh_response_status(res), 409, "a driver's conflict -> 409");
	is_str(json_string_value(json_object_get(json_object_get(j, "error"), "message")), "conflict",
	       "with a fixed message, never the database's text");
	json_decref(j);
	emh_error_set(&err, EMH_EUNAVAILABLE, "connection refused");
	emh_error_context(&err, EMH_EUNAVAILABLE, "orders");
	emh_web_answer_error(res, &err, NULL, "/x");
	is_int(emh_response_status(res), 503, "unavailable -> 503");
	is_str(res_header(res, "Retry-After"), "1", "with Retry-After");
	emh_response_free(res);
}

static int attempts;
static int flaky(emh_scope *s, void *ud, emh_error *err)
{
	attempts++;
	if (attempts < 3)
		return emh_error_set(err, EMH_ERETRY, "busy");
	return *(int *)ud;
}
static int never(emh_scope *s, void *ud, emh_error *err)
{
	attempts++;
	return emh_error_set(err, EMH_ECONFLICT, "a unique value");
}
/* A unit of work that reads item 1 through the scope (ud: the entity). */
static int get_one(emh_scope *s, void *ud, emh_error *err)
{
	emh_repo *r;
	void *obj;
	attempts++;
	int rc = emh_scope_repo(s, ud, NULL, &r, err);
	return rc ? rc : emh_repo_get(r, emh_v_int64(1), &obj, err);
}

static void test_routes(void)
{
	emh_error err;
	emh_services *svcs;
	if (emh_services_new(host, &svcs, &err))
		bail("emh_services_new: %s", err.message);
	int added = emh_services_add(svcs, &web_svc, NULL, &err);
	is_int(added, 0, "a service with routes and no handle loads");
	if (added)
		diag("%s", err.message);
	emh_response *res = emh_response_new();
	size_t len;

	is_int(call(svcs, "shopweb", "GET", "/items/42", NULL, NULL, 0, NULL, res, &err), 0, "GET /items/42 routed");
	ok(strncmp(emh_response_body(res, &len), "get 42", 6) == 0, "with :id as an int64");
	is_int(call(svcs, "shopweb", "DELETE", "/items/-7/", NULL, NULL, 0, NULL, res, &err), 0,
	       "{id:int64}, negative, trailing slash");
	ok(strncmp(emh_response_body(res, &len), "get -7", 6) == 0, "the parameter read");
	is_int(call(svcs, "shopweb", "GET", "/by-name/a%20b", NULL, NULL, 0, NULL, res, &err), 0, "a text parameter");
	const char *b = emh_response_body(res, &len);
	ok(len == 3 && strncmp(b, "a b", 3) == 0, "decoded");
	/* parameter values: short ones on the dispatcher's stack, long or encoded ones allocated */
	char path[1400], want[1400], big[700], mid[400];
	memset(big, 'b', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	memset(mid, 'm', sizeof mid - 1);
	mid[sizeof mid - 1] = '\0';
	static const char *const pairs[][3] = {{"x", "y", "x|y|2"}, {"a%2Fz", "q", "a/z|q|2"}};
	for (size_t i = 0; i < 2; i++) {
		snprintf(path, sizeof path, "/pair/%s/%s", pairs[i][0], pairs[i][1]);
		call(svcs, "shopweb", "GET", path, NULL, NULL, 0, NULL, res, &err);
		b = emh_response_body(res, &len);
		ok(b && strcmp(b, pairs[i][2]) == 0, "two parameters: %s", pairs[i][2]);
	}
	const char *sizes[][2] = {{big, "s"}, {mid, mid}, {"s", big}};
	for (size_t i = 0; i < 3; i++) {
		snprintf(path, sizeof path, "/pair/%s/%s", sizes[i][0], sizes[i][1]);
		snprintf(want, sizeof want, "%s|%s|2", sizes[i][0], sizes[i][1]);
		call(svcs, "shopweb", "GET", path, NULL, NULL, 0, NULL, res, &err);
		b = emh_response_body(res, &len);
		ok(b && strcmp(b, want) == 0, "parameters of %zu and %zu bytes read whole", strlen(sizes[i][0]),
		   strlen(sizes[i][1]));
	}
	is_int(call(svcs, "shopweb", "GET", "/items/abc", NULL, NULL, 0, NULL, res, &err), EMH_ENOTFOUND,
	       "a non-integer id matches no route");
	is_int(emh_response_status(res), 404, "404");
	like_str(err.message, "no route GET /shopweb/items/abc", "naming the path");
	static const char *const ids[][2] = {
		{"-9223372036854775808", "get -9223372036854775808"}, {"9223372036854775807", "get 9223372036854775807"},
		{"00000000000000000000042", "get 42"}, {"-0", "get 0"},
		{"9223372036854775808", NULL}, {"-9223372036854775809", NULL}, {"000000000000000000000042", NULL},
		{"+1", NULL}, {"-", NULL}, {"1 ", NULL}, {"1a", NULL}, {"18446744073709551617", NULL},
	};
	for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
		char p[64];
		snprintf(p, sizeof p, "/items/%s", ids[i][0]);
		int rc = call(svcs, "shopweb", "GET", p, NULL, NULL, 0, NULL, res, &err);
		b = emh_response_body(res, &len);
		if (ids[i][1])
			ok(rc == 0 && b && strcmp(b, ids[i][1]) == 0, "int64 parameter '%s' read as %s", ids[i][0],
			   ids[i][1] + 4);
		else
			is_int(rc, EMH_ENOTFOUND, "'%s' is no int64: no route", ids[i][0]);
	}
	is_int(call(svcs, "shopweb", "GET", "/items/99999999999999999999", NULL, NULL, 0, NULL, res, &err),
	       EMH_ENOTFOUND, "an id beyond int64 matches no route");
	is_int(call(svcs, "shopweb", "PATCH", "/items/1", NULL, NULL, 0, NULL, res, &err), 0, "a wrong method answers");
	is_int(emh_response_status(res), 405, "405");
	is_str(res_header(res, "Allow"), "GET, DELETE, GE, PUT, HEAD", "Allow lists the path's methods, each once, and HEAD with GET");
	json_t *j = res_json(res);
	is_str(json_string_value(json_object_get(json_object_get(j, "error"), "code")), "method_not_allowed",
	       "with the standard error body");
	json_decref(j);
	/* HEAD on a GET route: the GET route answers (the server sends no body) */
	is_int(call(svcs, "shopweb", "HEAD", "/items/1", NULL, NULL, 0, NULL, res, &err), 0, "HEAD on a GET route answers");
	is_int(emh_response_status(res), 200, "through the GET route, 200 (was 405)");

	/* a body with problems: 400 with every field */
	is_int(call(svcs, "shopweb", "POST", "/items", NULL, NULL, 0, "{\"name\":1,\"bogus\":true}", res, &err),
	       EMH_EINVAL, "a bad body");
	is_int(emh_response_status(res), 400, "400");
	j = res_json(res);
	json_t *fields = json_object_get(json_object_get(j, "error"), "fields");
	ok(json_array_size(fields) >= 5, "listing every bad field (%zu)", json_array_size(fields));
	json_decref(j);
	is_int(call(svcs, "shopweb", "POST", "/items", NULL, NULL, 0, "{\"name\":", res, &err), EMH_EINVAL,
	       "malformed JSON");
	like_str(err.message, "malformed JSON", "says so");
	for (int i = 0; i < 5; i++) {
		char body[160];
		snprintf(body, sizeof body, "{\"name\":\"n%d\",\"qty\":%d,\"active\":true,\"price\":1}", i, i);
		call(svcs, "shopweb", "POST", "/items", NULL, NULL, 0, body, res, &err);
	}
	is_int(emh_response_status(res), 201, "POST -> 201");
	like_str(res_header(res, "Location"), "/shopweb/items/", "with a Location under the mount");
	emh_kv args[] = {{"limit", "2"}, {"offset", "1"}};
	is_int(call(svcs, "shopweb", "GET", "/items", NULL, args, 2, NULL, res, &err), 0, "a listing");
	j = res_json(res);
	is_int(json_array_size(json_object_get(j, "items")), 2, "a page of 2");
	is_int(json_integer_value(json_object_get(j, "total")), 5, "of 5 in all");
	is_str(json_string_value(json_object_get(json_array_get(json_object_get(j, "items"), 0), "name")), "n1",
	       "from offset 1, by key");
	json_decref(j);
	emh_kv loosearg[] = {{"limit", " +2"}};
	is_int(call(svcs, "shopweb", "GET", "/items", NULL, loosearg, 1, NULL, res, &err), EMH_EINVAL,
	       "a limit with a blank and a '+' is refused");
	emh_kv bad[] = {{"limit", "4"}};
	is_int(call(svcs, "shopweb", "GET", "/items", NULL, bad, 1, NULL, res, &err), EMH_EINVAL,
	       "a limit over the maximum");
	is_int(emh_response_status(res), 400, "-> 400");

	/* the retry wrapper */
	emh_scope *scope;
	emh_scope_open(svcs, "shopweb", &scope, &err);
	int final = 0;
	attempts = 0;
	is_int(emh_web_retry(scope, flaky, &final, 5, &err), 0, "retried until it worked");
	is_int(attempts, 3, "three attempts");
	attempts = 0;
	is_int(emh_web_retry(scope, never, NULL, 5, &err), EMH_ECONFLICT, "a failure retrying cannot cure");
	is_int(attempts, 1, "is not retried");
	attempts = 0;
	final = 0;
	is_int(emh_web_retry(scope, flaky, &final, 2, &err), EMH_ERETRY, "at most max_attempts");
	emh_scope_close(scope);

	/* emh_scope_reset rolls back every level, even after one failed: it
	 * stopped at the first failure, and the retry ran in a stale transaction */
	emh_scope_open(svcs, "shopweb", &scope, &err);
	emh_repo *rr = NULL;
	if (emh_scope_repo(scope, &item_entity, NULL, &rr, &err) == 0) {
		emh_em *rem = emh_repo_em(rr);
		emh_em_begin(rem, &err);
		emh_em_begin(rem, &err);
		/* the inner level's ROLLBACK TO now fails: its savepoint is gone */
		is_int(emh_em_execute(rem, "RELEASE SAVEPOINT emh_sp_2", &err), 0, "the inner savepoint released by hand");
		emh_scope_reset(scope);
		is_int(emh_em_tx_depth(rem), 0, "emh_scope_reset: no level left open after a failed rollback");
		is_int(emh_em_begin(rem, &err), 0, "and a new transaction begins: %s", err.message);
		emh_em_rollback(rem, &err);
	}
	emh_scope_close(scope);

	/* a handler that only reads opens its forks read-only */
	emh_scope_open(svcs, "shopweb", &scope, &err);
	is_int(emh_scope_fork_opts(scope, 1u << 7, NULL, &err), EMH_EINVAL, "emh_scope_fork_opts: an unknown flag");
	is_int(emh_scope_fork_opts(scope, EMH_FORK_READONLY, NULL, &err), 0, "emh_scope_fork_opts: EMH_FORK_READONLY");
	emh_repo *ro = NULL;
	void *obj = NULL;
	is_int(emh_scope_repo(scope, &item_entity, NULL, &ro, &err), 0, "a repository of the read-only scope");
	if (ro) {
		is_int(emh_repo_new(ro, &obj, &err), EMH_ESTATE, "its fork refuses a new object");
		like_str(err.message, "read-only", "saying it is read-only");
	}
	emh_scope_close(scope);

	/* EMH_FORK_NOWAIT: with every connection of the pool held, a call fails
	 * at once instead of waiting, and emh_scope_would_wait says so (emhostd's
	 * I/O thread then hands the request to a worker) */
	emh_em *held[8];
	for (int i = 0; i < 8; i++) {
		held[i] = fixture_fork(host, NULL);
		if (emh_em_execute(held[i], "SELECT 1", &err))
			bail("holding connection %d: %s", i, err.message);
	}
	emh_scope_open(svcs, "shopweb", &scope, &err);
	is_int(emh_scope_fork_opts(scope, EMH_FORK_NOWAIT, NULL, &err), 0, "emh_scope_fork_opts: EMH_FORK_NOWAIT");
	ok(!emh_scope_would_wait(scope), "no wait refused before a call");
	is_int(emh_scope_fork_opts(scope, EMH_FORK_READONLY, NULL, &err), 0, "a handler asks for read-only forks");
	emh_repo *nw = NULL;
	is_int(emh_scope_repo(scope, &item_entity, NULL, &nw, &err), 0, "a repository of the scope that may not wait");
	if (nw) {
		is_int(emh_repo_get(nw, emh_v_int64(1), &obj, &err), EMH_ETIMEOUT,
		       "the pool at its max: the call fails at once, EMH_ETIMEOUT");
		like_str(err.message, "may not wait", "saying why (NOWAIT kept under READONLY): %s", err.message);
		ok(err.retryable, "retryable");
	}
	ok(emh_scope_would_wait(scope), "emh_scope_would_wait: the scope's answer is not the request's");
	emh_scope_close(scope);
	/* emh_web_retry in a scope that may not wait: the refused wait is no
	 * failure to retry (its sleeps would stall the I/O thread, and the
	 * answer is dropped anyway), so it returns after the first attempt */
	emh_scope_open(svcs, "shopweb", &scope, &err);
	emh_scope_fork_opts(scope, EMH_FORK_NOWAIT, NULL, &err);
	attempts = 0;
	is_int(emh_web_retry(scope, get_one, (void *)&item_entity, 5, &err), EMH_ETIMEOUT,
	       "emh_web_retry: a wait refused under EMH_FORK_NOWAIT is returned");
	is_int(attempts, 1, "after one attempt, not retried");
	ok(emh_scope_would_wait(scope), "and the scope still says its answer is not the request's");
	emh_scope_close(scope);
	emh_em_close(held[0]);
	emh_scope_open(svcs, "shopweb", &scope, &err);
	emh_scope_fork_opts(scope, EMH_FORK_NOWAIT, NULL, &err);
	nw = NULL;
	emh_scope_repo(scope, &item_entity, NULL, &nw, &err);
	int got = nw ? emh_repo_get(nw, emh_v_int64(1), &obj, &err) : -100;
	ok(got == 0 || got == EMH_ENOTFOUND, "a connection free: the same call runs (%d)", got);
	ok(!emh_scope_would_wait(scope), "and nothing was refused");
	emh_scope_close(scope);
	for (int i = 1; i < 8; i++)
		emh_em_close(held[i]);

	json_t *doc = emh_web_openapi(svcs, "t");
	is_str(json_string_value(json_object_get(doc, "openapi")), "3.1.0", "OpenAPI 3.1");
	json_t *paths = json_object_get(doc, "paths");
	ok(json_object_get(json_object_get(paths, "/shopweb/items/{id}"), "get") &&
	   json_object_get(json_object_get(paths, "/shopweb/items/{id}"), "delete"),
	   "a path per pattern, a method per route");
	ok(json_object_get(json_object_get(json_object_get(paths, "/shopweb/items"), "post"), "requestBody") != NULL,
	   "a request body from the route's doc");
	json_t *schemas = json_object_get(json_object_get(doc, "components"), "schemas");
	ok(json_object_get(schemas, "item") && json_object_get(schemas, "itemInput") && json_object_get(schemas, "Error"),
	   "schemas of the entity, its input and the error body");
	ok(!json_object_get(json_object_get(json_object_get(schemas, "item"), "properties"), "secret"),
	   "no hidden field in the answer's schema");
	ok(!json_object_get(json_object_get(json_object_get(schemas, "itemInput"), "properties"), "id"),
	   "no read-only field in the input's schema");
	json_decref(doc);
	emh_response_free(res);
	emh_services_free(svcs);
}

static int r_dummy(emh_scope *s, const emh_request *req, emh_response *res, emh_error *err) { return 0; }

static void refused(const emh_route *rt, size_t n, const char *want, const char *what)
{
	emh_error err;
	emh_services *svcs;
	emh_services_new(host, &svcs, &err);
	emh_service d = {EMH_SERVICE_HEADER, .name = "bad", .version = "1", .routes = rt, .nroutes = n,
			 .handle = NULL};
	is_int(emh_services_add(svcs, &d, NULL, &err), EMH_EPLUGIN, "%s: refused", what);
	like_str(err.message, want, "%s: naming it", what);
	emh_services_free(svcs);
}

static void test_refusals(void)
{
	static const emh_route shadow1[] = {EMH_ROUTE("GET", "/a/:id", r_dummy), EMH_ROUTE("GET", "/a/{n:text}", r_dummy)};
	refused(shadow1, 2, "routes GET /a/:id and GET /a/{n:text} shadow each other", "an int and a text parameter");
	static const emh_route shadow2[] = {EMH_ROUTE("GET", "/a/{n:text}", r_dummy), EMH_ROUTE("GET", "/a/all", r_dummy)};
	refused(shadow2, 2, "GET /a/{n:text} and GET /a/all", "a text parameter and a literal");
	static const emh_route shadow3[] = {EMH_ROUTE("PUT", "/a/:id", r_dummy), EMH_ROUTE("PUT", "/a/12", r_dummy)};
	refused(shadow3, 2, "PUT /a/:id and PUT /a/12", "an int parameter and a numeric literal");
	static const emh_route fine[] = {EMH_ROUTE("GET", "/a/:id", r_dummy), EMH_ROUTE("GET", "/a/all", r_dummy),
					 EMH_ROUTE("POST", "/a/{n:text}", r_dummy), EMH_ROUTE("GET", "/x-y", r_dummy),
					 EMH_ROUTE("GET", "/x_y", r_dummy)};
	emh_error err;
	emh_services *svcs;
	emh_services_new(host, &svcs, &err);
	emh_service d = {EMH_SERVICE_HEADER, .name = "fine", .version = "1", .routes = fine, .nroutes = 5};
	is_int(emh_services_add(svcs, &d, NULL, &err), 0, "an int parameter beside a word, another method: no shadow");
	json_t *doc = emh_web_openapi(svcs, NULL);
	json_t *paths = json_object_get(doc, "paths");
	const char *id1 = json_string_value(json_object_get(json_object_get(json_object_get(paths, "/fine/x-y"), "get"),
							    "operationId"));
	const char *id2 = json_string_value(json_object_get(json_object_get(json_object_get(paths, "/fine/x_y"), "get"),
							    "operationId"));
	ok(id1 && id2 && strcmp(id1, id2) != 0, "paths that read alike get distinct operationIds (%s, %s)", id1, id2);
	json_decref(doc);
	emh_services_free(svcs);
	static const emh_route badpat[] = {EMH_ROUTE("GET", "/a/{n:float}", r_dummy)};
	refused(badpat, 1, "parameter 'n' has type 'float'", "an unknown parameter type");
	static const emh_route badlit[] = {EMH_ROUTE("GET", "/a b", r_dummy)};
	refused(badlit, 1, "segment 'a b'", "a literal with a space");
	static const emh_route badm[] = {EMH_ROUTE("get", "/a", r_dummy)};
	refused(badm, 1, "method 'get'", "a lower-case method");
	static const emh_route nofn[] = {EMH_ROUTE("GET", "/a", NULL)};
	refused(nofn, 1, "fn is NULL", "a route without a function");

	/* routes and a handle: the handle gets the rest */
	static const emh_route some[] = {EMH_ROUTE("GET", "/x", r_get)};
	emh_services_new(host, &svcs, &err);
	emh_service both = {EMH_SERVICE_HEADER, .name = "both", .version = "1", .routes = some, .nroutes = 1,
			    .handle = fallback};
	emh_services_add(svcs, &both, NULL, &err);
	emh_response *res = emh_response_new();
	size_t len;
	is_int(call(svcs, "both", "GET", "/elsewhere", NULL, NULL, 0, NULL, res, &err), 0, "an unrouted path");
	ok(strncmp(emh_response_body(res, &len), "fallback", 8) == 0, "goes to handle");
	/* a path only other methods have is a 405, handle or not: handle gets
	 * what no route's path matches */
	is_int(call(svcs, "both", "POST", "/x", NULL, NULL, 0, NULL, res, &err), 0, "a routed path, another method");
	is_int(emh_response_status(res), 405, "is 405 with a handle too");
	is_str(res_header(res, "Allow"), "GET, HEAD", "with Allow");
	emh_response_free(res);
	emh_services_free(svcs);

	/* fini is called once at the end, whether or not the service has an init */
	fini_calls = 0;
	emh_services_new(host, &svcs, &err);
	emh_service onlyfini = {EMH_SERVICE_HEADER, .name = "onlyfini", .version = "1", .routes = some, .nroutes = 1,
				.fini = count_fini};
	is_int(emh_services_add(svcs, &onlyfini, NULL, &err), 0, "a service with a fini and no init loads");
	emh_services_free(svcs);
	is_int(fini_calls, 1, "its fini is called once when the services are freed");
}

/*
 * A response's content type (short ones kept in the response itself, long
 * ones copied, replaced from its own text) and its body taken out for a
 * server to send without a copy (emh_response_take_body, emhostd's path).
 */
static void test_response(void)
{
	emh_response *res = emh_response_new();
	if (!res)
		bail("out of memory");
	char *body = strdup("{\"a\":1}");
	is_int(emh_response_set_owned(res, 201, "application/json", body, 7, NULL), 0, "response: set, short type");
	is_str(emh_response_content_type(res), "application/json", "response: the short type is kept");
	char longt[200];
	memset(longt, 'x', sizeof longt - 1);
	longt[sizeof longt - 1] = '\0';
	memcpy(longt, "text/", 5);
	is_int(emh_response_add_header(res, "content-type", longt, NULL), 0, "response: a 199-byte type replaces it");
	is_str(emh_response_content_type(res), longt, "response: the long type is kept whole");
	/* replaced by a suffix of its own text, short then long again: copied before the old is freed */
	is_int(emh_response_add_header(res, "Content-Type", emh_response_content_type(res) + 180, NULL), 0,
	       "response: replaced from its own text (a suffix)");
	is_str(emh_response_content_type(res), longt + 180, "response: that text, intact");
	is_int(emh_response_add_header(res, "Content-Type", emh_response_content_type(res) + 2, NULL), 0,
	       "response: replaced from its own short text");
	is_str(emh_response_content_type(res), longt + 182, "response: intact again");
	size_t len = 99;
	char *got = emh_response_take_body(res, &len);
	ok(got == body && len == 7, "response: take_body hands over the body itself (len %zu)", len);
	size_t left = 99;
	ok(emh_response_body(res, &left) == NULL && left == 0, "response: which it no longer has");
	is_int(emh_response_status(res), 201, "response: the status stays");
	len = 99;
	ok(emh_response_take_body(res, &len) == NULL && len == 0, "response: taking twice gives nothing");
	free(got); /* the taker's: ASan/valgrind see no double free at the reset */
	emh_response_free(res);
}

int main(void)
{
	plan_lazy();
	test_response();
	fixture_init(&fx, "web");
	host = fixture_sqlite_host(&fx, "web.db", NULL, (const emh_entity *const[]){&item_entity, &plain_entity, NULL});
	fixture_sync(host, NULL);
	test_json();
	test_json_text();
	test_mapping();
	test_routes();
	test_refusals();
	emh_host_free(host);
	fixture_release(&fx);
	return done_testing();
}
