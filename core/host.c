/* SPDX-License-Identifier: MIT */
/*
 * core/host.c: the host: configuration -> drivers -> contexts.  No globals:
 * everything hangs off emh_host, so two hosts live side by side in one
 * process.  The contexts array is guarded by a rwlock (forks take the read
 * side); a context is reference-counted by its open forks so that removing it
 * at run time waits for them.
 */
#include "config.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

extern char **environ;

#ifndef EMH_PLUGIN_DIR
#define EMH_PLUGIN_DIR "/usr/local/lib/emhost/plugins"
#endif

const emh__config *emh__host_config(const emh_host *h) { return &h->cfg; }
const char *const *emh__host_env(const emh_host *h) { return (const char *const *)h->env; }

const emh__driver *emh__host_driver(const emh_host *h, const char *name)
{
	for (size_t i = 0; i < h->ndrivers; i++)
		if (strcmp(h->drivers[i].d.name, name) == 0)
			return &h->drivers[i];
	return NULL;
}

static char **copy_env(const char *const *envp)
{
	const char *const *src = envp ? envp : (const char *const *)environ;
	size_t n = 0;
	while (src && src[n])
		n++;
	char **out = calloc(n + 1, sizeof *out);
	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (!(out[i] = strdup(src[i]))) {
			for (size_t j = 0; j < i; j++)
				free(out[j]);
			free(out);
			return NULL;
		}
	return out;
}

static void free_env(char **env)
{
	for (size_t i = 0; env && env[i]; i++)
		free(env[i]);
	free(env);
}

/* "a, b, c" of the context names, into buf.  Called with the lock held. */
static const char *context_list(const emh_host *h, char *buf, size_t cap)
{
	size_t off = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < h->nctx && off < cap; i++)
		off += (size_t)snprintf(buf + off, cap - off, "%s%s", i ? ", " : "", h->ctxs[i]->name);
	if (h->nctx == 0)
		snprintf(buf, cap, "none configured");
	return buf;
}

static const char *driver_list(const emh_host *h, char *buf, size_t cap)
{
	size_t off = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < h->ndrivers && off < cap; i++)
		off += (size_t)snprintf(buf + off, cap - off, "%s%s", i ? ", " : "", h->drivers[i].d.name);
	if (h->ndrivers == 0)
		snprintf(buf, cap, "none");
	return buf;
}

static emh_context *find_locked(const emh_host *h, const char *name)
{
	if (!name)
		return h->def;
	for (size_t i = 0; i < h->nctx; i++)
		if (strcmp(h->ctxs[i]->name, name) == 0)
			return h->ctxs[i];
	return NULL;
}

/* Look up a context and take a reference (released by emh__context_put). */
emh_context *emh__host_get_context(emh_host *h, const char *name, emh_error *err);
void emh__context_put(emh_context *c);

emh_context *emh__host_get_context(emh_host *h, const char *name, emh_error *err)
{
	pthread_rwlock_rdlock(&h->lock);
	emh_context *c = find_locked(h, name);
	if (c && !atomic_load_explicit(&c->removing, memory_order_acquire)) {
		atomic_fetch_add_explicit(&c->refs, 1, memory_order_acq_rel);
		pthread_rwlock_unlock(&h->lock);
		return c;
	}
	char list[1024];
	context_list(h, list, sizeof list);
	pthread_rwlock_unlock(&h->lock);
	if (!name)
		emh_error_set(err, EMH_ENOCONTEXT, "no default context (contexts: %s)", list);
	else
		emh_error_set(err, EMH_ENOCONTEXT, "no context '%s' (contexts: %s)", name, list);
	return NULL;
}

/*
 * Drop a reference.  Once refs may reach 0 on a context being removed, the
 * remover may free it: so the decrement then happens under c->mu (which the
 * remover holds while it checks refs), and c is not touched after unlocking.
 * A removal that starts after our check sees refs drop within its timed wait.
 */
void emh__context_put(emh_context *c)
{
	if (!atomic_load_explicit(&c->removing, memory_order_acquire)) {
		atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel);
		return;
	}
	pthread_mutex_lock(&c->mu);
	atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel);
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

void emh__context_count_error(emh_context *c, int code)
{
	int k = -code;
	if (k > 0 && k < EMH__ERRKINDS)
		atomic_fetch_add_explicit(&c->errors[k], 1, memory_order_relaxed);
}

emh__meta *emh__context_meta(emh_context *c, const emh_entity *e)
{
	for (emh__meta *m = atomic_load_explicit(&c->metas, memory_order_acquire); m; m = m->next)
		if (m->pub.entity == e)
			return m;
	return NULL;
}

static void context_free(emh_context *c)
{
	if (!c)
		return;
	emh__pool_destroy(&c->pool);
	free(atomic_exchange(&c->spare_em, NULL));
	if (c->dctx && c->drv && c->drv->d.context_close)
		c->drv->d.context_close(c->dctx);
	emh__meta *m = atomic_load(&c->metas);
	while (m) {
		emh__meta *n = m->next;
		emh__sql_free_meta(m);
		pthread_mutex_destroy(&m->sync_mu);
		free(m);
		m = n;
	}
	emh__ctxconf_release(&c->conf);
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->cv);
	free(c);
}

static bool truthy(const char *v)
{
	return v && (strcasecmp(v, "true") == 0 || strcmp(v, "1") == 0 || strcasecmp(v, "yes") == 0 ||
		     strcasecmp(v, "on") == 0);
}

/* Create a context from its configuration (taken over: *conf is zeroed). */
static int context_create(emh_host *h, emh__ctxconf *conf, emh_context **out, emh_error *err)
{
	*out = NULL;
	const char *dname = emh__ctxconf_get(conf, "driver");
	if (!dname) {
		emh_error_set(err, EMH_ECONFIG, "%s: context '%s' has no driver (set driver or url)",
			      conf->origin ? conf->origin : "config", conf->name);
		return emh_error_context(err, EMH_ECONFIG, conf->name);
	}
	const emh__driver *drv = emh__host_driver(h, dname);
	if (!drv) {
		for (size_t i = 0; i < h->nrefused; i++) {
			const char *base = strrchr(h->refused[i].file, '/');
			base = base ? base + 1 : h->refused[i].file;
			size_t n = strlen(dname);
			if (strncmp(base, dname, n) == 0 && strcmp(base + n, ".so") == 0) {
				emh_error_set(err, EMH_EPLUGIN,
					      "context '%s' needs driver '%s', but plugin '%s' was refused: %s",
					      conf->name, dname, h->refused[i].file, h->refused[i].reason);
				return emh_error_context(err, EMH_EPLUGIN, conf->name);
			}
		}
		char list[512];
		emh_error_set(err, EMH_EPLUGIN, "%s: context '%s' names unknown driver '%s' (loaded drivers: %s)",
			      conf->origin ? conf->origin : "config", conf->name, dname,
			      driver_list(h, list, sizeof list));
		return emh_error_context(err, EMH_EPLUGIN, conf->name);
	}
	int rc = emh__config_check_context(conf, &drv->d, (const char *const *)h->env, err);
	if (rc)
		return emh_error_context(err, rc, conf->name);

	emh_context *c = calloc(1, sizeof *c);
	if (!c)
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	c->conf = *conf;
	memset(conf, 0, sizeof *conf);
	c->name = c->conf.name;
	c->drv = drv;
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	static _Atomic unsigned long serial; /* only makes instance strings unique; no host state */
	snprintf(c->instance, sizeof c->instance, "%s-%p-%lu", c->name, (void *)h,
		 atomic_fetch_add(&serial, 1) + 1);
	c->params = (struct emh_params){.context = c->name, .instance = c->instance, .settings = &c->conf.s,
					.log = &h->log};
	c->required = truthy(emh__ctxconf_get(&c->conf, "required"));
	const char *schema = emh__ctxconf_get(&c->conf, "schema");
	c->schema_sync = schema && strcmp(schema, "sync") == 0;
	if (drv->d.context_open && (rc = drv->d.context_open(&c->params, &c->dctx, err)) != 0) {
		emh_error_context(err, rc, c->name);
		context_free(c);
		return rc;
	}
	if ((rc = emh__pool_init(&c->pool, drv, c->dctx, &c->params, &c->conf, err)) != 0) {
		emh_error_context(err, rc, c->name);
		context_free(c);
		return rc;
	}
	*out = c;
	return 0;
}

/* Prefix "context 'x': " unless the message already names the context. */
static int name_context(emh_error *err, int rc, const char *name)
{
	return emh__error_in_context(err, rc, name);
}

static int ping_context(emh_context *c, emh_error *err)
{
	emh_error local;
	if (!err)
		err = &local;
	emh__pconn *pc;
	int rc = emh__pool_acquire(&c->pool, &pc, err);
	if (rc)
		return name_context(err, rc, c->name);
	rc = c->drv->d.ping(pc->conn, err);
	emh__pool_release(&c->pool, pc, rc);
	emh__pool_note(&c->pool, rc ? err : NULL);
	return rc ? name_context(err, rc, c->name) : 0;
}

static int add_context_locked(emh_host *h, emh_context *c, emh_error *err)
{
	for (size_t i = 0; i < h->nctx; i++)
		if (strcmp(h->ctxs[i]->name, c->name) == 0)
			return emh_error_set(err, EMH_ECONFIG, "duplicate context name '%s' (%s and %s)", c->name,
					     h->ctxs[i]->conf.origin ? h->ctxs[i]->conf.origin : "?",
					     c->conf.origin ? c->conf.origin : "?");
	if (h->nctx == h->ctxcap) {
		size_t cap = h->ctxcap ? h->ctxcap * 2 : 8;
		emh_context **n = realloc(h->ctxs, cap * sizeof *n);
		if (!n)
			return emh_error_set(err, EMH_ENOMEM, "out of memory");
		h->ctxs = n;
		h->ctxcap = cap;
	}
	h->ctxs[h->nctx++] = c;
	return 0;
}

static int level_from_name(const char *v)
{
	static const char *const names[] = {"error", "warn", "info", "debug"};
	for (int i = 0; v && i < 4; i++)
		if (strcasecmp(v, names[i]) == 0)
			return i;
	return -1;
}

int emh_host_new(const emh_host_opts *opts, emh_host **out, emh_error *err)
{
	emh_host_opts none = {0};
	if (!opts)
		opts = &none;
	if (!out)
		return emh_error_set(err, EMH_EINVAL, "emh_host_new: out is NULL");
	*out = NULL;
	emh_host *h = calloc(1, sizeof *h);
	if (!h)
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	pthread_rwlock_init(&h->lock, NULL);
	h->log = (emh__logger){.fn = opts->log, .ud = opts->log_ud, .level = opts->log_level};
	int rc;
	if (!(h->env = copy_env(opts->envp))) {
		rc = emh_error_set(err, EMH_ENOMEM, "out of memory");
		goto out_free;
	}
	if ((rc = emh__config_parse(&h->cfg, opts->config_path, (const char *const *)h->env, err)) != 0)
		goto out_free;
	int lv = level_from_name(h->cfg.log_level.value);
	if (lv > h->log.level)
		h->log.level = lv;

	for (size_t i = 0; i < opts->ndrivers; i++)
		if ((rc = emh__add_driver(h, opts->drivers[i], NULL, "(static)", err)) < 0)
			goto out_free;
	if (!opts->no_plugins) {
		const char *dir = opts->plugin_dir ? opts->plugin_dir
			: h->cfg.plugin_dir.value  ? h->cfg.plugin_dir.value
			: emh__getenv((const char *const *)h->env, "EMH_PLUGIN_DIR")
			? emh__getenv((const char *const *)h->env, "EMH_PLUGIN_DIR")
			: EMH_PLUGIN_DIR;
		if ((rc = emh__load_plugins(h, dir, err)) != 0)
			goto out_free;
	}
	const emh_driver **dlist = calloc(h->ndrivers + 1, sizeof *dlist);
	if (!dlist) {
		rc = emh_error_set(err, EMH_ENOMEM, "out of memory");
		goto out_free;
	}
	for (size_t i = 0; i < h->ndrivers; i++)
		dlist[i] = &h->drivers[i].d;
	rc = emh__config_apply_env(&h->cfg, (const char *const *)h->env, dlist, h->ndrivers, err);
	free(dlist);
	if (rc)
		goto out_free;

	for (size_t i = 0; i < h->cfg.ncontexts; i++) {
		emh_context *c;
		if ((rc = context_create(h, &h->cfg.contexts[i], &c, err)) != 0)
			goto out_free;
		if ((rc = add_context_locked(h, c, err)) != 0) {
			context_free(c);
			goto out_free;
		}
	}
	const char *defname = h->cfg.default_context.value;
	if (defname) {
		if (!(h->def = find_locked(h, defname))) {
			char list[1024];
			rc = emh_error_set(err, EMH_ECONFIG, "%s: default context '%s' does not exist (contexts: %s)",
					   h->cfg.default_context.origin ? h->cfg.default_context.origin : "config",
					   defname, context_list(h, list, sizeof list));
			goto out_free;
		}
	} else if ((h->def = find_locked(h, "default")) == NULL && h->nctx == 1) {
		h->def = h->ctxs[0];
	} else if (!h->def && h->nctx > 1) {
		char list[1024];
		rc = emh_error_set(err, EMH_ECONFIG,
				   "several contexts (%s) and none is the default: set default_context or "
				   "EMH_DEFAULT_CONTEXT",
				   context_list(h, list, sizeof list));
		goto out_free;
	}
	if (h->def)
		h->def->is_default = true;
	for (size_t i = 0; i < h->nctx; i++) {
		emh_context *c = h->ctxs[i];
		if (!c->required)
			continue;
		if ((rc = ping_context(c, err)) != 0) {
			char msg[EMH_ERROR_MSG_MAX];
			snprintf(msg, sizeof msg, "required %s", err ? err->message : "context is down");
			if (err)
				memcpy(err->message, msg, sizeof msg);
			goto out_free;
		}
	}
	*out = h;
	return 0;
out_free:
	emh_host_free(h);
	return rc;
}

void emh_host_free(emh_host *h)
{
	if (!h)
		return;
	if (h->services_free)
		h->services_free(h);
	for (size_t i = 0; i < h->nctx; i++) {
		unsigned refs = atomic_load(&h->ctxs[i]->refs);
		if (refs)
			emh__log(&h->log, EMH_LOG_ERROR, h->ctxs[i]->name,
				 "host freed with %u fork(s) still open on this context", refs);
		context_free(h->ctxs[i]);
	}
	free(h->ctxs);
	for (size_t i = h->nunload; i-- > 0;)
		dlclose(h->unload[i]);
	free(h->unload);
	emh__config_release(&h->cfg);
	emh__unload_drivers(h);
	free(h->dinfo);
	free(h->rinfo);
	free_env(h->env);
	pthread_rwlock_destroy(&h->lock);
	free(h);
}

const char *emh_host_default_context(const emh_host *h)
{
	return h && h->def ? h->def->name : NULL;
}

int emh_host_register_entity(emh_host *h, const char *name, const emh_entity *e, emh_error *err)
{
	int rc = emh_entity_validate(e, err);
	if (rc)
		return rc;
	emh_context *c = emh__host_get_context(h, name, err);
	if (!c)
		return EMH_ENOCONTEXT;
	pthread_mutex_lock(&c->mu);
	for (emh__meta *m = atomic_load(&c->metas); m; m = m->next) {
		if (m->pub.entity == e) {
			pthread_mutex_unlock(&c->mu);
			emh__context_put(c);
			return 0;
		}
		if (strcmp(m->pub.entity->table, e->table) == 0) {
			pthread_mutex_unlock(&c->mu);
			rc = emh_error_set(err, EMH_ECONFIG,
					   "context '%s': entities '%s' and '%s' both map to table '%s'", c->name,
					   m->pub.entity->name, e->name, e->table);
			emh__context_put(c);
			return emh_error_context(err, rc, c->name);
		}
	}
	emh__meta *m = calloc(1, sizeof *m);
	if (!m) {
		pthread_mutex_unlock(&c->mu);
		emh__context_put(c);
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	}
	m->ctx = c;
	m->pub.entity = e;
	m->pub.id = c->next_meta_id++;
	m->pub.context = c->name;
	for (size_t i = 0; i < e->nfields; i++) {
		const emh_field *f = &e->fields[i];
		if (f->flags & EMH_F_PK) {
			m->pub.pk = (int)i;
			m->pub.generated = (f->flags & EMH_F_GENERATED) != 0;
		}
		if ((f->flags & EMH_F_NULLABLE) && f->type != EMH_T_TEXT && f->type != EMH_T_JSON &&
		    f->type != EMH_T_BLOB)
			m->nullable_scalars |= UINT64_C(1) << i;
	}
	pthread_mutex_init(&m->sync_mu, NULL);
	if (c->drv->d.dialect && (rc = emh__sql_prepare_meta(m, c->drv->d.dialect, err)) != 0) {
		pthread_mutex_unlock(&c->mu);
		pthread_mutex_destroy(&m->sync_mu);
		free(m);
		emh__context_put(c);
		return emh_error_context(err, rc, c->name);
	}
	m->next = atomic_load(&c->metas);
	atomic_fetch_add_explicit(&c->unsynced, 1, memory_order_relaxed);
	atomic_store_explicit(&c->metas, m, memory_order_release);
	pthread_mutex_unlock(&c->mu);
	rc = 0;
	pthread_mutex_lock(&c->pool.mu);
	bool up = c->pool.up;
	pthread_mutex_unlock(&c->pool.mu);
	if (c->schema_sync && up) {
		/* Now, if the database is reachable (one attempt: a database known
		 * to be down is not tried for each entity); else the first fork
		 * that takes a connection does it. */
		emh__pconn *pc;
		emh_error ignored;
		if (emh__pool_acquire(&c->pool, &pc, &ignored) == 0) {
			rc = emh__meta_sync(m, pc->conn, false, err);
			emh__pool_release(&c->pool, pc, rc);
			if (rc)
				emh__error_in_context(err, rc, c->name);
		}
	}
	emh__context_put(c);
	return rc;
}

/* Sync one entity's schema on pc (once per context unless forced). */
int emh__meta_sync(emh__meta *m, emh_conn *conn, bool force, emh_error *err);
int emh__meta_sync(emh__meta *m, emh_conn *conn, bool force, emh_error *err)
{
	if (!force && atomic_load_explicit(&m->synced, memory_order_acquire))
		return 0;
	pthread_mutex_lock(&m->sync_mu);
	int rc = 0;
	if (force || !atomic_load(&m->synced)) {
		rc = m->ctx->drv->d.sync(conn, &m->pub, err);
		if (rc == 0 && !atomic_exchange_explicit(&m->synced, 1, memory_order_acq_rel))
			atomic_fetch_sub_explicit(&m->ctx->unsynced, 1, memory_order_release);
	}
	pthread_mutex_unlock(&m->sync_mu);
	return rc;
}

int emh_host_sync_schema(emh_host *h, const char *name, emh_error *err)
{
	emh_context *c = emh__host_get_context(h, name, err);
	if (!c)
		return EMH_ENOCONTEXT;
	emh__pconn *pc;
	int rc = emh__pool_acquire(&c->pool, &pc, err);
	if (rc == 0) {
		for (emh__meta *m = atomic_load(&c->metas); m && rc == 0; m = m->next)
			rc = emh__meta_sync(m, pc->conn, true, err);
		emh__pool_release(&c->pool, pc, rc);
	}
	if (rc)
		name_context(err, rc, c->name);
	emh__context_put(c);
	return rc;
}

int emh_host_ping(emh_host *h, const char *name, emh_error *err)
{
	emh_context *c = emh__host_get_context(h, name, err);
	if (!c)
		return EMH_ENOCONTEXT;
	int rc = ping_context(c, err);
	emh__context_put(c);
	return rc;
}

int emh_host_add_context(emh_host *h, const char *name, const char *const *kv, emh_error *err)
{
	if (!h || !name || !emh_ident_valid(name))
		return emh_error_set(err, EMH_EINVAL, "context name '%s' is not a valid identifier",
				     name ? name : "(null)");
	emh__ctxconf conf = {0};
	int rc = 0;
	if (!(conf.name = strdup(name)) || !(conf.origin = strdup("api"))) {
		rc = emh_error_set(err, EMH_ENOMEM, "out of memory");
		goto out_release;
	}
	/* The URL first: it sets the connection keys, which single keys may then override. */
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; kv && kv[i]; i += 2) {
			if (!kv[i + 1]) {
				rc = emh_error_set(err, EMH_EINVAL, "context '%s': key '%s' has no value", name, kv[i]);
				goto out_release;
			}
			bool is_url = strcmp(kv[i], "url") == 0;
			if (is_url != (pass == 0))
				continue;
			char *v;
			if ((rc = emh__config_expand(kv[i + 1], (const char *const *)h->env, "api", &v, err)) != 0)
				goto out_release;
			if (is_url) {
				pthread_rwlock_rdlock(&h->lock);
				const emh_driver *dl[64];
				size_t nd = h->ndrivers < 64 ? h->ndrivers : 64;
				for (size_t j = 0; j < nd; j++)
					dl[j] = &h->drivers[j].d;
				pthread_rwlock_unlock(&h->lock);
				rc = emh__url_apply(&conf, v, "api", dl, nd, err);
			} else {
				rc = emh__settings_set(&conf.s, kv[i], v, "api", NULL, 0, strcmp(kv[i], "password") == 0);
			}
			free(v);
			if (rc)
				goto out_release;
		}
	}
	emh_context *c;
	if ((rc = context_create(h, &conf, &c, err)) != 0)
		goto out_release;
	if (c->required && (rc = ping_context(c, err)) != 0) {
		context_free(c);
		return rc;
	}
	pthread_rwlock_wrlock(&h->lock);
	rc = add_context_locked(h, c, err);
	pthread_rwlock_unlock(&h->lock);
	if (rc)
		context_free(c);
	return rc;
out_release:
	emh__ctxconf_release(&conf);
	return rc;
}

int emh_host_remove_context(emh_host *h, const char *name, emh_error *err)
{
	pthread_rwlock_wrlock(&h->lock);
	emh_context *c = name ? find_locked(h, name) : NULL;
	if (!c) {
		char list[1024];
		context_list(h, list, sizeof list);
		pthread_rwlock_unlock(&h->lock);
		return emh_error_set(err, EMH_ENOCONTEXT, "no context '%s' (contexts: %s)", name ? name : "(null)",
				     list);
	}
	if (c == h->def) {
		pthread_rwlock_unlock(&h->lock);
		return emh_error_set(err, EMH_ESTATE, "context '%s' is the default and cannot be removed", name);
	}
	atomic_store_explicit(&c->removing, true, memory_order_release);
	for (size_t i = 0; i < h->nctx; i++)
		if (h->ctxs[i] == c) {
			memmove(&h->ctxs[i], &h->ctxs[i + 1], (h->nctx - i - 1) * sizeof *h->ctxs);
			h->nctx--;
			break;
		}
	pthread_rwlock_unlock(&h->lock);
	/* Wait for every fork on it to close; the timed wait covers a wakeup
	 * sent between our check and our wait. */
	pthread_mutex_lock(&c->mu);
	while (atomic_load_explicit(&c->refs, memory_order_acquire) > 0) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 50 * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&c->cv, &c->mu, &ts);
	}
	pthread_mutex_unlock(&c->mu);
	emh__log(&h->log, EMH_LOG_INFO, c->name, "context removed");
	context_free(c);
	return 0;
}

const char *emh_host_context_setting(emh_host *h, const char *name, const char *key)
{
	pthread_rwlock_rdlock(&h->lock);
	emh_context *c = find_locked(h, name);
	const char *v = c ? emh__ctxconf_get(&c->conf, key) : NULL;
	pthread_rwlock_unlock(&h->lock);
	return v;
}

const char *emh_host_context_driver(emh_host *h, const char *name)
{
	pthread_rwlock_rdlock(&h->lock);
	emh_context *c = find_locked(h, name);
	const char *v = c ? c->drv->d.name : NULL;
	pthread_rwlock_unlock(&h->lock);
	return v;
}

/* ---- introspection ---- */

/* Append a copy of s to the string area of an info block. */
static const char *info_str(char **area, const char *s)
{
	size_t n = strlen(s) + 1;
	char *d = memcpy(*area, s, n);
	*area += n;
	return d;
}

int emh_host_contexts(emh_host *h, emh_context_info **out, size_t *n, emh_error *err)
{
	*out = NULL;
	*n = 0;
	pthread_rwlock_rdlock(&h->lock);
	size_t nc = h->nctx, total = 0, bytes = 0;
	for (size_t i = 0; i < nc; i++) {
		const emh_context *c = h->ctxs[i];
		total += c->conf.s.n;
		bytes += strlen(c->name) + strlen(c->drv->d.name) + 2;
		for (size_t j = 0; j < c->conf.s.n; j++) {
			const emh__setting *st = &c->conf.s.v[j];
			bytes += strlen(st->key) + strlen(emh__setting_shown(st)) +
				 strlen(st->origin ? st->origin : "default") + 3;
		}
	}
	/* One block: infos, setting infos, then copies of every string, so the
	 * snapshot stays valid even if a context is removed meanwhile. */
	emh_context_info *infos = calloc(1, nc * sizeof *infos + total * sizeof(emh_setting_info) + bytes + 1);
	if (!infos) {
		pthread_rwlock_unlock(&h->lock);
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	}
	emh_setting_info *si = (emh_setting_info *)(infos + nc);
	char *area = (char *)(si + total);
	for (size_t i = 0; i < nc; i++) {
		emh_context *c = h->ctxs[i];
		emh_context_info *ci = &infos[i];
		ci->name = info_str(&area, c->name);
		ci->driver = info_str(&area, c->drv->d.name);
		ci->is_default = c->is_default;
		ci->required = c->required;
		ci->settings = si;
		for (size_t j = 0; j < c->conf.s.n; j++, si++) {
			const emh__setting *st = &c->conf.s.v[j];
			si->key = info_str(&area, st->key);
			si->value = info_str(&area, emh__setting_shown(st));
			si->origin = info_str(&area, st->origin ? st->origin : "default");
			ci->nsettings++;
		}
		pthread_mutex_lock(&c->pool.mu);
		ci->pool_min = c->pool.min;
		ci->pool_max = c->pool.max;
		ci->in_use = c->pool.in_use;
		ci->idle = c->pool.nidle;
		ci->waiting = c->pool.waiting;
		ci->up = c->pool.up;
		snprintf(ci->last_error, sizeof ci->last_error, "%s", c->pool.last_error);
		pthread_mutex_unlock(&c->pool.mu);
		ci->acquires = atomic_load(&c->pool.acquires);
		ci->acquire_wait_ns = atomic_load(&c->pool.wait_ns);
		ci->timeouts = atomic_load(&c->pool.timeouts);
		ci->opened = atomic_load(&c->pool.opened);
		ci->discarded = atomic_load(&c->pool.discarded);
		ci->forks_open = atomic_load(&c->forks_open);
		ci->queries = atomic_load(&c->queries);
		for (int k = 0; k < EMH__ERRKINDS && k < 32; k++)
			ci->errors[k] = atomic_load(&c->errors[k]);
	}
	pthread_rwlock_unlock(&h->lock);
	*out = infos;
	*n = nc;
	return 0;
}

void emh_context_info_free(emh_context_info *infos, size_t n)
{
	(void)n;
	free(infos);
}

size_t emh_host_drivers(const emh_host *h, const emh_driver_info **out)
{
	emh_host *mh = (emh_host *)h;
	if (!mh->dinfo && h->ndrivers) {
		mh->dinfo = calloc(h->ndrivers, sizeof *mh->dinfo);
		if (!mh->dinfo) {
			*out = NULL;
			return 0;
		}
		for (size_t i = 0; i < h->ndrivers; i++) {
			const emh_driver *d = &h->drivers[i].d;
			mh->dinfo[i] = (emh_driver_info){.name = d->name, .version = d->version,
							 .abi_major = d->abi_version >> 16,
							 .abi_minor = d->abi_version & 0xffff, .caps = d->caps,
							 .file = h->drivers[i].file};
		}
	}
	*out = h->dinfo;
	return h->ndrivers;
}

size_t emh_host_refused(const emh_host *h, const emh_refused_info **out)
{
	emh_host *mh = (emh_host *)h;
	if (!mh->rinfo && h->nrefused) {
		mh->rinfo = calloc(h->nrefused, sizeof *mh->rinfo);
		if (!mh->rinfo) {
			*out = NULL;
			return 0;
		}
		for (size_t i = 0; i < h->nrefused; i++)
			mh->rinfo[i] = (emh_refused_info){.file = h->refused[i].file, .reason = h->refused[i].reason};
	}
	*out = h->rinfo;
	return h->nrefused;
}

const char *emh_caps_string(uint64_t caps, char *buf, size_t cap)
{
	static const char *const names[] = {"transactions", "savepoints", "returning", "upsert",
					    "two-phase",    "sql",        "atomic-flush"};
	size_t off = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < sizeof names / sizeof *names && off < cap; i++)
		if (caps & (UINT64_C(1) << i))
			off += (size_t)snprintf(buf + off, cap - off, "%s%s", off ? "," : "", names[i]);
	if (!off)
		snprintf(buf, cap, "none");
	return buf;
}
