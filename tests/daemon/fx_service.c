/* SPDX-License-Identifier: MIT */
/*
 * tests/daemon/fx_service.c: fixture service modules for t_services, one .so
 * per FX_* macro (tests/daemon/local.mk builds this file several times).
 *
 *   FX_GOOD      notes in "analytics" and in the default context, an EM of
 *                the default; a handler the test drives
 *   FX_TWIN      the same note entity compiled into another module
 *   FX_CLASH     a different entity on the notes table of the default context
 *   FX_LEDGER    needs a context 'ledger'
 *   FX_BADABI    descriptor of ABI major 2
 *   FX_SMALL     struct_size smaller than ABI 1.0's minimum
 *   FX_NOHANDLE  handle is NULL
 *   FX_NOSYM     exports no descriptor
 *   FX_INITFAIL  registers the note entity, then init fails with EMH_EUNAVAILABLE
 *   FX_SYM8      a descriptor symbol of 8 bytes (ABI, struct_size) claiming a whole descriptor
 *   FX_HUGE      struct_size 0xffffffff
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <emhost/emhost.h>
#include <emhost/service.h>

#include "fx_entities.h"

#if defined(FX_NOSYM)

EMH_SERVICE_EXPORT int fx_nothing_here;
int fx_nothing_here = 1;

#elif defined(FX_SYM8)

/* Read as a whole descriptor, its neighbours would be taken for pointers. */
EMH_SERVICE_EXPORT const struct {
	uint32_t abi_version, struct_size;
} emh_service_descriptor = {EMH_SERVICE_ABI_VERSION, sizeof(emh_service)};

#else

static int fx_reply(emh_response *res, int status, const char *text, emh_error *err)
{
	return emh_response_set(res, status, "text/plain", text, strlen(text), err);
}

#if defined(FX_GOOD)
/* Index of each need in fx_needs, for emh_scope_*_at. */
enum { NEED_NOTES_ANALYTICS, NEED_DEFAULT_EM, NEED_NOTES_DEFAULT };
static const emh_need fx_needs[] = {
	EMH_NEED_REPO(&fx_note_entity, "analytics"),
	EMH_NEED_EM(NULL),
	EMH_NEED_REPO(&fx_note_entity, NULL),
};

static int fx_inited;

static int fx_init(emh_svc *svc, void **state, emh_error *err)
{
	const char *greeting = emh_svc_setting(svc, "greeting");
	*state = (void *)(greeting ? greeting : "hello");
	fx_inited++;
	return 0;
}

static void fx_fini(emh_svc *svc, void *state) { fx_inited--; }

/*
 *   POST /add?flush=1&ctx=analytics   insert a note (body = text), flush when asked
 *   GET  /count?ctx=analytics         number of notes
 *   GET  /undeclared-context          asks for context 'billing'
 *   GET  /undeclared-entity           asks for a repository never declared
 *   GET  /em-as-repo                  emh_scope_repo_at on the EM-only need
 *   GET  /state                       the state from init
 *   GET  /forks                       number of forks the scope holds
 *   POST /raw-conflict                a statement the database refuses as a
 *                                     duplicate key (the driver's text in err)
 *   POST /raw-invalid                 one it refuses as a datatype mismatch
 *   GET  /status?code=N               answers status N (999: a handler bug)
 *   GET  /ctype                       sets a content type, then adds a Content-Type header
 *   GET  /arg?v=...                   the decoded argument v, in brackets
 *   GET  /reqid                       its X-Request-Id, logged through the service's log
 */
static int fx_handle(emh_scope *scope, const emh_request *req, emh_response *res, emh_error *err)
{
	const char *ctx = emh_request_arg(req, "ctx");
	emh_repo *repo;
	int rc;
	char buf[64];
	if (strcmp(req->path, "/add") == 0) {
		if ((rc = emh_scope_repo(scope, &fx_note_entity, ctx, &repo, err)))
			return rc;
		fx_note *n;
		if ((rc = emh_repo_new(repo, (void **)&n, err)))
			return rc;
		n->text = emh_em_strdup(emh_repo_em(repo), req->body ? req->body : "");
		const char *flush = emh_request_arg(req, "flush");
		if (flush && strcmp(flush, "1") == 0 && (rc = emh_em_flush(emh_repo_em(repo), err)))
			return rc;
		snprintf(buf, sizeof buf, "%lld", (long long)n->id);
		return fx_reply(res, 201, buf, err);
	}
	if (strcmp(req->path, "/count") == 0) {
		int64_t n;
		if ((rc = emh_scope_repo(scope, &fx_note_entity, ctx, &repo, err)) ||
		    (rc = emh_repo_count(repo, NULL, &n, err)))
			return rc;
		snprintf(buf, sizeof buf, "%lld", (long long)n);
		return fx_reply(res, 200, buf, err);
	}
	if (strcmp(req->path, "/undeclared-context") == 0) {
		emh_em *em;
		return emh_scope_em(scope, "billing", &em, err);
	}
	if (strcmp(req->path, "/undeclared-entity") == 0)
		return emh_scope_repo(scope, &fx_other_entity, NULL, &repo, err);
	if (strcmp(req->path, "/em-as-repo") == 0)
		return emh_scope_repo_at(scope, NEED_DEFAULT_EM, &repo, err);
	if (strcmp(req->path, "/state") == 0)
		return fx_reply(res, 200, emh_scope_state(scope), err);
	if (strcmp(req->path, "/forks") == 0) {
		emh_em *em;
		if ((rc = emh_scope_em_at(scope, NEED_DEFAULT_EM, &em, err)) ||
		    (rc = emh_scope_repo_at(scope, NEED_NOTES_DEFAULT, &repo, err)) ||
		    (rc = emh_scope_repo_at(scope, NEED_NOTES_ANALYTICS, &repo, err)))
			return rc;
		snprintf(buf, sizeof buf, "%zu", emh_scope_forks_open(scope));
		return fx_reply(res, 200, buf, err);
	}
	if (strcmp(req->path, "/raw-conflict") == 0 || strcmp(req->path, "/raw-invalid") == 0) {
		emh_em *em;
		if ((rc = emh_scope_em_at(scope, NEED_DEFAULT_EM, &em, err)))
			return rc;
		/* returned as the driver filled err: the daemon must not show it */
		return emh_em_execute(em,
				      strcmp(req->path, "/raw-conflict") == 0
					      ? "INSERT INTO fx_notes (id, text) VALUES (424242, 'secret-row'), (424242, 'secret-row')"
					      : "INSERT INTO fx_notes (id, text) VALUES ('not-a-number', 'secret-row')",
				      err);
	}
	/* the service API's edges (t_ops) */
	if (strcmp(req->path, "/status") == 0) {
		const char *code = emh_request_arg(req, "code");
		return emh_response_set(res, code ? atoi(code) : 200, "text/plain", "status", 6, err);
	}
	if (strcmp(req->path, "/ctype") == 0) {
		if ((rc = fx_reply(res, 200, "typed", err)))
			return rc;
		return emh_response_add_header(res, "content-type", "application/x-fx", err);
	}
	if (strcmp(req->path, "/arg") == 0) {
		const char *v = emh_request_arg(req, "v");
		char out[256];
		snprintf(out, sizeof out, "[%s]", v ? v : "(none)");
		return fx_reply(res, 200, out, err);
	}
	if (strcmp(req->path, "/reqid") == 0) {
		const char *v = emh_request_header(req, "X-Request-Id");
		emh_svc_log(emh_scope_service(scope), EMH_LOG_WARN, "fx saw request %s", v ? v : "(none)");
		return fx_reply(res, 200, v ? v : "(none)", err);
	}
	return emh_error_set(err, EMH_ENOTFOUND, "no route '%s'", req->path);
}

EMH_SERVICE_EXPORT const emh_service emh_service_descriptor = {
	EMH_SERVICE_HEADER,
	.name = "good",
	.version = "1.0",
	.needs = fx_needs,
	.nneeds = EMH_NEEDS_COUNT(fx_needs),
	.init = fx_init,
	.handle = fx_handle,
	.fini = fx_fini,
};

#else /* the failing and twin modules share a trivial handler */

static FX_UNUSED int fx_handle(emh_scope *scope, const emh_request *req, emh_response *res, emh_error *err)
{
	emh_repo *repo;
	int64_t n;
	int rc;
	char buf[32];
#if defined(FX_TWIN)
	if ((rc = emh_scope_repo_at(scope, 0, &repo, err)) || (rc = emh_repo_count(repo, NULL, &n, err)))
		return rc;
#else
	(void)repo;
	(void)rc;
	n = 0;
#endif
	snprintf(buf, sizeof buf, "%lld", (long long)n);
	return fx_reply(res, 200, buf, err);
}

#if defined(FX_TWIN)
static const emh_need fx_needs[] = { EMH_NEED_REPO(&fx_note_entity, NULL) };
#elif defined(FX_CLASH)
static const emh_need fx_needs[] = { EMH_NEED_REPO(&fx_clash_entity, NULL) };
#elif defined(FX_LEDGER)
static const emh_need fx_needs[] = { EMH_NEED_EM(NULL), EMH_NEED_EM("ledger") };
#elif defined(FX_INITFAIL)
/* registered before init fails: the module is unloaded at once all the same */
static const emh_need fx_needs[] = { EMH_NEED_REPO(&fx_note_entity, NULL) };
#else
static const emh_need fx_needs[] = { EMH_NEED_EM(NULL) };
#endif

#if defined(FX_INITFAIL)
static int fx_init(emh_svc *svc, void **state, emh_error *err)
{
	return emh_error_set(err, EMH_EUNAVAILABLE, "cache server at 127.0.0.1:1 refused the connection");
}
#endif

EMH_SERVICE_EXPORT const emh_service emh_service_descriptor = {
#if defined(FX_BADABI)
	.abi_version = (2u << 16), .struct_size = sizeof(emh_service),
#elif defined(FX_SMALL)
	.abi_version = EMH_SERVICE_ABI_VERSION, .struct_size = offsetof(emh_service, needs),
#elif defined(FX_HUGE)
	.abi_version = EMH_SERVICE_ABI_VERSION, .struct_size = 0xffffffffu,
#else
	EMH_SERVICE_HEADER,
#endif
#if defined(FX_TWIN)
	.name = "twin",
#elif defined(FX_CLASH)
	.name = "clash",
#elif defined(FX_LEDGER)
	.name = "billing",
#else
	.name = "fixture",
#endif
	.version = "1.0",
	.needs = fx_needs,
	.nneeds = EMH_NEEDS_COUNT(fx_needs),
#if defined(FX_INITFAIL)
	.init = fx_init,
#endif
#if !defined(FX_NOHANDLE)
	.handle = fx_handle,
#endif
};
#endif
#endif
