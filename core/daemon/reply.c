/* SPDX-License-Identifier: MIT */
/*
 * core/daemon/reply.c: emhostd's answers.  One mapping from EMH_E* codes to
 * HTTP statuses, JSON error bodies that never carry database text to the
 * client (it goes to the log), and queueing a response on its connection,
 * which is where every request's metrics are counted.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "httpd_int.h"

int emhd_http_status(int code)
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
	case EMH_ERETRY: /* still failing after the service's retries: try later */
		return 503;
	default:
		return 500;
	}
}

/* The "code" member of an error body: stable, lowercase. */
static const char *error_code_name(int http)
{
	switch (http) {
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
	/* room for the longest code name error_code_name has */
	char body[sizeof FALLBACK_BODY + sizeof "method_not_allowed"];
	int n = snprintf(body, sizeof body, FALLBACK_BODY, error_code_name(status));
#undef FALLBACK_BODY
	emh_response_reset(res);
	/* n is the length sent: never past the buffer, whatever a new code name is */
	if (n > 0 && (size_t)n < sizeof body)
		emh_response_set(res, status, "application/json", body, (size_t)n, NULL);
	else
		emh_response_set(res, status, NULL, NULL, 0, NULL);
}

/* Fill res with a JSON body (takes the reference to j). */
void emhd__res_json(emh_response *res, int status, json_t *j)
{
	char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	/* set_owned frees s when it fails */
	if (!s || emh_response_set_owned(res, status, "application/json", s, strlen(s), NULL) != 0)
		res_fallback(res, status);
}

/* An error body; message and context are cleaned (they may hold request text). */
void emhd__res_error(emh_response *res, int status, const char *message, const char *context)
{
	char msg[4 * EMH_ERROR_MSG_MAX], ctx[4 * EMH_ERROR_CTX_MAX];
	emhd__res_json(res, status,
		 json_pack("{s:{s:s,s:s,s:s}}", "error", "code", error_code_name(status), "message",
			   emh_text_clean(message, msg, sizeof msg), "context", emh_text_clean(context, ctx, sizeof ctx)));
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

/*
 * The error body of an EMH_E* failure.  The caller sees the service's own
 * messages (a parse error, "a user with email ... already exists"); text
 * that comes from the database or the core -- every 500 and 503, and 4xx
 * messages a driver wrote -- may hold SQL, values or server details, so it
 * is replaced by a fixed text for its code and logged in full.
 */
void emhd__res_emh_error(emh_host *h, const char *uri, emh_response *res, const emh_error *err)
{
	int status = emhd_http_status(err->code);
	const char *ctx = err->context[0] ? err->context : NULL;
	char generic[sizeof "context '' is unavailable, retry later" + EMH_ERROR_CTX_MAX];
	switch (status) {
	case 500:
		emh_host_log(h, EMH_LOG_ERROR, ctx, "%s: %s (%s)", uri, err->message, emh_status_name(err->code));
		emhd__res_error(res, status, emh_strerror(err->code), ctx);
		return;
	case 503:
		if (ctx)
			snprintf(generic, sizeof generic, "context '%s' is unavailable, retry later", ctx);
		else
			snprintf(generic, sizeof generic, "a database is unavailable, retry later");
		emh_host_log(h, EMH_LOG_WARN, ctx, "%s: %s (%s)", uri, err->message, emh_status_name(err->code));
		emhd__res_error(res, status, generic, ctx);
		return;
	case 400:
	case 409:
		if (error_from_driver(err)) {
			emh_host_log(h, EMH_LOG_WARN, ctx, "%s: %s (%s)", uri, err->message,
				     emh_status_name(err->code));
			emhd__res_error(res, status, status == 409 ? "conflict" : "invalid argument", ctx);
			return;
		}
		break;
	default:
		break;
	}
	emh_host_log(h, EMH_LOG_DEBUG, ctx, "%s: %s", uri, err->message);
	emhd__res_error(res, status, err->message, ctx);
}

/* 503 with Retry-After into res, for a request no handler will see. */
void emhd__res_refused(emh_response *res, const char *why)
{
	emh_response_reset(res);
	emhd__res_error(res, 503, why, NULL);
}

/* Queue res on the connection (body copied); records metrics, logs at debug. */
enum MHD_Result emhd__queue_response(struct MHD_Connection *conn, emhd_req *r, const emh_response *res)
{
	size_t len;
	const char *body = emh_response_body(res, &len);
	int status = emh_response_status(res);
	struct MHD_Response *resp =
		MHD_create_response_from_buffer(len, (void *)(body ? body : ""), MHD_RESPMEM_MUST_COPY);
	if (!resp)
		return MHD_NO;
	const char *ctype = emh_response_content_type(res);
	if (ctype)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
	for (size_t i = 0; i < emh_response_nheaders(res); i++) {
		const emh_kv *h = emh_response_header(res, i);
		if (strcasecmp(h->name, "X-Request-Id") != 0) /* the daemon's is the one that is logged */
			MHD_add_response_header(resp, h->name, h->value);
	}
	if (r->rid[0])
		MHD_add_response_header(resp, "X-Request-Id", r->rid);
	/* while draining for shutdown, keep-alive clients are told to go */
	if (atomic_load(&r->srv->stopping))
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
	enum MHD_Result ret = MHD_queue_response(conn, (unsigned)status, resp);
	MHD_destroy_response(resp);
	if (ret == MHD_YES)
		r->answered = true;
	int64_t ns = now_ns() - r->t0;
	emhd__metrics_record(r->m, status, ns);
	emh_host_log(r->srv->host, EMH_LOG_DEBUG, NULL, "%s -> %d (%.3f ms)", r->uri, status, (double)ns / 1e6);
	return ret;
}

/* Answer at once from the I/O thread (only for what does no database work). */
enum MHD_Result emhd__reply_error(struct MHD_Connection *conn, emhd_req *r, int status, const char *message,
				  const char *context)
{
	emh_response *res = emh_response_new();
	if (!res)
		return MHD_NO;
	emhd__res_error(res, status, message, context);
	enum MHD_Result ret = emhd__queue_response(conn, r, res);
	emh_response_free(res);
	return ret;
}
