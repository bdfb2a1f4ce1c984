/* SPDX-License-Identifier: MIT */
/*
 * core/host.c: the host's lifecycle (configuration -> drivers -> contexts ->
 * free), its copy of the environment, the loaded drivers, and introspection
 * (snapshots of contexts, drivers and refused plugins for `emhost` and the
 * daemon's health and metrics).  Contexts themselves live in context.c,
 * what is registered in them in meta.c.  No globals: everything hangs off
 * emh_host, so two hosts live side by side in one process.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

extern char **environ;

const emh__config *emh__host_config(const emh_host *h) { return &h->cfg; }

const char *const *emh__host_env(const emh_host *h)
{
	return (const char *const *)atomic_load_explicit(&((emh_host *)h)->env, memory_order_acquire);
}

const emh__driver *emh__host_driver(const emh_host *h, const char *name)
{
	for (size_t i = 0; i < h->ndrivers; i++)
		if (strcmp(h->drivers[i]->d.name, name) == 0)
			return h->drivers[i];
	return NULL;
}

void emh__host_retire(emh_host *h, void *p)
{
	if (!p)
		return;
	void **v = realloc(h->retired, (h->nretired + 1) * sizeof *v);
	if (!v)
		return; /* kept by nobody: leaked, which is still better than freed while borrowed */
	h->retired = v;
	h->retired[h->nretired++] = p;
}

char **emh__env_copy(const char *const *envp)
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

const char *emh__driver_list(const emh_host *h, char *buf, size_t cap)
{
	size_t off = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < h->ndrivers && off < cap; i++)
		off += (size_t)snprintf(buf + off, cap - off, "%s%s", i ? ", " : "", h->drivers[i]->d.name);
	if (h->ndrivers == 0)
		snprintf(buf, cap, "none");
	return buf;
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
	pthread_mutex_init(&h->reload_mu, NULL);
	emh__hotslab_init(&h->hot);
	emh__blockcache_init(&h->blocks, EMH__HOST_BLOCK_CACHE);
	h->log = (emh__logger){.fn = opts->log, .ud = opts->log_ud, .level = opts->log_level};
	emh__budget_init(&h->budget, &h->log);
	int rc;
	char **env = emh__env_copy(opts->envp);
	atomic_init(&h->env, env);
	if (!env) {
		rc = emh_error_set(err, EMH_ENOMEM, "out of memory");
		goto out_free;
	}
	if ((rc = emh__config_parse(&h->cfg, opts->config_path, (const char *const *)env, err)) != 0)
		goto out_free;
	int lv = level_from_name(h->cfg.log_level.value);
	if (lv > h->log.level)
		h->log.level = lv;

	for (size_t i = 0; i < opts->ndrivers; i++)
		if ((rc = emh__add_driver(h, opts->drivers[i], 0, NULL, "(static)", err)) < 0)
			goto out_free;
	if (!opts->no_plugins) {
		const char *dir = emh__plugin_dir_for(opts->plugin_dir, &h->cfg, (const char *const *)h->env);
		if (!(h->plugin_dir = strdup(dir))) {
			rc = emh_error_set(err, EMH_ENOMEM, "out of memory");
			goto out_free;
		}
		if ((rc = emh__load_plugins(h, dir, err)) != 0)
			goto out_free;
	}
	const emh_driver **dlist = calloc(h->ndrivers + 1, sizeof *dlist);
	if (!dlist) {
		rc = emh_error_set(err, EMH_ENOMEM, "out of memory");
		goto out_free;
	}
	for (size_t i = 0; i < h->ndrivers; i++)
		dlist[i] = &h->drivers[i]->d;
	rc = emh__config_apply_env(&h->cfg, (const char *const *)env, dlist, h->ndrivers, err);
	free(dlist);
	if (rc || (rc = emh__budget_set_max(&h->budget, &h->cfg.max_connections, err)) != 0)
		goto out_free;

	for (size_t i = 0; i < h->cfg.ncontexts; i++) {
		emh_context *c;
		if ((rc = emh__context_create(h, &h->cfg.contexts[i], &c, err)) != 0)
			goto out_free;
		if ((rc = emh__context_insert(h, c, err)) != 0) {
			emh__context_free(c);
			goto out_free;
		}
	}
	const char *defname = h->cfg.default_context.value;
	if (defname) {
		if (!(h->def = emh__context_find_locked(h, defname))) {
			char list[1024];
			rc = emh_error_set(err, EMH_ECONFIG, "%s: default context '%s' does not exist (contexts: %s)",
					   h->cfg.default_context.origin ? h->cfg.default_context.origin : "config",
					   defname, emh__context_list_locked(h, list, sizeof list));
			goto out_free;
		}
	} else if ((h->def = emh__context_find_locked(h, "default")) == NULL && h->nctx == 1) {
		h->def = h->ctxs[0];
	} else if (!h->def && h->nctx > 1) {
		char list[1024];
		rc = emh_error_set(err, EMH_ECONFIG,
				   "several contexts (%s) and none is the default: set default_context or "
				   "EMH_DEFAULT_CONTEXT",
				   emh__context_list_locked(h, list, sizeof list));
		goto out_free;
	}
	if (h->def)
		h->def->is_default = true;
	for (size_t i = 0; i < h->nctx && !opts->offline; i++) {
		emh_context *c = h->ctxs[i];
		if (!c->required)
			continue;
		if ((rc = emh__context_ping(c, err)) != 0) {
			emh_error_prefix(err, rc, "required ");
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
	unsigned svcs = atomic_load(&h->services_alive);
	if (svcs)
		emh__log(&h->log, EMH_LOG_ERROR, NULL,
			 "host freed before %u services object(s) on it: free them first (emh_services_free)", svcs);
	emh__budget_stop(&h->budget); /* the reaper walks the pools */
	for (size_t i = 0; i < h->nctx; i++) {
		unsigned refs = atomic_load(&h->ctxs[i]->hot->refs) & ~EMH__CTX_HIDDEN;
		if (refs)
			emh__log(&h->log, EMH_LOG_ERROR, h->ctxs[i]->name,
				 "host freed with %u fork(s) still open on this context", refs);
		emh__context_free(h->ctxs[i]);
	}
	free(h->ctxs);
	emh__context_table_free(h);
	emh__hotslab_destroy(&h->hot); /* after the last context */
	emh__blockcache_destroy(&h->blocks); /* after the last fork */
	emh__config_release(&h->cfg);
	emh__unload_drivers(h);
	free(h->dinfo);
	free(h->rinfo);
	free(h->plugin_dir);
	free_env(atomic_load(&h->env));
	for (size_t i = 0; i < h->nretired; i++)
		free(h->retired[i]);
	free(h->retired);
	emh__budget_destroy(&h->budget);
	pthread_mutex_destroy(&h->reload_mu);
	pthread_rwlock_destroy(&h->lock);
	free(h);
}

const char *emh_host_default_context(const emh_host *h)
{
	return h && h->def ? h->def->name : NULL;
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
		pthread_mutex_lock(&h->budget.mu); /* the limits too: a reload changes them under it */
		ci->pool_min = c->pool.min;
		ci->pool_max = c->pool.max;
		emh__pool_counts(&c->pool, &ci->in_use, &ci->idle);
		ci->waiting = c->pool.waiting + c->pool.budget_waiting;
		pthread_mutex_unlock(&h->budget.mu);
		pthread_mutex_lock(&c->pool.mu);
		ci->up = c->pool.up;
		snprintf(ci->last_error, sizeof ci->last_error, "%s", c->pool.last_error);
		pthread_mutex_unlock(&c->pool.mu);
		ci->acquires = atomic_load(&c->pool.acquires);
		ci->acquire_wait_ns = atomic_load(&c->pool.wait_ns);
		ci->timeouts = atomic_load(&c->pool.timeouts);
		ci->opened = atomic_load(&c->pool.opened);
		ci->discarded = atomic_load(&c->pool.discarded);
		ci->forks_open = atomic_load(&c->hot->forks_open);
		ci->queries = emh__qstats_total(atomic_load_explicit(&c->qstats, memory_order_acquire));
		for (int k = 0; k < EMH__ERRKINDS && k < 32; k++)
			ci->errors[k] = atomic_load(&c->errors[k]);
	}
	pthread_rwlock_unlock(&h->lock);
	*out = infos;
	*n = nc;
	return 0;
}

int emh_host_budget(emh_host *h, emh_budget_info *out, size_t size)
{
	if (!h || !out)
		return EMH_EINVAL;
	emh__budget *b = &h->budget;
	emh_budget_info bi = {.nofile = b->nofile};
	pthread_mutex_lock(&b->mu);
	bi.max_connections = b->max_conns;
	bi.connections = b->conns;
	bi.max_fds = b->max_fds;
	bi.fds = b->fds;
	bi.idle = emh__budget_idle(b);
	bi.waiting = b->waiting;
	snprintf(bi.origin, sizeof bi.origin, "%s", b->origin);
	pthread_mutex_unlock(&b->mu);
	bi.evicted = atomic_load(&b->evicted);
	bi.reaped = atomic_load(&b->reaped);
	bi.waits = atomic_load(&b->waits);
	bi.timeouts = atomic_load(&b->timeouts);
	memcpy(out, &bi, size < sizeof bi ? size : sizeof bi);
	return 0;
}

void emh_context_info_free(emh_context_info *infos, size_t n)
{
	(void)n;
	free(infos);
}

/*
 * The introspection arrays are rebuilt when a reload changed what they
 * show; the old ones stay allocated (retired), as callers may still read
 * them.  Built under the write side of the lock: two callers may ask at once.
 */
size_t emh_host_drivers(const emh_host *h, const emh_driver_info **out)
{
	emh_host *mh = (emh_host *)h;
	pthread_rwlock_wrlock(&mh->lock);
	if (mh->ndinfo != h->ndrivers) {
		emh_driver_info *v = calloc(h->ndrivers, sizeof *v);
		if (!v) {
			pthread_rwlock_unlock(&mh->lock);
			*out = NULL;
			return 0;
		}
		for (size_t i = 0; i < h->ndrivers; i++) {
			const emh_driver *d = &h->drivers[i]->d;
			v[i] = (emh_driver_info){.name = d->name, .version = d->version,
						 .abi_major = d->abi_version >> 16, .abi_minor = d->abi_version & 0xffff,
						 .caps = d->caps, .file = h->drivers[i]->file};
		}
		emh__host_retire(mh, mh->dinfo);
		mh->dinfo = v;
		mh->ndinfo = h->ndrivers;
	}
	*out = mh->dinfo;
	size_t n = mh->ndinfo;
	pthread_rwlock_unlock(&mh->lock);
	return n;
}

size_t emh_host_refused(const emh_host *h, const emh_refused_info **out)
{
	emh_host *mh = (emh_host *)h;
	pthread_rwlock_wrlock(&mh->lock);
	/* a rescan may replace refusals without changing their number: compare the entries */
	bool same = mh->nrinfo == h->nrefused;
	for (size_t i = 0; same && i < h->nrefused; i++)
		same = mh->rinfo[i].file == h->refused[i].file && mh->rinfo[i].reason == h->refused[i].reason;
	if (!same) {
		emh_refused_info *v = h->nrefused ? calloc(h->nrefused, sizeof *v) : NULL;
		if (!v && h->nrefused) {
			pthread_rwlock_unlock(&mh->lock);
			*out = NULL;
			return 0;
		}
		for (size_t i = 0; i < h->nrefused; i++)
			v[i] = (emh_refused_info){.file = h->refused[i].file, .reason = h->refused[i].reason};
		emh__host_retire(mh, mh->rinfo);
		mh->rinfo = v;
		mh->nrinfo = h->nrefused;
	}
	*out = mh->rinfo;
	size_t n = mh->nrinfo;
	pthread_rwlock_unlock(&mh->lock);
	return n;
}

const char *emh_caps_string(uint64_t caps, char *buf, size_t cap)
{
	static const char *const names[] = {"transactions", "savepoints", "returning", "upsert",
					    "two-phase",    "sql",        "atomic-flush", "conditional-writes",
					    "locks",        "isolation",    "aggregate",    "replicas"};
	size_t off = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < sizeof names / sizeof *names && off < cap; i++)
		if (caps & (UINT64_C(1) << i))
			off += (size_t)snprintf(buf + off, cap - off, "%s%s", off ? "," : "", names[i]);
	if (!off)
		snprintf(buf, cap, "none");
	return buf;
}
