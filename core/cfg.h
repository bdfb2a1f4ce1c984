/* SPDX-License-Identifier: MIT */
/*
 * core/cfg.h: the configuration model (internal).  libconfig is parsed in
 * cfg_file.c only; its types never leave it.  Every value is kept as a string
 * with its origin ("etc/emhost.conf:12", "env EMH_CONTEXT_PG_HOST", "url",
 * "api", "default") so that `emhost check-config` can say where it came from.
 */
#ifndef EMH_CORE_CONFIG_H
#define EMH_CORE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include <emhost/driver.h>
#include <emhost/error.h>

/* One setting of a context, service or server section. */
typedef struct emh__setting {
	char *key;    /* "host", "pool.max", "password" */
	char *value;  /* string form; bools are "true"/"false" */
	char *origin; /* "FILE:LINE", "env NAME", "url (env NAME)", "api", "default" */
	char *path;   /* config path for errors: "contexts.[1].port"; NULL outside the file */
	int ltype;    /* EMH_PARAM_* kind the value had in the file, 0 for env/url strings */
	bool secret;  /* never printed: password, or a URL with userinfo or a password */
	char *shown;  /* a secret's printable form (a URL with its passwords masked); NULL: "********" */
} emh__setting;

typedef struct emh__settings {
	emh__setting *v;
	size_t n, cap;
} emh__settings;

typedef struct emh__ctxconf {
	char *name;
	char *origin; /* where the context was declared */
	emh__settings s; /* includes "driver", "url", "required", "schema", "pool.*" ... */
} emh__ctxconf;

typedef struct emh__svcconf {
	char *name;   /* the service's name in this host */
	char *module; /* module file stem in service_dir (default: name) */
	char *origin;
	emh__settings remap; /* key = context name the module declares, value = context here */
	emh__settings s;     /* other settings of the service, passed to it */
} emh__svcconf;

typedef struct emh__config {
	char *path;                 /* the file, or NULL */
	emh__setting plugin_dir;    /* value NULL when unset */
	emh__setting default_context;
	emh__setting service_dir;
	emh__setting log_level;
	emh__setting max_connections; /* the host's connection budget; value NULL: derived from RLIMIT_NOFILE */
	emh__settings server;       /* "listen", "threads", "max_body", "shutdown_timeout_ms" */
	emh__ctxconf *contexts;
	size_t ncontexts;
	emh__svcconf *services;
	size_t nservices;
} emh__config;

/* Keys every context accepts whatever its driver, { NULL } terminated. */
extern const emh_param_spec emh__common_context_keys[];

/*
 * Parse the file at path (NULL = start empty) into cfg, with ${VAR} and
 * ${VAR:-fallback} expanded from envp in every string.  Rejects: libconfig
 * syntax errors ("FILE:LINE: message"), unknown top-level, server, pool and
 * service keys (listing the valid ones), wrong types of known keys, duplicate
 * context names (naming both places), a context without a name, a missing
 * variable without fallback (naming it and FILE:LINE).  Context keys that a
 * driver may accept are kept for emh__config_check_context.
 * Returns 0 or EMH_ECONFIG / EMH_ENOMEM; on failure cfg is released.
 */
int emh__config_parse(emh__config *cfg, const char *path, const char *const *envp, emh_error *err);

/*
 * Apply the environment: EMH_MAX_CONNECTIONS over the file's max_connections,
 * EMH_CONTEXT_<NAME>_<KEY>=value (NAME is the context
 * name upper-cased; KEY a context key upper-cased with '.' as '_', e.g.
 * POOL_MAX; NAME/KEY split by matching known context names and known keys of
 * the common set and of every driver given), EMH_CONTEXT_<NAME>_URL (whole
 * connection as a URL, sets driver from the scheme), new contexts for names
 * not in the file that get a driver or URL, and EMH_DEFAULT_CONTEXT.
 * An environment variable setting a key of a context that then has no
 * driver is EMH_ECONFIG naming the variable.
 */
int emh__config_apply_env(emh__config *cfg, const char *const *envp,
			  const emh_driver *const *drivers, size_t ndrivers, emh_error *err);

/*
 * Apply a connection URL to c (origin as given, e.g. "url (env X)", "api"):
 * the scheme picks the driver that declares it in url_schemes (unknown:
 * EMH_ECONFIG listing the loaded drivers' schemes), and its url_form says
 * how the rest is read:
 *   EMH_URL_FILE     scheme:///abs, scheme://rel, scheme::memory: -> path
 *   EMH_URL_NETWORK  user:password@host:port/database?key=value -> user,
 *                    password (secret), host, port, database, each query key
 *   EMH_URL_WHOLE    nothing split: the driver reads "url" itself
 * Percent-escapes are decoded; the userinfo ends at the last '@' before the
 * query.  The URL is kept as "url", secret when it has userinfo or a
 * password, shown with its passwords masked.  It replaces the connection
 * keys c had (driver, url, host, port, user, database, path, the password
 * keys when it carries a password, the keys a whole URL's query names).
 * Errors never echo the URL.
 */
int emh__url_apply(emh__ctxconf *c, const char *url, const char *origin,
		   const emh_driver *const *drivers, size_t ndrivers, emh_error *err);

/*
 * Check a context against its driver: every key known (common or the
 * driver's; unknown ones are EMH_ECONFIG listing the valid keys), kinds
 * right ("FILE:LINE: contexts.[1].port: expected integer"), password and
 * password_env not both, password_env's variable present (resolved into a
 * secret "password" setting, origin "env VAR").  envp as for parse.
 */
int emh__config_check_context(emh__ctxconf *c, const emh_driver *d, const char *const *envp,
			      emh_error *err);

/*
 * A replica's own key "replicas.N.KEY" (N >= 1): KEY, with *n = N; NULL for
 * any other key.  KEY must be one a replica may set (connection keys, the
 * password keys, pool.*, timeouts, the driver's own): *ok says whether it is.
 */
const char *emh__replica_key(const char *key, unsigned *n, bool *ok);

/* Lookup helpers: the setting / value of key, NULL when absent. */
const emh__setting *emh__settings_find(const emh__settings *s, const char *key);
const char *emh__ctxconf_get(const emh__ctxconf *c, const char *key);
/*
 * What to print for st wherever settings are shown (emh_host_contexts,
 * check-config): the value, or for a secret its masked form.  Borrowed from st.
 */
const char *emh__setting_shown(const emh__setting *st);
/* Add or replace key (copies everything).  Returns 0 or EMH_ENOMEM. */
int emh__settings_set(emh__settings *s, const char *key, const char *value, const char *origin,
		      const char *path, int ltype, bool secret);
/* Set the printable form of the secret key (copied); 0, or EMH_ENOMEM, or EMH_EINVAL when key is absent. */
int emh__settings_set_shown(emh__settings *s, const char *key, const char *shown);
void emh__settings_release(emh__settings *s);
void emh__ctxconf_release(emh__ctxconf *c);
void emh__config_release(emh__config *cfg);

/*
 * ${VAR} / ${VAR:-fallback} / $$ expansion of s into a malloc'd *out; where
 * ("api", "FILE:LINE: path") starts every error (a missing variable, bad
 * syntax, fallbacks nested more than 16 deep).  Linear in the length of s.
 */
int emh__config_expand(const char *s, const char *const *envp, const char *where, char **out, emh_error *err);
/* emh__config_expand for a value given to emh_host_add_context: errors say "api: context 'CTX', key 'KEY'". */
int emh__config_expand_api(const char *s, const char *const *envp, const char *ctx, const char *key, char **out,
			   emh_error *err);

/* Levenshtein distance, for "did you mean" hints (keys, modules); 64 or more for long strings. */
size_t emh__edit_distance(const char *a, const char *b);

/* Look up NAME in envp (NULL = process environment). */
const char *emh__getenv(const char *const *envp, const char *name);

#endif
