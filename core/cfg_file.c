/* SPDX-License-Identifier: MIT */
/*
 * core/cfg_file.c: reading the libconfig file into the model.  The one file
 * of the core that includes libconfig.h: its types never leave it.
 */
#include "config.h"

#include <errno.h>
#include <libconfig.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfg_int.h"

static const char *const top_keys[] = { "plugin_dir", "default_context", "service_dir", "log_level",
					"contexts", "services", "server", NULL };
static const char *const pool_keys[] = { "min", "max", "acquire_timeout_ms", "idle_timeout_ms",
					 "max_lifetime_ms", NULL };
static const char *const server_keys[] = { "listen", "threads", "max_body", "shutdown_timeout_ms", NULL };
static const char *const service_keys[] = { "name", "module", "contexts", "settings", NULL };
static const char *const log_levels[] = { "error", "warn", "info", "debug", NULL };

static void join_list(char *buf, size_t cap, const char *const *list)
{
	size_t n = 0;
	buf[0] = '\0';
	for (; *list && n < cap; list++)
		n += (size_t)snprintf(buf + n, cap - n, "%s%s", n ? ", " : "", *list);
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
		if (emh__edit_distance(key, *v) <= 2) {
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
		return emh__config_expand(config_setting_get_string(cs), p->envp, where, out, p->err);
	}
	default:
		return err_at(p, cs, path, "expected a string, integer or boolean, not %s", cs_type_name(cs));
	}
	*out = strdup(buf);
	return *out ? 0 : emh__cfg_oom(p->err);
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
		      : emh__setting_assign(single, key, value, loc, path, ltype);
	return rc ? emh__cfg_oom(p->err) : 0;
}

static int parse_top_string(struct parser *p, const config_setting_t *cs, emh__setting *into)
{
	const char *key = config_setting_name(cs);
	char *v;
	int rc = cs_string(p, cs, key, &v);
	if (rc)
		return rc;
	if (strcmp(key, "log_level") == 0 && !emh__in_list(log_levels, v)) {
		char list[100];
		join_list(list, sizeof list, log_levels);
		rc = err_at(p, cs, key, "expected one of %s, got '%s'", list, v);
	} else if (strcmp(key, "default_context") == 0 && !emh__valid_ident(v)) {
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
	if (ltype == EMH_PARAM_BOOL || !emh__parse_ll(v, &n))
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
		if (!emh__in_list(server_keys, key))
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
		if (!emh__in_list(pool_keys, key))
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
	emh__ctxconf *c = emh__config_add_context(p->cfg);
	if (!c)
		return emh__cfg_oom(p->err);
	cs_loc(p, g, loc, sizeof loc);
	if (!(c->origin = strdup(loc)))
		return emh__cfg_oom(p->err);
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
			if (!emh__valid_ident(c->name))
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
		const emh_param_spec *spec = emh__spec_find(emh__common_context_keys, key);
		if (spec) {
			emh__setting *st = emh__settings_find_mut(&c->s, key);
			if (spec->flags & EMH_PARAM_SECRET)
				st->secret = true;
			if ((rc = emh__setting_check_kind(NULL, st, spec->kind, p->err)) ||
			    (rc = emh__setting_check_common(NULL, st, p->err)))
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
		return emh__cfg_oom(p->err);
	p->cfg->services = v;
	emh__svcconf *sv = &v[p->cfg->nservices++];
	*sv = (emh__svcconf){ 0 };
	cs_loc(p, g, loc, sizeof loc);
	if (!(sv->origin = strdup(loc)))
		return emh__cfg_oom(p->err);
	const config_setting_t *name_cs = NULL;
	for (int i = 0; i < config_setting_length(g); i++) {
		const config_setting_t *m = config_setting_get_elem(g, (unsigned)i);
		const char *key = config_setting_name(m);
		char mpath[160];
		int rc;
		snprintf(mpath, sizeof mpath, "%s.%s", path, key);
		if (!emh__in_list(service_keys, key))
			return err_unknown(p, m, mpath, "service", service_keys);
		if (strcmp(key, "name") == 0) {
			if ((rc = cs_string(p, m, mpath, &sv->name)))
				return rc;
			if (!emh__valid_ident(sv->name))
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
					if (!emh__valid_ident(val)) {
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
		return emh__cfg_oom(p->err);
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
		return emh__cfg_oom(err);

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
			rc = emh__cfg_oom(err);
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
