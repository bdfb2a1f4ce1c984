/* SPDX-License-Identifier: MIT */
/*
 * plugins/sqlite/session.c: running SQL on a connection outside compiled
 * statements: waiting on shared-cache locks, prepare and step, ping,
 * transactions, raw SQL.
 */
#include "config.h"

#include <stdbool.h>
#include <stdio.h>
#include <time.h>

#include <sqlite3.h>

#include <emhost/driver.h>

#include "sqlite_int.h"

/* ---- the deadline of a call ---- */

static int64_t sq_coarse_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/*
 * No clock is read here: the deadline is armed by the call's first
 * progress callback, SQ_PROGRESS_OPS virtual-machine steps (microseconds)
 * into it, and most calls -- a key lookup, a short write -- end before
 * that, reading no clock at all.
 */
void sq_deadline_start(emh_conn *c)
{
	c->deadline_ns = c->dc->cfg.stmt_ms > 0 ? SQ_DEADLINE_UNARMED : 0;
}

/*
 * Called by SQLite every SQ_PROGRESS_OPS virtual-machine steps of a
 * statement: returning non-zero interrupts it (SQLITE_INTERRUPT, as
 * sqlite3_interrupt would, rolling back an explicit transaction when the
 * statement wrote).  Waits for a lock happen in the busy handler, not
 * between steps: they stay under busy_timeout_ms.
 */
int sq_progress(void *arg)
{
	emh_conn *c = arg;
	if (!c->deadline_ns)
		return 0;
	int64_t now = sq_coarse_ns();
	if (c->deadline_ns == SQ_DEADLINE_UNARMED) {
		c->deadline_ns = now + (int64_t)c->dc->cfg.stmt_ms * 1000000;
		return 0;
	}
	return now > c->deadline_ns;
}

/* ---- waiting on shared-cache table locks ---- */

/*
 * SQLITE_LOCKED_SHAREDCACHE is what a shared-cache database (a
 * "file:...?cache=shared" path) reports instead of SQLITE_BUSY, and the busy
 * handler is not called for it.  Wait for it here, polling with short sleeps
 * up to the busy timeout.  Returns true when the caller should try again.
 * (The in-memory databases this driver makes use the memdb VFS, which
 * reports SQLITE_BUSY and so honours busy_timeout by itself.)
 */
bool sq_locked_wait(int rc, int busy_ms, int *waited_ms)
{
	if (rc != SQLITE_LOCKED_SHAREDCACHE || *waited_ms >= busy_ms)
		return false;
	int step = *waited_ms < 10 ? 1 : 5;
	struct timespec ts = {0, step * 1000000L};
	nanosleep(&ts, NULL);
	*waited_ms += step;
	return true;
}

int sq_prepare(emh_conn *c, const char *sql, int len, unsigned flags, sqlite3_stmt **out,
	       const char **tail, emh_error *err)
{
	int waited = 0, rc;
	do
		rc = sqlite3_prepare_v3(c->db, sql, len, flags, out, tail);
	while (rc != SQLITE_OK && sq_locked_wait(sqlite3_extended_errcode(c->db), c->busy_ms, &waited));
	if (rc != SQLITE_OK)
		return sq_fail(c, rc, "prepare", err);
	return 0;
}

/*
 * Run a statement to its end, then reset it.  When out is not NULL, the
 * first non-NULL text in its first column (a PRAGMA's answer) is copied
 * there (cap bytes; "" when there is none); other rows are ignored.
 */
int sq_step_done(emh_conn *c, sqlite3_stmt *st, const char *what, char *out, size_t cap, emh_error *err)
{
	int waited = 0, rc;
	if (out && cap)
		out[0] = '\0';
	for (;;) {
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW) {
			const unsigned char *t = out && cap && !out[0] ? sqlite3_column_text(st, 0) : NULL;
			if (t)
				snprintf(out, cap, "%s", (const char *)t);
			continue;
		}
		if (rc == SQLITE_DONE)
			break;
		if (sq_locked_wait(sqlite3_extended_errcode(c->db), c->busy_ms, &waited)) {
			sqlite3_reset(st);
			continue;
		}
		rc = sq_fail(c, rc, what, err);
		sqlite3_reset(st);
		return rc;
	}
	sqlite3_reset(st);
	return 0;
}

/* ---- commands ---- */

/* Step a cached single-statement command (BEGIN, COMMIT, ping ...). */
static int sq_cached(emh_conn *c, sqlite3_stmt **slot, const char *sql, emh_error *err)
{
	sq_deadline_start(c);
	if (!*slot) {
		int rc = sq_prepare(c, sql, -1, SQLITE_PREPARE_PERSISTENT, slot, NULL, err);
		if (rc)
			return rc;
	}
	return sq_step_done(c, *slot, sql, NULL, 0, err);
}

int sq_ping(emh_conn *c, emh_error *err)
{
	return sq_cached(c, &c->ping, "SELECT 1", err);
}

/*
 * BEGIN IMMEDIATE takes the write lock at once, waiting for it through the
 * busy timeout.  A deferred BEGIN would take it at the first write, and in
 * WAL mode a transaction that has read and then finds another writer
 * committed meanwhile fails with SQLITE_BUSY_SNAPSHOT without waiting, so
 * several writers would abort each other instead of queueing.  The cost:
 * explicit read-only transactions also serialise with writers.
 */
int sq_begin(emh_conn *c, emh_error *err)
{
	return sq_cached(c, &c->begin, "BEGIN IMMEDIATE", err);
}

/*
 * Every SQLite transaction is serializable (one writer at a time, and in
 * WAL mode readers see a snapshot), which the SQL standard allows for any
 * level asked for: every level begins the same BEGIN IMMEDIATE.
 */
int sq_begin_isolation(emh_conn *c, int isolation, emh_error *err)
{
	(void)isolation;
	return sq_begin(c, err);
}

/*
 * Row locks need no clause: a transaction here began with BEGIN IMMEDIATE
 * (sq_begin), so it holds the database's write lock, and no other
 * connection can change a row it read until it ends.  NOWAIT and SKIP
 * LOCKED have nothing to act on: a second writer already waited (busy
 * timeout) or failed at its own BEGIN.
 */
const char *sq_lock_clause(emh_conn *c, int mode, int wait)
{
	(void)c, (void)mode, (void)wait;
	return "";
}

int sq_commit(emh_conn *c, emh_error *err)
{
	return sq_cached(c, &c->commit, "COMMIT", err);
}

/* SQLite rolls a transaction back by itself on some errors (out of memory,
 * disk full, I/O); rolling back then is not an error. */
int sq_rollback(emh_conn *c, emh_error *err)
{
	if (sqlite3_get_autocommit(c->db))
		return 0;
	return sq_cached(c, &c->rollback, "ROLLBACK", err);
}

/* Raw SQL: every statement of text in turn, rows ignored.  Statements
 * before a failing one keep their effect (as with sqlite3_exec). */
int sq_execute(emh_conn *c, const char *text, emh_error *err)
{
	const char *sql = text;
	int rc = 0;

	sq_deadline_start(c);
	while (sql && *sql) {
		sqlite3_stmt *st = NULL;
		const char *tail = NULL;
		rc = sq_prepare(c, sql, -1, 0, &st, &tail, err);
		if (rc)
			return rc;
		if (st) { /* NULL for whitespace or a comment */
			rc = sq_step_done(c, st, "execute", NULL, 0, err);
			sqlite3_finalize(st);
			if (rc)
				return rc;
		}
		if (tail == sql)
			break;
		sql = tail;
	}
	return 0;
}

/* ---- the migration lock ---- */

static int64_t sq_now_ms(void)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

/*
 * The lock is an exclusive transaction: no other connection writes the
 * database while it is held, so another run waits here (the busy handler,
 * then once more until wait_ms) and finds every migration recorded.  The
 * wait is its own deadline: the busy handler waits no longer than what is
 * left of wait_ms (busy_timeout_ms is put back after).
 */
int sq_migrate_lock(emh_conn *c, int64_t wait_ms, bool *in_txn, emh_error *err)
{
	*in_txn = true;
	if (!sqlite3_get_autocommit(c->db))
		return 0; /* held: this transaction is the lock */
	int64_t deadline = sq_now_ms() + wait_ms;
	for (;;) {
		int64_t left = deadline - sq_now_ms();
		sqlite3_busy_timeout(c->db, left <= 0 ? 0 : left < c->busy_ms ? (int)left : c->busy_ms);
		sq_deadline_start(c);
		int rc = sqlite3_exec(c->db, "BEGIN EXCLUSIVE", NULL, NULL, NULL);
		sqlite3_busy_timeout(c->db, c->busy_ms);
		if (rc == SQLITE_OK)
			return 0;
		if ((rc & 0xff) != SQLITE_BUSY && (rc & 0xff) != SQLITE_LOCKED)
			return sq_fail(c, rc, "migration lock (BEGIN EXCLUSIVE)", err);
		if (sq_now_ms() >= deadline) {
			emh_error_set(err, EMH_ETIMEOUT,
				      "sqlite: another migration run (or another writer) held database '%s' for %lld ms",
				      c->dc ? c->dc->shown : "?", (long long)wait_ms);
			if (err)
				err->native = rc;
			return EMH_ETIMEOUT;
		}
		struct timespec ts = {0, 20 * 1000000L};
		nanosleep(&ts, NULL);
	}
}

int sq_migrate_unlock(emh_conn *c, bool commit, emh_error *err)
{
	if (sqlite3_get_autocommit(c->db))
		return 0;
	if (commit)
		return sq_commit(c, err);
	return sq_rollback(c, err);
}
