/* SPDX-License-Identifier: MIT */
/* core/internal.h: structures shared by the core's files (never installed). */
#ifndef EMH_CORE_INTERNAL_H
#define EMH_CORE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <emhost/buf.h>
#include <emhost/driver.h>
#include <emhost/em.h>
#include <emhost/host.h>
#include <emhost/sql.h>

#include "arena.h"
#include "cfg.h"
#include "qlog.h"

#define EMH__ERRKINDS 32
/* Bytes of large arena blocks a host keeps for its next forks (arena.h,
 * emh__blockcache): a read of ~100,000 rows at a time reuses its memory
 * instead of having malloc trim it and fault it in again. */
#define EMH__HOST_BLOCK_CACHE ((size_t)32 << 20)

static inline int64_t emh__now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* A few milliseconds coarse and several times cheaper: for idle and lifetime
 * bookkeeping on the pool's fast path, where milliseconds do not matter. */
static inline int64_t emh__coarse_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* error.c */
int emh__error_in_context(emh_error *err, int code, const char *name);
/* snprintf for messages, which are bounded: a longer one is cut, on purpose,
 * at a UTF-8 character boundary. */
void emh__msgf(char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- logging ---- */
typedef struct emh__logger {
	emh_log_fn fn;
	void *ud;
	int level;
} emh__logger;
void emh__log(const emh__logger *lg, int level, const char *context, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
void emh__log_stderr(void *ud, int level, const char *context, const char *msg);

/* ---- params handed to drivers ---- */
struct emh_params {
	const char *context;
	const char *instance;
	const emh__settings *settings;
	const emh__logger *log;
};

/* ---- loaded drivers ---- */
typedef struct emh__driver {
	emh_driver d;   /* zero-extended local copy; d.params points at params */
	void *dl;       /* dlopen handle, NULL for static */
	char *file;
	emh_param_spec *params; /* the plugin's key specs, each zero-extended to this ABI, { NULL } ended */
	emh_sql_dialect *dialect; /* d.dialect's zero-extended copy (SQL drivers), else NULL */
} emh__driver;

/* ---- pool ---- */
typedef struct emh__pool emh__pool;

/* A pooled connection.  Its links and times are the host budget's (under its mu). */
typedef struct emh__pconn {
	emh_conn *conn;
	emh__pool *pool;
	struct emh__pconn *next, *prev;         /* the pool's idle list, most recently used first */
	struct emh__pconn *lru_next, *lru_prev; /* the host's idle list, longest idle first */
	int64_t created_ns;
	int64_t idle_since_ns;
	uint32_t epoch;
	bool suspect; /* ping before reuse */
	bool fresh;   /* opened for this acquire */
} emh__pconn;

/*
 * The host's connection budget: every connection of every context counts
 * against max_conns and, at what its driver says it costs, against max_fds
 * (a share of RLIMIT_NOFILE).  One mutex guards the budget and the
 * connection state of every pool of the host (idle lists, counts), so that
 * making room -- closing the longest-idle connection of any context -- is
 * O(1) and needs no lock order between pools.  Connections are opened and
 * closed outside it.  Counts include connections being opened or closed, so
 * they never understate the descriptors in use.
 */
typedef struct emh__budget {
	pthread_mutex_t mu;
	pthread_cond_t cv;            /* acquires waiting for room */
	unsigned max_conns, max_fds;
	unsigned conns, fds;          /* open, being opened or being closed */
	unsigned idle_conns, idle_fds; /* of which idle (in the LRU), so could be closed for room */
	unsigned waiting;
	emh__pconn *lru_head, *lru_tail;
	int64_t min_idle_timeout_ns;  /* smallest idle timeout of any pool (a lower bound), INT64_MAX: none */
	/* the reaper: one thread, started with the first idle connection */
	pthread_cond_t reap_cv;
	pthread_t reaper;
	bool reaper_started, reaper_running, reaper_stop;
	/* when the reaper wakes next (INT64_MAX: when told); written under mu,
	 * read without it by a release deciding whether it may park (pool.c) */
	_Atomic int64_t reap_at;
	struct emh__pool *pools;      /* every pool of the host, through bnext (the parks to drain) */
	_Atomic bool park_ok;         /* no budget waiter, not above max_conns: releases may park */
	long long nofile;             /* RLIMIT_NOFILE soft limit read at start (-1: unlimited) */
	const char *origin;           /* where max_conns came from (borrowed from the host) */
	const emh__logger *log;
	_Atomic uint64_t evicted, reaped, waits, timeouts;
} emh__budget;

/* An empty budget; max_fds (and max_conns, until set) from RLIMIT_NOFILE (docs/configuration.md "Many tenants"). */
void emh__budget_init(emh__budget *b, const emh__logger *log);
/*
 * max_conns from the setting (value NULL: as many as max_fds); EMH_ECONFIG
 * for a value out of range.  At start, or on a reload: idle connections
 * above a lowered max are closed at once, those in use when given back.
 * The setting's origin is borrowed until the host is freed.
 */
int emh__budget_set_max(emh__budget *b, const emh__setting *max_connections, emh_error *err);
/* Idle connections of every pool, parked ones included.  Budget's mu held. */
unsigned emh__budget_idle(const emh__budget *b);
/* Stop the reaper.  Before the pools go: it walks them. */
void emh__budget_stop(emh__budget *b);
/* After every pool is destroyed. */
void emh__budget_destroy(emh__budget *b);

struct emh__pool {
	pthread_mutex_t mu; /* up, last_error */
	pthread_cond_t cv;  /* acquires waiting for a connection of this pool (with the budget's mu) */
	emh__budget *b;
	/* under b->mu: */
	emh__pconn *idle;
	unsigned nidle, in_use, total, waiting, budget_waiting;
	/* nidle again, stored (relaxed) wherever the idle list changes and read
	 * without the lock by emh__pool_idle_now, a hint that reserves nothing:
	 * the daemon's I/O threads ask it per request and would contend on b->mu */
	_Atomic unsigned idle_hint;
	unsigned closing;   /* taken out to be closed, not closed yet (destroy waits for 0) */
	bool destroying;
	_Atomic uint32_t epoch; /* written under b->mu; read without it by an acquire from the park */
	struct emh__pool *bnext, *bprev; /* the budget's list of pools */
	/*
	 * The park (pool.c): one connection given back in good order, taken by
	 * the next acquire without b->mu.  It counts as in use (in_use), is on
	 * no idle list, and goes onto them under b->mu whenever anyone needs it
	 * idle.  park_ok (written under b->mu) says a release may park now; the
	 * park_* limits are the pool.* limits as the lock-free paths read them.
	 */
	emh__pconn *_Atomic park;
	_Atomic bool park_ok;
	_Atomic int64_t park_idle_ns; /* older idle than this: the locked path (which pings or closes it) */
	_Atomic int64_t park_life_ns; /* max_lifetime_ns (0: none) */
	_Atomic int64_t park_reap_ns; /* idle_timeout_ns (INT64_MAX: none): the reaper must wake before */
	/* the pool.* limits, under b->mu too (a reload changes them): */
	int min, max;
	int64_t acquire_timeout_ns, idle_timeout_ns, max_lifetime_ns;
	/* fixed at init: */
	unsigned cost;      /* file descriptors of one connection */
	const emh__driver *drv;
	emh_dctx *dctx;
	const emh_params *params;
	const char *ctxname;
	/* under mu: */
	bool up;
	char last_error[EMH_ERROR_MSG_MAX];
	_Atomic uint64_t acquires, wait_ns, timeouts, opened, discarded;
};

int emh__pool_init(emh__pool *p, emh__budget *b, const emh__driver *drv, emh_dctx *dctx,
		   const emh_params *params, const emh__ctxconf *conf, emh_error *err);
int emh__pool_acquire(emh__pool *p, emh__pconn **out, emh_error *err);
/* emh__pool_acquire that never waits: EMH__POOL_FULL (not an error, nothing
 * recorded) when no connection is idle and none may be opened now. */
#define EMH__POOL_FULL 1
int emh__pool_try_acquire(emh__pool *p, emh__pconn **out, emh_error *err);
/* status: 0 fine; EMH_EUNAVAILABLE: discard it and the idle ones; EMH_ETIMEOUT: discard it;
 * other error: ping before reuse. */
void emh__pool_release(emh__pool *p, emh__pconn *pc, int status);
/* Whether an idle (or parked) connection is in p at this instant (nothing taken; another thread may take it first). */
bool emh__pool_idle_now(emh__pool *p);
/* Record the context as up (e NULL: last_error cleared) or down with e's message, for health;
 * EMH_ETIMEOUT keeps the message but does not mark it down. */
void emh__pool_note(emh__pool *p, const emh_error *e);
/* Connections in use and idle, as health shows them (a parked one is idle).  Budget's mu held. */
void emh__pool_counts(const emh__pool *p, unsigned *in_use, unsigned *idle);
/* Close every idle connection and wait for those that other threads are closing; none may be in use. */
void emh__pool_destroy(emh__pool *p);
/*
 * Apply conf's pool.* settings to a pool in use (a reload), under the
 * budget's mutex: waiters see a larger max at once; idle connections above
 * a smaller max are closed now, connections in use above it when they are
 * given back; the reaper looks again for a new idle timeout.  Returns 0 or
 * EMH_ECONFIG (0 <= min <= max, max >= 1), leaving the pool as it was.
 */
int emh__pool_configure(emh__pool *p, const emh__ctxconf *conf, emh_error *err);

/* ---- read replicas of a context (replica.c) ---- */

/* A replica's state for routing (emh__replica.state) */
enum { EMH__REP_UP = 0, EMH__REP_DOWN = 1, EMH__REP_LAGGING = 2 };

/*
 * One read replica of a context: its own settings (the context's, with the
 * replica's URL and keys over them), driver state and pool (within the
 * host's budget).  Health is lock-free: a failure sets down_until (back-off
 * doubling from 1 s to 30 s), a success clears it.
 */
typedef struct emh__replica {
	struct emh_context *ctx;
	unsigned index;          /* 1-based, as in replicas.N.* */
	emh__ctxconf conf;
	struct emh_params params;
	char instance[160];
	emh_dctx *dctx;
	emh__pool pool;
	char shown[256];         /* where it is, secrets masked ("url" or host:port) */
	_Atomic int64_t down_until_ns; /* skipped until then (0: up) */
	_Atomic unsigned fails;        /* consecutive failures, for the back-off */
	_Atomic int64_t lag_ms;        /* last measured lag, -1 unknown */
	_Atomic int64_t lag_at_ns;     /* when it was measured (0: never) */
	_Atomic int64_t lag_warned_ns; /* when "its lag cannot be measured" was last logged (0: it can be) */
	_Atomic uint64_t queries, errors, fallbacks, stale; /* stale: forks whose token it had not replayed */
} emh__replica;

/* Build and open the replicas the context's settings list (replicas.N.*, replica_urls). */
int emh__replicas_open(struct emh_context *c, emh_error *err);
/*
 * For a reload: replica r's settings as the context's new configuration
 * conf makes them (its URL and replicas.N.* keys from conf), checked, into
 * out (zeroed by the caller; emh__ctxconf_release it).
 */
int emh__replica_conf(struct emh_context *c, const emh__ctxconf *conf, const emh__replica *r, emh__ctxconf *out,
		      emh_error *err);
/* Destroy their pools and driver state (no fork may use them). */
void emh__replicas_close(struct emh_context *c);
/* The next healthy replica, round robin; NULL when none (the primary then serves). */
emh__replica *emh__replica_pick(struct emh_context *c);
/* After a call on r: 0 clears its back-off; EMH_EUNAVAILABLE/EMH_ETIMEOUT marks it down for one. */
void emh__replica_note(emh__replica *r, int rc, const emh_error *err);

/* ---- entities (entity.c) ---- */

/*
 * A deep copy of a valid entity (names, table, fields with their names and
 * columns, indexes with their field-name lists) in one malloc'd block, freed
 * with free().  NULL on out of memory.
 */
emh_entity *emh__entity_dup(const emh_entity *e);
/* Same structure (names, table, size, column fields, indexes), wherever each
 * lives; relation fields are not compared (they are merged per table). */
bool emh__entity_same(const emh_entity *a, const emh_entity *b);
/* A fingerprint of what emh__entity_same compares: equal for a declaration and its copy. */
uint64_t emh__entity_print(const emh_entity *e);
/* A declaration's relation zero-extended to this version (valid declarations only). */
void emh__relation_read(const emh_relation *src, emh_relation *out);
/* Index of the column field name of a declaration or copy (relations skipped), or -1. */
int emh__entity_column(const emh_entity *e, const char *name);
/*
 * emh_entity_field_index's body, inline: the query builder looks a field up
 * on every call.  Field names are short identifiers, compared here byte by
 * byte, cheaper than a call to strcmp per field.  e not NULL.
 */
static inline int emh__field_index(const emh_entity *e, const char *name)
{
	if (!name)
		return -1;
	for (size_t i = 0; i < e->nfields; i++) {
		const char *a = e->fields[i].name, *b = name;
		while (*a && *a == *b)
			a++, b++;
		if (*a == *b)
			return (int)i;
	}
	return -1;
}
/* The primary key field of a declaration or copy, or NULL. */
const emh_field *emh__entity_pk(const emh_entity *e);

/* ---- entity metadata registered in a context (meta.c) ---- */
typedef struct emh__stmtcache emh__stmtcache;
struct emh__rel;

/*
 * A caller's pointer an entity was registered with: only ever compared,
 * never dereferenced, so the memory behind it may go away (a service module
 * unloaded).  Nodes are linked once and freed with their meta; a forgotten
 * key is set to NULL (readers walk the list without a lock) and the node is
 * reused by a later registration.
 */
typedef struct emh__meta_key {
	const emh_entity *_Atomic key;
	unsigned holds;              /* registrations holding it; under the context's mu */
	struct emh__meta_key *next;  /* set before the node is published, then fixed */
} emh__meta_key;

typedef struct emh__meta {
	emh_meta pub; /* first: drivers get &pub; pub.entity is the host's copy */
	struct emh_context *ctx;
	struct emh__meta *next;
	emh__meta_key *_Atomic keys;
	size_t obj_size;          /* header + struct, rounded */
	uint64_t nullable_scalars; /* bit i: field i is a nullable scalar */
	int version;              /* index of the EMH_F_VERSION field, or -1 */
	uint64_t filters;          /* bit i: field i is an EMH_F_FILTER field */
	_Atomic int synced;
	pthread_mutex_t sync_mu;
	/* SQL drivers: statements compiled at registration */
	emh_stmt *st_get, *st_insert, *st_delete, *st_count_all, *st_select_all;
	emh_stmt *st_upsert; /* NULL when the dialect cannot upsert this entity */
	emh__stmtcache *cache; /* update masks and query shapes */
	/* relations (relation.c): every registration's, merged; append-only,
	 * published like keys; nrels and additions under the context's mu */
	struct emh__rel *_Atomic rels;
	unsigned nrels;
	_Atomic unsigned rel_flags; /* EMH_REL_* of its relations: a flush tests it */
	uint64_t print;             /* structure fingerprint of the copy: how relations find it */
} emh__meta;

/* The meta of e in c, found by the host's copy or by a registration key; NULL when none.  Lock-free. */
emh__meta *emh__context_meta(struct emh_context *c, const emh_entity *e);
/*
 * emh_host_register_entity, also giving the host's copy (*copy, may be NULL):
 * what the service layer keeps instead of the module's pointer.
 */
int emh__meta_register(emh_host *h, const char *name, const emh_entity *e, const emh_entity **copy,
		       emh_error *err);
/*
 * Release one registration of key in context name: once none holds it, the
 * key no longer finds the meta, so memory later mapped at that address can
 * never match.  The meta and its copy stay (the context may still use them).
 * For the service layer when it unloads a module.  No-op for unknown names.
 */
void emh__meta_forget(emh_host *h, const char *name, const emh_entity *key);
/* Sync one entity's schema on conn (once per context unless forced). */
int emh__meta_sync(emh__meta *m, emh_conn *conn, bool force, emh_error *err);
/* Free a meta of a context being freed. */
void emh__meta_free(emh__meta *m);

/* ---- contexts (context.c) ---- */

/* In emh__ctxhot.refs: the context is being removed; no reference is taken after it is set. */
#define EMH__CTX_REMOVING 0x80000000u
/*
 * In emh__ctxhot.refs: not yet taken by a lookup under the host's lock (so
 * possibly not yet in the table for good: a reload inserts and may take out
 * again under one hold of the write lock), or the hot part is free.  A
 * lookup without the lock takes no reference while it or REMOVING is set;
 * the first lookup under the lock clears it (context.c).
 */
#define EMH__CTX_HIDDEN 0x40000000u

/* Every EMH_FORK_* flag this host knows (emh_host_fork_opts, emh_scope_fork_opts). */
#define EMH__FORK_FLAGS ((unsigned)(EMH_FORK_PRIMARY | EMH_FORK_READONLY | EMH_FORK_NOWAIT))

/*
 * What a fork and its close touch of a context, and nothing else: 64 bytes,
 * allocated from the host's slab (context.c), so that the contexts a fork
 * may pick lie on few pages (a context itself is kilobytes, between its
 * pool's and driver's allocations: ten thousand of them cover more pages
 * than the TLB maps).  Its life is the context's.
 */
typedef struct emh__ctxhot {
	_Alignas(64) uint64_t hash; /* of the name, for the host's table */
	/*
	 * Open forks (and lookups in flight), with EMH__CTX_REMOVING once removal
	 * began: one word, so exactly one emh__context_put sees the last
	 * reference of a context being removed, and that one wakes the remover.
	 * EMH__CTX_HIDDEN until a lookup under the host's lock took it.  Only
	 * ever written atomically, even when the hot part is reused.
	 */
	_Atomic unsigned refs;
	_Atomic unsigned forks_open;
	char *_Atomic refusal; /* why forks are refused (migrations, schema check), or NULL; set once */
	union {
		struct emh_context *ctx; /* the context (while allocated) */
		struct emh__ctxhot *next_free; /* in the slab's free list */
	};
	/* the name's first 32 bytes, NUL-padded: a name of 32 bytes or more is
	 * not terminated here, its tail is compared in the context's copy */
	char name[32];
} emh__ctxhot;
_Static_assert(sizeof(emh__ctxhot) == 64, "a context's hot part is one cache line");

/* The hot parts of a host's contexts: chunks that never move; entries freed with their context are reused first. */
typedef struct emh__hotslab {
	pthread_mutex_t mu;
	emh__ctxhot *free;   /* free list, through next_free */
	emh__ctxhot **chunks;
	size_t nchunks;
	size_t used, cap;    /* of the last chunk */
} emh__hotslab;

typedef struct emh_context {
	emh__ctxhot *hot; /* refs, forks_open, refusal: what a fork touches (see above) */
	char name[64];    /* a copy of conf.name: at most 63 bytes */
	/*
	 * The second line: what a fork's first connection reads (metas and
	 * unsynced) and what every call tests (schema_sync, qlog.on; see the
	 * assertions below the struct).
	 */
	emh__meta *_Atomic metas;
	const emh__driver *drv;
	_Atomic int unsynced;   /* registered entities whose schema is not synced yet */
	/* schema_sync: entities are synced (or, with schema_check, checked) at
	 * registration or a fork's first connection */
	bool is_default, required, schema_sync, schema_check;
	emh__qlog qlog;         /* log_queries, slow_query_ms (qlog.c); .on first */
	emh_host *host;
	emh__ctxconf conf;
	struct emh_params params;
	char instance[128]; /* "<host>-<serial>-<name>": unique whatever the name's length */
	emh_dctx *dctx;
	emh__pool pool;
	pthread_mutex_t mu; /* registration; the removal handshake (drained) */
	pthread_cond_t cv;
	bool drained;       /* under mu: the last reference went during removal */
	_Atomic uint32_t next_stmt_id;
	uint32_t next_meta_id;
	_Atomic uint64_t caps;  /* driver caps & server caps, once known (else 0) */
	_Atomic uint64_t errors[EMH__ERRKINDS];
	_Atomic int64_t version_clock; /* the last timestamp version handed out (µs) */
	/* durations of the database calls, which also count them: made at the
	 * first call (emh__qstats_add), so an idle tenant carries no 1.9 kB of
	 * zero counters */
	emh__qstats *_Atomic qstats;
	/* read replicas (replica.c): fixed for the context's life but for their pool settings */
	emh__replica *replicas;
	unsigned nreplicas;
	_Atomic unsigned replica_next; /* round robin */
	_Atomic int64_t max_replica_lag_ms; /* 0: lag not checked; a reload may change it */
} emh_context;
#if UINTPTR_MAX == UINT64_MAX
_Static_assert(offsetof(emh_context, qlog.on) < 128 && offsetof(emh_context, schema_sync) < 128,
	       "what every fork and call reads stays in a context's second cache line");
#endif

/* Create a context from its configuration (taken over: *conf is zeroed on success). */
int emh__context_create(emh_host *h, emh__ctxconf *conf, emh_context **out, emh_error *err);
/* Free a context nobody references any more (pool, driver state, metas). */
void emh__context_free(emh_context *c);
/* Add c to the host's array and name table; EMH_ECONFIG for a duplicate name.  Host lock held for writing. */
int emh__context_insert(emh_host *h, emh_context *c, emh_error *err);
/* Take c out of the host's array and name table (no reference is waited for).  Host lock held for writing. */
void emh__context_unlink_locked(emh_host *h, emh_context *c);
/* Free the name table and those it replaced (host free, no lookup running). */
void emh__context_table_free(emh_host *h);
/* The context called name, or NULL.  Host lock held (either side). */
emh_context *emh__context_find_locked(const emh_host *h, const char *name);
/* "a, b, c": the context names in configuration order.  Host lock held. */
const char *emh__context_list_locked(const emh_host *h, char *buf, size_t cap);
/* Take a connection, ping it, give it back; errors name the context. */
int emh__context_ping(emh_context *c, emh_error *err);
/* Look up a context (NULL = default) and take a reference (dropped by emh__context_put). */
emh_context *emh__host_get_context(emh_host *h, const char *name, emh_error *err);
void emh__context_put(emh_context *c);
/* The same on the hot part alone: a fork and its close touch nothing else of a context. */
emh__ctxhot *emh__host_get_hot(emh_host *h, const char *name, emh_error *err);
void emh__hot_put(emh__ctxhot *hot);
/* The slab of a host's hot parts: set up with the host, freed after its last context. */
void emh__hotslab_init(emh__hotslab *s);
void emh__hotslab_destroy(emh__hotslab *s);
void emh__context_count_error(emh_context *c, int code);

/* ---- the host ---- */
typedef struct emh__refused {
	char *file;
	char *reason;
} emh__refused;

/* A slot of the host's name table: the hash beside the context's hot part, so probing touches neither.
 * Atomic: written under the host's write lock, read by lookups without the lock (context.c). */
typedef struct emh__ctxslot {
	_Atomic uint64_t hash;
	emh__ctxhot *_Atomic hot; /* NULL: empty */
} emh__ctxslot;

/* The name table: open addressing on emh__ctxhot.hash, linear probing, at most half full. */
typedef struct emh__ctxtable {
	size_t mask;                   /* slots - 1, slots a power of two */
	struct emh__ctxtable *retired; /* the smaller table this one replaced: a lookup may still read it */
	emh__ctxslot slot[];
} emh__ctxtable;

struct emh_host {
	emh__config cfg; /* as read at start: services and the server section keep pointing into it */
	/* NULL-terminated copy of the environment used; a reload swaps in a new
	 * one (the old stays allocated until the host is freed, readers go lock-free) */
	_Atomic(char **) env;
	emh__logger log;
	pthread_rwlock_t lock; /* the contexts: ctxs and byname */
	emh_context **ctxs;    /* configuration order */
	size_t nctx, ctxcap;
	/* by name (NULL: none yet); changed under the write lock, read by lookups without it */
	_Atomic(emh__ctxtable *) byname;
	emh__hotslab hot;      /* the contexts' hot parts (own mutex: contexts are made outside lock) */
	emh__blockcache blocks; /* large arena blocks the forks gave back, for the next (arena.h) */
	emh_context *def;
	/*
	 * Loaded drivers, each allocated on its own so that contexts can keep
	 * pointers to them while a reload appends more.  drivers, refused and
	 * the introspection arrays change only under the write side of lock
	 * (reload); after start-up, readers take the read side.
	 */
	emh__driver **drivers;
	size_t ndrivers, capdrivers;
	emh_driver_info *dinfo;
	size_t ndinfo;
	emh__refused *refused;
	size_t nrefused;
	emh_refused_info *rinfo;
	size_t nrinfo;
	char *plugin_dir;      /* the directory plugins were loaded from, NULL for none (reload rescans it) */
	pthread_mutex_t reload_mu; /* one reload at a time */
	/* Memory that callers may still borrow (introspection arrays, replaced
	 * settings, an old environment): freed with the host, never before. */
	void **retired;
	size_t nretired;
	_Atomic unsigned services_alive; /* emh_services objects on this host, to warn when freed before them */
	emh__budget budget;    /* connections of every context */
	_Atomic bool xtx_warned; /* linked forks of two contexts had transactions open at once (logged once) */
	/* removals that had to wait for forks, and wakeups sent by the last fork of one (tests) */
	_Atomic uint64_t removals_waited, removals_woken;
};

const emh__config *emh__host_config(const emh_host *h);
const char *const *emh__host_env(const emh_host *h);
/* Keep p allocated until the host is freed (it may still be borrowed).  Host lock held for writing. */
void emh__host_retire(emh_host *h, void *p);
/* A copy of envp (NULL = the process environment), NULL-terminated; NULL on out of memory. */
char **emh__env_copy(const char *const *envp);
const emh__driver *emh__host_driver(const emh_host *h, const char *name);
/* "a, b": the loaded drivers' names. */
const char *emh__driver_list(const emh_host *h, char *buf, size_t cap);

/* loader.c */
int emh__load_plugins(emh_host *h, const char *dir, emh_error *err);
/*
 * Load the plugin files of dir that no loaded driver came from (a file
 * refused before is tried again: its old refusal goes), appending the
 * names of the drivers loaded to *loaded (", "-separated).  For a reload
 * (reload_mu held): it takes the host lock for writing around each change
 * only, never across a dlopen.  Returns 0 or EMH_ENOMEM.
 */
int emh__rescan_plugins(emh_host *h, const char *dir, emh_buf *loaded, emh_error *err);
/* One plugin file: loaded into h, or a refusal recorded in h.  Negative only for out of memory. */
int emh__load_plugin(emh_host *h, const char *path, emh_error *err);
/* fn(ud, "dir/x.so") for every *.so of dir in name order, until fn returns non-zero (returned);
 * *list_errno is the errno of a directory that cannot be listed, else 0. */
int emh__plugin_foreach(const char *dir, int (*fn)(void *ud, const char *path), void *ud, int *list_errno);
/* The plugin directory: given (the options'), else the file's plugin_dir, else $EMH_PLUGIN_DIR,
 * else the compiled-in one. */
const char *emh__plugin_dir_for(const char *given, const emh__config *cfg, const char *const *env);
/* sym_size: the size of the plugin's descriptor symbol (dl != NULL); static drivers have none. */
int emh__add_driver(emh_host *h, const emh_driver *d, size_t sym_size, void *dl, const char *file,
		    emh_error *err);
void emh__unload_drivers(emh_host *h);
/* Open a plugin file (checked), its descriptor symbol and the symbol's size; what it checks is
 * above its definition. */
const void *emh__plugin_open(const emh__logger *log, const char *path, const char *symbol, const char *kind,
			     void **dl, size_t *sym_size, char *why, size_t cap);
/* A directory plugins are loaded from: not writable by others; its group may, with a warning. */
bool emh__plugin_dir_ok(const emh__logger *log, const char *dir, const char *what, char *why, size_t cap);
/*
 * A plugin's descriptor is read only inside its symbol: the symbol holds at
 * least an ABI <major>.0 descriptor (min bytes) and struct_size claims no
 * more than it has (an 8-byte object claiming a whole descriptor would have
 * its neighbours read as pointers).  False with why[] set.
 */
bool emh__desc_fits(const char *symbol, size_t sym_size, size_t min, unsigned major, const void *desc, char *why,
		    size_t cap);

/* ---- SQL compilation (sql.c) ---- */
int emh__sql_prepare_meta(emh__meta *m, const emh_sql_dialect *d, emh_error *err);
void emh__sql_free_meta(emh__meta *m);
const emh_stmt *emh__sql_update_stmt(emh__meta *m, const emh_sql_dialect *d, uint64_t mask, emh_error *err);
const emh_stmt *emh__sql_query_stmt(emh__meta *m, const emh_sql_dialect *d, const emh_query *q,
				    bool count, emh_error *err);
/* The SELECT of q ending with a row-lock clause (lock: a driver's lock_clause text, or NULL). */
const emh_stmt *emh__sql_select_stmt(emh__meta *m, const emh_sql_dialect *d, const emh_query *q, const char *lock,
				     emh_error *err);
/* sql_where.c: UPDATE (mask != 0: those fields) or DELETE of one row at a
 * version: parameters the mask's fields in field order, the key, the version. */
const emh_stmt *emh__sql_versioned_stmt(emh__meta *m, const emh_sql_dialect *d, uint64_t mask, emh_error *err);
/* sql_where.c: UPDATE of sets (NULL: a DELETE) on the rows q matches (q NULL:
 * every row): parameters the sets' values in order, then q's. */
const emh_stmt *emh__sql_where_stmt(emh__meta *m, const emh_sql_dialect *d, const emh_query *q, const emh_set *sets,
				    size_t nsets, emh_error *err);
/* Parameters of q in the order its compiled statement binds them. */
size_t emh__query_nparams(const emh_query *q, bool count);
void emh__query_params(const emh_query *q, bool count, emh_value *out);
int emh__query_error(const emh_query *q, emh_error *err);

/* ---- fork internals used by service.c ---- */
emh_context *emh__em_context(const emh_em *em);
/* Did the fork send a write (its reads then stay on the primary)? */
bool emh__em_wrote(const emh_em *em);
/* An EMH_FORK_NOWAIT fork refused a call because it would have waited for a connection. */
bool emh__em_would_wait(const emh_em *em);
/* Can v be the value of fork parameter name (emh_em_set_param)?  0 or EMH_EINVAL. */
int emh__param_check(const char *name, const emh_value *v, emh_error *err);

#endif
