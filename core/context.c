/* SPDX-License-Identifier: MIT */
/*
 * core/context.c: contexts: creation from configuration, lookup by name,
 * add and remove at run time, ping.
 *
 * The host owns two views of its contexts under one rwlock: an array in
 * configuration order (introspection, error lists) and an open-addressing
 * hash table by name, so a fork finds a named context in constant time
 * whatever the number of tenants.  Add and remove take the write side.  A
 * fork looks its context up without the lock (hot_get_unlocked says why
 * that is safe) and falls back to the read side for what it cannot decide.
 * The default context is never removed, so em.c forks it without any lookup.
 *
 * A context counts its references (open forks, registrations and pings in
 * flight) in one atomic word whose top bit says "being removed".  Removal
 * takes the context out of the table and sets that bit under the write lock,
 * so no reference is taken after it and the count only falls: exactly one
 * emh__context_put sees the last reference go, and it wakes the remover.
 * There is no timed wait to fall back on, because no wakeup can be missed.
 *
 * That count, the open forks, the refusal and the name's first 32 bytes live
 * in the context's hot part (emh__ctxhot), 64 bytes from the host's slab,
 * and the table points at it: a fork and its close touch the table slot and
 * that one line, packed with the other contexts' on few pages, never the
 * context itself (kilobytes, one or more pages of its own among its pool's
 * allocations), which with thousands of tenants cost a TLB miss each time.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

/* ---- the name table ---- */

/* FNV-1a: names are short identifiers; this is all the mixing they need. */
static uint64_t name_hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

/*
 * Is hot the part of the context called name?  A name shorter than 32 bytes
 * is there whole (NUL-padded, so its last byte is 0); a longer one has its
 * first 32 bytes there and its tail in the context.
 */
static bool hot_is(const emh__ctxhot *hot, const char *name)
{
	size_t n = sizeof hot->name;
	if (hot->name[n - 1] == '\0')
		return strcmp(hot->name, name) == 0;
	return strncmp(hot->name, name, n) == 0 && strcmp(hot->ctx->name + n, name + n) == 0;
}

/* Acquire, paired with slot_set's release: a lookup without the lock that
 * reads a hot part's pointer also sees it allocated and set up (and on x86
 * both are plain moves). */
static inline emh__ctxhot *slot_hot(const emh__ctxtable *t, size_t i)
{
	return atomic_load_explicit(&t->slot[i].hot, memory_order_acquire);
}

static inline uint64_t slot_hash(const emh__ctxtable *t, size_t i)
{
	return atomic_load_explicit(&t->slot[i].hash, memory_order_relaxed);
}

/* Write lock held: lookups without the lock read the slot meanwhile. */
static void slot_set(emh__ctxtable *t, size_t i, uint64_t hash, emh__ctxhot *hot)
{
	atomic_store_explicit(&t->slot[i].hash, hash, memory_order_relaxed);
	atomic_store_explicit(&t->slot[i].hot, hot, memory_order_release);
}

/* The table; host lock held (either side), so no atomic ordering is needed. */
static emh__ctxtable *table_locked(const emh_host *h)
{
	return atomic_load_explicit(&((emh_host *)h)->byname, memory_order_relaxed);
}

/*
 * Slot of name in the table, or of the empty slot where it would go.  The
 * hash sits in the slot, so probing past other names touches no context.
 * Host lock held.
 */
static size_t table_slot(const emh__ctxtable *t, const char *name, uint64_t hash)
{
	size_t i = (size_t)hash & t->mask;
	for (emh__ctxhot *hot; (hot = slot_hot(t, i)) != NULL; i = (i + 1) & t->mask)
		if (slot_hash(t, i) == hash && hot_is(hot, name))
			break;
	return i;
}

/* Slot of hot in the table, or of the empty slot ending its probe sequence. */
static size_t table_slot_of(const emh__ctxtable *t, const emh__ctxhot *hot)
{
	size_t i = (size_t)hot->hash & t->mask;
	for (emh__ctxhot *e; (e = slot_hot(t, i)) != NULL && e != hot;)
		i = (i + 1) & t->mask;
	return i;
}

/*
 * Make room for one more entry: the table stays at most half full.  A
 * grown table is filled first and published whole; the one it replaces is
 * kept (new->retired) until the host is freed, because a lookup without the
 * lock may still be reading it.  Tables only grow, doubling, so those kept
 * take less than the one in use.
 */
static int table_reserve(emh_host *h)
{
	emh__ctxtable *old = table_locked(h);
	size_t nold = old ? old->mask + 1 : 0;
	if ((h->nctx + 1) * 2 <= nold)
		return 0;
	size_t n = nold ? nold * 2 : 16;
	emh__ctxtable *t = calloc(1, sizeof *t + n * sizeof t->slot[0]);
	if (!t)
		return EMH_ENOMEM;
	t->mask = n - 1;
	t->retired = old;
	for (size_t i = 0; i < nold; i++) {
		emh__ctxhot *hot = slot_hot(old, i);
		if (hot)
			slot_set(t, table_slot_of(t, hot), slot_hash(old, i), hot);
	}
	atomic_store_explicit(&h->byname, t, memory_order_release);
	return 0;
}

void emh__context_table_free(emh_host *h)
{
	emh__ctxtable *t = table_locked(h);
	while (t) {
		emh__ctxtable *next = t->retired;
		free(t);
		t = next;
	}
	atomic_store_explicit(&h->byname, NULL, memory_order_relaxed);
}

/*
 * Remove c by shifting back the entries after it that probed past its slot
 * (no tombstones: a long-lived host adding and removing tenants keeps short
 * probe sequences).  A lookup without the lock that reads the table
 * meanwhile may miss an entry being moved: it then looks again under the lock.
 */
static void table_delete(emh_host *h, const emh_context *c)
{
	emh__ctxtable *t = table_locked(h);
	if (!t)
		return;
	size_t mask = t->mask, i = table_slot_of(t, c->hot);
	if (slot_hot(t, i) != c->hot)
		return;
	for (size_t j = (i + 1) & mask; slot_hot(t, j); j = (j + 1) & mask) {
		uint64_t hash = slot_hash(t, j);
		size_t home = (size_t)hash & mask;
		/* Does j's home lie cyclically in (i, j]?  Then it stays. */
		bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
		if (!stays) {
			slot_set(t, i, hash, slot_hot(t, j));
			i = j;
		}
	}
	slot_set(t, i, 0, NULL);
}

/* The hot part of the context called name (NULL = default), or NULL.  Host lock held. */
static emh__ctxhot *hot_find_locked(const emh_host *h, const char *name)
{
	if (!name)
		return h->def ? h->def->hot : NULL;
	emh__ctxtable *t = table_locked(h);
	return t ? slot_hot(t, table_slot(t, name, name_hash(name))) : NULL;
}

emh_context *emh__context_find_locked(const emh_host *h, const char *name)
{
	emh__ctxhot *hot = hot_find_locked(h, name);
	return hot ? hot->ctx : NULL;
}

const char *emh__context_list_locked(const emh_host *h, char *buf, size_t cap)
{
	size_t off = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < h->nctx && off < cap; i++)
		off += (size_t)snprintf(buf + off, cap - off, "%s%s", i ? ", " : "", h->ctxs[i]->name);
	if (h->nctx == 0)
		snprintf(buf, cap, "none configured");
	return buf;
}

int emh__context_insert(emh_host *h, emh_context *c, emh_error *err)
{
	emh_context *dup = emh__context_find_locked(h, c->name);
	if (dup)
		return emh_error_set(err, EMH_ECONFIG, "duplicate context name '%s' (%s and %s)", c->name,
				     dup->conf.origin ? dup->conf.origin : "?", c->conf.origin ? c->conf.origin : "?");
	if (h->nctx == h->ctxcap) {
		size_t cap = h->ctxcap ? h->ctxcap * 2 : 8;
		emh_context **n = realloc(h->ctxs, cap * sizeof *n);
		if (!n)
			return emh_error_set(err, EMH_ENOMEM, "out of memory");
		h->ctxs = n;
		h->ctxcap = cap;
	}
	if (table_reserve(h) != 0)
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	/* Still EMH__CTX_HIDDEN: a lookup without the lock cannot take it until
	 * one under the lock did, i.e. until this write lock was let go without
	 * taking it out again (a reload's rollback does, and frees it at once). */
	emh__ctxtable *t = table_locked(h);
	slot_set(t, table_slot_of(t, c->hot), c->hot->hash, c->hot);
	h->ctxs[h->nctx++] = c;
	return 0;
}

void emh__context_unlink_locked(emh_host *h, emh_context *c)
{
	table_delete(h, c);
	for (size_t i = 0; i < h->nctx; i++)
		if (h->ctxs[i] == c) {
			memmove(&h->ctxs[i], &h->ctxs[i + 1], (h->nctx - i - 1) * sizeof *h->ctxs);
			h->nctx--;
			break;
		}
}

/* ---- references ---- */

/* The error of a lookup that found nothing; lets go of the host's read lock.
 * Out of line: its kilobyte of list keeps the lookup's frame small. */
static __attribute__((noinline, cold)) void no_context_unlock(emh_host *h, const char *name, emh_error *err)
{
	char list[1024];
	emh__context_list_locked(h, list, sizeof list);
	pthread_rwlock_unlock(&h->lock);
	if (!name)
		emh_error_set(err, EMH_ENOCONTEXT, "no default context (contexts: %s)", list);
	else
		emh_error_set(err, EMH_ENOCONTEXT, "no context '%s' (contexts: %s)", name, list);
}

/*
 * The lookup without the lock, or NULL: then the caller looks again under
 * it (not found, or found in a state this cannot judge).  What it reads
 * may change under it -- a slot rewritten, a context removed, its hot part
 * given to a new context -- and it relies on three things only:
 *
 * - Every table it can load stays allocated until the host is freed
 *   (table_reserve), and so does every hot part (the slab's chunks): what a
 *   slot points to can be read, whatever it now holds.
 * - It reads nothing of a hot part but refs before it holds a reference,
 *   and takes one only while neither EMH__CTX_REMOVING nor EMH__CTX_HIDDEN
 *   is set, in one compare-and-swap: then the hot part belongs to a context
 *   that is in the table for good (a lookup under the lock cleared HIDDEN,
 *   with release, after the context was inserted and set up) and is not
 *   being removed; a removal that starts after it waits for this reference,
 *   like any fork's.  A free hot part and one given to a new context have
 *   HIDDEN set (hot_alloc, atomically: never a plain write to refs).
 * - Holding the reference, the context cannot go: now its name is stable,
 *   and it must be the one asked for.  A slot read in passing (another
 *   context moved into it, a hot part since reused) is caught here, the
 *   reference put back as any other.
 */
static emh__ctxhot *hot_get_unlocked(emh_host *h, const char *name)
{
	const emh__ctxtable *t = atomic_load_explicit(&h->byname, memory_order_acquire);
	if (!t)
		return NULL;
	uint64_t hash = name_hash(name);
	emh__ctxhot *hot = NULL;
	/* bounded: a table read while it changes need not show an empty slot */
	for (size_t i = (size_t)hash & t->mask, n = 0; n <= t->mask; i = (i + 1) & t->mask, n++) {
		if ((hot = slot_hot(t, i)) == NULL)
			return NULL;
		if (slot_hash(t, i) == hash)
			break;
		hot = NULL;
	}
	if (!hot)
		return NULL;
	unsigned refs = atomic_load_explicit(&hot->refs, memory_order_relaxed);
	do {
		if (refs & (EMH__CTX_REMOVING | EMH__CTX_HIDDEN))
			return NULL;
	} while (!atomic_compare_exchange_weak_explicit(&hot->refs, &refs, refs + 1, memory_order_acquire,
							 memory_order_relaxed));
	if (hot_is(hot, name))
		return hot;
	emh__hot_put(hot);
	return NULL;
}

emh__ctxhot *emh__host_get_hot(emh_host *h, const char *name, emh_error *err)
{
	emh__ctxhot *hot;
	if (h->def && (!name || strcmp(name, h->def->name) == 0)) {
		/* The default context is never removed (emh_host_remove_context,
		 * reload): no lock, no table. */
		hot = h->def->hot;
		atomic_fetch_add_explicit(&hot->refs, 1, memory_order_relaxed);
		return hot;
	}
	if (name && (hot = hot_get_unlocked(h, name)) != NULL)
		return hot;
	pthread_rwlock_rdlock(&h->lock);
	/* Found under the read lock means not being removed: removal takes it
	 * out of the table under the write lock before it marks it. */
	hot = hot_find_locked(h, name);
	if (!hot) {
		no_context_unlock(h, name, err);
		return NULL;
	}
	/* In the table with no writer: in it for good, so lookups without the
	 * lock may take it from now on (release: after its setup). */
	if (atomic_fetch_add_explicit(&hot->refs, 1, memory_order_relaxed) & EMH__CTX_HIDDEN)
		atomic_fetch_and_explicit(&hot->refs, ~EMH__CTX_HIDDEN, memory_order_release);
	pthread_rwlock_unlock(&h->lock);
	return hot;
}

emh_context *emh__host_get_context(emh_host *h, const char *name, emh_error *err)
{
	emh__ctxhot *hot = emh__host_get_hot(h, name, err);
	return hot ? hot->ctx : NULL;
}

void emh__hot_put(emh__ctxhot *hot)
{
	unsigned old = atomic_fetch_sub_explicit(&hot->refs, 1, memory_order_acq_rel);
	if (old != (EMH__CTX_REMOVING | 1))
		return;
	/* The last reference of a context being removed.  The remover frees c
	 * (and hot) as soon as it sees drained, so c is not touched after unlocking. */
	emh_context *c = hot->ctx;
	atomic_fetch_add_explicit(&c->host->removals_woken, 1, memory_order_relaxed);
	pthread_mutex_lock(&c->mu);
	c->drained = true;
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

void emh__context_put(emh_context *c) { emh__hot_put(c->hot); }

void emh__context_count_error(emh_context *c, int code)
{
	/* "no such row" is an answer (an HTTP 404), not a failure of the database */
	if (code == EMH_ENOTFOUND)
		return;
	int k = -code;
	if (k > 0 && k < EMH__ERRKINDS)
		atomic_fetch_add_explicit(&c->errors[k], 1, memory_order_relaxed);
}

/* ---- the hot parts' slab ---- */

/* A context's hot part: from the free list, else the last chunk; a new chunk
 * twice the last (16 entries, up to 1024 = 64 kB), so that a host of few
 * contexts takes little and one of thousands packs them in large runs. */
static emh__ctxhot *hot_alloc(emh__hotslab *s)
{
	emh__ctxhot *hot = NULL;
	pthread_mutex_lock(&s->mu);
	if ((hot = s->free) != NULL) {
		s->free = hot->next_free;
	} else {
		if (s->used == s->cap) {
			size_t cap = s->cap ? (s->cap < 1024 ? s->cap * 2 : 1024) : 16;
			emh__ctxhot **chunks = realloc(s->chunks, (s->nchunks + 1) * sizeof *chunks);
			if (!chunks)
				goto out_unlock;
			s->chunks = chunks;
			if (!(chunks[s->nchunks] = aligned_alloc(_Alignof(emh__ctxhot), cap * sizeof **chunks)))
				goto out_unlock;
			s->nchunks++;
			s->cap = cap;
			s->used = 0;
		}
		hot = &s->chunks[s->nchunks - 1][s->used++];
	}
out_unlock:
	pthread_mutex_unlock(&s->mu);
	if (hot) {
		/* Field by field: a lookup without the lock may still be trying
		 * refs of the context this hot part had (hot_get_unlocked), so refs
		 * gets only atomic writes, and says HIDDEN until the context is
		 * taken under the lock. */
		atomic_store_explicit(&hot->refs, EMH__CTX_HIDDEN, memory_order_relaxed);
		atomic_store_explicit(&hot->forks_open, 0, memory_order_relaxed);
		atomic_store_explicit(&hot->refusal, NULL, memory_order_relaxed);
		hot->hash = 0;
		hot->ctx = NULL;
		memset(hot->name, 0, sizeof hot->name);
	}
	return hot;
}

static void hot_free(emh__hotslab *s, emh__ctxhot *hot)
{
	pthread_mutex_lock(&s->mu);
	hot->next_free = s->free;
	s->free = hot;
	pthread_mutex_unlock(&s->mu);
}

void emh__hotslab_init(emh__hotslab *s)
{
	*s = (emh__hotslab){0};
	pthread_mutex_init(&s->mu, NULL);
}

void emh__hotslab_destroy(emh__hotslab *s)
{
	for (size_t i = 0; i < s->nchunks; i++)
		free(s->chunks[i]);
	free(s->chunks);
	pthread_mutex_destroy(&s->mu);
}

/* ---- create and free ---- */

void emh__context_free(emh_context *c)
{
	if (!c)
		return;
	emh__replicas_close(c);
	emh__pool_destroy(&c->pool);
	if (c->dctx && c->drv && c->drv->d.context_close)
		c->drv->d.context_close(c->dctx);
	emh__meta *m = atomic_load(&c->metas);
	while (m) {
		emh__meta *n = m->next;
		emh__meta_free(m);
		m = n;
	}
	emh__ctxconf_release(&c->conf);
	free(atomic_load(&c->hot->refusal));
	hot_free(&c->host->hot, c->hot);
	free(atomic_load(&c->qstats));
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->cv);
	free(c);
}

static bool truthy(const char *v)
{
	return v && (strcasecmp(v, "true") == 0 || strcmp(v, "1") == 0 || strcasecmp(v, "yes") == 0 ||
		     strcasecmp(v, "on") == 0);
}

/* The driver called dname, or an error naming the refused plugin or the loaded drivers.  Host lock held. */
static int context_driver_locked(emh_host *h, const emh__ctxconf *conf, const char *dname, const emh__driver **out,
				 emh_error *err)
{
	const char *origin = conf->origin ? conf->origin : "config";
	if ((*out = emh__host_driver(h, dname)) != NULL)
		return 0;
	for (size_t i = 0; i < h->nrefused; i++) {
		const char *base = strrchr(h->refused[i].file, '/');
		base = base ? base + 1 : h->refused[i].file;
		size_t n = strlen(dname);
		if (strncmp(base, dname, n) == 0 && strcmp(base + n, ".so") == 0) {
			emh_error_set(err, EMH_EPLUGIN, "context '%s' needs driver '%s', but plugin '%s' was refused: %s",
				      conf->name, dname, h->refused[i].file, h->refused[i].reason);
			return emh_error_context(err, EMH_EPLUGIN, conf->name);
		}
	}
	char list[512];
	emh_error_set(err, EMH_EPLUGIN, "%s: context '%s' names unknown driver '%s' (loaded drivers: %s)", origin,
		      conf->name, dname, emh__driver_list(h, list, sizeof list));
	return emh_error_context(err, EMH_EPLUGIN, conf->name);
}

/* The driver a context names. */
static int context_driver(emh_host *h, const emh__ctxconf *conf, const emh__driver **out, emh_error *err)
{
	const char *dname = emh__ctxconf_get(conf, "driver");
	const char *origin = conf->origin ? conf->origin : "config";
	if (!dname) {
		emh_error_set(err, EMH_ECONFIG, "%s: context '%s' has no driver (set driver or url)", origin,
			      conf->name);
		return emh_error_context(err, EMH_ECONFIG, conf->name);
	}
	/* a reload may be appending drivers and refusals */
	pthread_rwlock_rdlock(&h->lock);
	int rc = context_driver_locked(h, conf, dname, out, err);
	pthread_rwlock_unlock(&h->lock);
	return rc;
}

int emh__context_create(emh_host *h, emh__ctxconf *conf, emh_context **out, emh_error *err)
{
	*out = NULL;
	const emh__driver *drv;
	int rc = context_driver(h, conf, &drv, err);
	if (rc)
		return rc;
	if ((rc = emh__config_check_context(conf, &drv->d, emh__host_env(h), err)) != 0)
		return emh_error_context(err, rc, conf->name);

	/* Cache-line aligned: what every call tests stays in one line (internal.h). */
	size_t size = (sizeof(emh_context) + 63) & ~(size_t)63;
	emh_context *c = aligned_alloc(64, size);
	if (!c)
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	memset(c, 0, size);
	size_t len = strlen(conf->name);
	if (len >= sizeof c->name) { /* context names are at most 63 bytes */
		free(c);
		return emh_error_set(err, EMH_EINVAL, "context name '%.64s...' is too long", conf->name);
	}
	emh__ctxhot *hot = hot_alloc(&h->hot);
	if (!hot) {
		free(c);
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	}
	c->conf = *conf;
	memset(conf, 0, sizeof *conf);
	strcpy(c->name, c->conf.name);
	c->host = h;
	c->hot = hot;
	hot->ctx = c;
	hot->hash = name_hash(c->name);
	memcpy(hot->name, c->name, len < sizeof hot->name ? len : sizeof hot->name);
	c->drv = drv;
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	static _Atomic unsigned long serial; /* only makes instance strings unique; no host state */
	/* the unique part first: a long name is what gets cut, never the pointer or serial */
	emh__msgf(c->instance, sizeof c->instance, "%p-%lu-%s", (void *)h, atomic_fetch_add(&serial, 1) + 1,
		  c->name);
	c->params = (struct emh_params){.context = c->name, .instance = c->instance, .settings = &c->conf.s,
					.log = &h->log};
	c->required = truthy(emh__ctxconf_get(&c->conf, "required"));
	const char *schema = emh__ctxconf_get(&c->conf, "schema");
	c->schema_check = schema && strcmp(schema, "check") == 0;
	c->schema_sync = c->schema_check || (schema && strcmp(schema, "sync") == 0);
	emh__qlog_init(&c->qlog, &c->conf);
	if (drv->d.context_open && (rc = drv->d.context_open(&c->params, &c->dctx, err)) != 0)
		goto out_free;
	if ((rc = emh__pool_init(&c->pool, &h->budget, drv, c->dctx, &c->params, &c->conf, err)) != 0 ||
	    (rc = emh__replicas_open(c, err)) != 0)
		goto out_free;
	*out = c;
	return 0;
out_free:
	emh__error_in_context(err, rc, c->name);
	emh__context_free(c);
	return rc;
}

/* ---- run-time use ---- */

int emh__context_ping(emh_context *c, emh_error *err)
{
	emh_error local;
	if (!err)
		err = &local;
	emh__pconn *pc;
	int rc = emh__pool_acquire(&c->pool, &pc, err);
	if (rc)
		return emh__error_in_context(err, rc, c->name);
	rc = c->drv->d.ping(pc->conn, err);
	emh__pool_release(&c->pool, pc, rc);
	emh__pool_note(&c->pool, rc ? err : NULL);
	return rc ? emh__error_in_context(err, rc, c->name) : 0;
}

int emh_host_ping(emh_host *h, const char *name, emh_error *err)
{
	emh_context *c = emh__host_get_context(h, name, err);
	if (!c)
		return EMH_ENOCONTEXT;
	int rc = emh__context_ping(c, err);
	emh__context_put(c);
	return rc;
}

/* Settings of an added context from its key, value list: the URL first (it
 * sets the connection keys), then single keys, which may override it. */
static int conf_from_kv(emh_host *h, emh__ctxconf *conf, const char *const *kv, emh_error *err)
{
	const char *name = conf->name;
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; kv && kv[i]; i += 2) {
			if (!kv[i + 1])
				return emh_error_set(err, EMH_EINVAL, "context '%s': key '%s' has no value", name, kv[i]);
			bool is_url = strcmp(kv[i], "url") == 0;
			if (is_url != (pass == 0))
				continue;
			char *v;
			int rc = emh__config_expand_api(kv[i + 1], emh__host_env(h), name, kv[i], &v, err);
			if (rc)
				return rc;
			if (is_url) {
				const emh_driver *dl[64];
				pthread_rwlock_rdlock(&h->lock); /* drivers stay; the array may move in a reload */
				size_t nd = h->ndrivers < 64 ? h->ndrivers : 64;
				for (size_t j = 0; j < nd; j++)
					dl[j] = &h->drivers[j]->d;
				pthread_rwlock_unlock(&h->lock);
				rc = emh__url_apply(conf, v, "api", dl, nd, err);
			} else {
				rc = emh__settings_set(&conf->s, kv[i], v, "api", NULL, 0, strcmp(kv[i], "password") == 0);
			}
			free(v);
			if (rc)
				return rc;
		}
	}
	return 0;
}

int emh_host_add_context(emh_host *h, const char *name, const char *const *kv, emh_error *err)
{
	if (!h || !name || !emh_ident_valid(name))
		return emh_error_set(err, EMH_EINVAL, "context name '%s' is not a valid identifier",
				     name ? name : "(null)");
	emh__ctxconf conf = {0};
	emh_context *c;
	int rc;
	if (!(conf.name = strdup(name)) || !(conf.origin = strdup("api"))) {
		rc = emh_error_set(err, EMH_ENOMEM, "out of memory");
		goto out_release;
	}
	if ((rc = conf_from_kv(h, &conf, kv, err)) != 0 || (rc = emh__context_create(h, &conf, &c, err)) != 0)
		goto out_release;
	if (c->required && (rc = emh__context_ping(c, err)) != 0)
		goto out_free;
	pthread_rwlock_wrlock(&h->lock);
	rc = emh__context_insert(h, c, err);
	pthread_rwlock_unlock(&h->lock);
	if (rc)
		goto out_free;
	return 0;
out_free:
	emh__context_free(c);
	return rc;
out_release:
	emh__ctxconf_release(&conf);
	return rc;
}

int emh_host_remove_context(emh_host *h, const char *name, emh_error *err)
{
	pthread_rwlock_wrlock(&h->lock);
	emh_context *c = name ? emh__context_find_locked(h, name) : NULL;
	if (!c) {
		char list[1024];
		emh__context_list_locked(h, list, sizeof list);
		pthread_rwlock_unlock(&h->lock);
		return emh_error_set(err, EMH_ENOCONTEXT, "no context '%s' (contexts: %s)", name ? name : "(null)",
				     list);
	}
	if (c == h->def) {
		pthread_rwlock_unlock(&h->lock);
		return emh_error_set(err, EMH_ESTATE, "context '%s' is the default and cannot be removed", name);
	}
	emh__context_unlink_locked(h, c);
	/* Out of the table first, then marked (and HIDDEN cleared, if no lookup
	 * ever took it): every reference still to come is a put, so the one that
	 * reaches zero is the last.  A lookup without the lock may take one
	 * before the mark, from a slot it read before the unlink: a fork begun
	 * before the removal, waited for like the others. */
	unsigned open = atomic_load_explicit(&c->hot->refs, memory_order_relaxed);
	while (!atomic_compare_exchange_weak_explicit(&c->hot->refs, &open,
						      (open & ~EMH__CTX_HIDDEN) | EMH__CTX_REMOVING,
						      memory_order_acq_rel, memory_order_relaxed))
		;
	open &= ~EMH__CTX_HIDDEN;
	pthread_rwlock_unlock(&h->lock);
	if (open) {
		atomic_fetch_add_explicit(&h->removals_waited, 1, memory_order_relaxed);
		pthread_mutex_lock(&c->mu);
		while (!c->drained)
			pthread_cond_wait(&c->cv, &c->mu);
		pthread_mutex_unlock(&c->mu);
	}
	emh__log(&h->log, EMH_LOG_INFO, c->name, "context removed");
	emh__context_free(c);
	return 0;
}

const char *emh_host_context_setting(emh_host *h, const char *name, const char *key)
{
	pthread_rwlock_rdlock(&h->lock);
	emh_context *c = emh__context_find_locked(h, name);
	const char *v = c ? emh__ctxconf_get(&c->conf, key) : NULL;
	pthread_rwlock_unlock(&h->lock);
	return v;
}

const char *emh_host_context_driver(emh_host *h, const char *name)
{
	pthread_rwlock_rdlock(&h->lock);
	emh_context *c = emh__context_find_locked(h, name);
	const char *v = c ? c->drv->d.name : NULL;
	pthread_rwlock_unlock(&h->lock);
	return v;
}
