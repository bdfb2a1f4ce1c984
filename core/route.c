/* SPDX-License-Identifier: MIT */
/*
 * core/route.c: a service's declared routes (emh_route, service ABI 1.1):
 * their patterns checked when the service loads (syntax, and no two routes
 * of one method that can match one path), and a request matched against
 * them by emh_scope_handle -- the route's function called with the path
 * parameters, EMH_ENOTFOUND for a path no route has, 405 with Allow for a
 * path only other methods have.  Here rather than in the daemon so that
 * every caller of emh_scope_handle (tests, queue workers) routes the same.
 * Patterns are parsed once, when the service loads (emh__routes_compile); a
 * request's parameters point to their names there and, unless long or
 * percent-encoded, to values on the dispatcher's stack: routing a request
 * allocates nothing.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "service_int.h"
#include "text.h"

/* Segments of a pattern or a path: enough for any sane API. */
#define ROUTE_MAX_SEGS 16

typedef enum seg_kind { SEG_LIT, SEG_INT, SEG_TEXT } seg_kind;

typedef struct seg {
	seg_kind kind;
	const char *s; /* literal text, or the parameter's name */
	size_t n;
} seg;

static bool lit_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
	       c == '~' || c == '-';
}

static bool ident_n(const char *s, size_t n)
{
	if (n == 0 || n > 63 || (s[0] >= '0' && s[0] <= '9'))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') ||
		      s[i] == '_'))
			return false;
	return true;
}

/* Split a pattern into segs; -1 with why on a malformed one. */
static int pattern_parse(const char *p, seg *segs, size_t *nsegs, char *why, size_t cap)
{
	size_t n = 0;
	if (*p == '/')
		p++;
	while (*p) {
		const char *e = strchr(p, '/');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		if (len == 0 && !e)
			break; /* a trailing '/' */
		if (n == ROUTE_MAX_SEGS) {
			snprintf(why, cap, "more than %d segments", ROUTE_MAX_SEGS);
			return -1;
		}
		seg *s = &segs[n++];
		if (len > 0 && p[0] == ':') {
			*s = (seg){.kind = SEG_INT, .s = p + 1, .n = len - 1};
		} else if (len > 2 && p[0] == '{' && p[len - 1] == '}') {
			const char *colon = memchr(p, ':', len);
			size_t nl = colon ? (size_t)(colon - p - 1) : len - 2;
			*s = (seg){.kind = SEG_TEXT, .s = p + 1, .n = nl};
			if (colon) {
				size_t tl = (size_t)(p + len - 1 - (colon + 1));
				if (tl == 5 && strncmp(colon + 1, "int64", 5) == 0)
					s->kind = SEG_INT;
				else if (!(tl == 4 && strncmp(colon + 1, "text", 4) == 0)) {
					snprintf(why, cap, "parameter '%.*s' has type '%.*s' (int64 or text)", (int)nl,
						 p + 1, (int)tl, colon + 1);
					return -1;
				}
			}
		} else {
			*s = (seg){.kind = SEG_LIT, .s = p, .n = len};
			for (size_t i = 0; i < len; i++)
				if (!lit_char(p[i])) {
					snprintf(why, cap, "segment '%.*s' is neither a literal ([A-Za-z0-9._~-]) nor a "
						 "parameter (:name, {name:text})", (int)len, p);
					return -1;
				}
			if (len == 0) {
				snprintf(why, cap, "an empty segment");
				return -1;
			}
		}
		if (s->kind != SEG_LIT) {
			if (!ident_n(s->s, s->n)) {
				snprintf(why, cap, "parameter name '%.*s' is not an identifier", (int)s->n, s->s);
				return -1;
			}
			for (size_t k = 0; k + 1 < n; k++)
				if (segs[k].kind != SEG_LIT && segs[k].n == s->n && strncmp(segs[k].s, s->s, s->n) == 0) {
					snprintf(why, cap, "parameter '%.*s' appears twice", (int)s->n, s->s);
					return -1;
				}
		}
		p += len + (e ? 1 : 0);
	}
	*nsegs = n;
	return 0;
}

/* An int64 in decimal: "-"? digits, in range, no sign '+' or spaces.
 * Every path parameter of type int64 is read so on every request: by
 * hand, not through a copy and strtoll. */
static bool int64_text(const char *s, size_t n, int64_t *out)
{
	if (n == 0 || n > 23) /* as long as it ever was: leading zeros count */
		return false;
	bool neg = s[0] == '-';
	size_t i = neg;
	if (i == n)
		return false;
	while (n - i > 1 && s[i] == '0')
		i++;
	if (n - i > 19) /* more digits than INT64_MAX has (or not digits) */
		return false;
	uint64_t v = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	for (; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (uint64_t)(s[i] - '0'); /* 19 digits fit in uint64_t */
	}
	if (v > lim)
		return false;
	if (out)
		*out = neg ? (int64_t)(0 - v) : (int64_t)v;
	return true;
}

/* Can segment a and segment b of two patterns match one path segment? */
static bool seg_overlap(const seg *a, const seg *b)
{
	if (a->kind == SEG_LIT && b->kind == SEG_LIT)
		return a->n == b->n && memcmp(a->s, b->s, a->n) == 0;
	if (a->kind == SEG_LIT || b->kind == SEG_LIT) {
		const seg *l = a->kind == SEG_LIT ? a : b, *p = a->kind == SEG_LIT ? b : a;
		return p->kind == SEG_TEXT || int64_text(l->s, l->n, NULL);
	}
	return true; /* two parameters: an integer is text too */
}

/* Is method m one of the ", "-separated list? (A token, not a substring:
 * "GE" is not in "GET".) */
static bool list_has(const char *list, const char *m)
{
	size_t n = strlen(m);
	for (const char *p = list; (p = strstr(p, m)); p += n)
		if ((p == list || p[-1] == ' ') && (p[n] == ',' || p[n] == '\0'))
			return true;
	return false;
}

static bool method_valid(const char *m)
{
	if (!m || !*m || strlen(m) > 16)
		return false;
	for (; *m; m++)
		if (*m < 'A' || *m > 'Z')
			return false;
	return true;
}

int emh__routes_check(const emh_service *d, char *why, size_t cap)
{
	if (d->nroutes && !d->routes) {
		snprintf(why, cap, "service '%s': nroutes is %zu but routes is NULL", d->name, d->nroutes);
		return -1;
	}
	seg a[ROUTE_MAX_SEGS], b[ROUTE_MAX_SEGS];
	size_t na, nb;
	char sub[160];
	for (size_t i = 0; i < d->nroutes; i++) {
		const emh_route *r = &d->routes[i];
		const char *path = r->path ? r->path : "(null)";
		if (!method_valid(r->method)) {
			snprintf(why, cap, "service '%s': route %zu (%s): method '%s' is not an upper-case token", d->name,
				 i, path, r->method ? r->method : "(null)");
			return -1;
		}
		if (!r->path || !r->fn) {
			snprintf(why, cap, "service '%s': route %zu (%s %s): %s is NULL", d->name, i, r->method, path,
				 r->path ? "fn" : "path");
			return -1;
		}
		if ((r->path[0] && r->path[0] != '/') || pattern_parse(r->path, a, &na, sub, sizeof sub) != 0) {
			snprintf(why, cap, "service '%s': route %s %s: %s", d->name, r->method, r->path,
				 r->path[0] && r->path[0] != '/' ? "the path must start with '/'" : sub);
			return -1;
		}
		if (r->doc && r->doc->struct_size < offsetof(emh_route_doc, summary) + sizeof(void *)) {
			snprintf(why, cap, "service '%s': route %s %s: doc struct_size %u is too small", d->name,
				 r->method, r->path, (unsigned)r->doc->struct_size);
			return -1;
		}
		for (size_t j = 0; j < i; j++) {
			const emh_route *o = &d->routes[j];
			if (strcmp(o->method, r->method) != 0)
				continue;
			pattern_parse(o->path, b, &nb, sub, sizeof sub);
			if (na != nb)
				continue;
			bool overlap = true;
			for (size_t k = 0; k < na && overlap; k++)
				overlap = seg_overlap(&a[k], &b[k]);
			if (overlap) {
				snprintf(why, cap, "service '%s': routes %s %s and %s %s shadow each other (a path can "
					 "match both)", d->name, o->method, o->path, r->method, r->path);
				return -1;
			}
		}
	}
	return 0;
}

/* A route's pattern, parsed once when its service loads. */
typedef struct route_pat {
	seg segs[ROUTE_MAX_SEGS];
	size_t n;
} route_pat;

struct emh__routes {
	char *names; /* the parameters' names, each NUL-terminated: what a request's params point to */
	route_pat pat[];
};

emh__routes *emh__routes_compile(const emh_service *d)
{
	emh__routes *rs = calloc(1, sizeof *rs + (d->nroutes ? d->nroutes : 1) * sizeof rs->pat[0]);
	if (!rs)
		return NULL;
	char why[8];
	size_t names = 0;
	for (size_t i = 0; i < d->nroutes; i++) {
		route_pat *p = &rs->pat[i];
		pattern_parse(d->routes[i].path, p->segs, &p->n, why, sizeof why); /* checked at load */
		for (size_t k = 0; k < p->n; k++)
			if (p->segs[k].kind != SEG_LIT)
				names += p->segs[k].n + 1;
	}
	if (names && !(rs->names = malloc(names))) {
		free(rs);
		return NULL;
	}
	char *w = rs->names;
	for (size_t i = 0; i < d->nroutes; i++)
		for (size_t k = 0; k < rs->pat[i].n; k++) {
			seg *g = &rs->pat[i].segs[k];
			if (g->kind == SEG_LIT)
				continue;
			memcpy(w, g->s, g->n);
			w[g->n] = '\0';
			g->s = w;
			w += g->n + 1;
		}
	return rs;
}

void emh__routes_free(emh__routes *rs)
{
	if (rs) {
		free(rs->names);
		free(rs);
	}
}

/* Percent-decode n bytes of s into a new string; NULL when malformed, holding
 * a NUL, or out of memory (the first two: the segment matches no text). */
static char *pct_decode(const char *s, size_t n)
{
	char *out;
	return emh__pct_decode(s, n, &out) == 0 ? out : NULL;
}

/* Split a request path (below the mount, undecoded) into segments; false
 * when it has too many or an empty one inside ("/a//b"). */
static bool path_split(const char *p, seg *segs, size_t *nsegs)
{
	size_t n = 0;
	if (*p == '/')
		p++;
	while (*p) {
		const char *e = strchr(p, '/');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		if (len == 0)
			return !e[1] ? (*nsegs = n, true) : false;
		if (n == ROUTE_MAX_SEGS)
			return false;
		segs[n++] = (seg){.kind = SEG_LIT, .s = p, .n = len};
		p += len + (e ? 1 : 0);
	}
	*nsegs = n;
	return true;
}

/* Where a match's parameter values go: short ones into buf, the rest
 * malloc'd (owned has their bits). */
typedef struct param_vals {
	char buf[512];
	size_t used;
	unsigned owned; /* bit k: kv[k].value is malloc'd */
} param_vals;
_Static_assert(ROUTE_MAX_SEGS <= sizeof(unsigned) * 8, "a bit per parameter");

static void params_free(emh_kv *kv, size_t n, const param_vals *pv)
{
	for (size_t k = 0; k < n; k++)
		if (pv->owned & (1u << k))
			free((char *)kv[k].value);
}

/* Does pattern (parsed) match the path's segments?  Parameters into kv
 * (decoded: params_free with pv) when kv is not NULL; their names are the
 * pattern's (NUL-terminated: emh__routes_compile). */
static bool route_match(const seg *pat, size_t np, const seg *path, size_t n, emh_kv *kv, size_t *nkv,
			param_vals *pv)
{
	if (np != n)
		return false;
	size_t k = 0;
	if (pv)
		pv->used = pv->owned = 0;
	for (size_t i = 0; i < n; i++) {
		const seg *s = &pat[i], *v = &path[i];
		if (s->kind == SEG_LIT) {
			if (s->n != v->n || memcmp(s->s, v->s, v->n) != 0)
				goto fail;
			continue;
		}
		if (s->kind == SEG_INT && !int64_text(v->s, v->n, NULL))
			goto fail;
		/* an integer is digits; text without '%' is itself */
		bool plain = s->kind == SEG_INT || !memchr(v->s, '%', v->n);
		if (plain && kv && v->n < sizeof pv->buf - pv->used) {
			char *val = pv->buf + pv->used;
			memcpy(val, v->s, v->n);
			val[v->n] = '\0';
			pv->used += v->n + 1;
			kv[k++] = (emh_kv){.name = s->s, .value = val};
			continue;
		}
		if (plain && !kv)
			continue;
		char *val = plain ? strndup(v->s, v->n) : pct_decode(v->s, v->n);
		if (!val)
			goto fail;
		if (!kv) {
			free(val);
			continue;
		}
		pv->owned |= 1u << k;
		kv[k++] = (emh_kv){.name = s->s, .value = val};
	}
	if (nkv)
		*nkv = k;
	return true;
fail:
	if (kv)
		params_free(kv, k, pv);
	return false;
}

/* The JSON string of s (already cleaned of control characters) into out. */
static void json_quote(const char *s, char *out, size_t cap)
{
	size_t o = 0;
	out[o++] = '"';
	for (; *s && o + 3 < cap; s++) {
		if (*s == '"' || *s == '\\')
			out[o++] = '\\';
		out[o++] = *s;
	}
	out[o++] = '"';
	out[o] = '\0';
}

/* 405 with Allow: the error body every emhost error answer has. */
static int answer_405(const emh_svc *svc, const emh_request *req, const char *allow, emh_response *res,
		      emh_error *err)
{
	char m[64], p[256], msg[512], q[2 * sizeof msg + 4], body[sizeof q + 128];
	snprintf(msg, sizeof msg, "method %s is not allowed on /%s%s (allowed: %s)",
		 emh_text_clean(req->method, m, sizeof m), svc->name, emh_text_clean(req->path, p, sizeof p), allow);
	json_quote(msg, q, sizeof q);
	int n = snprintf(body, sizeof body, "{\"error\":{\"code\":\"method_not_allowed\",\"message\":%s,\"context\":\"\"}}",
			 q);
	int rc = emh_response_set(res, 405, "application/json", body, (size_t)n, err);
	return rc ? rc : emh_response_add_header(res, "Allow", allow, err);
}

int emh__routes_dispatch(emh_scope *scope, const emh_svc *svc, const emh_request *req, emh_response *res,
			 emh_error *err)
{
	const emh_service *d = &svc->desc;
	seg path[ROUTE_MAX_SEGS];
	size_t n = 0;
	char allow[256] = "";
	const char *method = req->method ? req->method : "";
	bool split = path_split(req->path ? req->path : "", path, &n);
	for (size_t i = 0; split && i < d->nroutes; i++) {
		const emh_route *r = &d->routes[i];
		const route_pat *p = &svc->routes->pat[i];
		if (strcmp(r->method, method) != 0) {
			if (route_match(p->segs, p->n, path, n, NULL, NULL, NULL) && !list_has(allow, r->method))
				emh__list_add(allow, sizeof allow, r->method);
			continue;
		}
		emh_kv kv[ROUTE_MAX_SEGS];
		size_t nkv = 0;
		param_vals pv;
		if (!route_match(p->segs, p->n, path, n, kv, &nkv, &pv))
			continue;
		emh_request copy = *req;
		copy.params = kv;
		copy.nparams = nkv;
		copy.route = r;
		int rc = r->fn(scope, &copy, res, err);
		params_free(kv, nkv, &pv);
		return rc;
	}
	/* HEAD is GET without its body (RFC 9110, 9.3.2): a path with a GET
	 * route and no HEAD route of its own answers it through the GET route,
	 * and the server sends the headers only.  Allow says so. */
	if (list_has(allow, "GET")) {
		if (strcmp(method, "HEAD") == 0) {
			emh_request get = *req;
			get.method = "GET";
			return emh__routes_dispatch(scope, svc, &get, res, err);
		}
		if (!list_has(allow, "HEAD"))
			emh__list_add(allow, sizeof allow, "HEAD");
	}
	/* a path only other methods have is a 405 even with a handle, which
	 * gets what no route's path matches (service.h) */
	if (allow[0])
		return answer_405(svc, req, allow, res, err);
	if (d->handle)
		return d->handle(scope, req, res, err);
	char m[64], p[256];
	return emh_error_set(err, EMH_ENOTFOUND, "no route %s /%s%s", emh_text_clean(method, m, sizeof m), svc->name,
			     emh_text_clean(req->path, p, sizeof p));
}

const char *emh_request_param(const emh_request *req, const char *name)
{
	if (!req || !name)
		return NULL;
	for (size_t i = 0; i < req->nparams; i++)
		if (strcmp(req->params[i].name, name) == 0)
			return req->params[i].value;
	return NULL;
}

int64_t emh_request_param_int64(const emh_request *req, const char *name)
{
	const char *v = emh_request_param(req, name);
	int64_t out = 0;
	if (v && !int64_text(v, strlen(v), &out))
		out = 0;
	return out;
}
