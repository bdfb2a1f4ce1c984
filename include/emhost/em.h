/* SPDX-License-Identifier: MIT */
/* emhost/em.h: forked entity managers (identity map, unit of work, transactions) and repositories. */
#ifndef EMHOST_EM_H
#define EMHOST_EM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <emhost/entity.h>
#include <emhost/error.h>
#include <emhost/host.h>
#include <emhost/query.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * An entity manager (EM) is made only by emh_host_fork and is one unit of work
 * on one context, used by one thread at a time.
 *
 * Ownership: every object it hands out (emh_em_new, loads, lists, queries,
 * strings in objects) lives in the fork's arena and is valid until
 * emh_em_close.  A text/json/blob member you set yourself must stay valid
 * until the next flush of that object or until the fork closes; copy with
 * emh_em_strdup when in doubt.
 *
 * NULL: a text/json member that is NULL and a blob whose data is NULL are SQL
 * NULL.  For bool/int/double/timestamp members use emh_em_set_null.
 */
typedef struct emh_repo emh_repo;

/* emh_list (entity.h): a list of objects; items and objects live in the fork's arena. */

/*
 * Close the fork: roll back an open transaction, give the connection back to
 * the pool, free the arena (every object, list and query of this fork).
 * Unflushed changes are discarded.  emh_em_close(NULL) is a no-op.
 */
void emh_em_close(emh_em *em);

/* Name of the fork's context; borrowed until emh_em_close. */
const char *emh_em_context(const emh_em *em);

/*
 * Make the fork read-only, for bulk reads: loads keep no snapshot and do not
 * enter the identity map; new/remove/flush are refused with EMH_ESTATE.
 * Only before the first load (EMH_ESTATE otherwise).
 */
int emh_em_set_readonly(emh_em *em, emh_error *err);

/*
 * Capabilities (EMH_CAP_*) that hold on this fork's context; takes the
 * connection (so the answer is the server's, not only the driver's).
 */
int emh_em_caps(emh_em *em, uint64_t *caps, emh_error *err);

/*
 * A new zeroed object of entity e (registered in this context), owned by the
 * fork and scheduled for insertion at the next flush.
 * Returns 0, EMH_ENOENTITY, EMH_ESTATE (read-only), EMH_ENOMEM.
 */
int emh_em_new(emh_em *em, const emh_entity *e, void **out, emh_error *err);

/*
 * Schedule obj for deletion at the next flush (an object new since the last
 * flush is simply dropped; a row that another fork deleted first counts as
 * deleted, as SQL's DELETE of no row does).  obj must come from this fork:
 * EMH_ECROSSCTX when it was loaded by a fork of another context, EMH_EINVAL
 * when by another fork of this context.
 */
int emh_em_remove(emh_em *em, void *obj, emh_error *err);

/*
 * Write every pending change in one transaction (a savepoint inside an
 * explicit one): inserts in creation order, then updates of changed columns
 * only, then deletes.  Generated keys are written back into the objects.  On
 * failure everything this flush wrote is rolled back, err names the entity
 * and key, and the fork's state is as before the call, so fix and retry, or
 * close -- on a context with EMH_CAP_ATOMIC_FLUSH (emh_em_caps).  Without it
 * (MongoDB without a replica set, a driver without transactions) the changes
 * sent before the failing one stay written and their objects count as
 * stored; the failing one and the rest stay pending.  Returns 0, EMH_ECONFLICT, EMH_ENOTFOUND (updated row is gone),
 * EMH_EUNAVAILABLE, EMH_ETIMEOUT, EMH_EINVAL (NULL in a non-nullable field),
 * EMH_EDRIVER, ...
 */
int emh_em_flush(emh_em *em, emh_error *err);

/* Detach every object: the identity map and pending changes are emptied.
 * The objects' memory stays valid until the fork closes. */
void emh_em_clear(emh_em *em);

/*
 * Explicit transactions.  begin nests: an inner begin is a savepoint, and
 * commit/rollback end the innermost level.  Rolling back restores the
 * fork's bookkeeping of everything flushed inside that level, so the fork
 * again matches the database: an object inserted there is new again (its
 * generated key reset; the next flush inserts it again), an updated one is
 * changed again, a deleted one is managed again.  Closing a fork with an
 * open transaction rolls it back.  commit/rollback with no open transaction
 * is EMH_ESTATE; EMH_EUNSUPPORTED when the context has no transactions (or
 * no savepoints, for nesting).  A single-statement flush outside a
 * transaction is sent alone (it is atomic by itself).
 */
int emh_em_begin(emh_em *em, emh_error *err);
int emh_em_commit(emh_em *em, emh_error *err);
int emh_em_rollback(emh_em *em, emh_error *err);

/*
 * Run fn inside a transaction level: commit when it returns 0, roll back
 * otherwise and return its status (err as fn filled it).
 */
typedef int (*emh_tx_fn)(emh_em *em, void *ud, emh_error *err);
int emh_em_transaction(emh_em *em, emh_tx_fn fn, void *ud, emh_error *err);

/* Current transaction depth (0 = none). */
int emh_em_tx_depth(const emh_em *em);

/* Run raw statements (DDL, migrations) on the fork's connection. */
int emh_em_execute(emh_em *em, const char *sql, emh_error *err);

/* Copy s (or n bytes of p) into the fork's arena; NULL on out of memory. */
char *emh_em_strdup(emh_em *em, const char *s);
void *emh_em_memdup(emh_em *em, const void *p, size_t n);

/*
 * NULL flag of a scalar member (bool, int, double, timestamp) of a managed
 * object; field is the member name.  Text/json/blob members are NULL through
 * their pointer.  EMH_EINVAL for an unknown or non-nullable field.
 */
int emh_em_set_null(emh_em *em, void *obj, const char *field, bool is_null, emh_error *err);
bool emh_em_is_null(const emh_em *em, const void *obj, const char *field);

/* ---- repositories ---- */

/*
 * The repository of entity e in this fork's context; borrowed until the fork
 * closes (asking twice returns the same one).  EMH_ENOENTITY, naming the
 * entity and the context, when e is not registered there.
 */
int emh_em_repo(emh_em *em, const emh_entity *e, emh_repo **out, emh_error *err);

/* The fork a repository belongs to. */
emh_em *emh_repo_em(const emh_repo *r);

/*
 * Load by primary key (int32/int64 keys take emh_v_int64 too).  In a normal
 * fork the identity map is asked first and the loaded object enters it.
 * Returns 0, EMH_ENOTFOUND, or the database error.
 */
int emh_repo_get(emh_repo *r, emh_value key, void **out, emh_error *err);

/* A new query on this repository's entity (see query.h). */
int emh_repo_query(emh_repo *r, emh_query **out, emh_error *err);

/* Every matching object (q may be NULL: every row). */
int emh_repo_find(emh_repo *r, const emh_query *q, emh_list *out, emh_error *err);
/* The first matching object; EMH_ENOTFOUND when none. */
int emh_repo_find_one(emh_repo *r, const emh_query *q, void **out, emh_error *err);
/* Number of matching rows (limit/offset/order ignored). */
int emh_repo_count(emh_repo *r, const emh_query *q, int64_t *n, emh_error *err);
int emh_repo_exists(emh_repo *r, const emh_query *q, bool *out, emh_error *err);

/*
 * Insert obj, or -- when a row with its key already exists -- overwrite that
 * row's other columns with obj's, in one statement, at once.  obj must be new
 * (emh_repo_new) with its primary key set by the caller: upsert is for
 * natural keys, so an entity with a generated key is EMH_EINVAL.  Afterwards
 * obj is managed like a loaded object.  EMH_ESTATE when this fork already
 * manages another object with that key (change that one and flush);
 * EMH_EUNSUPPORTED when the context lacks EMH_CAP_UPSERT, and on MySQL for an
 * entity with another unique column (ON DUPLICATE KEY would then overwrite
 * the row holding that value).
 */
int emh_repo_upsert(emh_repo *r, void *obj, emh_error *err);

/* emh_em_new for this repository's entity. */
int emh_repo_new(emh_repo *r, void **out, emh_error *err);
/* Shortcuts through the unit of work that flush only obj, at once:
 * insert (a new object), update (its changed columns), remove. */
int emh_repo_insert(emh_repo *r, void *obj, emh_error *err);
int emh_repo_update(emh_repo *r, void *obj, emh_error *err);
int emh_repo_remove(emh_repo *r, void *obj, emh_error *err);

/* ---- relations (entity.h declares them) ---- */

/*
 * Load relation path of the n objects objs, all of one entity and of this
 * fork: path is a relation of that entity ("posts"), or relations of the
 * entities reached, dot-separated ("posts.comments", "author.posts").  Each
 * level costs one query per target context -- the keys of every object of
 * the level de-duplicated and sent as IN lists of at most EMH_QUERY_MAX_IN
 * keys, so one query per 1,000 distinct keys -- never one per object; a
 * many_to_many level costs two there (the join rows, then the targets).
 * belongs_to keys whose target the target fork already manages are not
 * asked for again.  An object whose relation is already loaded is not
 * queried again, but its targets go on to the next level.
 *
 * The relation members are filled: a pointer (NULL when the key is NULL or
 * has no target row: "loaded, none") or an emh_list whose items live in
 * this fork's arena; has_many lists are ordered by the target's primary key,
 * many_to_many lists by the join's.  Targets are loaded through the target
 * context's fork, so they honour its identity map (the same row is the same
 * object) and live until that fork closes.
 *
 * The target fork: in a scope, the scope's fork of the context the service
 * declared for the target entity (resolved when the service loaded);
 * otherwise this fork (same context) or a fork linked to it with
 * emh_em_link.  No I/O happens before every level's fork and entities are
 * known.  Returns 0, EMH_EINVAL (no such relation: the message lists the
 * entity's relations; objects of another entity or fork), EMH_ENOCONTEXT (no
 * fork for the target: the message names the target entity and where it is
 * registered), EMH_ENOENTITY, or a database error (err names the context).
 * Objects filled before a failure keep what they got.
 */
int emh_em_load(emh_em *em, void *const *objs, size_t n, const char *path, emh_error *err);

/*
 * True when relation (a relation name of obj's entity) of obj was loaded;
 * false when it was not, or obj is not an object of this fork, or there is
 * no such relation.  Tells "not loaded" (member NULL/empty, false) from
 * "loaded, none" (member NULL/empty, true).
 */
bool emh_em_loaded(const emh_em *em, const void *obj, const char *relation);

/*
 * The number of rows relation of obj would load, counted in the target
 * context without loading them: one COUNT query (belongs_to and has_one:
 * 0 or 1; many_to_many: the join rows).  Forks as for emh_em_load.
 */
int emh_em_count_related(emh_em *em, const void *obj, const char *relation, int64_t *n, emh_error *err);

/*
 * Link two forks of different contexts, so that relations loaded or checked
 * through one find the other: forks linked to one another form a group, and
 * linking a fork of another group merges the two.  Outside a scope this is
 * how an application gives the target forks; a scope's forks find each other
 * without it.  Linked forks belong to one thread (like a fork).  Closing a
 * fork takes it out of its group.  EMH_EINVAL when the group already has a
 * fork of other's context (or other is em).
 */
int emh_em_link(emh_em *em, emh_em *other, emh_error *err);

#ifdef __cplusplus
}
#endif
#endif
