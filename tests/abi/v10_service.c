/* SPDX-License-Identifier: MIT */
/*
 * tests/abi/v10_service.c: a service module built against the frozen ABI 1.0
 * headers (tests/abi/v1.0/emhost/, copied from the release that shipped
 * them), loaded by test_abi10 into today's host.  It declares an entity need,
 * keeps state from init, and answers through the 1.0 calls a module makes:
 * scopes, repositories, queries, responses, settings, logging.
 *
 *   POST /notes          body = the note's text   -> 201 {"id":N}
 *   GET  /notes/N                                  -> 200 text, or EMH_ENOTFOUND
 *   GET  /notes?count                              -> 200 number of notes
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <emhost/service.h>

#if EMH_SERVICE_ABI_MINOR != 0 || EMH_DRIVER_ABI_MINOR != 0
#error "tests/abi/v10_service.c must be built against the 1.0 headers (-I tests/abi/v1.0 first)"
#endif

typedef struct note {
	int64_t id;
	const char *body;
} note;

static const emh_field note_fields[] = {
	EMH_FIELD(note, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(note, body, EMH_T_TEXT, 0),
};
static const emh_entity note_entity = EMH_ENTITY(note, "abi10_notes", note_fields);

static const emh_need needs[] = {EMH_NEED_REPO(&note_entity, NULL)};

typedef struct state {
	char greeting[64];
} state;

static int v10_init(emh_svc *svc, void **out, emh_error *err)
{
	state *st = calloc(1, sizeof *st);
	if (!st)
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	const char *g = emh_svc_setting(svc, "greeting");
	snprintf(st->greeting, sizeof st->greeting, "%s", g ? g : "hello");
	emh_svc_log(svc, EMH_LOG_INFO, "v10 service up (greeting %s)", st->greeting);
	*out = st;
	return 0;
}

static void v10_fini(emh_svc *svc, void *st)
{
	(void)svc;
	free(st);
}

static int v10_handle(emh_scope *scope, const emh_request *req, emh_response *res, emh_error *err)
{
	emh_repo *r;
	int rc = emh_scope_repo(scope, &note_entity, NULL, &r, err);
	if (rc)
		return rc;
	if (strcmp(req->method, "POST") == 0 && req->path[0] == '\0') {
		note *n;
		if ((rc = emh_repo_new(r, (void **)&n, err)) != 0)
			return rc;
		n->body = emh_em_strdup(emh_repo_em(r), req->body ? req->body : "");
		if ((rc = emh_em_flush(emh_repo_em(r), err)) != 0)
			return rc;
		char out[64];
		int len = snprintf(out, sizeof out, "{\"id\":%lld}", (long long)n->id);
		return emh_response_set(res, 201, "application/json", out, (size_t)len, err);
	}
	if (strcmp(req->method, "GET") == 0 && emh_request_arg(req, "count")) {
		int64_t k;
		if ((rc = emh_repo_count(r, NULL, &k, err)) != 0)
			return rc;
		char out[32];
		int len = snprintf(out, sizeof out, "%lld", (long long)k);
		return emh_response_set(res, 200, "text/plain", out, (size_t)len, err);
	}
	if (strcmp(req->method, "GET") == 0 && req->path[0] == '/') {
		note *n;
		if ((rc = emh_repo_get(r, emh_v_int64(atoll(req->path + 1)), (void **)&n, err)) != 0)
			return rc;
		const state *st = emh_scope_state(scope);
		char out[600];
		int len = snprintf(out, sizeof out, "%s: %s", st->greeting, n->body);
		return emh_response_set(res, 200, "text/plain", out, (size_t)len, err);
	}
	return emh_error_set(err, EMH_EINVAL, "no route for %s %s", req->method, req->path);
}

EMH_SERVICE_EXPORT const emh_service emh_service_descriptor = {
	EMH_SERVICE_HEADER,
	.name = "notes",
	.version = "1.0",
	.description = "a module built against the ABI 1.0 headers",
	.needs = needs,
	.nneeds = EMH_NEEDS_COUNT(needs),
	.init = v10_init,
	.handle = v10_handle,
	.fini = v10_fini,
};
