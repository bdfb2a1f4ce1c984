/* SPDX-License-Identifier: MIT */
/*
 * core/cfg_check.c: the keys every context accepts, value kinds, and checking
 * a context against its driver (unknown keys, kinds, password_env, defaults).
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cfg_int.h"

/* ---- the keys ---- */

const emh_param_spec emh__common_context_keys[] = {
	{ "name", EMH_PARAM_STRING, 0, "name of the context, [a-z_][a-z0-9_]*, unique in the host" },
	{ "driver", EMH_PARAM_STRING, 0, "driver plugin serving the context (sqlite, postgres, mysql, mongo)" },
	{ "url", EMH_PARAM_STRING, 0,
	  "whole connection as a URL (sqlite:///path, postgres://user:pw@host:port/db?k=v, ...)" },
	{ "required", EMH_PARAM_BOOL, 0, "check the database at start-up and refuse to start when it is down (default false)" },
	{ "schema", EMH_PARAM_STRING, 0, "\"none\" (default) or \"sync\": create missing tables and indexes" },
	{ "migrations", EMH_PARAM_STRING, 0, "directory of migration scripts for the context" },
	{ "password", EMH_PARAM_STRING, EMH_PARAM_SECRET, "password (never printed)" },
	{ "password_env", EMH_PARAM_STRING, 0, "name of the environment variable holding the password" },
	{ "pool.min", EMH_PARAM_INT, 0, "connections kept open when idle (default 0)" },
	{ "pool.max", EMH_PARAM_INT, 0, "most connections open at once, >= 1 (default 8)" },
	{ "pool.acquire_timeout_ms", EMH_PARAM_INT, 0,
	  "how long a fork waits for a free connection before EMH_ETIMEOUT (default 5000)" },
	{ "pool.idle_timeout_ms", EMH_PARAM_INT, 0,
	  "close a connection idle this long, above pool.min; 0 = never (default 300000)" },
	{ "pool.max_lifetime_ms", EMH_PARAM_INT, 0, "replace a connection older than this; 0 = never (default 0)" },
	{ NULL, 0, 0, NULL },
};

/* Values a context gets when neither the file nor the environment sets them. */
static const struct {
	const char *key, *value;
} ctx_defaults[] = {
	{ "required", "false" },
	{ "schema", "none" },
	{ "pool.min", "0" },
	{ "pool.max", "8" },
	{ "pool.acquire_timeout_ms", "5000" },
	{ "pool.idle_timeout_ms", "300000" },
	{ "pool.max_lifetime_ms", "0" },
};

/* ---- value kinds ---- */

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

/* Where a setting of a context is, for errors: "FILE:LINE: contexts.[1].port". */
void emh__setting_where(const char *ctxname, const emh__setting *st, char *buf, size_t cap)
{
	if (st->path)
		snprintf(buf, cap, "%s: %s", st->origin ? st->origin : "?", st->path);
	else
		snprintf(buf, cap, "%s: context '%s', key '%s'", st->origin ? st->origin : "?",
			 ctxname ? ctxname : "?", st->key);
}

/*
 * Check st's value against kind and rewrite it in canonical form (integers
 * in decimal, booleans "true"/"false").  A value typed in the file must have
 * the kind; a string (file, environment, URL) may spell an integer or a
 * boolean, so "${PORT:-5432}" works.
 */
int emh__setting_check_kind(const char *ctxname, emh__setting *st, int kind, emh_error *err)
{
	char where[300], canon[32];
	bool typed = st->ltype == EMH_PARAM_INT || st->ltype == EMH_PARAM_BOOL;
	const char *v = st->value ? st->value : "";
	emh__setting_where(ctxname, st, where, sizeof where);
	if (kind == EMH_PARAM_STRING) {
		if (typed)
			return emh_error_set(err, EMH_ECONFIG, "%s: expected string", where);
		return 0;
	}
	if (typed && st->ltype != kind)
		return emh_error_set(err, EMH_ECONFIG, "%s: expected %s", where, kind_name(kind));
	if (kind == EMH_PARAM_INT) {
		long long n;
		if (!emh__parse_ll(v, &n)) {
			if (st->secret)
				return emh_error_set(err, EMH_ECONFIG, "%s: expected integer", where);
			return emh_error_set(err, EMH_ECONFIG, "%s: expected integer, got '%s'", where, v);
		}
		snprintf(canon, sizeof canon, "%lld", n);
	} else {
		int b = parse_bool(v);
		if (b < 0) {
			if (st->secret)
				return emh_error_set(err, EMH_ECONFIG, "%s: expected boolean", where);
			return emh_error_set(err, EMH_ECONFIG, "%s: expected boolean (true or false), got '%s'", where, v);
		}
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

/* Checks of the common keys beyond the kind: the values schema takes, pool ranges. */
int emh__setting_check_common(const char *ctxname, emh__setting *st, emh_error *err)
{
	char where[300];
	emh__setting_where(ctxname, st, where, sizeof where);
	if (strcmp(st->key, "schema") == 0 && strcmp(st->value, "none") != 0 && strcmp(st->value, "sync") != 0)
		return emh_error_set(err, EMH_ECONFIG, "%s: expected \"none\" or \"sync\", got '%s'", where, st->value);
	if (strncmp(st->key, "pool.", 5) == 0) {
		long long n = 0;
		emh__parse_ll(st->value, &n);
		if (n < 0)
			return emh_error_set(err, EMH_ECONFIG, "%s: must be >= 0, got %lld", where, n);
		if (n > 0x7fffffff)
			return emh_error_set(err, EMH_ECONFIG, "%s: too large (%lld)", where, n);
		if (strcmp(st->key, "pool.max") == 0 && n < 1)
			return emh_error_set(err, EMH_ECONFIG, "%s: must be >= 1, got %lld", where, n);
	}
	if (strcmp(st->key, "password_env") == 0 && !emh__valid_varname(st->value, strlen(st->value)))
		return emh_error_set(err, EMH_ECONFIG, "%s: '%s' is not an environment variable name", where,
				     st->value);
	return 0;
}

/* ---- checking a context against its driver ---- */

static int err_unknown_ctx_key(const emh__ctxconf *c, const emh__setting *st, const emh_driver *d,
			       emh_error *err)
{
	char where[300], list[400], hint[80] = "";
	size_t n = 0;
	const emh_param_spec *sets[2] = { d ? d->params : NULL, emh__common_context_keys };
	list[0] = '\0';
	for (int s = 0; s < 2; s++)
		for (const emh_param_spec *sp = sets[s]; sp && sp->key && n < sizeof list; sp++) {
			n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", n ? ", " : "", sp->key);
			if (!*hint && emh__edit_distance(st->key, sp->key) <= 2)
				snprintf(hint, sizeof hint, "did you mean '%s'? ", sp->key);
		}
	emh__setting_where(c->name, st, where, sizeof where);
	if (d)
		return emh_error_set(err, EMH_ECONFIG, "%s: unknown key '%s' for driver '%s' (%svalid: %s)", where,
				     st->key, d->name, hint, list);
	return emh_error_set(err, EMH_ECONFIG, "%s: unknown key '%s' (%svalid: %s)", where, st->key, hint, list);
}

int emh__config_check_context(emh__ctxconf *c, const emh_driver *d, const char *const *envp, emh_error *err)
{
	int rc;
	char where[300], where2[300];

	for (size_t i = 0; i < c->s.n; i++) {
		emh__setting *st = &c->s.v[i];
		const emh_param_spec *spec = emh__spec_find(emh__common_context_keys, st->key);
		if (!spec && d)
			spec = emh__spec_find(d->params, st->key);
		if (!spec || strcmp(st->key, "name") == 0)
			return err_unknown_ctx_key(c, st, d, err);
		if (spec->flags & EMH_PARAM_SECRET)
			st->secret = true;
		if ((rc = emh__setting_check_kind(c->name, st, spec->kind, err)) ||
		    (rc = emh__setting_check_common(c->name, st, err)))
			return rc;
	}

	/* password_env: resolved now, so a missing variable fails at start-up */
	const emh__setting *pe = emh__settings_find(&c->s, "password_env");
	const emh__setting *pw = emh__settings_find(&c->s, "password");
	if (pe) {
		char origin[300];
		snprintf(origin, sizeof origin, "env %s", pe->value);
		if (pw && strcmp(pw->origin, origin) != 0) {
			emh__setting_where(c->name, pw, where, sizeof where);
			emh__setting_where(c->name, pe, where2, sizeof where2);
			return emh_error_set(err, EMH_ECONFIG,
					     "context '%s': both password (%s) and password_env (%s) are set; keep one",
					     c->name, where, where2);
		}
		const char *v = emh__getenv(envp, pe->value);
		if (!v) {
			emh__setting_where(c->name, pe, where, sizeof where);
			return emh_error_set(err, EMH_ECONFIG, "%s: environment variable '%s' is not set", where,
					     pe->value);
		}
		if (emh__settings_set(&c->s, "password", v, origin, NULL, 0, true))
			return emh__cfg_oom(err);
	}

	for (size_t i = 0; i < sizeof ctx_defaults / sizeof *ctx_defaults; i++)
		if (!emh__settings_find(&c->s, ctx_defaults[i].key) &&
		    emh__settings_set(&c->s, ctx_defaults[i].key, ctx_defaults[i].value, "default", NULL, 0, false))
			return emh__cfg_oom(err);

	const emh__setting *mn = emh__settings_find(&c->s, "pool.min");
	const emh__setting *mx = emh__settings_find(&c->s, "pool.max");
	long long a = 0, b = 0;
	emh__parse_ll(mn->value, &a);
	emh__parse_ll(mx->value, &b);
	if (a > b) {
		emh__setting_where(c->name, mn, where, sizeof where);
		emh__setting_where(c->name, mx, where2, sizeof where2);
		return emh_error_set(err, EMH_ECONFIG, "%s: pool.min (%lld) is greater than pool.max (%lld, %s)", where,
				     a, b, mx->origin);
	}
	return 0;
}
