/* SPDX-License-Identifier: MIT */
/*
 * emhost/prepcache.h: a connection's prepared statements, indexed by id, for
 * drivers.
 *
 * The core gives every compiled statement (emh_stmt) a small id, dense and
 * unique within its context, so a driver keeps what it prepared on a
 * connection in an array indexed by that id instead of hashing SQL text.
 * This is that array: one per connection, holding one opaque handle per id
 * (a sqlite3_stmt *, a MYSQL_STMT *, or any non-NULL marker when the
 * statement lives only on the server, like PostgreSQL's named statements),
 * together with the key it was prepared for (the emh_stmt pointer), so that
 * a handle is never used for another statement.  Entity metadata ids
 * (emh_meta.id) are dense too: a document driver may cache per-entity
 * handles (a collection) the same way.
 *
 *   emh_prepcache *pc;
 *   emh_prepcache_new(finalize_cb, NULL, &pc, err);         at connect
 *   h = emh_prepcache_get(pc, st->id, st);                  per statement
 *   if (!h) { prepare h; emh_prepcache_put(pc, st->id, st, h, err); }
 *   emh_prepcache_drop(pc, st->id);                         the server forgot it
 *   emh_prepcache_free(pc);                                 at disconnect
 *
 * Ownership: a handle put in the cache belongs to it; the cache hands it to
 * the destroy callback when it lets go of it (replaced by another key at the
 * same id, dropped, cleared, or the cache freed), exactly once.  Keys are
 * only compared, never dereferenced.
 *
 * Threading: none of its own.  A cache belongs to one connection, and a
 * connection is used by one thread at a time (driver.h), so calls on one
 * cache must not overlap; different caches are independent.
 *
 * Memory: the array grows to the next power of two above the largest id
 * put (two pointers an entry), never shrinks, and is freed with the cache.
 */
#ifndef EMHOST_PREPCACHE_H
#define EMHOST_PREPCACHE_H

#include <stdint.h>

#include <emhost/error.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct emh_prepcache emh_prepcache;

/* Releases handle (finalize, close); arg is what emh_prepcache_new was given. */
typedef void (*emh_prepcache_destroy_fn)(void *handle, void *arg);

/*
 * A new empty cache in *out.  destroy may be NULL when handles need no
 * release (markers).  0 or EMH_ENOMEM.
 */
int emh_prepcache_new(emh_prepcache_destroy_fn destroy, void *arg, emh_prepcache **out, emh_error *err);

/* Destroy every handle and free the cache.  NULL is a no-op. */
void emh_prepcache_free(emh_prepcache *c);

/*
 * The handle cached at id for key, or NULL when there is none (never put,
 * dropped, cleared, or put for another key).  Borrowed: valid until the
 * cache lets go of it.  Allocates nothing.
 */
void *emh_prepcache_get(const emh_prepcache *c, uint32_t id, const void *key);

/*
 * Make room for id, so that a later emh_prepcache_put at id cannot fail:
 * for a driver that must record a handle at a point where it cannot report
 * an error (in the middle of reading pipelined results).  0 or EMH_ENOMEM.
 */
int emh_prepcache_reserve(emh_prepcache *c, uint32_t id, emh_error *err);

/*
 * Cache handle (not NULL) at id for key.  A handle cached at id before is
 * destroyed first, unless it is this very handle.  0, or EMH_ENOMEM when the
 * array cannot grow (never after emh_prepcache_reserve for id): then nothing
 * changed and handle is still the caller's.
 */
int emh_prepcache_put(emh_prepcache *c, uint32_t id, const void *key, void *handle, emh_error *err);

/* Destroy and forget the handle at id, if any (stale, or the server dropped it). */
void emh_prepcache_drop(emh_prepcache *c, uint32_t id);

/* Destroy and forget every handle; the array is kept for reuse. */
void emh_prepcache_clear(emh_prepcache *c);

#ifdef __cplusplus
}
#endif
#endif
