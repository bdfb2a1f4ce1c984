/* SPDX-License-Identifier: MIT */
/*
 * core/cfg_url.c: connection URLs into settings.  The core knows no driver
 * by name: a URL's scheme picks the loaded driver that declares it
 * (emh_driver.url_schemes), and that driver's url_form says how the rest is
 * read (EMH_URL_NETWORK: split into keys; EMH_URL_FILE: a path;
 * EMH_URL_WHOLE: kept whole for the driver).  Whatever the form, the URL is
 * kept as the setting "url", secret when it has userinfo or a password, with
 * a printable form whose passwords are masked.
 */
#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <emhost/buf.h>

#include "cfg_int.h"
#include "text.h"

/* The connection keys a URL gives: a URL from the environment or the API replaces them as a whole. */
static const char *const url_keys[] = { "driver", "url", "host", "port", "user", "database", "path", NULL };

#define URL_MASK "********"

/* A URL taken apart; offsets and lengths point into the URL string. */
struct url {
	const char *text;
	const emh_driver *drv;
	size_t slen;            /* the scheme, text[0..slen) */
	emh__settings pieces;   /* NETWORK/FILE: keys to set (value, secret) */
	emh__settings covered;  /* WHOLE: query keys the URL names (values unused) */
	bool userinfo;          /* user[:password]@ present: the URL is secret */
	bool password;          /* a password in the userinfo or the query */
	bool bare_authority;    /* a //authority without '@': an '@' in the query is a password's rest */
	emh_buf shown;          /* text[0..shown_at) with its passwords masked, built as they are found */
	size_t shown_at;
};

static void url_release(struct url *u)
{
	emh__settings_release(&u->pieces);
	emh__settings_release(&u->covered);
	emh_buf_release(&u->shown);
}

static int url_bad(const char *origin, const char *what, emh_error *err)
{
	return emh_error_set(err, EMH_ECONFIG, "%s: %s", origin, what);
}

/* Percent-decode s[0..n) into a new string; NULL in *out with rc for errors. */
static int pct_decode(const char *s, size_t n, const char *origin, const char *what, char **out, emh_error *err)
{
	int rc = emh__pct_decode(s, n, out);
	if (rc == EMH_ENOMEM)
		return emh__cfg_oom(err);
	if (rc)
		return emh_error_set(err, EMH_ECONFIG, "%s: bad percent-escape in the %s of the url", origin, what);
	return 0;
}

/* Set piece key to the decoded s[0..n). */
static int url_piece(struct url *u, const char *key, const char *s, size_t n, bool secret, const char *origin,
		     emh_error *err)
{
	char *v;
	int rc = pct_decode(s, n, origin, key, &v, err);
	if (rc)
		return rc;
	rc = emh__settings_set(&u->pieces, key, v, NULL, NULL, 0, secret);
	free(v);
	return rc ? emh__cfg_oom(err) : 0;
}

/* A password at text[off..off+len), found after any earlier one: masked in the printable form. */
static void url_mask(struct url *u, size_t off, size_t len)
{
	emh_buf_add(&u->shown, u->text + u->shown_at, off - u->shown_at);
	emh_buf_adds(&u->shown, URL_MASK);
	u->shown_at = off + len;
	u->password = true;
}

/*
 * The query from text[off] on: key[=value]&...  split: each key becomes a
 * piece (a key without '=' is "true"); else the keys are only noted as
 * covered.  A key naming a password (any case: password, sslpassword, ...)
 * is secret and its value masked.  An '@' in a key, or anywhere in the query
 * of a URL whose authority has no '@', is what is left of a password
 * holding an unescaped '?' (app:Xy?a=S@h: the URL would have no userinfo and
 * be shown in clear): refused rather than guessed.  A split
 * query may not set "url" or "driver", which the URL itself gives: they
 * would replace the URL kept (secret) by one shown in clear, or switch the
 * driver (found by tests/fuzz/fuzz_url.c).
 */
static int url_query(struct url *u, size_t off, bool split, const char *origin, emh_error *err)
{
	const char *q = u->text + off;
	while (*q) {
		size_t len = strcspn(q, "&");
		if (len) {
			const char *eq = memchr(q, '=', len);
			size_t klen = eq ? (size_t)(eq - q) : len;
			char *k;
			int rc;
			if (klen == 0)
				return url_bad(origin, "empty parameter name in the url query", err);
			if (memchr(q, '@', klen))
				return url_bad(origin,
					       "'@' in a parameter name of the url query (percent-encode '?' and '@' "
					       "in a password: %3F, %40)",
					       err);
			if (u->bare_authority && memchr(q, '@', len))
				return url_bad(origin,
					       "'@' in the url query but none before it (percent-encode '?' and '@' "
					       "in a password: %3F, %40, and an '@' in a query value: %40)",
					       err);
			if ((rc = pct_decode(q, klen, origin, "query", &k, err)))
				return rc;
			if (split && (strcmp(k, "url") == 0 || strcmp(k, "driver") == 0)) {
				rc = emh_error_set(err, EMH_ECONFIG, "%s: the url query sets '%s', which the url itself "
						   "gives", origin, k);
				free(k);
				return rc;
			}
			bool secret = false;
			for (const char *p = k; *p && !secret; p++)
				secret = strncasecmp(p, "password", 8) == 0;
			if (secret && eq)
				url_mask(u, (size_t)(eq + 1 - u->text), len - klen - 1);
			u->password = u->password || secret;
			if (split && eq)
				rc = url_piece(u, k, eq + 1, len - klen - 1, secret, origin, err);
			else if (split)
				rc = emh__settings_set(&u->pieces, k, "true", NULL, NULL, 0, secret) ? emh__cfg_oom(err) : 0;
			else
				rc = emh__settings_set(&u->covered, k, NULL, NULL, NULL, 0, false) ? emh__cfg_oom(err) : 0;
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

/* EMH_URL_FILE: scheme:///abs, scheme://rel, scheme::memory:, scheme:path [?k=v...] */
static int url_file(struct url *u, const char *origin, emh_error *err)
{
	size_t off = u->slen + 1;
	if (strncmp(u->text + off, "//", 2) == 0)
		off += 2;
	size_t plen = strcspn(u->text + off, "?");
	if (plen == 0)
		return emh_error_set(err, EMH_ECONFIG,
				     "%s: the url names no file (%.*s:///abs/path, %.*s://rel/path or %.*s::memory:)",
				     origin, (int)u->slen, u->text, (int)u->slen, u->text, (int)u->slen, u->text);
	int rc = url_piece(u, "path", u->text + off, plen, false, origin, err);
	if (!rc && u->text[off + plen] == '?')
		rc = url_query(u, off + plen + 1, true, origin, err);
	return rc;
}

/*
 * The authority after "//" at text[off]: [user[:password]@]hosts.  The
 * userinfo ends at the last '@' before the query, so a password holding an
 * unescaped '@' or '/' (postgres://app:2024/SEKRIT@h:1/app) is still read as
 * a password, never as a host or a database name.  Sets *hosts and *end to
 * where the hosts start and the authority ends.  whole: such a '/' is
 * refused instead, since the driver's client library would read the URL
 * otherwise.
 */
static int url_authority(struct url *u, size_t off, bool whole, const char *origin, size_t *hosts, size_t *end,
			 emh_error *err)
{
	const char *a = u->text + off, *at = NULL;
	size_t alen = strcspn(a, "/?"), before_query = strcspn(a, "?");
	for (size_t i = 0; i < before_query; i++)
		if (a[i] == '@')
			at = a + i;
	if (at && (size_t)(at - a) > alen) {
		if (whole)
			return url_bad(origin,
				       "'/' in the userinfo of the url: percent-encode it (%2F), and an '@' in the "
				       "path (%40)",
				       err);
		alen = (size_t)(at - a) + 1 + strcspn(at + 1, "/?");
	}
	*hosts = off;
	*end = off + alen;
	u->bare_authority = !at;
	if (!at)
		return 0;
	size_t ulen = (size_t)(at - a);
	const char *colon = memchr(a, ':', ulen);
	size_t namelen = colon ? (size_t)(colon - a) : ulen;
	int rc = 0;
	u->userinfo = true;
	if (colon)
		url_mask(u, off + namelen + 1, ulen - namelen - 1);
	if (!whole && namelen)
		rc = url_piece(u, "user", a, namelen, false, origin, err);
	if (!rc && !whole && colon)
		rc = url_piece(u, "password", colon + 1, ulen - namelen - 1, true, origin, err);
	*hosts = off + ulen + 1;
	return rc;
}

/*
 * The host of hosts[0..hlen) ("h:1" or "[::1]:5432") into host and port.
 * Several hosts ("h1:1,h2:2") are refused: the url is split into one host
 * and port, so the others would be dropped without a word.
 */
static int url_host(struct url *u, const char *h, size_t hlen, const char *origin, emh_error *err)
{
	size_t namelen;
	const char *port = NULL;
	int rc = 0;
	if (memchr(h, ',', hlen))
		return url_bad(origin,
			       "the url names several hosts, and a network url takes one host (the driver's "
			       "url form)",
			       err);
	if (hlen && h[0] == '[') {
		const char *close = memchr(h, ']', hlen);
		if (!close)
			return url_bad(origin, "unterminated '[' in the url host", err);
		if ((rc = url_piece(u, "host", h + 1, (size_t)(close - h - 1), false, origin, err)))
			return rc;
		if (close + 1 < h + hlen) {
			if (close[1] != ':')
				return url_bad(origin, "bad url host", err);
			port = close + 2;
		}
	} else {
		const char *colon = memchr(h, ':', hlen);
		namelen = colon ? (size_t)(colon - h) : hlen;
		port = colon ? colon + 1 : NULL;
		if (namelen && (rc = url_piece(u, "host", h, namelen, false, origin, err)))
			return rc;
	}
	if (!port)
		return 0;
	size_t plen = (size_t)(h + hlen - port);
	long n = 0;
	if (plen == 0 || plen > 5)
		return url_bad(origin, "bad port in the url", err);
	for (size_t i = 0; i < plen; i++) {
		if (!isdigit((unsigned char)port[i]))
			return url_bad(origin, "bad port in the url", err);
		n = n * 10 + (port[i] - '0');
	}
	if ((rc = emh__check_range(origin, "port", n, 1, 65535, false, err)))
		return rc;
	char buf[24];
	snprintf(buf, sizeof buf, "%ld", n);
	return emh__settings_set(&u->pieces, "port", buf, NULL, NULL, 0, false) ? emh__cfg_oom(err) : 0;
}

/*
 * EMH_URL_NETWORK: //[user[:password]@]host[:port][/database][?k=v&...]
 * into user, password, host, port, database and each query key.
 */
static int url_network(struct url *u, const char *origin, emh_error *err)
{
	size_t off = u->slen + 1, hosts, end;
	int rc;
	if (strncmp(u->text + off, "//", 2) != 0)
		return url_bad(origin, "expected '//' after the url scheme", err);
	if ((rc = url_authority(u, off + 2, false, origin, &hosts, &end, err)) ||
	    (rc = url_host(u, u->text + hosts, end - hosts, origin, err)))
		return rc;
	const char *rest = u->text + end;
	if (*rest == '/') {
		size_t dlen = strcspn(++rest, "?");
		if (dlen && (rc = url_piece(u, "database", rest, dlen, false, origin, err)))
			return rc;
		rest += dlen;
	}
	return *rest == '?' ? url_query(u, (size_t)(rest + 1 - u->text), true, origin, err) : 0;
}

/*
 * EMH_URL_WHOLE: anything after the scheme, kept whole for the driver.  Only
 * the userinfo (of a //authority) and the query keys are looked at: to mark
 * the URL secret, mask its passwords, and know which keys it covers.
 */
static int url_whole(struct url *u, const char *origin, emh_error *err)
{
	size_t off = u->slen + 1, hosts, end = off;
	int rc;
	if (strncmp(u->text + off, "//", 2) == 0 &&
	    (rc = url_authority(u, off + 2, true, origin, &hosts, &end, err)))
		return rc;
	const char *q = strchr(u->text + end, '?');
	return q ? url_query(u, (size_t)(q + 1 - u->text), false, origin, err) : 0;
}

/*
 * The loaded driver declaring the scheme text[0..slen) into *out (NULL: none
 * does).  When several do, the one named prefer (the context's driver) is
 * it; without one of them named, the url is refused rather than given to the
 * first loaded (found by review).
 */
bool emh__driver_has_scheme(const emh_driver *d, const char *text, size_t slen)
{
	for (const char *const *s = d ? d->url_schemes : NULL; s && *s; s++)
		if (strlen(*s) == slen && strncasecmp(*s, text, slen) == 0)
			return true;
	return false;
}

static int scheme_driver(const char *text, size_t slen, const emh_driver *const *drivers, size_t ndrivers,
			 const char *prefer, const char *origin, const emh_driver **out, emh_error *err)
{
	const emh_driver *first = NULL, *second = NULL;
	*out = NULL;
	for (size_t i = 0; i < ndrivers; i++) {
		if (!emh__driver_has_scheme(drivers[i], text, slen))
			continue;
		if (prefer && strcmp(drivers[i]->name, prefer) == 0) {
			*out = drivers[i];
			return 0;
		}
		if (!first)
			first = drivers[i];
		else if (!second && drivers[i] != first)
			second = drivers[i];
	}
	if (second)
		return emh_error_set(err, EMH_ECONFIG,
				     "%s: url scheme '%.*s' is declared by drivers '%s' and '%s': set the context's "
				     "driver",
				     origin, (int)slen, text, first->name, second->name);
	*out = first;
	return 0;
}

static int err_unknown_scheme(const struct url *u, const char *origin, const emh_driver *const *drivers,
			      size_t ndrivers, emh_error *err)
{
	emh_buf list = EMH_BUF_INIT;
	for (size_t i = 0; i < ndrivers; i++)
		for (const char *const *s = drivers[i] ? drivers[i]->url_schemes : NULL; s && *s; s++)
			emh_buf_addf(&list, "%s%s", list.len ? ", " : "", *s);
	int rc = emh_error_set(err, EMH_ECONFIG, "%s: unknown url scheme '%.*s' (%s%s)", origin, (int)u->slen,
			       u->text, list.len ? "schemes of the loaded drivers: " : "",
			       list.len ? list.ptr : "no loaded driver declares a url scheme");
	emh_buf_release(&list);
	return rc;
}

size_t emh__url_scheme_len(const char *url)
{
	size_t n = 0;
	while (isalnum((unsigned char)url[n]) || (url[n] && strchr("+.-", url[n])))
		n++;
	return n;
}

/* Take url apart as its scheme's driver declares.  Errors never echo the URL. */
static int url_parse(struct url *u, const char *url, const char *origin, const emh_driver *const *drivers,
		     size_t ndrivers, const char *prefer, emh_error *err)
{
	int rc;
	*u = (struct url){ .text = url, .slen = emh__url_scheme_len(url) };
	if (u->slen == 0 || url[u->slen] != ':' || !isalpha((unsigned char)url[0]))
		return url_bad(origin, "not a url (expected scheme://... or scheme:path)", err);
	if ((rc = scheme_driver(url, u->slen, drivers, ndrivers, prefer, origin, &u->drv, err)))
		return rc;
	if (!u->drv)
		return err_unknown_scheme(u, origin, drivers, ndrivers, err);
	switch (u->drv->url_form) {
	case EMH_URL_FILE: return url_file(u, origin, err);
	case EMH_URL_WHOLE: return url_whole(u, origin, err);
	case EMH_URL_NETWORK: return url_network(u, origin, err);
	default:
		return emh_error_set(err, EMH_ECONFIG, "%s: driver '%s' declares an unknown url_form %d", origin,
				     u->drv->name, u->drv->url_form);
	}
}

/* The URL with every password replaced by URL_MASK (a malloc'd string), or NULL when out of memory. */
static char *url_masked(struct url *u)
{
	emh_buf_adds(&u->shown, u->text + u->shown_at);
	u->shown_at = strlen(u->text);
	return emh_buf_take(&u->shown);
}

/* The origin of the "url" key itself: "url (X)" -> "X". */
static char *url_self_origin(const char *origin)
{
	size_t n = strlen(origin);
	if (strncmp(origin, "url (", 5) == 0 && n > 6 && origin[n - 1] == ')')
		return strndup(origin + 5, n - 6);
	return strdup(origin);
}

/* Keep url as the setting "url" of c (fill: the file's own, already there), secret and masked as parsed. */
static int url_keep(emh__ctxconf *c, struct url *u, const char *origin, bool fill)
{
	bool secret = u->userinfo || u->password;
	emh__setting *self = emh__settings_find_mut(&c->s, "url");
	if (!(self && fill)) {
		char *selforigin = url_self_origin(origin);
		int rc = selforigin ? emh__settings_set(&c->s, "url", u->text, selforigin, NULL, 0, secret) : EMH_ENOMEM;
		free(selforigin);
		if (rc)
			return rc;
		self = emh__settings_find_mut(&c->s, "url");
	}
	self->secret = self->secret || secret;
	if (!self->secret)
		return 0;
	char *shown = url_masked(u);
	int rc = shown ? emh__settings_set_shown(&c->s, "url", shown) : EMH_ENOMEM;
	free(shown);
	return rc;
}

/*
 * Apply url to c.  fill: only keys c does not have yet (a url written in the
 * file next to explicit keys: the explicit keys win); else the URL replaces
 * every connection key c had, its password/password_env when the URL
 * carries a password, and the keys a whole URL's query names.
 */
static int url_apply(emh__ctxconf *c, const char *url, const char *origin, const emh_driver *const *drivers,
		     size_t ndrivers, bool fill, emh_error *err)
{
	struct url u;
	/* the context's driver (c is not changed before the parse) picks among drivers sharing the scheme */
	int rc = url_parse(&u, url, origin, drivers, ndrivers, emh__ctxconf_get(c, "driver"), err);
	if (rc)
		goto out_release;
	if (!fill) {
		for (const char *const *k = url_keys; *k; k++)
			emh__settings_remove(&c->s, *k);
		if (u.password) {
			emh__settings_remove(&c->s, "password");
			emh__settings_remove(&c->s, "password_env");
		}
		for (size_t i = 0; i < u.covered.n; i++)
			emh__settings_remove(&c->s, u.covered.v[i].key);
	}
	if (url_keep(c, &u, origin, fill) ||
	    (!(fill && emh__settings_find(&c->s, "driver")) &&
	     emh__settings_set(&c->s, "driver", u.drv->name, origin, NULL, 0, false))) {
		rc = emh__cfg_oom(err);
		goto out_release;
	}
	for (size_t i = 0; i < u.pieces.n; i++) {
		const emh__setting *p = &u.pieces.v[i];
		if (fill && emh__settings_find(&c->s, p->key))
			continue;
		if (fill && strcmp(p->key, "password") == 0 && emh__settings_find(&c->s, "password_env"))
			continue;
		if (emh__settings_set(&c->s, p->key, p->value, origin, NULL, 0, p->secret)) {
			rc = emh__cfg_oom(err);
			goto out_release;
		}
	}
out_release:
	url_release(&u);
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
