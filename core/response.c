/* SPDX-License-Identifier: MIT */
/*
 * core/response.c: what a service handler reads and writes: request lookups
 * (headers, query arguments) and the response it fills (status, content
 * type, headers, body).  Plain data, no host: the daemon, a test or a queue
 * worker builds the request and sends the response its own way.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <emhost/service.h>

struct emh_response {
	int status;
	char *content_type; /* ct_buf, or malloc'd when longer */
	char *body;
	size_t len;
	emh_kv *headers;
	size_t nheaders, capheaders;
	char ct_buf[48]; /* every common content type fits: no allocation per answer */
};

/* Set the content type to a copy of ct (NULL: none); ct may point into
 * res's own (copied before the old one is freed). */
static int ct_set(emh_response *res, const char *ct)
{
	char *p = NULL, *old = res->content_type;
	if (ct) {
		size_t n = strlen(ct);
		if (n >= sizeof res->ct_buf) {
			if (!(p = strdup(ct)))
				return EMH_ENOMEM;
		} else {
			memmove(res->ct_buf, ct, n + 1);
			p = res->ct_buf;
		}
	}
	if (old != res->ct_buf)
		free(old);
	res->content_type = p;
	return 0;
}

/* ---- requests ---- */

const char *emh_request_header(const emh_request *req, const char *name)
{
	if (!req || !name)
		return NULL;
	for (size_t i = 0; i < req->nheaders; i++)
		if (req->headers[i].name && strcasecmp(req->headers[i].name, name) == 0)
			return req->headers[i].value;
	return NULL;
}

const char *emh_request_arg(const emh_request *req, const char *name)
{
	if (!req || !name)
		return NULL;
	for (size_t i = 0; i < req->nargs; i++)
		if (req->args[i].name && strcmp(req->args[i].name, name) == 0)
			return req->args[i].value;
	return NULL;
}

/* ---- responses ---- */

emh_response *emh_response_new(void)
{
	emh_response *res = calloc(1, sizeof *res);
	if (res)
		res->status = 200;
	return res;
}

void emh_response_reset(emh_response *res)
{
	if (!res)
		return;
	if (res->content_type != res->ct_buf)
		free(res->content_type);
	free(res->body);
	for (size_t i = 0; i < res->nheaders; i++) {
		free((char *)res->headers[i].name);
		free((char *)res->headers[i].value);
	}
	free(res->headers);
	memset(res, 0, sizeof *res);
	res->status = 200;
}

void emh_response_free(emh_response *res)
{
	emh_response_reset(res);
	free(res);
}

int emh_response_set_owned(emh_response *res, int status, const char *content_type, char *body, size_t len,
			   emh_error *err)
{
	if (!res) {
		free(body);
		return emh_error_set(err, EMH_EINVAL, "no response given");
	}
	if (status < 200 || status > 599) {
		/* A handler bug, not the client's: the status is kept (without the
		 * body) so that whoever sends the response sees it -- the daemon
		 * answers 500 and logs it -- whatever the handler does with this error.
		 * A 1xx is no final answer: sent, it leaves the client waiting for
		 * one (HTTP/1.1) or the connection dropped (HTTP/1.0). */
		free(body);
		ct_set(res, NULL);
		free(res->body);
		res->body = NULL;
		res->len = 0;
		res->status = status;
		return emh_error_set(err, EMH_EINVAL, "HTTP status %d is not a final answer's (200-599)", status);
	}
	if (ct_set(res, content_type) != 0) {
		free(body);
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	}
	free(res->body);
	res->status = status;
	res->body = body;
	res->len = body ? len : 0;
	return 0;
}

int emh_response_set(emh_response *res, int status, const char *content_type, const void *body, size_t len,
		     emh_error *err)
{
	char *copy = NULL;
	if (body) {
		if (!(copy = malloc(len + 1)))
			return emh_error_set(err, EMH_ENOMEM, "out of memory");
		memcpy(copy, body, len);
		copy[len] = '\0';
	}
	return emh_response_set_owned(res, status, content_type, copy, len, err);
}

int emh_response_add_header(emh_response *res, const char *name, const char *value, emh_error *err)
{
	if (!res || !name || !value || !*name)
		return emh_error_set(err, EMH_EINVAL, "response header needs a name and a value");
	if (strpbrk(name, "\r\n:") || strpbrk(value, "\r\n"))
		return emh_error_set(err, EMH_EINVAL, "response header '%s' holds CR, LF or ':'", name);
	if (strcasecmp(name, "Content-Type") == 0) {
		/* the response has one content type: this replaces it rather than sending two */
		return ct_set(res, value) ? emh_error_set(err, EMH_ENOMEM, "out of memory") : 0;
	}
	if (res->nheaders == res->capheaders) {
		size_t cap = res->capheaders ? res->capheaders * 2 : 4;
		emh_kv *v = realloc(res->headers, cap * sizeof *v);
		if (!v)
			return emh_error_set(err, EMH_ENOMEM, "out of memory");
		res->headers = v;
		res->capheaders = cap;
	}
	char *n = strdup(name), *v = strdup(value);
	if (!n || !v) {
		free(n);
		free(v);
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	}
	res->headers[res->nheaders].name = n;
	res->headers[res->nheaders].value = v;
	res->nheaders++;
	return 0;
}

int emh_response_status(const emh_response *res) { return res ? res->status : 0; }
const char *emh_response_content_type(const emh_response *res) { return res ? res->content_type : NULL; }

const char *emh_response_body(const emh_response *res, size_t *len)
{
	if (len)
		*len = res ? res->len : 0;
	return res ? res->body : NULL;
}

char *emh_response_take_body(emh_response *res, size_t *len)
{
	char *body = res ? res->body : NULL;
	if (len)
		*len = body ? res->len : 0;
	if (res) {
		res->body = NULL;
		res->len = 0;
	}
	return body;
}

size_t emh_response_nheaders(const emh_response *res) { return res ? res->nheaders : 0; }

const emh_kv *emh_response_header(const emh_response *res, size_t i)
{
	return res && i < res->nheaders ? &res->headers[i] : NULL;
}
