/* SPDX-License-Identifier: MIT */
/*
 * core/reload.c: emh_host_reload.  The configuration file and the
 * environment are read again and the difference applied to the running
 * host: new contexts are added (with their migrate policy applied as at
 * start, refusing forks until it ran), deleted ones drained and removed, changed
 * pool settings applied to the live pools, and driver plugins dropped into
 * the plugin directory since start are loaded.
 *
 * The host's connection budget (max_connections, EMH_MAX_CONNECTIONS)
 * applies live too: connections above a lowered budget close as they go
 * idle (core/pool.c).
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
#include "migrate_int.h"

/* One existing context whose live settings change: pool.*, replicas.N.pool.*, max_replica_lag_ms. */
typedef struct pool_change {
	emh_context *c;       /* referenced until the reload ends */
	emh__ctxconf *conf;   /* its checked new configuration (in plan.cfg) */
	emh__ctxconf *rconf;  /* its replicas' new settings, c->nreplicas of them (NULL: none) */
	bool *rchanged;       /* which replicas' pools change (set while applying) */
	bool pool;            /* its own pool changes */
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
	bool max_changed; /* max_connections (the host's budget) */
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
	if (pl->env_swapped) {
		/* the one not in use: readers may hold it.  The retired list is
		 * shared with emh_host_drivers/emh_host_refused, which hold only
		 * the host lock, not reload_mu. */
		pthread_rwlock_wrlock(&h->lock);
		env_retire(h, pl->env);
		pthread_rwlock_unlock(&h->lock);
	} else
		env_free(pl->env);
	for (size_t i = 0; i < pl->nadded; i++)
		if (!applied)
			emh__context_free(pl->added[i]);
	free(pl->added);
	for (size_t i = 0; i < pl->nchanged; i++) {
		pool_change *pc = &pl->changed[i];
		for (unsigned j = 0; pc->rconf && j < pc->c->nreplicas; j++)
			emh__ctxconf_release(&pc->rconf[j]);
		free(pc->rconf);
		free(pc->rchanged);
		emh__context_put(pc->c);
	}
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
 * Keys a running context takes live: its pool's, its replicas' pools' and
 * max_replica_lag_ms.  A replica itself (its URL, connection keys, the
 * list) is fixed for the context's life, as the context's own are.
 */
static bool live_key(const char *key)
{
	unsigned n;
	bool ok;
	const char *sub = emh__replica_key(key, &n, &ok);
	return strncmp(sub ? sub : key, "pool.", 5) == 0 || (!sub && strcmp(key, "max_replica_lag_ms") == 0);
}

/* Each replica of c as conf makes it, checked: into pc->rconf. */
static int plan_replicas(emh_context *c, pool_change *pc, emh_error *err)
{
	if (!c->nreplicas)
		return 0;
	if (!(pc->rconf = calloc(c->nreplicas, sizeof *pc->rconf)) ||
	    !(pc->rchanged = calloc(c->nreplicas, sizeof *pc->rchanged)))
		return oom(err);
	for (unsigned j = 0; j < c->nreplicas; j++) {
		const emh__replica *r = &c->replicas[j];
		int rc = emh__replica_conf(c, pc->conf, r, &pc->rconf[j], err);
		if (rc)
			return emh_error_context(err, rc, c->name);
		/* what the context's keys allowed, checked as the replica ends up with it */
		const emh__settings *a = &pc->rconf[j].s, *b = &r->conf.s;
		for (size_t i = 0; i < a->n + b->n; i++) {
			const emh__setting *st = i < a->n ? &a->v[i] : &b->v[i - a->n];
			const emh__setting *other = emh__settings_find(i < a->n ? b : a, st->key);
			if (other && (same_str(other->value, st->value) || strncmp(st->key, "pool.", 5) == 0))
				continue;
			rc = emh_error_set(err, EMH_ECONFIG, "context '%s': replica %u's %s cannot change while it runs "
					   "(only its pool settings apply live); restart", c->name, r->index, st->key);
			return emh_error_context(err, rc, c->name);
		}
	}
	return 0;
}

/*
 * An existing context against its new configuration (checked here against
 * the context's driver): pool settings (its own and its replicas') and
 * max_replica_lag_ms may change, nothing else.  A replica's pool key that
 * appears or goes (replicas.N.pool.max set where it was inherited) is
 * refused too: the context's settings cannot grow or shrink while drivers
 * read them, and the key shown would be wrong.
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
	emh_buf keys = EMH_BUF_INIT, moved = EMH_BUF_INIT;
	bool live = false, pool = false;
	const emh__settings *sets[2] = {&conf->s, &c->conf.s};
	for (int k = 0; k < 2; k++)
		for (size_t i = 0; i < sets[k]->n; i++) {
			const emh__setting *st = &sets[k]->v[i];
			const emh__setting *other = emh__settings_find(sets[1 - k], st->key);
			if (other && (k == 1 || same_str(other->value, st->value)))
				continue; /* the same, or seen from the other side */
			if (other && live_key(st->key)) {
				live = true;
				pool |= strncmp(st->key, "pool.", 5) == 0;
			} else if (live_key(st->key))
				emh_buf_addf(&moved, "%s%s", moved.len ? ", " : "", st->key);
			else
				emh_buf_addf(&keys, "%s%s", keys.len ? ", " : "", st->key);
		}
	/* keys only: values may be secrets */
	if (keys.oom || moved.oom)
		rc = oom(err);
	else if (keys.len)
		rc = emh_error_set(err, EMH_ECONFIG,
				   "context '%s': %s cannot change while it runs (only pool.*, replicas.N.pool.* and "
				   "max_replica_lag_ms apply live; replicas are added, removed or moved at a restart); "
				   "restart, or give the database a new context name",
				   c->name, keys.ptr);
	else if (moved.len)
		rc = emh_error_set(err, EMH_ECONFIG,
				   "context '%s': %s cannot be set or unset while it runs (a replica's pool key it has "
				   "may change its value); restart",
				   c->name, moved.ptr);
	emh_buf_release(&keys);
	emh_buf_release(&moved);
	if (rc)
		return emh_error_context(err, rc, c->name);
	if (!live)
		return 0;
	pool_change *v = realloc(pl->changed, (pl->nchanged + 1) * sizeof *v);
	if (!v)
		return oom(err);
	pl->changed = v;
	v[pl->nchanged] = (pool_change){.c = c, .conf = conf, .pool = pool};
	/* c's reference belongs to the plan from here, error or not */
	rc = plan_replicas(c, &v[pl->nchanged++], err);
	return rc ? rc : 1;
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
	/* migrate = "check"|"on-start": no fork before its policy ran (emh_host_reload) */
	if (emh__migrate_hold(c) != 0) {
		emh__context_free(c);
		return oom(err);
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
	if (h->plugin_dir && (rc = emh__rescan_plugins(h, h->plugin_dir, &pl->loaded, err)) != 0)
		return rc;
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
			size_t held = pl->nchanged;
			rc = plan_existing(h, pl, c, conf, err);
			if (pl->nchanged == held)
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
	pl->max_changed = !same_str(h->cfg.max_connections.value, pl->cfg.max_connections.value);
	return 0;
}

/*
 * Every key of nw that live has with another value takes the new value
 * (the old strings retired: they may be borrowed, emh_host_context_setting;
 * drivers read no pool key), and its pool.* ones go into the summary as
 * "pool of WHO: max 8 -> 16, acquire_timeout_ms 5000 -> 2000".  Whether a
 * pool key changed.  Host lock held for writing.
 */
static bool apply_values(emh_host *h, emh_buf *b, const char *who, emh__settings *live, emh__settings *nw)
{
	bool pool = false;
	for (size_t i = 0; i < nw->n; i++) {
		emh__setting *ns = &nw->v[i];
		emh__setting *st = emh__settings_find_mut(live, ns->key);
		if (!st || same_str(st->value, ns->value))
			continue;
		if (strncmp(ns->key, "pool.", 5) == 0) {
			if (!pool)
				emh_buf_addf(b, "%spool of %s:", b->len ? "; " : "", who);
			emh_buf_addf(b, "%s %s %s -> %s", pool ? "," : "", ns->key + 5, st->value, ns->value);
			pool = true;
		} else if (strcmp(ns->key, "max_replica_lag_ms") == 0) {
			emh_buf_addf(b, "%smax_replica_lag_ms of %s: %s -> %s", b->len ? "; " : "", who, st->value,
				     ns->value);
		}
		emh__host_retire(h, st->value);
		emh__host_retire(h, st->origin);
		emh__host_retire(h, st->path);
		st->value = ns->value;
		st->origin = ns->origin;
		st->path = ns->path;
		ns->value = ns->origin = ns->path = NULL;
	}
	return pool;
}

/* pc's context and replicas take their new live settings.  Host lock held for writing. */
static void apply_live(emh_host *h, plan *pl, pool_change *pc)
{
	emh_context *c = pc->c;
	apply_values(h, &pl->summary, c->name, &c->conf.s, &pc->conf->s);
	const char *lag = emh__ctxconf_get(&c->conf, "max_replica_lag_ms");
	atomic_store_explicit(&c->max_replica_lag_ms, lag ? strtoll(lag, NULL, 10) : 0, memory_order_relaxed);
	for (unsigned j = 0; pc->rconf && j < c->nreplicas; j++) {
		char who[96];
		snprintf(who, sizeof who, "%s replica %u", c->name, c->replicas[j].index);
		pc->rchanged[j] = apply_values(h, &pl->summary, who, &c->replicas[j].conf.s, &pc->rconf[j].s);
	}
}

/*
 * The new max_connections into the host's configuration, its old strings
 * retired (the budget borrows the origin, emh_host_budget copies it), and
 * "max_connections 100 -> 50" into the summary.  Host lock held for writing.
 */
static void apply_max_connections(emh_host *h, plan *pl)
{
	emh__setting *st = &h->cfg.max_connections;
	const char *nv = pl->cfg.max_connections.value;
	emh_buf_addf(&pl->summary, "%smax_connections %s -> %s", pl->summary.len ? "; " : "",
		     st->value ? st->value : "default", nv ? nv : "default");
	char *old[] = {st->key, st->value, st->origin, st->path, st->shown};
	for (size_t i = 0; i < sizeof old / sizeof *old; i++)
		emh__host_retire(h, old[i]);
	*st = pl->cfg.max_connections;
	pl->cfg.max_connections = (emh__setting){0};
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
		apply_live(h, pl, &pl->changed[i]);
	if (pl->max_changed)
		apply_max_connections(h, pl);
	pthread_rwlock_unlock(&h->lock);
	for (size_t i = 0; i < pl->nchanged; i++) {
		pool_change *pc = &pl->changed[i];
		if (pc->pool && (rc = emh__pool_configure(&pc->c->pool, &pc->c->conf, err)) != 0)
			emh__log(&h->log, EMH_LOG_ERROR, pc->c->name, "reload: %s", err->message);
		for (unsigned j = 0; pc->rchanged && j < pc->c->nreplicas; j++) {
			emh__replica *r = &pc->c->replicas[j];
			if (pc->rchanged[j] && (rc = emh__pool_configure(&r->pool, &r->conf, err)) != 0)
				emh__log(&h->log, EMH_LOG_ERROR, pc->c->name, "reload: replica %u: %s", r->index,
					 err->message);
		}
	}
	/* only reloads write it (reload_mu held); checked when read, as at start */
	if (pl->max_changed && (rc = emh__budget_set_max(&h->budget, &h->cfg.max_connections, err)) != 0)
		emh__log(&h->log, EMH_LOG_ERROR, NULL, "reload: %s", err->message);

	/* "added contexts a, b; removed c; pool of d: ..." */
	emh_buf line = EMH_BUF_INIT;
	for (size_t i = 0; i < pl->nadded; i++)
		list_add(&line, "added contexts", pl->added[i]->name, i == 0);
	for (size_t i = 0; i < pl->nremoved; i++)
		list_add(&line, "removed", pl->removed[i], i == 0);
	if (pl->summary.len)
		emh_buf_addf(&line, "%s%s", line.len ? "; " : "", pl->summary.ptr);
	line.oom |= pl->summary.oom; /* a part missing is no summary */
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
	bool applied = false; /* then the host holds the added contexts and the new environment */
	if (rc == 0)
		applied = (rc = plan_apply(h, &pl, err)) == 0;
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
		/* applied all the same: only the line saying what changed is lost */
		emh__log(&h->log, EMH_LOG_WARN, NULL, "reload: applied (out of memory for the list of changes)");
	} else {
		emh__log(&h->log, EMH_LOG_INFO, NULL, "reload: %s", b->ptr);
		if (pl.later.len)
			emh__log(&h->log, EMH_LOG_WARN, NULL, "reload: changes to %s apply at the next start",
				 pl.later.ptr);
		if (summary && cap)
			snprintf(summary, cap, "%s", b->ptr);
	}
	/* The added contexts' migrate policy, as at start (they refuse forks
	 * until it ran): "on-start" applies their migrations, a failure or
	 * (for "check") one not applied keeps them refused. */
	for (size_t i = 0; applied && i < pl.nadded; i++)
		if (emh__migrate_startup_added(h, pl.added[i]->name) != 0)
			emh__log(&h->log, EMH_LOG_ERROR, pl.added[i]->name,
				 "reload: out of memory applying the migrate policy: the context stays refused");
	plan_release(h, &pl, applied);
	pthread_mutex_unlock(&h->reload_mu);
	return rc;
}
