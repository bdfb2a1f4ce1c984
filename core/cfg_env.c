/* SPDX-License-Identifier: MIT */
/*
 * core/cfg_env.c: the environment over the file: EMH_CONTEXT_<NAME>_<KEY>,
 * EMH_CONTEXT_<NAME>_URL, new contexts, EMH_DEFAULT_CONTEXT.  No name or
 * key is ever cut to fit a buffer: they are as long as the environment
 * makes them, and a context name longer than a name can be is an error.
 */
#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <emhost/buf.h>

#include "cfg_int.h"

extern char **environ;

#define ENV_PREFIX "EMH_CONTEXT_"

/* A key a variable can name: KEY as spelled in the variable ("POOL_MAX") and the key. */
struct envkey {
	char *upper;
	const char *key;
};

struct keyset {
	struct envkey *v;
	size_t n;
};

static int keyset_add(struct keyset *ks, const char *key, size_t *cap)
{
	if (strcmp(key, "name") == 0)
		return 0;
	for (size_t i = 0; i < ks->n; i++)
		if (strcmp(ks->v[i].key, key) == 0)
			return 0;
	if (ks->n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 32;
		struct envkey *v = realloc(ks->v, ncap * sizeof *v);
		if (!v)
			return EMH_ENOMEM;
		ks->v = v;
		*cap = ncap;
	}
	char *upper = strdup(key);
	if (!upper)
		return EMH_ENOMEM;
	for (char *u = upper; *u; u++)
		*u = *u == '.' ? '_' : (char)toupper((unsigned char)*u);
	ks->v[ks->n++] = (struct envkey){ .upper = upper, .key = key };
	return 0;
}

static const char *keyset_lookup(const struct keyset *ks, const char *upper)
{
	for (size_t i = 0; i < ks->n; i++)
		if (strcasecmp(ks->v[i].upper, upper) == 0)
			return ks->v[i].key;
	return NULL;
}

/* One EMH_CONTEXT_* variable. */
struct envvar {
	char *var;         /* "EMH_CONTEXT_PG_POOL_MAX" */
	const char *value;
	char *ctx;         /* "pg", once split */
	char *key;         /* "pool.max" */
};

/*
 * Split rest ("ANALYTICS_POOL_MAX") against the known context names: the
 * candidates are the names rest starts with (then '_'); one whose remainder
 * is a known key beats one whose remainder is not, then the longer name.
 */
static bool split_by_names(const char *rest, char *const *names, size_t nnames, const struct keyset *ks,
			   size_t *name_idx)
{
	bool found = false, found_known = false;
	size_t best_len = 0;
	for (size_t i = 0; i < nnames; i++) {
		size_t l = strlen(names[i]);
		if (strncasecmp(rest, names[i], l) != 0 || rest[l] != '_' || !rest[l + 1])
			continue;
		bool known = keyset_lookup(ks, rest + l + 1) != NULL;
		if (!found || (known && !found_known) || (known == found_known && l > best_len)) {
			found = true;
			found_known = known;
			best_len = l;
			*name_idx = i;
		}
	}
	return found;
}

/* The longest known key that ends rest after a '_', leaving a valid name before it. */
static const char *split_by_key(const char *rest, const struct keyset *ks, size_t *name_len)
{
	size_t rl = strlen(rest), best = 0;
	const char *key = NULL;
	for (size_t i = 0; i < ks->n; i++) {
		size_t kl = strlen(ks->v[i].upper);
		if (rl < kl + 2 || rest[rl - kl - 1] != '_' || strcasecmp(rest + rl - kl, ks->v[i].upper) != 0)
			continue;
		size_t nl = rl - kl - 1;
		bool ok = !isdigit((unsigned char)rest[0]);
		for (size_t j = 0; j < nl && ok; j++)
			ok = isalnum((unsigned char)rest[j]) || rest[j] == '_';
		if (ok && kl > best) {
			best = kl;
			key = ks->v[i].key;
			*name_len = nl;
		}
	}
	return key;
}

static char *lower_dup(const char *s, size_t n)
{
	char *d = malloc(n + 1);
	if (!d)
		return NULL;
	for (size_t i = 0; i < n; i++)
		d[i] = (char)tolower((unsigned char)s[i]);
	d[n] = '\0';
	return d;
}

/* Set ev->ctx and ev->key from a context name and the rest after it. */
static int envvar_assign(struct envvar *ev, const char *name, size_t nlen, const char *keyupper,
			 const struct keyset *ks)
{
	const char *key = keyset_lookup(ks, keyupper);
	ev->ctx = lower_dup(name, nlen);
	ev->key = key ? strdup(key) : lower_dup(keyupper, strlen(keyupper));
	return ev->ctx && ev->key ? 0 : EMH_ENOMEM;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

struct envstate {
	struct envvar *vars;
	size_t nvars;
	struct keyset ks;
	char **names; /* context names of the file, then new ones */
	size_t nnames;
};

static void envstate_release(struct envstate *st)
{
	for (size_t i = 0; i < st->nvars; i++) {
		free(st->vars[i].var);
		free(st->vars[i].ctx);
		free(st->vars[i].key);
	}
	free(st->vars);
	for (size_t i = 0; i < st->ks.n; i++)
		free(st->ks.v[i].upper);
	free(st->ks.v);
	for (size_t i = 0; i < st->nnames; i++)
		free(st->names[i]);
	free(st->names);
}

static int names_add(struct envstate *st, const char *name)
{
	for (size_t i = 0; i < st->nnames; i++)
		if (strcmp(st->names[i], name) == 0)
			return 0;
	char **v = realloc(st->names, (st->nnames + 1) * sizeof *v);
	if (!v)
		return EMH_ENOMEM;
	st->names = v;
	if (!(v[st->nnames] = strdup(name)))
		return EMH_ENOMEM;
	st->nnames++;
	return 0;
}

/* Collect EMH_CONTEXT_* from envp (first occurrence of a name wins, as getenv). */
static int env_collect(struct envstate *st, const char *const *envp)
{
	size_t cap = 0;
	const char *const *e = envp ? envp : (const char *const *)environ;
	for (; e && *e; e++) {
		const char *eq = strchr(*e, '=');
		if (strncmp(*e, ENV_PREFIX, strlen(ENV_PREFIX)) != 0 || !eq)
			continue;
		size_t vlen = (size_t)(eq - *e);
		bool dup = false;
		for (size_t i = 0; i < st->nvars && !dup; i++)
			dup = strlen(st->vars[i].var) == vlen && strncmp(st->vars[i].var, *e, vlen) == 0;
		if (dup)
			continue;
		if (st->nvars == cap) {
			cap = cap ? cap * 2 : 16;
			struct envvar *v = realloc(st->vars, cap * sizeof *v);
			if (!v)
				return EMH_ENOMEM;
			st->vars = v;
		}
		struct envvar *ev = &st->vars[st->nvars];
		*ev = (struct envvar){ .value = eq + 1 };
		if (!(ev->var = strndup(*e, vlen)))
			return EMH_ENOMEM;
		st->nvars++;
	}
	return 0;
}

static int env_keyset(struct envstate *st, const emh_driver *const *drivers, size_t ndrivers)
{
	static const char *const url_pieces[] = { "host", "port", "user", "database", "path", NULL };
	size_t cap = 0;
	for (const emh_param_spec *sp = emh__common_context_keys; sp->key; sp++)
		if (keyset_add(&st->ks, sp->key, &cap))
			return EMH_ENOMEM;
	for (const char *const *k = url_pieces; *k; k++)
		if (keyset_add(&st->ks, *k, &cap))
			return EMH_ENOMEM;
	for (size_t i = 0; i < ndrivers; i++)
		for (const emh_param_spec *sp = drivers[i] ? drivers[i]->params : NULL; sp && sp->key; sp++)
			if (keyset_add(&st->ks, sp->key, &cap))
				return EMH_ENOMEM;
	return 0;
}

/*
 * Split every variable into context and key.  Round 1: against the file's
 * context names, else by the longest known key suffix (which may name a new
 * context).  Round 2: what is left, against the names round 1 found.
 */
static int env_split(struct envstate *st, emh_error *err)
{
	for (int round = 1; round <= 2; round++) {
		size_t nfile = st->nnames;
		for (size_t i = 0; i < st->nvars; i++) {
			struct envvar *ev = &st->vars[i];
			const char *rest = ev->var + strlen(ENV_PREFIX);
			size_t idx = 0, nlen = 0;
			if (ev->ctx)
				continue;
			if (split_by_names(rest, st->names, round == 1 ? nfile : st->nnames, &st->ks, &idx)) {
				size_t l = strlen(st->names[idx]);
				if (envvar_assign(ev, rest, l, rest + l + 1, &st->ks))
					return emh__cfg_oom(err);
				continue;
			}
			const char *key = round == 1 ? split_by_key(rest, &st->ks, &nlen) : NULL;
			if (key) {
				if (envvar_assign(ev, rest, nlen, rest + nlen + 1, &st->ks) || names_add(st, ev->ctx))
					return emh__cfg_oom(err);
			}
		}
	}
	for (size_t i = 0; i < st->nvars; i++) {
		struct envvar *ev = &st->vars[i];
		if (ev->ctx)
			continue;
		emh_buf names = EMH_BUF_INIT, keys = EMH_BUF_INIT;
		for (size_t j = 0; j < st->nnames; j++)
			emh_buf_addf(&names, "%s%s", names.len ? ", " : "", st->names[j]);
		for (size_t j = 0; j < st->ks.n; j++)
			emh_buf_addf(&keys, "%s%s", keys.len ? ", " : "", st->ks.v[j].upper);
		int rc = names.oom || keys.oom
				 ? emh__cfg_oom(err)
				 : emh_error_set(err, EMH_ECONFIG,
						 "env %s: cannot tell the context from the key: expected %s<NAME>_<KEY> "
						 "with NAME a context (%s) or KEY one of %s",
						 ev->var, ENV_PREFIX, names.len ? names.ptr : "none", keys.ptr);
		emh_buf_release(&names);
		emh_buf_release(&keys);
		return rc;
	}
	return 0;
}

static int env_apply_var(emh__config *cfg, const struct envvar *ev, emh_error *err)
{
	emh__ctxconf *c = emh__config_find_context(cfg, ev->ctx);
	if (strcmp(ev->key, "password") == 0) {
		const emh__setting *pe = emh__settings_find(&c->s, "password_env");
		if (pe && strncmp(pe->origin, "env ", 4) != 0)
			emh__settings_remove(&c->s, "password_env");
	} else if (strcmp(ev->key, "password_env") == 0) {
		const emh__setting *pw = emh__settings_find(&c->s, "password");
		if (pw && strncmp(pw->origin, "env ", 4) != 0)
			emh__settings_remove(&c->s, "password");
	}
	const emh_param_spec *spec = emh__spec_find(emh__common_context_keys, ev->key);
	bool secret = spec && (spec->flags & EMH_PARAM_SECRET);
	char *origin = emh__strf("env %s", ev->var);
	int rc = origin ? emh__settings_set(&c->s, ev->key, ev->value, origin, NULL, 0, secret) : EMH_ENOMEM;
	free(origin);
	return rc ? emh__cfg_oom(err) : 0;
}

/* "a, b, c" of the context names ("none"), for error messages; NULL when out of memory. */
static char *context_names(const emh__config *cfg)
{
	emh_buf b = EMH_BUF_INIT;
	for (size_t i = 0; i < cfg->ncontexts; i++)
		emh_buf_addf(&b, "%s%s", b.len ? ", " : "", cfg->contexts[i].name);
	if (!cfg->ncontexts)
		emh_buf_adds(&b, "none");
	return emh_buf_take(&b);
}

/* The context whose name is env's, any case (EMH_DEFAULT_CONTEXT=ANALYTICS names "analytics"). */
static const emh__ctxconf *context_by_env_name(const emh__config *cfg, const char *env)
{
	for (size_t i = 0; i < cfg->ncontexts; i++)
		if (strcmp(cfg->contexts[i].name, env) == 0)
			return &cfg->contexts[i];
	for (size_t i = 0; i < cfg->ncontexts; i++)
		if (strcasecmp(cfg->contexts[i].name, env) == 0)
			return &cfg->contexts[i];
	return NULL;
}

/* Pick the default context; see docs/configuration.md. */
static int resolve_default(emh__config *cfg, const char *const *envp, const char *names, emh_error *err)
{
	const char *env = emh__getenv(envp, "EMH_DEFAULT_CONTEXT"), *pick = NULL, *origin = "default";
	if (env && *env) {
		/* never cut to fit: a longer value cannot name a context, and says so (issue 11 item 6) */
		if (strlen(env) > EMH__NAME_MAX)
			return emh_error_set(err, EMH_ECONFIG,
					     "env EMH_DEFAULT_CONTEXT: '%.*s%s' (%zu bytes) is longer than a context name "
					     "can be (%d bytes)",
					     EMH__SHOWN(env), strlen(env), EMH__NAME_MAX);
		const emh__ctxconf *c = context_by_env_name(cfg, env);
		if (!c)
			return emh_error_set(err, EMH_ECONFIG, "env EMH_DEFAULT_CONTEXT: no context '%s' (have: %s)", env,
					     names);
		pick = c->name;
		origin = "env EMH_DEFAULT_CONTEXT";
	} else if (cfg->default_context.value) {
		if (!emh__config_find_context(cfg, cfg->default_context.value))
			return emh_error_set(err, EMH_ECONFIG, "%s: default_context: no context '%s' (have: %s)",
					     cfg->default_context.origin, cfg->default_context.value, names);
		return 0;
	} else if (emh__config_find_context(cfg, "default")) {
		pick = "default";
	} else if (cfg->ncontexts == 1) {
		pick = cfg->contexts[0].name;
	} else if (cfg->ncontexts > 1) {
		return emh_error_set(err, EMH_ECONFIG,
				     "%s: several contexts and none is the default: set default_context, name one "
				     "'default', or set EMH_DEFAULT_CONTEXT (have: %s)",
				     cfg->path ? cfg->path : "environment", names);
	}
	if (pick && emh__setting_assign(&cfg->default_context, "default_context", pick, origin, NULL, 0))
		return emh__cfg_oom(err);
	return 0;
}

/* EMH_MAX_CONNECTIONS over the file's max_connections (the host's budget). */
static int apply_max_connections(emh__config *cfg, const char *const *envp, emh_error *err)
{
	const char *env = emh__getenv(envp, "EMH_MAX_CONNECTIONS");
	long long n;
	if (!env || !*env)
		return 0;
	if (!emh__parse_ll(env, &n))
		return emh_error_set(err, EMH_ECONFIG, "env EMH_MAX_CONNECTIONS: expected integer, got '%.*s%s'",
				     EMH__SHOWN(env));
	int rc = emh__check_range("env EMH_MAX_CONNECTIONS", "max_connections", n, 1, INT32_MAX, false, err);
	if (!rc && emh__setting_assign(&cfg->max_connections, "max_connections", env, "env EMH_MAX_CONNECTIONS",
				       NULL, EMH_PARAM_INT))
		rc = emh__cfg_oom(err);
	return rc;
}

/* 1. a url written in the file: its pieces fill what the context does not set */
static int fill_file_urls(emh__config *cfg, const emh_driver *const *drivers, size_t ndrivers, emh_error *err)
{
	for (size_t i = 0; i < cfg->ncontexts; i++) {
		emh__ctxconf *c = &cfg->contexts[i];
		const emh__setting *u = emh__settings_find(&c->s, "url");
		if (!u || !u->path)
			continue;
		char *origin = emh__strf("url (%s)", u->origin), *url = strdup(u->value);
		int rc = origin && url ? emh__url_fill(c, url, origin, drivers, ndrivers, err) : emh__cfg_oom(err);
		free(origin);
		free(url);
		if (rc)
			return rc;
	}
	return 0;
}

/* New contexts named by the variables, in name order so the result does not depend on the environment's. */
static int create_contexts(emh__config *cfg, struct envstate *st, size_t nfile, emh_error *err)
{
	if (st->nnames > nfile)
		qsort(st->names + nfile, st->nnames - nfile, sizeof *st->names, cmp_str);
	for (size_t i = nfile; i < st->nnames; i++) {
		const struct envvar *creator = NULL;
		for (size_t j = 0; j < st->nvars; j++) {
			const struct envvar *ev = &st->vars[j];
			if (strcmp(ev->ctx, st->names[i]) != 0)
				continue;
			if (!creator || strcmp(ev->key, "driver") == 0 ||
			    (strcmp(ev->key, "url") == 0 && strcmp(creator->key, "driver") != 0))
				creator = ev;
		}
		const char *problem = emh__name_problem(st->names[i]);
		if (problem)
			return emh_error_set(err, EMH_ECONFIG, "env %s: '%.*s%s' is not a valid context name (%s)",
					     creator->var, EMH__SHOWN(st->names[i]), problem);
		emh__ctxconf *c = emh__config_add_context(cfg);
		if (!c || !(c->name = strdup(st->names[i])) || !(c->origin = emh__strf("env %s", creator->var)))
			return emh__cfg_oom(err);
	}
	return 0;
}

/*
 * URLs first (they replace the connection keys), then single keys over them.
 * A DRIVER variable is applied before the URLs as well: it picks among
 * drivers declaring the same url scheme.
 */
static int apply_vars(emh__config *cfg, const struct envstate *st, const emh_driver *const *drivers,
		      size_t ndrivers, emh_error *err)
{
	for (size_t i = 0; i < st->nvars; i++) {
		int rc = strcmp(st->vars[i].key, "driver") == 0 ? env_apply_var(cfg, &st->vars[i], err) : 0;
		if (rc)
			return rc;
	}
	for (size_t i = 0; i < st->nvars; i++) {
		const struct envvar *ev = &st->vars[i];
		if (strcmp(ev->key, "url") != 0)
			continue;
		emh__ctxconf *c = emh__config_find_context(cfg, ev->ctx);
		/*
		 * The file's url is replaced whole: none of its pieces stays (its
		 * password, its query keys; origin "url (FILE:LINE)").  Only here: a
		 * replica's url (replica.c) keeps what its context's url gave.
		 */
		for (size_t k = c->s.n; k-- > 0;)
			if (c->s.v[k].origin && strncmp(c->s.v[k].origin, "url (", 5) == 0)
				emh__settings_remove(&c->s, c->s.v[k].key);
		char *origin = emh__strf("url (env %s)", ev->var);
		int rc = origin ? emh__url_apply(c, ev->value, origin, drivers, ndrivers, err) : emh__cfg_oom(err);
		free(origin);
		if (rc)
			return rc;
	}
	for (size_t i = 0; i < st->nvars; i++) {
		int rc = strcmp(st->vars[i].key, "url") != 0 ? env_apply_var(cfg, &st->vars[i], err) : 0;
		if (rc)
			return rc;
	}
	return 0;
}

/*
 * 3. every context needs a driver by now: say how to give one -- unless a
 * key no driver knows explains it (drvier = "sqlite"): that is said first.
 */
static int require_drivers(const emh__config *cfg, const struct envstate *st, size_t nfile,
			   const emh_driver *const *drivers, size_t ndrivers, emh_error *err)
{
	for (size_t i = 0; i < cfg->ncontexts; i++) {
		const emh__ctxconf *c = &cfg->contexts[i];
		if (emh__ctxconf_get(c, "driver"))
			continue;
		int rc = emh__config_check_unknown_keys(c, drivers, ndrivers, err);
		if (rc)
			return rc;
		char *up = strdup(c->name);
		if (!up)
			return emh__cfg_oom(err);
		for (char *u = up; *u; u++)
			*u = (char)toupper((unsigned char)*u);
		const struct envvar *touched = NULL;
		for (size_t j = 0; j < st->nvars && !touched; j++)
			if (strcmp(st->vars[j].ctx, c->name) == 0)
				touched = &st->vars[j];
		rc = touched ? emh_error_set(err, EMH_ECONFIG,
					     "env %s: context '%s' has no driver (set EMH_CONTEXT_%s_DRIVER or "
					     "EMH_CONTEXT_%s_URL%s)",
					     touched->var, c->name, up, up, i < nfile ? ", or driver in the file" : "")
			     : emh_error_set(err, EMH_ECONFIG,
					     "%s: context '%s' has no 'driver' (set driver or url, or "
					     "EMH_CONTEXT_%s_DRIVER or EMH_CONTEXT_%s_URL)",
					     c->origin, c->name, up, up);
		free(up);
		return rc;
	}
	return 0;
}

int emh__config_apply_env(emh__config *cfg, const char *const *envp, const emh_driver *const *drivers,
			  size_t ndrivers, emh_error *err)
{
	struct envstate st = { 0 };
	char *names = NULL;
	int rc;

	if ((rc = apply_max_connections(cfg, envp, err)) || (rc = fill_file_urls(cfg, drivers, ndrivers, err)))
		goto out_release;

	/* 2. EMH_CONTEXT_<NAME>_<KEY> */
	if (env_collect(&st, envp) || env_keyset(&st, drivers, ndrivers)) {
		rc = emh__cfg_oom(err);
		goto out_release;
	}
	for (size_t i = 0; i < cfg->ncontexts; i++)
		if (names_add(&st, cfg->contexts[i].name)) {
			rc = emh__cfg_oom(err);
			goto out_release;
		}
	size_t nfile = st.nnames;
	if ((rc = env_split(&st, err)))
		goto out_release;
	for (size_t i = 0; i < st.nvars; i++)
		if (strcmp(st.vars[i].key, "name") == 0) {
			rc = emh_error_set(err, EMH_ECONFIG, "env %s: a context cannot be renamed from the environment",
					   st.vars[i].var);
			goto out_release;
		}
	if ((rc = create_contexts(cfg, &st, nfile, err)) || (rc = apply_vars(cfg, &st, drivers, ndrivers, err)) ||
	    (rc = require_drivers(cfg, &st, nfile, drivers, ndrivers, err)))
		goto out_release;

	/* 4. the default context */
	if (!(names = context_names(cfg)))
		rc = emh__cfg_oom(err);
	else
		rc = resolve_default(cfg, envp, names, err);

out_release:
	free(names);
	envstate_release(&st);
	if (rc)
		emh__config_release(cfg);
	return rc;
}
