/* SPDX-License-Identifier: MIT */
/*
 * core/meta.c: entities registered in a context: the host's deep copy of
 * each declaration, the keys it is found by, schema sync (at registration,
 * on a fork's first connection, or on demand) and drop.
 *
 * A context never points into the caller's memory: registration copies the
 * entity (entity.c) and drivers, the SQL compiler and forks use that copy.
 * The caller's pointer is kept only as a key, compared and never
 * dereferenced, so emh_em_repo(em, &user_entity) keeps working, and a
 * service module can be unloaded right after its fini while the context
 * goes on using what it registered.  A structurally identical declaration
 * from another pointer (two modules each compiled with `users`) becomes
 * another key of the same meta; a different entity on the same table is
 * refused.
 *
 * Readers (forks) walk the metas and their keys without a lock: both lists
 * only grow while the context lives, nodes are published with a release
 * store, and a forgotten key is an atomic NULL in its node.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "migrate_int.h"
#include "relation_int.h"

static bool meta_has_key(emh__meta *m, const emh_entity *e)
{
	for (emh__meta_key *k = atomic_load_explicit(&m->keys, memory_order_acquire); k; k = k->next)
		if (atomic_load_explicit(&k->key, memory_order_relaxed) == e)
			return true;
	return false;
}

emh__meta *emh__context_meta(emh_context *c, const emh_entity *e)
{
	emh__meta *first = atomic_load_explicit(&c->metas, memory_order_acquire);
	/* The host's copy first: what the service layer and the fork's own
	 * queries hand in. */
	for (emh__meta *m = first; m; m = m->next)
		if (m->pub.entity == e)
			return m;
	for (emh__meta *m = first; m; m = m->next)
		if (meta_has_key(m, e))
			return m;
	return NULL;
}

/* ---- keys (under c->mu) ---- */

/* Hold key e on m: one more registration, reusing a forgotten node when there is one. */
static int key_hold(emh__meta *m, const emh_entity *e)
{
	emh__meta_key *spare = NULL;
	for (emh__meta_key *k = atomic_load_explicit(&m->keys, memory_order_relaxed); k; k = k->next) {
		const emh_entity *have = atomic_load_explicit(&k->key, memory_order_relaxed);
		if (have == e) {
			k->holds++;
			return 0;
		}
		if (!have && !spare)
			spare = k;
	}
	if (spare) {
		spare->holds = 1;
		atomic_store_explicit(&spare->key, e, memory_order_relaxed);
		return 0;
	}
	emh__meta_key *k = calloc(1, sizeof *k);
	if (!k)
		return EMH_ENOMEM;
	k->holds = 1;
	atomic_init(&k->key, e);
	k->next = atomic_load_explicit(&m->keys, memory_order_relaxed);
	atomic_store_explicit(&m->keys, k, memory_order_release);
	return 0;
}

/* Release one hold of e on m (all of them when all is set). */
static void key_release(emh__meta *m, const emh_entity *e, bool all)
{
	for (emh__meta_key *k = atomic_load_explicit(&m->keys, memory_order_relaxed); k; k = k->next)
		if (atomic_load_explicit(&k->key, memory_order_relaxed) == e) {
			if (all || --k->holds == 0) {
				k->holds = 0;
				atomic_store_explicit(&k->key, NULL, memory_order_relaxed);
			}
			return;
		}
}

/* ---- registration ---- */

void emh__meta_free(emh__meta *m)
{
	emh__sql_free_meta(m);
	emh__meta_free_relations(m);
	pthread_mutex_destroy(&m->sync_mu);
	for (emh__meta_key *k = atomic_load(&m->keys), *n; k; k = n) {
		n = k->next;
		free(k);
	}
	free((void *)m->pub.entity);
	free(m);
}

/* A new meta of e in c, not yet published.  Called with c->mu held. */
static int meta_new(emh_context *c, const emh_entity *e, emh__meta **out, emh_error *err)
{
	emh__meta *m = calloc(1, sizeof *m);
	emh_entity *copy = m ? emh__entity_dup(e) : NULL;
	if (!copy || key_hold(m, e) != 0) {
		free(copy);
		free(m);
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	}
	m->ctx = c;
	m->pub.entity = copy;
	m->print = emh__entity_print(copy);
	m->pub.id = c->next_meta_id++;
	m->pub.context = c->name;
	m->version = -1;
	for (size_t i = 0; i < copy->nfields; i++) {
		const emh_field *f = &copy->fields[i];
		if (f->flags & EMH_F_VERSION)
			m->version = (int)i;
		if (f->flags & EMH_F_PK) {
			m->pub.pk = (int)i;
			m->pub.generated = (f->flags & EMH_F_GENERATED) != 0;
		}
		if ((f->flags & EMH_F_NULLABLE) && f->type != EMH_T_TEXT && f->type != EMH_T_JSON &&
		    f->type != EMH_T_BLOB)
			m->nullable_scalars |= UINT64_C(1) << i;
		if (f->flags & EMH_F_FILTER)
			m->filters |= UINT64_C(1) << i;
	}
	pthread_mutex_init(&m->sync_mu, NULL);
	int rc;
	/* A version is checked by a conditional write: a document driver
	 * without one could only overwrite, so say so now, not at a flush. */
	if (m->version >= 0 && !c->drv->d.dialect && !(c->drv->d.caps & EMH_CAP_CONDITIONAL_WRITES)) {
		rc = emh_error_set(err, EMH_EUNSUPPORTED,
				   "entity '%s' has a version field ('%s'), which driver '%s' cannot check "
				   "(no EMH_CAP_CONDITIONAL_WRITES)",
				   e->name, e->fields[m->version].name, c->drv->d.name);
		emh__meta_free(m);
		return rc;
	}
	if (c->drv->d.dialect && (rc = emh__sql_prepare_meta(m, c->drv->d.dialect, err)) != 0) {
		emh__meta_free(m);
		return rc;
	}
	*out = m;
	return 0;
}

/* One more key e on m, with e's relations, for meta_resolve. */
static int meta_alias(emh__meta *m, const emh_entity *e, emh__meta **out, emh_error *err)
{
	if (m->pub.entity == e) {
		*out = m; /* the host's copy: no key, no relations */
		return 0;
	}
	int rc = emh__meta_add_relations(m, e, err);
	if (rc)
		return rc;
	if (key_hold(m, e) != 0)
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	*out = m;
	return 0;
}

/*
 * Find or make the meta of e in c.  *added says a new meta was published
 * (its schema not synced yet).  Called with c->mu held.
 */
static int meta_resolve(emh_context *c, const emh_entity *e, emh__meta **out, bool *added, emh_error *err)
{
	*added = false;
	emh__meta *m = emh__context_meta(c, e);
	if (m && emh__entity_same(m->pub.entity, e))
		return meta_alias(m, e, out, err); /* registered again: one more hold */
	if (m) /* the memory behind an old key now holds another declaration */
		key_release(m, e, true);
	for (m = atomic_load_explicit(&c->metas, memory_order_relaxed); m; m = m->next) {
		if (strcmp(m->pub.entity->table, e->table) != 0)
			continue;
		if (!emh__entity_same(m->pub.entity, e))
			return emh_error_set(err, EMH_ECONFIG, "context '%s': entities '%s' and '%s' both map to table '%s'",
					     c->name, m->pub.entity->name, e->name, e->table);
		return meta_alias(m, e, out, err); /* the same declaration from elsewhere */
	}
	int rc = meta_new(c, e, &m, err);
	if (rc)
		return rc;
	if ((rc = emh__meta_add_relations(m, e, err)) != 0) {
		emh__meta_free(m);
		return rc;
	}
	m->next = atomic_load_explicit(&c->metas, memory_order_relaxed);
	atomic_fetch_add_explicit(&c->unsynced, 1, memory_order_relaxed);
	atomic_store_explicit(&c->metas, m, memory_order_release);
	*out = m;
	*added = true;
	return 0;
}

int emh__meta_register(emh_host *h, const char *name, const emh_entity *e, const emh_entity **copy,
		       emh_error *err)
{
	if (copy)
		*copy = NULL;
	int rc = emh_entity_validate(e, err);
	if (rc)
		return rc;
	emh_context *c = emh__host_get_context(h, name, err);
	if (!c)
		return EMH_ENOCONTEXT;
	emh__meta *m = NULL;
	bool added;
	pthread_mutex_lock(&c->mu);
	rc = meta_resolve(c, e, &m, &added, err);
	pthread_mutex_unlock(&c->mu);
	if (rc) {
		/* Named before the reference goes: a removal waiting for it frees c. */
		rc = emh_error_context(err, rc, c->name);
		emh__context_put(c);
		return rc;
	}
	if (copy)
		*copy = m->pub.entity;
	pthread_mutex_lock(&c->pool.mu);
	bool up = c->pool.up;
	pthread_mutex_unlock(&c->pool.mu);
	/* emh_migrations (the core's own) is created by `migrate up` only: status creates nothing */
	if (added && c->schema_sync && up && !atomic_load_explicit(&c->hot->refusal, memory_order_acquire) &&
	    strcmp(e->table, EMH__MIGRATIONS_TABLE) != 0) {
		/* Now, if the database is reachable (one attempt: a database known
		 * to be down is not tried for each entity); else the first fork
		 * that takes a connection does it. */
		emh__pconn *pc;
		emh_error ignored;
		if (emh__pool_acquire(&c->pool, &pc, &ignored) == 0) {
			rc = emh__meta_sync(m, pc->conn, false, err);
			emh__pool_release(&c->pool, pc, rc);
			/* schema = "check": a difference refuses the context, not the
			 * registration (the daemon goes on serving the others) */
			if (rc == EMH_ESCHEMA && c->schema_check && atomic_load(&c->hot->refusal))
				rc = 0;
			if (rc)
				emh__error_in_context(err, rc, c->name);
		}
	}
	emh__context_put(c);
	return rc;
}

int emh_host_register_entity(emh_host *h, const char *name, const emh_entity *e, emh_error *err)
{
	return emh__meta_register(h, name, e, NULL, err);
}

void emh__meta_forget(emh_host *h, const char *name, const emh_entity *key)
{
	emh_context *c = emh__host_get_context(h, name, NULL);
	if (!c)
		return;
	pthread_mutex_lock(&c->mu);
	for (emh__meta *m = atomic_load_explicit(&c->metas, memory_order_relaxed); m; m = m->next)
		key_release(m, key, false);
	pthread_mutex_unlock(&c->mu);
	emh__context_put(c);
}

int emh_host_entity(emh_host *h, const char *name, const char *table, const emh_entity **out, emh_error *err)
{
	*out = NULL;
	emh_context *c = emh__host_get_context(h, name, err);
	if (!c)
		return EMH_ENOCONTEXT;
	char list[512];
	size_t off = 0;
	list[0] = '\0';
	for (emh__meta *m = atomic_load_explicit(&c->metas, memory_order_acquire); m; m = m->next) {
		if (table && strcmp(m->pub.entity->table, table) == 0) {
			*out = m->pub.entity;
			break;
		}
		if (off < sizeof list)
			off += (size_t)snprintf(list + off, sizeof list - off, "%s%s", off ? ", " : "",
						m->pub.entity->table);
	}
	int rc = 0;
	if (!*out) {
		emh_error_set(err, EMH_ENOENTITY, "context '%s': no entity on table '%s' is registered (tables: %s)",
			      c->name, table ? table : "(null)", off ? list : "none");
		rc = emh_error_context(err, EMH_ENOENTITY, c->name);
	}
	emh__context_put(c);
	return rc;
}

/* ---- schema ---- */

int emh__meta_sync(emh__meta *m, emh_conn *conn, bool force, emh_error *err)
{
	if (!force && atomic_load_explicit(&m->synced, memory_order_acquire))
		return 0;
	pthread_mutex_lock(&m->sync_mu);
	int rc = 0;
	if (force || !atomic_load(&m->synced)) {
		/* schema = "check" compares and refuses instead of creating */
		rc = m->ctx->schema_check && !force ? emh__schema_check(m, conn, err)
						    : m->ctx->drv->d.sync(conn, &m->pub, err);
		if (rc == 0 && !atomic_exchange_explicit(&m->synced, 1, memory_order_acq_rel))
			atomic_fetch_sub_explicit(&m->ctx->unsynced, 1, memory_order_release);
	}
	pthread_mutex_unlock(&m->sync_mu);
	return rc;
}

/* Run fn on every entity of the context, on one pooled connection; stops at the first failure. */
static int each_meta(emh_host *h, const char *name, int (*fn)(emh__meta *m, emh_conn *conn, emh_error *err),
		     emh_error *err)
{
	emh_context *c = emh__host_get_context(h, name, err);
	if (!c)
		return EMH_ENOCONTEXT;
	emh__pconn *pc;
	int rc = emh__pool_acquire(&c->pool, &pc, err);
	if (rc == 0) {
		for (emh__meta *m = atomic_load(&c->metas); m && rc == 0; m = m->next)
			rc = fn(m, pc->conn, err);
		emh__pool_release(&c->pool, pc, rc);
	}
	if (rc)
		emh__error_in_context(err, rc, c->name);
	emh__context_put(c);
	return rc;
}

static int meta_sync_now(emh__meta *m, emh_conn *conn, emh_error *err) { return emh__meta_sync(m, conn, true, err); }

int emh_host_sync_schema(emh_host *h, const char *name, emh_error *err)
{
	return each_meta(h, name, meta_sync_now, err);
}

/* Drop m's table: the driver's drop, else DROP TABLE through execute.  Marks it unsynced. */
static int meta_drop(emh__meta *m, emh_conn *conn, emh_error *err)
{
	const emh_driver *d = &m->ctx->drv->d;
	if (!d->drop && !d->dialect)
		return emh_error_set(err, EMH_EUNSUPPORTED, "driver '%s' cannot drop tables (it has no drop member)",
				     d->name);
	int rc;
	pthread_mutex_lock(&m->sync_mu);
	if (d->drop) {
		rc = d->drop(conn, &m->pub, err);
	} else {
		emh_buf sql = EMH_BUF_INIT;
		emh_buf_adds(&sql, "DROP TABLE IF EXISTS ");
		emh_buf_ident(&sql, d->dialect, m->pub.entity->table);
		rc = sql.oom ? emh_error_set(err, EMH_ENOMEM, "out of memory") : d->execute(conn, sql.ptr, err);
		emh_buf_release(&sql);
	}
	if (rc == 0 && atomic_exchange_explicit(&m->synced, 0, memory_order_acq_rel))
		atomic_fetch_add_explicit(&m->ctx->unsynced, 1, memory_order_release);
	pthread_mutex_unlock(&m->sync_mu);
	return rc ? emh_error_prefix(err, rc, "drop of table '%s': ", m->pub.entity->table) : 0;
}

int emh_host_drop_schema(emh_host *h, const char *name, emh_error *err)
{
	return each_meta(h, name, meta_drop, err);
}
