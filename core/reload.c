/* SPDX-License-Identifier: MIT */
/*
 * core/reload.c: emh_host_reload.  The configuration file and the
 * environment are read again and the difference applied to the running
 * host: new contexts are added, deleted ones drained and removed, changed
 * pool settings applied to the live pools, and driver plugins dropped into
 * the plugin directory since start are loaded.
 *
 * A reload is planned first and applied only when the whole plan holds:
 * a configuration with an error, or one asking for a change that cannot
 * apply to a running context (its driver or connection settings, the
 * default context), is refused with nothing changed.  The one thing a
 * refused reload keeps is a newly loaded driver: loading one changes no
 * context, and it is there for the next reload.
 *
 * A context's connection settings are not changed in place because its
 * pool's connections, the driver's per-context state and the entities
 * registered in it (with their compiled statements) all hang off them;
 * replacing the context would lose the registrations of the services that
 * use it.  Giving the database a new context name, or restarting, says
 * what is meant.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfg_int.h"
#include "internal.h"

/* One existing context whose pool settings change. */
typedef struct pool_change {
	emh_context *c;      /* referenced until the reload ends */
	emh__ctxconf *conf;  /* its checked new configuration (in plan.cfg) */
} pool_change;

typedef struct plan {
	emh__config cfg;
	char **env;
	bool env_swapped;
	emh_context **added;
	size_t nadded;
	pool_change *changed;
	size_t nchanged;
	char **removed;
	size_t nremoved;
	emh_buf summary;  /* what changed, one line */
	emh_buf loaded;   /* drivers loaded by the rescan */
	emh_buf later;    /* sections that apply at the next start */
} plan;

static void env_free(char **env)
{
	for (size_t i = 0; env && env[i]; i++)
		free(env[i]);
	free(env);
}

static void env_retire(emh_host *h, char **env)
{
	for (size_t i = 0; env && env[i]; i++)
		emh__host_retire(h, env[i]);
	emh__host_retire(h, env);
}

static void plan_release(emh_host *h, plan *pl, bool applied)
{
	if (pl->env_swapped && !applied) /* back to the environment the host had */
		pl->env = atomic_exchange_explicit(&h->env, pl->env, memory_order_acq_rel);
	if (pl->env_swapped)
		env_retire(h, pl->env); /* the one not in use: readers may hold it */
	else
		env_free(pl->env);
	for (size_t i = 0; i < pl->nadded; i++)
		if (!applied)
			emh__context_free(pl->added[i]);
	free(pl->added);
	for (size_t i = 0; i < pl->nchanged; i++)
		emh__context_put(pl->changed[i].c);
	free(pl->changed);
	for (size_t i = 0; i < pl->nremoved; i++)
		free(pl->removed[i]);
	free(pl->removed);
	emh__config_release(&pl->cfg);
	emh_buf_release(&pl->summary);
	emh_buf_release(&pl->loaded);
	emh_buf_release(&pl->later);
}

static int oom(emh_error *err) { return emh_error_set(err, EMH_ENOMEM, "out of memory"); }

static bool same_str(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

/* Equal keys and values (origins aside). */
static bool same_settings(const emh__settings *a, const emh__settings *b)
{
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++) {
		const emh__setting *o = emh__settings_find(b, a->v[i].key);
		if (!o || !same_str(o->value, a->v[i].value))
			return false;
	}
	return true;
}

static bool same_services(const emh__config *a, const emh__config *b)
{
	if (a->nservices != b->nservices)
		return false;
	for (size_t i = 0; i < a->nservices; i++) {
		const emh__svcconf *x = &a->services[i], *y = &b->services[i];
		if (!same_str(x->name, y->name) || !same_str(x->module, y->module) ||
		    !same_settings(&x->remap, &y->remap) || !same_settings(&x->s, &y->s))
			return false;
	}
	return true;
}

/* What the reload does not touch but the file changed: said once, applied at the next start. */
static void note_later(const emh__config *old, const emh__config *cfg, emh_buf *later)
{
	if (!same_services(old, cfg))
		emh_buf_addf(later, "%sservices", later->len ? ", " : "");
	if (!same_settings(&old->server, &cfg->server))
		emh_buf_addf(later, "%sserver", later->len ? ", " : "");
	const emh__setting *top[][2] = {{&old->plugin_dir, &cfg->plugin_dir},
					{&old->service_dir, &cfg->service_dir},
					{&old->log_level, &cfg->log_level}};
	static const char *const names[] = {"plugin_dir", "service_dir", "log_level"};
	for (size_t i = 0; i < sizeof names / sizeof *names; i++)
		if (!same_str(top[i][0]->value, top[i][1]->value))
			emh_buf_addf(later, "%s%s", later->len ? ", " : "", names[i]);
}

/* The default context the new configuration names, as emh_host_new picks it; NULL for none. */
static int default_of(const emh__config *cfg, const char **out, emh_error *err)
{
	*out = cfg->default_context.value;
	if (*out)
		return 0;
	for (size_t i = 0; i < cfg->ncontexts; i++)
		if (strcmp(cfg->contexts[i].name, "default") == 0)
			return *out = "default", 0;
	if (cfg->ncontexts == 1)
		return *out = cfg->contexts[0].name, 0;
	if (cfg->ncontexts > 1)
		return emh_error_set(err, EMH_ECONFIG,
				     "several contexts and none is the default: set default_context or EMH_DEFAULT_CONTEXT");
	return 0;
}

/* Who pinned context name ("service 'users'"), or NULL. */
static const char *pinned_by(const char *const *pinned, const char *name)
{
	for (size_t i = 0; pinned && pinned[i] && pinned[i + 1]; i += 2)
		if (strcmp(pinned[i], name) == 0)
			return pinned[i + 1];
	return NULL;
}

/*
 * An existing context against its new configuration (checked here against
 * the context's driver): pool settings may change, nothing else.
 */
static int plan_existing(emh_host *h, plan *pl, emh_context *c, emh__ctxconf *conf, emh_error *err)
{
	const char *dname = emh__ctxconf_get(conf, "driver");
	if (!same_str(dname, c->drv->d.name))
		return emh_error_set(err, EMH_ECONFIG,
				     "context '%s': its driver cannot change while it runs ('%s' -> '%s'); restart, "
				     "or give the database a new context name",
				     c->name, c->drv->d.name, dname ? dname : "none");
	/* the environment of this reload: swapped into the host by now */
	int rc = emh__config_check_context(conf, &c->drv->d, emh__host_env(h), err);
	if (rc)
		return emh_error_context(err, rc, c->name);
	emh_buf keys = EMH_BUF_INIT;
	bool pool = false;
	const emh__settings *sets[2] = {&conf->s, &c->conf.s};
	for (int k = 0; k < 2; k++)
		for (size_t i = 0; i < sets[k]->n; i++) {
			const emh__setting *st = &sets[k]->v[i];
			const emh__setting *other = emh__settings_find(sets[1 - k], st->key);
			if (other && (k == 1 || same_str(other->value, st->value)))
				continue; /* the same, or seen from the other side */
			if (strncmp(st->key, "pool.", 5) == 0)
				pool = true;
			else
				emh_buf_addf(&keys, "%s%s", keys.len ? ", " : "", st->key);
		}
	if (keys.len) {
		/* keys only: values may be secrets */
		rc = keys.oom ? oom(err)
			      : emh_error_set(err, EMH_ECONFIG,
					      "context '%s': %s cannot change while it runs (only pool settings apply "
					      "live); restart, or give the database a new context name",
					      c->name, keys.ptr);
		emh_buf_release(&keys);
		return emh_error_context(err, rc, c->name);
	}
	emh_buf_release(&keys);
	if (!pool)
		return 0;
	pool_change *v = realloc(pl->changed, (pl->nchanged + 1) * sizeof *v);
	if (!v)
		return oom(err);
	pl->changed = v;
	v[pl->nchanged++] = (pool_change){.c = c, .conf = conf};
	return 1; /* c's reference now belongs to the plan */
}

static int plan_new(emh_host *h, plan *pl, emh__ctxconf *conf, emh_error *err)
{
	emh_context **v = realloc(pl->added, (pl->nadded + 1) * sizeof *v);
	if (!v)
		return oom(err);
	pl->added = v;
	emh_context *c;
	int rc = emh__context_create(h, conf, &c, err);
	if (rc)
		return rc;
	if (c->required && (rc = emh__context_ping(c, err)) != 0) {
		emh_error_prefix(err, rc, "required ");
		emh__context_free(c);
		return rc;
	}
	pl->added[pl->nadded++] = c;
	return 0;
}

/* Contexts of the running host that the new configuration no longer has. */
static int plan_removed(emh_host *h, plan *pl, const char *const *pinned, emh_error *err)
{
	int rc = 0;
	pthread_rwlock_rdlock(&h->lock);
	for (size_t i = 0; i < h->nctx && rc == 0; i++) {
		emh_context *c = h->ctxs[i];
		/* contexts added through the API are the caller's, not the file's */
		if (emh__config_find_context(&pl->cfg, c->name) || same_str(c->conf.origin, "api"))
			continue;
		const char *who = pinned_by(pinned, c->name);
		if (c == h->def)
			rc = emh_error_set(err, EMH_ECONFIG, "context '%s' is the default and cannot be removed", c->name);
		else if (who)
			rc = emh_error_set(err, EMH_ECONFIG,
					   "context '%s' cannot be removed: %s uses it (services are not reloaded; "
					   "restart to remove it)",
					   c->name, who);
		else {
			char **v = realloc(pl->removed, (pl->nremoved + 1) * sizeof *v);
			if (!v || !(v[pl->nremoved] = strdup(c->name))) {
				if (v)
					pl->removed = v;
				rc = oom(err);
			} else {
				pl->removed = v;
				pl->nremoved++;
			}
		}
	}
	pthread_rwlock_unlock(&h->lock);
	return rc;
}

/* Read, rescan, and check everything; nothing of the running host changes but the drivers loaded. */
static int plan_make(emh_host *h, plan *pl, const emh_reload_opts *opts, emh_error *err)
{
	int rc;
	if (!(pl->env = emh__env_copy(opts->envp)))
		return oom(err);
	if ((rc = emh__config_parse(&pl->cfg, h->cfg.path, (const char *const *)pl->env, err)) != 0)
		return rc;
	if (h->plugin_dir) {
		pthread_rwlock_wrlock(&h->lock);
		rc = emh__rescan_plugins(h, h->plugin_dir, &pl->loaded, err);
		pthread_rwlock_unlock(&h->lock);
		if (rc)
			return rc;
	}
	pthread_rwlock_rdlock(&h->lock);
	size_t nd = h->ndrivers;
	const emh_driver **dlist = calloc(nd + 1, sizeof *dlist);
	for (size_t i = 0; dlist && i < nd; i++)
		dlist[i] = &h->drivers[i]->d; /* drivers stay where they are; only the array may move */
	pthread_rwlock_unlock(&h->lock);
	if (!dlist)
		return oom(err);
	rc = emh__config_apply_env(&pl->cfg, (const char *const *)pl->env, dlist, nd, err);
	free(dlist);
	if (rc)
		return rc;
	const char *def;
	if ((rc = default_of(&pl->cfg, &def, err)) != 0)
		return rc;
	const char *cur = emh_host_default_context(h);
	if (!same_str(def, cur))
		return emh_error_set(err, EMH_ECONFIG, "the default context cannot change while running ('%s' -> '%s'); restart",
				     cur ? cur : "none", def ? def : "none");
	/* New contexts resolve password_env and ${VAR} from the new environment. */
	pl->env = atomic_exchange_explicit(&h->env, pl->env, memory_order_acq_rel);
	pl->env_swapped = true;

	for (size_t i = 0; i < pl->cfg.ncontexts; i++) {
		emh__ctxconf *conf = &pl->cfg.contexts[i];
		emh_error lookup;
		emh_context *c = emh__host_get_context(h, conf->name, &lookup);
		if (c) {
			rc = plan_existing(h, pl, c, conf, err);
			if (rc != 1)
				emh__context_put(c);
			rc = rc == 1 ? 0 : rc;
		} else {
			rc = plan_new(h, pl, conf, err);
		}
		if (rc)
			return rc;
	}
	if ((rc = plan_removed(h, pl, opts->pinned, err)) != 0)
		return rc;
	note_later(&h->cfg, &pl->cfg, &pl->later);
	return 0;
}

/* "pool of d: max 8 -> 16, acquire_timeout_ms 5000 -> 2000" into the summary, and the settings shown. */
static void apply_pool_settings(emh_host *h, plan *pl, const pool_change *pc)
{
	emh_buf *b = &pl->summary;
	emh_buf_addf(b, "%spool of %s:", b->len ? "; " : "", pc->c->name);
	bool first = true;
	for (size_t i = 0; i < pc->conf->s.n; i++) {
		emh__setting *nw = &pc->conf->s.v[i];
		emh__setting *st = emh__settings_find_mut(&pc->c->conf.s, nw->key);
		if (strncmp(nw->key, "pool.", 5) != 0 || !st || same_str(st->value, nw->value))
			continue;
		emh_buf_addf(b, "%s %s %s -> %s", first ? "" : ",", nw->key + 5, st->value, nw->value);
		first = false;
		/* the old strings may be borrowed (emh_host_context_setting); drivers read no pool key */
		emh__host_retire(h, st->value);
		emh__host_retire(h, st->origin);
		emh__host_retire(h, st->path);
		st->value = nw->value;
		st->origin = nw->origin;
		st->path = nw->path;
		nw->value = nw->origin = nw->path = NULL;
	}
}

/* "; what a, b", one name at a time */
static void list_add(emh_buf *b, const char *what, const char *name, bool first)
{
	if (first)
		emh_buf_addf(b, "%s%s %s", b->len ? "; " : "", what, name);
	else
		emh_buf_addf(b, ", %s", name);
}

static int plan_apply(emh_host *h, plan *pl, emh_error *err)
{
	int rc = 0;
	size_t in = 0;
	pthread_rwlock_wrlock(&h->lock);
	for (; in < pl->nadded && rc == 0; in++)
		rc = emh__context_insert(h, pl->added[in], err);
	if (rc) {
		/* the lock was held throughout: nobody holds a reference to them */
		for (size_t i = 0; i + 1 < in; i++)
			emh__context_unlink_locked(h, pl->added[i]);
		pthread_rwlock_unlock(&h->lock);
		return rc;
	}
	for (size_t i = 0; i < pl->nchanged; i++)
		apply_pool_settings(h, pl, &pl->changed[i]);
	pthread_rwlock_unlock(&h->lock);
	for (size_t i = 0; i < pl->nchanged; i++)
		if ((rc = emh__pool_configure(&pl->changed[i].c->pool, &pl->changed[i].c->conf, err)) != 0)
			emh__log(&h->log, EMH_LOG_ERROR, pl->changed[i].c->name, "reload: %s", err->message);

	/* "added contexts a, b; removed c; pool of d: ..." */
	emh_buf line = EMH_BUF_INIT;
	for (size_t i = 0; i < pl->nadded; i++)
		list_add(&line, "added contexts", pl->added[i]->name, i == 0);
	for (size_t i = 0; i < pl->nremoved; i++)
		list_add(&line, "removed", pl->removed[i], i == 0);
	if (pl->summary.len)
		emh_buf_addf(&line, "%s%s", line.len ? "; " : "", pl->summary.ptr);
	emh_buf_release(&pl->summary);
	pl->summary = line;

	/* Drained outside every lock: forks open on them finish first. */
	for (size_t i = 0; i < pl->nremoved; i++) {
		emh_error e;
		if (emh_host_remove_context(h, pl->removed[i], &e) != 0 && e.code != EMH_ENOCONTEXT)
			emh__log(&h->log, EMH_LOG_ERROR, pl->removed[i], "reload: %s", e.message);
	}
	return 0;
}

int emh_host_reload(emh_host *h, const emh_reload_opts *opts, char *summary, size_t cap, emh_error *err)
{
	emh_reload_opts none = {0};
	emh_error local;
	if (!err)
		err = &local;
	if (summary && cap)
		summary[0] = '\0';
	if (!h)
		return emh_error_set(err, EMH_EINVAL, "emh_host_reload: no host given");
	if (!opts)
		opts = &none;
	pthread_mutex_lock(&h->reload_mu);
	plan pl = {.summary = EMH_BUF_INIT, .loaded = EMH_BUF_INIT, .later = EMH_BUF_INIT};
	int rc = plan_make(h, &pl, opts, err);
	if (rc == 0)
		rc = plan_apply(h, &pl, err);
	emh_buf *b = &pl.summary;
	if (rc == 0 && pl.loaded.len)
		emh_buf_addf(b, "%sdrivers loaded: %s", b->len ? "; " : "", pl.loaded.ptr);
	if (rc == 0 && !b->len)
		emh_buf_addf(b, "no change");
	if (rc) {
		emh__log(&h->log, EMH_LOG_ERROR, err->context[0] ? err->context : NULL,
			 "reload refused, the running configuration is kept: %s%s%s%s", err->message,
			 pl.loaded.len ? " (drivers loaded: " : "", pl.loaded.len ? pl.loaded.ptr : "",
			 pl.loaded.len ? ")" : "");
	} else if (b->oom) {
		rc = oom(err);
	} else {
		emh__log(&h->log, EMH_LOG_INFO, NULL, "reload: %s", b->ptr);
		if (pl.later.len)
			emh__log(&h->log, EMH_LOG_WARN, NULL, "reload: changes to %s apply at the next start",
				 pl.later.ptr);
		if (summary && cap)
			snprintf(summary, cap, "%s", b->ptr);
	}
	plan_release(h, &pl, rc == 0);
	pthread_mutex_unlock(&h->reload_mu);
	return rc;
}
