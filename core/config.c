/* SPDX-License-Identifier: MIT */
/* core/config.c: the libconfig file, ${VAR} expansion, environment overrides, URLs and checks. */
#include "config.h"

#include "cfg.h"

#include <ctype.h>
#include <errno.h>
#include <libconfig.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

extern char **environ;

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

/* The pieces a URL can set: replaced as a whole when an environment URL is given. */
static const char *const url_keys[] = { "driver", "url", "host", "port", "user", "database", "path", NULL };

static const char *const top_keys[] = { "plugin_dir", "default_context", "service_dir", "log_level",
					"contexts", "services", "server", NULL };
static const char *const pool_keys[] = { "min", "max", "acquire_timeout_ms", "idle_timeout_ms",
					 "max_lifetime_ms", NULL };
static const char *const server_keys[] = { "listen", "threads", "max_body", "shutdown_timeout_ms", NULL };
static const char *const service_keys[] = { "name", "module", "contexts", "settings", NULL };
static const char *const log_levels[] = { "error", "warn", "info", "debug", NULL };

static const struct {
	const char *scheme, *driver;
} builtin_schemes[] = {
	{ "sqlite", "sqlite" },	    { "sqlite3", "sqlite" },	 { "postgres", "postgres" },
	{ "postgresql", "postgres" }, { "mysql", "mysql" },	     { "mariadb", "mysql" },
	{ "mongodb", "mongo" },	    { "mongodb+srv", "mongo" },
};

/* ---- small helpers ---- */

static int oom(emh_error *err) { return emh_error_set(err, EMH_ENOMEM, "out of memory"); }

static char *xstrdup(const char *s) { return s ? strdup(s) : NULL; }

/* A growable string; any allocation failure sticks in .oom. */
typedef struct sbuf {
	char *p;
	size_t n, cap;
	bool oom;
} sbuf;

static void sb_putn(sbuf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->n + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 64;
		while (cap < b->n + n + 1)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (!p) {
			b->oom = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = '\0';
}

static void sb_puts(sbuf *b, const char *s) { sb_putn(b, s, strlen(s)); }

/* The built string (owned by the caller), or NULL when memory ran out. */
static char *sb_take(sbuf *b)
{
	if (b->oom) {
		free(b->p);
		*b = (sbuf){ 0 };
		return NULL;
	}
	char *p = b->p ? b->p : strdup("");
	*b = (sbuf){ 0 };
	return p;
}

static void sb_release(sbuf *b)
{
	free(b->p);
	*b = (sbuf){ 0 };
}

static bool in_list(const char *const *list, const char *s)
{
	for (; *list; list++)
		if (strcmp(*list, s) == 0)
			return true;
	return false;
}

static void join_list(char *buf, size_t cap, const char *const *list)
{
	size_t n = 0;
	buf[0] = '\0';
	for (; *list && n < cap; list++)
		n += (size_t)snprintf(buf + n, cap - n, "%s%s", n ? ", " : "", *list);
}

/* A context or service name: [a-z_][a-z0-9_]*. */
static bool valid_ident(const char *s)
{
	if (!s || !(*s == '_' || (*s >= 'a' && *s <= 'z')))
		return false;
	for (s++; *s; s++)
		if (!(*s == '_' || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9')))
			return false;
	return true;
}

/* An environment variable name: [A-Za-z_][A-Za-z0-9_]*. */
static bool valid_varname(const char *s, size_t n)
{
	if (n == 0 || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!(isalnum((unsigned char)s[i]) || s[i] == '_'))
			return false;
	return true;
}

const char *emh__getenv(const char *const *envp, const char *name)
{
	if (!name)
		return NULL;
	if (!envp)
		return getenv(name);
	size_t n = strlen(name);
	for (; *envp; envp++)
		if (strncmp(*envp, name, n) == 0 && (*envp)[n] == '=')
			return *envp + n + 1;
	return NULL;
}

/* Levenshtein distance, capped for the short keys compared here. */
static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la > 63 || lb > 63)
		return 64;
	size_t row[64];
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t diag = row[0];
		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t up = row[j];
			size_t best = diag + (a[i - 1] != b[j - 1]);
			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[lb];
}

/* ---- settings ---- */

static emh__setting *settings_find_mut(emh__settings *s, const char *key)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->v[i].key, key) == 0)
			return &s->v[i];
	return NULL;
}

const emh__setting *emh__settings_find(const emh__settings *s, const char *key)
{
	return s ? settings_find_mut((emh__settings *)s, key) : NULL;
}

const char *emh__ctxconf_get(const emh__ctxconf *c, const char *key)
{
	const emh__setting *st = c ? emh__settings_find(&c->s, key) : NULL;
	return st ? st->value : NULL;
}

static void setting_release(emh__setting *st)
{
	free(st->key);
	free(st->value);
	free(st->origin);
	free(st->path);
	*st = (emh__setting){ 0 };
}

int emh__settings_set(emh__settings *s, const char *key, const char *value, const char *origin,
		      const char *path, int ltype, bool secret)
{
	emh__setting nw = {
		.key = xstrdup(key),
		.value = xstrdup(value),
		.origin = xstrdup(origin),
		.path = xstrdup(path),
		.ltype = ltype,
		.secret = secret,
	};
	if (!nw.key || (value && !nw.value) || (origin && !nw.origin) || (path && !nw.path)) {
		setting_release(&nw);
		return EMH_ENOMEM;
	}
	emh__setting *old = settings_find_mut(s, key);
	if (old) {
		setting_release(old);
		*old = nw;
		return 0;
	}
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 8;
		emh__setting *v = realloc(s->v, cap * sizeof *v);
		if (!v) {
			setting_release(&nw);
			return EMH_ENOMEM;
		}
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n++] = nw;
	return 0;
}

/* Remove key, keeping the order of the others. */
static void settings_remove(emh__settings *s, const char *key)
{
	emh__setting *st = settings_find_mut(s, key);
	if (!st)
		return;
	size_t i = (size_t)(st - s->v);
	setting_release(st);
	memmove(&s->v[i], &s->v[i + 1], (s->n - i - 1) * sizeof *s->v);
	s->n--;
}

void emh__settings_release(emh__settings *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n; i++)
		setting_release(&s->v[i]);
	free(s->v);
	*s = (emh__settings){ 0 };
}

void emh__ctxconf_release(emh__ctxconf *c)
{
	if (!c)
		return;
	free(c->name);
	free(c->origin);
	emh__settings_release(&c->s);
	*c = (emh__ctxconf){ 0 };
}

static void svcconf_release(emh__svcconf *sv)
{
	free(sv->name);
	free(sv->module);
	free(sv->origin);
	emh__settings_release(&sv->remap);
	emh__settings_release(&sv->s);
	*sv = (emh__svcconf){ 0 };
}

/* Safe to call twice: the struct is zeroed. */
void emh__config_release(emh__config *cfg)
{
	if (!cfg)
		return;
	free(cfg->path);
	setting_release(&cfg->plugin_dir);
	setting_release(&cfg->default_context);
	setting_release(&cfg->service_dir);
	setting_release(&cfg->log_level);
	emh__settings_release(&cfg->server);
	for (size_t i = 0; i < cfg->ncontexts; i++)
		emh__ctxconf_release(&cfg->contexts[i]);
	free(cfg->contexts);
	for (size_t i = 0; i < cfg->nservices; i++)
		svcconf_release(&cfg->services[i]);
	free(cfg->services);
	*cfg = (emh__config){ 0 };
}

static int single_set(emh__setting *st, const char *key, const char *value, const char *origin,
		      const char *path, int ltype)
{
	setting_release(st);
	st->key = xstrdup(key);
	st->value = xstrdup(value);
	st->origin = xstrdup(origin);
	st->path = xstrdup(path);
	st->ltype = ltype;
	if (!st->key || (value && !st->value) || (origin && !st->origin) || (path && !st->path)) {
		setting_release(st);
		return EMH_ENOMEM;
	}
	return 0;
}

/* Append a zeroed context; returns it or NULL when memory ran out. */
static emh__ctxconf *config_add_context(emh__config *cfg)
{
	emh__ctxconf *v = realloc(cfg->contexts, (cfg->ncontexts + 1) * sizeof *v);
	if (!v)
		return NULL;
	cfg->contexts = v;
	v[cfg->ncontexts] = (emh__ctxconf){ 0 };
	return &v[cfg->ncontexts++];
}

static emh__ctxconf *config_find_context(emh__config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->ncontexts; i++)
		if (cfg->contexts[i].name && strcmp(cfg->contexts[i].name, name) == 0)
			return &cfg->contexts[i];
	return NULL;
}

/* "a, b, c" of the context names, for error messages. */
static void context_names(const emh__config *cfg, char *buf, size_t cap)
{
	size_t n = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < cfg->ncontexts && n < cap; i++)
		n += (size_t)snprintf(buf + n, cap - n, "%s%s", n ? ", " : "", cfg->contexts[i].name);
	if (!cfg->ncontexts)
		snprintf(buf, cap, "none");
}

/* ---- ${VAR} expansion ---- */

/*
 * Expand s[0..len) into out: ${NAME} is the variable, ${NAME:-fallback} the
 * variable when set and not empty, else the (itself expanded) fallback; $$ is
 * one literal '$'; any other '$' is kept.  where names the value in errors.
 */
static int expand_into(sbuf *out, const char *s, size_t len, const char *const *envp, const char *where,
		       emh_error *err)
{
	size_t i = 0;
	while (i < len) {
		if (s[i] != '$' || i + 1 >= len || (s[i + 1] != '$' && s[i + 1] != '{')) {
			sb_putn(out, &s[i++], 1);
			continue;
		}
		if (s[i + 1] == '$') {
			sb_putn(out, "$", 1);
			i += 2;
			continue;
		}
		size_t name = i + 2, j = name;
		while (j < len && (isalnum((unsigned char)s[j]) || s[j] == '_'))
			j++;
		size_t nlen = j - name;
		const char *fb = NULL;
		size_t fblen = 0, end;
		if (j < len && s[j] == '}') {
			end = j;
		} else if (j + 1 < len && s[j] == ':' && s[j + 1] == '-') {
			/* find the '}' closing this reference, skipping nested ${...} */
			size_t k = j + 2;
			int depth = 1;
			while (k < len) {
				if (s[k] == '$' && k + 1 < len && (s[k + 1] == '$' || s[k + 1] == '{')) {
					depth += s[k + 1] == '{';
					k += 2;
					continue;
				}
				if (s[k] == '}' && --depth == 0)
					break;
				k++;
			}
			if (k >= len)
				return emh_error_set(err, EMH_ECONFIG, "%s: unterminated '${' (write $$ for a literal '$')",
						     where);
			fb = s + j + 2;
			fblen = k - (j + 2);
			end = k;
		} else if (j >= len) {
			return emh_error_set(err, EMH_ECONFIG, "%s: unterminated '${' (write $$ for a literal '$')", where);
		} else {
			return emh_error_set(err, EMH_ECONFIG,
					     "%s: bad variable reference (use ${NAME} or ${NAME:-fallback}, "
					     "$$ for a literal '$')",
					     where);
		}
		if (!valid_varname(s + name, nlen))
			return emh_error_set(err, EMH_ECONFIG,
					     "%s: bad variable name in '${' (use ${NAME} or ${NAME:-fallback})", where);
		char var[256];
		if (nlen >= sizeof var)
			return emh_error_set(err, EMH_ECONFIG, "%s: variable name too long", where);
		memcpy(var, s + name, nlen);
		var[nlen] = '\0';
		const char *v = emh__getenv(envp, var);
		if (v && (!fb || *v)) {
			sb_puts(out, v);
		} else if (fb) {
			int rc = expand_into(out, fb, fblen, envp, where, err);
			if (rc)
				return rc;
		} else {
			return emh_error_set(err, EMH_ECONFIG,
					     "%s: environment variable '%s' is not set (write ${%s:-fallback} for a default)",
					     where, var, var);
		}
		i = end + 1;
	}
	return out->oom ? oom(err) : 0;
}

static int expand(const char *s, const char *const *envp, const char *where, char **out, emh_error *err)
{
	sbuf b = { 0 };
	*out = NULL;
	int rc = expand_into(&b, s, strlen(s), envp, where, err);
	if (rc) {
		sb_release(&b);
		return rc;
	}
	*out = sb_take(&b);
	return *out ? 0 : oom(err);
}

int emh__config_expand(const char *s, const char *const *envp, const char *where, char **out, emh_error *err)
{
	return expand(s, envp, where, out, err);
}

/* ---- value kinds ---- */

static bool parse_ll(const char *s, long long *out)
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
static void setting_where(const char *ctxname, const emh__setting *st, char *buf, size_t cap)
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
static int setting_check_kind(const char *ctxname, emh__setting *st, int kind, emh_error *err)
{
	char where[300], canon[32];
	bool typed = st->ltype == EMH_PARAM_INT || st->ltype == EMH_PARAM_BOOL;
	const char *v = st->value ? st->value : "";
	setting_where(ctxname, st, where, sizeof where);
	if (kind == EMH_PARAM_STRING) {
		if (typed)
			return emh_error_set(err, EMH_ECONFIG, "%s: expected string", where);
		return 0;
	}
	if (typed && st->ltype != kind)
		return emh_error_set(err, EMH_ECONFIG, "%s: expected %s", where, kind_name(kind));
	if (kind == EMH_PARAM_INT) {
		long long n;
		if (!parse_ll(v, &n)) {
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
			return oom(err);
		free(st->value);
		st->value = c;
	}
	return 0;
}

static const emh_param_spec *spec_find(const emh_param_spec *specs, const char *key)
{
	for (; specs && specs->key; specs++)
		if (strcmp(specs->key, key) == 0)
			return specs;
	return NULL;
}

/* Checks of the common keys beyond the kind: the values schema takes, pool ranges. */
static int setting_check_common(const char *ctxname, emh__setting *st, emh_error *err)
{
	char where[300];
	setting_where(ctxname, st, where, sizeof where);
	if (strcmp(st->key, "schema") == 0 && strcmp(st->value, "none") != 0 && strcmp(st->value, "sync") != 0)
		return emh_error_set(err, EMH_ECONFIG, "%s: expected \"none\" or \"sync\", got '%s'", where, st->value);
	if (strncmp(st->key, "pool.", 5) == 0) {
		long long n = 0;
		parse_ll(st->value, &n);
		if (n < 0)
			return emh_error_set(err, EMH_ECONFIG, "%s: must be >= 0, got %lld", where, n);
		if (n > 0x7fffffff)
			return emh_error_set(err, EMH_ECONFIG, "%s: too large (%lld)", where, n);
		if (strcmp(st->key, "pool.max") == 0 && n < 1)
			return emh_error_set(err, EMH_ECONFIG, "%s: must be >= 1, got %lld", where, n);
	}
	if (strcmp(st->key, "password_env") == 0 && !valid_varname(st->value, strlen(st->value)))
		return emh_error_set(err, EMH_ECONFIG, "%s: '%s' is not an environment variable name", where,
				     st->value);
	return 0;
}

/* ---- the file ---- */

struct parser {
	emh__config *cfg;
	const char *const *envp;
	emh_error *err;
};

/*
 * "FILE:LINE".  libconfig keeps an @include'd file's name as written, and
 * opened it relative to the main file's directory: say that path.
 */
static void file_loc(const char *path, const char *file, unsigned line, char *buf, size_t cap)
{
	const char *slash = strrchr(path, '/');
	if (file && strcmp(file, path) != 0 && file[0] != '/' && slash)
		snprintf(buf, cap, "%.*s%s:%u", (int)(slash - path + 1), path, file, line);
	else
		snprintf(buf, cap, "%s:%u", file ? file : path, line);
}

/* "FILE:LINE" of a libconfig setting. */
static void cs_loc(const struct parser *p, const config_setting_t *cs, char *buf, size_t cap)
{
	file_loc(p->cfg->path, config_setting_source_file(cs), (unsigned)config_setting_source_line(cs), buf, cap);
}

static const char *cs_type_name(const config_setting_t *cs)
{
	switch (config_setting_type(cs)) {
	case CONFIG_TYPE_GROUP: return "a group";
	case CONFIG_TYPE_LIST: return "a list";
	case CONFIG_TYPE_ARRAY: return "an array";
	case CONFIG_TYPE_FLOAT: return "a float";
	case CONFIG_TYPE_STRING: return "a string";
	case CONFIG_TYPE_BOOL: return "a boolean";
	default: return "an integer";
	}
}

static int err_at(const struct parser *p, const config_setting_t *cs, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int err_at(const struct parser *p, const config_setting_t *cs, const char *path, const char *fmt, ...)
{
	char loc[256], msg[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	cs_loc(p, cs, loc, sizeof loc);
	return emh_error_set(p->err, EMH_ECONFIG, "%s: %s: %s", loc, path, msg);
}

/* Unknown key: say which ones are valid, and the likely one for a typo. */
static int err_unknown(const struct parser *p, const config_setting_t *cs, const char *path,
		       const char *what, const char *const *valid)
{
	char list[300], hint[80] = "";
	const char *key = config_setting_name(cs);
	join_list(list, sizeof list, valid);
	for (const char *const *v = valid; *v; v++)
		if (edit_distance(key, *v) <= 2) {
			snprintf(hint, sizeof hint, "did you mean '%s'? ", *v);
			break;
		}
	return err_at(p, cs, path, "unknown %s key '%s' (%svalid: %s)", what, key, hint, list);
}

/*
 * A scalar setting as a string: integers in decimal, booleans "true"/"false",
 * strings ${VAR}-expanded; floats only where allow_float.  *ltype gets the
 * EMH_PARAM_* kind it had in the file (0 for a float).
 */
static int cs_scalar(const struct parser *p, const config_setting_t *cs, const char *path, bool allow_float,
		     char **out, int *ltype)
{
	char buf[64];
	*out = NULL;
	switch (config_setting_type(cs)) {
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64:
		snprintf(buf, sizeof buf, "%lld", config_setting_get_int64(cs));
		*ltype = EMH_PARAM_INT;
		break;
	case CONFIG_TYPE_BOOL:
		snprintf(buf, sizeof buf, "%s", config_setting_get_bool(cs) ? "true" : "false");
		*ltype = EMH_PARAM_BOOL;
		break;
	case CONFIG_TYPE_FLOAT:
		if (!allow_float)
			return err_at(p, cs, path, "expected a string, integer or boolean, not a float");
		snprintf(buf, sizeof buf, "%.17g", config_setting_get_float(cs));
		*ltype = 0;
		break;
	case CONFIG_TYPE_STRING: {
		char loc[256], where[600];
		cs_loc(p, cs, loc, sizeof loc);
		snprintf(where, sizeof where, "%s: %s", loc, path);
		*ltype = EMH_PARAM_STRING;
		return expand(config_setting_get_string(cs), p->envp, where, out, p->err);
	}
	default:
		return err_at(p, cs, path, "expected a string, integer or boolean, not %s", cs_type_name(cs));
	}
	*out = strdup(buf);
	return *out ? 0 : oom(p->err);
}

/* A string setting, ${VAR}-expanded. */
static int cs_string(const struct parser *p, const config_setting_t *cs, const char *path, char **out)
{
	int ltype;
	*out = NULL;
	if (config_setting_type(cs) != CONFIG_TYPE_STRING)
		return err_at(p, cs, path, "expected string");
	return cs_scalar(p, cs, path, false, out, &ltype);
}

/* A setting into st with its origin and path. */
static int cs_store(const struct parser *p, const config_setting_t *cs, const char *key, const char *path,
		    const char *value, int ltype, emh__settings *into, emh__setting *single)
{
	char loc[256];
	cs_loc(p, cs, loc, sizeof loc);
	int rc = into ? emh__settings_set(into, key, value, loc, path, ltype, false)
		      : single_set(single, key, value, loc, path, ltype);
	return rc ? oom(p->err) : 0;
}

static int parse_top_string(struct parser *p, const config_setting_t *cs, emh__setting *into)
{
	const char *key = config_setting_name(cs);
	char *v;
	int rc = cs_string(p, cs, key, &v);
	if (rc)
		return rc;
	if (strcmp(key, "log_level") == 0 && !in_list(log_levels, v)) {
		char list[100];
		join_list(list, sizeof list, log_levels);
		rc = err_at(p, cs, key, "expected one of %s, got '%s'", list, v);
	} else if (strcmp(key, "default_context") == 0 && !valid_ident(v)) {
		rc = err_at(p, cs, key, "'%s' is not a valid context name ([a-z_][a-z0-9_]*)", v);
	} else {
		rc = cs_store(p, cs, key, key, v, EMH_PARAM_STRING, NULL, into);
	}
	free(v);
	return rc;
}

/* The ints of server/pool groups: an integer, or a string spelling one. */
static int store_int_member(struct parser *p, const config_setting_t *m, const char *key, const char *path,
			    long long min, emh__settings *into)
{
	char *v;
	int ltype, rc = cs_scalar(p, m, path, false, &v, &ltype);
	if (rc)
		return rc;
	long long n;
	if (ltype == EMH_PARAM_BOOL || !parse_ll(v, &n))
		rc = err_at(p, m, path, "expected integer");
	else if (n < min)
		rc = err_at(p, m, path, "must be >= %lld, got %lld", min, n);
	else if (n > 0x7fffffff)
		rc = err_at(p, m, path, "too large (%lld)", n);
	else
		rc = cs_store(p, m, key, path, v, EMH_PARAM_INT, into, NULL);
	free(v);
	return rc;
}

static int parse_server(struct parser *p, const config_setting_t *g)
{
	if (!config_setting_is_group(g))
		return err_at(p, g, "server", "expected a group { ... }, not %s", cs_type_name(g));
	for (int i = 0; i < config_setting_length(g); i++) {
		const config_setting_t *m = config_setting_get_elem(g, (unsigned)i);
		const char *key = config_setting_name(m);
		char path[128];
		int rc;
		snprintf(path, sizeof path, "server.%s", key);
		if (!in_list(server_keys, key))
			return err_unknown(p, m, path, "server", server_keys);
		if (strcmp(key, "listen") == 0) {
			char *v;
			if ((rc = cs_string(p, m, path, &v)))
				return rc;
			rc = cs_store(p, m, key, path, v, EMH_PARAM_STRING, &p->cfg->server, NULL);
			free(v);
		} else {
			rc = store_int_member(p, m, key, path, strcmp(key, "threads") == 0 ? 1 : 0, &p->cfg->server);
		}
		if (rc)
			return rc;
	}
	return 0;
}

static int parse_pool(struct parser *p, emh__ctxconf *c, const config_setting_t *g, const char *ctxpath)
{
	char path[160];
	snprintf(path, sizeof path, "%s.pool", ctxpath);
	if (!config_setting_is_group(g))
		return err_at(p, g, path, "expected a group { min = ...; max = ...; }, not %s", cs_type_name(g));
	for (int i = 0; i < config_setting_length(g); i++) {
		const config_setting_t *m = config_setting_get_elem(g, (unsigned)i);
		const char *key = config_setting_name(m);
		char mpath[200], flat[64];
		snprintf(mpath, sizeof mpath, "%s.%s", path, key);
		if (!in_list(pool_keys, key))
			return err_unknown(p, m, mpath, "pool", pool_keys);
		snprintf(flat, sizeof flat, "pool.%s", key);
		int rc = store_int_member(p, m, flat, mpath, strcmp(key, "max") == 0 ? 1 : 0, &c->s);
		if (rc)
			return rc;
	}
	return 0;
}

static int parse_context(struct parser *p, const config_setting_t *g, int idx)
{
	char path[64], loc[256];
	snprintf(path, sizeof path, "contexts.[%d]", idx);
	if (!config_setting_is_group(g))
		return err_at(p, g, path, "expected a group { name = ...; driver = ...; }, not %s", cs_type_name(g));
	emh__ctxconf *c = config_add_context(p->cfg);
	if (!c)
		return oom(p->err);
	cs_loc(p, g, loc, sizeof loc);
	if (!(c->origin = strdup(loc)))
		return oom(p->err);
	const config_setting_t *name_cs = NULL;
	for (int i = 0; i < config_setting_length(g); i++) {
		const config_setting_t *m = config_setting_get_elem(g, (unsigned)i);
		const char *key = config_setting_name(m);
		char mpath[160];
		int rc, ltype;
		char *v;
		snprintf(mpath, sizeof mpath, "%s.%s", path, key);
		if (strcmp(key, "pool") == 0) {
			if ((rc = parse_pool(p, c, m, path)))
				return rc;
			continue;
		}
		if (strcmp(key, "name") == 0) {
			if ((rc = cs_string(p, m, mpath, &c->name)))
				return rc;
			if (!valid_ident(c->name))
				return err_at(p, m, mpath,
					      "'%s' is not a valid context name (lowercase letters, digits and "
					      "'_', not starting with a digit)",
					      c->name);
			name_cs = m;
			continue;
		}
		if ((rc = cs_scalar(p, m, mpath, false, &v, &ltype)))
			return rc;
		rc = cs_store(p, m, key, mpath, v, ltype, &c->s, NULL);
		free(v);
		if (rc)
			return rc;
		const emh_param_spec *spec = spec_find(emh__common_context_keys, key);
		if (spec) {
			emh__setting *st = settings_find_mut(&c->s, key);
			if (spec->flags & EMH_PARAM_SECRET)
				st->secret = true;
			if ((rc = setting_check_kind(NULL, st, spec->kind, p->err)) ||
			    (rc = setting_check_common(NULL, st, p->err)))
				return rc;
		}
	}
	if (!c->name)
		return err_at(p, g, path, "context has no 'name'");
	for (size_t i = 0; i + 1 < p->cfg->ncontexts; i++)
		if (strcmp(p->cfg->contexts[i].name, c->name) == 0) {
			char path2[160];
			snprintf(path2, sizeof path2, "%s.name", path);
			return err_at(p, name_cs, path2, "duplicate context '%s' (first declared at %s)", c->name,
				      p->cfg->contexts[i].origin);
		}
	return 0;
}

static int parse_service(struct parser *p, const config_setting_t *g, int idx)
{
	char path[64], loc[256];
	snprintf(path, sizeof path, "services.[%d]", idx);
	if (!config_setting_is_group(g))
		return err_at(p, g, path, "expected a group { name = ...; module = ...; }, not %s", cs_type_name(g));
	emh__svcconf *v = realloc(p->cfg->services, (p->cfg->nservices + 1) * sizeof *v);
	if (!v)
		return oom(p->err);
	p->cfg->services = v;
	emh__svcconf *sv = &v[p->cfg->nservices++];
	*sv = (emh__svcconf){ 0 };
	cs_loc(p, g, loc, sizeof loc);
	if (!(sv->origin = strdup(loc)))
		return oom(p->err);
	const config_setting_t *name_cs = NULL;
	for (int i = 0; i < config_setting_length(g); i++) {
		const config_setting_t *m = config_setting_get_elem(g, (unsigned)i);
		const char *key = config_setting_name(m);
		char mpath[160];
		int rc;
		snprintf(mpath, sizeof mpath, "%s.%s", path, key);
		if (!in_list(service_keys, key))
			return err_unknown(p, m, mpath, "service", service_keys);
		if (strcmp(key, "name") == 0) {
			if ((rc = cs_string(p, m, mpath, &sv->name)))
				return rc;
			if (!valid_ident(sv->name))
				return err_at(p, m, mpath, "'%s' is not a valid service name ([a-z_][a-z0-9_]*)",
					      sv->name);
			name_cs = m;
		} else if (strcmp(key, "module") == 0) {
			if ((rc = cs_string(p, m, mpath, &sv->module)))
				return rc;
			if (!*sv->module || strchr(sv->module, '/') || strcmp(sv->module, "..") == 0)
				return err_at(p, m, mpath,
					      "'%s' is not a module name (a file stem in service_dir, without '/')",
					      sv->module);
		} else {
			bool remap = strcmp(key, "contexts") == 0;
			if (!config_setting_is_group(m))
				return err_at(p, m, mpath, "expected a group { %s }, not %s",
					      remap ? "declared = \"context\"; ..." : "key = value; ...", cs_type_name(m));
			for (int j = 0; j < config_setting_length(m); j++) {
				const config_setting_t *e = config_setting_get_elem(m, (unsigned)j);
				const char *ekey = config_setting_name(e);
				char epath[256], *val;
				int ltype;
				snprintf(epath, sizeof epath, "%s.%s", mpath, ekey);
				if (remap) {
					if ((rc = cs_string(p, e, epath, &val)))
						return rc;
					ltype = EMH_PARAM_STRING;
					if (!valid_ident(val)) {
						rc = err_at(p, e, epath, "'%s' is not a valid context name", val);
						free(val);
						return rc;
					}
				} else if ((rc = cs_scalar(p, e, epath, true, &val, &ltype))) {
					return rc;
				}
				rc = cs_store(p, e, ekey, epath, val, ltype, remap ? &sv->remap : &sv->s, NULL);
				free(val);
				if (rc)
					return rc;
			}
		}
	}
	if (!sv->name)
		return err_at(p, g, path, "service has no 'name'");
	if (!sv->module && !(sv->module = strdup(sv->name)))
		return oom(p->err);
	for (size_t i = 0; i + 1 < p->cfg->nservices; i++)
		if (strcmp(p->cfg->services[i].name, sv->name) == 0) {
			char path2[160];
			snprintf(path2, sizeof path2, "%s.name", path);
			return err_at(p, name_cs, path2, "duplicate service '%s' (first declared at %s)", sv->name,
				      p->cfg->services[i].origin);
		}
	return 0;
}

/* contexts/services: a list (or an empty array) of groups. */
static int parse_list(struct parser *p, const config_setting_t *cs, int (*each)(struct parser *, const config_setting_t *, int))
{
	const char *key = config_setting_name(cs);
	if (!config_setting_is_list(cs) && !(config_setting_is_array(cs) && config_setting_length(cs) == 0))
		return err_at(p, cs, key, "expected a list ( { ... }, { ... } ), not %s", cs_type_name(cs));
	for (int i = 0; i < config_setting_length(cs); i++) {
		int rc = each(p, config_setting_get_elem(cs, (unsigned)i), i);
		if (rc)
			return rc;
	}
	return 0;
}

static int parse_root(struct parser *p, const config_setting_t *root)
{
	emh__config *cfg = p->cfg;
	for (int i = 0; i < config_setting_length(root); i++) {
		const config_setting_t *m = config_setting_get_elem(root, (unsigned)i);
		const char *key = config_setting_name(m);
		int rc;
		if (strcmp(key, "plugin_dir") == 0)
			rc = parse_top_string(p, m, &cfg->plugin_dir);
		else if (strcmp(key, "default_context") == 0)
			rc = parse_top_string(p, m, &cfg->default_context);
		else if (strcmp(key, "service_dir") == 0)
			rc = parse_top_string(p, m, &cfg->service_dir);
		else if (strcmp(key, "log_level") == 0)
			rc = parse_top_string(p, m, &cfg->log_level);
		else if (strcmp(key, "contexts") == 0)
			rc = parse_list(p, m, parse_context);
		else if (strcmp(key, "services") == 0)
			rc = parse_list(p, m, parse_service);
		else if (strcmp(key, "server") == 0)
			rc = parse_server(p, m);
		else
			rc = err_unknown(p, m, key, "top-level", top_keys);
		if (rc)
			return rc;
	}
	return 0;
}

int emh__config_parse(emh__config *cfg, const char *path, const char *const *envp, emh_error *err)
{
	struct parser p = { .cfg = cfg, .envp = envp, .err = err };
	config_t lc;
	int rc;

	*cfg = (emh__config){ 0 };
	if (!path)
		return 0;
	if (!(cfg->path = strdup(path)))
		return oom(err);

	/* fopen first: libconfig only says "file I/O error" */
	FILE *f = fopen(path, "r");
	if (!f) {
		rc = emh_error_set(err, EMH_ECONFIG, "%s: cannot read the configuration file: %s", path,
				   strerror(errno));
		goto out_release_cfg;
	}
	fclose(f);

	config_init(&lc);
	/* @include "x.conf" is relative to the including file's directory */
	const char *slash = strrchr(path, '/');
	if (slash) {
		char *dir = strndup(path, (size_t)(slash - path) + 1);
		if (!dir) {
			rc = oom(err);
			goto out_destroy_lc;
		}
		config_set_include_dir(&lc, dir);
		free(dir);
	}
	if (config_read_file(&lc, path) != CONFIG_TRUE) {
		const char *efile = config_error_file(&lc);
		if (config_error_type(&lc) == CONFIG_ERR_FILE_IO)
			rc = emh_error_set(err, EMH_ECONFIG, "%s: cannot read the configuration file: %s",
					   efile ? efile : path, config_error_text(&lc));
		else {
			char loc[600];
			file_loc(path, efile, (unsigned)config_error_line(&lc), loc, sizeof loc);
			rc = emh_error_set(err, EMH_ECONFIG, "%s: %s", loc, config_error_text(&lc));
		}
		goto out_destroy_lc;
	}
	rc = parse_root(&p, config_root_setting(&lc));

out_destroy_lc:
	config_destroy(&lc);
out_release_cfg:
	if (rc)
		emh__config_release(cfg);
	return rc;
}

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
		return oom(err);
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
		return oom(err);
	if (u->n == sizeof u->v / sizeof *u->v) {
		free(value);
		return emh_error_set(err, EMH_ECONFIG, "%s: too many query parameters in the url", origin);
	}
	char *k = strdup(key);
	if (!k) {
		free(value);
		return oom(err);
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
			settings_remove(&c->s, *k);
		if (u.has_password) {
			settings_remove(&c->s, "password");
			settings_remove(&c->s, "password_env");
		}
	}
	url_self_origin(origin, selforigin, sizeof selforigin);
	emh__setting *self = settings_find_mut(&c->s, "url");
	if (self && fill) {
		self->secret = self->secret || u.has_password;
	} else if ((rc = emh__settings_set(&c->s, "url", url, selforigin, NULL, 0, u.has_password))) {
		rc = oom(err);
		goto out_release_parts;
	}
	if (!(fill && emh__settings_find(&c->s, "driver")) &&
	    emh__settings_set(&c->s, "driver", driver, origin, NULL, 0, false)) {
		rc = oom(err);
		goto out_release_parts;
	}
	for (size_t i = 0; i < u.n; i++) {
		if (fill && emh__settings_find(&c->s, u.v[i].key))
			continue;
		if (fill && strcmp(u.v[i].key, "password") == 0 && emh__settings_find(&c->s, "password_env"))
			continue;
		if (emh__settings_set(&c->s, u.v[i].key, u.v[i].value, origin, NULL, 0, u.v[i].secret)) {
			rc = oom(err);
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

/* ---- the environment ---- */

#define ENV_PREFIX "EMH_CONTEXT_"

/* A key a variable can name: KEY as spelled in the variable ("POOL_MAX") and the key. */
struct envkey {
	char upper[64];
	const char *key;
};

struct keyset {
	struct envkey *v;
	size_t n;
};

static int keyset_add(struct keyset *ks, const char *key, size_t *cap)
{
	if (strcmp(key, "name") == 0 || strlen(key) >= sizeof ks->v[0].upper)
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
	struct envkey *e = &ks->v[ks->n++];
	e->key = key;
	size_t i = 0;
	for (; key[i]; i++)
		e->upper[i] = key[i] == '.' ? '_' : (char)toupper((unsigned char)key[i]);
	e->upper[i] = '\0';
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
					return oom(err);
				continue;
			}
			const char *key = round == 1 ? split_by_key(rest, &st->ks, &nlen) : NULL;
			if (key) {
				if (envvar_assign(ev, rest, nlen, rest + nlen + 1, &st->ks) || names_add(st, ev->ctx))
					return oom(err);
			}
		}
	}
	for (size_t i = 0; i < st->nvars; i++) {
		struct envvar *ev = &st->vars[i];
		if (ev->ctx)
			continue;
		char names[200] = "", keys[300] = "";
		size_t n = 0;
		for (size_t j = 0; j < st->nnames && n < sizeof names; j++)
			n += (size_t)snprintf(names + n, sizeof names - n, "%s%s", n ? ", " : "", st->names[j]);
		n = 0;
		for (size_t j = 0; j < st->ks.n && n < sizeof keys; j++)
			n += (size_t)snprintf(keys + n, sizeof keys - n, "%s%s", n ? ", " : "", st->ks.v[j].upper);
		return emh_error_set(err, EMH_ECONFIG,
				     "env %s: cannot tell the context from the key: expected %s<NAME>_<KEY> with "
				     "NAME a context (%s) or KEY one of %s",
				     ev->var, ENV_PREFIX, *names ? names : "none", keys);
	}
	return 0;
}

static int env_apply_var(emh__config *cfg, const struct envvar *ev, emh_error *err)
{
	emh__ctxconf *c = config_find_context(cfg, ev->ctx);
	char origin[300];
	snprintf(origin, sizeof origin, "env %s", ev->var);
	if (strcmp(ev->key, "password") == 0) {
		const emh__setting *pe = emh__settings_find(&c->s, "password_env");
		if (pe && strncmp(pe->origin, "env ", 4) != 0)
			settings_remove(&c->s, "password_env");
	} else if (strcmp(ev->key, "password_env") == 0) {
		const emh__setting *pw = emh__settings_find(&c->s, "password");
		if (pw && strncmp(pw->origin, "env ", 4) != 0)
			settings_remove(&c->s, "password");
	}
	const emh_param_spec *spec = spec_find(emh__common_context_keys, ev->key);
	bool secret = spec && (spec->flags & EMH_PARAM_SECRET);
	if (emh__settings_set(&c->s, ev->key, ev->value, origin, NULL, 0, secret))
		return oom(err);
	return 0;
}

/* Pick the default context; see docs/configuration.md. */
static int resolve_default(emh__config *cfg, const char *const *envp, emh_error *err)
{
	char names[300];
	const char *env = emh__getenv(envp, "EMH_DEFAULT_CONTEXT");
	context_names(cfg, names, sizeof names);
	if (env && *env) {
		/* EMH_DEFAULT_CONTEXT=ANALYTICS, spelt like the variables, names "analytics" too */
		char lower[128];
		size_t k = 0;
		for (; env[k] && k + 1 < sizeof lower; k++)
			lower[k] = (char)tolower((unsigned char)env[k]);
		lower[k] = '\0';
		const char *pick = config_find_context(cfg, env) ? env : config_find_context(cfg, lower) ? lower : NULL;
		if (!pick)
			return emh_error_set(err, EMH_ECONFIG, "env EMH_DEFAULT_CONTEXT: no context '%s' (have: %s)", env,
					     names);
		return single_set(&cfg->default_context, "default_context", pick, "env EMH_DEFAULT_CONTEXT", NULL, 0)
			       ? oom(err)
			       : 0;
	}
	if (cfg->default_context.value) {
		if (!config_find_context(cfg, cfg->default_context.value))
			return emh_error_set(err, EMH_ECONFIG, "%s: default_context: no context '%s' (have: %s)",
					     cfg->default_context.origin, cfg->default_context.value, names);
		return 0;
	}
	const char *pick = NULL;
	if (config_find_context(cfg, "default"))
		pick = "default";
	else if (cfg->ncontexts == 1)
		pick = cfg->contexts[0].name;
	else if (cfg->ncontexts > 1)
		return emh_error_set(err, EMH_ECONFIG,
				     "%s: several contexts and none is the default: set default_context, name one "
				     "'default', or set EMH_DEFAULT_CONTEXT (have: %s)",
				     cfg->path ? cfg->path : "environment", names);
	if (pick && single_set(&cfg->default_context, "default_context", pick, "default", NULL, 0))
		return oom(err);
	return 0;
}

int emh__config_apply_env(emh__config *cfg, const char *const *envp, const emh_driver *const *drivers,
			  size_t ndrivers, emh_error *err)
{
	struct envstate st = { 0 };
	int rc = 0;

	/* 1. a url written in the file: its pieces fill what the context does not set */
	for (size_t i = 0; i < cfg->ncontexts; i++) {
		emh__ctxconf *c = &cfg->contexts[i];
		const emh__setting *u = emh__settings_find(&c->s, "url");
		if (!u || !u->path)
			continue;
		char origin[300];
		snprintf(origin, sizeof origin, "url (%s)", u->origin);
		char *url = strdup(u->value);
		if (!url) {
			rc = oom(err);
			goto out_release;
		}
		rc = url_apply(c, url, origin, drivers, ndrivers, true, err);
		free(url);
		if (rc)
			goto out_release;
	}

	/* 2. EMH_CONTEXT_<NAME>_<KEY> */
	if (env_collect(&st, envp) || env_keyset(&st, drivers, ndrivers)) {
		rc = oom(err);
		goto out_release;
	}
	for (size_t i = 0; i < cfg->ncontexts; i++)
		if (names_add(&st, cfg->contexts[i].name)) {
			rc = oom(err);
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

	/* new contexts, in name order so the result does not depend on the environment's order */
	if (st.nnames > nfile)
		qsort(st.names + nfile, st.nnames - nfile, sizeof *st.names, cmp_str);
	for (size_t i = nfile; i < st.nnames; i++) {
		const struct envvar *creator = NULL;
		for (size_t j = 0; j < st.nvars; j++) {
			const struct envvar *ev = &st.vars[j];
			if (strcmp(ev->ctx, st.names[i]) != 0)
				continue;
			if (!creator || strcmp(ev->key, "driver") == 0 || (strcmp(ev->key, "url") == 0 &&
									   strcmp(creator->key, "driver") != 0))
				creator = ev;
		}
		if (!valid_ident(st.names[i])) {
			rc = emh_error_set(err, EMH_ECONFIG, "env %s: '%s' is not a valid context name", creator->var,
					   st.names[i]);
			goto out_release;
		}
		emh__ctxconf *c = config_add_context(cfg);
		char origin[300];
		snprintf(origin, sizeof origin, "env %s", creator->var);
		if (!c || !(c->name = strdup(st.names[i])) || !(c->origin = strdup(origin))) {
			rc = oom(err);
			goto out_release;
		}
	}

	/* URLs first (they replace the connection keys), then single keys over them */
	for (size_t i = 0; i < st.nvars; i++) {
		const struct envvar *ev = &st.vars[i];
		if (strcmp(ev->key, "url") != 0)
			continue;
		char origin[300];
		snprintf(origin, sizeof origin, "url (env %s)", ev->var);
		if ((rc = url_apply(config_find_context(cfg, ev->ctx), ev->value, origin, drivers, ndrivers, false,
				    err)))
			goto out_release;
	}
	for (size_t i = 0; i < st.nvars; i++)
		if (strcmp(st.vars[i].key, "url") != 0 && (rc = env_apply_var(cfg, &st.vars[i], err)))
			goto out_release;

	/* 3. every context needs a driver by now */
	for (size_t i = 0; i < cfg->ncontexts; i++) {
		emh__ctxconf *c = &cfg->contexts[i];
		if (emh__ctxconf_get(c, "driver"))
			continue;
		char up[128];
		size_t k = 0;
		for (; c->name[k] && k + 1 < sizeof up; k++)
			up[k] = (char)toupper((unsigned char)c->name[k]);
		up[k] = '\0';
		const struct envvar *touched = NULL;
		for (size_t j = 0; j < st.nvars && !touched; j++)
			if (strcmp(st.vars[j].ctx, c->name) == 0)
				touched = &st.vars[j];
		if (touched)
			rc = emh_error_set(err, EMH_ECONFIG,
					   "env %s: context '%s' has no driver (set EMH_CONTEXT_%s_DRIVER or "
					   "EMH_CONTEXT_%s_URL%s)",
					   touched->var, c->name, up, up, i < nfile ? ", or driver in the file" : "");
		else
			rc = emh_error_set(err, EMH_ECONFIG,
					   "%s: context '%s' has no 'driver' (set driver or url, or "
					   "EMH_CONTEXT_%s_DRIVER or EMH_CONTEXT_%s_URL)",
					   c->origin, c->name, up, up);
		goto out_release;
	}

	/* 4. the default context */
	rc = resolve_default(cfg, envp, err);

out_release:
	envstate_release(&st);
	if (rc)
		emh__config_release(cfg);
	return rc;
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
			if (!*hint && edit_distance(st->key, sp->key) <= 2)
				snprintf(hint, sizeof hint, "did you mean '%s'? ", sp->key);
		}
	setting_where(c->name, st, where, sizeof where);
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
		const emh_param_spec *spec = spec_find(emh__common_context_keys, st->key);
		if (!spec && d)
			spec = spec_find(d->params, st->key);
		if (!spec || strcmp(st->key, "name") == 0)
			return err_unknown_ctx_key(c, st, d, err);
		if (spec->flags & EMH_PARAM_SECRET)
			st->secret = true;
		if ((rc = setting_check_kind(c->name, st, spec->kind, err)) ||
		    (rc = setting_check_common(c->name, st, err)))
			return rc;
	}

	/* password_env: resolved now, so a missing variable fails at start-up */
	const emh__setting *pe = emh__settings_find(&c->s, "password_env");
	const emh__setting *pw = emh__settings_find(&c->s, "password");
	if (pe) {
		char origin[300];
		snprintf(origin, sizeof origin, "env %s", pe->value);
		if (pw && strcmp(pw->origin, origin) != 0) {
			setting_where(c->name, pw, where, sizeof where);
			setting_where(c->name, pe, where2, sizeof where2);
			return emh_error_set(err, EMH_ECONFIG,
					     "context '%s': both password (%s) and password_env (%s) are set; keep one",
					     c->name, where, where2);
		}
		const char *v = emh__getenv(envp, pe->value);
		if (!v) {
			setting_where(c->name, pe, where, sizeof where);
			return emh_error_set(err, EMH_ECONFIG, "%s: environment variable '%s' is not set", where,
					     pe->value);
		}
		if (emh__settings_set(&c->s, "password", v, origin, NULL, 0, true))
			return oom(err);
	}

	for (size_t i = 0; i < sizeof ctx_defaults / sizeof *ctx_defaults; i++)
		if (!emh__settings_find(&c->s, ctx_defaults[i].key) &&
		    emh__settings_set(&c->s, ctx_defaults[i].key, ctx_defaults[i].value, "default", NULL, 0, false))
			return oom(err);

	const emh__setting *mn = emh__settings_find(&c->s, "pool.min");
	const emh__setting *mx = emh__settings_find(&c->s, "pool.max");
	long long a = 0, b = 0;
	parse_ll(mn->value, &a);
	parse_ll(mx->value, &b);
	if (a > b) {
		setting_where(c->name, mn, where, sizeof where);
		setting_where(c->name, mx, where2, sizeof where2);
		return emh_error_set(err, EMH_ECONFIG, "%s: pool.min (%lld) is greater than pool.max (%lld, %s)", where,
				     a, b, mx->origin);
	}
	return 0;
}
