/* SPDX-License-Identifier: MIT */
/*
 * core/service.c: service modules and the services object: loading (file,
 * descriptor checks), dependency injection (needs resolved to contexts of
 * the host, entities registered there), init and fini.  Scopes are in
 * scope.c, requests and responses in response.c.
 *
 * Services are a layer over the host: the caller owns an emh_services made
 * on a host and frees it before the host, and the host knows nothing of
 * services.  That works because a context keeps its own deep copy of every
 * entity registered in it (meta.c): a module's declarations are only keys
 * there, which the module forgets when it is unloaded, so a module is
 * dlclosed right after its fini, or at once when it fails to load, while
 * the contexts go on using what it registered.
 *
 * Two modules may declare the same table (profile reads the users that
 * users writes): each registers its own copy of the declaration, and the
 * host resolves a structurally identical one to the entity already there;
 * a different entity on the same table is refused at load.
 */
#include "config.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "relation_int.h"
#include "service_int.h"

/* The descriptor must reach at least the last required member of ABI 1.0. */
#define SVC_MIN_STRUCT_SIZE (offsetof(emh_service, handle) + sizeof(void *))
#define SVC_MAX_NEEDS 64

/* ---- small helpers ---- */

/* "default, analytics" into buf: the contexts of the host. */
static const char *context_list(emh_host *h, char *buf, size_t cap)
{
	buf[0] = '\0';
	emh_context_info *infos = NULL;
	size_t n = 0;
	emh_error err;
	if (emh_host_contexts(h, &infos, &n, &err) == 0) {
		for (size_t i = 0; i < n; i++)
			emh__list_add(buf, cap, infos[i].name);
		emh_context_info_free(infos, n);
	}
	if (!buf[0])
		snprintf(buf, cap, "(none)");
	return buf;
}

const char *emh__declared_list(const emh_service *d, char *buf, size_t cap)
{
	buf[0] = '\0';
	for (size_t i = 0; i < d->nneeds; i++) {
		const char *name = emh__declared_name(d->needs[i].context);
		bool seen = false;
		for (size_t j = 0; j < i && !seen; j++)
			seen = strcmp(emh__declared_name(d->needs[j].context), name) == 0;
		if (!seen)
			emh__list_add(buf, cap, name);
	}
	if (!buf[0])
		snprintf(buf, cap, "(none)");
	return buf;
}

static bool module_name_valid(const char *s)
{
	if (!s || !*s || strlen(s) > 128)
		return false;
	for (const char *p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		      *p == '_' || *p == '-' || *p == '.'))
			return false;
	return s[0] != '.';
}

/* ---- descriptor checks ---- */

/*
 * Copy src into *local the way the ABI promises (zero-extended, extra members
 * ignored) and check it.  sym_size is the size of a module's descriptor
 * symbol, 0 for a static descriptor.  On refusal, why says what is wrong.
 */
static int desc_check(const emh_service *src, size_t sym_size, emh_service *local, char *why, size_t cap)
{
	if (!src) {
		snprintf(why, cap, "descriptor is NULL");
		return EMH_EPLUGIN;
	}
	if (sym_size && !emh__desc_fits(EMH_SERVICE_SYMBOL, sym_size, SVC_MIN_STRUCT_SIZE, EMH_SERVICE_ABI_MAJOR, src,
					why, cap))
		return EMH_EPLUGIN;
	if ((src->abi_version >> 16) != EMH_SERVICE_ABI_MAJOR) {
		snprintf(why, cap, "service ABI major %u, this host speaks %u (rebuild the module against this emhost)",
			 (unsigned)(src->abi_version >> 16), EMH_SERVICE_ABI_MAJOR);
		return EMH_EPLUGIN;
	}
	if (src->struct_size < SVC_MIN_STRUCT_SIZE) {
		snprintf(why, cap, "descriptor struct_size %u is smaller than the minimum %zu of ABI %u.0",
			 (unsigned)src->struct_size, SVC_MIN_STRUCT_SIZE, EMH_SERVICE_ABI_MAJOR);
		return EMH_EPLUGIN;
	}
	memset(local, 0, sizeof *local);
	memcpy(local, src, src->struct_size < sizeof *local ? src->struct_size : sizeof *local);
	if (!local->name || !emh_ident_valid(local->name)) {
		snprintf(why, cap, "descriptor has no valid name");
		return EMH_EPLUGIN;
	}
	if (!local->version) {
		snprintf(why, cap, "service '%s': descriptor has no version", local->name);
		return EMH_EPLUGIN;
	}
	if (!local->handle && !local->nroutes) {
		snprintf(why, cap, "service '%s': required member handle is NULL (and no routes are declared)",
			 local->name);
		return EMH_EPLUGIN;
	}
	if (emh__routes_check(local, why, cap) != 0)
		return EMH_EPLUGIN;
	if (local->nneeds > SVC_MAX_NEEDS || (local->nneeds && !local->needs)) {
		snprintf(why, cap, "service '%s': needs array is missing or longer than %d", local->name,
			 SVC_MAX_NEEDS);
		return EMH_EPLUGIN;
	}
	for (size_t i = 0; i < local->nneeds; i++) {
		const emh_need *n = &local->needs[i];
		if (n->context && !emh_ident_valid(n->context)) {
			snprintf(why, cap, "service '%s': need %zu: context name is not a valid identifier",
				 local->name, i);
			return EMH_EPLUGIN;
		}
		emh_error e;
		if (n->entity && emh_entity_validate(n->entity, &e) != 0) {
			emh__msgf(why, cap, "service '%s': need %zu: %s", local->name, i, e.message);
			return EMH_EPLUGIN;
		}
	}
	return 0;
}

/*
 * Open a module file and find its descriptor, checked: the directory it is
 * in as a plugin directory, the file as every plugin file (loader.c).  *dl
 * stays open on success.
 */
static int module_open(const emh__logger *log, const char *path, void **dl, const emh_service **src,
		       emh_service *local, emh_error *err)
{
	char why[512], dir[4096];
	size_t size;
	int rc;
	const char *slash = strrchr(path, '/');
	snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) + (slash == path) : 1, slash ? path : ".");
	if (!emh__plugin_dir_ok(log, dir, "service directory", why, sizeof why))
		return emh_error_set(err, EMH_EPLUGIN, "service module '%s': %s", path, why);
	if (!(*src = emh__plugin_open(log, path, EMH_SERVICE_SYMBOL, "service module", dl, &size, why, sizeof why)))
		return emh_error_set(err, EMH_EPLUGIN, "service module '%s': %s", path, why);
	rc = desc_check(*src, size, local, why, sizeof why);
	if (rc) {
		emh_error_set(err, rc, "service module '%s': %s", path, why);
		goto out_close;
	}
	return 0;
out_close:
	dlclose(*dl);
	*dl = NULL;
	return rc;
}

int emh_service_check_file(const char *path, emh_error *err)
{
	void *dl = NULL;
	const emh_service *src;
	emh_service local;
	if (!path)
		return emh_error_set(err, EMH_EINVAL, "no service module path given");
	int rc = module_open(NULL, path, &dl, &src, &local, err);
	if (rc == 0)
		dlclose(dl);
	return rc;
}

/* ---- the services object ---- */

int emh_services_new(emh_host *h, emh_services **out, emh_error *err)
{
	*out = NULL;
	if (!h)
		return emh_error_set(err, EMH_EINVAL, "no host given");
	emh_services *s = calloc(1, sizeof *s);
	if (!s)
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	s->magic = EMH__SERVICES_MAGIC;
	s->host = h;
	pthread_mutex_init(&s->add_mu, NULL);
	pthread_rwlock_init(&s->lock, NULL);
	atomic_fetch_add_explicit(&h->services_alive, 1, memory_order_relaxed);
	*out = s;
	return 0;
}

emh_host *emh_services_host(const emh_services *s) { return s ? s->host : NULL; }

emh_svc *emh__services_find_locked(const emh_services *s, const char *name)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->v[i]->name, name) == 0)
			return s->v[i];
	return NULL;
}

emh_svc *emh_services_get(emh_services *s, const char *name)
{
	if (!s || !name)
		return NULL;
	pthread_rwlock_rdlock(&s->lock);
	emh_svc *svc = emh__services_find_locked(s, name);
	pthread_rwlock_unlock(&s->lock);
	return svc;
}

emh_svc *emh_services_at(emh_services *s, size_t i)
{
	if (!s)
		return NULL;
	pthread_rwlock_rdlock(&s->lock);
	emh_svc *svc = i < s->n ? s->v[i] : NULL;
	pthread_rwlock_unlock(&s->lock);
	return svc;
}

/*
 * Take a service out of the host and free it: its registrations are
 * forgotten (the contexts keep their copies of its entities, but its
 * addresses no longer find them), then the module is closed.  fini has run.
 */
static void svc_unload(emh_svc *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->nneeds; i++)
		if (s->needs[i].reg)
			emh__meta_forget(s->host, s->ctx[s->needs[i].ctx], s->needs[i].entity);
	if (s->dl)
		dlclose(s->dl);
	for (size_t i = 0; i < s->nctx; i++)
		free(s->ctx[i]);
	free(s->ctx);
	free(s->rels);
	free(s->needs);
	emh__routes_free(s->routes);
	emh__settings_release(&s->settings);
	free(s->name);
	free(s->file);
	free(s);
}

void emh_services_free(emh_services *s)
{
	if (!s)
		return;
	/* Reverse load order, each module unloaded right after its fini: a
	 * module loaded later may use what an earlier one set up, never the
	 * other way round. */
	for (size_t i = s->n; i-- > 0;) {
		emh_svc *svc = s->v[i];
		if (svc->inited && svc->desc.fini)
			svc->desc.fini(svc, svc->state);
		svc_unload(svc);
	}
	free(s->v);
	atomic_fetch_sub_explicit(&s->host->services_alive, 1, memory_order_relaxed);
	pthread_rwlock_destroy(&s->lock);
	pthread_mutex_destroy(&s->add_mu);
	s->magic = 0;
	free(s);
}

/* ---- resolution ---- */

/* Index of context name in s->ctx, added when new; -1 on out of memory. */
static ssize_t svc_ctx_index(emh_svc *s, const char *name)
{
	for (size_t i = 0; i < s->nctx; i++)
		if (strcmp(s->ctx[i], name) == 0)
			return (ssize_t)i;
	char **v = realloc(s->ctx, (s->nctx + 1) * sizeof *v);
	if (!v)
		return -1;
	s->ctx = v;
	if (!(v[s->nctx] = strdup(name)))
		return -1;
	return (ssize_t)s->nctx++;
}

/*
 * Map every declared context through the remap and check it exists.  The
 * remap may only name contexts the module declares (a typo would otherwise
 * silently inject nothing).
 */
static int svc_resolve_contexts(emh_svc *s, const emh__settings *remap, emh_error *err)
{
	emh_host *h = s->host;
	char list[1024];
	for (size_t i = 0; i < remap->n; i++) {
		const char *key = remap->v[i].key;
		bool declared = false;
		for (size_t j = 0; j < s->desc.nneeds && !declared; j++)
			declared = strcmp(emh__declared_name(s->desc.needs[j].context), key) == 0;
		if (!declared)
			return emh_error_set(err, EMH_ECONFIG,
					     "%s%sservice '%s' remaps context '%s' but declares no such context (declares: %s)",
					     remap->v[i].origin ? remap->v[i].origin : "",
					     remap->v[i].origin ? ": " : "", s->name, key,
					     emh__declared_list(&s->desc, list, sizeof list));
	}
	s->needs = calloc(s->desc.nneeds ? s->desc.nneeds : 1, sizeof *s->needs);
	if (!s->needs)
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	s->nneeds = s->desc.nneeds;
	for (size_t i = 0; i < s->nneeds; i++) {
		const emh_need *n = &s->desc.needs[i];
		const emh__setting *rm = emh__settings_find(remap, emh__declared_name(n->context));
		const char *actual = rm ? rm->value : n->context ? n->context : emh_host_default_context(h);
		if (!actual)
			return emh_error_set(err, EMH_ENOCONTEXT,
					     "service '%s' needs the default context; no context is configured",
					     s->name);
		if (!emh_host_context_driver(h, actual)) {
			context_list(h, list, sizeof list);
			if (rm)
				return emh_error_set(err, EMH_ENOCONTEXT,
						     "service '%s' needs context '%s' (declared as '%s', remapped%s%s); contexts: %s",
						     s->name, actual, emh__declared_name(n->context),
						     rm->origin ? " at " : "", rm->origin ? rm->origin : "", list);
			return emh_error_set(err, EMH_ENOCONTEXT, "service '%s' needs context '%s'; contexts: %s",
					     s->name, actual, list);
		}
		ssize_t ci = svc_ctx_index(s, actual);
		if (ci < 0)
			return emh_error_set(err, EMH_ENOMEM, "out of memory");
		s->needs[i].declared = n->context;
		s->needs[i].entity = n->entity;
		s->needs[i].ctx = (size_t)ci;
	}
	return 0;
}

/*
 * The service of v[0..n) that needs a different entity on e's table in
 * context ctx, for a refusal that names it; NULL when none does.  For the
 * loaded services, called with s->add_mu held (v changes only under it).
 */
static const emh__svc_need *entity_owner(emh_svc *const *v, size_t n, const char *ctx, const emh_entity *e,
					 const emh_svc **owner)
{
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < v[i]->nneeds; j++) {
			const emh__svc_need *nd = &v[i]->needs[j];
			if (nd->entity && strcmp(v[i]->ctx[nd->ctx], ctx) == 0 &&
			    strcmp(nd->entity->table, e->table) == 0 && !emh__entity_same(nd->entity, e)) {
				*owner = v[i];
				return nd;
			}
		}
	return NULL;
}

/* The refusal of svc's need n because owner's need theirs puts another entity on its table. */
static int err_entity_clash(const emh_svc *svc, const emh__svc_need *n, const emh_svc *owner,
			    const emh__svc_need *theirs, emh_error *err)
{
	const char *ctx = svc->ctx[n->ctx];
	emh_error_set(err, EMH_ECONFIG,
		      "service '%s' needs entity '%s' on table '%s' in context '%s', but service '%s' "
		      "registered a different entity '%s' on that table",
		      svc->name, n->entity->name, n->entity->table, ctx, owner->name, theirs->entity->name);
	return emh_error_context(err, EMH_ECONFIG, ctx);
}

/*
 * Register the entities of svc in their contexts; each need then holds the
 * host's copy (reg), and svc_unload forgets the module's keys.  Called with
 * s->add_mu held.
 */
static int svc_register_entities(emh_services *s, emh_svc *svc, emh_error *err)
{
	for (size_t i = 0; i < svc->nneeds; i++) {
		emh__svc_need *n = &svc->needs[i];
		if (!n->entity)
			continue;
		const char *ctx = svc->ctx[n->ctx];
		emh_error e;
		/* reg is set whenever the key is held, even when a schema sync
		 * after the registration failed: svc_unload must forget it. */
		int rc = emh__meta_register(svc->host, ctx, n->entity, &n->reg, &e);
		if (rc == 0)
			continue;
		const emh_svc *owner;
		const emh__svc_need *theirs =
			rc == EMH_ECONFIG ? entity_owner(s->v, s->n, ctx, n->entity, &owner) : NULL;
		if (theirs)
			return err_entity_clash(svc, n, owner, theirs, err);
		emh_error_set(err, rc, "service '%s' needs entity '%s' in context '%s': %s", svc->name,
			      n->entity->name, ctx, e.message);
		return emh_error_context(err, rc, ctx);
	}
	return 0;
}

/* Is need n the entity e (the same declaration, or one of the same structure)? */
static bool need_is(const emh__svc_need *n, const emh_entity *e, bool e_valid)
{
	return n->entity && (n->entity == e || (e_valid && emh__entity_same(n->entity, e)));
}

/* The relation called name of the entity svc registered for need n; NULL if none. */
static const emh__rel *need_rel(emh_svc *svc, const emh__svc_need *n, const char *name)
{
	emh_context *c = emh__host_get_context(svc->host, svc->ctx[n->ctx], NULL);
	if (!c)
		return NULL;
	const emh__meta *m = emh__context_meta(c, n->reg);
	const emh__rel *r = m ? emh__meta_rel(m, name) : NULL;
	emh__context_put(c);
	return r;
}

/*
 * Resolve the relations of svc's entities through its needs: a relation's
 * target (and a many_to_many's join entity) must be an entity the service
 * declares, in one context (or the one the relation names), so that a
 * scope finds its fork without looking anything up by name.  With store,
 * after registration, the resolution is kept for the scopes; without, it is
 * only checked (emh_services_check).
 */
static int svc_resolve_relations(emh_svc *svc, bool store, emh_error *err)
{
	char list[512];
	for (size_t i = 0; i < svc->nneeds; i++) {
		const emh__svc_need *n = &svc->needs[i];
		const emh_entity *e = n->entity;
		for (size_t f = 0; e && f < e->nfields; f++) {
			if (e->fields[f].type != EMH_T_RELATION)
				continue;
			const char *rn = e->fields[f].name;
			emh_relation rl;
			emh__relation_read(e->fields[f].relation, &rl);
			bool tvalid = emh_entity_validate(rl.target, NULL) == 0;
			ssize_t ci = -1;
			for (size_t j = 0; j < svc->nneeds; j++) {
				const emh__svc_need *t = &svc->needs[j];
				if (!need_is(t, rl.target, tvalid) ||
				    (rl.context && strcmp(emh__declared_name(t->declared), rl.context) != 0))
					continue;
				if (ci >= 0 && (size_t)ci != t->ctx)
					return emh_error_set(err, EMH_ECONFIG,
							     "service '%s': relation '%s' of entity '%s' targets entity '%s', "
							     "which the service declares in contexts '%s' and '%s' (name one "
							     "in the relation's context)",
							     svc->name, rn, e->name, rl.target->name, svc->ctx[ci],
							     svc->ctx[t->ctx]);
				ci = (ssize_t)t->ctx;
			}
			if (ci < 0)
				return emh_error_set(err, EMH_ENOENTITY,
						     "service '%s': relation '%s' of entity '%s' targets entity '%s'%s%s%s, "
						     "which the service does not declare (declares contexts: %s; add "
						     "EMH_NEED_REPO of it)",
						     svc->name, rn, e->name, rl.target->name, rl.context ? " in context '" : "",
						     rl.context ? rl.context : "", rl.context ? "'" : "",
						     emh__declared_list(&svc->desc, list, sizeof list));
			if (rl.kind == EMH_REL_MANY_TO_MANY) {
				bool jvalid = emh_entity_validate(rl.through, NULL) == 0, have = false;
				for (size_t j = 0; j < svc->nneeds && !have; j++)
					have = need_is(&svc->needs[j], rl.through, jvalid) && svc->needs[j].ctx == (size_t)ci;
				if (!have)
					return emh_error_set(err, EMH_ENOENTITY,
							     "service '%s': relation '%s' of entity '%s' joins through entity "
							     "'%s', which the service does not declare in context '%s' (the "
							     "target's)",
							     svc->name, rn, e->name, rl.through->name, svc->ctx[ci]);
			}
			if (!store)
				continue;
			const emh__rel *r = need_rel(svc, n, rn);
			if (!r)
				return emh_error_set(err, EMH_ENOENTITY, "service '%s': relation '%s' of entity '%s' is not "
						     "registered in context '%s'", svc->name, rn, e->name, svc->ctx[n->ctx]);
			emh__svc_rel *v = realloc(svc->rels, (svc->nrels + 1) * sizeof *v);
			if (!v)
				return emh_error_set(err, EMH_ENOMEM, "out of memory");
			svc->rels = v;
			v[svc->nrels++] = (emh__svc_rel){.rel = r, .ctx = (size_t)ci};
		}
	}
	return 0;
}

/*
 * A new service of s called name (valid, not loaded yet) for the checked
 * descriptor local of file; it holds no module yet.  Called with s->add_mu
 * held.
 */
static int svc_new(emh_services *s, const emh_service *local, const char *file, const char *name, emh_svc **out,
		   emh_error *err)
{
	*out = NULL;
	if (!emh_ident_valid(name))
		return emh_error_set(err, EMH_ECONFIG, "service name '%s' is not a valid identifier", name);
	/* Only adding changes v, and we hold add_mu: no read lock needed. */
	emh_svc *dup = emh__services_find_locked(s, name);
	if (dup)
		return emh_error_set(err, EMH_ECONFIG, "service '%s' is already loaded (from %s)", name, dup->file);
	emh_svc *svc = calloc(1, sizeof *svc);
	if (!svc || !(svc->name = strdup(name)) || !(svc->file = strdup(file)) ||
	    !(svc->routes = emh__routes_compile(local))) {
		svc_unload(svc);
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	}
	svc->owner = s;
	svc->host = s->host;
	svc->desc = *local;
	*out = svc;
	return 0;
}

/*
 * Check, resolve, register and initialise one service; on success it is in
 * s and owns dl.  On failure everything it registered is forgotten and dl is
 * closed at once: the contexts hold copies, never the module's memory.
 */
static int svc_add(emh_services *s, const emh_service *local, void *dl, const char *file, const char *name,
		   const emh__settings *remap, emh__settings *settings, emh_error *err)
{
	emh_error scratch;
	if (!err)
		err = &scratch;
	if (!name)
		name = local->name;
	int rc;
	emh_svc *svc = NULL;
	pthread_mutex_lock(&s->add_mu);
	if ((rc = svc_new(s, local, file, name, &svc, err)) != 0)
		goto out_unlock;
	svc->dl = dl;
	dl = NULL;
	svc->settings = *settings;
	memset(settings, 0, sizeof *settings);
	if ((rc = svc_resolve_contexts(svc, remap, err)) != 0 || (rc = svc_register_entities(s, svc, err)) != 0 ||
	    (rc = svc_resolve_relations(svc, true, err)) != 0)
		goto out_unlock;
	if (svc->desc.init) {
		err->code = 0;
		err->message[0] = '\0';
		rc = svc->desc.init(svc, &svc->state, err);
		if (rc) {
			char msg[EMH_ERROR_MSG_MAX];
			snprintf(msg, sizeof msg, "%s", err->message[0] ? err->message : emh_strerror(rc));
			emh_error_set(err, rc, "service '%s': init failed: %s", svc->name, msg);
			goto out_unlock;
		}
	}
	/* init ran, or there is none: fini is owed from here on either way */
	svc->inited = true;
	pthread_rwlock_wrlock(&s->lock);
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 8;
		emh_svc **v = realloc(s->v, cap * sizeof *v);
		if (!v) {
			pthread_rwlock_unlock(&s->lock);
			rc = emh_error_set(err, EMH_ENOMEM, "out of memory");
			goto out_fini;
		}
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n++] = svc;
	pthread_rwlock_unlock(&s->lock);
	pthread_mutex_unlock(&s->add_mu);
	char ctxs[512] = "";
	for (size_t i = 0; i < svc->nctx; i++)
		emh__list_add(ctxs, sizeof ctxs, svc->ctx[i]);
	emh__log(&s->host->log, EMH_LOG_INFO, NULL, "service '%s' %s loaded from %s (contexts: %s)", svc->name,
		 svc->desc.version, file, ctxs[0] ? ctxs : "none");
	return 0;

out_fini:
	if (svc->inited && svc->desc.fini)
		svc->desc.fini(svc, svc->state);
out_unlock:
	svc_unload(svc);
	pthread_mutex_unlock(&s->add_mu);
	if (dl)
		dlclose(dl);
	return rc;
}

/* key, value, ..., NULL into settings (origin "api"). */
static int kv_to_settings(const char *const *kv, emh__settings *out, const char *what, emh_error *err)
{
	for (size_t i = 0; kv && kv[i]; i += 2) {
		if (!kv[i + 1])
			return emh_error_set(err, EMH_EINVAL, "service %s list has a key '%s' without value", what,
					     kv[i]);
		if (emh__settings_set(out, kv[i], kv[i + 1], "api", NULL, 0, false) != 0)
			return emh_error_set(err, EMH_ENOMEM, "out of memory");
	}
	return 0;
}

int emh_services_add(emh_services *s, const emh_service *desc, const emh_service_opts *opts, emh_error *err)
{
	char why[512];
	emh_service local;
	if (!s)
		return emh_error_set(err, EMH_EINVAL, "no services object given");
	int rc = desc_check(desc, 0, &local, why, sizeof why);
	if (rc)
		return emh_error_set(err, rc, "service (static): %s", why);
	emh__settings remap = {0}, settings = {0};
	if ((rc = kv_to_settings(opts ? opts->remap : NULL, &remap, "remap", err)) == 0 &&
	    (rc = kv_to_settings(opts ? opts->settings : NULL, &settings, "settings", err)) == 0)
		rc = svc_add(s, &local, NULL, "(static)", opts ? opts->name : NULL, &remap, &settings, err);
	emh__settings_release(&remap);
	emh__settings_release(&settings);
	return rc;
}

/* The compiled-in service directory: the plugin directory's sibling. */
static void default_service_dir(char *buf, size_t cap)
{
	const char *p = EMH_PLUGIN_DIR;
	size_t n = strlen(p);
	if (n >= 8 && strcmp(p + n - 8, "/plugins") == 0)
		snprintf(buf, cap, "%.*s/services", (int)(n - 8), p);
	else
		snprintf(buf, cap, "%s/../services", p);
}

/* The directory modules are loaded from: service_dir, else the compiled-in one. */
/* As for plugins: the file's service_dir, else $EMH_SERVICE_DIR, else the compiled-in one. */
static void config_service_dir(emh_host *h, const emh__config *cfg, char *buf, size_t cap)
{
	const char *env_dir = emh__getenv(emh__host_env(h), "EMH_SERVICE_DIR");
	if (cfg->service_dir.value && cfg->service_dir.value[0])
		snprintf(buf, cap, "%s", cfg->service_dir.value);
	else if (env_dir && env_dir[0])
		snprintf(buf, cap, "%s", env_dir);
	else
		default_service_dir(buf, cap);
}

/*
 * A configured module that is not in dir: say so with where it was asked
 * for, the closest module there and the ones there are (a misspelt module
 * is the usual cause).
 */
static int err_no_module(const emh__svcconf *sc, const char *module, const char *dir, emh_error *err)
{
	char have[1024] = "", best[256] = "";
	size_t bestd = 3;
	struct dirent **names;
	int n = scandir(dir, &names, NULL, alphasort);
	for (int i = 0; i < n; i++) {
		const char *f = names[i]->d_name;
		size_t len = strlen(f);
		if (len > 3 && f[0] != '.' && strcmp(f + len - 3, ".so") == 0) {
			char stem[256];
			snprintf(stem, sizeof stem, "%.*s", (int)(len - 3), f);
			emh__list_add(have, sizeof have, stem);
			size_t d = emh__edit_distance(module, stem);
			if (d < bestd) {
				bestd = d;
				snprintf(best, sizeof best, "%s", stem);
			}
		}
		free(names[i]);
	}
	if (n >= 0)
		free(names);
	return emh_error_set(err, EMH_EPLUGIN, "%s%sservice '%s': no module '%s.so' in %s (%s%s%smodules there: %s)",
			     sc->origin ? sc->origin : "", sc->origin ? ": " : "", sc->name ? sc->name : "?", module,
			     dir, best[0] ? "did you mean '" : "", best, best[0] ? "'? " : "",
			     n < 0 ? strerror(errno) : have[0] ? have : "none");
}

/* Open the module of the configured service sc from dir, checked (as module_open); its file into path. */
static int config_module_open(const emh__logger *log, const emh__svcconf *sc, const char *dir, char *path,
			      size_t cap, void **dl, emh_service *local, emh_error *err)
{
	const char *module = sc->module ? sc->module : sc->name;
	const emh_service *src;
	if (!module_name_valid(module))
		return emh_error_set(err, EMH_ECONFIG, "%s%sservice '%s': module name '%s' is not a file stem",
				     sc->origin ? sc->origin : "", sc->origin ? ": " : "", sc->name ? sc->name : "?",
				     module ? module : "");
	if ((size_t)snprintf(path, cap, "%s/%s.so", dir, module) >= cap)
		return emh_error_set(err, EMH_ECONFIG, "service '%s': module path '%s/%s.so' is too long",
				     sc->name ? sc->name : "?", dir, module);
	struct stat st;
	if (stat(path, &st) != 0 && errno == ENOENT)
		return err_no_module(sc, module, dir, err);
	return module_open(log, path, dl, &src, local, err);
}

int emh_services_load(emh_services *s, emh_error *err)
{
	if (!s)
		return emh_error_set(err, EMH_EINVAL, "no services object given");
	const emh__config *cfg = emh__host_config(s->host);
	if (!cfg || cfg->nservices == 0)
		return 0;
	char dir[4096];
	config_service_dir(s->host, cfg, dir, sizeof dir);
	for (size_t i = 0; i < cfg->nservices; i++) {
		const emh__svcconf *sc = &cfg->services[i];
		char path[4200];
		void *dl = NULL;
		emh_service local;
		int rc = config_module_open(&s->host->log, sc, dir, path, sizeof path, &dl, &local, err);
		if (rc)
			return rc;
		emh__settings settings = {0};
		for (size_t k = 0; k < sc->s.n; k++) {
			const emh__setting *st = &sc->s.v[k];
			if (emh__settings_set(&settings, st->key, st->value, st->origin, st->path, st->ltype,
					      st->secret) != 0) {
				emh__settings_release(&settings);
				dlclose(dl);
				return emh_error_set(err, EMH_ENOMEM, "out of memory");
			}
		}
		rc = svc_add(s, &local, dl, path, sc->name, &sc->remap, &settings, err);
		emh__settings_release(&settings);
		if (rc)
			return rc;
	}
	return 0;
}

/*
 * What registering svc's entities would refuse, without registering: a
 * different entity on the same table of a context, needed by a loaded
 * service, by one checked before (done), by svc itself, or registered in
 * the host by the application.  Messages as svc_register_entities'.
 */
static int svc_check_entities(emh_services *s, emh_svc *const *done, size_t ndone, emh_svc *svc, emh_error *err)
{
	for (size_t i = 0; i < svc->nneeds; i++) {
		const emh__svc_need *n = &svc->needs[i], *theirs;
		const emh_svc *owner;
		if (!n->entity)
			continue;
		const char *ctx = svc->ctx[n->ctx];
		if ((theirs = entity_owner(s->v, s->n, ctx, n->entity, &owner)) ||
		    (theirs = entity_owner(done, ndone, ctx, n->entity, &owner)))
			return err_entity_clash(svc, n, owner, theirs, err);
		const emh_entity *have = NULL, *other = NULL;
		for (size_t j = 0; j < i && !other; j++) {
			const emh_entity *e = svc->needs[j].entity;
			if (e && svc->needs[j].ctx == n->ctx && strcmp(e->table, n->entity->table) == 0 &&
			    !emh__entity_same(e, n->entity))
				other = e;
		}
		if (!other && emh_host_entity(s->host, ctx, n->entity->table, &have, NULL) == 0 &&
		    !emh__entity_same(have, n->entity))
			other = have;
		if (other) {
			emh_error_set(err, EMH_ECONFIG,
				      "service '%s' needs entity '%s' in context '%s': context '%s': entities '%s' and "
				      "'%s' both map to table '%s'",
				      svc->name, n->entity->name, ctx, ctx, other->name, n->entity->name,
				      n->entity->table);
			return emh_error_context(err, EMH_ECONFIG, ctx);
		}
	}
	return 0;
}

int emh_services_check(emh_services *s, emh_error *err)
{
	if (!s)
		return emh_error_set(err, EMH_EINVAL, "no services object given");
	const emh__config *cfg = emh__host_config(s->host);
	if (!cfg || cfg->nservices == 0)
		return 0;
	/* Every module stays open until the end: the entities of the ones
	 * checked are compared with the next ones'. */
	emh_svc **done = calloc(cfg->nservices, sizeof *done);
	if (!done)
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	char dir[4096];
	config_service_dir(s->host, cfg, dir, sizeof dir);
	size_t ndone = 0;
	int rc = 0;
	pthread_mutex_lock(&s->add_mu);
	for (size_t i = 0; i < cfg->nservices && rc == 0; i++) {
		const emh__svcconf *sc = &cfg->services[i];
		char path[4200];
		void *dl = NULL;
		emh_service local;
		emh_svc *svc = NULL;
		if ((rc = config_module_open(&s->host->log, sc, dir, path, sizeof path, &dl, &local, err)) != 0)
			break;
		if ((rc = svc_new(s, &local, path, sc->name, &svc, err)) != 0) {
			dlclose(dl);
			break;
		}
		svc->dl = dl;
		if ((rc = svc_resolve_contexts(svc, &sc->remap, err)) != 0 ||
		    (rc = svc_check_entities(s, done, ndone, svc, err)) != 0 ||
		    (rc = svc_resolve_relations(svc, false, err)) != 0)
			svc_unload(svc);
		else
			done[ndone++] = svc;
	}
	pthread_mutex_unlock(&s->add_mu);
	while (ndone > 0)
		svc_unload(done[--ndone]);
	free(done);
	return rc;
}

const char *emh_host_server_setting(const emh_host *h, const char *key)
{
	const emh__config *cfg = h && key ? emh__host_config(h) : NULL;
	const emh__setting *st = cfg ? emh__settings_find(&cfg->server, key) : NULL;
	return st ? st->value : NULL;
}

/* ---- a loaded service ---- */

const char *emh_svc_name(const emh_svc *svc) { return svc ? svc->name : NULL; }

bool emh_svc_idle_now(const emh_svc *svc, const char *driver)
{
	if (!svc || svc->nctx == 0)
		return false;
	for (size_t i = 0; i < svc->nctx; i++) {
		emh_context *c = emh__host_get_context(svc->host, svc->ctx[i], NULL);
		if (!c)
			return false;
		bool idle = (!driver || strcmp(c->drv->d.name, driver) == 0) && emh__pool_idle_now(&c->pool);
		emh__context_put(c);
		if (!idle)
			return false;
	}
	return true;
}
const emh_service *emh_svc_descriptor(const emh_svc *svc) { return svc ? &svc->desc : NULL; }
const char *emh_svc_file(const emh_svc *svc) { return svc ? svc->file : NULL; }
emh_host *emh_svc_host(const emh_svc *svc) { return svc ? svc->host : NULL; }
emh_services *emh_svc_services(const emh_svc *svc) { return svc ? svc->owner : NULL; }

const char *emh_svc_context(const emh_svc *svc, const char *declared)
{
	if (!svc)
		return NULL;
	for (size_t i = 0; i < svc->nneeds; i++) {
		const char *d = svc->needs[i].declared;
		if ((!d && !declared) || (d && declared && strcmp(d, declared) == 0))
			return svc->ctx[svc->needs[i].ctx];
	}
	return NULL;
}

const char *emh_svc_setting(const emh_svc *svc, const char *key)
{
	if (!svc || !key)
		return NULL;
	const emh__setting *st = emh__settings_find(&svc->settings, key);
	return st ? st->value : NULL;
}

void emh_svc_log(const emh_svc *svc, int level, const char *fmt, ...)
{
	if (!svc)
		return;
	char msg[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	emh__log(&svc->host->log, level, NULL, "service '%s': %s", svc->name, msg);
}
