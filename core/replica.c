/* SPDX-License-Identifier: MIT */
/*
 * core/replica.c: the read replicas of a context (docs/replicas.md).
 *
 * A replica is configured by replicas.N.* keys (the file's replicas list)
 * or by one URL of replica_urls; it takes every setting of its context and
 * puts its own over them (a URL replaces the connection keys, as a
 * context's URL does), so a replica is checked like a context and connects
 * through the same driver.  Each has its own pool inside the host's
 * connection budget.
 *
 * Routing (em.c) asks for the next healthy replica, round robin.  Health is
 * kept without a lock: a replica whose connection fails is skipped until
 * down_until, with a back-off doubling from 1 s up to 30 s while it keeps
 * failing, and the read goes to the primary; the first success clears it.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfg_int.h"
#include "internal.h"

#define BACKOFF_MIN_NS (1000 * 1000000LL)
#define BACKOFF_MAX_NS (30000 * 1000000LL)

/* What a replica takes from its context: everything but these and the replicas' own keys. */
static bool inherited(const char *key)
{
	static const char *const own[] = { "replica_urls", "max_replica_lag_ms", "required", "schema", "migrations",
					   "migrate", NULL };
	unsigned n;
	bool ok;
	return !emh__in_list(own, key) && !emh__replica_key(key, &n, &ok);
}

static int copy_setting(emh__settings *to, const emh__setting *st)
{
	if (emh__settings_set(to, st->key, st->value, st->origin, st->path, st->ltype, st->secret))
		return EMH_ENOMEM;
	return st->shown ? emh__settings_set_shown(to, st->key, st->shown) : 0;
}

/* The loaded drivers (at most 64), for a replica's URL. */
static size_t driver_list(emh_host *h, const emh_driver **dl)
{
	pthread_rwlock_rdlock(&h->lock);
	size_t nd = h->ndrivers < 64 ? h->ndrivers : 64;
	for (size_t j = 0; j < nd; j++)
		dl[j] = &h->drivers[j]->d;
	pthread_rwlock_unlock(&h->lock);
	return nd;
}

/*
 * Replica `index`'s settings into rc as the context configuration cc makes
 * them: cc's, then its URL (url, origin) if it has one, then its
 * replicas.index.* keys; checked against the driver like a context's.
 * Where it is, masked, into shown.
 */
static int replica_conf(emh_context *c, const emh__ctxconf *cc, unsigned index, const char *url,
			const char *url_origin, emh__ctxconf *rc, char *shown, size_t cap, emh_error *err)
{
	int rv = 0;
	if (!(rc->name = strdup(c->name)) || !(rc->origin = emh__strf("replica %u of context '%s'", index, c->name)))
		return emh__cfg_oom(err);
	for (size_t i = 0; i < cc->s.n; i++)
		if (inherited(cc->s.v[i].key) && copy_setting(&rc->s, &cc->s.v[i]))
			return emh__cfg_oom(err);
	if (url) {
		const emh_driver *dl[64];
		size_t nd = driver_list(c->host, dl);
		if ((rv = emh__url_apply(rc, url, url_origin, dl, nd, err)) != 0)
			return rv;
		const char *dname = emh__ctxconf_get(rc, "driver");
		if (!dname || strcmp(dname, c->drv->d.name) != 0)
			return emh_error_set(err, EMH_ECONFIG, "%s: replica %u of context '%s' is a '%s' URL; the context's "
					     "driver is '%s'", url_origin, index, c->name, dname ? dname : "?",
					     c->drv->d.name);
	}
	for (size_t i = 0; i < cc->s.n; i++) {
		const emh__setting *st = &cc->s.v[i];
		unsigned n;
		bool ok;
		const char *key = emh__replica_key(st->key, &n, &ok);
		if (!key || n != index || !ok || strcmp(key, "url") == 0)
			continue;
		/* the replica's own password replaces both of the context's */
		if (strcmp(key, "password") == 0 || strcmp(key, "password_env") == 0) {
			emh__settings_remove(&rc->s, "password");
			emh__settings_remove(&rc->s, "password_env");
		}
		if (emh__settings_set(&rc->s, key, st->value, st->origin, st->path, st->ltype, st->secret))
			return emh__cfg_oom(err);
	}
	if ((rv = emh__config_check_context(rc, &c->drv->d, emh__host_env(c->host), err)) != 0)
		return rv;
	const emh__setting *u = emh__settings_find(&rc->s, "url");
	const char *host = emh__ctxconf_get(rc, "host"), *port = emh__ctxconf_get(rc, "port");
	if (u && (!host || url))
		snprintf(shown, cap, "%s", emh__setting_shown(u));
	else
		snprintf(shown, cap, "%s%s%s", host ? host : "?", port ? ":" : "", port ? port : "");
	return 0;
}

static int replica_open(emh_context *c, emh__replica *r, const char *url, const char *url_origin, emh_error *err)
{
	r->ctx = c;
	atomic_init(&r->lag_ms, -1);
	atomic_init(&r->lag_warned_ns, 0);
	int rc = replica_conf(c, &c->conf, r->index, url, url_origin, &r->conf, r->shown, sizeof r->shown, err);
	if (rc)
		return rc;
	emh__msgf(r->instance, sizeof r->instance, "%s-replica%u", c->instance, r->index);
	r->params = (struct emh_params){.context = c->name, .instance = r->instance, .settings = &r->conf.s,
					.log = &c->host->log};
	const emh_driver *d = &c->drv->d;
	if (d->context_open && (rc = d->context_open(&r->params, &r->dctx, err)) != 0)
		return rc;
	return emh__pool_init(&r->pool, &c->host->budget, c->drv, r->dctx, &r->params, &r->conf, err);
}

/* The highest N of the replicas.N.* keys. */
static unsigned keyed_replicas(const emh__ctxconf *conf)
{
	unsigned max = 0;
	for (size_t i = 0; i < conf->s.n; i++) {
		unsigned n;
		bool ok;
		if (emh__replica_key(conf->s.v[i].key, &n, &ok) && n > max)
			max = n;
	}
	return max;
}

/* The url of replica n's keys, or NULL. */
static const emh__setting *keyed_url(const emh__ctxconf *conf, unsigned n)
{
	char key[48];
	snprintf(key, sizeof key, "replicas.%u.url", n);
	return emh__settings_find(&conf->s, key);
}

int emh__replicas_open(emh_context *c, emh_error *err)
{
	const emh__setting *urls = emh__settings_find(&c->conf.s, "replica_urls");
	const char *lag = emh__ctxconf_get(&c->conf, "max_replica_lag_ms");
	atomic_init(&c->max_replica_lag_ms, lag ? strtoll(lag, NULL, 10) : 0);
	unsigned nkeyed = keyed_replicas(&c->conf), nurls = 0;
	if (urls)
		for (const char *s = urls->value; s; s = strchr(s, ','), s = s ? s + 1 : NULL)
			nurls++;
	if (nkeyed + nurls == 0)
		return 0;
	if (!(c->replicas = calloc(nkeyed + nurls, sizeof *c->replicas)))
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	int rc = 0;
	emh_buf shown = EMH_BUF_INIT;
	char *origin = NULL;
	for (unsigned i = 0; i < nkeyed && !rc; i++) {
		emh__replica *r = &c->replicas[c->nreplicas++];
		r->index = i + 1;
		const emh__setting *u = keyed_url(&c->conf, r->index);
		free(origin);
		origin = u ? emh__strf("url (%s)", u->origin) : NULL;
		if (u && !origin)
			rc = emh__cfg_oom(err);
		else
			rc = replica_open(c, r, u ? u->value : NULL, origin, err);
		if (!rc && u) {
			/* shown masked wherever the context's settings are */
			emh__setting *mu = emh__settings_find_mut(&c->conf.s, u->key);
			mu->secret = true;
			if (emh__settings_set_shown(&c->conf.s, mu->key, r->shown))
				rc = emh__cfg_oom(err);
		}
	}
	if (!rc && urls) {
		free(origin);
		origin = emh__strf("url (%s)", urls->origin);
		char *list = strdup(urls->value);
		if (!origin || !list)
			rc = emh__cfg_oom(err);
		char *save = NULL;
		for (char *u = list ? strtok_r(list, ",", &save) : NULL; u && !rc; u = strtok_r(NULL, ",", &save)) {
			while (*u == ' ')
				u++;
			emh__replica *r = &c->replicas[c->nreplicas++];
			r->index = c->nreplicas;
			rc = replica_open(c, r, u, origin, err);
			emh_buf_addf(&shown, "%s%s", shown.len ? "," : "", r->shown);
		}
		free(list);
		if (!rc && (shown.oom || emh__settings_set_shown(&c->conf.s, "replica_urls", shown.ptr)))
			rc = emh__cfg_oom(err);
	}
	free(origin);
	emh_buf_release(&shown);
	return rc;
}

int emh__replica_conf(emh_context *c, const emh__ctxconf *conf, const emh__replica *r, emh__ctxconf *out,
		      emh_error *err)
{
	unsigned nkeyed = keyed_replicas(conf);
	const emh__setting *u = r->index <= nkeyed ? keyed_url(conf, r->index) : emh__settings_find(&conf->s, "replica_urls");
	char *list = NULL, *url = NULL, *origin = NULL, shown[256];
	if (u && (!(origin = emh__strf("url (%s)", u->origin)) || !(list = strdup(u->value)))) {
		free(origin);
		return emh__cfg_oom(err);
	}
	if (u && r->index <= nkeyed)
		url = list;
	else if (u) { /* the (index - nkeyed)th of the list, as emh__replicas_open counts them */
		char *save = NULL;
		unsigned k = nkeyed;
		for (char *t = strtok_r(list, ",", &save); t && !url; t = strtok_r(NULL, ",", &save))
			if (++k == r->index)
				for (url = t; *url == ' '; url++)
					;
	}
	int rc = u && !url ? emh_error_set(err, EMH_ECONFIG, "context '%s': replica %u is gone from its configuration",
					  c->name, r->index)
			   : replica_conf(c, conf, r->index, url, origin, out, shown, sizeof shown, err);
	free(list);
	free(origin);
	return rc;
}

void emh__replicas_close(emh_context *c)
{
	for (unsigned i = 0; i < c->nreplicas; i++) {
		emh__replica *r = &c->replicas[i];
		if (r->pool.drv)
			emh__pool_destroy(&r->pool);
		if (r->dctx && c->drv->d.context_close)
			c->drv->d.context_close(r->dctx);
		emh__ctxconf_release(&r->conf);
	}
	free(c->replicas);
	c->replicas = NULL;
	c->nreplicas = 0;
}

static bool replica_usable(emh_context *c, emh__replica *r, int64_t now)
{
	int64_t until = atomic_load_explicit(&r->down_until_ns, memory_order_relaxed);
	if (until && now < until)
		return false;
	int64_t max = atomic_load_explicit(&c->max_replica_lag_ms, memory_order_relaxed);
	if (max > 0) {
		/* lagging: skipped until its lag is due to be measured again (em.c measures it) */
		int64_t lag = atomic_load_explicit(&r->lag_ms, memory_order_relaxed);
		if (lag > max && now - atomic_load_explicit(&r->lag_at_ns, memory_order_relaxed) < BACKOFF_MIN_NS)
			return false;
	}
	return true;
}

emh__replica *emh__replica_pick(emh_context *c)
{
	unsigned n = c->nreplicas;
	if (n == 0)
		return NULL;
	unsigned start = atomic_fetch_add_explicit(&c->replica_next, 1, memory_order_relaxed);
	int64_t now = emh__coarse_ns();
	for (unsigned k = 0; k < n; k++) {
		emh__replica *r = &c->replicas[(start + k) % n];
		if (replica_usable(c, r, now))
			return r;
	}
	return NULL;
}

void emh__replica_note(emh__replica *r, int rc, const emh_error *err)
{
	if (rc == 0) {
		if (atomic_load_explicit(&r->down_until_ns, memory_order_relaxed)) {
			atomic_store_explicit(&r->down_until_ns, 0, memory_order_relaxed);
			atomic_store_explicit(&r->fails, 0, memory_order_relaxed);
			emh__pool_note(&r->pool, NULL);
			emh__log(&r->ctx->host->log, EMH_LOG_INFO, r->ctx->name, "replica %u (%s) is up again", r->index,
				 r->shown);
		}
		return;
	}
	atomic_fetch_add_explicit(&r->errors, 1, memory_order_relaxed);
	if (rc != EMH_EUNAVAILABLE && rc != EMH_ETIMEOUT)
		return;
	unsigned f = atomic_fetch_add_explicit(&r->fails, 1, memory_order_relaxed);
	int64_t back = BACKOFF_MIN_NS << (f < 5 ? f : 5);
	if (back > BACKOFF_MAX_NS)
		back = BACKOFF_MAX_NS;
	atomic_store_explicit(&r->down_until_ns, emh__coarse_ns() + back, memory_order_relaxed);
	if (rc == EMH_EUNAVAILABLE)
		emh__pool_note(&r->pool, err);
	emh__log(&r->ctx->host->log, EMH_LOG_WARN, r->ctx->name,
		 "replica %u (%s) failed (%s); reads go elsewhere for %lld ms", r->index, r->shown,
		 err ? err->message : "?", (long long)(back / 1000000));
}

int emh_host_replicas(emh_host *h, emh_replica_info **out, size_t *n, emh_error *err)
{
	if (!h || !out || !n)
		return emh_error_set(err, EMH_EINVAL, "emh_host_replicas: an argument is NULL");
	*out = NULL;
	*n = 0;
	pthread_rwlock_rdlock(&h->lock);
	size_t total = 0;
	for (size_t i = 0; i < h->nctx; i++)
		total += h->ctxs[i]->nreplicas;
	emh_replica_info *v = total ? calloc(total, sizeof *v) : NULL;
	if (total && !v) {
		pthread_rwlock_unlock(&h->lock);
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	}
	int64_t now = emh__coarse_ns();
	size_t k = 0;
	for (size_t i = 0; i < h->nctx; i++) {
		emh_context *c = h->ctxs[i];
		for (unsigned j = 0; j < c->nreplicas; j++) {
			emh__replica *r = &c->replicas[j];
			emh_replica_info *ri = &v[k++];
			snprintf(ri->context, sizeof ri->context, "%s", c->name);
			ri->index = r->index;
			snprintf(ri->where, sizeof ri->where, "%s", r->shown);
			int64_t until = atomic_load_explicit(&r->down_until_ns, memory_order_relaxed);
			ri->up = !until || now >= until;
			ri->lag_ms = atomic_load_explicit(&r->lag_ms, memory_order_relaxed);
			int64_t max = atomic_load_explicit(&c->max_replica_lag_ms, memory_order_relaxed);
			ri->lagging = max > 0 && ri->lag_ms > max;
			ri->queries = atomic_load_explicit(&r->queries, memory_order_relaxed);
			ri->errors = atomic_load_explicit(&r->errors, memory_order_relaxed);
			ri->fallbacks = atomic_load_explicit(&r->fallbacks, memory_order_relaxed);
			ri->stale = atomic_load_explicit(&r->stale, memory_order_relaxed);
			pthread_mutex_lock(&r->pool.b->mu);
			emh__pool_counts(&r->pool, &ri->in_use, &ri->idle);
			pthread_mutex_unlock(&r->pool.b->mu);
			pthread_mutex_lock(&r->pool.mu);
			snprintf(ri->last_error, sizeof ri->last_error, "%s", r->pool.up ? "" : r->pool.last_error);
			pthread_mutex_unlock(&r->pool.mu);
		}
	}
	pthread_rwlock_unlock(&h->lock);
	*out = v;
	*n = k;
	return 0;
}
