/* SPDX-License-Identifier: MIT */
/*
 * core/web/answer.c: the standard answers of the toolkit (emhost/web.h):
 * the one mapping from EMH_E* codes to HTTP statuses and error bodies
 * (emhostd's too), JSON replies, 201 + Location, request bodies read into
 * entities with per-field errors, paged listings and the retry wrapper.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <emhost/web.h>

#include "web_int.h"

unsigned emh_web_json_flags(const emh_scope *scope)
{
	const emh_service *d = scope ? emh_svc_descriptor(emh_scope_service(scope)) : NULL;
	return d && (d->flags & EMH_SVC_INT64_STRINGS) ? EMH_JSON_INT64_STRINGS : 0;
}

int emh_web_status(int code)
{
	switch (code) {
	case EMH_ENOTFOUND:
	case EMH_ENOSERVICE:
		return 404;
	case EMH_ECONFLICT:
		return 409;
	case EMH_EINVAL:
		return 400;
	case EMH_EUNAVAILABLE:
	case EMH_ETIMEOUT:
	case EMH_ENOFD:  /* out of file descriptors: back-pressure, like a full pool */
	case EMH_ERETRY: /* still failing after the service's retries: try later */
		return 503;
	default:
		return 500;
	}
}

const char *emh_web_status_code(int status)
{
	switch (status) {
	case 400: return "invalid_argument";
	case 404: return "not_found";
	case 405: return "method_not_allowed";
	case 409: return "conflict";
	case 413: return "payload_too_large";
	case 503: return "unavailable";
	default: return "internal";
	}
}

/* A fixed error body for status, for when a JSON answer cannot be built. */
static void res_fallback(emh_response *res, int status)
{
#define FALLBACK_BODY "{\"error\":{\"code\":\"%s\",\"message\":\"the answer could not be encoded\",\"context\":\"\"}}"
	char body[sizeof FALLBACK_BODY + sizeof "method_not_allowed"];
	int n = snprintf(body, sizeof body, FALLBACK_BODY, emh_web_status_code(status));
#undef FALLBACK_BODY
	emh_response_reset(res);
	if (n > 0 && (size_t)n < sizeof body)
		emh_response_set(res, status, "application/json", body, (size_t)n, NULL);
	else
		emh_response_set(res, status, NULL, NULL, 0, NULL);
}

/* Fill res with j's text (the reference taken); the fixed body when it cannot. */
static void res_json(emh_response *res, int status, json_t *j)
{
	char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	/* set_owned frees s when it fails */
	if (!s || emh_response_set_owned(res, status, "application/json", s, strlen(s), NULL) != 0)
		res_fallback(res, status);
}

/* The error object {"code","message","context"} (cleaned texts). */
static json_t *error_object(int status, const char *message, const char *context)
{
	char msg[4 * EMH_ERROR_MSG_MAX], ctx[4 * EMH_ERROR_CTX_MAX];
	return json_pack("{s:s,s:s,s:s}", "code", emh_web_status_code(status), "message",
			 emh_text_clean(message, msg, sizeof msg), "context", emh_text_clean(context, ctx, sizeof ctx));
}

void emh_web_answer_status(emh_response *res, int status, const char *message, const char *context)
{
	emh_response_reset(res);
	res_json(res, status, json_pack("{s:o}", "error", error_object(status, message, context)));
	if (status == 503)
		emh_response_add_header(res, "Retry-After", "1", NULL);
}

/*
 * Did the database write this message?  A driver fills the native code,
 * the SQLSTATE or the retry flag with its own text ("duplicate key value
 * violates unique constraint ... DETAIL: Key (email)=(...)"); a message a
 * service wrote with emh_error_set has none of them.
 */
static bool error_from_driver(const emh_error *err)
{
	return err->native != 0 || err->sqlstate[0] != '\0' || err->retryable;
}

void emh_web_answer_error(emh_response *res, const emh_error *err, emh_host *h, const char *what)
{
	int status = emh_web_status(err->code);
	const char *ctx = err->context[0] ? err->context : NULL;
	char generic[sizeof "context '' is unavailable, retry later" + EMH_ERROR_CTX_MAX], w[512];
	emh_text_clean(what, w, sizeof w);
	switch (status) {
	case 500:
		if (h)
			emh_host_log(h, EMH_LOG_ERROR, ctx, "%s: %s (%s)", w, err->message, emh_status_name(err->code));
		emh_web_answer_status(res, status, emh_strerror(err->code), ctx);
		return;
	case 503:
		if (ctx)
			snprintf(generic, sizeof generic, "context '%s' is unavailable, retry later", ctx);
		else
			snprintf(generic, sizeof generic, "a database is unavailable, retry later");
		if (h)
			emh_host_log(h, EMH_LOG_WARN, ctx, "%s: %s (%s)", w, err->message, emh_status_name(err->code));
		emh_web_answer_status(res, status, generic, ctx);
		return;
	case 400:
	case 409:
		if (error_from_driver(err)) {
			if (h)
				emh_host_log(h, EMH_LOG_WARN, ctx, "%s: %s (%s)", w, err->message,
					     emh_status_name(err->code));
			emh_web_answer_status(res, status, status == 409 ? "conflict" : "invalid argument", ctx);
			return;
		}
		break;
	default:
		break;
	}
	if (h)
		emh_host_log(h, EMH_LOG_DEBUG, ctx, "%s: %s", w, err->message);
	emh_web_answer_status(res, status, err->message, ctx);
}

void emh_web_answer(emh_response *res, int rc, const emh_error *err, emh_host *h, const char *what)
{
	if (rc == 0)
		return;
	int status = emh_response_status(res), want = emh_web_status(rc);
	size_t len = 0;
	/* the handler's own error body (per-field errors): a 4xx of its code's status */
	if (status == want && want >= 400 && want < 500 && emh_response_body(res, &len) && len > 0) {
		if (h) {
			char w[512];
			emh_host_log(h, EMH_LOG_DEBUG, err && err->context[0] ? err->context : NULL, "%s: %s",
				     emh_text_clean(what, w, sizeof w), err ? err->message : "");
		}
		return;
	}
	emh_error fallback;
	if (!err || err->code != rc) {
		emh_error_set(&fallback, rc, "%s", emh_strerror(rc));
		err = &fallback;
	}
	emh_web_answer_error(res, err, h, what);
}

int emh_web_reply_json(emh_response *res, int status, json_t *j, emh_error *err)
{
	char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	if (!s)
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	return emh_response_set_owned(res, status, "application/json", s, strlen(s), err);
}

int emh_web_reply_object(emh_response *res, int status, emh_em *em, const emh_entity *e, const void *obj,
			 unsigned flags, emh_error *err)
{
	char *s;
	size_t len;
	if (!e || !obj)
		return emh_error_set(err, EMH_EINVAL, "emh_web_reply_object: no entity or no object given");
	int rc = emh__web_object_text(em, e, obj, flags, &s, &len);
	if (rc == 0) /* set_owned frees s when it fails */
		return emh_response_set_owned(res, status, "application/json", s, len, err);
	if (rc == EMH_ENOMEM)
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	/* what only jansson writes so: the tree, as before */
	return emh_web_reply_json(res, status, emh_json_from_object(em, e, obj, flags), err);
}

/* The primary key of obj as text, for a Location. */
static bool key_text(const emh_entity *e, const void *obj, char *buf, size_t cap)
{
	for (size_t i = 0; i < e->nfields; i++) {
		const emh_field *f = &e->fields[i];
		if (f->type == EMH_T_RELATION || !(f->flags & EMH_F_PK))
			continue;
		const char *m = (const char *)obj + f->offset;
		if (f->type == EMH_T_INT64)
			snprintf(buf, cap, "%lld", (long long)*(const int64_t *)m);
		else if (f->type == EMH_T_INT32)
			snprintf(buf, cap, "%d", (int)*(const int32_t *)m);
		else if (f->type == EMH_T_TEXT && *(const char *const *)m) {
			/* percent-encode what is not unreserved */
			size_t o = 0;
			for (const unsigned char *p = *(const unsigned char *const *)m; *p && o + 4 < cap; p++) {
				if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
				    strchr("-._~", *p))
					buf[o++] = (char)*p;
				else
					o += (size_t)snprintf(buf + o, cap - o, "%%%02X", *p);
			}
			buf[o] = '\0';
		} else
			return false;
		return true;
	}
	return false;
}

int emh_web_reply_created(emh_scope *scope, emh_response *res, const char *collection, emh_em *em,
			  const emh_entity *e, const void *obj, emh_error *err)
{
	char key[256], location[512];
	if (!e || !obj)
		return emh_error_set(err, EMH_EINVAL, "emh_web_reply_created: no entity or no object given");
	if (!key_text(e, obj, key, sizeof key))
		return emh_error_set(err, EMH_EINVAL, "entity '%s' has no key to name in a Location", e->name);
	const char *c = collection ? collection : "";
	size_t cl = strlen(c);
	while (cl && c[cl - 1] == '/')
		cl--;
	snprintf(location, sizeof location, "/%s%.*s/%s", emh_svc_name(emh_scope_service(scope)), (int)cl, c, key);
	int rc = emh_web_reply_object(res, 201, em, e, obj, emh_web_json_flags(scope), err);
	return rc ? rc : emh_response_add_header(res, "Location", location, err);
}

int emh_web_read_body(const emh_request *req, emh_em *em, const emh_entity *e, void *obj, unsigned flags,
		      emh_response *res, emh_error *err)
{
	json_t *body = NULL, *problems = NULL;
	int rc;
	if (!req->body || req->body_len == 0) {
		rc = emh_error_set(err, EMH_EINVAL, "request body must be a JSON object");
		goto out;
	}
	json_error_t je;
	body = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &je);
	if (!body) {
		rc = emh_error_set(err, EMH_EINVAL, "malformed JSON body at line %d, column %d: %s", je.line,
				   je.column, je.text);
		goto out;
	}
	if (!json_is_object(body)) {
		rc = emh_error_set(err, EMH_EINVAL, "request body must be a JSON object");
		goto out;
	}
	rc = emh_json_into_object(em, e, body, obj, flags, &problems, err);
out:
	if (rc == EMH_EINVAL) {
		json_t *eo = error_object(400, err->message, NULL);
		if (problems)
			json_object_set_new(eo, "fields", problems);
		emh_response_reset(res);
		res_json(res, 400, json_pack("{s:o}", "error", eo));
	} else {
		json_decref(problems);
	}
	json_decref(body);
	return rc;
}

int emh_web_arg_int64(const emh_request *req, const char *name, int64_t def, int64_t min, int64_t max,
		      int64_t *out, emh_error *err)
{
	const char *v = emh_request_arg(req, name);
	*out = def;
	if (!v)
		return 0;
	int64_t n;
	if (!emh__web_int64(v, strlen(v), &n) || n < min || n > max)
		return emh_error_set(err, EMH_EINVAL, "query argument '%s' must be an integer from %lld to %lld", name,
				     (long long)min, (long long)max);
	*out = n;
	return 0;
}

int emh_web_list(emh_repo *repo, emh_query *q, const emh_request *req, const emh_web_list_opts *o,
		 emh_response *res, emh_error *err)
{
	emh_web_list_opts d = o ? *o : (emh_web_list_opts){0};
	int64_t max = d.max_limit > 0 ? d.max_limit : 1000;
	int64_t def = d.default_limit > 0 ? (d.default_limit < max ? d.default_limit : max) : (20 < max ? 20 : max);
	int64_t limit, offset;
	int rc;
	if ((rc = emh_web_arg_int64(req, "limit", def, 1, max, &limit, err)) ||
	    (rc = emh_web_arg_int64(req, "offset", 0, 0, INT64_MAX / 2, &offset, err)))
		return rc;
	if (!q) {
		if ((rc = emh_repo_query(repo, &q, err)))
			return rc;
		const emh_entity *e = emh_query_entity(q);
		for (size_t i = 0; i < e->nfields; i++)
			if (e->fields[i].type != EMH_T_RELATION && (e->fields[i].flags & EMH_F_PK))
				emh_q_order_by(q, e->fields[i].name, false);
	}
	emh_q_limit(q, limit);
	emh_q_offset(q, offset);
	emh_page page;
	if ((rc = emh_repo_find_page(repo, q, &page, err)))
		return rc;
	json_t *items = emh_json_from_list(emh_repo_em(repo), emh_query_entity(q), page.items, page.count, d.flags);
	if (!items)
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	return emh_web_reply_json(res, 200,
				  json_pack("{s:o,s:I,s:I,s:I}", d.items_key ? d.items_key : "items", items, "total",
					    (json_int_t)page.total, "limit", (json_int_t)limit, "offset",
					    (json_int_t)offset),
				  err);
}

static void sleep_us(long us)
{
	struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
	nanosleep(&ts, NULL);
}

int emh_web_retry(emh_scope *scope, emh_web_work_fn fn, void *ud, int max_attempts, emh_error *err)
{
	emh_error scratch;
	if (!err)
		err = &scratch;
	if (!scope || !fn)
		return emh_error_set(err, EMH_EINVAL, "a scope and a function are required");
	if (max_attempts <= 0)
		max_attempts = 5;
	/* a per-call seed: only spreads the waits of colliding requests */
	unsigned seed = (unsigned)(uintptr_t)&seed ^ (unsigned)emh_web_now();
	for (int attempt = 1;; attempt++) {
		emh_error_clear(err);
		int rc = fn(scope, ud, err);
		if (rc == 0 || attempt >= max_attempts || !(rc == EMH_ERETRY || err->retryable))
			return rc;
		/* A wait refused under EMH_FORK_NOWAIT is no failure to retry here:
		 * the scope's answer is dropped and the request run again where it
		 * may wait (emhostd: from its I/O thread, which must not sleep). */
		if (emh_scope_would_wait(scope))
			return rc;
		emh_scope_reset(scope);
		long cap = 1000L << (attempt - 1 < 7 ? attempt - 1 : 7);
		if (cap > 100000)
			cap = 100000;
		sleep_us(cap / 2 + (long)(rand_r(&seed) % (unsigned)(cap / 2 + 1)));
	}
}

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int emh_web_flush(emh_em *em, emh_error *err)
{
	int64_t start = mono_ms();
	long pause_ms = 2;
	for (int attempt = 1;; attempt++) {
		int rc = emh_em_flush(em, err);
		if (rc != EMH_ERETRY || attempt >= EMH_WEB_FLUSH_TRIES)
			return rc;
		/* one try may itself wait a whole busy timeout: the budget is
		 * for all of them, and no try starts past it */
		if (mono_ms() - start + pause_ms >= EMH_WEB_FLUSH_BUDGET_MS)
			return rc;
		sleep_us(pause_ms * 1000);
		if (pause_ms < 100)
			pause_ms *= 2;
	}
}
