/* SPDX-License-Identifier: MIT */
/*
 * core/daemon/call.c: a request's way to its service, without a socket:
 * routing by the first path segment, the service's scope (opened, handled,
 * closed -- every fork closed and every connection back in its pool before
 * the answer goes out, so no client reading slowly holds a database
 * connection), the error bodies, and the cap on the answer's size.  The
 * HTTP front calls it from its workers with what libmicrohttpd parsed;
 * tests/fuzz calls it with what a fuzzer made up, so both run this code.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <emhost/web.h>

#include "httpd_int.h"

size_t emhd_route(const char *uri, const char **name)
{
	const char *p = uri ? uri : "";
	if (*p == '/')
		p++;
	*name = p;
	return strcspn(p, "/?");
}

/* The answer is over the cap: a fixed 500 in its place, never part of it. */
static void over_cap(emh_host *h, const char *uri, emh_response *res, size_t len, size_t cap)
{
	char u[512];
	emh_host_log(h, EMH_LOG_ERROR, NULL, "%s: the answer of %zu bytes is over server.max_response (%zu bytes): "
		     "answered 500 instead", emh_text_clean(uri, u, sizeof u), len, cap);
	emh_response_reset(res);
	emhd__res_error(res, 500, "the answer is too large", NULL);
}

int emhd_call_service(emh_services *svcs, const emhd_call *c, size_t max_response, emh_response *res)
{
	emh_host *h = emh_services_host(svcs);
	const char *seg;
	size_t n = emhd_route(c->uri, &seg);
	emh_response_reset(res);
	if (n == 0) {
		emhd__res_error(res, 404, "no service in the path: use /<service>/...", NULL);
		return 0;
	}
	/* A service name is an identifier of at most 63 bytes: a longer path
	 * segment names no service whether it is cut here or not. */
	char name[128];
	size_t nl = n < sizeof name ? n : sizeof name - 1;
	memcpy(name, seg, nl);
	name[nl] = '\0';
	/* the path below the service and the raw query; a short path on the stack */
	const char *rest = seg + n, *q = strchr(rest, '?');
	size_t pl = q ? (size_t)(q - rest) : strlen(rest);
	char pathbuf[256], *path = pl < sizeof pathbuf ? pathbuf : malloc(pl + 1);
	if (!path) {
		emhd__res_error(res, 500, "out of memory", NULL);
		return 0;
	}
	memcpy(path, rest, pl);
	path[pl] = '\0';
	emh_request req = {
		.method = c->method,
		.path = path,
		.query = q ? q + 1 : "",
		.args = c->args,
		.nargs = c->nargs,
		.headers = c->headers,
		.nheaders = c->nheaders,
		.body = c->body,
		.body_len = c->body_len,
	};
	emh_error err;
	emh_scope *scope = NULL;
	int rc = emh_scope_open(svcs, name, &scope, &err);
	if (rc == 0) {
		/* causal reads across requests (docs/replicas.md): the client's tokens in, the writes' out */
		const char *after = emh_request_header(&req, "X-Emhost-After");
		if (after || c->fork_flags)
			rc = emh_scope_fork_opts(scope, c->fork_flags, after, &err);
		if (rc == 0)
			rc = emh_scope_handle(scope, &req, res, &err);
		if ((c->fork_flags & EMH_FORK_NOWAIT) && emh_scope_would_wait(scope)) {
			/* the handler met a wait it may not make here: not its answer */
			emh_scope_close(scope);
			emh_response_reset(res);
			if (path != pathbuf)
				free(path);
			return 1;
		}
		char tok[1024];
		emh_error terr;
		if (rc == 0 && emh_scope_token(scope, tok, sizeof tok, &terr) == 0 && tok[0])
			emh_response_add_header(res, "X-Emhost-After", tok, &terr);
		/* forks close (connections go back to their pools) before the reply is sent;
		 * closed whatever failed after the open (the scope is never left behind) */
		emh_scope_close(scope);
		int status = emh_response_status(res);
		if (status < 200 || status > 599) {
			/* whatever the handler returned: a status that is none is a server bug */
			char u[512];
			emh_host_log(h, EMH_LOG_ERROR, NULL,
				     "%s: service '%s' answered HTTP status %d, which is not a final answer's (200-599): sent 500",
				     emh_text_clean(c->uri, u, sizeof u), name, status);
			emh_response_reset(res);
			emhd__res_error(res, 500, "the service answered with an invalid HTTP status", NULL);
			rc = 0;
		}
	}
	/* a handler's own 4xx error body (per-field errors) is kept when its
	 * status is the one its code maps to; anything else is mapped */
	if (rc)
		emh_web_answer(res, rc, &err, h, c->uri);
	if (path != pathbuf)
		free(path);
	size_t len;
	emh_response_body(res, &len);
	if (max_response && len > max_response)
		over_cap(h, c->uri, res, len, max_response);
	return 0;
}
