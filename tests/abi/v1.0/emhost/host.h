/* SPDX-License-Identifier: MIT */
/* emhost/host.h: the host: configuration, drivers, contexts, forks. */
#ifndef EMHOST_HOST_H
#define EMHOST_HOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <emhost/entity.h>
#include <emhost/error.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct emh_host emh_host;
typedef struct emh_em emh_em;
struct emh_driver;

/* Log levels, most severe first. */
enum { EMH_LOG_ERROR = 0, EMH_LOG_WARN = 1, EMH_LOG_INFO = 2, EMH_LOG_DEBUG = 3 };

/*
 * Where log lines go.  context is the context the line concerns or NULL.
 * Called from any thread; must be thread-safe.  The default writes
 * "emhost: LEVEL [context] message" to stderr.
 */
typedef void (*emh_log_fn)(void *ud, int level, const char *context, const char *msg);

/*
 * Options for emh_host_new.  Zero-initialise and set what you need:
 *
 *   config_path   libconfig file, or NULL for none (contexts then come from
 *                 the environment only)
 *   plugin_dir    overrides the file's plugin_dir; NULL = file's, else the
 *                 compiled-in $(pkglibdir)/plugins
 *   no_plugins    load no plugin directory at all (tests with static drivers)
 *   drivers       statically registered drivers, checked like plugins
 *   envp          the environment to read (NULL-terminated "K=V"); NULL
 *                 means the process environment.  Copied during the call.
 *   log, log_ud   log sink (NULL = stderr)
 *   log_level     EMH_LOG_*; lines above it are dropped (default 0 = ERROR;
 *                 use EMH_LOG_WARN or more to see plugin refusals)
 */
typedef struct emh_host_opts {
	const char *config_path;
	const char *plugin_dir;
	bool no_plugins;
	const struct emh_driver *const *drivers;
	size_t ndrivers;
	const char *const *envp;
	emh_log_fn log;
	void *log_ud;
	int log_level;
} emh_host_opts;

/*
 * Read the configuration (file, then environment), load the driver plugins,
 * and create every context.  No connection is opened except to check each
 * context marked required = true.  On failure *out is NULL and err says
 * what and where ("FILE:LINE: message").
 * Returns 0, EMH_ECONFIG, EMH_EPLUGIN (a configured context needs a driver
 * that was refused or is missing), the connection error of a required
 * context that cannot be reached (EMH_EUNAVAILABLE when it is down;
 * EMH_ECONFIG for refused credentials or an unknown database), EMH_ENOMEM.
 */
int emh_host_new(const emh_host_opts *opts, emh_host **out, emh_error *err);

/*
 * Free the host: every fork must be closed before.  Closes every pooled
 * connection, unloads plugins.  emh_host_free(NULL) is a no-op.
 */
void emh_host_free(emh_host *h);

/*
 * Fork an entity manager on the context called name (NULL = the default
 * context).  Does no I/O: a pooled connection is taken on first use and given
 * back by emh_em_close.  The EM is used by one thread at a time.
 * Returns 0, EMH_ENOCONTEXT (the message lists the contexts), EMH_ENOMEM.
 * Thread-safe.
 */
int emh_host_fork(emh_host *h, const char *name, emh_em **out, emh_error *err);

/*
 * Register an entity in a context (NULL = default).  The entity is validated
 * (emh_entity_validate) and must outlive the host.  Registering the same
 * entity twice is a no-op; another entity on the same table is EMH_ECONFIG.
 * When the context has schema = "sync", the table and its indexes are
 * created on first use (or now, if the database is reachable).
 * Thread-safe.
 */
int emh_host_register_entity(emh_host *h, const char *name, const emh_entity *e, emh_error *err);

/*
 * Add a context at run time.  kv is a NULL-terminated list of key, value
 * strings exactly as in a config file context ("driver", "sqlite", "path",
 * "/tmp/t.db", NULL) with ${VAR} expansion applied (a "url" is applied first, so single keys
 * override it); pool keys are written
 * "pool.max".  Errors as for a configured context.  Thread-safe.
 */
int emh_host_add_context(emh_host *h, const char *name, const char *const *kv, emh_error *err);

/*
 * Remove a context at run time: new forks on it fail at once with
 * EMH_ENOCONTEXT; the call waits until every open fork on it has closed
 * (and so given its connection back), then closes its pool.  The default
 * context cannot be removed (EMH_ESTATE).  Thread-safe.
 */
int emh_host_remove_context(emh_host *h, const char *name, emh_error *err);

/*
 * Take a connection from the context's pool, ping it and give it back.
 * Returns 0 or the error of the connection (EMH_EUNAVAILABLE, EMH_ETIMEOUT,
 * ...).  Thread-safe.
 */
int emh_host_ping(emh_host *h, const char *name, emh_error *err);

/*
 * Create the tables/collections and indexes of every entity registered in
 * the context, now, whatever its schema setting (as `emhost migrate` and
 * tests do).  Returns 0 or the first failure (EMH_ESCHEMA names the table
 * and column of an incompatible existing table).  Thread-safe.
 */
int emh_host_sync_schema(emh_host *h, const char *name, emh_error *err);

/*
 * Effective value of a context setting ("host", "port", "path", "url",
 * "password" ...), unmasked, or NULL when unset: for tools and benchmarks
 * that open their own raw connection next to emhost's.  Borrowed until the
 * context is removed or the host freed.  Never log it.
 */
const char *emh_host_context_setting(emh_host *h, const char *name, const char *key);

/* Driver name of a context, or NULL when there is no such context. */
const char *emh_host_context_driver(emh_host *h, const char *name);

/* Name of the default context (borrowed, valid until the host is freed). */
const char *emh_host_default_context(const emh_host *h);

/* ---- introspection: `emhost` and the daemon's health/metrics use these ---- */

/* One effective setting of a context and where it came from. */
typedef struct emh_setting_info {
	const char *key;    /* "host", "pool.max", ... */
	const char *value;  /* "********" for secrets */
	const char *origin; /* "etc/emhost.conf:12", "env EMH_CONTEXT_X_HOST", "url", "default", "api" */
} emh_setting_info;

typedef struct emh_context_info {
	const char *name;
	const char *driver;
	bool is_default;
	bool required;
	size_t nsettings;
	const emh_setting_info *settings;
	/* pool */
	int pool_min, pool_max;
	unsigned in_use, idle, waiting;
	uint64_t acquires, acquire_wait_ns, timeouts, opened, discarded;
	unsigned forks_open;
	uint64_t queries;
	uint64_t errors[32]; /* by -code, errors[-EMH_EUNAVAILABLE] ... */
	bool up;             /* false after the last connection attempt failed */
	char last_error[EMH_ERROR_MSG_MAX];
} emh_context_info;

/*
 * Snapshot of the contexts, in configuration order.  *out is an array of
 * *n entries owned by the caller and freed with emh_context_info_free; its
 * strings stay valid until then.
 */
int emh_host_contexts(emh_host *h, emh_context_info **out, size_t *n, emh_error *err);
void emh_context_info_free(emh_context_info *infos, size_t n);

typedef struct emh_driver_info {
	const char *name;
	const char *version;
	unsigned abi_major, abi_minor;
	uint64_t caps;
	const char *file; /* the .so, or "(static)" */
} emh_driver_info;

typedef struct emh_refused_info {
	const char *file;
	const char *reason;
} emh_refused_info;

/* Loaded drivers and refused plugin files; borrowed until the host is freed. */
size_t emh_host_drivers(const emh_host *h, const emh_driver_info **out);
size_t emh_host_refused(const emh_host *h, const emh_refused_info **out);

/* Names of capability bits, "transactions,savepoints,..." into buf. */
const char *emh_caps_string(uint64_t caps, char *buf, size_t cap);

/* Log through the host's sink.  Thread-safe. */
void emh_host_log(const emh_host *h, int level, const char *context, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#ifdef __cplusplus
}
#endif
#endif
