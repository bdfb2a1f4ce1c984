/* SPDX-License-Identifier: MIT */
/*
 * tests/query/test_query.c: global filters beyond the conformance suite
 * (which checks every operation for leaks on every driver): what an entity
 * may declare, what a parameter may hold, and scopes that set a parameter
 * once for every fork they open (emh_scope_set_param), on SQLite.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include <emhost/service.h>

#include "../fixture.h"
#include "../tap.h"

typedef struct note {
	int64_t id;
	const char *tenant;
	const char *text;
	double score;
	int64_t owner;
} note;

static const emh_field note_fields[] = {
	EMH_FIELD(note, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(note, tenant, EMH_T_TEXT, EMH_F_FILTER),
	EMH_FIELD(note, text, EMH_T_TEXT, 0),
	EMH_FIELD(note, score, EMH_T_DOUBLE, 0),
	EMH_FIELD(note, owner, EMH_T_INT64, 0),
};
static const emh_entity note_entity = EMH_ENTITY(note, "notes", note_fields);

/* ---- declarations ---- */

static void t_declarations(void)
{
	static const struct {
		int field;
		unsigned flags;
		const char *label;
	} bad[] = {
		{0, EMH_F_PK | EMH_F_GENERATED | EMH_F_FILTER, "on the primary key"},
		{1, EMH_F_FILTER | EMH_F_NULLABLE, "on a nullable field"},
		{3, EMH_F_FILTER, "on a double field"},
		{4, EMH_F_FILTER | EMH_F_VERSION, "on the version field"},
	};
	emh_error err;
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		emh_field f[5];
		memcpy(f, note_fields, sizeof f);
		f[1].flags = bad[i].field == 1 ? bad[i].flags : 0;
		f[bad[i].field].flags = bad[i].flags;
		emh_entity e = EMH_ENTITY(note, "notes", f);
		int rc = emh_entity_validate(&e, &err);
		is_int(rc, EMH_EINVAL, "EMH_F_FILTER %s is refused", bad[i].label);
		if (rc)
			diag("  %s", err.message);
	}
	emh_field f[5];
	memcpy(f, note_fields, sizeof f);
	f[4].flags = EMH_F_FILTER;
	emh_entity two = EMH_ENTITY(note, "notes", f);
	is_int(emh_entity_validate(&two, &err), 0, "two filter fields (text and int64) are valid");
}

/* ---- parameters ---- */

static void t_params(emh_host *h)
{
	emh_em *em = fixture_fork(h, NULL);
	emh_error err;
	is_int(emh_em_set_param(em, "not a name", emh_v_text("x"), &err), EMH_EINVAL, "a parameter name is an identifier");
	is_int(emh_em_set_param(em, "tenant", emh_v_null(EMH_T_TEXT), &err), EMH_EINVAL, "a NULL parameter is refused");
	is_int(emh_em_set_param(em, "tenant", emh_v_double(1.5), &err), EMH_EINVAL, "a double parameter is refused");
	char buf[8] = "t-1";
	is_int(emh_em_set_param(em, "tenant", emh_v_text(buf), &err), 0, "a text parameter");
	buf[2] = '9';
	const emh_value *v = emh_em_param(em, "tenant");
	is_str(v ? v->u.s.ptr : NULL, "t-1", "the parameter's text is copied");
	emh_em_close(em);
}

/* ---- scopes ---- */

static const emh_need svc_needs[] = {EMH_NEED_REPO(&note_entity, NULL)};

/* POST adds a note with the body as text; GET answers the texts, comma-separated. */
static int svc_handle(emh_scope *scope, const emh_request *req, emh_response *res, emh_error *err)
{
	emh_repo *r;
	emh_list l;
	char out[256] = "";
	int rc = emh_scope_repo_at(scope, 0, &r, err);
	if (rc)
		return rc;
	if (strcmp(req->method, "POST") == 0) {
		void *p;
		if ((rc = emh_repo_new(r, &p, err)) != 0)
			return rc;
		((note *)p)->text = emh_em_strdup(emh_repo_em(r), req->body);
		return emh_repo_insert(r, p, err);
	}
	emh_query *q;
	if ((rc = emh_repo_query(r, &q, err)) != 0)
		return rc;
	emh_q_order_by(q, "id", false);
	if ((rc = emh_repo_find(r, q, &l, err)) != 0)
		return rc;
	for (size_t i = 0; i < l.count; i++) {
		size_t n = strlen(out);
		snprintf(out + n, sizeof out - n, "%s%s", i ? "," : "", ((note *)l.items[i])->text);
	}
	return emh_response_set(res, 200, "text/plain", out, strlen(out), err);
}

static const emh_service svc_desc = {
	EMH_SERVICE_HEADER,
	.name = "notes",
	.version = "1.0",
	.needs = svc_needs,
	.nneeds = 1,
	.handle = svc_handle,
};

/* Run one request in a fresh scope of tenant (NULL: none set). */
static int call(emh_services *svcs, const char *tenant, bool after_fork, const char *method, const char *body,
		char *out, size_t cap, emh_error *err)
{
	emh_scope *sc;
	emh_response *res = emh_response_new();
	emh_request req = {.method = method, .path = "", .query = "", .body = body, .body_len = body ? strlen(body) : 0};
	int rc = emh_scope_open(svcs, "notes", &sc, err);
	if (rc)
		bail("emh_scope_open: %s", err->message);
	if (tenant && after_fork) {
		/* a fork the scope already opened gets it too */
		emh_repo *r;
		emh_scope_repo_at(sc, 0, &r, err);
	}
	if (tenant && (rc = emh_scope_set_param(sc, "tenant", emh_v_text(tenant), err)) != 0)
		bail("emh_scope_set_param: %s", err->message);
	rc = emh_scope_handle(sc, &req, res, err);
	size_t len = 0;
	const char *b = emh_response_body(res, &len);
	snprintf(out, cap, "%.*s", (int)len, b ? b : "");
	emh_scope_close(sc);
	emh_response_free(res);
	return rc;
}

static void t_scopes(emh_host *h)
{
	emh_services *svcs;
	emh_error err;
	char out[256];
	if (emh_services_new(h, &svcs, &err) != 0 || emh_services_add(svcs, &svc_desc, NULL, &err) != 0)
		bail("services: %s", err.message);
	is_int(call(svcs, "acme", false, "POST", "a1", out, sizeof out, &err), 0,
	       "acme adds a note (parameter set on the scope first)");
	is_int(call(svcs, "acme", true, "POST", "a2", out, sizeof out, &err), 0,
	       "acme adds a note (parameter set after the scope opened its fork)");
	is_int(call(svcs, "globex", false, "POST", "g1", out, sizeof out, &err), 0, "globex adds a note");
	is_int(call(svcs, "acme", false, "GET", NULL, out, sizeof out, &err), 0, "acme lists");
	is_str(out, "a1,a2", "acme sees its own notes only");
	is_int(call(svcs, "globex", true, "GET", NULL, out, sizeof out, &err), 0, "globex lists");
	is_str(out, "g1", "globex sees its own notes only");
	int rc = call(svcs, NULL, false, "GET", NULL, out, sizeof out, &err);
	is_int(rc, EMH_ESTATE, "a scope without the parameter reads nothing (EMH_ESTATE)");
	like_str(err.message, "tenant", "the error names the parameter");
	emh_scope *sc;
	emh_scope_open(svcs, "notes", &sc, &err);
	is_int(emh_scope_set_param(sc, "9x", emh_v_text("a"), &err), EMH_EINVAL, "emh_scope_set_param checks the name");
	is_int(emh_scope_set_param(sc, "tenant", emh_v_blob("a", 1), &err), EMH_EINVAL, "and the value");
	is_int(emh_scope_set_param(sc, "tenant", emh_v_text("first"), &err), 0, "set once");
	is_int(emh_scope_set_param(sc, "tenant", emh_v_text("acme"), &err), 0, "and again: replaced");
	emh_em *em;
	emh_scope_em(sc, NULL, &em, &err);
	const emh_value *v = emh_em_param(em, "tenant");
	is_str(v ? v->u.s.ptr : NULL, "acme", "a fork opened afterwards has the last value");
	emh_scope_close(sc);
	emh_services_free(svcs);
}

/* ---- iterators ---- */

/* An ordering that names one field 100 times pages like the field once. */
static void t_iter_keys(emh_host *h)
{
	emh_em *em = fixture_fork(h, NULL);
	emh_repo *r = fixture_repo(em, &note_entity);
	emh_error err;
	emh_em_set_param(em, "tenant", emh_v_text("iter"), &err);
	for (int i = 0; i < 10; i++) {
		note *n = fixture_new(r);
		n->text = "x";
		n->owner = 9 - i % 5;
	}
	if (emh_em_flush(em, &err) != 0)
		bail("flush: %s", err.message);
	emh_query *q = fixture_query(r);
	for (int i = 0; i < 100; i++)
		emh_q_order_by(q, "owner", i % 2 != 0);
	emh_iter *it;
	void *obj;
	int rc = emh_repo_iter(r, q, &it, &err), n = 0, more = 0;
	int64_t last_owner = -1, last_id = 0;
	bool sorted = true;
	if (rc == 0)
		rc = emh_iter_set_page_size(it, 3, &err);
	while (rc == 0 && (more = emh_iter_next(it, &obj, &err)) == 1) {
		const note *o = obj;
		sorted &= o->owner > last_owner || (o->owner == last_owner && o->id > last_id);
		last_owner = o->owner;
		last_id = o->id;
		n++;
	}
	emh_iter_close(it);
	ok(rc == 0 && more == 0, "an iterator ordered 100 times by one field runs");
	is_int(n, 10, "it reads every row once");
	ok(sorted, "in the order of the first key, ties by the key");
	emh_em_close(em);
}

int main(void)
{
	fixture fx;
	fixture_init(&fx, "query");
	t_declarations();
	emh_host *h = fixture_sqlite_host(&fx, "q.db", NULL, (const emh_entity *const[]){&note_entity, NULL});
	fixture_sync(h, NULL);
	t_params(h);
	t_scopes(h);
	t_iter_keys(h);
	emh_host_free(h);
	fixture_release(&fx);
	return done_testing();
}
