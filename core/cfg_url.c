/* SPDX-License-Identifier: MIT */
/* core/cfg_url.c: connection URLs (scheme://user:password@host:port/database?k=v) into settings. */
#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cfg_int.h"

/* The pieces a URL can set: replaced as a whole when an environment URL is given. */
static const char *const url_keys[] = { "driver", "url", "host", "port", "user", "database", "path", NULL };

static const struct {
	const char *scheme, *driver;
} builtin_schemes[] = {
	{ "sqlite", "sqlite" },	    { "sqlite3", "sqlite" },	 { "postgres", "postgres" },
	{ "postgresql", "postgres" }, { "mysql", "mysql" },	     { "mariadb", "mysql" },
	{ "mongodb", "mongo" },	    { "mongodb+srv", "mongo" },
};

/* ---- URLs ---- */

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Percent-decode s[0..n) into a new string; NULL in *out with rc for errors. */
static int pct_decode(const char *s, size_t n, const char *origin, const char *what, char **out, emh_error *err)
{
	char *d = malloc(n + 1), *w = d;
	if (!d)
		return emh__cfg_oom(err);
	for (size_t i = 0; i < n; i++) {
		if (s[i] != '%') {
			*w++ = s[i];
			continue;
		}
		if (i + 2 >= n) {
			free(d);
			return emh_error_set(err, EMH_ECONFIG, "%s: bad percent-escape in the %s of the url", origin, what);
		}
		int h = hexval((unsigned char)s[i + 1]), l = hexval((unsigned char)s[i + 2]);
		if (h < 0 || l < 0 || (h == 0 && l == 0)) {
			free(d);
			return emh_error_set(err, EMH_ECONFIG, "%s: bad percent-escape in the %s of the url", origin, what);
		}
		*w++ = (char)(h * 16 + l);
		i += 2;
	}
	*w = '\0';
	*out = d;
	return 0;
}

static const char *scheme_driver(const char *scheme, const emh_driver *const *drivers, size_t ndrivers)
{
	for (size_t i = 0; i < ndrivers; i++) {
		const emh_driver *d = drivers[i];
		if (!d || !d->name)
			continue;
		for (const char *const *s = d->url_schemes; s && *s; s++)
			if (strcasecmp(*s, scheme) == 0)
				return d->name;
		if (strcasecmp(d->name, scheme) == 0)
			return d->name;
	}
	for (size_t i = 0; i < sizeof builtin_schemes / sizeof *builtin_schemes; i++)
		if (strcasecmp(builtin_schemes[i].scheme, scheme) == 0)
			return builtin_schemes[i].driver;
	return NULL;
}

/* One piece of a URL to set. */
struct url_piece {
	char *key, *value;
	bool secret;
};

struct url_parts {
	struct url_piece v[64];
	size_t n;
	bool has_password;
};

static void url_parts_release(struct url_parts *u)
{
	for (size_t i = 0; i < u->n; i++) {
		free(u->v[i].key);
		free(u->v[i].value);
	}
	u->n = 0;
}

/* Add a piece; value is taken over (freed on failure). */
static int url_add(struct url_parts *u, const char *key, char *value, bool secret, const char *origin, emh_error *err)
{
	if (!value)
		return emh__cfg_oom(err);
	if (u->n == sizeof u->v / sizeof *u->v) {
		free(value);
		return emh_error_set(err, EMH_ECONFIG, "%s: too many query parameters in the url", origin);
	}
	char *k = strdup(key);
	if (!k) {
		free(value);
		return emh__cfg_oom(err);
	}
	u->v[u->n++] = (struct url_piece){ k, value, secret };
	return 0;
}

static int url_add_decoded(struct url_parts *u, const char *key, const char *s, size_t n, bool secret,
			   const char *origin, emh_error *err)
{
	char *v;
	int rc = pct_decode(s, n, origin, key, &v, err);
	return rc ? rc : url_add(u, key, v, secret, origin, err);
}

static int url_query(struct url_parts *u, const char *q, const char *origin, emh_error *err)
{
	while (*q) {
		size_t len = strcspn(q, "&");
		if (len) {
			const char *eq = memchr(q, '=', len);
			size_t klen = eq ? (size_t)(eq - q) : len;
			char *k;
			int rc;
			if (klen == 0)
				return emh_error_set(err, EMH_ECONFIG, "%s: empty parameter name in the url query", origin);
			if ((rc = pct_decode(q, klen, origin, "query", &k, err)))
				return rc;
			bool secret = strcasecmp(k, "password") == 0;
			if (secret)
				u->has_password = true;
			if (eq)
				rc = url_add_decoded(u, k, eq + 1, len - klen - 1, secret, origin, err);
			else
				rc = url_add(u, k, strdup("true"), secret, origin, err);
			free(k);
			if (rc)
				return rc;
		}
		q += len;
		if (*q == '&')
			q++;
	}
	return 0;
}

/* sqlite:///abs, sqlite://rel, sqlite::memory:, sqlite:path [?k=v...] */
static int url_split_file(struct url_parts *u, const char *rest, const char *origin, emh_error *err)
{
	if (strncmp(rest, "//", 2) == 0)
		rest += 2;
	size_t plen = strcspn(rest, "?");
	if (plen == 0)
		return emh_error_set(err, EMH_ECONFIG, "%s: the url names no database file (sqlite:///path or sqlite::memory:)",
				     origin);
	int rc = url_add_decoded(u, "path", rest, plen, false, origin, err);
	if (!rc && rest[plen] == '?')
		rc = url_query(u, rest + plen + 1, origin, err);
	return rc;
}

/* //[user[:password]@]host[:port][,host[:port]...][/database][?k=v&...] */
static int url_split_net(struct url_parts *u, const char *rest, const char *origin, emh_error *err)
{
	int rc;
	if (strncmp(rest, "//", 2) != 0)
		return emh_error_set(err, EMH_ECONFIG, "%s: expected '//' after the url scheme", origin);
	rest += 2;
	size_t alen = strcspn(rest, "/?");
	const char *auth = rest, *at = NULL;
	for (size_t i = 0; i < alen; i++)
		if (auth[i] == '@')
			at = auth + i; /* the last '@': an unescaped one in a password still works */
	const char *hosts = auth;
	if (at) {
		size_t ulen = (size_t)(at - auth);
		const char *colon = memchr(auth, ':', ulen);
		size_t namelen = colon ? (size_t)(colon - auth) : ulen;
		if (namelen && (rc = url_add_decoded(u, "user", auth, namelen, false, origin, err)))
			return rc;
		if (colon) {
			u->has_password = true;
			if ((rc = url_add_decoded(u, "password", colon + 1, ulen - namelen - 1, true, origin, err)))
				return rc;
		}
		hosts = at + 1;
	}
	/* several hosts (mongodb replica sets, libpq multi-host): the first is "host" */
	size_t hlen = (size_t)(auth + alen - hosts);
	size_t first = 0;
	while (first < hlen && hosts[first] != ',')
		first++;
	const char *h = hosts, *port = NULL;
	size_t namelen = first;
	if (first && h[0] == '[') {
		const char *close = memchr(h, ']', first);
		if (!close)
			return emh_error_set(err, EMH_ECONFIG, "%s: unterminated '[' in the url host", origin);
		if ((rc = url_add_decoded(u, "host", h + 1, (size_t)(close - h - 1), false, origin, err)))
			return rc;
		namelen = 0;
		if (close + 1 < h + first) {
			if (close[1] != ':')
				return emh_error_set(err, EMH_ECONFIG, "%s: bad url host", origin);
			port = close + 2;
		}
	} else {
		const char *colon = memchr(h, ':', first);
		if (colon) {
			namelen = (size_t)(colon - h);
			port = colon + 1;
		}
		if (namelen && (rc = url_add_decoded(u, "host", h, namelen, false, origin, err)))
			return rc;
	}
	if (port) {
		size_t plen = (size_t)(h + first - port);
		long n = 0;
		if (plen == 0 || plen > 5)
			return emh_error_set(err, EMH_ECONFIG, "%s: bad port in the url", origin);
		for (size_t i = 0; i < plen; i++) {
			if (!isdigit((unsigned char)port[i]))
				return emh_error_set(err, EMH_ECONFIG, "%s: bad port in the url", origin);
			n = n * 10 + (port[i] - '0');
		}
		if (n < 1 || n > 65535)
			return emh_error_set(err, EMH_ECONFIG, "%s: port %ld out of range in the url", origin, n);
		char buf[8];
		snprintf(buf, sizeof buf, "%ld", n);
		if ((rc = url_add(u, "port", strdup(buf), false, origin, err)))
			return rc;
	}
	rest += alen;
	if (*rest == '/') {
		rest++;
		size_t dlen = strcspn(rest, "?");
		if (dlen && (rc = url_add_decoded(u, "database", rest, dlen, false, origin, err)))
			return rc;
		rest += dlen;
	}
	if (*rest == '?')
		return url_query(u, rest + 1, origin, err);
	return 0;
}

/* The origin of the "url" key itself: "url (X)" -> "X". */
static void url_self_origin(const char *origin, char *buf, size_t cap)
{
	size_t n = strlen(origin);
	if (strncmp(origin, "url (", 5) == 0 && n > 6 && origin[n - 1] == ')')
		snprintf(buf, cap, "%.*s", (int)(n - 6), origin + 5);
	else
		snprintf(buf, cap, "%s", origin);
}

/*
 * Apply url to c.  fill: only keys c does not have yet (a url written in the
 * file next to explicit keys: the explicit keys win); else the URL replaces
 * every connection key c had (and its password/password_env when the URL
 * carries a password).
 */
static int url_apply(emh__ctxconf *c, const char *url, const char *origin, const emh_driver *const *drivers,
		     size_t ndrivers, bool fill, emh_error *err)
{
	struct url_parts u = { .n = 0 };
	char scheme[32], selforigin[256];
	int rc = 0;
	size_t slen = 0;

	while (url[slen] && (isalnum((unsigned char)url[slen]) || strchr("+.-", url[slen])))
		slen++;
	if (slen == 0 || url[slen] != ':' || !isalpha((unsigned char)url[0]) || slen >= sizeof scheme)
		return emh_error_set(err, EMH_ECONFIG, "%s: not a url (expected scheme://... or sqlite:///path)", origin);
	memcpy(scheme, url, slen);
	scheme[slen] = '\0';
	for (char *s = scheme; *s; s++)
		*s = (char)tolower((unsigned char)*s);
	const char *driver = scheme_driver(scheme, drivers, ndrivers);
	if (!driver) {
		char list[200];
		size_t n = 0;
		list[0] = '\0';
		for (size_t i = 0; i < ndrivers; i++)
			for (const char *const *s = drivers[i] ? drivers[i]->url_schemes : NULL; s && *s; s++)
				n += (size_t)snprintf(list + n, n < sizeof list ? sizeof list - n : 0, "%s, ", *s);
		for (size_t i = 0; i < sizeof builtin_schemes / sizeof *builtin_schemes && n < sizeof list; i++)
			n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", builtin_schemes[i].scheme,
					      i + 1 < sizeof builtin_schemes / sizeof *builtin_schemes ? ", " : "");
		return emh_error_set(err, EMH_ECONFIG, "%s: unknown url scheme '%s' (known: %s)", origin, scheme, list);
	}
	const char *rest = url + slen + 1;
	if (strcmp(scheme, "sqlite") == 0 || strcmp(scheme, "sqlite3") == 0)
		rc = url_split_file(&u, rest, origin, err);
	else
		rc = url_split_net(&u, rest, origin, err);
	if (rc)
		goto out_release_parts;

	if (!fill) {
		for (const char *const *k = url_keys; *k; k++)
			emh__settings_remove(&c->s, *k);
		if (u.has_password) {
			emh__settings_remove(&c->s, "password");
			emh__settings_remove(&c->s, "password_env");
		}
	}
	url_self_origin(origin, selforigin, sizeof selforigin);
	emh__setting *self = emh__settings_find_mut(&c->s, "url");
	if (self && fill) {
		self->secret = self->secret || u.has_password;
	} else if ((rc = emh__settings_set(&c->s, "url", url, selforigin, NULL, 0, u.has_password))) {
		rc = emh__cfg_oom(err);
		goto out_release_parts;
	}
	if (!(fill && emh__settings_find(&c->s, "driver")) &&
	    emh__settings_set(&c->s, "driver", driver, origin, NULL, 0, false)) {
		rc = emh__cfg_oom(err);
		goto out_release_parts;
	}
	for (size_t i = 0; i < u.n; i++) {
		if (fill && emh__settings_find(&c->s, u.v[i].key))
			continue;
		if (fill && strcmp(u.v[i].key, "password") == 0 && emh__settings_find(&c->s, "password_env"))
			continue;
		if (emh__settings_set(&c->s, u.v[i].key, u.v[i].value, origin, NULL, 0, u.v[i].secret)) {
			rc = emh__cfg_oom(err);
			goto out_release_parts;
		}
	}
out_release_parts:
	url_parts_release(&u);
	return rc;
}

int emh__url_apply(emh__ctxconf *c, const char *url, const char *origin, const emh_driver *const *drivers,
		   size_t ndrivers, emh_error *err)
{
	return url_apply(c, url, origin ? origin : "url", drivers, ndrivers, false, err);
}

int emh__url_fill(emh__ctxconf *c, const char *url, const char *origin, const emh_driver *const *drivers,
		  size_t ndrivers, emh_error *err)
{
	return url_apply(c, url, origin, drivers, ndrivers, true, err);
}
