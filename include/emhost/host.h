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
 * Called from any thread; must be thread-safe, and must not call back into
 * the host (a reload logs the plugins it loads while it holds the host's
 * lock).  The default writes "emhost: LEVEL [context] message" to stderr.
 */
typedef void (*emh_log_fn)(void *ud, int level, const char *context, const char *msg);

/*
 * Options for emh_host_new.  Zero-initialise and set what you need:
 *
 *   config_path   libconfig file, or NULL for none (contexts then come from
 *                 the environment only)
 *   plugin_dir    overrides the file's plugin_dir; NULL = file's, else
 *                 $EMH_PLUGIN_DIR of envp, else the compiled-in
 *                 $(pkglibdir)/plugins
 *   no_plugins    load no plugin directory at all (tests with static drivers)
 *   drivers       statically registered drivers, checked like plugins
 *   envp          the environment to read (NULL-terminated "K=V"); NULL
 *                 means the process environment.  Copied during the call.
 *   log, log_ud   log sink (NULL = stderr)
 *   log_level     EMH_LOG_*; lines above it are dropped (default 0 = ERROR;
 *                 use EMH_LOG_WARN or more to see plugin refusals)
 *   offline       do not ping the required contexts when the host
 *                 starts, so emh_host_new contacts no database server
 *                 (`emhost check-config --offline`); everything else is
 *                 validated as usual.  Later calls connect as always.
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
	bool offline;
} emh_host_opts;

/*
 * Read the configuration (file, then environment), load the driver plugins,
 * and create every context.  No connection is opened except to check each
 * context marked required = true (none with opts->offline).  On failure *out is NULL and err says
 * what and where ("FILE:LINE: message").
 * Returns 0, EMH_ECONFIG, EMH_EPLUGIN (a configured context needs a driver
 * that was refused or is missing), the connection error of a required
 * context that cannot be reached (EMH_EUNAVAILABLE when it is down;
 * EMH_ECONFIG for refused credentials or an unknown database), EMH_ENOMEM.
 */
int emh_host_new(const emh_host_opts *opts, emh_host **out, emh_error *err);

/*
 * Free the host: every fork must be closed before, and every services
 * object on it freed (emh_services_free, service.h): services are a layer
 * over the host and die first.  Closes every pooled connection, unloads
 * plugins.  emh_host_free(NULL) is a no-op.
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
 * How a fork reads: when its context has read replicas (docs/replicas.md),
 * and whether it may write.
 * By default a fork's reads go to a replica (round robin over the healthy
 * ones; the fork keeps the one it took), except inside a transaction, with
 * a lock, and for the rest of the fork once it wrote anything; with no
 * healthy replica they go to the primary, with no error, for the rest of the
 * fork (its reads never go back in time).
 *  flags  EMH_FORK_PRIMARY: every call on the primary.
 *         EMH_FORK_READONLY: the fork is read-only from the start, as after
 *         emh_em_set_readonly (em.h): loads keep no snapshot and do not
 *         enter the identity map (a key loaded twice is two objects),
 *         new/remove/flush and set-based writes are EMH_ESTATE.  The fast
 *         path for a request that only reads.
 *         EMH_FORK_NOWAIT: the fork never waits for a connection of its
 *         primary: where it would wait (the pool at its max, or the host's
 *         budget full, and nothing idle), the call fails at once with
 *         EMH_ETIMEOUT, retryable, saying so.  For a caller that must not
 *         block (emhostd's I/O threads), which then hands the work to a
 *         thread that may wait (emh_scope_would_wait).
 *  after  a token of emh_em_token (another fork's flush, maybe another
 *         process's): reads go to a replica only once it has replayed past
 *         that position, else to the primary.  NULL or "": none.  Copied.
 * Members are only ever appended; a flag says when one is meant.
 */
enum { EMH_FORK_PRIMARY = 1u << 0, EMH_FORK_READONLY = 1u << 1, EMH_FORK_NOWAIT = 1u << 2 };
typedef struct emh_fork_opts {
	unsigned flags;
	const char *after;
} emh_fork_opts;
/* emh_host_fork with opts (NULL: as emh_host_fork).  EMH_EINVAL for unknown flags. */
int emh_host_fork_opts(emh_host *h, const char *name, const emh_fork_opts *opts, emh_em **out, emh_error *err);

/*
 * Register an entity in a context (NULL = default).  The entity is validated
 * (emh_entity_validate) and copied: the context keeps its own deep copy
 * (names, table, fields, indexes) and drivers and forks use that, so *e may
 * go away after the call.  Its address stays a key: emh_em_repo(em, e) and
 * emh_em_new(em, e) find the entity by it, as by the host's copy
 * (emh_host_entity); the address is only compared, never read again.
 * Registering the same entity twice is a no-op; a structurally identical
 * declaration at another address (two modules compiled with the same one)
 * adds that address as another key of the same entity; another entity on
 * the same table is EMH_ECONFIG.  When the context has schema = "sync", the
 * table and its indexes are created on first use (or now, if the database
 * is reachable).  Thread-safe.
 */
int emh_host_register_entity(emh_host *h, const char *name, const emh_entity *e, emh_error *err);

/*
 * The host's copy of the entity registered on table in the context (NULL =
 * default), into *out: borrowed until the context is removed or the host
 * freed, and accepted wherever that context asks for an entity.  Returns 0,
 * EMH_ENOCONTEXT, EMH_ENOENTITY (the message lists the tables).  Thread-safe.
 */
int emh_host_entity(emh_host *h, const char *name, const char *table, const emh_entity **out,
		    emh_error *err);

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
 * (and so given its connection back; the last one to close wakes it), then
 * closes its pool.  The default context cannot be removed (EMH_ESTATE).
 * Never call it while holding a fork of that context.  Thread-safe.
 */
int emh_host_remove_context(emh_host *h, const char *name, emh_error *err);

/*
 * Options for emh_host_reload.  Zero-initialise:
 *
 *   envp    the environment to read now ("K=V", NULL-terminated); NULL
 *           means the process environment.  Copied during the call.
 *   pinned  "context", "who", ..., NULL: contexts something outside the
 *           host relies on (emhostd passes each service's contexts as
 *           "service 'users'"); a reload that would remove one is refused,
 *           naming who uses it.
 */
typedef struct emh_reload_opts {
	const char *const *envp;
	const char *const *pinned;
} emh_reload_opts;

/*
 * Read the host's configuration file and the environment again and apply
 * the difference to the running host:
 *
 *   - contexts new in the configuration are created (a required one is
 *     pinged first) and added;
 *   - contexts gone from it are removed: new forks on them fail with
 *     EMH_ENOCONTEXT at once, the call waits for the forks still open on
 *     them (as emh_host_remove_context); contexts added through
 *     emh_host_add_context are not the file's and stay;
 *   - changed pool.* settings apply to the live pools, the read replicas'
 *     too (a larger max serves waiting forks at once; connections above a
 *     smaller max are closed when idle), and so do a replica's own
 *     replicas.N.pool.* values and max_replica_lag_ms;
 *   - driver plugins dropped into the plugin directory since start are
 *     loaded (a file refused before is tried again).
 *
 * Everything else is refused with nothing changed, and so is a
 * configuration with an error: a context's driver or connection settings
 * (any key but those above), its replicas (their list, URLs and keys, a
 * replicas.N.pool.* key set or unset), the default context, removing a
 * pinned or the default context.  A refused reload keeps only the drivers it loaded.
 * Services and the server section are not reloaded (a change to them is
 * logged as applying at the next start).  Forks open during the reload are
 * never failed by it.  The outcome is logged ("reload: added contexts a,
 * b; removed c; pool of d: max 8 -> 16; drivers loaded: memdoc", or
 * "reload refused, ...: <why>"), and summary (cap bytes, may be NULL) gets
 * the same line after "reload: " on success (empty when memory ran out for
 * it: the reload still applied).
 *
 * Returns 0, EMH_ECONFIG (the file, or a change that cannot apply live),
 * EMH_EPLUGIN (a new context names a driver that is not loaded), the
 * connection error of a new required context, EMH_ENOMEM.  Thread-safe;
 * reloads run one at a time.  Never call it while holding a fork of a
 * context it removes.
 */
int emh_host_reload(emh_host *h, const emh_reload_opts *opts, char *summary, size_t cap, emh_error *err);

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
 * Drop the table or collection of every entity registered in the context,
 * rows and all: the driver's drop member when it has one, else (SQL
 * drivers) DROP TABLE IF EXISTS with the table quoted by the dialect.  The
 * entities stay registered and count as not synced, so with schema = "sync"
 * the next fork that takes a connection creates the tables again
 * (emh_host_sync_schema does it at once).  For tests and tools: run it while
 * no fork uses those tables.  Returns 0, EMH_ENOCONTEXT, EMH_EUNSUPPORTED (a
 * driver with neither drop nor a dialect), or the first failure, naming the
 * table.  Thread-safe.
 */
int emh_host_drop_schema(emh_host *h, const char *name, emh_error *err);

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

/*
 * The read replicas of every context (docs/replicas.md), one entry each, in
 * configuration order.  Plain values only: the array is one malloc'd block,
 * freed with free().  emh_context_info keeps its size: replicas are here.
 */
typedef struct emh_replica_info {
	char context[64];
	unsigned index;        /* 1-based: replicas.N.*, then replica_urls in order */
	char where[256];       /* its URL with passwords masked, or host:port */
	bool up;               /* false while skipped after a failure (back-off) */
	bool lagging;          /* its measured lag is above max_replica_lag_ms */
	int64_t lag_ms;        /* last measured lag, -1 when never measured (or the driver cannot tell),
	                          INT64_MAX (EMH_LAG_INFINITE) while its replication is stopped or its lag
	                          cannot be measured */
	uint64_t queries;      /* reads it answered */
	uint64_t errors;       /* calls on it that failed */
	uint64_t fallbacks;    /* reads sent to the primary because it failed or had no connection free */
	uint64_t stale;        /* forks whose token it had not replayed yet (they read the primary) */
	unsigned in_use, idle; /* its pool */
	char last_error[EMH_ERROR_MSG_MAX];
} emh_replica_info;
int emh_host_replicas(emh_host *h, emh_replica_info **out, size_t *n, emh_error *err);

/*
 * The host's connection budget (docs/configuration.md, "Many tenants").
 * Every connection of every context counts once against max_connections
 * and, at what its driver says one holds (a SQLite file in WAL mode 3, a
 * socket 1, an in-memory database 0), against the file descriptors
 * RLIMIT_NOFILE leaves connections.  A context's own open/idle/in-use
 * counts are in emh_context_info (open = in_use + idle).
 */
typedef struct emh_budget_info {
	unsigned max_connections; /* the limit: max_connections, EMH_MAX_CONNECTIONS, else max_fds */
	unsigned connections;     /* open (or being opened or closed) over every context */
	unsigned max_fds;         /* descriptors connections may hold, from RLIMIT_NOFILE */
	unsigned fds;             /* what the connections above hold */
	unsigned idle;            /* of the connections, idle: closed first when room is needed */
	unsigned waiting;         /* acquires waiting for room right now */
	long long nofile;         /* RLIMIT_NOFILE soft limit when the host started, -1 unlimited */
	uint64_t evicted;         /* idle connections closed to make room for another context's */
	uint64_t reaped;          /* idle connections closed after pool.idle_timeout_ms */
	uint64_t waits;           /* acquires that waited for room */
	uint64_t timeouts;        /* of those, acquires that gave up (EMH_ETIMEOUT) */
	char origin[128];         /* of max_connections: "FILE:LINE", "env EMH_MAX_CONNECTIONS", "default" */
} emh_budget_info;

/*
 * Snapshot of the host's connection budget into *out.  size is sizeof *out
 * as the caller was compiled: the struct may grow, and members past size are
 * neither written nor read.  Returns 0, or EMH_EINVAL for a NULL argument.
 * Thread-safe.
 */
int emh_host_budget(emh_host *h, emh_budget_info *out, size_t size);

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

/* Loaded drivers and refused plugin files; borrowed until the host is freed
 * (a reload that loads a driver makes a new array; the old one stays valid). */
size_t emh_host_drivers(const emh_host *h, const emh_driver_info **out);
size_t emh_host_refused(const emh_host *h, const emh_refused_info **out);

/*
 * How long one operation took in one context: a histogram of every
 * database call a fork sent, as /_emhost/metrics shows it
 * (emhost_query_duration_seconds).  op is "get", "find", "count",
 * "insert", "update", "delete", "upsert", "execute" (raw SQL), "sync"
 * (schema), "begin", "commit", "rollback" (savepoints included) or
 * "aggregate".
 */
typedef struct emh_query_stats {
	const char *context;
	const char *op;
	uint64_t count;             /* calls */
	double sum_seconds;         /* their total duration */
	size_t nbuckets;
	const double *le;           /* nbuckets upper bounds in seconds, ascending */
	const uint64_t *cumulative; /* cumulative[i]: calls that took at most le[i] seconds */
} emh_query_stats;

/*
 * Snapshot of the query durations: one entry per context and operation
 * that has run at least once, in configuration order.  *out is owned by the
 * caller (one block with its strings), freed with emh_query_stats_free.
 * Counting costs the calls a few relaxed atomic adds; reading takes the
 * host's read lock.  Returns 0 or EMH_ENOMEM.  Thread-safe.
 */
int emh_host_query_stats(emh_host *h, emh_query_stats **out, size_t *n, emh_error *err);
void emh_query_stats_free(emh_query_stats *stats);

/*
 * One plugin file's verdict from emh_host_probe_plugins: driver is what
 * emh_host_drivers would list for it (it loads), or NULL and refused says
 * why it was refused, or how the process that loaded it ended ("its process
 * was killed by signal 11 (Segmentation fault) while loading: ...").  file
 * is the plugin's path, or the directory's when the whole directory is
 * refused.  Everything is borrowed for the call.
 */
typedef void (*emh_probe_fn)(void *ud, const char *file, const emh_driver_info *driver, const char *refused);

/*
 * Check the driver plugins emh_host_new(opts) would load (the same
 * directory: opts->plugin_dir, the file's plugin_dir, $EMH_PLUGIN_DIR, the
 * compiled-in one), each in a process of its own: the child loads the file
 * with every check of the loader and reports over a pipe.  A plugin's
 * constructors run inside dlopen, before any check of its descriptor can
 * happen; a plugin that crashes or exits there, or never returns (10 s), is
 * reported as that file's refusal instead of ending the caller.  fn gets
 * every *.so file in name order.  Log lines (the children's too) go to
 * opts->log.  Only config_path, plugin_dir, no_plugins, envp and the log
 * options are used; no context is created.
 * Forks: for tools (`emhost plugins --probe`), not for a process running
 * threads that hold locks.  Returns 0, or EMH_ECONFIG / EMH_ENOMEM when the
 * configuration file cannot be read.
 */
int emh_host_probe_plugins(const emh_host_opts *opts, emh_probe_fn fn, void *ud, emh_error *err);

/* Names of capability bits, "transactions,savepoints,..." into buf. */
const char *emh_caps_string(uint64_t caps, char *buf, size_t cap);

/* Log through the host's sink.  Thread-safe. */
void emh_host_log(const emh_host *h, int level, const char *context, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#ifdef __cplusplus
}
#endif
#endif
