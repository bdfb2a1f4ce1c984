/* SPDX-License-Identifier: MIT */
/*
 * core/cfg_check.c: the keys every context accepts, value kinds, the one
 * range check, and checking a context against its driver (unknown keys,
 * kinds, ranges, password_env, defaults).
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <emhost/buf.h>

#include "cfg_int.h"

/* ---- the keys ---- */

const emh_param_spec emh__common_context_keys[] = {
	{ .key = "name", .kind = EMH_PARAM_STRING, .help = "name of the context, [a-z_][a-z0-9_]*, unique in the host" },
	{ .key = "driver", .kind = EMH_PARAM_STRING,
	  .help = "driver plugin serving the context (sqlite, postgres, mysql, mongo)" },
	{ .key = "url", .kind = EMH_PARAM_STRING,
	  .help = "whole connection as a URL (sqlite:///path, postgres://user:pw@host:port/db?k=v, ...)" },
	{ .key = "required", .kind = EMH_PARAM_BOOL, .def = "false",
	  .help = "check the database at start-up and refuse to start when it is down" },
	{ .key = "schema", .kind = EMH_PARAM_STRING, .def = "none",
	  .help = "\"none\"; \"sync\": create missing tables and indexes; \"check\": refuse to serve when the "
		  "database differs from the entities" },
	{ .key = "migrations", .kind = EMH_PARAM_STRING,
	  .help = "folder of the context's migration files (emhost migrate; docs/migrations.md)" },
	{ .key = "migrate", .kind = EMH_PARAM_STRING, .def = "none",
	  .help = "at emhostd start: \"none\"; \"on-start\": apply pending migrations; \"check\": refuse to "
		  "serve while any is pending" },
	{ .key = "password", .kind = EMH_PARAM_STRING, .flags = EMH_PARAM_SECRET, .help = "password (never printed)" },
	{ .key = "password_env", .kind = EMH_PARAM_STRING,
	  .help = "name of the environment variable holding the password" },
	{ .key = "pool.min", .kind = EMH_PARAM_INT, .def = "0", .min = 0, .max = INT32_MAX,
	  .help = "connections kept open when idle" },
	{ .key = "pool.max", .kind = EMH_PARAM_INT, .def = "8", .min = 1, .max = INT32_MAX,
	  .help = "most connections open at once" },
	{ .key = "pool.acquire_timeout_ms", .kind = EMH_PARAM_INT, .def = "5000", .min = 0, .max = INT32_MAX,
	  .help = "how long a fork waits for a free connection before EMH_ETIMEOUT" },
	{ .key = "pool.idle_timeout_ms", .kind = EMH_PARAM_INT, .def = "300000", .min = 0, .max = INT32_MAX,
	  .help = "close a connection idle this long, above pool.min; 0 = never" },
	{ .key = "pool.max_lifetime_ms", .kind = EMH_PARAM_INT, .def = "0", .min = 0, .max = INT32_MAX,
	  .help = "replace a connection older than this; 0 = never" },
	{ .key = "statement_timeout_ms", .kind = EMH_PARAM_INT, .def = "30000", .min = 0, .max = INT32_MAX,
	  .help = "deadline of every database call: past it the call fails with EMH_ETIMEOUT and its connection "
		  "is closed; 0 = none" },
	{ .key = "connect_timeout_ms", .kind = EMH_PARAM_INT, .def = "5000", .min = 0, .max = INT32_MAX,
	  .help = "deadline for opening a connection and for checking an idle one before reuse; 0 = none" },
	{ .key = "log_queries", .kind = EMH_PARAM_BOOL, .def = "false",
	  .help = "log every statement with its duration (info), parameters masked" },
	{ .key = "log_query_values", .kind = EMH_PARAM_BOOL, .def = "false",
	  .help = "show parameter values in the query log, except on entities with a secret field" },
	{ .key = "slow_query_ms", .kind = EMH_PARAM_INT, .def = "0", .min = 0, .max = INT32_MAX,
	  .help = "log statements that take at least this long, at warning; 0 = none" },
	{ .key = "replica_urls", .kind = EMH_PARAM_STRING, .flags = EMH_PARAM_SECRET,
	  .help = "read replicas as comma-separated URLs, each with the context's settings and its own pool "
		  "(docs/replicas.md); replicas = ( { url = ...; }, ... ) in the file" },
	{ .key = "max_replica_lag_ms", .kind = EMH_PARAM_INT, .def = "0", .min = 0, .max = INT32_MAX,
	  .help = "a replica measured further behind than this serves no reads until it catches up; 0 = not "
		  "measured" },
	{ .key = NULL },
};

/* ---- value kinds and ranges ---- */

bool emh__parse_ll(const char *s, long long *out)
{
	if (!s || !*s || isspace((unsigned char)*s))
		return false;
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || *end)
		return false;
	*out = v;
	return true;
}

static int parse_bool(const char *s)
{
	static const char *const yes[] = { "true", "yes", "on", "1", NULL };
	static const char *const no[] = { "false", "no", "off", "0", NULL };
	for (int i = 0; yes[i]; i++)
		if (strcasecmp(s, yes[i]) == 0)
			return 1;
	for (int i = 0; no[i]; i++)
		if (strcasecmp(s, no[i]) == 0)
			return 0;
	return -1;
}

static const char *kind_name(int kind)
{
	switch (kind) {
	case EMH_PARAM_INT: return "integer";
	case EMH_PARAM_BOOL: return "boolean";
	default: return "string";
	}
}

int emh__check_range(const char *where, const char *key, long long v, long long min, long long max, bool secret,
		     emh_error *err)
{
	if ((min == 0 && max == 0) || (v >= min && v <= max))
		return 0;
	if (secret)
		return emh_error_set(err, EMH_ECONFIG, "%s: '%s' must be in [%lld, %lld]", where, key, min, max);
	return emh_error_set(err, EMH_ECONFIG, "%s: '%s' must be in [%lld, %lld], got %lld", where, key, min, max, v);
}

void emh__setting_where(const char *ctxname, const emh__setting *st, emh_buf *b)
{
	if (st->path)
		emh_buf_addf(b, "%s: %s", st->origin ? st->origin : "?", st->path);
	else
		emh_buf_addf(b, "%s: context '%s', key '%s'", st->origin ? st->origin : "?", ctxname ? ctxname : "?",
			     st->key);
}

int emh__setting_fail(const char *ctxname, const emh__setting *st, emh_error *err, const char *fmt, ...)
{
	/* the message is bounded by emh_error's; so is what is formatted here */
	char msg[EMH_ERROR_MSG_MAX];
	emh_buf where = EMH_BUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	emh__setting_where(ctxname, st, &where);
	int rc = where.oom ? emh__cfg_oom(err) : emh_error_set(err, EMH_ECONFIG, "%s: %s", where.ptr, msg);
	emh_buf_release(&where);
	return rc;
}

/*
 * Check st's value against kind and rewrite it in canonical form (integers
 * in decimal, booleans "true"/"false").  A value typed in the file must have
 * the kind; a string (file, environment, URL) may spell an integer or a
 * boolean, so "${PORT:-5432}" works.  A secret's value is never echoed.
 */
static int setting_check_kind(const char *ctxname, emh__setting *st, int kind, emh_error *err)
{
	char canon[32];
	bool typed = st->ltype == EMH_PARAM_INT || st->ltype == EMH_PARAM_BOOL;
	const char *v = st->value ? st->value : "";
	if (kind == EMH_PARAM_STRING)
		return typed ? emh__setting_fail(ctxname, st, err, "expected string") : 0;
	if (typed && st->ltype != kind)
		return emh__setting_fail(ctxname, st, err, "expected %s", kind_name(kind));
	if (kind == EMH_PARAM_INT) {
		long long n;
		if (!emh__parse_ll(v, &n))
			return st->secret ? emh__setting_fail(ctxname, st, err, "expected integer")
					  : emh__setting_fail(ctxname, st, err, "expected integer, got '%s'", v);
		snprintf(canon, sizeof canon, "%lld", n);
	} else {
		int b = parse_bool(v);
		if (b < 0)
			return st->secret ? emh__setting_fail(ctxname, st, err, "expected boolean")
					  : emh__setting_fail(ctxname, st, err,
							      "expected boolean (true or false), got '%s'", v);
		snprintf(canon, sizeof canon, "%s", b ? "true" : "false");
	}
	if (!st->value || strcmp(st->value, canon) != 0) {
		char *c = strdup(canon);
		if (!c)
			return emh__cfg_oom(err);
		free(st->value);
		st->value = c;
	}
	return 0;
}

const emh_param_spec *emh__spec_find(const emh_param_spec *specs, const char *key)
{
	for (; specs && specs->key; specs++)
		if (strcmp(specs->key, key) == 0)
			return specs;
	return NULL;
}

/* The checks of a common key beyond its kind and range: the values schema takes, password_env a name. */
static int setting_check_common(const char *ctxname, emh__setting *st, emh_error *err)
{
	if (strcmp(st->key, "schema") == 0 && strcmp(st->value, "none") != 0 && strcmp(st->value, "sync") != 0 &&
	    strcmp(st->value, "check") != 0)
		return emh__setting_fail(ctxname, st, err, "expected \"none\", \"sync\" or \"check\", got '%s'",
					 st->value);
	if (strcmp(st->key, "migrate") == 0 && strcmp(st->value, "none") != 0 && strcmp(st->value, "on-start") != 0 &&
	    strcmp(st->value, "check") != 0)
		return emh__setting_fail(ctxname, st, err, "expected \"none\", \"on-start\" or \"check\", got '%s'",
					 st->value);
	if (strcmp(st->key, "password_env") == 0 && !emh__valid_varname(st->value, strlen(st->value)))
		return emh__setting_fail(ctxname, st, err, "'%s' is not an environment variable name", st->value);
	return 0;
}

int emh__setting_check(const char *ctxname, emh__setting *st, const emh_param_spec *spec, emh_error *err)
{
	int rc;
	if (spec->flags & EMH_PARAM_SECRET)
		st->secret = true;
	if ((rc = setting_check_kind(ctxname, st, spec->kind, err)))
		return rc;
	long long v;
	if (spec->kind == EMH_PARAM_INT && emh__parse_ll(st->value, &v)) {
		emh_buf where = EMH_BUF_INIT;
		emh__setting_where(ctxname, st, &where);
		rc = where.oom ? emh__cfg_oom(err)
			       : emh__check_range(where.ptr, st->key, v, spec->min, spec->max, st->secret, err);
		emh_buf_release(&where);
		if (rc)
			return rc;
	}
	return spec == emh__spec_find(emh__common_context_keys, spec->key) ? setting_check_common(ctxname, st, err) : 0;
}

/* ---- checking a context against its driver ---- */

/* Keys only the context itself has: a replica takes them from it. */
static const char *const primary_only_keys[] = { "name", "driver", "required", "schema", "migrations", "migrate",
						  "replica_urls", "max_replica_lag_ms", NULL };

const char *emh__replica_key(const char *key, unsigned *n, bool *ok)
{
	if (strncmp(key, "replicas.", 9) != 0)
		return NULL;
	char *end;
	unsigned long v = strtoul(key + 9, &end, 10);
	if (end == key + 9 || *end != '.' || v == 0 || v > 64 || key[9] == '0')
		return NULL;
	*n = (unsigned)v;
	*ok = !emh__in_list(primary_only_keys, end + 1) && strncmp(end + 1, "replicas.", 9) != 0;
	return end + 1;
}

/* The spec a replica's key "replicas.N.KEY" is checked with (KEY's), or NULL: unknown. */
static const emh_param_spec *replica_spec(const char *key, const emh_driver *d)
{
	unsigned n;
	bool ok;
	const char *sub = emh__replica_key(key, &n, &ok);
	if (!sub || !ok)
		return NULL;
	const emh_param_spec *spec = emh__spec_find(emh__common_context_keys, sub);
	return spec ? spec : d ? emh__spec_find(d->params, sub) : NULL;
}

/* The valid key of sets closest to key, within two edits; NULL when none is. */
static const char *closest_key(const char *key, const emh_param_spec *const *sets, size_t nsets)
{
	const char *best = NULL;
	size_t bestd = 3;
	for (size_t s = 0; s < nsets; s++)
		for (const emh_param_spec *sp = sets[s]; sp && sp->key; sp++) {
			size_t d = emh__edit_distance(key, sp->key);
			if (d < bestd) {
				bestd = d;
				best = sp->key;
			}
		}
	return best;
}

/*
 * "unknown key 'k' [for driver 'd'] (did you mean 'x'? valid: ...)": the
 * keys of listed[] are named, the hint is the closest key of hinted[] (the
 * listed ones and maybe more), more ends the list.
 */
static int err_unknown_ctx_key(const emh__ctxconf *c, const emh__setting *st, const char *dname,
			       const emh_param_spec *const *listed, size_t nlisted,
			       const emh_param_spec *const *hinted, size_t nhinted, const char *more, emh_error *err)
{
	emh_buf list = EMH_BUF_INIT;
	const char *hint = closest_key(st->key, hinted, nhinted);
	for (size_t s = 0; s < nlisted; s++)
		for (const emh_param_spec *sp = listed[s]; sp && sp->key; sp++)
			emh_buf_addf(&list, "%s%s", list.len ? ", " : "", sp->key);
	int rc = list.oom ? emh__cfg_oom(err)
			  : emh__setting_fail(c->name, st, err, "unknown key '%.*s%s'%s%s%s (%s%s%svalid: %s%s)",
					      EMH__SHOWN(st->key), dname ? " for driver '" : "", dname ? dname : "",
					      dname ? "'" : "", hint ? "did you mean '" : "", hint ? hint : "",
					      hint ? "'? " : "", list.ptr, more);
	emh_buf_release(&list);
	return rc;
}

int emh__config_check_unknown_keys(const emh__ctxconf *c, const emh_driver *const *drivers, size_t ndrivers,
				   emh_error *err)
{
	for (size_t i = 0; i < c->s.n; i++) {
		const emh__setting *st = &c->s.v[i];
		bool known = strcmp(st->key, "name") != 0 && emh__spec_find(emh__common_context_keys, st->key);
		for (size_t d = 0; d < ndrivers && !known; d++)
			known = drivers[d] && (emh__spec_find(drivers[d]->params, st->key) || replica_spec(st->key, drivers[d]));
		known = known || replica_spec(st->key, NULL);
		if (known)
			continue;
		/* the hint may be any driver's key; the list names the common ones */
		const emh_param_spec *sets[65] = { emh__common_context_keys };
		size_t nsets = 1;
		for (size_t d = 0; d < ndrivers && nsets < sizeof sets / sizeof *sets; d++)
			if (drivers[d])
				sets[nsets++] = drivers[d]->params;
		return err_unknown_ctx_key(c, st, NULL, sets, 1, sets, nsets, ", and the keys of its driver", err);
	}
	return 0;
}

/* password_env resolved into a secret password now, so a missing variable fails at start-up. */
static int resolve_password_env(emh__ctxconf *c, const char *const *envp, emh_error *err)
{
	const emh__setting *pe = emh__settings_find(&c->s, "password_env");
	const emh__setting *pw = emh__settings_find(&c->s, "password");
	if (!pe)
		return 0;
	emh_buf origin = EMH_BUF_INIT, w1 = EMH_BUF_INIT, w2 = EMH_BUF_INIT;
	const char *v = emh__getenv(envp, pe->value);
	int rc = 0;
	emh_buf_addf(&origin, "env %s", pe->value);
	if (origin.oom) {
		rc = emh__cfg_oom(err);
	} else if (pw && strcmp(pw->origin, origin.ptr) != 0) {
		emh__setting_where(c->name, pw, &w1);
		emh__setting_where(c->name, pe, &w2);
		rc = w1.oom || w2.oom ? emh__cfg_oom(err)
				      : emh_error_set(err, EMH_ECONFIG,
						      "context '%s': both password (%s) and password_env (%s) are set; "
						      "keep one",
						      c->name, w1.ptr, w2.ptr);
	} else if (!v) {
		rc = emh__setting_fail(c->name, pe, err, "environment variable '%s' is not set", pe->value);
	} else if (emh__settings_set(&c->s, "password", v, origin.ptr, NULL, 0, true)) {
		rc = emh__cfg_oom(err);
	}
	emh_buf_release(&origin);
	emh_buf_release(&w1);
	emh_buf_release(&w2);
	return rc;
}

/* Each key of specs that has a default and is not set gets it, origin "default", checked like any value. */
static int fill_defaults(emh__ctxconf *c, const emh_param_spec *specs, emh_error *err)
{
	for (const emh_param_spec *sp = specs; sp && sp->key; sp++) {
		if (!sp->def || emh__settings_find(&c->s, sp->key))
			continue;
		if (emh__settings_set(&c->s, sp->key, sp->def, "default", NULL, 0, false))
			return emh__cfg_oom(err);
		int rc = emh__setting_check(c->name, emh__settings_find_mut(&c->s, sp->key), sp, err);
		if (rc)
			return rc;
	}
	return 0;
}

/*
 * A url must have a scheme of the context's driver: with driver = "mysql"
 * next to a postgres:// url (or EMH_CONTEXT_X_DRIVER over the scheme of
 * EMH_CONTEXT_X_URL) the driver would never read the url and connect
 * elsewhere.  The scheme is read as url_parse reads it; the url is not echoed.
 */
static int check_url_scheme(const emh__ctxconf *c, const emh_driver *d, emh_error *err)
{
	const emh__setting *u = emh__settings_find(&c->s, "url");
	if (!d || !u || !u->value)
		return 0;
	size_t slen = emh__url_scheme_len(u->value);
	if (emh__driver_has_scheme(d, u->value, slen))
		return 0;
	emh_buf list = EMH_BUF_INIT;
	for (const char *const *s = d->url_schemes; s && *s; s++)
		emh_buf_addf(&list, "%s%s", list.len ? ", " : "", *s);
	int rc = list.oom ? emh__cfg_oom(err)
			  : emh__setting_fail(c->name, u, err,
					      "url scheme '%.*s' is not one of driver '%s' (%s): set the driver "
					      "declaring it, or a url of driver '%s'",
					      (int)slen, u->value, d->name, list.len ? list.ptr : "it declares none",
					      d->name);
	emh_buf_release(&list);
	return rc;
}

int emh__config_check_context(emh__ctxconf *c, const emh_driver *d, const char *const *envp, emh_error *err)
{
	int rc;
	for (size_t i = 0; i < c->s.n; i++) {
		emh__setting *st = &c->s.v[i];
		const emh_param_spec *spec = emh__spec_find(emh__common_context_keys, st->key);
		if (!spec && d)
			spec = emh__spec_find(d->params, st->key);
		if (!spec)
			spec = replica_spec(st->key, d);
		if (!spec || strcmp(st->key, "name") == 0) {
			const emh_param_spec *sets[2] = { d ? d->params : NULL, emh__common_context_keys };
			return err_unknown_ctx_key(c, st, d ? d->name : NULL, sets, 2, sets, 2, "", err);
		}
		if ((rc = emh__setting_check(c->name, st, spec, err)))
			return rc;
	}
	if ((rc = check_url_scheme(c, d, err)) || (rc = resolve_password_env(c, envp, err)) ||
	    (rc = fill_defaults(c, emh__common_context_keys, err)) || (rc = fill_defaults(c, d ? d->params : NULL, err)))
		return rc;

	const emh__setting *mn = emh__settings_find(&c->s, "pool.min");
	const emh__setting *mx = emh__settings_find(&c->s, "pool.max");
	long long a = 0, b = 0;
	emh__parse_ll(mn->value, &a);
	emh__parse_ll(mx->value, &b);
	if (a > b)
		return emh__setting_fail(c->name, mn, err, "pool.min (%lld) is greater than pool.max (%lld, %s)", a, b,
					 mx->origin);
	const emh__setting *mig = emh__settings_find(&c->s, "migrate");
	if (strcmp(mig->value, "none") != 0 && !emh__settings_find(&c->s, "migrations"))
		return emh__setting_fail(c->name, mig, err, "migrate = \"%s\" needs the context's migrations folder "
					 "(migrations = \"DIR\")", mig->value);
	return 0;
}
