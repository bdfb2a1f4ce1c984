/* SPDX-License-Identifier: MIT */
/*
 * core/daemon/reply.c: emhostd's answers.  The mapping from EMH_E* codes to
 * HTTP statuses and JSON error bodies is the toolkit's (emhost/web.h: one
 * mapping for the daemon and every service; database text never reaches
 * the client, it goes to the log); here, queueing a response on its
 * connection, which is where every request's metrics are counted.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <emhost/web.h>

#include "httpd_int.h"

int emhd_http_status(int code) { return emh_web_status(code); }

/* Fill res with a JSON body (takes the reference to j). */
void emhd__res_json(emh_response *res, int status, json_t *j)
{
	if (emh_web_reply_json(res, status, j, NULL) != 0)
		emh_web_answer_status(res, status, "the answer could not be encoded", NULL);
}

/* An error body; message and context are cleaned (they may hold request text). */
void emhd__res_error(emh_response *res, int status, const char *message, const char *context)
{
	emh_web_answer_status(res, status, message, context);
}

/* The error body of an EMH_E* failure: the toolkit's one mapping (database
 * text replaced by a fixed one, and logged in full through h). */
void emhd__res_emh_error(emh_host *h, const char *uri, emh_response *res, const emh_error *err)
{
	emh_web_answer_error(res, err, h, uri);
}

/* 503 with Retry-After into res, for a request no handler will see. */
void emhd__res_refused(emh_response *res, const char *why)
{
	emh_response_reset(res);
	emhd__res_error(res, 503, why, NULL);
}

/* Queue res on the connection (body copied); records metrics, logs at debug. */
enum MHD_Result emhd__queue_response(struct MHD_Connection *conn, emhd_req *r, emh_response *res)
{
	/* The body goes to libmicrohttpd as it is, freed by it when sent: no copy. */
	size_t len;
	char *body = emh_response_take_body(res, &len);
	int status = emh_response_status(res);
	if (body && len == 0) {
		free(body);
		body = NULL;
	}
	struct MHD_Response *resp = body ? MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE)
					 : MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
	if (!resp) {
		free(body);
		return MHD_NO;
	}
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
