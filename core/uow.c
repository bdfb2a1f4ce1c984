/* SPDX-License-Identifier: MIT */
/*
 * core/uow.c: the unit of work of a fork.  A flush collects what changed
 * since objects were loaded or last flushed (inserts in creation order,
 * updates of the changed columns only, deletes), checks NULLs before any
 * I/O, sends it in one transaction (a savepoint inside the caller's), and
 * on failure leaves every object as it was.  Transactions nest with
 * savepoints; a journal of what each flush changed in the fork's bookkeeping
 * lets a rollback of one level restore keys, snapshots and states.  The
 * immediate forms (emh_repo_insert, _update, _upsert, _remove) are a flush
 * of one object.  em.c owns the fork, its connection and its objects.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "em_int.h"
#include "query_int.h"

/* ---- transactions ---- */

/*
 * What to do with a transaction level.  Level 1 is the transaction itself
 * (BEGIN, COMMIT, ROLLBACK); a deeper level is a savepoint (SAVEPOINT,
 * RELEASE SAVEPOINT, ROLLBACK TO SAVEPOINT and then RELEASE it).
 */
typedef enum tx_step { TX_BEGIN, TX_COMMIT, TX_ROLLBACK } tx_step;
typedef int (*tx_fn)(emh_conn *c, emh_error *err);
typedef int (*sp_fn)(emh_conn *c, const char *name, emh_error *err);

/* The driver's member for step at level 1, and the SQL sent without it. */
static tx_fn tx_member(const emh_driver *d, tx_step step, const char **sql)
{
	const emh_sql_dialect *dl = d->dialect;
	switch (step) {
	case TX_BEGIN:
		*sql = dl && dl->begin_sql ? dl->begin_sql : "BEGIN";
		return d->begin;
	case TX_COMMIT:
		*sql = dl && dl->commit_sql ? dl->commit_sql : "COMMIT";
		return d->commit;
	case TX_ROLLBACK:
		break;
	}
	*sql = dl && dl->rollback_sql ? dl->rollback_sql : "ROLLBACK";
	return d->rollback;
}

/* The driver's savepoint member for step, and the SQL verb sent without it. */
static sp_fn sp_member(const emh_driver *d, tx_step step, const char **verb)
{
	switch (step) {
	case TX_BEGIN:
		*verb = "SAVEPOINT ";
		return d->savepoint;
	case TX_COMMIT:
		*verb = "RELEASE SAVEPOINT ";
		return d->release;
	case TX_ROLLBACK:
		break;
	}
	*verb = "ROLLBACK TO SAVEPOINT ";
	return d->rollback_to;
}

/* Level 1's step on c: the driver's member when it has one, else the
 * dialect's SQL through execute; a BEGIN at an isolation level (iso > 0)
 * through the driver's begin_isolation. */
static int tx_send1(const emh_driver *d, emh_conn *c, tx_step step, int iso, emh_error *err)
{
	const char *sql;
	tx_fn fn = tx_member(d, step, &sql);
	if (step == TX_BEGIN && iso)
		return d->begin_isolation(c, iso, err);
	return fn ? fn(c, err) : d->execute(c, sql, err);
}

/* Send step of transaction level `level` on the fork's connection (iso: the
 * isolation level of a BEGIN at level 1, 0 for the default). */
static int tx_send_iso(emh_em *em, tx_step step, int level, int iso, emh_error *err)
{
	const emh_driver *d = &em->ctx->drv->d;
	emh_conn *c = em->pc->conn;
	int64_t t0 = emh__now_ns();
	const char *what = NULL, *verb = NULL; /* what is sent, or verb and name (a savepoint) */
	char name[32] = "";
	int rc;
	if (level <= 1) {
		tx_member(d, step, &what); /* the text the log shows */
		rc = tx_send1(d, c, step, iso, err);
		if (step == TX_BEGIN && emh__em_stale_first_use(em, rc)) {
			/* BEGIN on a connection that went stale while idle: harmless to resend. */
			em->pc_status = EMH_EUNAVAILABLE;
			emh__em_conn_release(em);
			if ((rc = emh__em_conn(em, err)) != 0)
				return rc;
			c = em->pc->conn;
			rc = tx_send1(d, c, step, iso, err);
		}
	} else {
		snprintf(name, sizeof name, "emh_sp_%d", level);
		sp_fn fn = sp_member(d, step, &verb);
		if (fn) {
			rc = fn(c, name, err);
		} else {
			char sql[64];
			snprintf(sql, sizeof sql, "%s%s", verb, name);
			rc = d->execute(c, sql, err);
			if (rc == 0 && step == TX_ROLLBACK) {
				/* ROLLBACK TO keeps the savepoint: release it, the level is closed. */
				snprintf(sql, sizeof sql, "RELEASE SAVEPOINT %s", name);
				rc = d->execute(c, sql, err);
			}
		}
	}
	int64_t ns = emh__now_ns() - t0;
	int qop = step == TX_BEGIN ? EMH__Q_BEGIN : step == TX_COMMIT ? EMH__Q_COMMIT : EMH__Q_ROLLBACK;
	emh__qstats_add(&em->ctx->qstats, qop, ns);
	if (em->ctx->qlog.on)
		emh__qlog_tx(em, qop, verb ? verb : what, name, rc, ns);
	em->conn_used = true;
	if (rc) {
		emh__em_conn_failed(em, rc, err);
		return emh__em_fail(em, rc, err);
	}
	return 0;
}

static int tx_send(emh_em *em, tx_step step, int level, emh_error *err)
{
	return tx_send_iso(em, step, level, 0, err);
}

static int tx_check(emh_em *em, bool nested, emh_error *err)
{
	int rc = emh__em_conn(em, err);
	if (rc)
		return rc;
	uint64_t caps = emh__em_caps(em);
	if (!(caps & EMH_CAP_TRANSACTIONS))
		return emh__em_fail(em, emh_error_set(err, EMH_EUNSUPPORTED,
						  "driver '%s' has no transactions on this server",
						  em->ctx->drv->d.name), err);
	if (nested && !(caps & EMH_CAP_SAVEPOINTS))
		return emh__em_fail(em, emh_error_set(err, EMH_EUNSUPPORTED,
						  "driver '%s' has no savepoints: transactions cannot nest",
						  em->ctx->drv->d.name), err);
	return 0;
}

static const char *const iso_names[] = {"default", "read committed", "repeatable read", "serializable"};

int emh_em_begin_opts(emh_em *em, const emh_tx_opts *opts, emh_error *err)
{
	int iso = opts ? opts->isolation : EMH_ISO_DEFAULT;
	if (em->tx_failed)
		return emh_error_set(err, EMH_ESTATE, "context '%s': the transaction failed; roll it back first",
				     em->ctx->name);
	if (iso < EMH_ISO_DEFAULT || iso > EMH_ISO_SERIALIZABLE)
		return emh__em_fail(em, emh_error_set(err, EMH_EINVAL, "isolation level %d is not an EMH_ISO_* value", iso),
				err);
	if (iso && em->tx_depth > 0)
		return emh__em_fail(em, emh_error_set(err, EMH_ESTATE,
						  "isolation level %s inside a transaction: a level is the outermost "
						  "transaction's (a savepoint has none of its own)",
						  iso_names[iso]), err);
	int rc = tx_check(em, em->tx_depth > 0, err);
	if (rc)
		return rc;
	if (iso && !(emh__em_caps(em) & EMH_CAP_ISOLATION))
		return emh__em_fail(em, emh_error_set(err, EMH_EUNSUPPORTED,
						  "driver '%s' cannot choose an isolation level (%s) on this server",
						  em->ctx->drv->d.name, iso_names[iso]), err);
	if ((rc = tx_send_iso(em, TX_BEGIN, em->tx_depth + 1, iso, err)) != 0)
		return rc;
	if (em->tx_depth++ == 0)
		emh__rel_begin_note(em);
	return 0;
}

int emh_em_begin(emh_em *em, emh_error *err) { return emh_em_begin_opts(em, NULL, err); }

/* Undo the bookkeeping of flushes made at transaction level >= depth. */
static void journal_revert(emh_em *em, int depth)
{
	/* Newest first, so several flushes of one object unwind in order. */
	while (em->journal && em->journal->depth >= depth) {
		emh__jentry *j = em->journal;
		emh__obj *o = j->o;
		em->journal = j->next;
		if (j->kind == OP_UPDATE_WHERE) {
			/* What the fork loaded of m's rows since may hold the
			 * write's effects: reloaded when next loaded. */
			emh__em_mark_stale(em, j->m);
			continue;
		}
		if (j->version_set)
			emh__obj_version_write(o, j->old_version);
		switch (j->kind) {
		case OP_FIND: {
			/* Loaded over (or detached) inside the level: what it held
			 * before, in the map again if it was, and stale, since its
			 * row may have moved on since it was loaded. */
			bool was = j->state == ST_MANAGED || j->state == ST_REMOVED;
			bool is = o->state == ST_MANAGED || o->state == ST_REMOVED;
			memcpy(OBJ(o), j->fields, o->m->pub.entity->size);
			o->nulls = j->nulls;
			o->rel_loaded = j->rel_loaded; /* the members came back with fields */
			o->snap = j->snap;
			o->snap_nulls = j->snap_nulls;
			o->state = j->state;
			o->flags = j->flags | OBJF_STALE;
			if (was && !is)
				emh__imap_add(em, o);
			break;
		}
		case OP_INSERT: {
			/* Never stored: out of the identity map (found by the key it
			 * was stored with, the snapshot's), key reset, new again --
			 * or dropped, if it was removed since. */
			bool removed = o->state == ST_REMOVED;
			if (o->state == ST_MANAGED || removed)
				emh__imap_del(em, o);
			o->snap = j->snap;
			o->snap_nulls = j->snap_nulls;
			if (j->key_set)
				emh__obj_key_write(o, j->old_key);
			o->state = removed ? ST_DETACHED : ST_NEW;
			break;
		}
		case OP_REMOVE:
			/* Not deleted after all: pending removal again, as before
			 * the flush (the next flush deletes it, a refresh cancels
			 * that; get and find leave it out), in the map again. */
			o->state = j->state;
			o->snap = j->snap;
			o->snap_nulls = j->snap_nulls;
			emh__imap_add(em, o);
			break;
		default: /* OP_UPDATE: the stored values are the older ones again */
			o->snap = j->snap;
			o->snap_nulls = j->snap_nulls;
			break;
		}
	}
}

int emh__journal_reload(emh_em *em, emh__obj *o)
{
	if (em->tx_depth == 0)
		return 0;
	const emh_entity *e = o->m->pub.entity;
	emh__jentry *j = emh__arena_alloc(&em->arena, sizeof *j);
	char *copy = j ? emh__arena_memdup(&em->arena, OBJ(o), e->size) : NULL;
	if (!copy)
		return EMH_ENOMEM;
	/* A text/blob member set by the caller and not flushed points at the
	 * caller's memory: copied, so a rollback never brings back a pointer
	 * the caller had every reason to think dropped. */
	for (size_t i = 0; i < e->nfields; i++) {
		const emh_field *f = &e->fields[i];
		if (!emh__is_ptr_type(f->type))
			continue;
		emh_value v = emh__obj_value(o, copy, f, (int)i);
		if (v.is_null || (o->snap && emh__obj_value(o, o->snap, f, (int)i).u.s.ptr == v.u.s.ptr))
			continue;
		if (f->type == EMH_T_BLOB) {
			emh_blob b = {emh__arena_memdup(&em->arena, v.u.s.ptr, v.u.s.len), v.u.s.len};
			if (!b.data)
				return EMH_ENOMEM;
			memcpy(copy + f->offset, &b, sizeof b);
		} else {
			char *str = emh__arena_strndup(&em->arena, v.u.s.ptr, v.u.s.len);
			if (!str)
				return EMH_ENOMEM;
			memcpy(copy + f->offset, &str, sizeof str);
		}
	}
	*j = (emh__jentry){.next = em->journal, .o = o, .depth = em->tx_depth, .kind = OP_FIND, .state = o->state,
			   .flags = o->flags, .snap = o->snap, .snap_nulls = o->snap_nulls, .fields = copy,
			   .nulls = o->nulls, .rel_loaded = o->rel_loaded};
	em->journal = j;
	return 0;
}

int emh__tx_end(emh_em *em, bool commit, emh_error *err)
{
	if (em->tx_depth == 0)
		return emh_error_set(err, EMH_ESTATE, "context '%s': no transaction is open", em->ctx->name);
	if (commit && em->tx_failed)
		return emh_error_set(err, EMH_ESTATE, "context '%s': the transaction failed; roll it back",
				     em->ctx->name);
	int level = em->tx_depth, rc = 0;
	if (em->pc)
		rc = tx_send(em, commit ? TX_COMMIT : TX_ROLLBACK, level, err);
	else if (!em->tx_failed)
		rc = emh_error_set(err, EMH_ESTATE, "context '%s': transaction has no connection", em->ctx->name);
	if (commit && rc) {
		/* Still open here, but PostgreSQL and MySQL end the transaction
		 * on a failed COMMIT: a second COMMIT would "succeed" on none
		 * (the objects looking stored, later flushes in autocommit).
		 * Only the rollback is accepted now, on every driver. */
		em->tx_failed = true;
		return rc;
	}
	/* A rollback closes its level even when it failed: the fork's
	 * bookkeeping is restored, and the callers that roll back several
	 * levels (tx_run, emh_em_close) go on to the next one. */
	em->tx_depth--;
	if (commit) {
		for (emh__jentry *j = em->journal; j && j->depth == level; j = j->next)
			j->depth = level - 1;
		if (em->tx_depth == 0)
			em->journal = NULL; /* committed: nothing to restore any more */
	} else {
		journal_revert(em, level);
		if (rc && em->tx_depth > 0)
			/* What the server kept of the levels outside is unknown: they
			 * accept only their rollback. */
			em->tx_failed = true;
	}
	if (em->tx_depth == 0)
		em->tx_failed = false;
	return commit ? 0 : rc;
}

int emh_em_commit(emh_em *em, emh_error *err) { return emh__tx_end(em, true, err); }
int emh_em_rollback(emh_em *em, emh_error *err) { return emh__tx_end(em, false, err); }

/* emh_em_transaction, begun with opts. */
static int tx_run(emh_em *em, const emh_tx_opts *opts, emh_tx_fn fn, void *ud, emh_error *err)
{
	int rc = emh_em_begin_opts(em, opts, err);
	if (rc)
		return rc;
	int level = em->tx_depth;
	rc = fn(em, ud, err);
	if (rc == 0 && em->tx_depth > level)
		rc = emh_error_set(err, EMH_ESTATE, "context '%s': the transaction callback left %d level(s) open",
				   em->ctx->name, em->tx_depth - level);
	else if (rc == 0 && em->tx_depth < level)
		rc = emh_error_set(err, EMH_ESTATE,
				   "context '%s': the transaction callback closed %d level(s) it did not open",
				   em->ctx->name, level - em->tx_depth);
	if (rc == 0 && (rc = emh_em_commit(em, err)) == 0)
		return 0;
	/* fn failed, or the commit did (the level is then still open): roll
	 * back every level this call opened or fn left open. */
	emh_error ignored;
	while (em->tx_depth >= level)
		emh__tx_end(em, false, &ignored); /* closes its level, failed or not */
	return rc;
}

int emh_em_transaction(emh_em *em, emh_tx_fn fn, void *ud, emh_error *err)
{
	return tx_run(em, NULL, fn, ud, err);
}

/* Sleep before retry attempt+1: random in [c/2, c], c = min(1 ms << (attempt - 1), 100 ms). */
static void retry_backoff(int attempt, uint64_t *rng)
{
	int64_t cap_us = attempt >= 8 ? 100000 : (int64_t)1000 << (attempt - 1);
	if (cap_us > 100000)
		cap_us = 100000;
	/* xorshift64*: per call, seeded by the caller; no shared state. */
	*rng ^= *rng >> 12;
	*rng ^= *rng << 25;
	*rng ^= *rng >> 27;
	uint64_t r = *rng * UINT64_C(2685821657736338717);
	int64_t us = cap_us / 2 + (int64_t)(r % (uint64_t)(cap_us / 2 + 1));
	struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (long)(us % 1000000) * 1000};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

int emh_em_transaction_retry_opts(emh_em *em, const emh_tx_opts *opts, emh_tx_fn fn, void *ud, int max_attempts,
				  emh_error *err)
{
	emh_error local;
	if (!err)
		err = &local;
	if (max_attempts < 1)
		return emh__em_fail(em, emh_error_set(err, EMH_EINVAL, "emh_em_transaction_retry: max_attempts %d < 1",
						  max_attempts), err);
	if (em->tx_depth > 0)
		return emh__em_fail(em, emh_error_set(err, EMH_ESTATE,
						  "emh_em_transaction_retry inside a transaction: a retry restarts the "
						  "whole transaction, so it must be the outermost"), err);
	uint64_t rng = (uint64_t)(uintptr_t)em ^ (uint64_t)emh__now_ns() ^ UINT64_C(0x9E3779B97F4A7C15);
	for (int attempt = 1;; attempt++) {
		/* Each attempt's own error: a retryable flag left from an earlier
		 * attempt must not make a later, different failure look retryable. */
		emh_error e = {0};
		int rc = tx_run(em, opts, fn, ud, &e);
		if (rc)
			*err = e;
		if (rc == 0 || attempt >= max_attempts || !(rc == EMH_ERETRY || e.retryable))
			return rc;
		/* Rolled back: what fn loaded may be out of date, so it starts over
		 * from the rows as they are now. */
		emh_em_clear(em);
		retry_backoff(attempt, &rng);
	}
}

int emh_em_transaction_retry(emh_em *em, emh_tx_fn fn, void *ud, int max_attempts, emh_error *err)
{
	return emh_em_transaction_retry_opts(em, NULL, fn, ud, max_attempts, err);
}

/*
 * Changed fields of a managed object, by comparison with its snapshot.  A
 * text/json/blob member pointed at other memory with the same content is
 * pointed back at the stored copy: unchanged, and the caller's buffer is
 * no longer referenced.
 */
uint64_t emh__obj_changed(emh__obj *o)
{
	const emh_entity *e = o->m->pub.entity;
	char *cur = OBJ(o);
	const char *old = o->snap;
	uint64_t mask = 0;
	for (size_t i = 0; i < e->nfields; i++) {
		const emh_field *f = &e->fields[i];
		uint64_t bit = UINT64_C(1) << i;
		if (!emh__is_ptr_type(f->type)) {
			if ((o->nulls ^ o->snap_nulls) & bit)
				mask |= bit;
			else if (!(o->nulls & bit) && memcmp(cur + f->offset, old + f->offset, f->size) != 0)
				mask |= bit;
			continue;
		}
		emh_value a = emh__obj_value(o, cur, f, (int)i), b = emh__obj_value(o, old, f, (int)i);
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
	bool version_set; /* the version member was written (EMH_F_VERSION) */
	int64_t old_version;
} pend;

static void describe_key(const emh__obj *o, char *buf, size_t cap)
{
	emh_value k = emh__obj_key(o);
	if (o->state == ST_NEW && o->m->pub.generated)
		snprintf(buf, cap, "new");
	else if (k.type == EMH_T_TEXT)
		snprintf(buf, cap, "%s '%.*s'", o->m->pub.entity->fields[o->m->pub.pk].name,
			 (int)(k.u.s.len > 64 ? 64 : k.u.s.len), k.is_null ? "" : k.u.s.ptr);
	else
		snprintf(buf, cap, "%s %lld", o->m->pub.entity->fields[o->m->pub.pk].name, (long long)emh__value_i64(&k));
}

/* A scalar member holding anything but its NULL representation (zero). */
static bool member_set(const emh__obj *o, const emh_field *f)
{
	const unsigned char *p = (const unsigned char *)OBJ(o) + f->offset;
	for (size_t b = 0; b < f->size; b++)
		if (p[b])
			return true;
	return false;
}

/*
 * A value written into the member of a scalar field that is NULL (loaded
 * so, or set so with emh_em_set_null): the NULL flag hides it from the
 * write (and from the changed fields), so it is refused rather than
 * silently not stored.  Every field, whatever a flush writes.
 */
static int check_null_members(emh_em *em, const emh__obj *o, emh_error *err)
{
	const emh_entity *e = o->m->pub.entity;
	for (size_t i = 0; o->nulls && i < e->nfields; i++) {
		const emh_field *f = &e->fields[i];
		if (!((o->nulls >> i) & 1) || emh__is_ptr_type(f->type) || !member_set(o, f))
			continue;
		char key[96];
		describe_key(o, key, sizeof key);
		return emh__em_fail(em, emh_error_set(err, EMH_EINVAL,
						  "entity '%s' (%s): field '%s' is NULL (emh_em_set_null) but its "
						  "member holds a value: call emh_em_set_null(obj, \"%s\", false) to "
						  "store it", e->name, key, f->name, f->name), err);
	}
	return 0;
}

/*
 * NULL in a non-nullable field, and a value longer than its field's max_len
 * (bytes), are caught before anything is sent.  Only the fields in mask:
 * what a flush writes.  And check_null_members.
 */
static int check_not_null(emh_em *em, const emh__obj *o, uint64_t mask, emh_error *err)
{
	const emh_entity *e = o->m->pub.entity;
	int rc = check_null_members(em, o, err);
	if (rc)
		return rc;
	for (size_t i = 0; i < e->nfields; i++) {
		const emh_field *f = &e->fields[i];
		if (!(mask & (UINT64_C(1) << i)) || ((f->flags & EMH_F_NULLABLE) && !f->max_len))
			continue;
		if ((int)i == o->m->pub.pk && o->m->pub.generated && o->state == ST_NEW)
			continue;
		emh_value v = emh__obj_value(o, OBJ(o), f, (int)i);
		bool too_long = !v.is_null && f->max_len && v.u.s.len > f->max_len;
		if ((v.is_null && !(f->flags & EMH_F_NULLABLE)) || too_long) {
			char key[96];
			describe_key(o, key, sizeof key);
			if (too_long)
				return emh__em_fail(em, emh_error_set(err, EMH_EINVAL,
								  "entity '%s' (%s): field '%s' is %zu bytes, longer than "
								  "its max_len of %u", e->name, key, f->name, v.u.s.len,
								  (unsigned)f->max_len), err);
			return emh__em_fail(em, emh_error_set(err, EMH_EINVAL,
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

/* ---- versions (EMH_F_VERSION) ---- */

int64_t emh__version_time(emh_context *c, int64_t after)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	int64_t now = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
	int64_t last = atomic_load_explicit(&c->version_clock, memory_order_relaxed), next;
	/* Later than the row's version and than any this context handed out, so
	 * a version always changes even when the clock does not move on (or
	 * steps back) between two writes. */
	do {
		next = now > last ? now : last + 1;
		if (next <= after)
			next = after + 1;
	} while (!atomic_compare_exchange_weak_explicit(&c->version_clock, &last, next, memory_order_relaxed,
							memory_order_relaxed));
	return next;
}

/* Write the version p's write gives its object: 1 or now for an insert,
 * the stored one + 1 (or a later time) for an update; the old member is
 * kept to restore if the flush fails. */
static void version_next(emh_em *em, pend *p)
{
	emh__obj *o = p->o;
	const emh_field *f = &o->m->pub.entity->fields[o->m->version];
	int64_t stored = p->kind == OP_INSERT ? 0 : emh__obj_version(o, true);
	p->old_version = emh__obj_version(o, false);
	p->version_set = true;
	if (f->type == EMH_T_TIMESTAMP)
		emh__obj_version_write(o, emh__version_time(em->ctx, stored));
	else
		emh__obj_version_write(o, stored + 1);
}

/* The row was not at the version the object was loaded with. */
static int version_conflict(emh_em *em, int64_t expected, emh_error *err)
{
	emh_error_set(err, EMH_ECONFLICT,
		      "changed by someone else since it was loaded (its version %lld is not the row's any more, "
		      "or the row is gone)",
		      (long long)expected);
	if (err)
		err->retryable = true;
	return emh__em_fail(em, EMH_ECONFLICT, err);
}

/* key = k AND version = v, for a document driver's conditional write: built
 * on the caller's stack (the driver reads it through the accessors only). */
typedef struct version_query {
	emh_query q;
	emh_cond and_, key, ver;
	emh_cond *kids[2];
	emh_value kv, vv;
} version_query;

static const emh_query *version_query_init(version_query *vq, emh_em *em, const emh__meta *m, emh_value key,
					   int64_t version)
{
	const emh_entity *e = m->pub.entity;
	emh_value vv = {.type = e->fields[m->version].type};
	vv.u.i64 = version;
	*vq = (version_query){
		.q = {.e = e, .arena = &em->arena, .limit = -1, .offset = -1},
		.kv = key,
		.vv = vv,
	};
	vq->key = (emh_cond){.op = EMH_OP_EQ, .field = m->pub.pk, .q = &vq->q, .vals = &vq->kv, .nvals = 1};
	vq->ver = (emh_cond){.op = EMH_OP_EQ, .field = m->version, .q = &vq->q, .vals = &vq->vv, .nvals = 1};
	vq->kids[0] = &vq->key;
	vq->kids[1] = &vq->ver;
	vq->and_ = (emh_cond){.op = EMH_OP_AND, .field = -1, .q = &vq->q, .kids = vq->kids, .nkids = 2};
	vq->q.where = &vq->and_;
	return &vq->q;
}

/*
 * The update or delete of a versioned object: it holds only while the row
 * still has the version the object was loaded with.  SQL: "... WHERE key = ?
 * AND version = ?"; a document driver: its update_where/delete_where on that
 * condition.  No row matched: EMH_ECONFLICT, retryable.
 */
static int send_versioned(emh_em *em, pend *p, emh_value key, emh_error *err)
{
	emh__obj *o = p->o;
	emh__meta *m = o->m;
	const emh_entity *e = m->pub.entity;
	int64_t expected = emh__obj_version(o, true), affected = 0;
	uint64_t mask = 0;
	int rc;
	if (p->kind == OP_UPDATE) {
		version_next(em, p);
		mask = p->mask | UINT64_C(1) << m->version;
	}
	if (emh__em_is_sql(em)) {
		emh_value vals[EMH_ENTITY_MAX_FIELDS + 2];
		size_t n = 0;
		const emh_stmt *st = emh__sql_versioned_stmt(m, em->ctx->drv->d.dialect, mask, err);
		if (!st)
			return emh__em_fail(em, err ? err->code : EMH_ENOMEM, err);
		for (size_t i = 0; i < e->nfields; i++)
			if (mask & (UINT64_C(1) << i))
				vals[n++] = emh__obj_value(o, OBJ(o), &e->fields[i], (int)i);
		vals[n] = key;
		vals[n + 1] = (emh_value){.type = e->fields[m->version].type, .u.i64 = expected};
		emh_rowsink rs = {0};
		emh__op x = {.kind = OP_STMT, .m = m, .st = st, .params = vals, .sink = &rs};
		if ((rc = emh__em_run(em, &x, err)) != 0)
			return rc;
		affected = rs.affected;
	} else {
		version_query vq;
		emh_set sets[EMH_ENTITY_MAX_FIELDS];
		size_t n = 0;
		for (size_t i = 0; i < e->nfields; i++)
			if (mask & (UINT64_C(1) << i))
				sets[n++] = (emh_set){.field = (int)i, .op = EMH_SET_VALUE,
						      .value = emh__obj_value(o, OBJ(o), &e->fields[i], (int)i)};
		emh__op x = {.kind = n ? OP_UPDATE_WHERE : OP_DELETE_WHERE, .m = m,
			     .q = version_query_init(&vq, em, m, key, expected), .sets = sets, .nsets = n,
			     .count = &affected};
		if ((rc = emh__em_run(em, &x, err)) != 0)
			return rc;
	}
	return affected ? 0 : version_conflict(em, expected, err);
}

static int send_one(emh_em *em, pend *p, emh_error *err)
{
	emh__obj *o = p->o;
	emh__meta *m = o->m;
	const emh_entity *e = m->pub.entity;
	emh_value vals[EMH_ENTITY_MAX_FIELDS + 1];
	size_t n = 0;
	int rc;
	if (p->kind == OP_INSERT && m->version >= 0)
		version_next(em, p);
	if (p->kind == OP_INSERT) {
		if (emh__em_is_sql(em)) {
			for (size_t i = 0; i < e->nfields; i++)
				if (!((int)i == m->pub.pk && m->pub.generated))
					vals[n++] = emh__obj_value(o, OBJ(o), &e->fields[i], (int)i);
			key_sink ks = {.base.row = key_row};
			emh__op x = {.kind = OP_STMT, .m = m, .st = m->st_insert, .params = vals, .sink = &ks.base};
			if ((rc = emh__em_run(em, &x, err)) != 0)
				return rc;
			if (m->pub.generated) {
				p->old_key = emh__obj_key_read(o);
				p->key_set = true;
				emh__obj_key_write(o, ks.got ? emh__value_i64(&ks.key) : ks.base.last_id);
			}
			return 0;
		}
		for (size_t i = 0; i < e->nfields; i++)
			vals[i] = emh__obj_value(o, OBJ(o), &e->fields[i], (int)i);
		emh_value key = {0};
		if (m->pub.generated)
			vals[m->pub.pk] = emh_v_null(e->fields[m->pub.pk].type);
		emh__op x = {.kind = OP_INSERT, .m = m, .params = vals, .key = &key};
		if ((rc = emh__em_run(em, &x, err)) != 0)
			return rc;
		if (m->pub.generated) {
			p->old_key = emh__obj_key_read(o);
			p->key_set = true;
			emh__obj_key_write(o, emh__value_i64(&key));
		}
		return 0;
	}
	/* The WHERE key is the one the row was loaded with. */
	emh__obj snapo = *o;
	emh_value key = emh__obj_value(&snapo, o->snap, &e->fields[m->pub.pk], m->pub.pk);
	if (m->version >= 0)
		return send_versioned(em, p, key, err);
	if (p->kind == OP_UPDATE) {
		if (emh__em_is_sql(em)) {
			const emh_stmt *st = emh__sql_update_stmt(m, em->ctx->drv->d.dialect, p->mask, err);
			if (!st)
				return emh__em_fail(em, err ? err->code : EMH_ENOMEM, err);
			for (size_t i = 0; i < e->nfields; i++)
				if (p->mask & (UINT64_C(1) << i))
					vals[n++] = emh__obj_value(o, OBJ(o), &e->fields[i], (int)i);
			vals[n++] = key;
			emh_rowsink rs = {0};
			emh__op x = {.kind = OP_STMT, .m = m, .st = st, .params = vals, .sink = &rs};
			if ((rc = emh__em_run(em, &x, err)) != 0)
				return rc;
			if (rs.affected == 0)
				return emh__em_fail(em, emh_error_set(err, EMH_ENOTFOUND, "the row no longer exists"), err);
			return 0;
		}
		for (size_t i = 0; i < e->nfields; i++)
			vals[i] = emh__obj_value(o, OBJ(o), &e->fields[i], (int)i);
		emh__op x = {.kind = OP_UPDATE, .m = m, .params = vals, .mask = p->mask};
		return emh__em_run(em, &x, err);
	}
	if (emh__em_is_sql(em)) {
		emh_rowsink rs = {0};
		emh__op x = {.kind = OP_STMT, .m = m, .st = m->st_delete, .params = &key, .sink = &rs};
		return emh__em_run(em, &x, err);
	}
	emh__op x = {.kind = OP_REMOVE, .m = m, .params = &key};
	return emh__em_run(em, &x, err);
}

/* The object is persisted as it is now: new snapshot, strings owned by the arena. */
static int settle(emh_em *em, pend *p, int depth)
{
	emh__obj *o = p->o;
	const emh_entity *e = o->m->pub.entity;
	if (depth > 0) {
		emh__jentry *j = emh__arena_alloc(&em->arena, sizeof *j);
		if (!j)
			return EMH_ENOMEM;
		*j = (emh__jentry){.next = em->journal, .o = o, .depth = depth, .kind = p->kind, .state = o->state, .snap = o->snap,
			      .snap_nulls = o->snap_nulls, .key_set = p->key_set, .old_key = p->old_key,
			      .version_set = p->version_set, .old_version = p->old_version};
		em->journal = j;
	}
	if (p->kind == OP_REMOVE) {
		emh__imap_del(em, o);
		o->state = ST_DELETED;
		return 0;
	}
	char *obj = OBJ(o);
	for (size_t i = 0; i < e->nfields; i++) {
		const emh_field *f = &e->fields[i];
		if (!emh__is_ptr_type(f->type) || (p->kind == OP_UPDATE && !(p->mask & (UINT64_C(1) << i))))
			continue;
		emh_value v = emh__obj_value(o, obj, f, (int)i);
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
		emh__imap_add(em, o);
	}
	return 0;
}

static int flush(emh_em *em, emh__obj *only, emh_error *err)
{
	emh_error local;
	if (!err)
		err = &local;
	if (em->readonly)
		return emh__em_fail(em, emh_error_set(err, EMH_ESTATE, "the fork is read-only: nothing to flush"), err);
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
				if (!(p.mask = emh__obj_changed(o))) {
					/* unchanged, unless a NULL flag hides a write */
					if ((rc = check_null_members(em, o, err)) != 0)
						break;
					continue;
				}
				if (p.mask & (UINT64_C(1) << o->m->pub.pk)) {
					char key[96];
					describe_key(o, key, sizeof key);
					rc = emh__em_fail(em, emh_error_set(err, EMH_EINVAL,
									"entity '%s' (%s): the primary key of a stored object cannot change",
									o->m->pub.entity->name, key), err);
					break;
				}
				if (o->m->version >= 0 && (p.mask & (UINT64_C(1) << o->m->version))) {
					char key[96];
					describe_key(o, key, sizeof key);
					rc = emh__em_fail(em, emh_error_set(err, EMH_EINVAL,
									"entity '%s' (%s): field '%s' is its version, which "
									"emhost sets: it cannot be changed",
									o->m->pub.entity->name, key,
									o->m->pub.entity->fields[o->m->version].name), err);
					break;
				}
				p.kind = OP_UPDATE;
			} else if (pass == 2 && o->state == ST_REMOVED) {
				p.kind = OP_REMOVE;
			} else {
				continue;
			}
			/* Global filters: an insert is stamped with the fork's
			 * parameters, an update or removal must stay inside them. */
			if (o->m->filters && p.kind == OP_INSERT && (rc = emh__filter_stamp(em, o, err)) != 0)
				break;
			if (o->m->filters && p.kind != OP_INSERT &&
			    (rc = emh__filter_check_write(em, o, p.kind == OP_UPDATE ? p.mask : 0, err)) != 0)
				break;
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
	/* Checked references and on_delete restrict ask other contexts, before
	 * this flush writes anything. */
	if ((rc = emh__rel_flush_check(em, only, err)) != 0) {
		free(v);
		return rc;
	}
	if ((rc = emh__em_conn(em, err)) != 0) {
		free(v);
		return rc;
	}
	uint64_t caps = emh__em_caps(em);
	bool atomic = (caps & EMH_CAP_TRANSACTIONS) && (caps & EMH_CAP_ATOMIC_FLUSH);
	bool savepoint = atomic && em->tx_depth > 0 && (caps & EMH_CAP_SAVEPOINTS);
	/* One statement outside a transaction is atomic by itself: no BEGIN/COMMIT
	 * round trips.  Inside one, a savepoint keeps a failed statement from
	 * spoiling the caller's transaction. */
	bool wrap = atomic && (em->tx_depth == 0 ? n > 1 : savepoint);
	int level = em->tx_depth + 1;
	if (wrap && (rc = tx_send(em, TX_BEGIN, level, err)) != 0) {
		free(v);
		return rc;
	}
	size_t done = 0;
	for (; done < n && rc == 0; done++)
		if ((rc = send_one(em, &v[done], err)) != 0)
			break;
	if (rc == 0 && wrap)
		rc = tx_send(em, TX_COMMIT, level, err);
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
			emh__msgf(msg, sizeof msg, "%sflush of '%s' (%s) failed: %s", prefix, bad->m->pub.entity->name,
				  key, inner);
			memcpy(err->message, msg, sizeof msg);
		}
		/* What did not stay written gets its key and version back: everything
		 * when the flush was rolled back, else the failing one. */
		for (size_t i = atomic ? 0 : done; i < n; i++) {
			if (v[i].key_set)
				emh__obj_key_write(v[i].o, v[i].old_key);
			if (v[i].version_set)
				emh__obj_version_write(v[i].o, v[i].old_version);
		}
		if (atomic) {
			emh_error ignored;
			if (em->pc && wrap)
				tx_send(em, TX_ROLLBACK, level, &ignored);
			else if (em->tx_depth > 0)
				em->tx_failed = true; /* no savepoint: the whole transaction is spoiled */
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

/* obj's header, if obj is an object of this fork and of r's entity, in
 * state want (else EMH_ESTATE: "<call>: object of entity 'e' is <not_what>"). */
static int repo_obj(emh_repo *r, void *obj, int want, const char *call, const char *not_what, emh__obj **out,
		    emh_error *err)
{
	int rc = emh__em_own(r->em, obj, out, err);
	if (rc == 0 && (*out)->m != r->m)
		return emh__em_fail(r->em, emh_error_set(err, EMH_EINVAL, "object of entity '%s' given to the repository of '%s'",
						     (*out)->m->pub.entity->name, r->m->pub.entity->name), err);
	if (rc == 0 && want && (*out)->state != want)
		return emh__em_fail(r->em, emh_error_set(err, EMH_ESTATE, "%s: object of entity '%s' is %s", call,
							 r->m->pub.entity->name, not_what), err);
	return rc;
}

int emh_repo_insert(emh_repo *r, void *obj, emh_error *err)
{
	emh__obj *o;
	int rc = repo_obj(r, obj, ST_NEW, "emh_repo_insert", "not new", &o, err);
	return rc ? rc : flush(r->em, o, err);
}

int emh_repo_update(emh_repo *r, void *obj, emh_error *err)
{
	emh__obj *o;
	int rc = repo_obj(r, obj, ST_MANAGED, "emh_repo_update", "not stored", &o, err);
	return rc ? rc : flush(r->em, o, err);
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
	int rc = repo_obj(r, obj, ST_NEW, "emh_repo_upsert", "not new", &o, err);
	if (rc)
		return rc;
	if (m->pub.generated)
		return emh__em_fail(em, emh_error_set(err, EMH_EINVAL,
						  "entity '%s' has a generated key: upsert needs a key set by the caller",
						  e->name), err);
	if (m->version >= 0)
		return emh__em_fail(em, emh_error_set(err, EMH_EINVAL,
						  "entity '%s' has a version field ('%s'): an upsert would overwrite the row "
						  "without checking it (get it, change it and flush instead)",
						  e->name, e->fields[m->version].name), err);
	if ((m->filters && (rc = emh__filter_stamp(em, o, err)) != 0) ||
	    (rc = check_not_null(em, o, ~UINT64_C(0), err)) != 0 || (rc = emh__rel_flush_check(em, o, err)) != 0)
		return rc;
	emh_value key = emh__obj_key(o);
	if (emh__imap_find(em, m, &key)) {
		char k[96];
		describe_key(o, k, sizeof k);
		return emh__em_fail(em, emh_error_set(err, EMH_ESTATE,
						  "this fork already manages the '%s' with %s: change that object and flush",
						  e->name, k), err);
	}
	if ((rc = emh__em_conn(em, err)) != 0)
		return rc;
	uint64_t caps = emh__em_caps(em);
	bool sql = emh__em_is_sql(em);
	if (!(caps & EMH_CAP_UPSERT))
		return emh__em_fail(em, emh_error_set(err, EMH_EUNSUPPORTED, "driver '%s' cannot upsert",
						  em->ctx->drv->d.name), err);
	if (sql && !m->st_upsert)
		return emh__em_fail(em, emh_error_set(err, EMH_EUNSUPPORTED,
						  "driver '%s' cannot upsert entity '%s': its ON DUPLICATE KEY %s",
						  em->ctx->drv->d.name, e->name,
						  m->filters ? "cannot be kept inside the entity's global filter (it would "
							       "overwrite another tenant's row with the same key)"
							     : "would also fire on the entity's other unique columns and "
							       "overwrite another row"), err);
	emh_value vals[EMH_ENTITY_MAX_FIELDS];
	for (size_t i = 0; i < e->nfields; i++)
		vals[i] = emh__obj_value(o, OBJ(o), &e->fields[i], (int)i);
	/* Inside a transaction, a savepoint keeps a failure from spoiling it. */
	bool sp = em->tx_depth > 0 && (caps & EMH_CAP_SAVEPOINTS);
	int level = em->tx_depth + 1;
	if (sp && (rc = tx_send(em, TX_BEGIN, level, err)) != 0)
		return rc;
	emh_rowsink rs = {0};
	/* A SQL driver runs the dialect's statement; a document driver (the
	 * loader made sure it has the member) its own upsert. */
	emh__op x = sql ? (emh__op){.kind = OP_STMT, .m = m, .st = m->st_upsert, .params = vals, .sink = &rs}
			: (emh__op){.kind = OP_UPSERT, .m = m, .params = vals};
	rc = emh__em_run(em, &x, err);
	/* A filtered entity's statement updates a row only inside the filter
	 * (ON CONFLICT ... WHERE): nothing changed means the key is another
	 * tenant's row. */
	if (rc == 0 && sql && m->filters && rs.affected == 0)
		rc = emh__em_fail(em, emh_error_set(err, EMH_ECONFLICT,
						  "upsert of '%s': a row with this key exists outside this fork's filter",
						  e->name), err);
	if (sp) {
		emh_error ignored;
		if (rc == 0)
			rc = tx_send(em, TX_COMMIT, level, err);
		else if (em->pc)
			tx_send(em, TX_ROLLBACK, level, &ignored);
	}
	if (rc)
		return rc;
	pend p = {.o = o, .kind = OP_INSERT, .mask = ~UINT64_C(0)};
	return settle(em, &p, em->tx_depth) ? emh_error_set(err, EMH_ENOMEM, "out of memory") : 0;
}

int emh_repo_remove(emh_repo *r, void *obj, emh_error *err)
{
	emh__obj *o;
	int rc = repo_obj(r, obj, 0, NULL, NULL, &o, err);
	if (rc)
		return rc;
	if ((rc = emh_em_remove(r->em, obj, err)) != 0)
		return rc;
	return o->state == ST_REMOVED ? flush(r->em, o, err) : 0;
}
