/* SPDX-License-Identifier: MIT */
/*
 * core/service.c: service modules, dependency injection and scopes.
 *
 * A service module is opened like a driver plugin (RTLD_NOW | RTLD_LOCAL, one
 * descriptor symbol validated before any of its code runs).  Its needs are
 * resolved once, at load: every declared context name goes through the
 * service's remap to a context of this host, and every entity is registered
 * there.  After that a scope only maps a need to a fork (made on first ask)
 * and a repository, so a request pays no lookup by name beyond the service.
 *
 * Two modules may declare the same table (profile reads the users that
 * users writes): each has its own copy of the entity metadata, so the first
 * one registered in a context is kept and a structurally identical copy from
 * another module is resolved to it; a different entity on the same table is
 * refused at load.
 */
#include "config.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <emhost/service.h>

#include "internal.h"

/* The descriptor must reach at least the last required member of ABI 1.0. */
#define SVC_MIN_STRUCT_SIZE (offsetof(emh_service, handle) + sizeof(void *))
#define SVC_MAX_NEEDS 64

typedef struct svc_need {
	const char *declared;     /* the module's context name, NULL = default (borrowed) */
	const emh_entity *entity; /* as declared: what the module asks with */
	const emh_entity *reg;    /* the entity registered in the context */
	size_t ctx;               /* index into emh_svc.ctx */
} svc_need;

struct emh_svc {
	emh_host *host;
	char *name;
	char *file;
	void *dl; /* NULL for a static service */
	emh_service desc;
	void *state;
	bool inited;
	svc_need *needs;
	size_t nneeds;
	char **ctx; /* distinct contexts of this host the needs resolved to */
	size_t nctx;
	emh__settings settings;
};

/* An entity registered by a service, per context: the canonical copy. */
typedef struct svc_entity {
	char *context;
	const emh_entity *e;
	char *owner; /* the service that registered it, for errors */
} svc_entity;

typedef struct svc_registry {
	pthread_mutex_t add_mu;  /* serialises loading (registration may do I/O) */
	pthread_rwlock_t lock;   /* v, n: lookups by scope_open */
	emh_svc **v;
	size_t n, cap;
	svc_entity *ents;
	size_t nents;
	/* Modules that failed after registering an entity: the host still points
	 * into them, so they are closed only with the host. */
	void **orphans;
	size_t norphans;
} svc_registry;

struct emh_scope {
	emh_svc *svc;
	size_t nopen;
	emh_em **ems;     /* per svc->ctx */
	emh_repo **repos; /* per need */
};

struct emh_response {
	int status;
	char *content_type;
	char *body;
	size_t len;
	emh_kv *headers;
	size_t nheaders, capheaders;
};

static void services_free(emh_host *h);

/* h->services is created on first use; two threads adding services at once
 * race only on that creation, settled by a compare-and-swap (no process-wide
 * lock: two hosts share nothing). */
static svc_registry *registry_get(emh_host *h, bool create)
{
	svc_registry *r = __atomic_load_n((svc_registry **)&h->services, __ATOMIC_ACQUIRE);
	if (r || !create)
		return r;
	svc_registry *mine = calloc(1, sizeof *mine);
	if (!mine)
		return NULL;
	pthread_mutex_init(&mine->add_mu, NULL);
	pthread_rwlock_init(&mine->lock, NULL);
	svc_registry *none = NULL;
	if (__atomic_compare_exchange_n((svc_registry **)&h->services, &none, mine, false, __ATOMIC_ACQ_REL,
					__ATOMIC_ACQUIRE)) {
		h->services_free = services_free;
		return mine;
	}
	pthread_rwlock_destroy(&mine->lock);
	pthread_mutex_destroy(&mine->add_mu);
	free(mine);
	return none;
}

static void svc_free(emh_svc *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->nctx; i++)
		free(s->ctx[i]);
	free(s->ctx);
	free(s->needs);
	emh__settings_release(&s->settings);
	free(s->name);
	free(s->file);
	free(s);
}

/*
 * emh_host_free's hook, run before the contexts close: every service's fini
 * (it may still use its contexts), then the registry is freed.  The modules
 * themselves are handed to the host to unload after the contexts are gone,
 * since the contexts' registered entities live in the modules.
 */
static void services_free(emh_host *h)
{
	if (!h)
		return;
	svc_registry *r = h->services;
	h->services = NULL;
	if (!r)
		return;
	/* fini in reverse load order, then unload: a module may use another's entity. */
	for (size_t i = r->n; i-- > 0;) {
		emh_svc *s = r->v[i];
		if (s->inited && s->desc.fini)
			s->desc.fini(s, s->state);
	}
	size_t ndl = 0;
	void **dls = calloc(r->n + r->norphans + 1, sizeof *dls);
	for (size_t i = r->n; i-- > 0;) {
		void *dl = r->v[i]->dl;
		svc_free(r->v[i]);
		if (dl && dls)
			dls[ndl++] = dl;
		else if (dl)
			dlclose(dl); /* out of memory: unload now rather than leak */
	}
	for (size_t i = 0; i < r->norphans; i++) {
		if (dls)
			dls[ndl++] = r->orphans[i];
		else
			dlclose(r->orphans[i]);
	}
	h->unload = dls;
	h->nunload = ndl;
	for (size_t i = 0; i < r->nents; i++) {
		free(r->ents[i].context);
		free(r->ents[i].owner);
	}
	free(r->ents);
	free(r->orphans);
	free(r->v);
	pthread_rwlock_destroy(&r->lock);
	pthread_mutex_destroy(&r->add_mu);
	free(r);
}

/* ---- small helpers ---- */

/* Append s to buf (cap bytes) as a ", "-separated list item. */
static void list_add(char *buf, size_t cap, const char *s)
{
	size_t n = strlen(buf);
	if (n + 1 >= cap)
		return;
	snprintf(buf + n, cap - n, "%s%s", n ? ", " : "", s);
}

/* "default, analytics" into buf: the contexts of the host. */
static const char *context_list(emh_host *h, char *buf, size_t cap)
{
	buf[0] = '\0';
	emh_context_info *infos = NULL;
	size_t n = 0;
	emh_error err;
	if (emh_host_contexts(h, &infos, &n, &err) == 0) {
		for (size_t i = 0; i < n; i++)
			list_add(buf, cap, infos[i].name);
		emh_context_info_free(infos, n);
	}
	if (!buf[0])
		snprintf(buf, cap, "(none)");
	return buf;
}

static const char *declared_name(const char *declared) { return declared ? declared : "default"; }

/* "default, analytics": the context names a descriptor declares. */
static const char *declared_list(const emh_service *d, char *buf, size_t cap)
{
	buf[0] = '\0';
	for (size_t i = 0; i < d->nneeds; i++) {
		const char *name = declared_name(d->needs[i].context);
		bool seen = false;
		for (size_t j = 0; j < i && !seen; j++)
			seen = strcmp(declared_name(d->needs[j].context), name) == 0;
		if (!seen)
			list_add(buf, cap, name);
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

static bool entity_same(const emh_entity *a, const emh_entity *b)
{
	if (a == b)
		return true;
	if (strcmp(a->name, b->name) != 0 || strcmp(a->table, b->table) != 0 || a->size != b->size ||
	    a->nfields != b->nfields || a->nindexes != b->nindexes)
		return false;
	for (size_t i = 0; i < a->nfields; i++) {
		const emh_field *x = &a->fields[i], *y = &b->fields[i];
		if (strcmp(x->name, y->name) != 0 || strcmp(x->column, y->column) != 0 ||
		    x->type != y->type || x->flags != y->flags || x->offset != y->offset ||
		    x->size != y->size || x->ckind != y->ckind)
			return false;
	}
	for (size_t i = 0; i < a->nindexes; i++) {
		const emh_index *x = &a->indexes[i], *y = &b->indexes[i];
		if (strcmp(x->name, y->name) != 0 || x->unique != y->unique)
			return false;
		size_t k = 0;
		for (; x->fields[k] && y->fields[k]; k++)
			if (strcmp(x->fields[k], y->fields[k]) != 0)
				return false;
		if (x->fields[k] || y->fields[k])
			return false;
	}
	return true;
}

/* ---- descriptor checks ---- */

/*
 * Copy src into *local the way the ABI promises (zero-extended, extra members
 * ignored) and check it.  On refusal, why says what is wrong.
 */
static int desc_check(const emh_service *src, emh_service *local, char *why, size_t cap)
{
	if (!src) {
		snprintf(why, cap, "descriptor is NULL");
		return EMH_EPLUGIN;
	}
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
	if (!local->handle) {
		snprintf(why, cap, "service '%s': required member handle is NULL", local->name);
		return EMH_EPLUGIN;
	}
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
			snprintf(why, cap, "service '%s': need %zu: %s", local->name, i, e.message);
			return EMH_EPLUGIN;
		}
	}
	return 0;
}

/* Open a module file and find its descriptor, checked.  *dl stays open on success. */
static int module_open(const char *path, void **dl, const emh_service **src, emh_service *local,
		       emh_error *err)
{
	char why[512];
	int rc;
	if (!(*src = emh__plugin_open(path, EMH_SERVICE_SYMBOL, "service", dl, why, sizeof why)))
		return emh_error_set(err, EMH_EPLUGIN, "service module '%s': %s", path, why);
	rc = desc_check(*src, local, why, sizeof why);
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
	int rc = module_open(path, &dl, &src, &local, err);
	if (rc == 0)
		dlclose(dl);
	return rc;
}

/* ---- resolution ---- */

static emh_svc *find_locked(svc_registry *r, const char *name)
{
	for (size_t i = 0; i < r->n; i++)
		if (strcmp(r->v[i]->name, name) == 0)
			return r->v[i];
	return NULL;
}

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
			declared = strcmp(declared_name(s->desc.needs[j].context), key) == 0;
		if (!declared)
			return emh_error_set(err, EMH_ECONFIG,
					     "%s%sservice '%s' remaps context '%s' but declares no such context (declares: %s)",
					     remap->v[i].origin ? remap->v[i].origin : "",
					     remap->v[i].origin ? ": " : "", s->name, key,
					     declared_list(&s->desc, list, sizeof list));
	}
	s->needs = calloc(s->desc.nneeds ? s->desc.nneeds : 1, sizeof *s->needs);
	if (!s->needs)
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	s->nneeds = s->desc.nneeds;
	for (size_t i = 0; i < s->nneeds; i++) {
		const emh_need *n = &s->desc.needs[i];
		const emh__setting *rm = emh__settings_find(remap, declared_name(n->context));
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
						     s->name, actual, declared_name(n->context),
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
 * Register the entities of s in their contexts, or find the equal copy a
 * module loaded before registered.  *registered tells the caller the host now
 * points into this module.  Called with r->add_mu held.
 */
static int svc_register_entities(svc_registry *r, emh_svc *s, bool *registered, emh_error *err)
{
	for (size_t i = 0; i < s->nneeds; i++) {
		svc_need *n = &s->needs[i];
		if (!n->entity)
			continue;
		const char *ctx = s->ctx[n->ctx];
		const svc_entity *have = NULL;
		for (size_t j = 0; j < r->nents && !have; j++)
			if (strcmp(r->ents[j].context, ctx) == 0 && strcmp(r->ents[j].e->table, n->entity->table) == 0)
				have = &r->ents[j];
		if (have) {
			if (!entity_same(have->e, n->entity))
				return emh_error_set(err, EMH_ECONFIG,
						     "service '%s' needs entity '%s' on table '%s' in context '%s', "
						     "but service '%s' registered a different entity '%s' on that table",
						     s->name, n->entity->name, n->entity->table, ctx, have->owner,
						     have->e->name);
			n->reg = have->e;
			continue;
		}
		emh_error e;
		int rc = emh_host_register_entity(s->host, ctx, n->entity, &e);
		if (rc) {
			emh_error_set(err, rc, "service '%s' needs entity '%s' in context '%s': %s", s->name,
				      n->entity->name, ctx, e.message);
			return emh_error_context(err, rc, ctx);
		}
		*registered = true;
		svc_entity *v = realloc(r->ents, (r->nents + 1) * sizeof *v);
		if (!v)
			return emh_error_set(err, EMH_ENOMEM, "out of memory");
		r->ents = v;
		v[r->nents].context = strdup(ctx);
		v[r->nents].owner = strdup(s->name);
		v[r->nents].e = n->entity;
		if (!v[r->nents].context || !v[r->nents].owner) {
			free(v[r->nents].context);
			free(v[r->nents].owner);
			return emh_error_set(err, EMH_ENOMEM, "out of memory");
		}
		r->nents++;
		n->reg = n->entity;
	}
	return 0;
}

/*
 * Check, resolve, register and initialise one service; on success it is in
 * the registry and owns dl.  On failure dl is closed, or kept as an orphan
 * when an entity of it was registered.
 */
static int svc_add(emh_host *h, const emh_service *local, void *dl, const char *file, const char *name,
		   const emh__settings *remap, emh__settings *settings, emh_error *err)
{
	emh_error scratch;
	if (!err)
		err = &scratch;
	svc_registry *r = registry_get(h, true);
	if (!r) {
		if (dl)
			dlclose(dl);
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	}
	if (!name)
		name = local->name;
	int rc;
	bool registered = false;
	emh_svc *s = NULL;
	pthread_mutex_lock(&r->add_mu);
	if (!emh_ident_valid(name)) {
		rc = emh_error_set(err, EMH_ECONFIG, "service name '%s' is not a valid identifier", name);
		goto out_unlock;
	}
	pthread_rwlock_rdlock(&r->lock);
	emh_svc *dup = find_locked(r, name);
	pthread_rwlock_unlock(&r->lock);
	if (dup) {
		rc = emh_error_set(err, EMH_ECONFIG, "service '%s' is already loaded (from %s)", name, dup->file);
		goto out_unlock;
	}
	s = calloc(1, sizeof *s);
	if (!s || !(s->name = strdup(name)) || !(s->file = strdup(file))) {
		rc = emh_error_set(err, EMH_ENOMEM, "out of memory");
		goto out_unlock;
	}
	s->host = h;
	s->desc = *local;
	s->settings = *settings;
	memset(settings, 0, sizeof *settings);
	if ((rc = svc_resolve_contexts(s, remap, err)) != 0)
		goto out_unlock;
	if ((rc = svc_register_entities(r, s, &registered, err)) != 0)
		goto out_unlock;
	if (s->desc.init) {
		err->code = 0;
		err->message[0] = '\0';
		rc = s->desc.init(s, &s->state, err);
		if (rc) {
			char msg[EMH_ERROR_MSG_MAX];
			snprintf(msg, sizeof msg, "%s", err->message[0] ? err->message : emh_strerror(rc));
			emh_error_set(err, rc, "service '%s': init failed: %s", s->name, msg);
			goto out_unlock;
		}
		s->inited = true;
	}
	pthread_rwlock_wrlock(&r->lock);
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 8;
		emh_svc **v = realloc(r->v, cap * sizeof *v);
		if (!v) {
			pthread_rwlock_unlock(&r->lock);
			rc = emh_error_set(err, EMH_ENOMEM, "out of memory");
			goto out_fini;
		}
		r->v = v;
		r->cap = cap;
	}
	s->dl = dl;
	r->v[r->n++] = s;
	pthread_rwlock_unlock(&r->lock);
	pthread_mutex_unlock(&r->add_mu);
	char ctxs[512] = "";
	for (size_t i = 0; i < s->nctx; i++)
		list_add(ctxs, sizeof ctxs, s->ctx[i]);
	emh__log(&h->log, EMH_LOG_INFO, NULL, "service '%s' %s loaded from %s (contexts: %s)", s->name,
		 s->desc.version, file, ctxs[0] ? ctxs : "none");
	return 0;

out_fini:
	if (s->inited && s->desc.fini)
		s->desc.fini(s, s->state);
out_unlock:
	if (dl && registered) {
		void **o = realloc(r->orphans, (r->norphans + 1) * sizeof *o);
		if (o) {
			r->orphans = o;
			r->orphans[r->norphans++] = dl;
			dl = NULL;
		}
		/* else: leak the handle rather than leave the host pointing into freed code */
		dl = NULL;
	}
	pthread_mutex_unlock(&r->add_mu);
	svc_free(s);
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

int emh_host_add_service(emh_host *h, const emh_service *desc, const emh_service_opts *opts, emh_error *err)
{
	char why[512];
	emh_service local;
	if (!h)
		return emh_error_set(err, EMH_EINVAL, "no host given");
	int rc = desc_check(desc, &local, why, sizeof why);
	if (rc)
		return emh_error_set(err, rc, "service (static): %s", why);
	emh__settings remap = {0}, settings = {0};
	if ((rc = kv_to_settings(opts ? opts->remap : NULL, &remap, "remap", err)) == 0 &&
	    (rc = kv_to_settings(opts ? opts->settings : NULL, &settings, "settings", err)) == 0)
		rc = svc_add(h, &local, NULL, "(static)", opts ? opts->name : NULL, &remap, &settings, err);
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

int emh_host_load_services(emh_host *h, emh_error *err)
{
	if (!h)
		return emh_error_set(err, EMH_EINVAL, "no host given");
	const emh__config *cfg = emh__host_config(h);
	if (!cfg || cfg->nservices == 0)
		return 0;
	char dir[4096];
	if (cfg->service_dir.value && cfg->service_dir.value[0])
		snprintf(dir, sizeof dir, "%s", cfg->service_dir.value);
	else
		default_service_dir(dir, sizeof dir);
	for (size_t i = 0; i < cfg->nservices; i++) {
		const emh__svcconf *sc = &cfg->services[i];
		const char *module = sc->module ? sc->module : sc->name;
		if (!module_name_valid(module))
			return emh_error_set(err, EMH_ECONFIG, "%s%sservice '%s': module name '%s' is not a file stem",
					     sc->origin ? sc->origin : "", sc->origin ? ": " : "",
					     sc->name ? sc->name : "?", module ? module : "");
		char path[4200];
		snprintf(path, sizeof path, "%s/%s.so", dir, module);
		void *dl = NULL;
		const emh_service *src;
		emh_service local;
		int rc = module_open(path, &dl, &src, &local, err);
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
		rc = svc_add(h, &local, dl, path, sc->name, &sc->remap, &settings, err);
		emh__settings_release(&settings);
		if (rc)
			return rc;
	}
	return 0;
}

const char *emh_host_server_setting(const emh_host *h, const char *key)
{
	const emh__config *cfg = h && key ? emh__host_config(h) : NULL;
	const emh__setting *st = cfg ? emh__settings_find(&cfg->server, key) : NULL;
	return st ? st->value : NULL;
}

emh_svc *emh_host_service(emh_host *h, const char *name)
{
	if (!h || !name)
		return NULL;
	svc_registry *r = registry_get(h, false);
	if (!r)
		return NULL;
	pthread_rwlock_rdlock(&r->lock);
	emh_svc *s = find_locked(r, name);
	pthread_rwlock_unlock(&r->lock);
	return s;
}

emh_svc *emh_host_service_at(emh_host *h, size_t i)
{
	if (!h)
		return NULL;
	svc_registry *r = registry_get(h, false);
	if (!r)
		return NULL;
	pthread_rwlock_rdlock(&r->lock);
	emh_svc *s = i < r->n ? r->v[i] : NULL;
	pthread_rwlock_unlock(&r->lock);
	return s;
}

/* ---- a loaded service ---- */

const char *emh_svc_name(const emh_svc *svc) { return svc ? svc->name : NULL; }
const emh_service *emh_svc_descriptor(const emh_svc *svc) { return svc ? &svc->desc : NULL; }
const char *emh_svc_file(const emh_svc *svc) { return svc ? svc->file : NULL; }
emh_host *emh_svc_host(const emh_svc *svc) { return svc ? svc->host : NULL; }

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

/* ---- scopes ---- */

int emh_scope_open(emh_host *h, const char *service, emh_scope **out, emh_error *err)
{
	*out = NULL;
	if (!h || !service)
		return emh_error_set(err, EMH_EINVAL, "no host or service name given");
	svc_registry *r = registry_get(h, false);
	emh_svc *s = NULL;
	char list[1024] = "";
	if (r) {
		pthread_rwlock_rdlock(&r->lock);
		s = find_locked(r, service);
		if (!s)
			for (size_t i = 0; i < r->n; i++)
				list_add(list, sizeof list, r->v[i]->name);
		pthread_rwlock_unlock(&r->lock);
	}
	if (!s)
		return emh_error_set(err, EMH_ENOSERVICE, "no service '%s' (services: %s)", service,
				     list[0] ? list : "none");
	emh_scope *sc = calloc(1, sizeof *sc + (s->nctx + s->nneeds) * sizeof(void *));
	if (!sc)
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	sc->svc = s;
	sc->ems = (emh_em **)(sc + 1);
	sc->repos = (emh_repo **)(sc->ems + s->nctx);
	*out = sc;
	return 0;
}

void emh_scope_close(emh_scope *scope)
{
	if (!scope)
		return;
	for (size_t i = 0; i < scope->svc->nctx; i++)
		emh_em_close(scope->ems[i]);
	free(scope);
}

int emh_scope_handle(emh_scope *scope, const emh_request *req, emh_response *res, emh_error *err)
{
	if (!scope || !req || !res)
		return emh_error_set(err, EMH_EINVAL, "scope, request and response are required");
	emh_error scratch;
	if (!err)
		err = &scratch;
	emh_error_clear(err);
	int rc = scope->svc->desc.handle(scope, req, res, err);
	if (rc && err->code != rc) {
		/* the handler returned a code without saying why */
		emh_error_set(err, rc, "service '%s': %s", scope->svc->name, emh_strerror(rc));
	}
	return rc;
}

/* The fork of context index ci, made on first ask. */
static int scope_fork(emh_scope *scope, size_t ci, emh_em **out, emh_error *err)
{
	if (!scope->ems[ci]) {
		int rc = emh_host_fork(scope->svc->host, scope->svc->ctx[ci], &scope->ems[ci], err);
		if (rc)
			return rc;
		scope->nopen++;
	}
	*out = scope->ems[ci];
	return 0;
}

int emh_scope_em(emh_scope *scope, const char *context, emh_em **out, emh_error *err)
{
	*out = NULL;
	if (!scope)
		return emh_error_set(err, EMH_EINVAL, "no scope given");
	emh_svc *s = scope->svc;
	for (size_t i = 0; i < s->nneeds; i++) {
		const char *d = s->needs[i].declared;
		if ((!d && !context) || (d && context && strcmp(d, context) == 0))
			return scope_fork(scope, s->needs[i].ctx, out, err);
	}
	char list[512];
	return emh_error_set(err, EMH_ENOCONTEXT, "service '%s' did not declare context '%s' (declares: %s)",
			     s->name, declared_name(context), declared_list(&s->desc, list, sizeof list));
}

static int scope_repo_need(emh_scope *scope, size_t i, emh_repo **out, emh_error *err)
{
	if (!scope->repos[i]) {
		emh_em *em;
		int rc = scope_fork(scope, scope->svc->needs[i].ctx, &em, err);
		if (rc)
			return rc;
		if ((rc = emh_em_repo(em, scope->svc->needs[i].reg, &scope->repos[i], err)) != 0)
			return rc;
	}
	*out = scope->repos[i];
	return 0;
}

int emh_scope_repo(emh_scope *scope, const emh_entity *e, const char *context, emh_repo **out, emh_error *err)
{
	*out = NULL;
	if (!scope || !e)
		return emh_error_set(err, EMH_EINVAL, "no scope or entity given");
	emh_svc *s = scope->svc;
	for (size_t i = 0; i < s->nneeds; i++) {
		const char *d = s->needs[i].declared;
		if (s->needs[i].entity == e && ((!d && !context) || (d && context && strcmp(d, context) == 0)))
			return scope_repo_need(scope, i, out, err);
	}
	return emh_error_set(err, EMH_ENOENTITY,
			     "service '%s' did not declare a repository of entity '%s' in context '%s'",
			     s->name, e->name ? e->name : "?", declared_name(context));
}

int emh_scope_em_at(emh_scope *scope, size_t need, emh_em **out, emh_error *err)
{
	*out = NULL;
	if (!scope || need >= scope->svc->nneeds)
		return emh_error_set(err, EMH_EINVAL, "service '%s' has no need %zu",
				     scope ? scope->svc->name : "?", need);
	return scope_fork(scope, scope->svc->needs[need].ctx, out, err);
}

int emh_scope_repo_at(emh_scope *scope, size_t need, emh_repo **out, emh_error *err)
{
	*out = NULL;
	if (!scope || need >= scope->svc->nneeds)
		return emh_error_set(err, EMH_EINVAL, "service '%s' has no need %zu",
				     scope ? scope->svc->name : "?", need);
	if (!scope->svc->needs[need].entity)
		return emh_error_set(err, EMH_EINVAL, "service '%s': need %zu declares no entity",
				     scope->svc->name, need);
	return scope_repo_need(scope, need, out, err);
}

void *emh_scope_state(const emh_scope *scope) { return scope ? scope->svc->state : NULL; }
emh_svc *emh_scope_service(const emh_scope *scope) { return scope ? scope->svc : NULL; }
size_t emh_scope_forks_open(const emh_scope *scope) { return scope ? scope->nopen : 0; }

/* ---- requests ---- */

const char *emh_request_header(const emh_request *req, const char *name)
{
	if (!req || !name)
		return NULL;
	for (size_t i = 0; i < req->nheaders; i++)
		if (req->headers[i].name && strcasecmp(req->headers[i].name, name) == 0)
			return req->headers[i].value;
	return NULL;
}

const char *emh_request_arg(const emh_request *req, const char *name)
{
	if (!req || !name)
		return NULL;
	for (size_t i = 0; i < req->nargs; i++)
		if (req->args[i].name && strcmp(req->args[i].name, name) == 0)
			return req->args[i].value;
	return NULL;
}

/* ---- responses ---- */

emh_response *emh_response_new(void)
{
	emh_response *res = calloc(1, sizeof *res);
	if (res)
		res->status = 200;
	return res;
}

void emh_response_reset(emh_response *res)
{
	if (!res)
		return;
	free(res->content_type);
	free(res->body);
	for (size_t i = 0; i < res->nheaders; i++) {
		free((char *)res->headers[i].name);
		free((char *)res->headers[i].value);
	}
	free(res->headers);
	memset(res, 0, sizeof *res);
	res->status = 200;
}

void emh_response_free(emh_response *res)
{
	emh_response_reset(res);
	free(res);
}

int emh_response_set_owned(emh_response *res, int status, const char *content_type, char *body, size_t len,
			   emh_error *err)
{
	if (!res) {
		free(body);
		return emh_error_set(err, EMH_EINVAL, "no response given");
	}
	if (status < 100 || status > 599) {
		free(body);
		return emh_error_set(err, EMH_EINVAL, "HTTP status %d is out of range", status);
	}
	char *ct = NULL;
	if (content_type && !(ct = strdup(content_type))) {
		free(body);
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	}
	free(res->content_type);
	free(res->body);
	res->status = status;
	res->content_type = ct;
	res->body = body;
	res->len = body ? len : 0;
	return 0;
}

int emh_response_set(emh_response *res, int status, const char *content_type, const void *body, size_t len,
		     emh_error *err)
{
	char *copy = NULL;
	if (body) {
		if (!(copy = malloc(len + 1)))
			return emh_error_set(err, EMH_ENOMEM, "out of memory");
		memcpy(copy, body, len);
		copy[len] = '\0';
	}
	return emh_response_set_owned(res, status, content_type, copy, len, err);
}

int emh_response_add_header(emh_response *res, const char *name, const char *value, emh_error *err)
{
	if (!res || !name || !value || !*name)
		return emh_error_set(err, EMH_EINVAL, "response header needs a name and a value");
	if (strpbrk(name, "\r\n:") || strpbrk(value, "\r\n"))
		return emh_error_set(err, EMH_EINVAL, "response header '%s' holds CR, LF or ':'", name);
	if (res->nheaders == res->capheaders) {
		size_t cap = res->capheaders ? res->capheaders * 2 : 4;
		emh_kv *v = realloc(res->headers, cap * sizeof *v);
		if (!v)
			return emh_error_set(err, EMH_ENOMEM, "out of memory");
		res->headers = v;
		res->capheaders = cap;
	}
	char *n = strdup(name), *v = strdup(value);
	if (!n || !v) {
		free(n);
		free(v);
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	}
	res->headers[res->nheaders].name = n;
	res->headers[res->nheaders].value = v;
	res->nheaders++;
	return 0;
}

int emh_response_status(const emh_response *res) { return res ? res->status : 0; }
const char *emh_response_content_type(const emh_response *res) { return res ? res->content_type : NULL; }

const char *emh_response_body(const emh_response *res, size_t *len)
{
	if (len)
		*len = res ? res->len : 0;
	return res ? res->body : NULL;
}

size_t emh_response_nheaders(const emh_response *res) { return res ? res->nheaders : 0; }

const emh_kv *emh_response_header(const emh_response *res, size_t i)
{
	return res && i < res->nheaders ? &res->headers[i] : NULL;
}
