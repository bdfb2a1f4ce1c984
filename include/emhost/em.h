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
 * stored; the failing one and the rest stay pending.  An entity with a
 * version field (EMH_F_VERSION) has its updates and deletes checked against
 * the version it was loaded with: a row changed or removed since is
 * EMH_ECONFLICT with err.retryable set.  Returns 0, EMH_ECONFLICT (unique
 * violation, or a version conflict), EMH_ENOTFOUND (updated row is gone),
 * EMH_EUNAVAILABLE, EMH_ETIMEOUT, EMH_EINVAL (NULL in a non-nullable field,
 * a value in the member of a field flagged NULL: emh_em_set_null),
 * EMH_EDRIVER, ...
 */
int emh_em_flush(emh_em *em, emh_error *err);

/*
 * A causal token (docs/replicas.md): the primary's replication position
 * now, which covers everything this fork flushed and committed.  A fork
 * opened with it (emh_fork_opts.after) reads from a replica only once that
 * replica has replayed past it, else from the primary: it never sees data
 * older than this fork's writes.  Text (a PostgreSQL WAL LSN, a MariaDB
 * GTID position) into buf of len bytes.  EMH_EUNSUPPORTED for a driver
 * without EMH_CAP_REPLICAS, EMH_ESTATE inside a transaction (commit first),
 * EMH_EINVAL when buf is too small.
 */
int emh_em_token(emh_em *em, char *buf, size_t len, emh_error *err);

/* Detach every object: the identity map and pending changes are emptied.
 * The objects' memory stays valid until the fork closes. */
void emh_em_clear(emh_em *em);

/*
 * Explicit transactions.  begin nests: an inner begin is a savepoint, and
 * commit/rollback end the innermost level.  Rolling back restores the
 * fork's bookkeeping of everything flushed inside that level, so the fork
 * again matches the database: an object inserted there is new again (its
 * generated key reset; the next flush inserts it again), an updated one is
 * changed again, a deleted one is pending removal again (the next flush
 * deletes it; emh_em_refresh cancels the removal); an object reloaded or
 * detached inside it holds what it held before (marked stale: the next
 * get or find reloads it when it has no unflushed changes), and after a
 * set-based write inside it (emh_repo_update_where, _delete_where) every
 * object of that entity is marked stale.  A rollback closes its level
 * even when it fails (its bookkeeping is restored all the same); the
 * levels outside it then accept only their rollback (EMH_ESTATE for
 * anything else).  A commit that fails leaves its level open and
 * accepting only the rollback (EMH_ESTATE for a second commit, a flush,
 * ...): the server may have ended the transaction already.  Closing a
 * fork with an open transaction rolls it back.  commit/rollback with no
 * open transaction is EMH_ESTATE; EMH_EUNSUPPORTED when the context has
 * no transactions (or no savepoints, for nesting).  A single-statement flush outside a
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

/*
 * Isolation levels of emh_em_begin_opts.  EMH_ISO_DEFAULT is the server's
 * own default (PostgreSQL: read committed; MySQL/MariaDB: repeatable read;
 * SQLite: serializable).  Where a driver has a level it gives it; a driver
 * may give a stronger one (the SQL standard allows it): SQLite gives
 * serializable for every level.  A level the context does not have is
 * EMH_EUNSUPPORTED (MongoDB: no EMH_CAP_ISOLATION; its transactions read a
 * snapshot).  Under repeatable read and serializable, a transaction that
 * cannot be serialised with another fails with EMH_ERETRY (retryable):
 * run such transactions through emh_em_transaction_retry_opts.
 */
typedef enum emh_isolation {
	EMH_ISO_DEFAULT = 0,
	EMH_ISO_READ_COMMITTED = 1,
	EMH_ISO_REPEATABLE_READ = 2,
	EMH_ISO_SERIALIZABLE = 3,
} emh_isolation;

/* Options of a transaction; zeroed means emh_em_begin's. */
typedef struct emh_tx_opts {
	int isolation; /* EMH_ISO_* */
} emh_tx_opts;

/*
 * emh_em_begin with options (opts may be NULL).  An isolation level other
 * than EMH_ISO_DEFAULT is for the outermost level only: EMH_ESTATE inside a
 * transaction; EMH_EUNSUPPORTED where the context lacks EMH_CAP_ISOLATION or
 * that level; EMH_EINVAL for a value that is not an EMH_ISO_*.
 */
int emh_em_begin_opts(emh_em *em, const emh_tx_opts *opts, emh_error *err);

/*
 * Run fn in a transaction (emh_em_transaction) and, when it fails in a way
 * that retrying may cure -- err.retryable (a version conflict, a lock not
 * available with NOWAIT) or EMH_ERETRY (deadlock, serialization failure,
 * SQLite busy) -- roll back, clear the fork (emh_em_clear: fn then loads
 * fresh rows; objects from before the call are detached), wait, and run fn
 * again, at most max_attempts times in all (>= 1).  The wait before attempt
 * n+1 is random in [c/2, c], c = min(1 ms << (n - 1), 100 ms): bounded, and
 * spread so that the transactions that collided do not collide again.
 * Returns 0, or the status (and err) of the last attempt, or of the first
 * failure that is not retryable.  Must be called outside a transaction
 * (EMH_ESTATE): a retry restarts the whole transaction.  fn may run several
 * times: it must not have effects outside the fork that a retry would
 * repeat.  EMH_EINVAL for max_attempts < 1.
 */
int emh_em_transaction_retry(emh_em *em, emh_tx_fn fn, void *ud, int max_attempts, emh_error *err);
/* The same, each attempt begun with opts (an isolation level). */
int emh_em_transaction_retry_opts(emh_em *em, const emh_tx_opts *opts, emh_tx_fn fn, void *ud,
				  int max_attempts, emh_error *err);

/*
 * Reload obj (managed, or pending removal) from its row, over its
 * unflushed changes: every field is the stored value again, a pending
 * removal is cancelled.  EMH_ENOTFOUND when the row is gone (obj is then
 * detached); EMH_ESTATE when obj was never stored or is detached.
 */
int emh_em_refresh(emh_em *em, void *obj, emh_error *err);

/* Current transaction depth (0 = none). */
int emh_em_tx_depth(const emh_em *em);

/*
 * Set the fork's parameter name (an identifier) to v: the value of every
 * global filter field called name (EMH_F_FILTER, entity.h) from now on.  v
 * is copied; its type must suit the fields it filters (int32 and int64 mix
 * freely, checked where it is used); NULL, blob, json and double values are
 * refused.  Setting it again replaces the value: objects loaded under the
 * old one stay in the identity map, but a get answers only with objects of
 * the current value, and objects stored with another are neither updated
 * nor removed.  Returns 0, EMH_EINVAL, EMH_ENOMEM.
 */
int emh_em_set_param(emh_em *em, const char *name, emh_value v, emh_error *err);
/* The value of parameter name, or NULL when unset; borrowed until it is set
 * again or the fork closes. */
const emh_value *emh_em_param(const emh_em *em, const char *name);

/* Run raw statements (DDL, migrations) on the fork's connection. */
int emh_em_execute(emh_em *em, const char *sql, emh_error *err);

/* Copy s (or n bytes of p) into the fork's arena; NULL on out of memory. */
char *emh_em_strdup(emh_em *em, const char *s);
void *emh_em_memdup(emh_em *em, const void *p, size_t n);

/*
 * NULL flag of a scalar member (bool, int, double, timestamp) of a managed
 * object; field is the member name.  Text/json/blob members are NULL through
 * their pointer.  EMH_EINVAL for an unknown or non-nullable field.
 * Setting NULL zeroes the member (a NULL loaded from a row reads 0 too).
 * While the flag is set the member must stay zero: a value written into
 * it (say n->age = 30 on an age loaded NULL) is refused by the next flush
 * with EMH_EINVAL naming the field -- call emh_em_set_null(obj, field,
 * false) to store the value -- never silently left out.
 */
int emh_em_set_null(emh_em *em, void *obj, const char *field, bool is_null, emh_error *err);
bool emh_em_is_null(const emh_em *em, const void *obj, const char *field);

/* ---- repositories ---- */

/*
 * Global filters: for an entity with EMH_F_FILTER fields (entity.h), every
 * call below that reads (get, find, find_one, count, exists, find_page,
 * iterators, emh_repo_aggregate) sees only the rows whose filter fields
 * equal the fork's parameters, an object found in the identity map
 * included; writes stamp (insert, upsert) or check (update, remove) them,
 * and set-based writes (update_where, delete_where) add them to their
 * condition (an emh_q_unfiltered query or a set list assigning a filter
 * field is EMH_EINVAL there).  With a parameter unset each of them is
 * EMH_ESTATE and sends nothing.
 */

/*
 * The repository of entity e in this fork's context; borrowed until the fork
 * closes (asking twice returns the same one).  EMH_ENOENTITY, naming the
 * entity and the context, when e is not registered there.
 */
int emh_em_repo(emh_em *em, const emh_entity *e, emh_repo **out, emh_error *err);

/* The fork a repository belongs to. */
emh_em *emh_repo_em(const emh_repo *r);

/*
 * Load by primary key (int32/int64 keys take emh_v_int64 too; a value outside
 * an int32 key's range is EMH_EINVAL, as in a query).  In a normal
 * fork the identity map is asked first and the loaded object enters it.
 * Returns 0, EMH_ENOTFOUND, or the database error.
 */
int emh_repo_get(emh_repo *r, emh_value key, void **out, emh_error *err);

/*
 * emh_repo_get with options (opts may be NULL: emh_repo_get).  lock and wait
 * lock the row as emh_q_lock does (query.h: inside a transaction only,
 * EMH_EUNSUPPORTED without EMH_CAP_LOCKS, a no-op on SQLite): the row is read
 * from the database even when the identity map has it, and the map's object
 * is reloaded from it (EMH_ESTATE when it has unflushed changes).  With
 * EMH_LOCK_SKIP_LOCKED a row locked by another transaction is EMH_ENOTFOUND.
 */
typedef struct emh_get_opts {
	int lock; /* EMH_LOCK_NONE, EMH_LOCK_UPDATE, EMH_LOCK_SHARE */
	int wait; /* EMH_LOCK_WAIT, EMH_LOCK_NOWAIT, EMH_LOCK_SKIP_LOCKED */
} emh_get_opts;
int emh_repo_get_opts(emh_repo *r, emh_value key, const emh_get_opts *opts, void **out, emh_error *err);

/* A new query on this repository's entity (see query.h). */
int emh_repo_query(emh_repo *r, emh_query **out, emh_error *err);

/* Every matching object (q may be NULL: every row). */
int emh_repo_find(emh_repo *r, const emh_query *q, emh_list *out, emh_error *err);
/* The first matching object; EMH_ENOTFOUND when none. */
int emh_repo_find_one(emh_repo *r, const emh_query *q, void **out, emh_error *err);
/* Number of matching rows (limit/offset/order ignored). */
int emh_repo_count(emh_repo *r, const emh_query *q, int64_t *n, emh_error *err);
int emh_repo_exists(emh_repo *r, const emh_query *q, bool *out, emh_error *err);

/* One page of objects and the number of rows of every page together. */
typedef struct emh_page {
	void **items;  /* in the fork's arena, like a list's */
	size_t count;
	int64_t total; /* rows matching q, limit and offset ignored */
} emh_page;

/*
 * Find and count in one call, for paged listings: items as emh_repo_find
 * gives them, total as emh_repo_count would.  Two statements (the count is
 * left out when the page itself tells the total: a short page, or an empty
 * one at offset 0), so outside a transaction a concurrent write may fall
 * between them; inside one they see the same rows on a REPEATABLE READ or
 * stricter database.  Returns what find or count return.
 */
int emh_repo_find_page(emh_repo *r, const emh_query *q, emh_page *out, emh_error *err);

/*
 * Iterators: stream every row of a query in constant memory.
 *
 *   emh_iter *it;
 *   void *obj;
 *   int rc = emh_repo_iter(r, q, &it, &err);
 *   if (rc == 0) {
 *       while ((rc = emh_iter_next(it, &obj, &err)) == 1)
 *           use(obj);
 *       emh_iter_close(it);
 *   }
 *   // rc 0: every row was read; rc < 0: err says why
 *
 * Rows are read in pages (keyset paging: each page is one statement that
 * continues after the last row of the one before, by the query's ordering
 * with the primary key as the last key, NULL-aware), so a table of any size
 * costs the memory of one page, and other calls may use the fork between
 * two emh_iter_next.  The objects are read-only: not in the identity map
 * (not merged with this fork's unflushed changes), never flushed, and each
 * is valid only until the next emh_iter_next or emh_iter_close on its
 * iterator -- copy what you keep.  Pages run in the fork's transaction when
 * one is open; otherwise rows written meanwhile may or may not appear (never
 * twice, never a row skipped that existed throughout).  q's limit and offset
 * apply to the whole iteration; ordering by a blob or json field is refused.
 * Global filters apply.  The iterator lives until emh_iter_close or the
 * fork's close.  Returns 0, EMH_EINVAL, EMH_ESTATE (a filter parameter
 * unset), EMH_ENOMEM; it runs nothing until the first emh_iter_next.
 */
typedef struct emh_iter emh_iter;
int emh_repo_iter(emh_repo *r, const emh_query *q, emh_iter **out, emh_error *err);
/* Rows per page (1 to 100000; default 1000), before the first emh_iter_next:
 * EMH_ESTATE after it, EMH_EINVAL out of range. */
int emh_iter_set_page_size(emh_iter *it, size_t rows, emh_error *err);
/*
 * The next object into *obj: returns 1 when there is one, 0 at the end (obj
 * NULL), or a negative status with err filled; after an error every further
 * call is EMH_ESTATE.
 */
int emh_iter_next(emh_iter *it, void **obj, emh_error *err);
/* Free the iterator and its page; NULL is a no-op. */
void emh_iter_close(emh_iter *it);

/*
 * Insert obj, or -- when a row with its key already exists -- overwrite that
 * row's other columns with obj's, in one statement, at once.  obj must be new
 * (emh_repo_new) with its primary key set by the caller: upsert is for
 * natural keys, so an entity with a generated key is EMH_EINVAL, and so is
 * one with a version field (an overwrite would skip its check).  Afterwards
 * obj is managed like a loaded object.  EMH_ESTATE when this fork already
 * manages another object with that key (change that one and flush);
 * EMH_EUNSUPPORTED when the context lacks EMH_CAP_UPSERT, and on MySQL for an
 * entity with another unique column (ON DUPLICATE KEY would then overwrite
 * the row holding that value).
 */
int emh_repo_upsert(emh_repo *r, void *obj, emh_error *err);

/*
 * Guarded set-based writes: one statement, no object loaded.
 *
 * emh_repo_sets makes an empty set list for this repository's entity
 * (emh_sets_value, emh_sets_add: query.h), valid until the fork closes.
 *
 * emh_repo_update_where applies sets to every row q matches (q NULL: every
 * row) in one statement, and emh_repo_delete_where deletes those rows;
 * *affected (may be NULL) is the number of rows matched.  The condition is
 * the guard: "UPDATE products SET stock = stock - 3 WHERE id = 7 AND stock
 * >= 3" is
 *
 *   emh_q_where(q, emh_q_and(q, emh_q_eq(q, "id", emh_v_int64(7)),
 *                               emh_q_ge(q, "stock", emh_v_int64(3))));
 *   emh_sets_add(s, "stock", emh_v_int64(-3));
 *   emh_repo_update_where(products, q, s, &n, &err);    n == 0: not enough stock
 *
 * The query takes conditions only (order, limit, offset or a lock are
 * EMH_EINVAL).  Global filters apply (see the repositories below).  On an entity with a version field each updated row's version
 * changes too (+1, or the current time), so objects loaded before fail
 * their versioned flush.  Every object of the entity in this fork's
 * identity map is marked stale: the next get or find of it reloads it from
 * its row -- unless it has unflushed changes, which are kept (its flush
 * writes only the fields you changed, and with a version field fails with
 * EMH_ECONFLICT; emh_em_refresh drops them).
 *
 * Both are sent at once, not at the next flush, and run inside the fork's
 * transaction when one is open (a failure then spoils that transaction:
 * roll it back).  EMH_EUNSUPPORTED without EMH_CAP_CONDITIONAL_WRITES;
 * EMH_ESTATE on a read-only fork.  Relations are checked as a flush checks
 * them (entity.h): a checked key set to a value missing in the target
 * context, or a delete of parents a restricting relation's children refer
 * to, is EMH_ECONFLICT before anything is sent (a delete reads the matched
 * keys first); adding to a checked key is EMH_EINVAL.
 */
int emh_repo_sets(emh_repo *r, emh_sets **out, emh_error *err);
int emh_repo_update_where(emh_repo *r, const emh_query *q, const emh_sets *sets, int64_t *affected,
			  emh_error *err);
int emh_repo_delete_where(emh_repo *r, const emh_query *q, int64_t *affected, emh_error *err);

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
 * asked for again (unless the target entity is filtered: the query then
 * says whether the fork's parameters see it).  An object whose relation
 * is already loaded is not queried again, but its targets go on to the
 * next level.
 *
 * The relation members are filled: a pointer (NULL when the key is NULL or
 * has no target row: "loaded, none") or an emh_list whose items live in
 * this fork's arena; has_many lists are ordered by the target's primary key,
 * many_to_many lists by the join's.  Targets are loaded through the target
 * context's fork, so they honour its identity map (the same row is the same
 * object) and live until that fork closes, and its global filters: a
 * filtered target entity shows that fork's tenant only (EMH_ESTATE when its
 * parameter is unset), and so do the checks of checked references.
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
