/* SPDX-License-Identifier: MIT */
/*
 * core/pool.c: the connection pool of a context, within the host's
 * connection budget.
 *
 * Connections are opened lazily, up to the pool's max and within the
 * budget; an idle one is reused LIFO (the warmest first).  A connection that
 * saw an error is pinged before reuse; one that lost its server
 * (EMH_EUNAVAILABLE) is discarded together with every idle connection, and
 * bumps the pool's epoch so that the connections in use at that moment are
 * pinged before their next use; one whose call passed its deadline
 * (EMH_ETIMEOUT) is discarded alone.
 *
 * Every idle connection of the host is also on one list, longest idle first
 * (the budget's LRU).  When the budget is full, an acquire that needs a new
 * connection closes connections from the head of that list, whatever their
 * context; only when none is idle does it wait.  The state of every pool
 * lives under the budget's mutex (core/internal.h says why); connecting,
 * pinging and closing happen outside it.  A connection taken out to be
 * closed by another thread (eviction, the reaper) is counted in its pool's
 * `closing`, so that destroying the pool waits for it: its driver state must
 * outlive the close.
 *
 * A reload changes a live pool's limits (emh__pool_configure) and the
 * budget's max (emh__budget_set_max) under the same mutex: idle connections
 * above a lowered limit are closed at once, connections in use above it
 * when they are given back.
 *
 * The park.  Most acquires take the connection the last release gave back,
 * and both would otherwise take the budget's lock, the one lock of the host
 * (internal.h).  So a release in good order (status 0) parks its connection
 * in a one-place slot of its pool with a compare-and-swap, and the next
 * acquire takes it with an exchange: no lock, no list edit.  A parked
 * connection counts as in use (p->in_use) and is on no idle list; whoever
 * needs it idle -- a waiter, the budget making room, the reaper, a reload,
 * a server gone, destroy -- moves it onto the lists under the lock
 * (park_drain).  A release may park only while nobody waits (for the pool or
 * the budget), nothing is above a limit, and the reaper will wake before the
 * connection could fall due (park_allowed, from atomics written under the
 * lock); it reads that again after parking and, if it changed meanwhile,
 * takes back whatever is parked and gives it back the locked way.  The
 * writers (under the lock) change the state first and drain second, so one
 * of the two always sees the other.  An acquire hands a parked connection
 * out only if the locked path would have, without a ping (park_fresh); else
 * it makes it idle and takes the locked path.
 */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "internal.h"

/* An idle connection older than this is pinged before it is handed out. */
#define EMH__VALIDATE_IDLE_NS (1000 * 1000000LL)

static long long conf_int(const emh__ctxconf *c, const char *key, long long def)
{
	const char *v = emh__ctxconf_get(c, key);
	return v ? strtoll(v, NULL, 10) : def;
}

/* Waits end at CLOCK_MONOTONIC deadlines: a clock change never stretches them. */
static void cond_init_mono(pthread_cond_t *cv)
{
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(cv, &ca);
	pthread_condattr_destroy(&ca);
}

/* The pool.* settings of a context. */
typedef struct pool_limits {
	int min, max;
	int64_t acquire_timeout_ns, idle_timeout_ns, max_lifetime_ns;
} pool_limits;

static int limits_read(const emh__ctxconf *conf, const char *ctxname, pool_limits *l, emh_error *err)
{
	*l = (pool_limits){
		.min = (int)conf_int(conf, "pool.min", 0),
		.max = (int)conf_int(conf, "pool.max", 8),
		.acquire_timeout_ns = conf_int(conf, "pool.acquire_timeout_ms", 5000) * 1000000LL,
		.idle_timeout_ns = conf_int(conf, "pool.idle_timeout_ms", 300000) * 1000000LL,
		.max_lifetime_ns = conf_int(conf, "pool.max_lifetime_ms", 0) * 1000000LL,
	};
	if (l->max < 1 || l->min < 0 || l->min > l->max)
		return emh_error_set(err, EMH_ECONFIG, "context '%s': pool needs 0 <= min <= max and max >= 1",
				     ctxname);
	return 0;
}

/* The limits into p; the reaper's lower bound follows a shorter idle timeout.  Budget's mu held. */
static void limits_apply(emh__budget *b, emh__pool *p, const pool_limits *l)
{
	p->min = l->min;
	p->max = l->max;
	p->acquire_timeout_ns = l->acquire_timeout_ns;
	p->idle_timeout_ns = l->idle_timeout_ns;
	p->max_lifetime_ns = l->max_lifetime_ns;
	if (l->idle_timeout_ns > 0 && l->idle_timeout_ns < b->min_idle_timeout_ns)
		b->min_idle_timeout_ns = l->idle_timeout_ns;
	int64_t idle = EMH__VALIDATE_IDLE_NS;
	if (l->idle_timeout_ns > 0 && l->idle_timeout_ns < idle)
		idle = l->idle_timeout_ns;
	atomic_store(&p->park_idle_ns, idle);
	atomic_store(&p->park_life_ns, l->max_lifetime_ns);
	atomic_store(&p->park_reap_ns, l->idle_timeout_ns > 0 ? l->idle_timeout_ns : INT64_MAX);
}

/* ---- the park (see the top of this file); budget's mu held unless said ---- */

/* May a release of p park now?  The pool's part: nobody waits for it, not above its max, not going away. */
static void park_update(emh__pool *p)
{
	atomic_store(&p->park_ok, !p->destroying && !p->waiting && p->total <= (unsigned)p->max);
}

/* The budget's part: nobody waits for room, not above max_conns (a reload lowered it). */
static void budget_park_update(emh__budget *b)
{
	atomic_store(&b->park_ok, !b->waiting && b->conns <= b->max_conns);
}

/* Without the lock: may a connection of p idle since idle_since be parked?  The reaper must wake before it falls due. */
static inline bool park_allowed(emh__pool *p, int64_t idle_since)
{
	emh__budget *b = p->b;
	return atomic_load(&p->park_ok) && atomic_load(&b->park_ok) &&
	       atomic_load(&b->reap_at) - idle_since <= atomic_load_explicit(&p->park_reap_ns, memory_order_relaxed);
}

/* Without the lock: would the locked fast path hand pc out as it is (not expired, no ping due)? */
static inline bool park_fresh(emh__pool *p, const emh__pconn *pc, int64_t now)
{
	int64_t life = atomic_load_explicit(&p->park_life_ns, memory_order_relaxed);
	return !pc->suspect && pc->epoch == atomic_load_explicit(&p->epoch, memory_order_relaxed) &&
	       now - pc->idle_since_ns <= atomic_load_explicit(&p->park_idle_ns, memory_order_relaxed) &&
	       (life <= 0 || now - pc->created_ns <= life);
}

int emh__pool_init(emh__pool *p, emh__budget *b, const emh__driver *drv, emh_dctx *dctx,
		   const emh_params *params, const emh__ctxconf *conf, emh_error *err)
{
	memset(p, 0, sizeof *p); /* destroying it is a no-op until drv is set */
	pool_limits l;
	int rc = limits_read(conf, params->context, &l, err);
	if (rc)
		return rc;
	p->b = b;
	p->drv = drv;
	p->dctx = dctx;
	p->params = params;
	p->ctxname = params->context;
	p->cost = drv->d.conn_fds ? drv->d.conn_fds(dctx) : 1;
	p->up = true;
	cond_init_mono(&p->cv);
	pthread_mutex_init(&p->mu, NULL);
	pthread_mutex_lock(&b->mu);
	limits_apply(b, p, &l);
	p->bnext = b->pools;
	if (b->pools)
		b->pools->bprev = p;
	b->pools = p;
	park_update(p);
	pthread_mutex_unlock(&b->mu);
	return 0;
}

/* ---- idle lists (budget's mu held) ---- */

/* Make pc idle: first on its pool's list; on the host's, before lru_at
 * (NULL: last, the most recently idle). */
static void idle_push_at(emh__budget *b, emh__pconn *pc, emh__pconn *lru_at)
{
	emh__pool *p = pc->pool;
	pc->prev = NULL;
	pc->next = p->idle;
	if (p->idle)
		p->idle->prev = pc;
	p->idle = pc;
	p->nidle++;
	atomic_store_explicit(&p->idle_hint, p->nidle, memory_order_relaxed);
	pc->lru_next = lru_at;
	pc->lru_prev = lru_at ? lru_at->lru_prev : b->lru_tail;
	if (pc->lru_prev)
		pc->lru_prev->lru_next = pc;
	else
		b->lru_head = pc;
	if (lru_at)
		lru_at->lru_prev = pc;
	else
		b->lru_tail = pc;
	b->idle_conns++;
	b->idle_fds += p->cost;
}

/* Make pc idle: first on its pool's list, last on the host's. */
static void idle_push(emh__budget *b, emh__pconn *pc) { idle_push_at(b, pc, NULL); }

/* Take pc off both idle lists. */
static void idle_unlink(emh__budget *b, emh__pconn *pc)
{
	emh__pool *p = pc->pool;
	if (pc->prev)
		pc->prev->next = pc->next;
	else
		p->idle = pc->next;
	if (pc->next)
		pc->next->prev = pc->prev;
	p->nidle--;
	atomic_store_explicit(&p->idle_hint, p->nidle, memory_order_relaxed);
	if (pc->lru_prev)
		pc->lru_prev->lru_next = pc->lru_next;
	else
		b->lru_head = pc->lru_next;
	if (pc->lru_next)
		pc->lru_next->lru_prev = pc->lru_prev;
	else
		b->lru_tail = pc->lru_prev;
	b->idle_conns--;
	b->idle_fds -= p->cost;
}

/*
 * A connection that was parked becomes idle: off the in-use count, onto
 * both lists -- on the LRU in order of its idle time, which may be older
 * than that of connections released (the locked way) while it was parked.
 */
static void park_to_idle(emh__budget *b, emh__pconn *pc)
{
	pc->pool->in_use--;
	/* before the idle connections released since it was parked */
	emh__pconn *at = NULL;
	for (emh__pconn *q = b->lru_tail; q && q->idle_since_ns > pc->idle_since_ns; q = q->lru_prev)
		at = q;
	idle_push_at(b, pc, at);
}

/* Make p's parked connection, if any, idle.  True when there was one. */
static bool park_drain(emh__budget *b, emh__pool *p)
{
	emh__pconn *pc = atomic_exchange(&p->park, NULL);
	if (!pc)
		return false;
	park_to_idle(b, pc);
	return true;
}

/* park_drain for every pool of the host. */
static bool park_drain_all(emh__budget *b)
{
	bool any = false;
	for (emh__pool *p = b->pools; p; p = p->bnext)
		any |= park_drain(b, p);
	return any;
}

/*
 * pc leaves its pool (no longer idle or in use) to be closed by this
 * thread: onto *list for close_list.  Its budget stays counted until then.
 */
static void take_for_close(emh__pconn *pc, emh__pconn **list)
{
	emh__pool *p = pc->pool;
	p->total--;
	p->closing++;
	park_update(p);
	if (p->waiting)
		pthread_cond_signal(&p->cv); /* below max again */
	pc->next = *list;
	*list = pc;
}

/*
 * Close what take_for_close collected, then give back its budget -- to
 * heir first, when given: the pool whose new connection these made room
 * for takes that room in the same step, so nobody else can.  Budget's mu
 * not held.
 */
static unsigned close_list(emh__budget *b, emh__pconn *list, const emh__pool *heir)
{
	unsigned n = 0;
	if (!list && !heir)
		return 0;
	for (emh__pconn *pc = list; pc; pc = pc->next, n++)
		pc->pool->drv->d.disconnect(pc->conn);
	pthread_mutex_lock(&b->mu);
	for (emh__pconn *pc = list; pc; pc = pc->next) {
		emh__pool *p = pc->pool;
		b->conns--;
		b->fds -= p->cost;
		if (--p->closing == 0 && p->destroying)
			pthread_cond_broadcast(&p->cv); /* p may be freed once we unlock */
	}
	if (heir) {
		b->conns++;
		b->fds += heir->cost;
	}
	budget_park_update(b);
	if (b->waiting)
		pthread_cond_broadcast(&b->cv);
	pthread_mutex_unlock(&b->mu);
	while (list) {
		emh__pconn *next = list->next;
		free(list);
		list = next;
	}
	return n;
}

/* ---- the budget ---- */

/* Most idle connections the reaper takes out before it lets go of the lock. */
#define EMH__REAP_BATCH 1024

/*
 * The file descriptors connections may hold: RLIMIT_NOFILE's soft limit
 * less room for the application's own (a daemon's client sockets, files,
 * pipes): 32 and a quarter of the limit, at most 1024 -- and at least half
 * the limit.  1024 -> 736, 4096 -> 3040, 65536 -> 64480.
 */
static unsigned fds_for_connections(long long nofile)
{
	if (nofile < 0 || nofile > (1LL << 30))
		nofile = 1LL << 30;
	long long reserve = 32 + (nofile / 4 < 1024 ? nofile / 4 : 1024);
	long long n = nofile > 2 * reserve ? nofile - reserve : nofile / 2;
	return n > 0 ? (unsigned)n : 1;
}

void emh__budget_init(emh__budget *b, const emh__logger *log)
{
	memset(b, 0, sizeof *b);
	pthread_mutex_init(&b->mu, NULL);
	cond_init_mono(&b->cv);
	cond_init_mono(&b->reap_cv);
	b->log = log;
	b->min_idle_timeout_ns = INT64_MAX;
	atomic_store(&b->reap_at, INT64_MAX);
	struct rlimit rl;
	b->nofile = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY ? (long long)rl.rlim_cur : -1;
	b->max_fds = fds_for_connections(b->nofile);
	b->max_conns = b->max_fds;
	b->origin = "default";
	atomic_store(&b->park_ok, true);
}

int emh__budget_set_max(emh__budget *b, const emh__setting *max_connections, emh_error *err)
{
	unsigned max = b->max_fds;
	const char *origin = "default";
	if (max_connections->value) {
		/* checked when read (file or environment); this guards other callers */
		char *end;
		errno = 0;
		long long n = strtoll(max_connections->value, &end, 10);
		if (errno || *end || n < 1 || n > INT32_MAX)
			return emh_error_set(err, EMH_ECONFIG, "%s: 'max_connections' must be in [1, %d]",
					     max_connections->origin ? max_connections->origin : "config", INT32_MAX);
		max = (unsigned)n;
		origin = max_connections->origin ? max_connections->origin : "config";
		if (max > b->max_fds)
			emh__log(b->log, EMH_LOG_WARN, NULL,
				 "max_connections %u (%s): the file descriptor limit (RLIMIT_NOFILE %lld) leaves "
				 "connections %u descriptors, which bounds them first; raise it (ulimit -n, "
				 "LimitNOFILE=) to open that many",
				 max, origin, b->nofile, b->max_fds);
	}
	emh__pconn *drop = NULL;
	pthread_mutex_lock(&b->mu);
	b->max_conns = max;
	b->origin = origin;
	budget_park_update(b);
	park_drain_all(b);
	/* Lowered by a reload: idle connections above it go now, longest idle
	 * first; those in use go when they are given back. */
	for (unsigned over = b->conns > max ? b->conns - max : 0; over && b->lru_head; over--) {
		emh__pconn *pc = b->lru_head;
		idle_unlink(b, pc);
		take_for_close(pc, &drop);
		atomic_fetch_add_explicit(&b->evicted, 1, memory_order_relaxed);
	}
	if (b->waiting)
		pthread_cond_broadcast(&b->cv);
	pthread_mutex_unlock(&b->mu);
	close_list(b, drop, NULL);
	return 0;
}

static bool budget_fits(const emh__budget *b, unsigned conns, unsigned fds, unsigned cost)
{
	return b->conns - conns + 1 <= b->max_conns && b->fds - fds + cost <= b->max_fds;
}

/*
 * Reserve room for a new connection of p, closing idle connections of any
 * context, longest idle first, when the budget is full.  Victims stay
 * counted until close_list has closed them (before p connects), and hands
 * their room to p (*heir) in the same step: the counts never understate
 * what is open nor pass the budget.  False when even closing every idle
 * connection would not make room: the caller waits.
 */
static bool budget_reserve(emh__budget *b, emh__pool *p, emh__pconn **victims, bool *heir)
{
	unsigned vconns = 0, vfds = 0;
	if (budget_fits(b, 0, 0, p->cost)) {
		b->conns++;
		b->fds += p->cost;
		budget_park_update(b);
		return true;
	}
	/* parked connections are idle too, and may be the longest idle */
	park_drain_all(b);
	if (!budget_fits(b, b->idle_conns, b->idle_fds, p->cost))
		return false;
	*heir = true;
	while (!budget_fits(b, vconns, vfds, p->cost)) {
		emh__pconn *pc = b->lru_head;
		idle_unlink(b, pc);
		take_for_close(pc, victims);
		vconns++;
		vfds += pc->pool->cost;
		atomic_fetch_add_explicit(&b->evicted, 1, memory_order_relaxed);
	}
	return true;
}

/* Give back the room of a connection that was never opened. */
static void budget_unreserve(emh__budget *b, const emh__pool *p)
{
	b->conns--;
	b->fds -= p->cost;
	budget_park_update(b);
	if (b->waiting)
		pthread_cond_broadcast(&b->cv);
}

/* ---- acquire and release ---- */

/* Is an idle connection too old to hand out?  Called with the lock held. */
static bool expired(const emh__pool *p, const emh__pconn *pc, int64_t now)
{
	if (p->max_lifetime_ns > 0 && now - pc->created_ns > p->max_lifetime_ns)
		return true;
	return p->idle_timeout_ns > 0 && now - pc->idle_since_ns > p->idle_timeout_ns &&
	       p->total > (unsigned)p->min;
}

/*
 * EMH_ETIMEOUT never marks the context down: a deadline that passed, or a
 * server with no connection slot free (PostgreSQL 53300), is slowness or
 * back-pressure, and the server may well answer the next call.  Its
 * message is kept as last_error all the same, until a success clears it.
 */
void emh__pool_note(emh__pool *p, const emh_error *e)
{
	pthread_mutex_lock(&p->mu);
	if (!e) {
		p->up = true;
		p->last_error[0] = '\0';
	} else {
		if (e->code != EMH_ETIMEOUT)
			p->up = false;
		snprintf(p->last_error, sizeof p->last_error, "%s", e->message);
	}
	pthread_mutex_unlock(&p->mu);
}

/* What an acquire that waited in vain reports: the limits as they were
 * when it gave up (a reload may change them once the lock is let go). */
typedef struct timeout_seen {
	bool budget; /* waited for the host's budget, not for the pool's max */
	int pool_max;
	unsigned max_conns, max_fds;
	int64_t timeout_ns;
} timeout_seen;

/* The error of an acquire that waited in vain, for the pool's max or the host's budget. */
static int acquire_timeout(const emh__pool *p, const timeout_seen *t, emh_error *err)
{
	long long ms = (long long)(t->timeout_ns / 1000000);
	if (!t->budget)
		return emh_error_set(err, EMH_ETIMEOUT, "context '%s': no connection free within %lld ms (pool max %d)",
				     p->ctxname, ms, t->pool_max);
	emh_error_set(err, EMH_ETIMEOUT,
		      "context '%s': the host's connection budget (%u connections, %u file descriptors) is "
		      "exhausted: every connection is in use and none came free within %lld ms (raise "
		      "max_connections or the file descriptor limit, or lower pool.max)",
		      p->ctxname, t->max_conns, t->max_fds, ms);
	if (err)
		err->retryable = true;
	return EMH_ETIMEOUT;
}

/*
 * Everything but the fast path: expired idle connections, a ping before
 * reuse, a new connection, a wait.  Entered with the budget's mu held (the
 * fast path looked under it); reads the precise clock when the caller has
 * to wait or connect, which is what the acquire-wait metric measures.  With
 * nowait, where it would wait it returns EMH__POOL_FULL instead.
 */
static __attribute__((noinline)) int pool_acquire_slow(emh__pool *p, emh__pconn **out, bool nowait,
							 emh_error *err)
{
	emh__budget *b = p->b;
	emh_error local;
	if (!err)
		err = &local; /* the pool records the message of a failed connect */
	int64_t start = 0, deadline = 0;
	bool waited_budget = false, locked = true;
	for (;;) {
		emh__pconn *drop = NULL, *pc = NULL;
		bool need_ping = false, open_new = false, heir = false;
		if (!locked)
			pthread_mutex_lock(&b->mu);
		locked = false;
		for (;;) {
			int64_t now = emh__coarse_ns();
			park_drain(b, p);
			while ((pc = p->idle) != NULL) {
				idle_unlink(b, pc);
				if (!expired(p, pc, now))
					break;
				take_for_close(pc, &drop);
			}
			if (pc) {
				/* Pinged before reuse: after an error, after a lost
				 * connection elsewhere (epoch), or when idle long enough
				 * for the server to have gone away unseen. */
				need_ping = pc->suspect || pc->epoch != p->epoch ||
					    now - pc->idle_since_ns > EMH__VALIDATE_IDLE_NS;
				pc->fresh = false;
				break;
			}
			if (!start) {
				start = emh__now_ns();
				deadline = start + p->acquire_timeout_ns;
			}
			bool below_max = p->total < (unsigned)p->max;
			if (below_max && budget_reserve(b, p, &drop, &heir)) {
				p->total++;
				park_update(p);
				open_new = true;
				break;
			}
			if (drop) {
				/* The pool's own expired connections, taken out above,
				 * count against the budget until closed: close them and
				 * look again, rather than refuse or wait for room this
				 * acquire holds itself. */
				pthread_mutex_unlock(&b->mu);
				close_list(b, drop, NULL);
				drop = NULL;
				pthread_mutex_lock(&b->mu);
				continue;
			}
			if (nowait) {
				pthread_mutex_unlock(&b->mu);
				return EMH__POOL_FULL;
			}
			if (emh__now_ns() >= deadline) {
				timeout_seen t = {.budget = below_max, .pool_max = p->max, .max_conns = b->max_conns,
						  .max_fds = b->max_fds, .timeout_ns = deadline - start};
				pthread_mutex_unlock(&b->mu);
				atomic_fetch_add_explicit(&p->timeouts, 1, memory_order_relaxed);
				if (below_max)
					atomic_fetch_add_explicit(&b->timeouts, 1, memory_order_relaxed);
				atomic_fetch_add_explicit(&p->wait_ns, (uint64_t)(emh__now_ns() - start),
							  memory_order_relaxed);
				close_list(b, drop, NULL);
				return acquire_timeout(p, &t, err);
			}
			struct timespec ts = {.tv_sec = deadline / 1000000000, .tv_nsec = deadline % 1000000000};
			if (below_max) {
				/* Room in the pool, none in the budget, nothing idle anywhere:
				 * any connection closed or given back makes room. */
				if (!waited_budget) {
					waited_budget = true;
					atomic_fetch_add_explicit(&b->waits, 1, memory_order_relaxed);
				}
				b->waiting++;
				p->budget_waiting++;
				budget_park_update(b);
				/* parked after budget_reserve looked: idle now, so look again */
				if (!park_drain_all(b))
					pthread_cond_timedwait(&b->cv, &b->mu, &ts);
				p->budget_waiting--;
				b->waiting--;
				budget_park_update(b);
			} else {
				p->waiting++;
				park_update(p);
				if (!park_drain(b, p))
					pthread_cond_timedwait(&p->cv, &b->mu, &ts);
				p->waiting--;
				park_update(p);
			}
		}
		p->in_use++;
		uint32_t epoch = p->epoch;
		pthread_mutex_unlock(&b->mu);
		/* Victims and expired connections first: their descriptors go
		 * before the new connection takes its own. */
		close_list(b, drop, heir ? p : NULL);
		if (open_new) {
			pc = calloc(1, sizeof *pc);
			int rc = pc ? p->drv->d.connect(p->params, p->dctx, &pc->conn, err)
				    : emh_error_set(err, EMH_ENOMEM, "out of memory");
			if (rc) {
				free(pc);
				/* Out of descriptors is this process's state, not the
				 * database's: the context stays up. */
				if (rc != EMH_ENOFD)
					emh__pool_note(p, err); /* health shows the driver's words */
				emh__error_in_context(err, rc, p->ctxname); /* callers get the context's name */
				pthread_mutex_lock(&b->mu);
				p->total--;
				p->in_use--;
				park_update(p);
				budget_unreserve(b, p);
				pthread_cond_signal(&p->cv);
				pthread_mutex_unlock(&b->mu);
				atomic_fetch_add_explicit(&p->wait_ns, (uint64_t)(emh__now_ns() - start),
							  memory_order_relaxed);
				return rc;
			}
			atomic_fetch_add_explicit(&p->opened, 1, memory_order_relaxed);
			pc->pool = p;
			pc->created_ns = emh__coarse_ns();
			pc->epoch = epoch;
			pc->fresh = true;
			emh__pool_note(p, NULL);
		} else if (need_ping) {
			emh_error perr;
			int prc = p->drv->d.ping(pc->conn, &perr);
			if (prc != 0) {
				/* Broken: never hand it out again; try the next one.  A
				 * check that passed its deadline is the answer for now:
				 * a fresh connect to a server that does not answer would
				 * only wait its own deadline again. */
				emh__pool_release(p, pc, EMH_EUNAVAILABLE);
				if (prc == EMH_ETIMEOUT) {
					*err = perr;
					emh__pool_note(p, err);
					return emh__error_in_context(err, prc, p->ctxname);
				}
				continue;
			}
			pc->suspect = false;
			pc->epoch = epoch;
		}
		if (start)
			atomic_fetch_add_explicit(&p->wait_ns, (uint64_t)(emh__now_ns() - start), memory_order_relaxed);
		*out = pc;
		return 0;
	}
}

/*
 * The fast paths: the parked connection, taken without the lock; else one
 * short hold of the lock for the warmest idle connection, when it has not
 * expired and needs no ping (the conditions the slow path tests first, in
 * the same order).  The coarse clock is read before the lock: a release
 * stamped after it only looks younger, which changes no answer by more than
 * the clock's own coarseness.
 */
static inline int pool_acquire(emh__pool *p, emh__pconn **out, bool nowait, emh_error *err)
{
	emh__budget *b = p->b;
	int64_t now = emh__coarse_ns();
	atomic_fetch_add_explicit(&p->acquires, 1, memory_order_relaxed);
	emh__pconn *pc = NULL;
	if (atomic_load_explicit(&p->park, memory_order_relaxed) && (pc = atomic_exchange(&p->park, NULL)) != NULL &&
	    park_fresh(p, pc, now)) {
		pc->fresh = false;
		*out = pc;
		return 0;
	}
	pthread_mutex_lock(&b->mu);
	if (pc) /* parked, but to be pinged or closed first: the slow path's */
		park_to_idle(b, pc);
	pc = p->idle;
	if (!pc || expired(p, pc, now) || pc->suspect || pc->epoch != p->epoch ||
	    now - pc->idle_since_ns > EMH__VALIDATE_IDLE_NS)
		return pool_acquire_slow(p, out, nowait, err);
	idle_unlink(b, pc);
	pc->fresh = false;
	p->in_use++;
	pthread_mutex_unlock(&b->mu);
	*out = pc;
	return 0;
}

int emh__pool_acquire(emh__pool *p, emh__pconn **out, emh_error *err)
{
	return pool_acquire(p, out, false, err);
}

int emh__pool_try_acquire(emh__pool *p, emh__pconn **out, emh_error *err)
{
	return pool_acquire(p, out, true, err);
}

/*
 * Additive (issue 19): a hint for a caller that must not wait, e.g. the
 * daemon deciding whether a handler may run on its I/O thread.  Nothing is
 * taken: another thread may take the connection first.  No lock either:
 * the answer may be stale the moment it is read, as it would be the moment
 * the lock was let go.  A parked connection counts as idle.  A pool being
 * destroyed has none idle (emh__pool_destroy drains the park and empties the
 * list under the lock, and nothing is given back to it after).
 */
bool emh__pool_idle_now(emh__pool *p)
{
	return atomic_load_explicit(&p->idle_hint, memory_order_relaxed) != 0 ||
	       atomic_load_explicit(&p->park, memory_order_relaxed) != NULL;
}

void emh__pool_counts(const emh__pool *p, unsigned *in_use, unsigned *idle)
{
	unsigned parked = atomic_load(&((emh__pool *)p)->park) != NULL;
	*in_use = p->in_use - parked;
	*idle = p->nidle + parked;
}

unsigned emh__budget_idle(const emh__budget *b)
{
	unsigned n = b->idle_conns;
	for (const emh__pool *p = b->pools; p; p = p->bnext)
		n += atomic_load(&((emh__pool *)p)->park) != NULL;
	return n;
}

static void reaper_start(emh__budget *b);

/*
 * An idle connection falls due at due: wake the reaper when that is before
 * it would wake anyway.  True when the reaper is still to be started (by the
 * caller, once the lock is let go; it starts with the first connection that
 * can expire).  Budget's mu held.
 */
static bool reaper_arm(emh__budget *b, int64_t due)
{
	if (due < b->reap_at) {
		b->reap_at = due;
		pthread_cond_signal(&b->reap_cv);
	}
	if (b->reaper_started)
		return false;
	b->reaper_started = true;
	return true;
}

/*
 * A release that does not make pc idle: it is closed (and with it every
 * idle connection of p when the server went away).  Budget's mu held on
 * entry, let go here.  Out of line: the common release stays small.
 */
static __attribute__((noinline)) void release_discard(emh__pool *p, emh__pconn *pc, int status)
{
	emh__budget *b = p->b;
	if (status == EMH_EUNAVAILABLE) {
		/* The server went away: the idle connections are almost surely
		 * dead too, and pinging each one would cost a full timeout while
		 * it is down.  Drop them; the ones in use get pinged (epoch). */
		emh__pconn *drop = NULL;
		take_for_close(pc, &drop);
		park_drain(b, p);
		while (p->idle) {
			emh__pconn *idle = p->idle;
			idle_unlink(b, idle);
			take_for_close(idle, &drop);
		}
		p->epoch++;
		pthread_cond_broadcast(&p->cv);
		pthread_mutex_unlock(&b->mu);
		atomic_fetch_add_explicit(&p->discarded, close_list(b, drop, NULL), memory_order_relaxed);
		return;
	}
	/* A call past its deadline: the connection may still be inside it (an
	 * answer on its way, a server stopped mid-call), so it is closed, never
	 * reused; the others stay, one slow call says nothing about them.  Or
	 * the pool's max or the budget was lowered while it was lent (a
	 * reload).  Either way a waiter may now open one in its place
	 * (take_for_close signals it). */
	emh__pconn *drop = NULL;
	take_for_close(pc, &drop);
	pthread_mutex_unlock(&b->mu);
	atomic_fetch_add_explicit(&p->discarded, close_list(b, drop, NULL), memory_order_relaxed);
}

/* The release that takes the lock. */
static void release_locked(emh__pool *p, emh__pconn *pc, int status)
{
	emh__budget *b = p->b;
	pthread_mutex_lock(&b->mu);
	p->in_use--;
	if (status == EMH_EUNAVAILABLE || status == EMH_ETIMEOUT || p->total > (unsigned)p->max ||
	    b->conns > b->max_conns) {
		release_discard(p, pc, status);
		return;
	}
	if (status)
		pc->suspect = true;
	pc->idle_since_ns = emh__coarse_ns();
	idle_push(b, pc);
	if (p->waiting)
		pthread_cond_signal(&p->cv);
	else if (b->waiting)
		/* Any budget waiter can use it (by closing it if it is another
		 * context's); they are few, and only when the budget is full. */
		pthread_cond_broadcast(&b->cv);
	bool start = p->idle_timeout_ns > 0 && reaper_arm(b, pc->idle_since_ns + p->idle_timeout_ns);
	pthread_mutex_unlock(&b->mu);
	if (start)
		reaper_start(b);
}

/* Park pc for the next acquire (see the top of this file).  False: give it back the locked way. */
static bool park(emh__pool *p, emh__pconn *pc)
{
	int64_t now = emh__coarse_ns();
	if (!park_allowed(p, now))
		return false;
	pc->idle_since_ns = now;
	emh__pconn *none = NULL;
	if (!atomic_compare_exchange_strong(&p->park, &none, pc))
		return false; /* one is parked already */
	if (!park_allowed(p, now)) {
		/* A waiter, a lower limit or the reaper going to sleep came in
		 * between: whatever is parked now (pc, or one parked since) goes
		 * the locked way, which wakes the waiter or arms the reaper.  If
		 * nothing is, a drain took it: it is idle already. */
		emh__pconn *back = atomic_exchange(&p->park, NULL);
		if (back)
			release_locked(p, back, 0);
	}
	return true;
}

void emh__pool_release(emh__pool *p, emh__pconn *pc, int status)
{
	if (!pc)
		return;
	if (status == 0 && park(p, pc))
		return;
	release_locked(p, pc, status);
}

void emh__pool_destroy(emh__pool *p)
{
	if (!p->drv)
		return;
	emh__budget *b = p->b;
	emh__pconn *drop = NULL;
	pthread_mutex_lock(&b->mu);
	p->destroying = true;
	park_update(p);
	park_drain(b, p);
	if (p->bprev)
		p->bprev->bnext = p->bnext;
	else
		b->pools = p->bnext;
	if (p->bnext)
		p->bnext->bprev = p->bprev;
	while (p->idle) {
		emh__pconn *pc = p->idle;
		idle_unlink(b, pc);
		take_for_close(pc, &drop);
	}
	pthread_mutex_unlock(&b->mu);
	close_list(b, drop, NULL);
	/* Connections of this pool that an eviction or the reaper is closing
	 * now: the driver's context state must outlive them. */
	pthread_mutex_lock(&b->mu);
	while (p->closing)
		pthread_cond_wait(&p->cv, &b->mu);
	pthread_mutex_unlock(&b->mu);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->cv);
	p->drv = NULL;
}

int emh__pool_configure(emh__pool *p, const emh__ctxconf *conf, emh_error *err)
{
	pool_limits l;
	int rc = limits_read(conf, p->ctxname, &l, err);
	if (rc)
		return rc;
	emh__budget *b = p->b;
	emh__pconn *drop = NULL;
	pthread_mutex_lock(&b->mu);
	limits_apply(b, p, &l);
	park_update(p);
	park_drain(b, p);
	/* above a smaller max: the longest idle of the pool go (the last of its
	 * most-recently-used-first list) */
	emh__pconn *last = p->idle;
	while (last && last->next)
		last = last->next;
	while (last && p->total > (unsigned)p->max) {
		emh__pconn *prev = last->prev;
		idle_unlink(b, last);
		take_for_close(last, &drop);
		last = prev;
	}
	/* waiters look again: there may be room now */
	pthread_cond_broadcast(&p->cv);
	if (b->waiting)
		pthread_cond_broadcast(&b->cv);
	/* the reaper again, for a new idle timeout: its next wake is now due */
	bool start = l.idle_timeout_ns > 0 && p->idle && reaper_arm(b, emh__coarse_ns());
	pthread_mutex_unlock(&b->mu);
	atomic_fetch_add_explicit(&p->discarded, close_list(b, drop, NULL), memory_order_relaxed);
	if (start)
		reaper_start(b);
	return 0;
}

/* ---- the reaper ---- */

/*
 * Take out the idle connections past their pool's idle_timeout_ms (above
 * pool.min), oldest first; stop at the first that no pool's timeout can
 * have passed.  Returns when the next one falls due (INT64_MAX: none
 * known), or now when the batch ran out.  Lock held.
 *
 * The batch counts the connections taken out, not those looked at: the
 * kept ones (a pool without idle timeout, at its min, or with a longer
 * timeout not passed yet) stay at the head of the list, and a batch they
 * used up would end every pass on the same ones, with the reaper spinning
 * and nothing behind them ever reaped.  Every early return has now made
 * progress; a pass walks the kept connections, at most the budget's.
 */
static int64_t reap_due(emh__budget *b, int64_t now, emh__pconn **drop)
{
	int64_t next = INT64_MAX;
	unsigned taken = 0;
	if (b->min_idle_timeout_ns == INT64_MAX)
		return INT64_MAX;
	for (emh__pconn *pc = b->lru_head, *nx; pc; pc = nx) {
		nx = pc->lru_next;
		if (now - pc->idle_since_ns < b->min_idle_timeout_ns) {
			int64_t due = pc->idle_since_ns + b->min_idle_timeout_ns;
			return due < next ? due : next;
		}
		emh__pool *p = pc->pool;
		if (p->idle_timeout_ns <= 0 || p->total <= (unsigned)p->min)
			continue; /* kept: a release above min makes it due again */
		int64_t due = pc->idle_since_ns + p->idle_timeout_ns;
		if (due > now) {
			next = due < next ? due : next;
			continue;
		}
		if (taken == EMH__REAP_BATCH)
			return now;
		idle_unlink(b, pc);
		take_for_close(pc, drop);
		taken++;
	}
	return next;
}

/* One thread per host: sleeps until the next idle connection falls due. */
static void *reaper_main(void *arg)
{
	emh__budget *b = arg;
	pthread_mutex_lock(&b->mu);
	while (!b->reaper_stop) {
		emh__pconn *drop = NULL;
		park_drain_all(b); /* parked connections are idle too */
		/* the precise clock: idle times are coarse stamps, which lag it */
		int64_t now = emh__now_ns(), next = reap_due(b, now, &drop);
		if (drop || next <= now) {
			b->reap_at = now; /* busy: releases meanwhile need not wake us */
			pthread_mutex_unlock(&b->mu);
			atomic_fetch_add_explicit(&b->reaped, close_list(b, drop, NULL), memory_order_relaxed);
			pthread_mutex_lock(&b->mu);
			continue;
		}
		atomic_store(&b->reap_at, next);
		/* parked before the release saw reap_at: look again */
		if (park_drain_all(b))
			continue;
		if (next == INT64_MAX) {
			pthread_cond_wait(&b->reap_cv, &b->mu);
		} else {
			struct timespec ts = {.tv_sec = next / 1000000000, .tv_nsec = next % 1000000000};
			pthread_cond_timedwait(&b->reap_cv, &b->mu, &ts);
		}
	}
	pthread_mutex_unlock(&b->mu);
	return NULL;
}

/* Started by the first release of a connection that can expire; all signals blocked in it. */
static void reaper_start(emh__budget *b)
{
	sigset_t all, old;
	pthread_t th;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int rc = pthread_create(&th, NULL, reaper_main, b);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_mutex_lock(&b->mu);
	if (rc == 0) {
		b->reaper = th;
		b->reaper_running = true;
	}
	pthread_mutex_unlock(&b->mu);
	if (rc)
		emh__log(b->log, EMH_LOG_WARN, NULL,
			 "cannot start the idle connection reaper (%s): idle connections are closed only when "
			 "their context is used again",
			 strerror(rc));
}

void emh__budget_stop(emh__budget *b)
{
	pthread_mutex_lock(&b->mu);
	b->reaper_stop = true;
	pthread_cond_signal(&b->reap_cv);
	bool running = b->reaper_running;
	b->reaper_running = false;
	pthread_mutex_unlock(&b->mu);
	if (running)
		pthread_join(b->reaper, NULL);
}

void emh__budget_destroy(emh__budget *b)
{
	pthread_mutex_destroy(&b->mu);
	pthread_cond_destroy(&b->cv);
	pthread_cond_destroy(&b->reap_cv);
}
