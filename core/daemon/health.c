/* SPDX-License-Identifier: MIT */
/*
 * core/daemon/health.c: GET /_emhost/health.  Answered on the I/O thread
 * from the contexts' state, never from a database call there.  A request
 * first asks one prober thread per context to ping it (so a database that
 * went down, or came back, since the last request is seen) and waits for
 * those pings at most HEALTH_WAIT_MS, suspended like a service request but
 * on no worker; the health timer resumes it.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "httpd_int.h"

/* How long a health request waits for its pings before answering from the
 * state the contexts are in. */
#define HEALTH_WAIT_MS 1000

/*
 * Health from the contexts' state (what the last connect, ping or lost
 * connection said), never from a database call here: this runs on an I/O
 * thread.  The probers' pings, when they answered in time, are part of
 * that state.  Why a context is down goes to the log, not to the answer.
 */
void emhd__health_into(emhd_server *srv, emh_response *res)
{
	emh_context_info *infos;
	size_t n;
	emh_error err;
	if (emh_host_contexts(srv->host, &infos, &n, &err) != 0) {
		emhd__res_emh_error(srv->host, "/_emhost/health", res, &err);
		return;
	}
	emh_budget_info bi;
	emh_host_budget(srv->host, &bi, sizeof bi);
	bool healthy = true;
	json_t *ctxs = json_object();
	for (size_t i = 0; i < n; i++) {
		const emh_context_info *c = &infos[i];
		/* refused: its migrations or schema are not what the code needs (the log says why) */
		bool refused = emh_host_context_refusal(srv->host, c->name) != NULL;
		if (c->required && (!c->up || refused))
			healthy = false;
		json_object_set_new(ctxs, c->name,
				    json_pack("{s:s,s:s,s:b,s:b,s:{s:I,s:I,s:I,s:I}}", "status",
					      refused ? "refused" : c->up ? "up" : "down", "driver", c->driver ? c->driver : "",
					      "required", c->required, "default", c->is_default, "connections", "open",
					      (json_int_t)(c->in_use + c->idle), "idle", (json_int_t)c->idle, "in_use",
					      (json_int_t)c->in_use, "waiting", (json_int_t)c->waiting));
	}
	emh_context_info_free(infos, n);
	/* read replicas: listed under their context; one down never makes the host unhealthy (reads fall back) */
	emh_replica_info *reps;
	size_t nr;
	if (emh_host_replicas(srv->host, &reps, &nr, &err) == 0) {
		for (size_t i = 0; i < nr; i++) {
			const emh_replica_info *ri = &reps[i];
			json_t *ctx = json_object_get(ctxs, ri->context), *list;
			if (!ctx)
				continue;
			if (!(list = json_object_get(ctx, "replicas")))
				json_object_set_new(ctx, "replicas", list = json_array());
			json_array_append_new(list, json_pack("{s:I,s:s,s:s,s:I,s:I,s:I}", "index", (json_int_t)ri->index,
							      "where", ri->where,
							      "status", !ri->up ? "down" : ri->lagging ? "lagging" : "up",
							      "lag_ms", (json_int_t)ri->lag_ms, "queries",
							      (json_int_t)ri->queries, "errors", (json_int_t)ri->errors));
		}
		free(reps);
	}
	/* The host's connection budget: what is open against what may be. */
	json_t *budget = json_pack("{s:I,s:I,s:I,s:I,s:I,s:I}", "connections", (json_int_t)bi.connections,
				   "max_connections", (json_int_t)bi.max_connections, "fds", (json_int_t)bi.fds, "max_fds",
				   (json_int_t)bi.max_fds, "idle", (json_int_t)bi.idle, "waiting", (json_int_t)bi.waiting);
	emhd__res_json(res, healthy ? 200 : 503,
		       json_pack("{s:s,s:o,s:o}", "status", healthy ? "up" : "down", "contexts", ctxs, "budget", budget));
}

/* Has every prober finished round hgen?  Under hmu. */
static bool probes_done(const emhd_server *srv)
{
	for (size_t i = 0; i < srv->nprobers; i++)
		if (srv->probers[i]->running && srv->probers[i]->done_gen < srv->hgen)
			return false;
	return true;
}

/*
 * Is the pool of context name saturated (every connection lent, none idle)?
 * Then its state is current -- requests are using it -- and a ping would
 * only wait for a connection.
 */
static bool pool_saturated(emh_host *h, const char *name)
{
	emh_context_info *infos;
	size_t n;
	bool full = false;
	if (emh_host_contexts(h, &infos, &n, NULL) != 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (strcmp(infos[i].name, name) == 0)
			full = infos[i].idle == 0 && (int)infos[i].in_use >= infos[i].pool_max;
	emh_context_info_free(infos, n);
	return full;
}

/* One ping of p's context, retried once: a failed ping discards its
 * connection, and a second one tells a pool holding a connection broken by
 * an earlier outage (the server is back) from a database that is down now.
 * False when the context is gone (removed by a reload). */
static bool probe(emhd_prober *p)
{
	emhd_server *srv = p->srv;
	if (pool_saturated(srv->host, p->context))
		return true;
	emh_error err;
	int rc = emh_host_ping(srv->host, p->context, &err);
	if (rc && rc != EMH_ETIMEOUT && rc != EMH_ENOFD && rc != EMH_ENOCONTEXT)
		rc = emh_host_ping(srv->host, p->context, &err);
	if (rc == EMH_ENOCONTEXT)
		return false;
	if (rc == EMH_ETIMEOUT || rc == EMH_ENOFD)
		return true; /* no connection free (pool, budget, descriptors): busy, not down */
	if (rc && !p->was_down)
		emh_host_log(srv->host, EMH_LOG_WARN, p->context, "health: context is down: %s", err.message);
	else if (!rc && p->was_down)
		emh_host_log(srv->host, EMH_LOG_INFO, p->context, "health: context is up again");
	p->was_down = rc != 0;
	return true;
}

static void *prober_main(void *arg)
{
	emhd_prober *p = arg;
	emhd_server *srv = p->srv;
	pthread_mutex_lock(&srv->hmu);
	for (;;) {
		while (p->done_gen >= srv->hgen && !srv->hstop)
			pthread_cond_wait(&srv->hcv, &srv->hmu);
		if (srv->hstop)
			break;
		uint64_t gen = srv->hgen;
		pthread_mutex_unlock(&srv->hmu);
		bool alive = probe(p);
		pthread_mutex_lock(&srv->hmu);
		p->done_gen = gen;
		pthread_cond_broadcast(&srv->hcv);
		if (!alive) {
			p->gone = true;
			break;
		}
	}
	p->running = false;
	pthread_cond_broadcast(&srv->hcv);
	pthread_mutex_unlock(&srv->hmu);
	return NULL;
}

/* Answers the health requests of a round when its pings are done or its
 * time is up, whichever comes first. */
static void *health_timer_main(void *arg)
{
	emhd_server *srv = arg;
	pthread_mutex_lock(&srv->hmu);
	for (;;) {
		while (!srv->hwait && !srv->hstop)
			pthread_cond_wait(&srv->hcv, &srv->hmu);
		if (!srv->hwait)
			break; /* stopping, nobody waiting */
		while (!srv->hstop && !probes_done(srv) && now_ns() < srv->hdeadline) {
			struct timespec ts = abs_mono(srv->hdeadline);
			pthread_cond_timedwait(&srv->hcv, &srv->hmu, &ts);
		}
		emhd_req *w = srv->hwait;
		srv->hwait = NULL;
		pthread_mutex_unlock(&srv->hmu);
		while (w) {
			emhd_req *next = w->next;
			struct MHD_Connection *conn = w->conn;
			atomic_store_explicit(&w->done, true, memory_order_release);
			MHD_resume_connection(conn); /* w may be gone from here on */
			w = next;
		}
		pthread_mutex_lock(&srv->hmu);
	}
	pthread_mutex_unlock(&srv->hmu);
	return NULL;
}

/* GET /_emhost/health: start (or join) a round of pings and wait for it, suspended. */
enum MHD_Result emhd__serve_health(struct MHD_Connection *conn, emhd_req *r)
{
	emhd_server *srv = r->srv;
	r->health = true;
	if (!(r->res = emh_response_new()))
		return MHD_NO;
	pthread_mutex_lock(&srv->hmu);
	if (srv->hstop || !srv->htimer_running || srv->nprobers == 0) {
		pthread_mutex_unlock(&srv->hmu);
		emhd__health_into(srv, r->res);
		return emhd__queue_response(conn, r, r->res);
	}
	if (!srv->hwait) {
		srv->hgen++;
		srv->hdeadline = now_ns() + (int64_t)HEALTH_WAIT_MS * 1000000;
		pthread_cond_broadcast(&srv->hcv);
	}
	r->conn = conn;
	MHD_suspend_connection(conn);
	r->next = srv->hwait;
	srv->hwait = r;
	pthread_mutex_unlock(&srv->hmu);
	return MHD_YES;
}

/* A prober for context name, started; under hmu.  Without one, health
 * answers for that context from its state alone. */
static void prober_add(emhd_server *srv, const char *name)
{
	if (srv->nprobers == srv->capprobers) {
		size_t cap = srv->capprobers ? 2 * srv->capprobers : 8;
		emhd_prober **v = realloc(srv->probers, cap * sizeof *v);
		if (!v)
			return;
		srv->probers = v;
		srv->capprobers = cap;
	}
	emhd_prober *p = calloc(1, sizeof *p);
	if (!p || !(p->context = strdup(name))) {
		free(p);
		return;
	}
	p->srv = srv;
	p->running = true;
	if (pthread_create(&p->th, NULL, prober_main, p) != 0) {
		free(p->context);
		free(p);
		return;
	}
	srv->probers[srv->nprobers++] = p;
}

/*
 * Join and free the probers whose context went (a reload removed it): each
 * ended its thread, which keeps its stack until joined -- a daemon whose
 * reloads add and remove contexts would pile them up.  Under hmu: a prober
 * sets running = false under it as its last step, so the join is immediate.
 */
static void probers_reap(emhd_server *srv)
{
	size_t k = 0;
	for (size_t i = 0; i < srv->nprobers; i++) {
		emhd_prober *p = srv->probers[i];
		if (p->gone && !p->running) {
			pthread_join(p->th, NULL);
			free(p->context);
			free(p);
		} else {
			srv->probers[k++] = p;
		}
	}
	srv->nprobers = k;
}

/* Probers for the contexts that have none (all of them at start); the ended ones go. */
static void probers_sync(emhd_server *srv)
{
	emh_context_info *infos;
	size_t n;
	if (emh_host_contexts(srv->host, &infos, &n, NULL) != 0)
		return;
	pthread_mutex_lock(&srv->hmu);
	probers_reap(srv);
	for (size_t i = 0; i < n && !srv->hstop; i++) {
		bool have = false;
		for (size_t j = 0; j < srv->nprobers && !have; j++)
			have = !srv->probers[j]->gone && strcmp(srv->probers[j]->context, infos[i].name) == 0;
		if (!have)
			prober_add(srv, infos[i].name);
	}
	pthread_mutex_unlock(&srv->hmu);
	emh_context_info_free(infos, n);
}

/* Start the health timer and one prober per context. */
void emhd__health_start(emhd_server *srv)
{
	probers_sync(srv);
	pthread_mutex_lock(&srv->hmu);
	srv->htimer_running = pthread_create(&srv->htimer, NULL, health_timer_main, srv) == 0;
	pthread_mutex_unlock(&srv->hmu);
}

/* A removed context's prober ends by itself at its next ping (the context is
 * gone); the next reload joins it. */
void emhd_contexts_changed(emhd_server *s) { probers_sync(s); }

/*
 * Stop health probing: waiting health requests are answered now; probers
 * in a ping get until deadline to finish.  Returns how many are still
 * pinging (they hold a fork of the host: it must not be freed then).
 */
unsigned emhd__health_stop(emhd_server *srv, int64_t deadline)
{
	pthread_mutex_lock(&srv->hmu);
	srv->hstop = true;
	pthread_cond_broadcast(&srv->hcv);
	bool timer = srv->htimer_running;
	srv->htimer_running = false;
	for (;;) {
		unsigned left = 0;
		for (size_t i = 0; i < srv->nprobers; i++)
			left += srv->probers[i]->running;
		if (!left || now_ns() >= deadline)
			break;
		struct timespec ts = abs_mono(deadline);
		pthread_cond_timedwait(&srv->hcv, &srv->hmu, &ts);
	}
	pthread_mutex_unlock(&srv->hmu);
	if (timer)
		pthread_join(srv->htimer, NULL); /* it only resumes connections */
	unsigned stuck = 0;
	for (size_t i = 0; i < srv->nprobers; i++) {
		emhd_prober *p = srv->probers[i];
		if (!p->context)
			continue;
		pthread_mutex_lock(&srv->hmu);
		bool running = p->running;
		pthread_mutex_unlock(&srv->hmu);
		if (running) {
			stuck++;
			continue;
		}
		pthread_join(p->th, NULL);
		free(p->context);
		p->context = NULL;
	}
	return stuck;
}
