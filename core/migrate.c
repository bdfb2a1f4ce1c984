/* SPDX-License-Identifier: MIT */
/*
 * core/migrate.c: per-context migrations: the emh_migrations table, the
 * per-database lock, status, up and down, new files, the start-up policy
 * (`migrate = "on-start" | "check"`), and contexts that refuse forks.
 *
 * emh_migrations is an entity of the core registered in the context like
 * any other, so every driver stores it its own way (a table, a collection)
 * and the core reads and writes it through the statements compiled for it
 * (SQL) or the document members, on one pooled connection held for the
 * whole run.  Under the driver's migration lock the run reads what is
 * recorded, refuses to start when an applied file changed or is missing,
 * then applies each migration: with transactional DDL in one transaction
 * with its record (a savepoint where the lock itself is a transaction,
 * SQLite), without it statement by statement and recorded after the last.
 *
 * Where the lock is a transaction the whole run is committed when the lock
 * is given back: until then nothing of it is durable.  So a failed final
 * COMMIT, or a failure that ends that transaction (SQLite rolls it back
 * when a writing statement is interrupted past its deadline, and then the
 * savepoint is gone), undoes every migration of the run, and the run says
 * so and counts none.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "migrate_int.h"

#define LOCK_WAIT_MS 60000

/* ---- refusals ---- */

/* c refuses forks, saying why, unless it does already (the first reason
 * stays).  EMH_ENOMEM: no copy of why, not refused. */
static int refusal_set(emh_context *c, const char *why)
{
	char *mine = strdup(why);
	char *none = NULL;
	if (!mine)
		return EMH_ENOMEM;
	if (!atomic_compare_exchange_strong_explicit(&c->hot->refusal, &none, mine, memory_order_release,
						     memory_order_relaxed))
		free(mine);
	return 0;
}

int emh__context_refuse(emh_context *c, const char *why)
{
	if (refusal_set(c, why && *why ? why : "refused") != 0) {
		/* Not refused: the caller must not go on as if it were. */
		emh__log(&c->host->log, EMH_LOG_ERROR, c->name, "out of memory refusing the context: %s", why);
		return EMH_ENOMEM;
	}
	emh__log(&c->host->log, EMH_LOG_ERROR, c->name, "refusing to serve the context: %s", why);
	return 0;
}

const char *emh_host_context_refusal(emh_host *h, const char *context)
{
	pthread_rwlock_rdlock(&h->lock);
	emh_context *c = emh__context_find_locked(h, context);
	const char *why = c ? atomic_load_explicit(&c->hot->refusal, memory_order_acquire) : NULL;
	pthread_rwlock_unlock(&h->lock);
	return why;
}

int emh_host_set_schema_mode(emh_host *h, const char *context, const char *mode, emh_error *err)
{
	bool sync = mode && strcmp(mode, "sync") == 0, check = mode && strcmp(mode, "check") == 0;
	if (!mode || (!sync && !check && strcmp(mode, "none") != 0))
		return emh_error_set(err, EMH_EINVAL, "schema mode '%s' is not \"none\", \"sync\" or \"check\"",
				     mode ? mode : "(null)");
	emh_context *c = emh__host_get_context(h, context, err);
	if (!c)
		return EMH_ENOCONTEXT;
	c->schema_sync = sync || check;
	c->schema_check = check;
	emh__context_put(c);
	return 0;
}

/* ---- the emh_migrations entity ---- */

typedef struct mig_row {
	int64_t number;
	const char *name;
	const char *checksum;
	emh_time applied_at;
	int64_t duration_us;
} mig_row;

static const emh_field mig_fields[] = {
	EMH_FIELD(mig_row, number, EMH_T_INT64, EMH_F_PK),
	EMH_FIELD(mig_row, name, EMH_T_TEXT, 0),
	EMH_FIELD(mig_row, checksum, EMH_T_TEXT, 0),
	EMH_FIELD(mig_row, applied_at, EMH_T_TIMESTAMP, 0),
	EMH_FIELD(mig_row, duration_us, EMH_T_INT64, 0),
};
static const emh_entity mig_entity = EMH_ENTITY(mig_row, EMH__MIGRATIONS_TABLE, mig_fields);
enum { COL_NUMBER, COL_NAME, COL_CHECKSUM, COL_APPLIED_AT, COL_DURATION, NCOLS };

/* A recorded migration. */
typedef struct mig_rec {
	int64_t number;
	char *name;
	char checksum[65];
	emh_time applied_at;
	int64_t duration_us;
} mig_rec;

typedef struct rec_sink {
	emh_rowsink base;
	mig_rec *v;
	size_t n, cap;
} rec_sink;

/* An integer column as a document driver may deliver it (int32 or int64). */
static int64_t int_value(const emh_value *v)
{
	if (v->is_null)
		return 0;
	return v->type == EMH_T_INT32 ? v->u.i32 : v->u.i64;
}

static int rec_row(emh_rowsink *s, const emh_value *cols, emh_error *err)
{
	rec_sink *rs = (rec_sink *)s;
	if (rs->n == rs->cap) {
		size_t ncap = rs->cap ? rs->cap * 2 : 16;
		mig_rec *v = realloc(rs->v, ncap * sizeof *v);
		if (!v)
			return emh_error_set(err, EMH_ENOMEM, "out of memory");
		rs->v = v;
		rs->cap = ncap;
	}
	mig_rec *r = &rs->v[rs->n];
	memset(r, 0, sizeof *r);
	r->number = int_value(&cols[COL_NUMBER]);
	const emh_value *nm = &cols[COL_NAME], *ck = &cols[COL_CHECKSUM];
	if (!(r->name = strndup(nm->is_null ? "" : nm->u.s.ptr, nm->is_null ? 0 : nm->u.s.len)))
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	if (!ck->is_null)
		snprintf(r->checksum, sizeof r->checksum, "%.*s", (int)(ck->u.s.len < 64 ? ck->u.s.len : 64), ck->u.s.ptr);
	r->applied_at = int_value(&cols[COL_APPLIED_AT]);
	r->duration_us = int_value(&cols[COL_DURATION]);
	rs->n++;
	return 0;
}

static int rec_cmp(const void *a, const void *b)
{
	const mig_rec *x = a, *y = b;
	return x->number < y->number ? -1 : x->number > y->number;
}

/* ---- a run on one context ---- */

typedef struct mig_run {
	emh_host *h;
	emh_context *c;
	const emh_driver *d;
	const emh_sql_dialect *dl; /* NULL: a document driver */
	emh__meta *m;              /* emh_migrations */
	const char *dir;
	emh__migdir files;
	mig_rec *recs;
	size_t nrecs;
	emh_migration *list; /* files and records merged, by number */
	size_t nlist;
	emh__pconn *pc;
	int pc_status;
	bool locked, in_txn;
	bool up;
	size_t done; /* migrations this run applied (undid) so far */
	emh_error *err;
} mig_run;

static int run_fail(mig_run *r, int rc)
{
	return emh__error_in_context(r->err, rc, r->c->name);
}

void emh_migrations_free(emh_migration *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++) {
		free((char *)v[i].name);
		free((char *)v[i].file);
		free((char *)v[i].down_file);
	}
	free(v);
}

/* e's message without the "context 'x': " that run_fail puts in front (for a refusal's own, or another prefix). */
static const char *without_context(const emh_error *e, const char *name)
{
	size_t n = strlen(name);
	const char *m = e->message;
	if (strncmp(m, "context '", 9) == 0 && strncmp(m + 9, name, n) == 0 && strncmp(m + 9 + n, "': ", 3) == 0)
		return m + 12 + n;
	return m;
}

/*
 * Give the lock back.  Returns the run's result: loop_rc (its result so
 * far, its error in r->err), or, when the lock is a transaction whose
 * COMMIT fails, that failure in r->err saying which migrations it undid
 * (in front of the migration's own error when one failed), r->done 0.
 */
static int run_unlock(mig_run *r, int loop_rc)
{
	emh_error e;
	/* A lock held as a transaction commits what ran under it, unless a
	 * rollback failed (the failed migration may be in it): then all of
	 * it goes, records too.  A session lock that cannot be released
	 * goes with its connection (one whose call passed its deadline
	 * is closed anyway, and alone). */
	bool commit = r->pc_status != EMH_EUNAVAILABLE;
	if (r->d->migrate_unlock(r->pc->conn, commit, &e) == 0)
		return loop_rc;
	emh_error ignored;
	/* A transaction whose COMMIT failed may still be open: roll it back
	 * here, or have the pool close the connection. */
	if (!(r->in_txn && commit && r->d->migrate_unlock(r->pc->conn, false, &ignored) == 0) &&
	    r->pc_status != EMH_ETIMEOUT)
		r->pc_status = EMH_EUNAVAILABLE;
	else if (!r->pc_status)
		r->pc_status = e.code;
	if (!r->in_txn || !commit)
		return loop_rc; /* the session lock goes with its connection; nothing was to be kept */
	const char *verb = r->up ? "applied" : "undone";
	if (loop_rc == 0) {
		int rc = r->done ? emh_error_set(r->err, e.code, "committing the run: %s; none of the %zu migration%s of "
						 "this run was %s", e.message, r->done, r->done == 1 ? "" : "s", verb)
				 : emh_error_set(r->err, e.code, "committing the run: %s", e.message);
		r->done = 0;
		return run_fail(r, rc);
	}
	if (!r->done)
		return loop_rc; /* nothing before the failure was to be kept */
	char msg[EMH_ERROR_MSG_MAX];
	emh__msgf(msg, sizeof msg, "%s", without_context(r->err, r->c->name));
	emh_error_set(r->err, loop_rc, "committing the run failed too (%s): the %zu migration%s %s before this failure %s "
		      "not kept either; %s", e.message, r->done, r->done == 1 ? "" : "s", verb,
		      r->done == 1 ? "is" : "are", msg);
	r->done = 0;
	return run_fail(r, loop_rc);
}

/* Give everything back; loop_rc and the result as run_unlock; *done (may be NULL): r->done then. */
static int run_close(mig_run *r, int loop_rc, size_t *done)
{
	int rc = loop_rc;
	if (r->pc) {
		if (r->locked)
			rc = run_unlock(r, loop_rc);
		emh__pool_release(&r->c->pool, r->pc, r->pc_status);
	}
	emh__migdir_release(&r->files);
	for (size_t i = 0; i < r->nrecs; i++)
		free(r->recs[i].name);
	free(r->recs);
	emh_migrations_free(r->list, r->nlist);
	if (r->c)
		emh__context_put(r->c);
	if (done)
		*done = r->done;
	memset(r, 0, sizeof *r);
	return rc;
}

/* The context, its folder read, emh_migrations registered. */
static int run_open(mig_run *r, emh_host *h, const char *context, emh_error *err)
{
	memset(r, 0, sizeof *r);
	r->h = h;
	r->err = err;
	if (!(r->c = emh__host_get_context(h, context, err)))
		return EMH_ENOCONTEXT;
	r->d = &r->c->drv->d;
	r->dl = r->d->dialect;
	r->dir = emh__ctxconf_get(&r->c->conf, "migrations");
	if (!r->dir || !*r->dir)
		return run_fail(r, emh_error_set(err, EMH_ECONFIG,
						 "context '%s' has no migrations folder (set migrations = \"DIR\")",
						 r->c->name));
	int rc = emh__migdir_read(r->dir, r->d->name, r->dl ? "sql" : "json", &r->files, err);
	if (rc)
		return run_fail(r, rc);
	const emh_entity *copy = NULL;
	if ((rc = emh__meta_register(h, r->c->name, &mig_entity, &copy, err)) != 0)
		return rc;
	r->m = emh__context_meta(r->c, copy);
	/* Counted as synced, so that schema = "sync" never creates it at a fork's
	 * first connection: run_prepare does, under the lock. */
	if (!atomic_exchange_explicit(&r->m->synced, 1, memory_order_acq_rel))
		atomic_fetch_sub_explicit(&r->c->unsynced, 1, memory_order_release);
	return 0;
}

static int run_connect(mig_run *r)
{
	int rc = emh__pool_acquire(&r->c->pool, &r->pc, r->err);
	if (rc) {
		r->pc = NULL;
		return run_fail(r, rc);
	}
	return 0;
}

/* Does emh_migrations exist?  (Status creates nothing; a document store's
 * missing collection simply has no documents.) */
static int table_exists(mig_run *r, bool *exists)
{
	*exists = true;
	if (!r->dl || !r->d->describe)
		return 0;
	int rc = emh__table_exists(r->d, r->pc->conn, EMH__MIGRATIONS_TABLE, exists, r->err);
	return rc ? run_fail(r, rc) : 0;
}

/* What emh_migrations holds, by number. */
static int read_records(mig_run *r)
{
	rec_sink rs = {.base = {.row = rec_row}};
	int rc = r->dl ? r->d->stmt_exec(r->pc->conn, r->m->st_select_all, NULL, &rs.base, r->err)
		       : r->d->find(r->pc->conn, &r->m->pub, NULL, &rs.base, r->err);
	if (rc) {
		for (size_t i = 0; i < rs.n; i++)
			free(rs.v[i].name);
		free(rs.v);
		r->pc_status = rc;
		return run_fail(r, emh_error_prefix(r->err, rc, "reading table '%s': ", EMH__MIGRATIONS_TABLE));
	}
	if (rs.n)
		qsort(rs.v, rs.n, sizeof *rs.v, rec_cmp);
	r->recs = rs.v;
	r->nrecs = rs.n;
	return 0;
}

static int oom(mig_run *r) { return run_fail(r, emh_error_set(r->err, EMH_ENOMEM, "out of memory")); }

/* The checksum of a file, or an error naming it. */
static int file_checksum(mig_run *r, const char *path, char out[65])
{
	char *text;
	size_t len;
	int rc = emh__file_read(path, &text, &len, r->err);
	if (rc)
		return run_fail(r, rc);
	emh__sha256_hex(text, len, out);
	free(text);
	return 0;
}

/* Files and records merged into r->list, by number. */
static int merge(mig_run *r)
{
	size_t cap = r->files.n + r->nrecs;
	r->list = calloc(cap ? cap : 1, sizeof *r->list);
	if (!r->list)
		return oom(r);
	size_t i = 0, k = 0;
	while (i < r->files.n || k < r->nrecs) {
		const emh__migfile *f = i < r->files.n ? &r->files.v[i] : NULL;
		const mig_rec *rec = k < r->nrecs ? &r->recs[k] : NULL;
		emh_migration *m = &r->list[r->nlist++];
		if (f && (!rec || f->number <= rec->number)) {
			m->number = f->number;
			m->name = strdup(f->name);
			m->file = strdup(f->up);
			m->down_file = f->down ? strdup(f->down) : NULL;
			if (!m->name || !m->file || (f->down && !m->down_file))
				return oom(r);
			int rc = file_checksum(r, f->up, m->checksum);
			if (rc)
				return rc;
			m->state = EMH_MIGRATION_PENDING;
			i++;
			if (!rec || rec->number != f->number)
				continue;
			m->state = strcmp(m->checksum, rec->checksum) == 0 ? EMH_MIGRATION_APPLIED : EMH_MIGRATION_CHANGED;
		} else {
			m->number = rec->number;
			if (!(m->name = strdup(rec->name)))
				return oom(r);
			m->state = EMH_MIGRATION_MISSING;
		}
		snprintf(m->recorded, sizeof m->recorded, "%s", rec->checksum);
		m->applied_at = rec->applied_at;
		m->duration_us = rec->duration_us;
		k++;
	}
	return 0;
}

/* Files and records of the context as they stand. */
static int run_state(mig_run *r)
{
	int rc;
	for (size_t i = 0; i < r->nrecs; i++)
		free(r->recs[i].name);
	free(r->recs);
	emh_migrations_free(r->list, r->nlist);
	r->recs = NULL;
	r->list = NULL;
	r->nrecs = r->nlist = 0;
	if ((rc = read_records(r)) != 0)
		return rc;
	return merge(r);
}

int emh_migrate_status(emh_host *h, const char *context, emh_migration **out, size_t *n, emh_error *err)
{
	*out = NULL;
	*n = 0;
	mig_run r;
	int rc = run_open(&r, h, context, err);
	bool exists = false;
	if (!rc)
		rc = run_connect(&r);
	if (!rc)
		rc = table_exists(&r, &exists);
	if (!rc)
		rc = exists ? run_state(&r) : merge(&r);
	if (!rc) {
		*out = r.list;
		*n = r.nlist;
		r.list = NULL;
		r.nlist = 0;
	}
	return run_close(&r, rc, NULL);
}

/*
 * Nothing runs while history and folder disagree: an applied migration whose
 * file changed or went, or (up) a pending one numbered below an applied one.
 */
static int run_verify(mig_run *r, bool up)
{
	int64_t last_applied = INT64_MIN;
	for (size_t i = 0; i < r->nlist; i++) {
		const emh_migration *m = &r->list[i];
		if (m->state == EMH_MIGRATION_CHANGED)
			return run_fail(r, emh_error_set(r->err, EMH_ECONFIG,
							 "migration '%s' was applied, but the file changed since "
							 "(checksum %.12s, recorded %.12s): nothing runs; put the file "
							 "back as it was and write a new migration for the change",
							 m->file, m->checksum, m->recorded));
		if (m->state == EMH_MIGRATION_MISSING)
			return run_fail(r, emh_error_set(r->err, EMH_ECONFIG,
							 "migration %lld '%s' was applied, but no file in '%s' has its "
							 "number: nothing runs; put the file back",
							 (long long)m->number, m->name, r->dir));
		if (m->state == EMH_MIGRATION_APPLIED)
			last_applied = m->number;
	}
	for (size_t i = 0; up && i < r->nlist; i++) {
		const emh_migration *m = &r->list[i];
		if (m->state == EMH_MIGRATION_PENDING && m->number < last_applied)
			return run_fail(r, emh_error_set(r->err, EMH_ECONFIG,
							 "migration '%s' is pending but %lld is applied already: nothing "
							 "runs; give it a number above %lld",
							 m->file, (long long)last_applied, (long long)last_applied));
	}
	return 0;
}

/* ---- running one migration ---- */

static int64_t wall_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Transaction control through the driver's members or its dialect's SQL. */
static int tx(mig_run *r, int what, emh_error *err)
{
	emh_conn *conn = r->pc->conn;
	static const char sp[] = "emh_migration";
	if (r->in_txn) {
		/* The lock is the transaction (SQLite): each migration is a savepoint. */
		switch (what) {
		case 0: return r->d->savepoint ? r->d->savepoint(conn, sp, err) : r->d->execute(conn, "SAVEPOINT emh_migration", err);
		case 1: return r->d->release ? r->d->release(conn, sp, err) : r->d->execute(conn, "RELEASE emh_migration", err);
		default: {
			int rc = r->d->rollback_to ? r->d->rollback_to(conn, sp, err)
						   : r->d->execute(conn, "ROLLBACK TO emh_migration", err);
			if (!rc)
				rc = r->d->release ? r->d->release(conn, sp, err) : r->d->execute(conn, "RELEASE emh_migration", err);
			return rc;
		}
		}
	}
	switch (what) {
	case 0: return r->d->begin ? r->d->begin(conn, err) : r->d->execute(conn, r->dl->begin_sql ? r->dl->begin_sql : "BEGIN", err);
	case 1: return r->d->commit ? r->d->commit(conn, err) : r->d->execute(conn, r->dl->commit_sql ? r->dl->commit_sql : "COMMIT", err);
	default: return r->d->rollback ? r->d->rollback(conn, err) : r->d->execute(conn, r->dl->rollback_sql ? r->dl->rollback_sql : "ROLLBACK", err);
	}
}
enum { TX_BEGIN = 0, TX_COMMIT = 1, TX_ROLLBACK = 2 };

/* Record m (up) or forget it (down). */
static int record(mig_run *r, const emh_migration *m, bool up, const char *checksum, int64_t duration_us)
{
	emh_conn *conn = r->pc->conn;
	emh_value key = emh_v_int64(m->number);
	if (!up)
		return r->dl ? r->d->stmt_exec(conn, r->m->st_delete, &key, &(emh_rowsink){0}, r->err)
			     : r->d->remove(conn, &r->m->pub, &key, r->err);
	emh_value vals[NCOLS] = {
		[COL_NUMBER] = key,
		[COL_NAME] = emh_v_text(m->name),
		[COL_CHECKSUM] = emh_v_text(checksum),
		[COL_APPLIED_AT] = emh_v_time(wall_us()),
		[COL_DURATION] = emh_v_int64(duration_us),
	};
	emh_value gen;
	return r->dl ? r->d->stmt_exec(conn, r->m->st_insert, vals, &(emh_rowsink){0}, r->err)
		     : r->d->insert(conn, &r->m->pub, vals, &gen, r->err);
}

/* The first line of a statement, shortened, for messages. */
static void excerpt(const char *s, size_t len, char *out, size_t cap)
{
	size_t n = 0;
	while (n < len && s[n] != '\n' && s[n] != '\r')
		n++;
	if (n > 60)
		snprintf(out, cap, "%.57s...", s);
	else
		snprintf(out, cap, "%.*s", (int)n, s);
}

/*
 * Run the statements of text.  On a failure of statement k, err says which
 * and, without transactional DDL, that the k-1 before it stay applied (and
 * that one that timed out may still complete).
 */
static int run_text(mig_run *r, const char *path, char *text, size_t len, bool transactional)
{
	/* Block comments nest in PostgreSQL only: elsewhere the flat rules. */
	int how = !r->dl ? EMH__SPLIT_JSON
		: r->dl->quote == '`' ? EMH__SPLIT_MYSQL
		: strcmp(r->d->name, "postgres") == 0 ? EMH__SPLIT_SQL
						      : EMH__SPLIT_SQL_FLAT;
	emh__span *sp;
	size_t n;
	int rc = emh__split(text, len, how, &sp, &n, r->err);
	if (rc)
		return emh_error_prefix(r->err, rc, "migration '%s', ", path);
	for (size_t k = 0; k < n; k++) {
		char *stmt = text + sp[k].off, saved = stmt[sp[k].len];
		stmt[sp[k].len] = '\0';
		rc = r->d->execute(r->pc->conn, stmt, r->err);
		stmt[sp[k].len] = saved;
		if (!rc)
			continue;
		char ex[80];
		excerpt(stmt, sp[k].len, ex, sizeof ex);
		if (rc == EMH_ETIMEOUT && !transactional) {
			/* Past the client's deadline the server may still be running
			 * it, and without transactional DDL nothing undoes it. */
			char before[96] = "";
			if (k)
				emh__msgf(before, sizeof before, "; the %zu before it ran and stay", k);
			emh_error_prefix(r->err, rc, "migration '%s': statement %zu of %zu (line %u: %s) timed out and may "
					 "still complete on the server%s: check the schema before running the migration "
					 "again: ", path, k + 1, n, sp[k].line, ex, before);
		} else if (transactional || k == 0)
			emh_error_prefix(r->err, rc, "migration '%s' failed at statement %zu of %zu (line %u: %s), "
					 "nothing of it applied: ", path, k + 1, n, sp[k].line, ex);
		else
			emh_error_prefix(r->err, rc, "migration '%s' failed at statement %zu of %zu (line %u: %s); the "
					 "%zu before it ran and stay: the schema may be partly changed (undo them by "
					 "hand, then run the migration again): ", path, k + 1, n, sp[k].line, ex, k);
		break;
	}
	free(sp);
	return rc;
}

/* Apply (up) or undo (down) m, with its record. */
static int run_one(mig_run *r, const emh_migration *m, bool up, const emh_migrate_opts *o)
{
	const char *path = up ? m->file : m->down_file;
	char *text;
	size_t len;
	bool dummy;
	int64_t t0, us;
	int rc;
	/* Renew the lock (one with an expiry is extended for this migration). */
	if ((rc = r->d->migrate_lock(r->pc->conn, o->lock_wait_ms, &dummy, r->err)) != 0) {
		r->pc_status = rc;
		return run_fail(r, emh_error_prefix(r->err, rc, "renewing the migration lock before migration '%s': ",
						    path));
	}
	if ((rc = emh__file_read(path, &text, &len, r->err)) != 0)
		return run_fail(r, emh_error_prefix(r->err, rc, "before migration '%s': ", path));
	char checksum[65];
	emh__sha256_hex(text, len, checksum);
	if (o->progress)
		o->progress(o->ud, r->c->name, m, EMH_MIGRATE_START, 0);
	t0 = emh__now_ns();
	bool transactional = r->dl && r->dl->transactional_ddl;
	if (transactional && (rc = tx(r, TX_BEGIN, r->err)) != 0)
		goto out;
	rc = run_text(r, path, text, len, transactional);
	us = (emh__now_ns() - t0) / 1000;
	if (!rc && (rc = record(r, m, up, checksum, us)) != 0)
		emh_error_prefix(r->err, rc, "migration '%s' ran, but %s table '%s' failed%s: ", path,
				 up ? "recording it in" : "removing it from", EMH__MIGRATIONS_TABLE,
				 transactional ? " (so it was rolled back)" : "");
	if (transactional) {
		emh_error e;
		if (rc == EMH_ETIMEOUT && !r->in_txn) {
			/* Past its deadline the connection is closed alone, which
			 * rolls the transaction back; a ROLLBACK sent on it would
			 * fail and have the pool drop every idle connection too. */
			r->pc_status = EMH_ETIMEOUT;
		} else if (rc) {
			/* Where the lock is the transaction (SQLite) the connection
			 * outlives a timeout and the run is committed at the end:
			 * the savepoint must be rolled back.  When it is gone the
			 * database ended the whole transaction (SQLite does when a
			 * writing statement is interrupted): the migrations this run
			 * applied before went with it. */
			if (tx(r, TX_ROLLBACK, &e) != 0) {
				r->pc_status = EMH_EUNAVAILABLE;
				if (r->in_txn && r->done) {
					emh_error_prefix(r->err, rc, "the %zu migration%s this run %s before it %s rolled back "
							 "with it: ", r->done, r->done == 1 ? "" : "s",
							 up ? "applied" : "undid", r->done == 1 ? "was" : "were");
					r->done = 0;
				}
			}
		} else if ((rc = tx(r, TX_COMMIT, r->err)) != 0) {
			emh_error_prefix(r->err, rc, "migration '%s': commit: ", path);
		}
	}
	us = (emh__now_ns() - t0) / 1000;
	if (!rc)
		r->done++;
	if (!rc && o->progress)
		o->progress(o->ud, r->c->name, m, EMH_MIGRATE_DONE, us);
	if (!rc)
		emh__log(&r->h->log, EMH_LOG_INFO, r->c->name, "migration %s %s (%lld ms)", path,
			 up ? "applied" : "undone", (long long)(us / 1000));
out:
	free(text);
	if (rc && !r->pc_status)
		r->pc_status = rc;
	return rc ? run_fail(r, rc) : 0;
}

/* Lock, make sure emh_migrations exists, read where things stand, verify. */
static int run_prepare(mig_run *r, const emh_migrate_opts *o, bool up)
{
	int rc;
	if (!r->d->migrate_lock || !r->d->migrate_unlock)
		return run_fail(r, emh_error_set(r->err, EMH_EUNSUPPORTED,
						 "driver '%s' cannot run migrations (no migrate_lock member)", r->d->name));
	if ((rc = run_connect(r)) != 0)
		return rc;
	if ((rc = r->d->migrate_lock(r->pc->conn, o->lock_wait_ms, &r->in_txn, r->err)) != 0) {
		r->pc_status = rc;
		return run_fail(r, emh_error_prefix(r->err, rc, "taking the migration lock: "));
	}
	r->locked = true;
	if ((rc = emh__meta_sync(r->m, r->pc->conn, true, r->err)) != 0) {
		r->pc_status = rc;
		return run_fail(r, emh_error_prefix(r->err, rc, "creating table '%s': ", EMH__MIGRATIONS_TABLE));
	}
	if ((rc = run_state(r)) != 0)
		return rc;
	return run_verify(r, up);
}

static int migrate(emh_host *h, const char *context, const emh_migrate_opts *opts, size_t *done, bool up,
		   emh_error *err)
{
	emh_migrate_opts o = opts ? *opts : (emh_migrate_opts){0};
	if (o.lock_wait_ms <= 0)
		o.lock_wait_ms = LOCK_WAIT_MS;
	if (done)
		*done = 0;
	mig_run r;
	int rc = run_open(&r, h, context, err);
	r.up = up;
	if (!rc)
		rc = run_prepare(&r, &o, up);
	if (!rc && !up) {
		/* Every step must be undoable before the first one runs. */
		for (size_t i = 0; i < r.nlist && !rc; i++) {
			const emh_migration *m = &r.list[i];
			if (m->state == EMH_MIGRATION_APPLIED && m->number > o.to && !m->down_file) {
				const char *ext = strrchr(m->file, '.');
				rc = run_fail(&r, emh_error_set(err, EMH_ECONFIG,
								"migration '%s' has no down file (%.*s.down%s): nothing "
								"is undone",
								m->file, (int)(ext - m->file), m->file, ext));
			}
		}
	}
	for (size_t k = 0; !rc && k < r.nlist; k++) {
		size_t i = up ? k : r.nlist - 1 - k;
		const emh_migration *m = &r.list[i];
		bool go = up ? m->state == EMH_MIGRATION_PENDING && (o.to <= 0 || m->number <= o.to)
			     : m->state == EMH_MIGRATION_APPLIED && m->number > o.to;
		if (!go)
			continue;
		rc = run_one(&r, m, up, &o);
	}
	/* Counted when the lock is given back: where it is the run's
	 * transaction, a failed COMMIT undoes every migration of it. */
	return run_close(&r, rc, done);
}

int emh_migrate_up(emh_host *h, const char *context, const emh_migrate_opts *opts, size_t *done, emh_error *err)
{
	return migrate(h, context, opts, done, true, err);
}

int emh_migrate_down(emh_host *h, const char *context, const emh_migrate_opts *opts, size_t *done,
		     emh_error *err)
{
	return migrate(h, context, opts, done, false, err);
}

/* ---- new files ---- */

int emh_migrate_create(emh_host *h, const char *context, const char *name, const char *text, char *path,
		       size_t cap, emh_error *err)
{
	if (!name || !*name || strlen(name) > 100 || strspn(name, "abcdefghijklmnopqrstuvwxyz"
								   "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") != strlen(name))
		return emh_error_set(err, EMH_EINVAL, "migration name '%s' may hold letters, digits, '_' and '-' only",
				     name ? name : "(null)");
	mig_run r;
	memset(&r, 0, sizeof r);
	r.err = err;
	if (!(r.c = emh__host_get_context(h, context, err)))
		return EMH_ENOCONTEXT;
	const emh_driver *d = &r.c->drv->d;
	const char *ext = d->dialect ? "sql" : "json";
	r.dir = emh__ctxconf_get(&r.c->conf, "migrations");
	int rc = 0;
	if (!r.dir || !*r.dir)
		rc = run_fail(&r, emh_error_set(err, EMH_ECONFIG,
						"context '%s' has no migrations folder (set migrations = \"DIR\")", r.c->name));
	if (!rc && (rc = emh__migdir_read(r.dir, d->name, ext, &r.files, err)) != 0)
		run_fail(&r, rc);
	if (!rc) {
		int64_t next = r.files.n ? r.files.v[r.files.n - 1].number + 1 : 1;
		int width = r.files.n ? (int)(strchr(r.files.v[r.files.n - 1].stem, '_') - r.files.v[r.files.n - 1].stem) : 4;
		int n = snprintf(path, cap, "%s/%0*lld_%s.%s", r.dir, width < 4 ? 4 : width, (long long)next, name, ext);
		if (n < 0 || (size_t)n >= cap)
			rc = emh_error_set(err, EMH_EINVAL, "the path of the new migration does not fit in %zu bytes", cap);
	}
	int fd = -1;
	if (!rc && (fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644)) < 0)
		rc = emh_error_set(err, EMH_EIO, "cannot create '%s': %s", path, strerror(errno));
	if (!rc) {
		char tmpl[512];
		if (!text) {
			if (d->dialect)
				snprintf(tmpl, sizeof tmpl,
					 "-- %s: a migration of context '%s' (driver %s).\n"
					 "-- Statements end with ';'. A file named like this one with .down.sql\n"
					 "-- instead of .sql undoes it (emhost migrate down).\n\n",
					 strrchr(path, '/') + 1, r.c->name, d->name);
			else
				snprintf(tmpl, sizeof tmpl, "[\n]\n");
			text = tmpl;
		}
		size_t len = strlen(text), off = 0;
		while (off < len) {
			ssize_t w = write(fd, text + off, len - off);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				rc = emh_error_set(err, EMH_EIO, "cannot write '%s': %s", path, strerror(errno));
				break;
			}
			off += (size_t)w;
		}
		if (close(fd) != 0 && !rc)
			rc = emh_error_set(err, EMH_EIO, "cannot write '%s': %s", path, strerror(errno));
		if (rc)
			unlink(path);
	}
	if (rc)
		emh__error_in_context(err, rc, r.c->name);
	run_close(&r, 0, NULL);
	return rc;
}

/* ---- start-up policy ---- */

/*
 * "on-start": apply; "check": refuse unless every migration is applied.
 * 0 with why "" (c may serve) or why the reason to refuse it (cap
 * EMH_ERROR_MSG_MAX); EMH_ENOMEM.
 */
static int startup_verdict(emh_host *h, emh_context *c, const char *mode, char *why)
{
	emh_error e;
	const size_t cap = EMH_ERROR_MSG_MAX;
	int64_t t0 = emh__now_ns();
	why[0] = '\0';
	if (strcmp(mode, "on-start") == 0) {
		size_t done = 0;
		if (emh_migrate_up(h, c->name, NULL, &done, &e) != 0) {
			if (e.code == EMH_ENOMEM)
				return EMH_ENOMEM;
			emh__msgf(why, cap, "migrate = \"on-start\": %s", without_context(&e, c->name));
			return 0;
		}
		emh__log(&h->log, EMH_LOG_INFO, c->name, "migrate = \"on-start\": %zu migration%s applied (%lld ms)",
			 done, done == 1 ? "" : "s", (long long)((emh__now_ns() - t0) / 1000000));
		return 0;
	}
	emh_migration *v;
	size_t n;
	if (emh_migrate_status(h, c->name, &v, &n, &e) != 0) {
		if (e.code == EMH_ENOMEM)
			return EMH_ENOMEM;
		emh__msgf(why, cap, "migrate = \"check\": %s", without_context(&e, c->name));
		return 0;
	}
	size_t pending = 0;
	const emh_migration *first = NULL;
	for (size_t i = 0; i < n; i++)
		if (v[i].state != EMH_MIGRATION_APPLIED) {
			pending++;
			if (!first)
				first = &v[i];
		}
	if (first) {
		char which[EMH_ERROR_MSG_MAX];
		if (first->file)
			emh__msgf(which, sizeof which, "%s", first->file);
		else
			emh__msgf(which, sizeof which, "number %lld '%s'", (long long)first->number, first->name);
		emh__msgf(why, cap,
			  "migrate = \"check\": %zu migration%s not applied as in the folder (first: %s, %s); "
			  "run `emhost migrate up --context %s`",
			  pending, pending == 1 ? "" : "s", which,
			  first->state == EMH_MIGRATION_PENDING ? "pending"
			  : first->state == EMH_MIGRATION_CHANGED ? "file changed since it was applied"
								  : "applied, its file missing",
			  c->name);
	}
	emh_migrations_free(v, n);
	return 0;
}

static int startup_one(emh_host *h, emh_context *c, const char *mode, size_t *refused)
{
	char why[EMH_ERROR_MSG_MAX];
	int rc = startup_verdict(h, c, mode, why);
	if (rc || !why[0])
		return rc;
	if (emh__context_refuse(c, why) != 0)
		return EMH_ENOMEM;
	(*refused)++;
	return 0;
}

/* A context's policy, or NULL for "none". */
static const char *policy_of(const emh_context *c)
{
	const char *mode = emh__ctxconf_get(&c->conf, "migrate");
	return mode && strcmp(mode, "none") != 0 ? mode : NULL;
}

int emh__migrate_hold(emh_context *c)
{
	const char *mode = policy_of(c);
	if (!mode)
		return 0;
	char why[EMH_ERROR_MSG_MAX];
	emh__msgf(why, sizeof why, "migrate = \"%s\": not applied yet (the context is being added by a reload)", mode);
	return refusal_set(c, why);
}

int emh__migrate_startup_added(emh_host *h, const char *name)
{
	emh_context *c = emh__host_get_context(h, name, NULL);
	if (!c)
		return 0; /* removed meanwhile */
	const char *mode = policy_of(c);
	char why[EMH_ERROR_MSG_MAX];
	int rc = mode ? startup_verdict(h, c, mode, why) : 0;
	char *verdict = NULL;
	if (!rc && mode && why[0] && !(verdict = strdup(why)))
		rc = EMH_ENOMEM;
	if (!rc && mode) {
		/* The hold gives way to the verdict; readers may still hold the
		 * hold's text (emh_host_context_refusal): retired, not freed. */
		char *hold = atomic_exchange_explicit(&c->hot->refusal, verdict, memory_order_acq_rel);
		if (verdict)
			emh__log(&h->log, EMH_LOG_ERROR, c->name, "refusing to serve the context: %s", verdict);
		pthread_rwlock_wrlock(&h->lock);
		emh__host_retire(h, hold);
		pthread_rwlock_unlock(&h->lock);
	}
	emh__context_put(c);
	return rc;
}

int emh_migrate_startup(emh_host *h, size_t *refused, emh_error *err)
{
	size_t nref = 0;
	if (refused)
		*refused = 0;
	/* Names first: the host's lock is not held while databases are called. */
	pthread_rwlock_rdlock(&h->lock);
	size_t n = h->nctx;
	char **names = calloc(n ? n : 1, sizeof *names);
	int rc = 0;
	for (size_t i = 0; names && i < n && !rc; i++) {
		/* A name lost to memory would skip its context's policy silently. */
		if (policy_of(h->ctxs[i]) && !(names[i] = strdup(h->ctxs[i]->name)))
			rc = EMH_ENOMEM;
	}
	pthread_rwlock_unlock(&h->lock);
	if (!names)
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	for (size_t i = 0; i < n && !rc; i++) {
		if (!names[i])
			continue;
		emh_context *c = emh__host_get_context(h, names[i], NULL);
		if (!c)
			continue; /* removed meanwhile */
		rc = startup_one(h, c, emh__ctxconf_get(&c->conf, "migrate"), &nref);
		emh__context_put(c);
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	if (refused)
		*refused = nref;
	return rc ? emh_error_set(err, rc, "out of memory") : 0;
}
