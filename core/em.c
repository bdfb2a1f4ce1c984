/* SPDX-License-Identifier: MIT */
/*
 * core/em.c: forked entity managers and repositories.
 *
 * A fork is one malloc (the EM with a small inline arena) and no I/O; it
 * takes a pooled connection on first use and gives it back on close.  Every
 * object it hands out is preceded by a hidden header (emh__obj) in the
 * fork's arena: state, owning fork and context, the snapshot taken at load
 * (for change detection) and the NULL flags of scalar members.  Objects are
 * tracked in creation order; the identity map chains through the headers.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "em_int.h"
#include "query_int.h"

emh_context *emh__em_context(const emh_em *em) { return em->ctx; }

bool emh__em_wrote(const emh_em *em) { return em->wrote; }
bool emh__em_would_wait(const emh_em *em) { return em->would_wait; }

/* ---- fork / close ---- */

int emh_host_fork(emh_host *h, const char *name, emh_em **out, emh_error *err)
{
	return emh_host_fork_opts(h, name, NULL, out, err);
}

int emh_host_fork_opts(emh_host *h, const char *name, const emh_fork_opts *opts, emh_em **out, emh_error *err)
{
	emh__ctxhot *hot;
	if (!h || !out)
		return emh_error_set(err, EMH_EINVAL, "emh_host_fork: host or out is NULL");
	*out = NULL;
	if (opts && (opts->flags & ~EMH__FORK_FLAGS))
		return emh_error_set(err, EMH_EINVAL, "emh_host_fork_opts: unknown flags 0x%x",
				     opts->flags & ~EMH__FORK_FLAGS);
	if (!(hot = emh__host_get_hot(h, name, err)))
		return EMH_ENOCONTEXT;
	/* Only hot is touched here and in the close (internal.h, emh__ctxhot). */
	emh_context *c = hot->ctx;
	const char *refused = atomic_load_explicit(&hot->refusal, memory_order_acquire);
	if (refused) {
		emh_error_set(err, EMH_ESCHEMA, "context '%s' refuses forks: %s", c->name, refused);
		emh_error_context(err, EMH_ESCHEMA, c->name);
		emh__hot_put(hot);
		return EMH_ESCHEMA;
	}
	/* No spare kept per context: malloc's per-thread cache hands back the
	 * block this thread freed last, warm, where a spare of each of thousands
	 * of tenants would be cold memory (and ~800 bytes each). */
	emh_em *em = malloc(sizeof *em);
	if (!em) {
		emh__hot_put(hot);
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	}
	memset(em, 0, offsetof(emh_em, arena));
	em->host = h;
	em->ctx = c;
	em->hot = hot;
	atomic_fetch_add_explicit(&hot->forks_open, 1, memory_order_relaxed);
	emh__arena_init(&em->arena, em->inline_buf, sizeof em->inline_buf);
	em->arena.cache = &h->blocks;
	if (opts) {
		em->primary_only = opts->flags & EMH_FORK_PRIMARY;
		em->readonly = opts->flags & EMH_FORK_READONLY;
		em->nowait = opts->flags & EMH_FORK_NOWAIT;
		if (opts->after && *opts->after && c->nreplicas &&
		    !(em->after = emh__arena_strndup(&em->arena, opts->after, strlen(opts->after)))) {
			emh_em_close(em);
			return emh_error_set(err, EMH_ENOMEM, "out of memory");
		}
	}
	*out = em;
	return 0;
}

/* Give the fork's replica connection back. */
static void replica_release(emh_em *em)
{
	if (em->rpc) {
		emh__pool_release(&em->rep->pool, em->rpc, em->rpc_status);
		em->rpc = NULL;
		em->rpc_status = 0;
		em->rconn_used = false;
	}
}

void emh__em_conn_release(emh_em *em)
{
	if (em->pc) {
		emh__pool_release(&em->ctx->pool, em->pc, em->pc_status);
		em->pc = NULL;
		em->pc_status = 0;
		em->conn_used = false;
	}
}

void emh_em_close(emh_em *em)
{
	if (!em)
		return;
	/* The calls a fork that only read skips: nothing open, linked or grown. */
	if (em->iters)
		emh__iter_close_all(em);
	while (em->tx_depth > 0) {
		emh_error e;
		/* A level that fails to roll back is closed all the same: the
		 * outermost ROLLBACK still ends the whole transaction on the
		 * connection.  Only when that one fails is the connection's
		 * state unknown. */
		if (emh__tx_end(em, false, &e) != 0 && em->pc && em->tx_depth == 0) {
			/* Could not roll back: never give this connection to anyone. */
			em->pc_status = EMH_EUNAVAILABLE;
		}
	}
	emh__em_conn_release(em);
	replica_release(em);
	if (em->link_next)
		emh__em_unlink(em);
	if (em->arena.blocks)
		emh__arena_release(&em->arena); /* the inline buffer is the fork's own */
	emh__ctxhot *hot = em->hot;
	atomic_fetch_sub_explicit(&hot->forks_open, 1, memory_order_relaxed);
	free(em);
	/* Last: once the fork is released the context may be freed (removal). */
	emh__hot_put(hot);
}

const char *emh_em_context(const emh_em *em) { return em->ctx->name; }

int emh_em_set_readonly(emh_em *em, emh_error *err)
{
	if (em->loaded || em->head)
		return emh_error_set(err, EMH_ESTATE,
				     "context '%s': emh_em_set_readonly must come before the fork loads or creates objects",
				     em->ctx->name);
	em->readonly = true;
	return 0;
}

int emh_em_tx_depth(const emh_em *em) { return em->tx_depth; }

char *emh_em_strdup(emh_em *em, const char *s)
{
	return s ? emh__arena_strndup(&em->arena, s, strlen(s)) : NULL;
}

void *emh_em_memdup(emh_em *em, const void *p, size_t n) { return emh__arena_memdup(&em->arena, p, n); }

/* ---- errors and connections ---- */

/* Name the context in err and count the error. */
int emh__em_fail(emh_em *em, int rc, emh_error *err)
{
	emh__context_count_error(em->ctx, rc);
	return emh__error_in_context(err, rc, em->ctx->name);
}

static int sync_pending(emh_em *em, emh_error *err);

int emh__em_conn(emh_em *em, emh_error *err)
{
	if (em->pc)
		return 0;
	if (em->tx_depth > 0)
		/* The transaction died with its connection: nothing may run as if
		 * it were still open, on another connection, in autocommit. */
		return emh__em_fail(em, emh_error_set(err, EMH_ESTATE,
						  "the connection of this transaction was lost; roll it back"), err);
	int rc = em->nowait ? emh__pool_try_acquire(&em->ctx->pool, &em->pc, err)
			    : emh__pool_acquire(&em->ctx->pool, &em->pc, err);
	if (rc == EMH__POOL_FULL) {
		em->would_wait = true;
		rc = emh_error_set(err, EMH_ETIMEOUT,
				   "context '%s': no connection free now, and this fork may not wait for one "
				   "(EMH_FORK_NOWAIT)", em->ctx->name);
		if (err)
			err->retryable = true;
	}
	if (rc) {
		em->pc = NULL;
		return emh__em_fail(em, rc, err);
	}
	em->pc_status = 0;
	em->conn_used = false;
	/* Schema first, on a connection with no transaction open. */
	return sync_pending(em, err);
}

/* A status after which the connection is pinged before its next reuse: any
 * but the everyday answers (a driver may report a bad value while the server
 * has in fact closed the connection). */
static bool conn_suspect(int rc)
{
	return rc != EMH_ECONFLICT && rc != EMH_ENOTFOUND;
}

/* After a driver call failed: drop a lost connection, or one whose call timed out, at once. */
void emh__em_conn_failed(emh_em *em, int rc, const emh_error *err)
{
	if (rc == EMH_EUNAVAILABLE) {
		/* Down until a connect or ping succeeds again (health, metrics). */
		static const emh_error lost = {.code = EMH_EUNAVAILABLE, .message = "connection lost"};
		emh__pool_note(&em->ctx->pool, err ? err : &lost);
		em->pc_status = EMH_EUNAVAILABLE;
		emh__em_conn_release(em);
		if (em->tx_depth > 0)
			em->tx_failed = true;
	} else if (rc == EMH_ETIMEOUT) {
		/* Past its deadline: the connection may still be busy with the
		 * call, so the pool closes it; the context is not down for it. */
		em->pc_status = EMH_ETIMEOUT;
		emh__em_conn_release(em);
		if (em->tx_depth > 0)
			em->tx_failed = true;
	} else if (conn_suspect(rc) && !em->pc_status) {
		em->pc_status = rc;
	}
}

static int op_call(emh_em *em, emh_conn *c, emh__op *o, emh_error *err)
{
	const emh_driver *d = &em->ctx->drv->d;
	switch (o->kind) {
	case OP_STMT:
		return d->stmt_exec(c, o->st, o->params, o->sink, err);
	case OP_INSERT:
		return d->insert(c, &o->m->pub, o->params, o->key, err);
	case OP_UPDATE:
		return d->update(c, &o->m->pub, o->params, o->mask, err);
	case OP_REMOVE:
		return d->remove(c, &o->m->pub, o->params, err);
	case OP_FIND:
		return d->find(c, &o->m->pub, o->q, o->sink, err);
	case OP_COUNT:
		return d->count(c, &o->m->pub, o->q, o->count, err);
	case OP_EXECUTE:
		return d->execute(c, o->text, err);
	case OP_SYNC:
		return emh__meta_sync(o->m, c, false, err);
	case OP_UPSERT:
		return d->upsert(c, &o->m->pub, o->params, err);
	case OP_UPDATE_WHERE:
		return d->update_where(c, &o->m->pub, o->q, o->sets, o->nsets, o->count, err);
	case OP_DELETE_WHERE:
		return d->delete_where(c, &o->m->pub, o->q, o->count, err);
	case OP_AGGREGATE:
		return d->aggregate(c, &o->m->pub, o->q, o->agg, o->sink, err);
	}
	return emh_error_set(err, EMH_EINVAL, "unknown operation");
}

/* Create the tables of entities registered since the schema was last synced
 * (schema = "sync"), before this connection runs anything else. */
static int sync_pending(emh_em *em, emh_error *err)
{
	emh_context *c = em->ctx;
	if (!c->schema_sync || atomic_load_explicit(&c->unsynced, memory_order_acquire) == 0)
		return 0;
	for (emh__meta *m = atomic_load_explicit(&c->metas, memory_order_acquire); m; m = m->next) {
		if (atomic_load_explicit(&m->synced, memory_order_acquire))
			continue;
		int rc = emh__meta_sync(m, em->pc->conn, false, err);
		em->conn_used = true;
		if (rc) {
			emh__em_conn_failed(em, rc, err);
			return emh__em_fail(em, rc, err);
		}
	}
	return 0;
}

/* The operation a call counts as, for the histograms and the query log. */
static inline __attribute__((always_inline)) int op_qop(const emh__op *o)
{
	if (o->get) /* a key lookup: set only on its read (load_key, select_run) */
		return EMH__Q_GET;
	if (o->agg) /* a SQL driver's aggregate is a statement, a document driver's OP_AGGREGATE */
		return EMH__Q_AGGREGATE;
	switch (o->kind) {
	case OP_STMT:
		switch (o->st->kind) {
		case EMH_STMT_SELECT: return o->get || (o->m && o->st == o->m->st_get) ? EMH__Q_GET : EMH__Q_FIND;
		case EMH_STMT_COUNT: return EMH__Q_COUNT;
		case EMH_STMT_INSERT: return o->m && o->st == o->m->st_upsert ? EMH__Q_UPSERT : EMH__Q_INSERT;
		case EMH_STMT_UPDATE: return EMH__Q_UPDATE;
		case EMH_STMT_DELETE: return EMH__Q_DELETE;
		default: return o->m && o->st == o->m->st_upsert ? EMH__Q_UPSERT : EMH__Q_EXECUTE;
		}
	case OP_INSERT: return EMH__Q_INSERT;
	case OP_UPDATE: return EMH__Q_UPDATE;
	case OP_REMOVE: return EMH__Q_DELETE;
	case OP_FIND: return o->get ? EMH__Q_GET : EMH__Q_FIND;
	case OP_COUNT: return EMH__Q_COUNT;
	case OP_SYNC: return EMH__Q_SYNC;
	case OP_UPSERT: return EMH__Q_UPSERT;
	/* what a SQL driver's UPDATE/DELETE statement of the same write counts as */
	case OP_UPDATE_WHERE: return EMH__Q_UPDATE;
	case OP_DELETE_WHERE: return EMH__Q_DELETE;
	default: return EMH__Q_EXECUTE;
	}
}

/* A call that only reads: safe to send again if its connection was stale. */
static bool op_reads(const emh__op *o)
{
	return o->kind == OP_FIND || o->kind == OP_COUNT || o->kind == OP_AGGREGATE ||
	       (o->kind == OP_STMT && (o->st->kind == EMH_STMT_SELECT || o->st->kind == EMH_STMT_COUNT));
}

/* Was pc stale rather than the server down?  Only the first call on a reused
 * connection, outside a transaction, can tell nothing was done on it. */
bool emh__em_stale_first_use(const emh_em *em, int rc)
{
	return rc == EMH_EUNAVAILABLE && em->pc && !em->conn_used && !em->pc->fresh && em->tx_depth == 0;
}

/* How long a replica may take to reach a fork's token before the read goes to the primary. */
#define REPLAY_WAIT_MS 20
/* How often a replica's lag is measured (by the fork that takes it then). */
#define LAG_EVERY_NS (500 * 1000000LL)
/* How often a lag that cannot be measured is said again while that lasts. */
#define LAG_WARN_EVERY_NS (60 * 1000000000LL)

/*
 * The checks a fork's new replica connection passes before its first read:
 * replayed past the fork's token (then the token is spent: the fork keeps
 * this replica, so later reads are no older); its lag within
 * max_replica_lag_ms, measured every LAG_EVERY_NS.  0 fine, 1 the primary
 * serves the fork's reads instead, else an error of the replica's.
 */
static int replica_admit(emh_em *em, emh__replica *r, emh_error *err)
{
	const emh_driver *d = &em->ctx->drv->d;
	int rc;
	if (em->ctx->max_replica_lag_ms > 0 && d->lag_ms) {
		int64_t now = emh__coarse_ns(), at = atomic_load_explicit(&r->lag_at_ns, memory_order_relaxed);
		if (now - at >= LAG_EVERY_NS &&
		    atomic_compare_exchange_strong_explicit(&r->lag_at_ns, &at, now, memory_order_relaxed,
							    memory_order_relaxed)) {
			int64_t lag = -1;
			if ((rc = d->lag_ms(em->rpc->conn, &lag, err)) != 0) {
				/* unmeasured is not caught up: out until a measurement succeeds */
				atomic_store_explicit(&r->lag_ms, EMH_LAG_INFINITE, memory_order_relaxed);
				/* EUNAVAILABLE and ETIMEOUT mark it down, and say so.  Only
				 * this thread measures now (lag_at_ns), so no race on the
				 * warning's time: said once, then once a minute, not at
				 * every measurement (a missing grant is not fixed in 500 ms). */
				int64_t said = atomic_load_explicit(&r->lag_warned_ns, memory_order_relaxed);
				if (rc != EMH_EUNAVAILABLE && rc != EMH_ETIMEOUT && (!said || now - said >= LAG_WARN_EVERY_NS)) {
					atomic_store_explicit(&r->lag_warned_ns, now ? now : 1, memory_order_relaxed);
					emh__log(&em->ctx->host->log, EMH_LOG_WARN, em->ctx->name,
						 "replica %u (%s): its lag cannot be measured (%s); it serves no reads "
						 "until it can (said again every minute while this lasts)", r->index,
						 r->shown, err->message);
				}
				return rc;
			}
			atomic_store_explicit(&r->lag_ms, lag, memory_order_relaxed);
			if (atomic_exchange_explicit(&r->lag_warned_ns, 0, memory_order_relaxed))
				emh__log(&em->ctx->host->log, EMH_LOG_INFO, em->ctx->name,
					 "replica %u (%s): its lag can be measured again (%lld ms)", r->index, r->shown,
					 (long long)lag);
		}
		if (atomic_load_explicit(&r->lag_ms, memory_order_relaxed) > em->ctx->max_replica_lag_ms)
			return 1;
	}
	if (em->after) {
		bool yes = false;
		if (!d->replayed)
			return 1;
		if ((rc = d->replayed(em->rpc->conn, em->after, REPLAY_WAIT_MS, &yes, err)) != 0) {
			if (rc == EMH_EUNAVAILABLE || rc == EMH_ETIMEOUT || rc == EMH_EINVAL)
				return rc;
			em->primary_only = true; /* the server refused the token: this fork reads the primary */
			return 1;
		}
		if (!yes) {
			atomic_fetch_add_explicit(&r->stale, 1, memory_order_relaxed);
			em->primary_only = true; /* the rest of the fork too: its reads stay no older */
			return 1;
		}
		em->after = NULL;
	}
	return 0;
}

/*
 * A read on a replica (docs/replicas.md): the fork's replica connection,
 * taken from the next healthy replica at its first routed read.  1: no
 * replica can serve it (none healthy, none past the fork's token, the
 * replica failed): the caller reads the primary, with no error.  A replica
 * that fails by losing its connection or its deadline is marked down for a
 * back-off; any other error (a bad query) is the caller's, as on the
 * primary.  Rows a failed call delivered before failing reach the sink
 * again from the primary: the identity map merges them.
 */
static int replica_run(emh_em *em, emh__op *o, emh_error *err)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		if (!em->rpc) {
			emh__replica *r = emh__replica_pick(em->ctx);
			if (!r)
				return 1;
			emh_error e;
			/* A replica with no connection free now is busy, not failing:
			 * this read goes to the primary at once, without waiting for a
			 * connection or skipping the replica for a back-off. */
			int rc = emh__pool_try_acquire(&r->pool, &em->rpc, &e);
			if (rc) {
				em->rpc = NULL;
				if (rc != EMH__POOL_FULL)
					emh__replica_note(r, rc, &e);
				atomic_fetch_add_explicit(&r->fallbacks, 1, memory_order_relaxed);
				return 1;
			}
			em->rep = r;
			em->rpc_status = 0;
			em->rconn_used = false;
			if ((rc = replica_admit(em, r, &e)) != 0) {
				em->rpc_status = rc == 1 ? 0 : rc;
				replica_release(em);
				if (rc == 1)
					return 1;
				if (rc == EMH_EINVAL) { /* a token this driver cannot read: the caller's */
					*err = e;
					return emh__em_fail(em, rc, err);
				}
				emh__replica_note(r, rc, &e);
				atomic_fetch_add_explicit(&r->fallbacks, 1, memory_order_relaxed);
				return 1;
			}
		}
		emh__replica *r = em->rep;
		int64_t t0 = emh__now_ns();
		int rc = op_call(em, em->rpc->conn, o, err);
		int64_t ns = emh__now_ns() - t0;
		int qop = op_qop(o);
		emh__qstats_add(&em->ctx->qstats, qop, ns);
		if (em->ctx->qlog.on)
			emh__qlog_op(em, o, qop, rc == EMH__STOP ? 0 : rc, ns);
		if (rc == 0 || rc == EMH__STOP) {
			atomic_fetch_add_explicit(&r->queries, 1, memory_order_relaxed);
			emh__replica_note(r, 0, NULL);
			em->rconn_used = true;
			return 0;
		}
		if (rc != EMH_EUNAVAILABLE && rc != EMH_ETIMEOUT) {
			atomic_fetch_add_explicit(&r->errors, 1, memory_order_relaxed);
			if (conn_suspect(rc) && !em->rpc_status)
				em->rpc_status = rc;
			return emh__em_fail(em, rc, err);
		}
		/* a stale idle connection (the replica restarted): one more try on a fresh one */
		bool stale = rc == EMH_EUNAVAILABLE && !em->rconn_used && !em->rpc->fresh;
		em->rpc_status = rc;
		replica_release(em);
		if (o->sink)
			o->sink->affected = o->sink->last_id = 0;
		if (!stale) {
			emh__replica_note(r, rc, err);
			atomic_fetch_add_explicit(&r->fallbacks, 1, memory_order_relaxed);
			return 1;
		}
	}
	return 1;
}

/* Does this call read from a replica?  Reads only, outside transactions,
 * before the fork wrote anything, never locked, never before its entity's
 * table is synced (on the primary), never in a primary-only fork. */
static bool replica_routed(const emh_em *em, const emh__op *o)
{
	return em->ctx->nreplicas && !em->primary_only && !em->wrote && em->tx_depth == 0 && !o->locked &&
	       op_reads(o) && !(o->m && em->ctx->schema_sync && !atomic_load_explicit(&o->m->synced, memory_order_acquire));
}

/*
 * Run a driver call on the fork's connection.  A pooled connection that
 * went stale while idle (server restarted) fails its first statement: when
 * the call only reads, nothing else has run on it in this fork and no
 * transaction is open, it is discarded and the call retried once on a fresh
 * connection, so the first request after a database restart succeeds.  A
 * write is never sent twice (the server may have applied it); the pool pings
 * connections idle for more than a second, which covers writes.
 */
int emh__em_run(emh_em *em, emh__op *o, emh_error *err)
{
	emh_error local;
	if (!err)
		err = &local;
	int rc;
	if (replica_routed(em, o)) {
		if ((rc = replica_run(em, o, err)) <= 0)
			return rc;
		/* The primary answers in a replica's place (none healthy, busy,
		 * behind, failed): the rest of the fork reads it too, or a later
		 * read on a replica could miss what this one saw. */
		em->primary_only = true;
	}
	rc = emh__em_conn(em, err);
	if (rc)
		return rc;
	if (o->m && em->ctx->schema_sync && o->kind != OP_SYNC &&
	    !atomic_load_explicit(&o->m->synced, memory_order_acquire)) {
		/* registered after this fork took its connection */
		emh__op s = {.kind = OP_SYNC, .m = o->m};
		if ((rc = emh__em_run(em, &s, err)) != 0)
			return rc;
	}
	if (!op_reads(o) && o->kind != OP_SYNC)
		em->wrote = true; /* even if it fails: the server may have applied it */
	int64_t t0 = emh__now_ns();
	rc = op_call(em, em->pc->conn, o, err);
	if (emh__em_stale_first_use(em, rc) && op_reads(o)) {
		em->pc_status = EMH_EUNAVAILABLE;
		emh__em_conn_release(em);
		if ((rc = emh__em_conn(em, err)) != 0)
			return rc;
		if (o->sink)
			o->sink->affected = o->sink->last_id = 0;
		rc = op_call(em, em->pc->conn, o, err);
	}
	/* the call, a resend included, into the histogram (which counts it); the log only when asked */
	int64_t ns = emh__now_ns() - t0;
	int qop = op_qop(o);
	emh__qstats_add(&em->ctx->qstats, qop, ns);
	if (em->ctx->qlog.on)
		emh__qlog_op(em, o, qop, rc == EMH__STOP ? 0 : rc, ns);
	if (em->pc)
		em->conn_used = true;
	if (rc == EMH__STOP)
		rc = 0;
	if (rc) {
		emh__em_conn_failed(em, rc, err);
		return emh__em_fail(em, rc, err);
	}
	return 0;
}

uint64_t emh__em_caps(emh_em *em)
{
	if (!em->caps_known && em->pc) {
		const emh_driver *d = &em->ctx->drv->d;
		em->caps = d->caps & (d->conn_caps ? d->conn_caps(em->pc->conn) : ~UINT64_C(0));
		/* The core compiles conditional writes for every SQL driver. */
		if (d->dialect)
			em->caps |= EMH_CAP_CONDITIONAL_WRITES;
		em->caps_known = true;
		atomic_store_explicit(&em->ctx->caps, em->caps, memory_order_relaxed);
	}
	return em->caps;
}

int emh_em_caps(emh_em *em, uint64_t *caps, emh_error *err)
{
	int rc = emh__em_conn(em, err);
	if (rc)
		return rc;
	*caps = emh__em_caps(em);
	return 0;
}

int emh_em_token(emh_em *em, char *buf, size_t len, emh_error *err)
{
	const emh_driver *d = &em->ctx->drv->d;
	if (!buf || len < 2)
		return emh_error_set(err, EMH_EINVAL, "emh_em_token: no room for a token");
	if (!d->position)
		return emh__em_fail(em, emh_error_set(err, EMH_EUNSUPPORTED, "driver '%s' has no replication positions "
						  "(EMH_CAP_REPLICAS)", d->name), err);
	if (em->tx_depth > 0)
		return emh__em_fail(em, emh_error_set(err, EMH_ESTATE, "emh_em_token inside a transaction: its writes "
						  "are not committed yet"), err);
	int rc = emh__em_conn(em, err);
	if (rc)
		return rc;
	char pos[256];
	if ((rc = d->position(em->pc->conn, pos, sizeof pos, err)) != 0) {
		emh__em_conn_failed(em, rc, err);
		return emh__em_fail(em, rc, err);
	}
	em->conn_used = true;
	if (strlen(pos) >= len)
		return emh_error_set(err, EMH_EINVAL, "emh_em_token: the token needs %zu bytes", strlen(pos) + 1);
	memcpy(buf, pos, strlen(pos) + 1);
	return 0;
}

int emh_em_execute(emh_em *em, const char *sql, emh_error *err)
{
	if (!sql)
		return emh_error_set(err, EMH_EINVAL, "emh_em_execute: text is NULL");
	emh__op o = {.kind = OP_EXECUTE, .text = sql};
	return emh__em_run(em, &o, err);
}

/* ---- objects ---- */

void emh__obj_key_write(emh__obj *o, int64_t k)
{
	const emh_field *f = &o->m->pub.entity->fields[o->m->pub.pk];
	char *p = (char *)OBJ(o) + f->offset;
	if (f->type == EMH_T_INT32) {
		int32_t x = (int32_t)k;
		memcpy(p, &x, sizeof x);
	} else {
		memcpy(p, &k, sizeof k);
	}
}

int64_t emh__obj_version(const emh__obj *o, bool stored)
{
	const emh__meta *m = o->m;
	int64_t v;
	memcpy(&v, (const char *)(stored && o->snap ? o->snap : OBJ(o)) + m->pub.entity->fields[m->version].offset,
	       sizeof v);
	return v;
}

void emh__obj_version_write(emh__obj *o, int64_t v)
{
	memcpy((char *)OBJ(o) + o->m->pub.entity->fields[o->m->version].offset, &v, sizeof v);
}

int64_t emh__obj_key_read(const emh__obj *o)
{
	emh_value v = emh__obj_value(o, OBJ(o), &o->m->pub.entity->fields[o->m->pub.pk], o->m->pub.pk);
	return emh__value_i64(&v);
}

/* A text or json value copied into arena, its pointer written at p. */
static inline int store_text(emh__arena *arena, char *p, const emh_value *v)
{
	char *s = emh__arena_strndup(arena, v->u.s.ptr ? v->u.s.ptr : "", v->u.s.len);
	if (!s)
		return EMH_ENOMEM;
	memcpy(p, &s, sizeof s);
	return 0;
}

/* Write a loaded value into a struct member (strings copied into arena).
 * Inline: called for every field of every loaded row. */
static inline int store(emh__arena *arena, emh__obj *o, void *obj, const emh_field *f, int i, const emh_value *v)
{
	char *p = (char *)obj + f->offset;
	if (v->is_null) {
		if (!emh__is_ptr_type(f->type))
			o->nulls |= UINT64_C(1) << i;
		return 0;
	}
	switch (f->type) {
	case EMH_T_BOOL: {
		bool b = v->type == EMH_T_BOOL ? v->u.b : emh__value_i64(v) != 0;
		memcpy(p, &b, sizeof b);
		break;
	}
	case EMH_T_INT32: {
		int32_t x = (int32_t)emh__value_i64(v);
		memcpy(p, &x, sizeof x);
		break;
	}
	case EMH_T_INT64:
	case EMH_T_TIMESTAMP: {
		int64_t x = emh__value_i64(v);
		memcpy(p, &x, sizeof x);
		break;
	}
	case EMH_T_DOUBLE: {
		double d = v->type == EMH_T_DOUBLE ? v->u.d : (double)emh__value_i64(v);
		memcpy(p, &d, sizeof d);
		break;
	}
	case EMH_T_TEXT:
	case EMH_T_JSON:
		if (store_text(arena, p, v))
			return EMH_ENOMEM;
		break;
	case EMH_T_BLOB: {
		emh_blob b = {emh__arena_memdup(arena, v->u.s.ptr, v->u.s.len), v->u.s.len};
		if (!b.data)
			return EMH_ENOMEM;
		memcpy(p, &b, sizeof b);
		break;
	}
	}
	return 0;
}

/* Zero n bytes at p, n a multiple of 16: the usual struct sizes as fixed
 * stores, no call per row. */
static inline void zero16(void *p, size_t n)
{
	switch (n) {
	case 16: memset(p, 0, 16); break;
	case 32: memset(p, 0, 32); break;
	case 48: memset(p, 0, 48); break;
	case 64: memset(p, 0, 64); break;
	default: memset(p, 0, n); break;
	}
}

/* Copy n bytes, n a multiple of 16 (zero16's sizes inline). */
static inline void copy16(void *d, const void *s, size_t n)
{
	switch (n) {
	case 16: memcpy(d, s, 16); break;
	case 32: memcpy(d, s, 32); break;
	case 48: memcpy(d, s, 48); break;
	case 64: memcpy(d, s, 64); break;
	default: memcpy(d, s, n); break;
	}
}

/*
 * Store a row into the zeroed struct obj of o.  A value of its field's own
 * type (what every SQL driver delivers) is copied from its member with one
 * switch; any other (a document driver's int32 for an int64 field) is
 * converted by store().
 */
static inline __attribute__((always_inline)) int store_row(emh__arena *arena, emh__obj *o, char *obj,
							  const emh_entity *e, const emh_value *cols)
{
	const emh_field *fields = e->fields;
	size_t n = e->nfields; /* read once: the stores below may alias e for all the compiler knows */
	for (size_t i = 0; i < n; i++) {
		const emh_field *f = &fields[i];
		const emh_value *v = &cols[i];
		emh_type t = f->type;
		char *p = obj + f->offset;
		if (v->is_null || v->type != t) {
			if (store(arena, o, obj, f, (int)i, v))
				return EMH_ENOMEM;
			continue;
		}
		switch (t) {
		case EMH_T_BOOL:
			memcpy(p, &v->u.b, sizeof v->u.b);
			break;
		case EMH_T_INT32:
			memcpy(p, &v->u.i32, sizeof v->u.i32);
			break;
		case EMH_T_INT64:
		case EMH_T_TIMESTAMP:
			memcpy(p, &v->u.i64, sizeof v->u.i64);
			break;
		case EMH_T_DOUBLE:
			memcpy(p, &v->u.d, sizeof v->u.d);
			break;
		case EMH_T_TEXT:
		case EMH_T_JSON:
			if (store_text(arena, p, v))
				return EMH_ENOMEM;
			break;
		default:
			if (store(arena, o, obj, f, (int)i, v))
				return EMH_ENOMEM;
			break;
		}
	}
	return 0;
}

/* A zeroed header and struct (a new object). */
static emh__obj *obj_alloc(emh_em *em, emh__arena *arena, emh__meta *m)
{
	size_t n = sizeof(emh__obj) + m->pub.entity->size;
	emh__obj *o = emh__arena_alloc(arena, n);
	if (o) {
		memset(o, 0, n);
		o->magic = OBJ_MAGIC;
		o->em = em;
		o->ctx = em->ctx;
		o->m = m;
	}
	return o;
}

static void track(emh_em *em, emh__obj *o)
{
	if (em->tail)
		em->tail->next = o;
	else
		em->head = o;
	em->tail = o;
}

/* ---- identity map: chained through the headers, buckets in the arena ---- */

static inline uint64_t key_hash_value(const emh__meta *m, const emh_value *k)
{
	uint64_t h;
	if (k->type == EMH_T_TEXT) {
		h = 1469598103934665603ULL;
		for (size_t i = 0; i < k->u.s.len; i++)
			h = (h ^ (unsigned char)k->u.s.ptr[i]) * 1099511628211ULL;
	} else {
		h = (uint64_t)emh__value_i64(k) * 0x9E3779B97F4A7C15ULL;
	}
	return h ^ ((uint64_t)m->pub.id * 0xC2B2AE3D27D4EB4FULL);
}

static bool key_equal(const emh__obj *o, const emh_value *k)
{
	emh_value ov = emh__obj_key(o);
	if (ov.type == EMH_T_TEXT)
		return k->type == EMH_T_TEXT && ov.u.s.len == k->u.s.len &&
		       memcmp(ov.u.s.ptr, k->u.s.ptr, k->u.s.len) == 0;
	return k->type != EMH_T_TEXT && emh__value_i64(&ov) == emh__value_i64(k);
}

/* The key an object is known by: as stored (its snapshot), else as set. */
emh_value emh__obj_key(const emh__obj *o)
{
	return emh__obj_value(o, o->snap ? o->snap : OBJ(o), &o->m->pub.entity->fields[o->m->pub.pk], o->m->pub.pk);
}

/* The object of key k with hash h (key_hash_value). */
static inline emh__obj *imap_find_h(emh_em *em, emh__meta *m, const emh_value *k, uint64_t h)
{
	if (!em->in)
		return NULL;
	for (emh__obj *o = em->imap[h & (em->icap - 1)]; o; o = o->inext)
		if (o->ihash == h && o->m == m && key_equal(o, k))
			return o;
	return NULL;
}

emh__obj *emh__imap_find(emh_em *em, emh__meta *m, const emh_value *k)
{
	return em->in ? imap_find_h(em, m, k, key_hash_value(m, k)) : NULL;
}

/* Rehashing reads each object's stored hash, not its key: no pass over
 * every snapshot of a large result. */
static __attribute__((noinline)) void imap_grow(emh_em *em)
{
	size_t ncap = em->icap * 4; /* the first table is em->imap0 (imap_add_h) */
	emh__obj **nb = emh__arena_zalloc(&em->arena, ncap * sizeof *nb);
	if (!nb)
		return; /* keep the old table: chains just get longer */
	for (size_t i = 0; i < em->icap; i++) {
		emh__obj *o = em->imap[i];
		while (o) {
			emh__obj *n = o->inext;
			size_t b = o->ihash & (ncap - 1);
			o->inext = nb[b];
			nb[b] = o;
			o = n;
		}
	}
	em->imap = nb;
	em->icap = ncap;
}

/* Add o, whose key hashes to h. */
static inline void imap_add_h(emh_em *em, emh__obj *o, uint64_t h)
{
	if (!em->icap) {
		/* the first table, in the fork: no call for the common first object */
		memset(em->imap0, 0, sizeof em->imap0);
		em->imap = em->imap0;
		em->icap = EM_IMAP0;
	} else if (em->in + 1 > em->icap) {
		imap_grow(em);
	}
	o->ihash = h;
	size_t b = h & (em->icap - 1);
	o->inext = em->imap[b];
	em->imap[b] = o;
	em->in++;
}

void emh__imap_add(emh_em *em, emh__obj *o)
{
	emh_value k = emh__obj_key(o);
	imap_add_h(em, o, key_hash_value(o->m, &k));
}

/* By the hash o was added with: the bucket it is in, whatever its key became since. */
void emh__imap_del(emh_em *em, emh__obj *o)
{
	if (!em->icap)
		return;
	for (emh__obj **pp = &em->imap[o->ihash & (em->icap - 1)]; *pp; pp = &(*pp)->inext)
		if (*pp == o) {
			*pp = o->inext;
			o->inext = NULL;
			em->in--;
			return;
		}
}

void emh_em_clear(emh_em *em)
{
	for (emh__obj *o = em->head; o; o = o->next)
		o->state = ST_DETACHED;
	em->head = em->tail = NULL;
	em->imap = NULL;
	em->icap = em->in = 0;
	em->journal = NULL;
}

/* ---- loading ---- */

/*
 * What a load does with a row whose object is already in the identity map:
 * LOAD_MAP returns that object (reloaded when stale and unchanged), LOAD_FRESH
 * (a locked load) reloads it unless it has unflushed changes (an error),
 * LOAD_FORCE (emh_em_refresh) reloads it whatever it holds.
 */
enum { LOAD_MAP = 0, LOAD_FRESH, LOAD_FORCE };

typedef struct load_sink {
	emh_rowsink base;
	emh_em *em;
	emh__meta *m;
	void **items; /* first points at one, the in-struct slot */
	void *one;
	size_t n, cap;
	size_t rows; /* rows the driver delivered, those of pending removals included */
	size_t max; /* stop after this many (get, find_one) */
	int mode;   /* LOAD_* */
	bool get;   /* a lookup by key: counted and logged as a get */
} load_sink;

/* Overwrite the fields of o (managed) with a row: stored, unchanged, fresh. */
static int reload(emh_em *em, emh__obj *o, const emh_value *cols, emh_error *err)
{
	const emh_entity *e = o->m->pub.entity;
	char *obj = OBJ(o);
	if (emh__journal_reload(em, o))
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	o->nulls = 0;
	for (size_t i = 0; i < e->nfields; i++) {
		const emh_field *f = &e->fields[i];
		memset(obj + f->offset, 0, f->size);
		if (store(&em->arena, o, obj, f, (int)i, &cols[i]))
			return emh_error_set(err, EMH_ENOMEM, "out of memory");
	}
	if (!(o->snap = emh__arena_memdup(&em->arena, obj, e->size)))
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	o->snap_nulls = o->nulls;
	o->flags &= (uint8_t)~OBJF_STALE;
	o->state = ST_MANAGED;
	return 0;
}

/* The identity map's object for a row, reloaded as mode says (load_sink). */
static int map_hit(emh_em *em, emh__obj *have, const emh_value *cols, int mode, void **out, emh_error *err)
{
	int rc = 0;
	if (mode == LOAD_FORCE) {
		rc = reload(em, have, cols, err);
	} else if (have->state != ST_MANAGED) {
		return 0; /* removed in this fork: not returned */
	} else if (mode == LOAD_FRESH || (have->flags & OBJF_STALE)) {
		if (!emh__obj_changed(have))
			rc = reload(em, have, cols, err);
		else if (mode == LOAD_FRESH)
			/* A stale object's changes are kept (em.h); a lock must not
			 * pretend they were made on the row it just locked. */
			return emh_error_set(err, EMH_ESTATE,
					     "entity '%s': a locked load of an object with unflushed changes (lock "
					     "it before changing it, or flush or refresh it first)",
					     have->m->pub.entity->name);
	}
	*out = rc ? NULL : OBJ(have);
	return rc;
}


/*
 * A new object of m holding a loaded row, from arena; not tracked yet.  One
 * allocation: header, struct (zeroed to its 16-byte end, then the row) and,
 * with snap, the snapshot right after it (sharing the loaded strings: they
 * are never written).
 */
static inline __attribute__((always_inline)) emh__obj *obj_load(emh_em *em, emh__arena *arena, emh__meta *m,
								 const emh_value *cols, bool snap)
{
	const emh_entity *e = m->pub.entity;
	size_t at = emh__arena_round(e->size);
	emh__obj *o = emh__arena_alloc(arena, sizeof *o + (snap ? 2 * at : at));
	if (!o)
		return NULL;
	*o = (emh__obj){.magic = OBJ_MAGIC, .em = em, .ctx = em->ctx, .m = m};
	char *obj = OBJ(o);
	zero16(obj, at);
	if (store_row(arena, o, obj, e, cols))
		return NULL;
	if (snap) {
		o->snap = obj + at;
		copy16(o->snap, obj, at);
		o->snap_nulls = o->nulls;
	}
	return o;
}

int emh__em_load_detached(emh_em *em, emh__meta *m, emh__arena *arena, const emh_value *cols, void **out,
			  emh_error *err)
{
	emh__obj *o = obj_load(em, arena, m, cols, false);
	if (!o)
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	o->state = ST_DETACHED;
	*out = OBJ(o);
	return 0;
}

/* The object for a row: the one already in the identity map, or a new one. */
static inline __attribute__((always_inline)) int materialize(emh_em *em, emh__meta *m, const emh_value *cols,
							     int mode, void **out, emh_error *err)
{
	*out = NULL;
	if (em->readonly)
		return emh__em_load_detached(em, m, &em->arena, cols, out, err);
	/* The key's hash once, for the lookup and the insert. */
	uint64_t h = key_hash_value(m, &cols[m->pub.pk]);
	emh__obj *have = imap_find_h(em, m, &cols[m->pub.pk], h);
	if (have)
		return map_hit(em, have, cols, mode, out, err);
	emh__obj *o = obj_load(em, &em->arena, m, cols, true);
	if (!o)
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	o->state = ST_MANAGED;
	track(em, o);
	imap_add_h(em, o, h);
	*out = OBJ(o);
	return 0;
}

int emh__em_materialize(emh_em *em, emh__meta *m, const emh_value *cols, void **out, emh_error *err)
{
	return materialize(em, m, cols, LOAD_MAP, out, err);
}

static int load_row(emh_rowsink *s, const emh_value *cols, emh_error *err)
{
	load_sink *ls = (load_sink *)s;
	void *obj;
	ls->rows++;
	int rc = materialize(ls->em, ls->m, cols, ls->mode, &obj, err);
	if (rc || !obj)
		return rc;
	if (ls->n == 0 && !ls->items) {
		ls->items = &ls->one;
		ls->cap = 1;
	}
	if (ls->n == ls->cap) {
		size_t cap = ls->cap == 1 ? 16 : ls->cap * 2;
		void **v = emh__arena_alloc(&ls->em->arena, cap * sizeof *v);
		if (!v)
			return emh_error_set(err, EMH_ENOMEM, "out of memory");
		if (ls->n)
			memcpy(v, ls->items, ls->n * sizeof *v);
		ls->items = v;
		ls->cap = cap;
	}
	ls->items[ls->n++] = obj;
	return ls->max && ls->n >= ls->max ? EMH__STOP : 0;
}

static emh__meta *repo_meta(emh_repo *r) { return r->m; }

/* ---- repositories ---- */

int emh_em_repo(emh_em *em, const emh_entity *e, emh_repo **out, emh_error *err)
{
	*out = NULL;
	/* By meta, not by pointer: e may be the caller's declaration or the
	 * host's copy of it, and both name the same repository. */
	emh__meta *m = e ? emh__context_meta(em->ctx, e) : NULL;
	for (emh_repo *r = em->repos; m && r; r = r->next)
		if (r->m == m) {
			*out = r;
			return 0;
		}
	if (!m) {
		char list[512];
		size_t off = 0;
		list[0] = '\0';
		for (emh__meta *x = atomic_load(&em->ctx->metas); x && off < sizeof list; x = x->next)
			off += (size_t)snprintf(list + off, sizeof list - off, "%s%s", off ? ", " : "",
						x->pub.entity->name);
		emh_error_set(err, EMH_ENOENTITY, "entity '%s' is not registered in context '%s' (registered: %s)",
			      e && e->name ? e->name : "(null)", em->ctx->name, off ? list : "none");
		return emh__em_fail(em, EMH_ENOENTITY, err);
	}
	emh_repo *r = emh__arena_alloc(&em->arena, sizeof *r);
	if (!r)
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	*r = (emh_repo){.em = em, .m = m, .next = em->repos};
	em->repos = r;
	*out = r;
	return 0;
}

emh_em *emh_repo_em(const emh_repo *r) { return r->em; }

int emh_repo_query(emh_repo *r, emh_query **out, emh_error *err)
{
	*out = emh__query_new(&r->em->arena, r->m->pub.entity);
	return *out ? 0 : emh_error_set(err, EMH_ENOMEM, "out of memory");
}

int emh__em_check_query(emh_repo *r, const emh_query *q, emh_error *err)
{
	if (!q)
		return 0;
	if (q->arena != &r->em->arena)
		return emh__em_fail(r->em, emh_error_set(err, EMH_EINVAL, "query of another fork given to this fork's repository"),
				err);
	if (q->e != r->m->pub.entity)
		return emh__em_fail(r->em, emh_error_set(err, EMH_EINVAL, "query on entity '%s' given to the repository of '%s'",
						     q->e->name, r->m->pub.entity->name), err);
	int rc = emh__query_error(q, err);
	return rc ? emh__em_fail(r->em, rc, err) : 0;
}

int emh__em_refuse_lock(emh_em *em, const emh_query *q, const char *what, emh_error *err)
{
	if (!q || !q->lock)
		return 0;
	return emh__em_fail(em, emh_error_set(err, EMH_EINVAL, "%s of '%s' locks no rows: find them with the locked query",
					  what, q->e->name), err);
}

int emh__em_refuse_with(emh_em *em, const emh_query *q, const char *what, emh_error *err)
{
	if (!q || !q->nwith)
		return 0;
	return emh__em_fail(em, emh_error_set(err, EMH_EINVAL,
					  "%s of '%s' loads no relations: emh_q_with('%s') is for emh_repo_find, "
					  "_find_one and _find_page (emh_em_load loads relations of any objects)",
					  what, q->e->name, q->with[0]), err);
}

static const char *const lock_names[] = {"", "FOR UPDATE", "FOR SHARE"};
static const char *const wait_names[] = {"", " NOWAIT", " SKIP LOCKED"};

/*
 * What a locked query needs: a context with row locks (the clause the server
 * speaks in *clause) and an open transaction, since a lock lasts until the
 * transaction ends and would otherwise end with its own statement.
 */
static int lock_check(emh_em *em, const emh_query *q, const char **clause, emh_error *err)
{
	const emh_driver *d = &em->ctx->drv->d;
	int rc = emh__em_conn(em, err);
	if (rc)
		return rc;
	if (!(emh__em_caps(em) & EMH_CAP_LOCKS))
		return emh__em_fail(em, emh_error_set(err, EMH_EUNSUPPORTED,
						  "driver '%s' has no row locks on this server (EMH_CAP_LOCKS)", d->name),
				err);
	if (em->tx_depth == 0)
		return emh__em_fail(em, emh_error_set(err, EMH_ESTATE,
						  "a locked load of '%s' needs a transaction (emh_em_begin): "
						  "its lock would end with the statement",
						  q->e->name), err);
	if (!(*clause = d->lock_clause(em->pc->conn, q->lock, q->lock_wait)))
		return emh__em_fail(em, emh_error_set(err, EMH_EUNSUPPORTED, "driver '%s' cannot lock rows %s%s on this server",
						  d->name, lock_names[q->lock], wait_names[q->lock_wait]), err);
	return 0;
}

/* Run the compiled statement st of m with q's parameters (count: a count's;
 * get: a lookup by key, counted as one). */
static inline int run_query_stmt(emh_em *em, emh__meta *m, const emh_stmt *st, const emh_query *q, bool count, bool get,
				 emh_rowsink *sink, emh_error *err)
{
	size_t np = emh__query_nparams(q, count);
	emh_value stackp[32], *params = np <= 32 ? stackp : malloc(np * sizeof *params);
	if (!params)
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	emh__query_params(q, count, params);
	emh__op o = {.kind = OP_STMT, .m = m, .st = st, .params = params, .sink = sink, .get = get,
		     .locked = q && q->lock};
	int rc = emh__em_run(em, &o, err);
	if (params != stackp)
		free(params);
	return rc;
}

/* q's rows into sink: the dialect's SELECT (ending with lock when not NULL),
 * or the document driver's find (get: a lookup by key, counted as one). */
static inline int select_run(emh_em *em, emh__meta *m, const emh_query *q, const char *lock, bool get,
			     emh_rowsink *sink, emh_error *err)
{
	if (!emh__em_is_sql(em)) {
		emh__op o = {.kind = OP_FIND, .m = m, .q = q, .sink = sink, .get = get, .locked = q && q->lock};
		return emh__em_run(em, &o, err);
	}
	const emh_stmt *st = emh__sql_select_stmt(m, em->ctx->drv->d.dialect, q, lock, err);
	if (!st)
		return emh__em_fail(em, err ? err->code : EMH_ENOMEM, err);
	return run_query_stmt(em, m, st, q, false, get, sink, err);
}

int emh__em_find_run(emh_em *em, emh__meta *m, const emh_query *q, emh_rowsink *sink, emh_error *err)
{
	return select_run(em, m, q, NULL, false, sink, err);
}

/* What a relation reads (relation.c: loads, checked keys, a restricting
 * delete's keys): q checked, never locked, and inside the global filters
 * like any find -- an eager load or a reference check sees no other
 * tenant's rows. */
int emh__em_scan(emh_em *em, emh__meta *m, const emh_query *q, emh_rowsink *sink, emh_error *err)
{
	int rc;
	if (q && (rc = emh__query_error(q, err)) != 0)
		return emh__em_fail(em, rc, err);
	if (q && q->lock) /* the relation's own queries: never locked */
		return emh__em_fail(em, emh_error_set(err, EMH_EINVAL, "a relation's query cannot lock rows"), err);
	if ((rc = emh__em_filter(em, m, q, &q, err)) != 0)
		return rc;
	return select_run(em, m, q, NULL, false, sink, err);
}

/* Run q (NULL: every row; checked and filtered) on m's rows into ls: a
 * locked query loads its rows fresh. */
static int run_select(emh_em *em, emh__meta *m, const emh_query *q, load_sink *ls, emh_error *err)
{
	const char *lock = NULL;
	int rc;
	if (q && q->lock) {
		if ((rc = lock_check(em, q, &lock, err)) != 0)
			return rc;
		if (ls->mode == LOAD_MAP)
			ls->mode = LOAD_FRESH;
	}
	ls->base.row = load_row;
	ls->em = em;
	ls->m = m;
	em->loaded = true;
	return select_run(em, m, q, lock, ls->get, &ls->base, err);
}

static int find_into(emh_repo *r, const emh_query *q, load_sink *ls, emh_error *err)
{
	emh_error local;
	if (!err)
		err = &local;
	emh__meta *m = repo_meta(r);
	int rc = emh__em_check_query(r, q, err);
	if (rc || (rc = emh__em_filter(r->em, m, q, &q, err)) != 0)
		return rc;
	return run_select(r->em, m, q, ls, err);
}

/* A load sink's items as a list (its one-item slot copied into the arena). */
static int list_of(emh_em *em, load_sink *ls, void ***items, emh_error *err)
{
	if (ls->items != &ls->one) {
		*items = ls->items;
		return 0;
	}
	if (!(*items = emh__arena_alloc(&em->arena, sizeof **items)))
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	(*items)[0] = ls->one;
	return 0;
}

int emh_repo_find(emh_repo *r, const emh_query *q, emh_list *out, emh_error *err)
{
	load_sink ls = {0};
	out->items = NULL;
	out->count = 0;
	int rc = find_into(r, q, &ls, err);
	if (rc || (rc = list_of(r->em, &ls, &out->items, err)) != 0)
		return rc;
	out->count = ls.n;
	return q && q->nwith ? emh__rel_load_with(r->em, q, out->items, out->count, err) : 0;
}

int emh_repo_find_one(emh_repo *r, const emh_query *q, void **out, emh_error *err)
{
	load_sink ls = {.max = 1};
	*out = NULL;
	int rc = find_into(r, q, &ls, err);
	if (rc)
		return rc;
	if (!ls.n)
		return emh__em_fail(r->em, emh_error_set(err, EMH_ENOTFOUND, "no '%s' matches the query",
						     r->m->pub.entity->name), err);
	*out = ls.items[0];
	return q && q->nwith ? emh__rel_load_with(r->em, q, ls.items, 1, err) : 0;
}

typedef struct count_sink {
	emh_rowsink base;
	int64_t n;
} count_sink;

static int count_row(emh_rowsink *s, const emh_value *cols, emh_error *err)
{
	((count_sink *)s)->n = emh__value_i64(&cols[0]);
	return 0;
}

/* Count the rows of q (checked and filtered). */
static int count_run(emh_em *em, emh__meta *m, const emh_query *q, int64_t *n, emh_error *err)
{
	*n = 0;
	if (!emh__em_is_sql(em)) {
		emh__op o = {.kind = OP_COUNT, .m = m, .q = q, .count = n};
		return emh__em_run(em, &o, err);
	}
	const emh_stmt *st = emh__sql_query_stmt(m, em->ctx->drv->d.dialect, q, true, err);
	if (!st)
		return emh__em_fail(em, err ? err->code : EMH_ENOMEM, err);
	count_sink cs = {.base.row = count_row};
	int rc = run_query_stmt(em, m, st, q, true, false, &cs.base, err);
	*n = cs.n;
	return rc;
}

int emh_repo_count(emh_repo *r, const emh_query *q, int64_t *n, emh_error *err)
{
	emh_error local;
	if (!err)
		err = &local;
	*n = 0;
	int rc = emh__em_check_query(r, q, err);
	if (rc || (rc = emh__em_refuse_lock(r->em, q, "a count", err)) != 0 ||
	    (rc = emh__em_refuse_with(r->em, q, "a count", err)) != 0 ||
	    (rc = emh__em_filter(r->em, r->m, q, &q, err)) != 0)
		return rc;
	return count_run(r->em, r->m, q, n, err);
}

int emh_repo_exists(emh_repo *r, const emh_query *q, bool *out, emh_error *err)
{
	int64_t n = 0;
	int rc = emh_repo_count(r, q, &n, err);
	*out = n > 0;
	return rc;
}

int emh_repo_find_page(emh_repo *r, const emh_query *q, emh_page *out, emh_error *err)
{
	emh_error local;
	if (!err)
		err = &local;
	load_sink ls = {0};
	*out = (emh_page){.items = NULL, .count = 0, .total = 0};
	/* Checked before the lock test reads q (find_into checks it again). */
	int rc = emh__em_check_query(r, q, err);
	if (rc || (rc = emh__em_refuse_lock(r->em, q, "a page", err)) != 0)
		return rc;
	if ((rc = find_into(r, q, &ls, err)) != 0 || (rc = list_of(r->em, &ls, &out->items, err)) != 0)
		return rc;
	out->count = ls.n;
	/* A page shorter than its limit (or an empty first page) ends the
	 * rows: it tells the total, and the count is not sent.  Judged by the
	 * rows the database sent, not the items kept: the fork's pending
	 * removals are left out of the items but still counted. */
	int64_t limit = q ? q->limit : -1, offset = q && q->offset > 0 ? q->offset : 0;
	if ((limit < 0 || (int64_t)ls.rows < limit) && (ls.rows > 0 || offset == 0)) {
		out->total = offset + (int64_t)ls.rows;
	} else {
		const emh_query *fq;
		if ((rc = emh__em_filter(r->em, r->m, q, &fq, err)) != 0 ||
		    (rc = count_run(r->em, r->m, fq, &out->total, err)) != 0)
			return rc;
	}
	/* the page's relations, as emh_repo_find loads them */
	return q && q->nwith ? emh__rel_load_with(r->em, q, out->items, out->count, err) : 0;
}

/* The query of one key, locked as lock/wait say, and filtered (a filtered
 * entity's parameters are checked here: unset is EMH_ESTATE). */
static int key_query(emh_em *em, emh__meta *m, emh_value key, int lock, int wait, const emh_query **out,
		     emh_error *err)
{
	emh_query *q = emh__query_new(&em->arena, m->pub.entity);
	if (!q)
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	emh_q_where(q, emh_q_eq(q, m->pub.entity->fields[m->pub.pk].name, key));
	emh_q_lock(q, lock, wait);
	int rc = emh__query_error(q, err);
	return rc ? emh__em_fail(em, rc, err) : emh__em_filter(em, m, q, out, err);
}

/*
 * Load the row with key into ls (its mode says what becomes of the map's
 * object), locked as lock/wait say, through kq when the caller made the key
 * query already.  A plain SQL lookup of an unfiltered entity runs the
 * statement compiled at registration; anything else is a query on the key,
 * filtered.
 */
static int load_key(emh_em *em, emh__meta *m, emh_value key, const emh_query *kq, int lock, int wait, load_sink *ls,
		    emh_error *err)
{
	ls->max = 1;
	ls->get = true;
	if (!kq && emh__em_is_sql(em) && !lock && !m->filters) {
		ls->base.row = load_row;
		ls->em = em;
		ls->m = m;
		em->loaded = true;
		emh__op o = {.kind = OP_STMT, .m = m, .st = m->st_get, .params = &key, .sink = &ls->base, .get = true};
		return emh__em_run(em, &o, err);
	}
	int rc = kq ? 0 : key_query(em, m, key, lock, wait, &kq, err);
	return rc ? rc : run_select(em, m, kq, ls, err);
}

/* "no 'user' with id 5" */
static int not_found(emh_em *em, emh__meta *m, const emh_value *key, const char *suffix, emh_error *err)
{
	const emh_field *kf = &m->pub.entity->fields[m->pub.pk];
	if (key->type == EMH_T_TEXT)
		emh_error_set(err, EMH_ENOTFOUND, "no '%s' with %s '%.*s'%s", m->pub.entity->name, kf->name,
			      (int)(key->u.s.len > 64 ? 64 : key->u.s.len), key->u.s.ptr, suffix);
	else
		emh_error_set(err, EMH_ENOTFOUND, "no '%s' with %s %lld%s", m->pub.entity->name, kf->name,
			      (long long)emh__value_i64(key), suffix);
	return emh__em_fail(em, EMH_ENOTFOUND, err);
}

int emh_repo_get(emh_repo *r, emh_value key, void **out, emh_error *err)
{
	return emh_repo_get_opts(r, key, NULL, out, err);
}

int emh_repo_get_opts(emh_repo *r, emh_value key, const emh_get_opts *opts, void **out, emh_error *err)
{
	emh_em *em = r->em;
	emh__meta *m = r->m;
	const emh_field *kf = &m->pub.entity->fields[m->pub.pk];
	int lock = opts ? opts->lock : EMH_LOCK_NONE, wait = opts ? opts->wait : EMH_LOCK_WAIT;
	*out = NULL;
	bool kint = key.type == EMH_T_INT32 || key.type == EMH_T_INT64;
	if (key.is_null || (kf->type == EMH_T_TEXT ? key.type != EMH_T_TEXT : !kint))
		return emh__em_fail(em, emh_error_set(err, EMH_EINVAL, "entity '%s': key must be a non-NULL %s",
						  m->pub.entity->name, emh_type_name(kf->type)), err);
	if (kint) {
		int64_t k = emh__value_i64(&key);
		/* Cut to int32 it would name another row (2^32 + 1 is key 1). */
		if (kf->type == EMH_T_INT32 && (k < INT32_MIN || k > INT32_MAX))
			return emh__em_fail(em, emh_error_set(err, EMH_EINVAL, "entity '%s': key %lld does not fit int32",
							  m->pub.entity->name, (long long)k), err);
		key.type = kf->type;
		if (kf->type == EMH_T_INT32)
			key.u.i32 = (int32_t)k;
		else
			key.u.i64 = k;
	}
	/* A filtered entity: the key query (with the filter) first, so that an
	 * unset parameter is EMH_ESTATE even for an object already in the map. */
	const emh_query *kq = NULL;
	int rc;
	if (m->filters && (rc = key_query(em, m, key, lock, wait, &kq, err)) != 0)
		return rc;
	emh__obj *have = NULL;
	if (!em->readonly && !lock && em->in) {
		have = emh__imap_find(em, m, &key);
		if (have && have->state != ST_MANAGED && have->state != ST_NEW)
			return not_found(em, m, &key, "", err); /* removed in this fork */
		if (have && m->filters && !emh__filter_match(em, have))
			return not_found(em, m, &key, "", err); /* stored outside this fork's filter */
		if (have && !((have->flags & OBJF_STALE) && !emh__obj_changed(have))) {
			*out = OBJ(have);
			return 0;
		}
	}
	/* Not in the map, stale and clean (reloaded in place), or locked. */
	load_sink ls = {0};
	if ((rc = load_key(em, m, key, kq, lock, wait, &ls, err)) != 0)
		return rc;
	if (ls.n) {
		*out = ls.items[0];
		return 0;
	}
	if (have) {
		/* Stale, and its row is gone: deleted by a set-based delete. */
		if (emh__journal_reload(em, have))
			return emh__em_fail(em, emh_error_set(err, EMH_ENOMEM, "out of memory"), err);
		emh__imap_del(em, have);
		have->state = ST_DETACHED;
	}
	return not_found(em, m, &key, lock && wait == EMH_LOCK_SKIP_LOCKED ? " (or it is locked)" : "", err);
}

int emh_em_refresh(emh_em *em, void *obj, emh_error *err)
{
	emh__obj *o;
	int rc = emh__em_own(em, obj, &o, err);
	if (rc)
		return rc;
	if (o->state != ST_MANAGED && o->state != ST_REMOVED)
		return emh__em_fail(em, emh_error_set(err, EMH_ESTATE, "emh_em_refresh: object of entity '%s' is %s",
						  o->m->pub.entity->name,
						  o->state == ST_NEW ? "new (never stored)" : "not managed"), err);
	/* The key as stored: a changed key member is one of the changes dropped. */
	emh_value key = emh__obj_key(o);
	load_sink ls = {.mode = LOAD_FORCE};
	if ((rc = load_key(em, o->m, key, NULL, EMH_LOCK_NONE, EMH_LOCK_WAIT, &ls, err)) != 0)
		return rc;
	if (ls.n)
		return 0;
	if (emh__journal_reload(em, o))
		return emh__em_fail(em, emh_error_set(err, EMH_ENOMEM, "out of memory"), err);
	emh__imap_del(em, o);
	o->state = ST_DETACHED;
	return not_found(em, o->m, &key, " any more: the object is detached", err);
}

void emh__em_mark_stale(emh_em *em, emh__meta *m)
{
	for (emh__obj *o = em->head; o; o = o->next)
		if (o->m == m && (o->state == ST_MANAGED || o->state == ST_REMOVED))
			o->flags |= OBJF_STALE;
}

/* ---- new objects, removal marks, NULL flags ---- */

int emh_em_new(emh_em *em, const emh_entity *e, void **out, emh_error *err)
{
	*out = NULL;
	emh_repo *r;
	int rc = emh_em_repo(em, e, &r, err);
	return rc ? rc : emh_repo_new(r, out, err);
}

int emh_repo_new(emh_repo *r, void **out, emh_error *err)
{
	emh_em *em = r->em;
	*out = NULL;
	if (em->readonly)
		return emh__em_fail(em, emh_error_set(err, EMH_ESTATE, "the fork is read-only: cannot create '%s'",
						  r->m->pub.entity->name), err);
	emh__obj *o = obj_alloc(em, &em->arena, r->m);
	if (!o)
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	o->state = ST_NEW;
	track(em, o);
	*out = OBJ(o);
	return 0;
}

/* obj's header, if obj belongs to this fork. */
int emh__em_own(emh_em *em, void *obj, emh__obj **out, emh_error *err)
{
	if (!obj)
		return emh_error_set(err, EMH_EINVAL, "object is NULL");
	emh__obj *o = HDR(obj);
	if (o->magic != OBJ_MAGIC)
		return emh_error_set(err, EMH_EINVAL, "not an object from emh_em_new or a load");
	if (o->ctx != em->ctx)
		return emh__em_fail(em, emh_error_set(err, EMH_ECROSSCTX,
						  "object of entity '%s' belongs to context '%s'; this fork is on context '%s'",
						  o->m->pub.entity->name, o->ctx->name, em->ctx->name), err);
	if (o->em != em)
		return emh__em_fail(em, emh_error_set(err, EMH_EINVAL, "object of entity '%s' belongs to another fork",
						  o->m->pub.entity->name), err);
	*out = o;
	return 0;
}

int emh_em_remove(emh_em *em, void *obj, emh_error *err)
{
	emh__obj *o;
	int rc = emh__em_own(em, obj, &o, err);
	if (rc)
		return rc;
	if (em->readonly || o->state == ST_DETACHED)
		return emh__em_fail(em, emh_error_set(err, EMH_ESTATE, "object of entity '%s' is not managed (%s)",
						  o->m->pub.entity->name, em->readonly ? "read-only fork" : "detached"),
				err);
	if (o->state == ST_NEW)
		o->state = ST_DETACHED;
	else if (o->state == ST_MANAGED)
		o->state = ST_REMOVED;
	return 0;
}

static int field_index_checked(emh_em *em, emh__obj *o, const char *field, emh_error *err)
{
	int i = emh_entity_field_index(o->m->pub.entity, field);
	if (i < 0 || !((o->m->nullable_scalars >> i) & 1))
		return emh_error_set(err, EMH_EINVAL,
				     "entity '%s': '%s' is not a nullable bool/int/double/timestamp field "
				     "(text, json and blob are NULL through their pointer)",
				     o->m->pub.entity->name, field ? field : "(null)");
	return i;
}

int emh_em_set_null(emh_em *em, void *obj, const char *field, bool is_null, emh_error *err)
{
	emh__obj *o;
	int rc = emh__em_own(em, obj, &o, err);
	if (rc)
		return rc;
	int i = field_index_checked(em, o, field, err);
	if (i < 0)
		return i;
	if (!is_null) {
		o->nulls &= ~(UINT64_C(1) << i);
		return 0;
	}
	/* The member holds NULL's representation (zero), as a loaded NULL's
	 * does: a value written into it later is told apart (the flush
	 * refuses it, uow.c check_not_null). */
	const emh_field *f = &o->m->pub.entity->fields[i];
	o->nulls |= UINT64_C(1) << i;
	memset((char *)obj + f->offset, 0, f->size);
	return 0;
}

bool emh_em_is_null(const emh_em *em, const void *obj, const char *field)
{
	if (!obj)
		return false;
	const emh__obj *o = HDR(obj);
	if (o->magic != OBJ_MAGIC || o->em != em)
		return false;
	int i = emh_entity_field_index(o->m->pub.entity, field);
	if (i < 0)
		return false;
	const emh_field *f = &o->m->pub.entity->fields[i];
	if (emh__is_ptr_type(f->type)) {
		emh_value v = emh__obj_value(o, obj, f, i);
		return v.is_null;
	}
	return (o->nulls >> i) & 1;
}
