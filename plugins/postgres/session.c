/* SPDX-License-Identifier: MIT */
/*
 * plugins/postgres/session.c: what runs on a connection outside compiled
 * statements: ping, raw SQL, and transactions (BEGIN deferred to the first
 * statement, savepoints).
 */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include <emhost/driver.h>
#include <emhost/entity.h>
#include <emhost/prepcache.h>

#include "postgres_int.h"

/* Send a BEGIN that begin() deferred, on its own (paths that cannot carry it). */
int pg_send_begin(emh_conn *c, emh_error *err)
{
	if (!c->begin_pending)
		return 0;
	c->begin_pending = false;
	return pg_command(c, c->begin_sql, "begin", err);
}

/*
 * A live connection answers an empty query.  A transaction left open (the
 * core always ends its own; raw SQL may not) is rolled back first, so a
 * pooled connection never carries one to its next user.
 */
int pg_ping(emh_conn *c, emh_error *err)
{
	PGTransactionStatusType ts;
	if (PQstatus(c->pg) != CONNECTION_OK) {
		emh_error_set(err, EMH_EUNAVAILABLE, "connection lost");
		pg_error_state(err, "08006", false);
		return EMH_EUNAVAILABLE;
	}
	c->begin_pending = false;
	ts = PQtransactionStatus(c->pg);
	if (ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR)
		return pg_command(c, "ROLLBACK", "ping", err);
	return pg_command(c, "", "ping", err);
}

/* Forget every prepared statement (after DEALLOCATE / DISCARD in raw SQL). */
static void pg_forget_prepared(emh_conn *c)
{
	emh_prepcache_clear(c->stmts);
}

/* Bring a COPY started by raw SQL to an end so the connection stays usable. */
static void pg_drain_copy(emh_conn *c, ExecStatusType s)
{
	PGresult *r;
	if (s == PGRES_COPY_IN)
		PQputCopyEnd(c->pg, "COPY is not supported through emhost");
	else if (s == PGRES_COPY_OUT) {
		char *buf;
		while (PQgetCopyData(c->pg, &buf, 0) > 0)
			PQfreemem(buf);
	}
	while ((r = PQgetResult(c->pg)) != NULL)
		PQclear(r);
}

/*
 * Raw SQL through the simple protocol: several statements, run as one
 * implicit transaction unless they hold their own BEGIN/COMMIT.
 */
int pg_execute(emh_conn *c, const char *text, emh_error *err)
{
	PGresult *res;
	ExecStatusType s;
	int rc = pg_send_begin(c, err);

	if (rc)
		return rc;
	res = PQexec(c->pg, text);
	s = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;

	if (s == PGRES_COPY_IN || s == PGRES_COPY_OUT || s == PGRES_COPY_BOTH) {
		PQclear(res);
		pg_drain_copy(c, s);
		return emh_error_set(err, EMH_EUNSUPPORTED, "COPY is not supported through execute");
	}
	if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK && s != PGRES_EMPTY_QUERY)
		rc = pg_fail(c, res, "execute", err);
	/* Forget every prepared statement only when the server dropped them all;
	 * a single one dropped by name is noticed (26000) and re-prepared by
	 * pg_stmt_exec.  Guessing from the text would misfire on any SQL that
	 * merely contains the word. */
	const char *tag = res && rc == 0 ? PQcmdStatus(res) : NULL;
	if (tag && (strcmp(tag, "DISCARD ALL") == 0 || strcmp(tag, "DEALLOCATE ALL") == 0))
		pg_forget_prepared(c);
	PQclear(res);
	return rc;
}

/* ---- transactions ---- */

/*
 * BEGIN is not sent at once: it travels with the transaction's first
 * statement (one round trip instead of two, as PgJDBC does).  Nothing is
 * lost: PostgreSQL takes a transaction's snapshot at its first statement,
 * not at BEGIN, and a transaction that runs nothing has nothing to commit.
 */
static int pg_begin_sql(emh_conn *c, const char *sql, emh_error *err)
{
	if (PQstatus(c->pg) != CONNECTION_OK) {
		emh_error_set(err, EMH_EUNAVAILABLE, "begin: connection lost");
		pg_error_state(err, "08006", false);
		return EMH_EUNAVAILABLE;
	}
	c->begin_pending = true;
	c->begin_sql = sql;
	return 0;
}

int pg_begin(emh_conn *c, emh_error *err)
{
	return pg_begin_sql(c, "BEGIN", err);
}

/* The level travels with the deferred BEGIN.  PostgreSQL's repeatable read
 * is snapshot isolation (stronger than the standard's). */
int pg_begin_isolation(emh_conn *c, int isolation, emh_error *err)
{
	static const char *const sql[] = {
		[EMH_ISO_READ_COMMITTED] = "BEGIN ISOLATION LEVEL READ COMMITTED",
		[EMH_ISO_REPEATABLE_READ] = "BEGIN ISOLATION LEVEL REPEATABLE READ",
		[EMH_ISO_SERIALIZABLE] = "BEGIN ISOLATION LEVEL SERIALIZABLE",
	};
	if (isolation < EMH_ISO_READ_COMMITTED || isolation > EMH_ISO_SERIALIZABLE)
		return emh_error_set(err, EMH_EUNSUPPORTED, "begin: no isolation level %d", isolation);
	return pg_begin_sql(c, sql[isolation], err);
}

/* Row locks: every form since PostgreSQL 9.5 (the driver needs 10). */
const char *pg_lock_clause(emh_conn *c, int mode, int wait)
{
	static const char *const clause[3][3] = {
		[EMH_LOCK_UPDATE] = {" FOR UPDATE", " FOR UPDATE NOWAIT", " FOR UPDATE SKIP LOCKED"},
		[EMH_LOCK_SHARE] = {" FOR SHARE", " FOR SHARE NOWAIT", " FOR SHARE SKIP LOCKED"},
	};
	(void)c;
	if (mode < EMH_LOCK_UPDATE || mode > EMH_LOCK_SHARE || wait < EMH_LOCK_WAIT || wait > EMH_LOCK_SKIP_LOCKED)
		return NULL;
	return clause[mode][wait];
}

/*
 * COMMIT of a transaction that had failed is answered by the server with
 * the tag ROLLBACK and no error: report it, the transaction is gone.
 */
int pg_commit(emh_conn *c, emh_error *err)
{
	PGresult *res;
	int rc = 0;

	if (c->begin_pending) {
		c->begin_pending = false;
		return 0;
	}
	res = PQexec(c->pg, "COMMIT");
	if (!res || PQresultStatus(res) != PGRES_COMMAND_OK) {
		rc = pg_fail(c, res, "commit", err);
	} else if (strcmp(PQcmdStatus(res), "ROLLBACK") == 0) {
		rc = emh_error_set(err, EMH_ESTATE,
				   "commit: the transaction had failed on an earlier error and was rolled back");
		pg_error_state(err, "25P02", false);
	}
	PQclear(res);
	return rc;
}

int pg_rollback(emh_conn *c, emh_error *err)
{
	if (c->begin_pending) {
		c->begin_pending = false;
		return 0;
	}
	return pg_command(c, "ROLLBACK", "rollback", err);
}

/* Savepoint commands; a deferred BEGIN goes in the same simple-protocol message. */
static int pg_savepoint_sql(emh_conn *c, const char *verb, const char *name, const char *what, emh_error *err)
{
	char sql[160];
	if (!emh_ident_valid(name))
		return emh_error_set(err, EMH_EINVAL, "invalid savepoint name");
	snprintf(sql, sizeof sql, "%s%s%s \"%s\"", c->begin_pending ? c->begin_sql : "", c->begin_pending ? "; " : "",
		 verb, name);
	c->begin_pending = false;
	return pg_command(c, sql, what, err);
}

int pg_savepoint(emh_conn *c, const char *name, emh_error *err)
{
	return pg_savepoint_sql(c, "SAVEPOINT", name, "savepoint", err);
}

int pg_release(emh_conn *c, const char *name, emh_error *err)
{
	return pg_savepoint_sql(c, "RELEASE SAVEPOINT", name, "release savepoint", err);
}

int pg_rollback_to(emh_conn *c, const char *name, emh_error *err)
{
	return pg_savepoint_sql(c, "ROLLBACK TO SAVEPOINT", name, "rollback to savepoint", err);
}

/* ---- the migration lock ---- */

/* A session advisory lock of its own key pair ("emh_" + 1; sync's locks use "emh_" + 0). */
#define PG_MIGRATE_LOCK "1701669889, 0"

/* One pg_try_advisory_lock: *got says whether it was free. */
static int pg_try_lock(emh_conn *c, bool *got, emh_error *err)
{
	PGresult *res = PQexec(c->pg, "SELECT pg_try_advisory_lock(" PG_MIGRATE_LOCK ")");
	int rc = 0;
	if (!res || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
		rc = pg_fail(c, res, "migration lock", err);
	else
		*got = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	return rc;
}

/*
 * Polled rather than waited for in pg_advisory_lock: the wait stays bounded
 * by wait_ms without touching the session's lock_timeout.
 */
int pg_migrate_lock(emh_conn *c, int64_t wait_ms, bool *in_txn, emh_error *err)
{
	*in_txn = false;
	if (c->migrate_locked)
		return 0;
	int rc;
	if ((rc = pg_send_begin(c, err)) != 0)
		return rc;
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	int64_t deadline = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000 + wait_ms;
	for (;;) {
		bool got = false;
		if ((rc = pg_try_lock(c, &got, err)) != 0)
			return rc;
		if (got) {
			c->migrate_locked = true;
			return 0;
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
		if ((int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000 >= deadline)
			return emh_error_set(err, EMH_ETIMEOUT,
					     "another migration run held the database's migration lock (advisory lock "
					     PG_MIGRATE_LOCK ") for %lld ms", (long long)wait_ms);
		struct timespec ts = {0, 50 * 1000000L};
		nanosleep(&ts, NULL);
	}
}

int pg_migrate_unlock(emh_conn *c, bool commit, emh_error *err)
{
	(void)commit; /* a session lock: nothing to commit */
	if (!c->migrate_locked)
		return 0;
	int rc = pg_command(c, "SELECT pg_advisory_unlock(" PG_MIGRATE_LOCK ")", "migration unlock", err);
	if (rc == 0)
		c->migrate_locked = false;
	return rc;
}
