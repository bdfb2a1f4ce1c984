/* SPDX-License-Identifier: MIT */
/*
 * core/cfg_file.c: reading the libconfig file into the model.  The one file
 * of the core that includes libconfig.h: its types never leave it.  Every
 * value is stored as a string with its origin ("FILE:LINE") and its config
 * path ("contexts.[1].port"); the common context keys and the server keys
 * are checked here (kind, range), driver keys once the drivers are loaded
 * (cfg_check.c).
 */
#include "config.h"

#include <errno.h>
#include <libconfig.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <emhost/buf.h>

#include "cfg_int.h"

static const char *const top_keys[] = { "plugin_dir", "default_context", "service_dir", "log_level",
					"contexts", "services", "server", "max_connections", NULL };
/* The host's connection budget (docs/configuration.md "Many tenants"). */
static const emh_param_spec max_connections_spec = {
	.key = "max_connections", .kind = EMH_PARAM_INT, .min = 1, .max = INT32_MAX,
	.help = "most connections open at once over every context",
};
static const char *const pool_keys[] = { "min", "max", "acquire_timeout_ms", "idle_timeout_ms",
					 "max_lifetime_ms", NULL };
static const char *const service_keys[] = { "name", "module", "contexts", "settings", NULL };
static const char *const log_levels[] = { "error", "warn", "info", "debug", NULL };

/* The server group of emhostd; its defaults are the daemon's. */
static const emh_param_spec server_specs[] = {
	{ .key = "listen", .kind = EMH_PARAM_STRING, .help = "address:port to listen on" },
	{ .key = "threads", .kind = EMH_PARAM_INT, .min = 1, .max = INT32_MAX, .help = "worker threads" },
	{ .key = "max_body", .kind = EMH_PARAM_INT, .min = 0, .max = INT32_MAX, .help = "largest request body, bytes" },
	{ .key = "max_response", .kind = EMH_PARAM_INT, .min = 1024, .max = INT32_MAX,
	  .help = "largest answer of a service, bytes (default 8388608); a larger one is a 500" },
	{ .key = "shutdown_timeout_ms", .kind = EMH_PARAM_INT, .min = 0, .max = INT32_MAX,
	  .help = "how long to wait for running requests at shutdown" },
	{ .key = "reuse_port", .kind = EMH_PARAM_BOOL,
	  .help = "share the listen address with other processes (SO_REUSEPORT); off: a second daemon is refused" },
	{ .key = "inline", .kind = EMH_PARAM_BOOL,
	  .help = "run GET handlers on SQLite on the I/O thread when a connection is idle (default true)" },
	{ .key = NULL },
};
static const char *const server_keys[] = { "listen", "threads", "max_body", "shutdown_timeout_ms", "reuse_port",
					    "max_response", "inline", NULL };

struct parser {
	emh__config *cfg;
	const char *const *envp;
	emh_error *err;
};

/*
 * "FILE:LINE" (malloc'd, NULL when out of memory).  libconfig keeps an
 * @include'd file's name as written, and opened it relative to the main
 * file's directory: say that path.
 */
static char *file_loc(const char *path, const char *file, unsigned line)
{
	const char *slash = strrchr(path, '/');
	if (file && strcmp(file, path) != 0 && file[0] != '/' && slash)
		return emh__strf("%.*s%s:%u", (int)(slash - path + 1), path, file, line);
	return emh__strf("%s:%u", file ? file : path, line);
}

/* "FILE:LINE" of a libconfig setting (malloc'd, NULL when out of memory). */
static char *cs_loc(const struct parser *p, const config_setting_t *cs)
{
	return file_loc(p->cfg->path, config_setting_source_file(cs), (unsigned)config_setting_source_line(cs));
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

/* Fail with "FILE:LINE: path: message". */
static int err_at(const struct parser *p, const config_setting_t *cs, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int err_at(const struct parser *p, const config_setting_t *cs, const char *path, const char *fmt, ...)
{
	/* the message is bounded by emh_error's; so is what is formatted here */
	char msg[EMH_ERROR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	char *loc = cs_loc(p, cs);
	int rc = loc ? emh_error_set(p->err, EMH_ECONFIG, "%s: %s: %s", loc, path, msg) : emh__cfg_oom(p->err);
	free(loc);
	return rc;
}

/* Unknown key: say which ones are valid, and the likely one for a typo. */
static int err_unknown(const struct parser *p, const config_setting_t *cs, const char *path,
		       const char *what, const char *const *valid)
{
	emh_buf list = EMH_BUF_INIT;
	const char *key = config_setting_name(cs), *hint = NULL;
	for (const char *const *v = valid; *v; v++) {
		emh_buf_addf(&list, "%s%s", list.len ? ", " : "", *v);
		if (!hint && emh__edit_distance(key, *v) <= 2)
			hint = *v;
	}
	int rc = list.oom ? emh__cfg_oom(p->err)
			  : err_at(p, cs, path, "unknown %s key '%.*s%s' (%s%s%svalid: %s)", what, EMH__SHOWN(key),
				   hint ? "did you mean '" : "", hint ? hint : "", hint ? "'? " : "", list.ptr);
	emh_buf_release(&list);
	return rc;
}

/*
 * A scalar setting as a string: integers in decimal, booleans "true"/"false",
 * strings ${VAR}-expanded; floats only where allow_float.  *ltype gets the
 * EMH_PARAM_* kind it had in the file (0 for a float).
 */
static int cs_scalar(const struct parser *p, const config_setting_t *cs, const char *path, bool allow_float,
		     char **out, int *ltype)
{
	*out = NULL;
	switch (config_setting_type(cs)) {
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64:
		*out = emh__strf("%lld", config_setting_get_int64(cs));
		*ltype = EMH_PARAM_INT;
		break;
	case CONFIG_TYPE_BOOL:
		*out = strdup(config_setting_get_bool(cs) ? "true" : "false");
		*ltype = EMH_PARAM_BOOL;
		break;
	case CONFIG_TYPE_FLOAT:
		if (!allow_float)
			return err_at(p, cs, path, "expected a string, integer or boolean, not a float");
		*out = emh__strf("%.17g", config_setting_get_float(cs));
		*ltype = 0;
		break;
	case CONFIG_TYPE_STRING: {
		char *loc = cs_loc(p, cs), *where = loc ? emh__strf("%s: %s", loc, path) : NULL;
		int rc = where ? emh__config_expand(config_setting_get_string(cs), p->envp, where, out, p->err)
			       : emh__cfg_oom(p->err);
		*ltype = EMH_PARAM_STRING;
		free(loc);
		free(where);
		return rc;
	}
	default:
		return err_at(p, cs, path, "expected a string, integer or boolean, not %s", cs_type_name(cs));
	}
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

/* A setting into into (or the single setting single) with its origin and path. */
static int cs_store(const struct parser *p, const config_setting_t *cs, const char *key, const char *path,
		    const char *value, int ltype, emh__settings *into, emh__setting *single)
{
	char *loc = cs_loc(p, cs);
	int rc = !loc  ? EMH_ENOMEM
		 : into ? emh__settings_set(into, key, value, loc, path, ltype, false)
			: emh__setting_assign(single, key, value, loc, path, ltype);
	free(loc);
	return rc ? emh__cfg_oom(p->err) : 0;
}

/* A scalar member of a group stored as key into into, then checked against spec (when known). */
static int store_checked(struct parser *p, const config_setting_t *m, const char *key, const char *path,
			 const emh_param_spec *spec, emh__settings *into)
{
	char *v;
	int ltype, rc = cs_scalar(p, m, path, false, &v, &ltype);
	if (rc)
		return rc;
	rc = cs_store(p, m, key, path, v, ltype, into, NULL);
	free(v);
	if (!rc && spec)
		rc = emh__setting_check(NULL, emh__settings_find_mut(into, key), spec, p->err);
	return rc;
}

static int parse_top_string(struct parser *p, const config_setting_t *cs, emh__setting *into)
{
	const char *key = config_setting_name(cs);
	char *v;
	int rc = cs_string(p, cs, key, &v);
	if (rc)
		return rc;
	const char *problem = strcmp(key, "default_context") == 0 ? emh__name_problem(v) : NULL;
	if (strcmp(key, "log_level") == 0 && !emh__in_list(log_levels, v))
		rc = err_at(p, cs, key, "expected one of error, warn, info, debug, got '%s'", v);
	else if (problem)
		rc = err_at(p, cs, key, "'%.*s%s' is not a valid context name (%s)", EMH__SHOWN(v), problem);
	else
		rc = cs_store(p, cs, key, key, v, EMH_PARAM_STRING, NULL, into);
	free(v);
	return rc;
}

/* An integer top-level key (a string may spell it: "${MAX:-100}"), kept as one setting. */
static int parse_top_int(struct parser *p, const config_setting_t *cs, const emh_param_spec *spec, emh__setting *into)
{
	char *v;
	int ltype, rc = cs_scalar(p, cs, spec->key, false, &v, &ltype);
	if (rc)
		return rc;
	rc = cs_store(p, cs, spec->key, spec->key, v, ltype, NULL, into);
	free(v);
	return rc ? rc : emh__setting_check(NULL, into, spec, p->err);
}

static int parse_server(struct parser *p, const config_setting_t *g)
{
	if (!config_setting_is_group(g))
		return err_at(p, g, "server", "expected a group { ... }, not %s", cs_type_name(g));
	for (int i = 0; i < config_setting_length(g); i++) {
		const config_setting_t *m = config_setting_get_elem(g, (unsigned)i);
		const char *key = config_setting_name(m);
		char *path = emh__strf("server.%s", key);
		int rc = !path				 ? emh__cfg_oom(p->err)
			 : !emh__in_list(server_keys, key) ? err_unknown(p, m, path, "server", server_keys)
			     : store_checked(p, m, key, path, emh__spec_find(server_specs, key), &p->cfg->server);
		free(path);
		if (rc)
			return rc;
	}
	return 0;
}

/* pool = { max = 8; ... } of a context, flattened to pool.max and checked as the common key. */
static int parse_pool(struct parser *p, emh__ctxconf *c, const config_setting_t *g, const char *path)
{
	if (!config_setting_is_group(g))
		return err_at(p, g, path, "expected a group { min = ...; max = ...; }, not %s", cs_type_name(g));
	for (int i = 0; i < config_setting_length(g); i++) {
		const config_setting_t *m = config_setting_get_elem(g, (unsigned)i);
		const char *key = config_setting_name(m);
		char *mpath = emh__strf("%s.%s", path, key), *flat = emh__strf("pool.%s", key);
		int rc = !mpath || !flat		   ? emh__cfg_oom(p->err)
			 : !emh__in_list(pool_keys, key) ? err_unknown(p, m, mpath, "pool", pool_keys)
			     : store_checked(p, m, flat, mpath, emh__spec_find(emh__common_context_keys, flat), &c->s);
		free(mpath);
		free(flat);
		if (rc)
			return rc;
	}
	return 0;
}

/*
 * replicas = ( { url = "..."; }, { host = ...; port = ...; pool = { ... }; } ):
 * replica N's keys flattened to replicas.N.KEY (N from 1), checked as KEY
 * where KEY is a common one; the driver's keys and what a replica may not
 * set are checked with the context (emh__config_check_context).
 */
static int parse_replicas(struct parser *p, emh__ctxconf *c, const config_setting_t *l, const char *path)
{
	if (!config_setting_is_list(l) && !config_setting_is_array(l))
		return err_at(p, l, path, "expected a list ( { url = ...; }, ... ), not %s", cs_type_name(l));
	for (int i = 0; i < config_setting_length(l); i++) {
		const config_setting_t *g = config_setting_get_elem(l, (unsigned)i);
		char *gpath = emh__strf("%s.[%d]", path, i);
		int rc = !gpath ? emh__cfg_oom(p->err)
			 : !config_setting_is_group(g)
			     ? err_at(p, g, gpath, "expected a group { url = ...; }, not %s", cs_type_name(g))
			     : 0;
		for (int j = 0; !rc && j < config_setting_length(g); j++) {
			const config_setting_t *m = config_setting_get_elem(g, (unsigned)j);
			const char *key = config_setting_name(m);
			char *mpath = emh__strf("%s.%s", gpath, key);
			if (!mpath) {
				rc = emh__cfg_oom(p->err);
			} else if (strcmp(key, "pool") == 0 && config_setting_is_group(m)) {
				for (int k = 0; !rc && k < config_setting_length(m); k++) {
					const config_setting_t *pm = config_setting_get_elem(m, (unsigned)k);
					const char *pk = config_setting_name(pm);
					char *ppath = emh__strf("%s.%s", mpath, pk);
					char *flat = emh__strf("replicas.%d.pool.%s", i + 1, pk), *spk = emh__strf("pool.%s", pk);
					rc = !ppath || !flat || !spk ? emh__cfg_oom(p->err)
					     : !emh__in_list(pool_keys, pk)
						 ? err_unknown(p, pm, ppath, "pool", pool_keys)
						 : store_checked(p, pm, flat, ppath, emh__spec_find(emh__common_context_keys, spk),
								 &c->s);
					free(ppath);
					free(flat);
					free(spk);
				}
			} else {
				char *flat = emh__strf("replicas.%d.%s", i + 1, key);
				rc = flat ? store_checked(p, m, flat, mpath, emh__spec_find(emh__common_context_keys, key), &c->s)
					  : emh__cfg_oom(p->err);
				free(flat);
			}
			free(mpath);
		}
		free(gpath);
		if (rc)
			return rc;
	}
	return 0;
}

/* One member of a context group at path. */
static int parse_context_key(struct parser *p, emh__ctxconf *c, const config_setting_t *m, const char *path,
			     const config_setting_t **name_cs)
{
	const char *key = config_setting_name(m);
	int rc;
	if (strcmp(key, "pool") == 0)
		return parse_pool(p, c, m, path);
	if (strcmp(key, "replicas") == 0)
		return parse_replicas(p, c, m, path);
	if (strcmp(key, "name") != 0)
		return store_checked(p, m, key, path, emh__spec_find(emh__common_context_keys, key), &c->s);
	if ((rc = cs_string(p, m, path, &c->name)))
		return rc;
	*name_cs = m;
	const char *problem = emh__name_problem(c->name);
	if (problem)
		return err_at(p, m, path, "'%.*s%s' is not a valid context name (%s)", EMH__SHOWN(c->name), problem);
	return 0;
}

/*
 * A context without a name, and a key two edits from "name" that is no
 * common key: the likely misspelling is named.  Only asked, not asserted:
 * a driver may have such a key ("mode"), and drivers are not loaded yet.
 */
static int err_no_name(const struct parser *p, const config_setting_t *g, const char *path)
{
	for (int i = 0; i < config_setting_length(g); i++) {
		const char *key = config_setting_name(config_setting_get_elem(g, (unsigned)i));
		if (!emh__spec_find(emh__common_context_keys, key) && strcmp(key, "pool") != 0 &&
		    emh__edit_distance(key, "name") <= 2)
			return err_at(p, g, path, "context has no 'name' (is '%.*s%s' a misspelling of it?)",
				      EMH__SHOWN(key));
	}
	return err_at(p, g, path, "context has no 'name'");
}

static int parse_context(struct parser *p, const config_setting_t *g, int idx)
{
	char path[32];
	snprintf(path, sizeof path, "contexts.[%d]", idx);
	if (!config_setting_is_group(g))
		return err_at(p, g, path, "expected a group { name = ...; driver = ...; }, not %s", cs_type_name(g));
	emh__ctxconf *c = emh__config_add_context(p->cfg);
	if (!c || !(c->origin = cs_loc(p, g)))
		return emh__cfg_oom(p->err);
	const config_setting_t *name_cs = NULL;
	for (int i = 0; i < config_setting_length(g); i++) {
		const config_setting_t *m = config_setting_get_elem(g, (unsigned)i);
		char *mpath = emh__strf("%s.%s", path, config_setting_name(m));
		int rc = mpath ? parse_context_key(p, c, m, mpath, &name_cs) : emh__cfg_oom(p->err);
		free(mpath);
		if (rc)
			return rc;
	}
	if (!c->name)
		return err_no_name(p, g, path);
	for (size_t i = 0; i + 1 < p->cfg->ncontexts; i++)
		if (strcmp(p->cfg->contexts[i].name, c->name) == 0) {
			char npath[48];
			snprintf(npath, sizeof npath, "%s.name", path);
			return err_at(p, name_cs, npath, "duplicate context '%s' (first declared at %s)", c->name,
				      p->cfg->contexts[i].origin);
		}
	return 0;
}

/* The members of a service's contexts = { ... } (remap) or settings = { ... } group at path. */
static int parse_service_group(struct parser *p, emh__svcconf *sv, const config_setting_t *m, const char *path,
			       bool remap)
{
	if (!config_setting_is_group(m))
		return err_at(p, m, path, "expected a group { %s }, not %s",
			      remap ? "declared = \"context\"; ..." : "key = value; ...", cs_type_name(m));
	for (int j = 0; j < config_setting_length(m); j++) {
		const config_setting_t *e = config_setting_get_elem(m, (unsigned)j);
		const char *ekey = config_setting_name(e);
		char *epath = emh__strf("%s.%s", path, ekey), *val = NULL;
		int ltype = EMH_PARAM_STRING, rc = 0;
		if (!epath)
			rc = emh__cfg_oom(p->err);
		else if (remap && !(rc = cs_string(p, e, epath, &val)) && emh__name_problem(val))
			rc = err_at(p, e, epath, "'%.*s%s' is not a valid context name (%s)", EMH__SHOWN(val),
				    emh__name_problem(val));
		else if (!remap)
			rc = cs_scalar(p, e, epath, true, &val, &ltype);
		if (!rc)
			rc = cs_store(p, e, ekey, epath, val, ltype, remap ? &sv->remap : &sv->s, NULL);
		free(epath);
		free(val);
		if (rc)
			return rc;
	}
	return 0;
}

/* One member of a service group at path. */
static int parse_service_key(struct parser *p, emh__svcconf *sv, const config_setting_t *m, const char *path,
			     const config_setting_t **name_cs)
{
	const char *key = config_setting_name(m);
	int rc;
	if (!emh__in_list(service_keys, key))
		return err_unknown(p, m, path, "service", service_keys);
	if (strcmp(key, "name") == 0) {
		if ((rc = cs_string(p, m, path, &sv->name)))
			return rc;
		*name_cs = m;
		const char *problem = emh__name_problem(sv->name);
		if (problem)
			return err_at(p, m, path, "'%.*s%s' is not a valid service name (%s)", EMH__SHOWN(sv->name),
				      problem);
		return 0;
	}
	if (strcmp(key, "module") == 0) {
		if ((rc = cs_string(p, m, path, &sv->module)))
			return rc;
		if (!*sv->module || strchr(sv->module, '/') || strcmp(sv->module, "..") == 0)
			return err_at(p, m, path, "'%s' is not a module name (a file stem in service_dir, without '/')",
				      sv->module);
		return 0;
	}
	return parse_service_group(p, sv, m, path, strcmp(key, "contexts") == 0);
}

static int parse_service(struct parser *p, const config_setting_t *g, int idx)
{
	char path[32];
	snprintf(path, sizeof path, "services.[%d]", idx);
	if (!config_setting_is_group(g))
		return err_at(p, g, path, "expected a group { name = ...; module = ...; }, not %s", cs_type_name(g));
	emh__svcconf *v = realloc(p->cfg->services, (p->cfg->nservices + 1) * sizeof *v);
	if (!v)
		return emh__cfg_oom(p->err);
	p->cfg->services = v;
	emh__svcconf *sv = &v[p->cfg->nservices++];
	*sv = (emh__svcconf){ 0 };
	if (!(sv->origin = cs_loc(p, g)))
		return emh__cfg_oom(p->err);
	const config_setting_t *name_cs = NULL;
	for (int i = 0; i < config_setting_length(g); i++) {
		const config_setting_t *m = config_setting_get_elem(g, (unsigned)i);
		char *mpath = emh__strf("%s.%s", path, config_setting_name(m));
		int rc = mpath ? parse_service_key(p, sv, m, mpath, &name_cs) : emh__cfg_oom(p->err);
		free(mpath);
		if (rc)
			return rc;
	}
	if (!sv->name)
		return err_at(p, g, path, "service has no 'name'");
	if (!sv->module && !(sv->module = strdup(sv->name)))
		return emh__cfg_oom(p->err);
	for (size_t i = 0; i + 1 < p->cfg->nservices; i++)
		if (strcmp(p->cfg->services[i].name, sv->name) == 0) {
			char npath[48];
			snprintf(npath, sizeof npath, "%s.name", path);
			return err_at(p, name_cs, npath, "duplicate service '%s' (first declared at %s)", sv->name,
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
		else if (strcmp(key, "max_connections") == 0)
			rc = parse_top_int(p, m, &max_connections_spec, &cfg->max_connections);
		else
			rc = err_unknown(p, m, key, "top-level", top_keys);
		if (rc)
			return rc;
	}
	return 0;
}

/* libconfig's own error: "FILE:LINE: message", or the file it could not read. */
static int err_libconfig(const config_t *lc, const char *path, emh_error *err)
{
	const char *efile = config_error_file(lc);
	if (config_error_type(lc) == CONFIG_ERR_FILE_IO)
		return emh_error_set(err, EMH_ECONFIG, "%s: cannot read the configuration file: %s", efile ? efile : path,
				     config_error_text(lc));
	char *loc = file_loc(path, efile, (unsigned)config_error_line(lc));
	int rc = loc ? emh_error_set(err, EMH_ECONFIG, "%s: %s", loc, config_error_text(lc)) : emh__cfg_oom(err);
	free(loc);
	return rc;
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
		rc = err_libconfig(&lc, path, err);
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
