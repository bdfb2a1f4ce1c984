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

#include "internal.h"
#include "query_int.h"

#define OBJ_MAGIC 0x454d484fu /* "EMHO" */
#define EM_INLINE 640

enum { ST_NEW = 1, ST_MANAGED, ST_REMOVED, ST_DELETED, ST_DETACHED };

/* A row callback's "enough rows, no error" (drivers return it as is). */
#define EMH__STOP 1

typedef struct emh__obj {
	_Alignas(16) uint32_t magic;
	uint8_t state;
	emh_em *em;
	emh_context *ctx;
	emh__meta *m;
	struct emh__obj *next;  /* tracked objects, creation order */
	struct emh__obj *inext; /* identity map chain */
	void *snap;             /* struct as last loaded/flushed; NULL when new */
	uint64_t nulls, snap_nulls;
} emh__obj;

#define HDR(p) ((emh__obj *)((char *)(p) - sizeof(emh__obj)))
#define OBJ(h) ((void *)((char *)(h) + sizeof(emh__obj)))

struct emh_repo {
	emh_em *em;
	emh__meta *m;
	emh_repo *next;
};

/* Bookkeeping to restore when a transaction level is rolled back. */
typedef struct jentry {
	struct jentry *next;
	emh__obj *o;
	int depth;
	int kind;     /* OP_INSERT, OP_UPDATE or OP_REMOVE */
	uint8_t state;
	void *snap;
	uint64_t snap_nulls;
	bool key_set; /* a generated key was written by the flush */
	int64_t old_key;
} jentry;

struct emh_em {
	emh_host *host;
	emh_context *ctx;
	emh__pconn *pc;
	int pc_status;   /* worst status seen on pc, for the pool */
	bool conn_used;  /* a statement ran on pc in this fork */
	bool readonly, loaded;
	bool caps_known;
	bool tx_failed;
	int tx_depth;
	uint64_t caps;
	emh__obj *head, *tail;
	emh__obj **imap;
	size_t icap, in;
	emh_repo *repos;
	jentry *journal;
	emh__arena arena;
	_Alignas(16) unsigned char inline_buf[EM_INLINE];
};

emh_context *emh__em_context(const emh_em *em) { return em->ctx; }

/* ---- fork / close ---- */

int emh_host_fork(emh_host *h, const char *name, emh_em **out, emh_error *err)
{
	emh_context *c;
	if (!h || !out)
		return emh_error_set(err, EMH_EINVAL, "emh_host_fork: host or out is NULL");
	*out = NULL;
	if (h->def && (!name || strcmp(name, h->def->name) == 0)) {
		/* The default context is never removed: no lock. */
		c = h->def;
		atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
	} else if (!(c = emh__host_get_context(h, name, err))) {
		return EMH_ENOCONTEXT;
	}
	emh_em *em = atomic_exchange_explicit(&c->spare_em, NULL, memory_order_acquire);
	if (!em && !(em = malloc(sizeof *em))) {
		emh__context_put(c);
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	}
	memset(em, 0, offsetof(emh_em, arena));
	em->host = h;
	em->ctx = c;
	atomic_fetch_add_explicit(&c->forks_open, 1, memory_order_relaxed);
	emh__arena_init(&em->arena, em->inline_buf, sizeof em->inline_buf);
	*out = em;
	return 0;
}

static void pc_release(emh_em *em)
{
	if (em->pc) {
		emh__pool_release(&em->ctx->pool, em->pc, em->pc_status);
		em->pc = NULL;
		em->pc_status = 0;
		em->conn_used = false;
	}
}

static int tx_end(emh_em *em, bool commit, emh_error *err);

void emh_em_close(emh_em *em)
{
	if (!em)
		return;
	while (em->tx_depth > 0) {
		emh_error e;
		if (tx_end(em, false, &e) != 0 && em->pc) {
			/* Could not roll back: never give this connection to anyone. */
			em->pc_status = EMH_EUNAVAILABLE;
			em->tx_depth = 0;
		}
	}
	pc_release(em);
	emh__arena_release(&em->arena);
	emh_context *c = em->ctx;
	atomic_fetch_sub_explicit(&c->forks_open, 1, memory_order_relaxed);
	void *none = NULL;
	if (!atomic_compare_exchange_strong_explicit(&c->spare_em, &none, em, memory_order_release,
						     memory_order_relaxed))
		free(em);
	/* Last: once the fork is released the context may be freed (removal). */
	emh__context_put(c);
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
static int fail_ctx(emh_em *em, int rc, emh_error *err)
{
	emh__context_count_error(em->ctx, rc);
	return emh__error_in_context(err, rc, em->ctx->name);
}

static int sync_pending(emh_em *em, emh_error *err);

static int ensure_conn(emh_em *em, emh_error *err)
{
	if (em->pc)
		return 0;
	if (em->tx_depth > 0)
		/* The transaction died with its connection: nothing may run as if
		 * it were still open, on another connection, in autocommit. */
		return fail_ctx(em, emh_error_set(err, EMH_ESTATE,
						  "the connection of this transaction was lost; roll it back"), err);
	int rc = emh__pool_acquire(&em->ctx->pool, &em->pc, err);
	if (rc) {
		em->pc = NULL;
		return fail_ctx(em, rc, err);
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

/* After a driver call failed: drop a lost connection at once. */
static void conn_failed(emh_em *em, int rc, const emh_error *err)
{
	if (rc == EMH_EUNAVAILABLE) {
		/* Down until a connect or ping succeeds again (health, metrics). */
		static const emh_error lost = {.code = EMH_EUNAVAILABLE, .message = "connection lost"};
		emh__pool_note(&em->ctx->pool, err ? err : &lost);
		em->pc_status = EMH_EUNAVAILABLE;
		pc_release(em);
		if (em->tx_depth > 0)
			em->tx_failed = true;
	} else if (conn_suspect(rc) && !em->pc_status) {
		em->pc_status = rc;
	}
}

/* One driver call. */
enum { OP_STMT = 1, OP_INSERT, OP_UPDATE, OP_REMOVE, OP_FIND, OP_COUNT, OP_EXECUTE, OP_SYNC, OP_UPSERT };
typedef struct op {
	int kind;
	emh__meta *m;
	const emh_stmt *st;
	const emh_value *params; /* OP_STMT; vals for OP_INSERT/UPDATE/UPSERT; key for OP_REMOVE */
	emh_rowsink *sink;
	uint64_t mask;
	emh_value *key;
	const emh_query *q;
	int64_t *count;
	const char *text;
} op;

static int op_call(emh_em *em, op *o, emh_error *err)
{
	const emh_driver *d = &em->ctx->drv->d;
	emh_conn *c = em->pc->conn;
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
			conn_failed(em, rc, err);
			return fail_ctx(em, rc, err);
		}
	}
	return 0;
}

/* A call that only reads: safe to send again if its connection was stale. */
static bool op_reads(const op *o)
{
	return o->kind == OP_FIND || o->kind == OP_COUNT ||
	       (o->kind == OP_STMT && (o->st->kind == EMH_STMT_SELECT || o->st->kind == EMH_STMT_COUNT));
}

/* Was pc stale rather than the server down?  Only the first call on a reused
 * connection, outside a transaction, can tell nothing was done on it. */
static bool stale_first_use(const emh_em *em, int rc)
{
	return rc == EMH_EUNAVAILABLE && em->pc && !em->conn_used && !em->pc->fresh && em->tx_depth == 0;
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
static int run(emh_em *em, op *o, emh_error *err)
{
	emh_error local;
	if (!err)
		err = &local;
	int rc = ensure_conn(em, err);
	if (rc)
		return rc;
	if (o->m && em->ctx->schema_sync && o->kind != OP_SYNC &&
	    !atomic_load_explicit(&o->m->synced, memory_order_acquire)) {
		/* registered after this fork took its connection */
		op s = {.kind = OP_SYNC, .m = o->m};
		if ((rc = run(em, &s, err)) != 0)
			return rc;
	}
	atomic_fetch_add_explicit(&em->ctx->queries, 1, memory_order_relaxed);
	rc = op_call(em, o, err);
	if (stale_first_use(em, rc) && op_reads(o)) {
		em->pc_status = EMH_EUNAVAILABLE;
		pc_release(em);
		if ((rc = ensure_conn(em, err)) != 0)
			return rc;
		if (o->sink)
			o->sink->affected = o->sink->last_id = 0;
		rc = op_call(em, o, err);
	}
	if (em->pc)
		em->conn_used = true;
	if (rc == EMH__STOP)
		rc = 0;
	if (rc) {
		conn_failed(em, rc, err);
		return fail_ctx(em, rc, err);
	}
	return 0;
}

static uint64_t em_caps(emh_em *em)
{
	if (!em->caps_known && em->pc) {
		const emh_driver *d = &em->ctx->drv->d;
		em->caps = d->caps & (d->conn_caps ? d->conn_caps(em->pc->conn) : ~UINT64_C(0));
		em->caps_known = true;
		atomic_store_explicit(&em->ctx->caps, em->caps, memory_order_relaxed);
	}
	return em->caps;
}

int emh_em_caps(emh_em *em, uint64_t *caps, emh_error *err)
{
	int rc = ensure_conn(em, err);
	if (rc)
		return rc;
	*caps = em_caps(em);
	return 0;
}

int emh_em_execute(emh_em *em, const char *sql, emh_error *err)
{
	if (!sql)
		return emh_error_set(err, EMH_EINVAL, "emh_em_execute: text is NULL");
	op o = {.kind = OP_EXECUTE, .text = sql};
	return run(em, &o, err);
}

/* ---- transactions ---- */

static int tx_sql(emh_em *em, int which, int level, emh_error *err)
{
	/* which: 0 begin, 1 commit, 2 rollback (level 1) or savepoint,
	 * release, rollback-to (level > 1). */
	const emh_driver *d = &em->ctx->drv->d;
	emh_conn *c = em->pc->conn;
	const emh_sql_dialect *dl = d->dialect;
	int rc;
	if (level <= 1) {
		int (*fn)(emh_conn *, emh_error *) = which == 0 ? d->begin : which == 1 ? d->commit : d->rollback;
		const char *sql = which == 0 ? (dl && dl->begin_sql ? dl->begin_sql : "BEGIN")
				: which == 1 ? (dl && dl->commit_sql ? dl->commit_sql : "COMMIT")
					     : (dl && dl->rollback_sql ? dl->rollback_sql : "ROLLBACK");
		rc = fn ? fn(c, err) : d->execute(c, sql, err);
		if (which == 0 && stale_first_use(em, rc)) {
			/* BEGIN on a connection that went stale while idle: harmless to resend. */
			em->pc_status = EMH_EUNAVAILABLE;
			pc_release(em);
			if ((rc = ensure_conn(em, err)) != 0)
				return rc;
			c = em->pc->conn;
			rc = fn ? fn(c, err) : d->execute(c, sql, err);
		}
	} else {
		char name[32];
		snprintf(name, sizeof name, "emh_sp_%d", level);
		int (*fn)(emh_conn *, const char *, emh_error *) =
			which == 0 ? d->savepoint : which == 1 ? d->release : d->rollback_to;
		if (fn) {
			rc = fn(c, name, err);
		} else {
			char sql[64];
			snprintf(sql, sizeof sql, "%s%s", which == 0 ? "SAVEPOINT " : which == 1 ? "RELEASE SAVEPOINT "
									       : "ROLLBACK TO SAVEPOINT ",
				 name);
			rc = d->execute(c, sql, err);
			if (rc == 0 && which == 2) {
				snprintf(sql, sizeof sql, "RELEASE SAVEPOINT %s", name);
				rc = d->execute(c, sql, err);
			}
		}
	}
	em->conn_used = true;
	if (rc) {
		conn_failed(em, rc, err);
		return fail_ctx(em, rc, err);
	}
	return 0;
}

static int tx_check(emh_em *em, bool nested, emh_error *err)
{
	int rc = ensure_conn(em, err);
	if (rc)
		return rc;
	uint64_t caps = em_caps(em);
	if (!(caps & EMH_CAP_TRANSACTIONS))
		return fail_ctx(em, emh_error_set(err, EMH_EUNSUPPORTED,
						  "driver '%s' has no transactions on this server",
						  em->ctx->drv->d.name), err);
	if (nested && !(caps & EMH_CAP_SAVEPOINTS))
		return fail_ctx(em, emh_error_set(err, EMH_EUNSUPPORTED,
						  "driver '%s' has no savepoints: transactions cannot nest",
						  em->ctx->drv->d.name), err);
	return 0;
}

int emh_em_begin(emh_em *em, emh_error *err)
{
	if (em->tx_failed)
		return emh_error_set(err, EMH_ESTATE, "context '%s': the transaction failed; roll it back first",
				     em->ctx->name);
	int rc = tx_check(em, em->tx_depth > 0, err);
	if (rc)
		return rc;
	if ((rc = tx_sql(em, 0, em->tx_depth + 1, err)) != 0)
		return rc;
	em->tx_depth++;
	return 0;
}

static void imap_add(emh_em *em, emh__obj *o);
static void imap_del(emh_em *em, emh__obj *o);
static void key_write(emh__obj *o, int64_t k);

/* Undo the bookkeeping of flushes made at transaction level >= depth. */
static void journal_revert(emh_em *em, int depth)
{
	/* Newest first, so several flushes of one object unwind in order. */
	while (em->journal && em->journal->depth >= depth) {
		jentry *j = em->journal;
		emh__obj *o = j->o;
		em->journal = j->next;
		switch (j->kind) {
		case OP_INSERT: {
			/* Never stored: out of the identity map (found by the key it
			 * was stored with, the snapshot's), key reset, new again --
			 * or dropped, if it was removed since. */
			bool removed = o->state == ST_REMOVED;
			if (o->state == ST_MANAGED || removed)
				imap_del(em, o);
			o->snap = j->snap;
			o->snap_nulls = j->snap_nulls;
			if (j->key_set)
				key_write(o, j->old_key);
			o->state = removed ? ST_DETACHED : ST_NEW;
			break;
		}
		case OP_REMOVE:
			/* Not deleted after all: pending removal again, and findable. */
			o->state = j->state;
			o->snap = j->snap;
			o->snap_nulls = j->snap_nulls;
			imap_add(em, o);
			break;
		default: /* OP_UPDATE: the stored values are the older ones again */
			o->snap = j->snap;
			o->snap_nulls = j->snap_nulls;
			break;
		}
	}
}

static int tx_end(emh_em *em, bool commit, emh_error *err)
{
	if (em->tx_depth == 0)
		return emh_error_set(err, EMH_ESTATE, "context '%s': no transaction is open", em->ctx->name);
	if (commit && em->tx_failed)
		return emh_error_set(err, EMH_ESTATE, "context '%s': the transaction failed; roll it back",
				     em->ctx->name);
	int level = em->tx_depth, rc = 0;
	if (em->pc)
		rc = tx_sql(em, commit ? 1 : 2, level, err);
	else if (!em->tx_failed)
		rc = emh_error_set(err, EMH_ESTATE, "context '%s': transaction has no connection", em->ctx->name);
	if (commit && rc)
		return rc; /* still open: the caller may roll back */
	em->tx_depth--;
	if (commit) {
		for (jentry *j = em->journal; j && j->depth == level; j = j->next)
			j->depth = level - 1;
		if (em->tx_depth == 0)
			em->journal = NULL; /* committed: nothing to restore any more */
	} else {
		journal_revert(em, level);
	}
	if (em->tx_depth == 0)
		em->tx_failed = false;
	return commit ? 0 : rc;
}

int emh_em_commit(emh_em *em, emh_error *err) { return tx_end(em, true, err); }
int emh_em_rollback(emh_em *em, emh_error *err) { return tx_end(em, false, err); }

int emh_em_transaction(emh_em *em, emh_tx_fn fn, void *ud, emh_error *err)
{
	int rc = emh_em_begin(em, err);
	if (rc)
		return rc;
	int level = em->tx_depth;
	rc = fn(em, ud, err);
	if (rc == 0 && em->tx_depth != level)
		rc = emh_error_set(err, EMH_ESTATE, "context '%s': the transaction callback left %d level(s) open",
				   em->ctx->name, em->tx_depth - level);
	if (rc == 0 && (rc = emh_em_commit(em, err)) == 0)
		return 0;
	/* fn failed, or the commit did (the level is then still open): roll
	 * back every level this call opened or fn left open. */
	emh_error ignored;
	while (em->tx_depth >= level)
		if (tx_end(em, false, &ignored) != 0 && em->tx_depth >= level)
			em->tx_depth--, em->tx_failed = em->tx_depth > 0;
	return rc;
}

/* ---- objects ---- */

static bool is_ptr_type(emh_type t) { return t == EMH_T_TEXT || t == EMH_T_JSON || t == EMH_T_BLOB; }

static emh_value field_value(const emh__obj *o, const void *obj, const emh_field *f, int i)
{
	const char *p = (const char *)obj + f->offset;
	emh_value v = {.type = f->type};
	if (!is_ptr_type(f->type) && (o->nulls >> i) & 1) {
		v.is_null = true;
		return v;
	}
	switch (f->type) {
	case EMH_T_BOOL: memcpy(&v.u.b, p, sizeof(bool)); break;
	case EMH_T_INT32: memcpy(&v.u.i32, p, sizeof(int32_t)); break;
	case EMH_T_INT64:
	case EMH_T_TIMESTAMP: memcpy(&v.u.i64, p, sizeof(int64_t)); break;
	case EMH_T_DOUBLE: memcpy(&v.u.d, p, sizeof(double)); break;
	case EMH_T_TEXT:
	case EMH_T_JSON: {
		const char *s;
		memcpy(&s, p, sizeof s);
		v.is_null = s == NULL;
		v.u.s.ptr = s;
		v.u.s.len = s ? strlen(s) : 0;
		break;
	}
	case EMH_T_BLOB: {
		emh_blob b;
		memcpy(&b, p, sizeof b);
		v.is_null = b.data == NULL;
		v.u.s.ptr = b.data;
		v.u.s.len = b.len;
		break;
	}
	}
	return v;
}

static int64_t value_i64(const emh_value *v)
{
	switch (v->type) {
	case EMH_T_INT32: return v->u.i32;
	case EMH_T_BOOL: return v->u.b;
	case EMH_T_DOUBLE: return (int64_t)v->u.d;
	default: return v->u.i64;
	}
}

static void key_write(emh__obj *o, int64_t k)
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

static int64_t key_read(const emh__obj *o)
{
	emh_value v = field_value(o, OBJ(o), &o->m->pub.entity->fields[o->m->pub.pk], o->m->pub.pk);
	return value_i64(&v);
}

/* Write a loaded value into a struct member (strings copied into the arena). */
static int store(emh_em *em, emh__obj *o, void *obj, const emh_field *f, int i, const emh_value *v)
{
	char *p = (char *)obj + f->offset;
	if (v->is_null) {
		if (!is_ptr_type(f->type))
			o->nulls |= UINT64_C(1) << i;
		return 0;
	}
	switch (f->type) {
	case EMH_T_BOOL: {
		bool b = v->type == EMH_T_BOOL ? v->u.b : value_i64(v) != 0;
		memcpy(p, &b, sizeof b);
		break;
	}
	case EMH_T_INT32: {
		int32_t x = (int32_t)value_i64(v);
		memcpy(p, &x, sizeof x);
		break;
	}
	case EMH_T_INT64:
	case EMH_T_TIMESTAMP: {
		int64_t x = value_i64(v);
		memcpy(p, &x, sizeof x);
		break;
	}
	case EMH_T_DOUBLE: {
		double d = v->type == EMH_T_DOUBLE ? v->u.d : (double)value_i64(v);
		memcpy(p, &d, sizeof d);
		break;
	}
	case EMH_T_TEXT:
	case EMH_T_JSON: {
		char *s = emh__arena_strndup(&em->arena, v->u.s.ptr ? v->u.s.ptr : "", v->u.s.len);
		if (!s)
			return EMH_ENOMEM;
		memcpy(p, &s, sizeof s);
		break;
	}
	case EMH_T_BLOB: {
		emh_blob b = {emh__arena_memdup(&em->arena, v->u.s.ptr, v->u.s.len), v->u.s.len};
		if (!b.data)
			return EMH_ENOMEM;
		memcpy(p, &b, sizeof b);
		break;
	}
	}
	return 0;
}

static emh__obj *obj_alloc(emh_em *em, emh__meta *m)
{
	emh__obj *o = emh__arena_zalloc(&em->arena, sizeof(emh__obj) + m->pub.entity->size);
	if (o) {
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

static uint64_t key_hash_value(const emh__meta *m, const emh_value *k)
{
	uint64_t h;
	if (k->type == EMH_T_TEXT) {
		h = 1469598103934665603ULL;
		for (size_t i = 0; i < k->u.s.len; i++)
			h = (h ^ (unsigned char)k->u.s.ptr[i]) * 1099511628211ULL;
	} else {
		h = (uint64_t)value_i64(k) * 0x9E3779B97F4A7C15ULL;
	}
	return h ^ ((uint64_t)m->pub.id * 0xC2B2AE3D27D4EB4FULL);
}

static emh_value obj_key(const emh__obj *o);

static bool key_equal(const emh__obj *o, const emh_value *k)
{
	emh_value ov = obj_key(o);
	if (ov.type == EMH_T_TEXT)
		return k->type == EMH_T_TEXT && ov.u.s.len == k->u.s.len &&
		       memcmp(ov.u.s.ptr, k->u.s.ptr, k->u.s.len) == 0;
	return k->type != EMH_T_TEXT && value_i64(&ov) == value_i64(k);
}

/* The key an object is known by: as stored (its snapshot), else as set. */
static emh_value obj_key(const emh__obj *o)
{
	return field_value(o, o->snap ? o->snap : OBJ(o), &o->m->pub.entity->fields[o->m->pub.pk], o->m->pub.pk);
}

static emh__obj *imap_find(emh_em *em, emh__meta *m, const emh_value *k)
{
	if (!em->in)
		return NULL;
	for (emh__obj *o = em->imap[key_hash_value(m, k) & (em->icap - 1)]; o; o = o->inext)
		if (o->m == m && key_equal(o, k))
			return o;
	return NULL;
}

static void imap_grow(emh_em *em)
{
	size_t ncap = em->icap ? em->icap * 4 : 8;
	emh__obj **nb = emh__arena_zalloc(&em->arena, ncap * sizeof *nb);
	if (!nb)
		return; /* keep the old table: chains just get longer */
	for (size_t i = 0; i < em->icap; i++) {
		emh__obj *o = em->imap[i];
		while (o) {
			emh__obj *n = o->inext;
			emh_value k = obj_key(o);
			size_t b = key_hash_value(o->m, &k) & (ncap - 1);
			o->inext = nb[b];
			nb[b] = o;
			o = n;
		}
	}
	em->imap = nb;
	em->icap = ncap;
}

static void imap_add(emh_em *em, emh__obj *o)
{
	if (em->in + 1 > em->icap)
		imap_grow(em);
	if (!em->icap)
		return;
	emh_value k = obj_key(o);
	size_t b = key_hash_value(o->m, &k) & (em->icap - 1);
	o->inext = em->imap[b];
	em->imap[b] = o;
	em->in++;
}

static void imap_del(emh_em *em, emh__obj *o)
{
	if (!em->icap)
		return;
	emh_value k = obj_key(o);
	for (emh__obj **pp = &em->imap[key_hash_value(o->m, &k) & (em->icap - 1)]; *pp; pp = &(*pp)->inext)
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

typedef struct load_sink {
	emh_rowsink base;
	emh_em *em;
	emh__meta *m;
	void **items; /* first points at one, the in-struct slot */
	void *one;
	size_t n, cap;
	size_t max; /* stop after this many (get, find_one) */
} load_sink;


/* The object for a row: the one already in the identity map, or a new one. */
static int materialize(emh_em *em, emh__meta *m, const emh_value *cols, void **out, emh_error *err)
{
	const emh_entity *e = m->pub.entity;
	*out = NULL;
	if (!em->readonly) {
		emh__obj *have = imap_find(em, m, &cols[m->pub.pk]);
		if (have) {
			if (have->state == ST_MANAGED || have->state == ST_NEW)
				*out = OBJ(have);
			return 0; /* removed in this fork: not returned */
		}
	}
	emh__obj *o = obj_alloc(em, m);
	if (!o)
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	void *obj = OBJ(o);
	for (size_t i = 0; i < e->nfields; i++)
		if (store(em, o, obj, &e->fields[i], (int)i, &cols[i]))
			return emh_error_set(err, EMH_ENOMEM, "out of memory");
	if (em->readonly) {
		o->state = ST_DETACHED;
	} else {
		/* The snapshot shares the loaded strings: they are never written. */
		if (!(o->snap = emh__arena_memdup(&em->arena, obj, e->size)))
			return emh_error_set(err, EMH_ENOMEM, "out of memory");
		o->snap_nulls = o->nulls;
		o->state = ST_MANAGED;
		track(em, o);
		imap_add(em, o);
	}
	*out = obj;
	return 0;
}

static int load_row(emh_rowsink *s, const emh_value *cols, emh_error *err)
{
	load_sink *ls = (load_sink *)s;
	void *obj;
	int rc = materialize(ls->em, ls->m, cols, &obj, err);
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
	for (emh_repo *r = em->repos; r; r = r->next)
		if (r->m->pub.entity == e) {
			*out = r;
			return 0;
		}
	emh__meta *m = e ? emh__context_meta(em->ctx, e) : NULL;
	if (!m) {
		char list[512];
		size_t off = 0;
		list[0] = '\0';
		for (emh__meta *x = atomic_load(&em->ctx->metas); x && off < sizeof list; x = x->next)
			off += (size_t)snprintf(list + off, sizeof list - off, "%s%s", off ? ", " : "",
						x->pub.entity->name);
		emh_error_set(err, EMH_ENOENTITY, "entity '%s' is not registered in context '%s' (registered: %s)",
			      e && e->name ? e->name : "(null)", em->ctx->name, off ? list : "none");
		return fail_ctx(em, EMH_ENOENTITY, err);
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

static bool is_sql(const emh_em *em) { return em->ctx->drv->d.dialect != NULL; }

static int check_query(emh_repo *r, const emh_query *q, emh_error *err)
{
	if (!q)
		return 0;
	if (q->arena != &r->em->arena)
		return fail_ctx(r->em, emh_error_set(err, EMH_EINVAL, "query of another fork given to this fork's repository"),
				err);
	if (q->e != r->m->pub.entity)
		return fail_ctx(r->em, emh_error_set(err, EMH_EINVAL, "query on entity '%s' given to the repository of '%s'",
						     q->e->name, r->m->pub.entity->name), err);
	int rc = emh__query_error(q, err);
	return rc ? fail_ctx(r->em, rc, err) : 0;
}

static int find_into(emh_repo *r, const emh_query *q, load_sink *ls, emh_error *err)
{
	emh_error local;
	if (!err)
		err = &local;
	emh_em *em = r->em;
	emh__meta *m = repo_meta(r);
	int rc = check_query(r, q, err);
	if (rc)
		return rc;
	ls->base.row = load_row;
	ls->em = em;
	ls->m = m;
	em->loaded = true;
	if (!is_sql(em)) {
		op o = {.kind = OP_FIND, .m = m, .q = q, .sink = &ls->base};
		return run(em, &o, err);
	}
	const emh_stmt *st = emh__sql_query_stmt(m, em->ctx->drv->d.dialect, q, false, err);
	if (!st)
		return fail_ctx(em, err ? err->code : EMH_ENOMEM, err);
	size_t np = emh__query_nparams(q, false);
	emh_value stackp[32], *params = np <= 32 ? stackp : malloc(np * sizeof *params);
	if (!params)
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	emh__query_params(q, false, params);
	op o = {.kind = OP_STMT, .m = m, .st = st, .params = params, .sink = &ls->base};
	rc = run(em, &o, err);
	if (params != stackp)
		free(params);
	return rc;
}

int emh_repo_find(emh_repo *r, const emh_query *q, emh_list *out, emh_error *err)
{
	load_sink ls = {0};
	out->items = NULL;
	out->count = 0;
	int rc = find_into(r, q, &ls, err);
	if (rc)
		return rc;
	if (ls.items == &ls.one) {
		if (!(out->items = emh__arena_alloc(&r->em->arena, sizeof *out->items)))
			return emh_error_set(err, EMH_ENOMEM, "out of memory");
		out->items[0] = ls.one;
	} else {
		out->items = ls.items;
	}
	out->count = ls.n;
	return 0;
}

int emh_repo_find_one(emh_repo *r, const emh_query *q, void **out, emh_error *err)
{
	load_sink ls = {.max = 1};
	*out = NULL;
	int rc = find_into(r, q, &ls, err);
	if (rc)
		return rc;
	if (!ls.n)
		return fail_ctx(r->em, emh_error_set(err, EMH_ENOTFOUND, "no '%s' matches the query",
						     r->m->pub.entity->name), err);
	*out = ls.items[0];
	return 0;
}

typedef struct count_sink {
	emh_rowsink base;
	int64_t n;
} count_sink;

static int count_row(emh_rowsink *s, const emh_value *cols, emh_error *err)
{
	((count_sink *)s)->n = value_i64(&cols[0]);
	return 0;
}

int emh_repo_count(emh_repo *r, const emh_query *q, int64_t *n, emh_error *err)
{
	emh_error local;
	if (!err)
		err = &local;
	emh_em *em = r->em;
	emh__meta *m = r->m;
	int rc = check_query(r, q, err);
	if (rc)
		return rc;
	*n = 0;
	if (!is_sql(em)) {
		op o = {.kind = OP_COUNT, .m = m, .q = q, .count = n};
		return run(em, &o, err);
	}
	const emh_stmt *st = emh__sql_query_stmt(m, em->ctx->drv->d.dialect, q, true, err);
	if (!st)
		return fail_ctx(em, err ? err->code : EMH_ENOMEM, err);
	size_t np = emh__query_nparams(q, true);
	emh_value stackp[32], *params = np <= 32 ? stackp : malloc(np * sizeof *params);
	if (!params)
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	emh__query_params(q, true, params);
	count_sink cs = {.base.row = count_row};
	op o = {.kind = OP_STMT, .m = m, .st = st, .params = params, .sink = &cs.base};
	rc = run(em, &o, err);
	if (params != stackp)
		free(params);
	*n = cs.n;
	return rc;
}

int emh_repo_exists(emh_repo *r, const emh_query *q, bool *out, emh_error *err)
{
	int64_t n = 0;
	int rc = emh_repo_count(r, q, &n, err);
	*out = n > 0;
	return rc;
}

int emh_repo_get(emh_repo *r, emh_value key, void **out, emh_error *err)
{
	emh_em *em = r->em;
	emh__meta *m = r->m;
	const emh_field *kf = &m->pub.entity->fields[m->pub.pk];
	*out = NULL;
	bool kint = key.type == EMH_T_INT32 || key.type == EMH_T_INT64;
	if (key.is_null || (kf->type == EMH_T_TEXT ? key.type != EMH_T_TEXT : !kint))
		return fail_ctx(em, emh_error_set(err, EMH_EINVAL, "entity '%s': key must be a non-NULL %s",
						  m->pub.entity->name, emh_type_name(kf->type)), err);
	if (kint) {
		int64_t k = value_i64(&key);
		key.type = kf->type;
		if (kf->type == EMH_T_INT32)
			key.u.i32 = (int32_t)k;
		else
			key.u.i64 = k;
	}
	if (!em->readonly) {
		emh__obj *have = imap_find(em, m, &key);
		if (have && (have->state == ST_MANAGED || have->state == ST_NEW)) {
			*out = OBJ(have);
			return 0;
		}
		if (have)
			goto out_notfound;
	}
	load_sink ls = {.max = 1, .base.row = load_row, .em = em, .m = m};
	em->loaded = true;
	int rc;
	if (is_sql(em)) {
		op o = {.kind = OP_STMT, .m = m, .st = m->st_get, .params = &key, .sink = &ls.base};
		rc = run(em, &o, err);
	} else {
		emh_query *q = emh__query_new(&em->arena, m->pub.entity);
		if (!q)
			return emh_error_set(err, EMH_ENOMEM, "out of memory");
		emh_q_where(q, emh_q_eq(q, kf->name, key));
		if ((rc = emh__query_error(q, err)) != 0)
			return fail_ctx(em, rc, err);
		op o = {.kind = OP_FIND, .m = m, .q = q, .sink = &ls.base};
		rc = run(em, &o, err);
	}
	if (rc)
		return rc;
	if (ls.n) {
		*out = ls.items[0];
		return 0;
	}
out_notfound:
	if (key.type == EMH_T_TEXT)
		emh_error_set(err, EMH_ENOTFOUND, "no '%s' with %s '%.*s'", m->pub.entity->name, kf->name,
			      (int)(key.u.s.len > 64 ? 64 : key.u.s.len), key.u.s.ptr);
	else
		emh_error_set(err, EMH_ENOTFOUND, "no '%s' with %s %lld", m->pub.entity->name, kf->name,
			      (long long)value_i64(&key));
	return fail_ctx(em, EMH_ENOTFOUND, err);
}

/* ---- unit of work ---- */

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
		return fail_ctx(em, emh_error_set(err, EMH_ESTATE, "the fork is read-only: cannot create '%s'",
						  r->m->pub.entity->name), err);
	emh__obj *o = obj_alloc(em, r->m);
	if (!o)
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	o->state = ST_NEW;
	track(em, o);
	*out = OBJ(o);
	return 0;
}

/* obj's header, if obj belongs to this fork. */
static int own_obj(emh_em *em, void *obj, emh__obj **out, emh_error *err)
{
	if (!obj)
		return emh_error_set(err, EMH_EINVAL, "object is NULL");
	emh__obj *o = HDR(obj);
	if (o->magic != OBJ_MAGIC)
		return emh_error_set(err, EMH_EINVAL, "not an object from emh_em_new or a load");
	if (o->ctx != em->ctx)
		return fail_ctx(em, emh_error_set(err, EMH_ECROSSCTX,
						  "object of entity '%s' belongs to context '%s'; this fork is on context '%s'",
						  o->m->pub.entity->name, o->ctx->name, em->ctx->name), err);
	if (o->em != em)
		return fail_ctx(em, emh_error_set(err, EMH_EINVAL, "object of entity '%s' belongs to another fork",
						  o->m->pub.entity->name), err);
	*out = o;
	return 0;
}

int emh_em_remove(emh_em *em, void *obj, emh_error *err)
{
	emh__obj *o;
	int rc = own_obj(em, obj, &o, err);
	if (rc)
		return rc;
	if (em->readonly || o->state == ST_DETACHED)
		return fail_ctx(em, emh_error_set(err, EMH_ESTATE, "object of entity '%s' is not managed (%s)",
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
	int rc = own_obj(em, obj, &o, err);
	if (rc)
		return rc;
	int i = field_index_checked(em, o, field, err);
	if (i < 0)
		return i;
	if (is_null)
		o->nulls |= UINT64_C(1) << i;
	else
		o->nulls &= ~(UINT64_C(1) << i);
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
	if (is_ptr_type(f->type)) {
		emh_value v = field_value(o, obj, f, i);
		return v.is_null;
	}
	return (o->nulls >> i) & 1;
}

/*
 * Changed fields of a managed object, by comparison with its snapshot.  A
 * text/json/blob member pointed at other memory with the same content is
 * pointed back at the stored copy: unchanged, and the caller's buffer is
 * no longer referenced.
 */
static uint64_t changed_mask(emh__obj *o)
{
	const emh_entity *e = o->m->pub.entity;
	char *cur = OBJ(o);
	const char *old = o->snap;
	uint64_t mask = 0;
	for (size_t i = 0; i < e->nfields; i++) {
		const emh_field *f = &e->fields[i];
		uint64_t bit = UINT64_C(1) << i;
		if (!is_ptr_type(f->type)) {
			if ((o->nulls ^ o->snap_nulls) & bit)
				mask |= bit;
			else if (!(o->nulls & bit) && memcmp(cur + f->offset, old + f->offset, f->size) != 0)
				mask |= bit;
			continue;
		}
		emh_value a = field_value(o, cur, f, (int)i), b = field_value(o, old, f, (int)i);
		if (a.is_null != b.is_null || (!a.is_null && a.u.s.len != b.u.s.len)) {
			mask |= bit;
		} else if (!a.is_null && a.u.s.ptr != b.u.s.ptr) {
			if (memcmp(a.u.s.ptr, b.u.s.ptr, a.u.s.len) != 0)
				mask |= bit;
			else
				memcpy(cur + f->offset, old + f->offset, f->size);
		}
	}
	return mask;
}

typedef struct pend {
	emh__obj *o;
	int kind; /* OP_INSERT, OP_UPDATE, OP_REMOVE */
	uint64_t mask;
	bool key_set;
	int64_t old_key;
} pend;

static void describe_key(const emh__obj *o, char *buf, size_t cap)
{
	emh_value k = obj_key(o);
	if (o->state == ST_NEW && o->m->pub.generated)
		snprintf(buf, cap, "new");
	else if (k.type == EMH_T_TEXT)
		snprintf(buf, cap, "%s '%.*s'", o->m->pub.entity->fields[o->m->pub.pk].name,
			 (int)(k.u.s.len > 64 ? 64 : k.u.s.len), k.is_null ? "" : k.u.s.ptr);
	else
		snprintf(buf, cap, "%s %lld", o->m->pub.entity->fields[o->m->pub.pk].name, (long long)value_i64(&k));
}

/* NULL in a non-nullable field is caught before anything is sent. */
static int check_not_null(emh_em *em, const emh__obj *o, uint64_t mask, emh_error *err)
{
	const emh_entity *e = o->m->pub.entity;
	for (size_t i = 0; i < e->nfields; i++) {
		const emh_field *f = &e->fields[i];
		if (!(mask & (UINT64_C(1) << i)) || (f->flags & EMH_F_NULLABLE))
			continue;
		if ((int)i == o->m->pub.pk && o->m->pub.generated && o->state == ST_NEW)
			continue;
		emh_value v = field_value(o, OBJ(o), f, (int)i);
		if (v.is_null) {
			char key[96];
			describe_key(o, key, sizeof key);
			return fail_ctx(em, emh_error_set(err, EMH_EINVAL,
							  "entity '%s' (%s): field '%s' is NULL but not nullable",
							  e->name, key, f->name), err);
		}
	}
	return 0;
}

typedef struct key_sink {
	emh_rowsink base;
	emh_value key;
	bool got;
} key_sink;

static int key_row(emh_rowsink *s, const emh_value *cols, emh_error *err)
{
	key_sink *ks = (key_sink *)s;
	ks->key = cols[0];
	ks->got = true;
	return 0;
}

static int send_one(emh_em *em, pend *p, emh_error *err)
{
	emh__obj *o = p->o;
	emh__meta *m = o->m;
	const emh_entity *e = m->pub.entity;
	emh_value vals[EMH_ENTITY_MAX_FIELDS + 1];
	size_t n = 0;
	int rc;
	if (p->kind == OP_INSERT) {
		if (is_sql(em)) {
			for (size_t i = 0; i < e->nfields; i++)
				if (!((int)i == m->pub.pk && m->pub.generated))
					vals[n++] = field_value(o, OBJ(o), &e->fields[i], (int)i);
			key_sink ks = {.base.row = key_row};
			op x = {.kind = OP_STMT, .m = m, .st = m->st_insert, .params = vals, .sink = &ks.base};
			if ((rc = run(em, &x, err)) != 0)
				return rc;
			if (m->pub.generated) {
				p->old_key = key_read(o);
				p->key_set = true;
				key_write(o, ks.got ? value_i64(&ks.key) : ks.base.last_id);
			}
			return 0;
		}
		for (size_t i = 0; i < e->nfields; i++)
			vals[i] = field_value(o, OBJ(o), &e->fields[i], (int)i);
		emh_value key = {0};
		if (m->pub.generated)
			vals[m->pub.pk] = emh_v_null(e->fields[m->pub.pk].type);
		op x = {.kind = OP_INSERT, .m = m, .params = vals, .key = &key};
		if ((rc = run(em, &x, err)) != 0)
			return rc;
		if (m->pub.generated) {
			p->old_key = key_read(o);
			p->key_set = true;
			key_write(o, value_i64(&key));
		}
		return 0;
	}
	/* The WHERE key is the one the row was loaded with. */
	emh__obj snapo = *o;
	emh_value key = field_value(&snapo, o->snap, &e->fields[m->pub.pk], m->pub.pk);
	if (p->kind == OP_UPDATE) {
		if (is_sql(em)) {
			const emh_stmt *st = emh__sql_update_stmt(m, em->ctx->drv->d.dialect, p->mask, err);
			if (!st)
				return fail_ctx(em, err ? err->code : EMH_ENOMEM, err);
			for (size_t i = 0; i < e->nfields; i++)
				if (p->mask & (UINT64_C(1) << i))
					vals[n++] = field_value(o, OBJ(o), &e->fields[i], (int)i);
			vals[n++] = key;
			emh_rowsink rs = {0};
			op x = {.kind = OP_STMT, .m = m, .st = st, .params = vals, .sink = &rs};
			if ((rc = run(em, &x, err)) != 0)
				return rc;
			if (rs.affected == 0)
				return fail_ctx(em, emh_error_set(err, EMH_ENOTFOUND, "the row no longer exists"), err);
			return 0;
		}
		for (size_t i = 0; i < e->nfields; i++)
			vals[i] = field_value(o, OBJ(o), &e->fields[i], (int)i);
		op x = {.kind = OP_UPDATE, .m = m, .params = vals, .mask = p->mask};
		return run(em, &x, err);
	}
	if (is_sql(em)) {
		emh_rowsink rs = {0};
		op x = {.kind = OP_STMT, .m = m, .st = m->st_delete, .params = &key, .sink = &rs};
		return run(em, &x, err);
	}
	op x = {.kind = OP_REMOVE, .m = m, .params = &key};
	return run(em, &x, err);
}

/* The object is persisted as it is now: new snapshot, strings owned by the arena. */
static int settle(emh_em *em, pend *p, int depth)
{
	emh__obj *o = p->o;
	const emh_entity *e = o->m->pub.entity;
	if (depth > 0) {
		jentry *j = emh__arena_alloc(&em->arena, sizeof *j);
		if (!j)
			return EMH_ENOMEM;
		*j = (jentry){.next = em->journal, .o = o, .depth = depth, .kind = p->kind, .state = o->state, .snap = o->snap,
			      .snap_nulls = o->snap_nulls, .key_set = p->key_set, .old_key = p->old_key};
		em->journal = j;
	}
	if (p->kind == OP_REMOVE) {
		imap_del(em, o);
		o->state = ST_DELETED;
		return 0;
	}
	char *obj = OBJ(o);
	for (size_t i = 0; i < e->nfields; i++) {
		const emh_field *f = &e->fields[i];
		if (!is_ptr_type(f->type) || (p->kind == OP_UPDATE && !(p->mask & (UINT64_C(1) << i))))
			continue;
		emh_value v = field_value(o, obj, f, (int)i);
		if (v.is_null)
			continue;
		if (f->type == EMH_T_BLOB) {
			emh_blob b = {emh__arena_memdup(&em->arena, v.u.s.ptr, v.u.s.len), v.u.s.len};
			if (!b.data)
				return EMH_ENOMEM;
			memcpy(obj + f->offset, &b, sizeof b);
		} else {
			char *s = emh__arena_strndup(&em->arena, v.u.s.ptr, v.u.s.len);
			if (!s)
				return EMH_ENOMEM;
			memcpy(obj + f->offset, &s, sizeof s);
		}
	}
	void *snap = emh__arena_memdup(&em->arena, obj, e->size);
	if (!snap)
		return EMH_ENOMEM;
	o->snap = snap;
	o->snap_nulls = o->nulls;
	if (p->kind == OP_INSERT) {
		o->state = ST_MANAGED;
		imap_add(em, o);
	}
	return 0;
}

static int flush(emh_em *em, emh__obj *only, emh_error *err)
{
	emh_error local;
	if (!err)
		err = &local;
	if (em->readonly)
		return fail_ctx(em, emh_error_set(err, EMH_ESTATE, "the fork is read-only: nothing to flush"), err);
	if (em->tx_failed)
		return emh_error_set(err, EMH_ESTATE, "context '%s': the transaction failed; roll it back first",
				     em->ctx->name);
	size_t n = 0, cap = 0;
	pend *v = NULL;
	int rc = 0;
	/* inserts, then updates, then deletes, each in creation order */
	for (int pass = 0; pass < 3 && rc == 0; pass++) {
		for (emh__obj *o = only ? only : em->head; o; o = only ? NULL : o->next) {
			pend p = {.o = o};
			if (pass == 0 && o->state == ST_NEW) {
				p.kind = OP_INSERT;
				p.mask = ~UINT64_C(0);
			} else if (pass == 1 && o->state == ST_MANAGED) {
				if (!(p.mask = changed_mask(o)))
					continue;
				if (p.mask & (UINT64_C(1) << o->m->pub.pk)) {
					char key[96];
					describe_key(o, key, sizeof key);
					rc = fail_ctx(em, emh_error_set(err, EMH_EINVAL,
									"entity '%s' (%s): the primary key of a stored object cannot change",
									o->m->pub.entity->name, key), err);
					break;
				}
				p.kind = OP_UPDATE;
			} else if (pass == 2 && o->state == ST_REMOVED) {
				p.kind = OP_REMOVE;
			} else {
				continue;
			}
			if (p.kind != OP_REMOVE && (rc = check_not_null(em, o, p.mask, err)) != 0)
				break;
			if (n == cap) {
				cap = cap ? cap * 2 : 16;
				pend *nv = realloc(v, cap * sizeof *nv);
				if (!nv) {
					rc = emh_error_set(err, EMH_ENOMEM, "out of memory");
					break;
				}
				v = nv;
			}
			v[n++] = p;
		}
	}
	if (rc || n == 0) {
		free(v);
		return rc;
	}
	if ((rc = ensure_conn(em, err)) != 0) {
		free(v);
		return rc;
	}
	uint64_t caps = em_caps(em);
	bool atomic = (caps & EMH_CAP_TRANSACTIONS) && (caps & EMH_CAP_ATOMIC_FLUSH);
	bool savepoint = atomic && em->tx_depth > 0 && (caps & EMH_CAP_SAVEPOINTS);
	/* One statement outside a transaction is atomic by itself: no BEGIN/COMMIT
	 * round trips.  Inside one, a savepoint keeps a failed statement from
	 * spoiling the caller's transaction. */
	bool wrap = atomic && (em->tx_depth == 0 ? n > 1 : savepoint);
	int level = em->tx_depth + 1;
	if (wrap && (rc = tx_sql(em, 0, level, err)) != 0) {
		free(v);
		return rc;
	}
	size_t done = 0;
	for (; done < n && rc == 0; done++)
		if ((rc = send_one(em, &v[done], err)) != 0)
			break;
	if (rc == 0 && wrap)
		rc = tx_sql(em, 1, level, err);
	if (rc) {
		char key[96];
		emh__obj *bad = done < n ? v[done].o : v[n - 1].o;
		describe_key(bad, key, sizeof key);
		if (err) {
			/* "context 'c': flush of 'user' (id 5) failed: <driver message>" */
			char prefix[EMH_ERROR_CTX_MAX + 16], msg[EMH_ERROR_MSG_MAX];
			const char *inner = err->message;
			snprintf(prefix, sizeof prefix, "context '%s': ", em->ctx->name);
			if (strncmp(inner, prefix, strlen(prefix)) == 0)
				inner += strlen(prefix);
			snprintf(msg, sizeof msg, "%sflush of '%s' (%s) failed: %s", prefix, bad->m->pub.entity->name,
				 key, inner);
			memcpy(err->message, msg, sizeof msg);
		}
		if (atomic) {
			emh_error ignored;
			if (em->pc && wrap)
				tx_sql(em, 2, level, &ignored);
			else if (em->tx_depth > 0)
				em->tx_failed = true; /* no savepoint: the whole transaction is spoiled */
			for (size_t i = 0; i < n; i++)
				if (v[i].key_set)
					key_write(v[i].o, v[i].old_key);
			free(v);
			return rc;
		}
		/* Not atomic: what was sent before the failure is stored. */
		n = done;
	}
	for (size_t i = 0; i < n; i++)
		if (settle(em, &v[i], em->tx_depth) != 0 && rc == 0)
			rc = emh_error_set(err, EMH_ENOMEM, "out of memory");
	free(v);
	return rc;
}

int emh_em_flush(emh_em *em, emh_error *err) { return flush(em, NULL, err); }

static int repo_obj(emh_repo *r, void *obj, emh__obj **out, emh_error *err)
{
	int rc = own_obj(r->em, obj, out, err);
	if (rc == 0 && (*out)->m != r->m)
		return fail_ctx(r->em, emh_error_set(err, EMH_EINVAL, "object of entity '%s' given to the repository of '%s'",
						     (*out)->m->pub.entity->name, r->m->pub.entity->name), err);
	return rc;
}

int emh_repo_insert(emh_repo *r, void *obj, emh_error *err)
{
	emh__obj *o;
	int rc = repo_obj(r, obj, &o, err);
	if (rc)
		return rc;
	if (o->state != ST_NEW)
		return fail_ctx(r->em, emh_error_set(err, EMH_ESTATE, "emh_repo_insert: object of entity '%s' is not new",
						     r->m->pub.entity->name), err);
	return flush(r->em, o, err);
}

int emh_repo_update(emh_repo *r, void *obj, emh_error *err)
{
	emh__obj *o;
	int rc = repo_obj(r, obj, &o, err);
	if (rc)
		return rc;
	if (o->state != ST_MANAGED)
		return fail_ctx(r->em, emh_error_set(err, EMH_ESTATE, "emh_repo_update: object of entity '%s' is not stored",
						     r->m->pub.entity->name), err);
	return flush(r->em, o, err);
}

int emh_repo_upsert(emh_repo *r, void *obj, emh_error *err)
{
	emh_error local;
	if (!err)
		err = &local;
	emh_em *em = r->em;
	emh__meta *m = r->m;
	const emh_entity *e = m->pub.entity;
	emh__obj *o;
	int rc = repo_obj(r, obj, &o, err);
	if (rc)
		return rc;
	if (o->state != ST_NEW)
		return fail_ctx(em, emh_error_set(err, EMH_ESTATE, "emh_repo_upsert: object of entity '%s' is not new",
						  e->name), err);
	if (m->pub.generated)
		return fail_ctx(em, emh_error_set(err, EMH_EINVAL,
						  "entity '%s' has a generated key: upsert needs a key set by the caller",
						  e->name), err);
	if ((rc = check_not_null(em, o, ~UINT64_C(0), err)) != 0)
		return rc;
	emh_value key = obj_key(o);
	if (imap_find(em, m, &key)) {
		char k[96];
		describe_key(o, k, sizeof k);
		return fail_ctx(em, emh_error_set(err, EMH_ESTATE,
						  "this fork already manages the '%s' with %s: change that object and flush",
						  e->name, k), err);
	}
	if ((rc = ensure_conn(em, err)) != 0)
		return rc;
	uint64_t caps = em_caps(em);
	if (!(caps & EMH_CAP_UPSERT) || (!is_sql(em) && !em->ctx->drv->d.upsert))
		return fail_ctx(em, emh_error_set(err, EMH_EUNSUPPORTED, "driver '%s' cannot upsert",
						  em->ctx->drv->d.name), err);
	if (is_sql(em) && !m->st_upsert)
		return fail_ctx(em, emh_error_set(err, EMH_EUNSUPPORTED,
						  "driver '%s' cannot upsert entity '%s': its ON DUPLICATE KEY would also "
						  "fire on the entity's other unique columns and overwrite another row",
						  em->ctx->drv->d.name, e->name), err);
	emh_value vals[EMH_ENTITY_MAX_FIELDS];
	for (size_t i = 0; i < e->nfields; i++)
		vals[i] = field_value(o, OBJ(o), &e->fields[i], (int)i);
	/* Inside a transaction, a savepoint keeps a failure from spoiling it. */
	bool sp = em->tx_depth > 0 && (caps & EMH_CAP_SAVEPOINTS);
	int level = em->tx_depth + 1;
	if (sp && (rc = tx_sql(em, 0, level, err)) != 0)
		return rc;
	emh_rowsink rs = {0};
	op x = {.kind = OP_STMT, .m = m, .st = m->st_upsert, .params = vals, .sink = &rs};
	if (!is_sql(em)) /* a document driver's own upsert member */
		x = (op){.kind = OP_UPSERT, .m = m, .params = vals};
	rc = run(em, &x, err);
	if (sp) {
		emh_error ignored;
		if (rc == 0)
			rc = tx_sql(em, 1, level, err);
		else if (em->pc)
			tx_sql(em, 2, level, &ignored);
	}
	if (rc)
		return rc;
	pend p = {.o = o, .kind = OP_INSERT, .mask = ~UINT64_C(0)};
	return settle(em, &p, em->tx_depth) ? emh_error_set(err, EMH_ENOMEM, "out of memory") : 0;
}

int emh_repo_remove(emh_repo *r, void *obj, emh_error *err)
{
	emh__obj *o;
	int rc = repo_obj(r, obj, &o, err);
	if (rc)
		return rc;
	if ((rc = emh_em_remove(r->em, obj, err)) != 0)
		return rc;
	return o->state == ST_REMOVED ? flush(r->em, o, err) : 0;
}
