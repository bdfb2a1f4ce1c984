/* SPDX-License-Identifier: MIT */
/*
 * plugins/postgres/session.c: what runs on a connection outside compiled
 * statements: ping, raw SQL, and transactions (BEGIN deferred to the first
 * statement, savepoints).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
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
 * A live connection answers an empty query, within the ping's deadline (a
 * stopped server must not hold the pool's check of an idle connection).  A
 * transaction left open (the core always ends its own; raw SQL may not) is
 * rolled back first, so a pooled connection never carries one to its next
 * user.
 */
int pg_ping(emh_conn *c, emh_error *err)
{
	PGTransactionStatusType ts;
	int rc = pg_call(c, c->ping_ms, c->ping_key, err);
	if (rc)
		return rc;
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

/*
 * Raw SQL through the simple protocol: several statements, run as one
 * implicit transaction unless they hold their own BEGIN/COMMIT.
 */
int pg_execute(emh_conn *c, const char *text, emh_error *err)
{
	PGresult *res;
	ExecStatusType s;
	int rc = pg_call(c, c->stmt_ms, PG_STMT_KEY, err);

	if (rc || (rc = pg_send_begin(c, err)) || (rc = pg_run(c, text, "execute", &res, err)))
		return rc;
	s = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;

	if (s == PGRES_COPY_IN || s == PGRES_COPY_OUT || s == PGRES_COPY_BOTH) {
		PQclear(res);
		if ((rc = pg_copy_drain(c, s, "execute", err)))
			return rc;
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
	int rc;

	if (c->begin_pending) {
		c->begin_pending = false;
		return 0;
	}
	if ((rc = pg_call(c, c->stmt_ms, PG_STMT_KEY, err)) || (rc = pg_run(c, "COMMIT", "commit", &res, err)))
		return rc;
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
	int rc = pg_call(c, c->stmt_ms, PG_STMT_KEY, err);
	return rc ? rc : pg_command(c, "ROLLBACK", "rollback", err);
}

/* Savepoint commands; a deferred BEGIN goes in the same simple-protocol message. */
static int pg_savepoint_sql(emh_conn *c, const char *verb, const char *name, const char *what, emh_error *err)
{
	char sql[160];
	int rc;
	if (!emh_ident_valid(name))
		return emh_error_set(err, EMH_EINVAL, "invalid savepoint name");
	if ((rc = pg_call(c, c->stmt_ms, PG_STMT_KEY, err)))
		return rc;
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

/* One pg_try_advisory_lock, a call with its own deadline: *got says whether it was free. */
static int pg_try_lock(emh_conn *c, bool *got, emh_error *err)
{
	PGresult *res;
	int rc;
	if ((rc = pg_call(c, c->stmt_ms, PG_STMT_KEY, err)) != 0 ||
	    (rc = pg_run(c, "SELECT pg_try_advisory_lock(" PG_MIGRATE_LOCK ")", "migration lock", &res, err)) != 0)
		return rc;
	if (!res || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
		rc = pg_fail(c, res, "migration lock", err);
	else
		*got = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	return rc;
}

/*
 * Polled rather than waited for in pg_advisory_lock: the wait stays bounded
 * by wait_ms, its own deadline, without touching the session's lock_timeout
 * and whatever statement_timeout_ms is (each try is a short call under it).
 */
int pg_migrate_lock(emh_conn *c, int64_t wait_ms, bool *in_txn, emh_error *err)
{
	*in_txn = false;
	if (c->migrate_locked)
		return 0;
	int rc;
	if ((rc = pg_call(c, c->stmt_ms, PG_STMT_KEY, err)) != 0 || (rc = pg_send_begin(c, err)) != 0)
		return rc;
	int64_t deadline = pg_now_ms() + wait_ms;
	for (;;) {
		bool got = false;
		if ((rc = pg_try_lock(c, &got, err)) != 0)
			return rc;
		if (got) {
			c->migrate_locked = true;
			return 0;
		}
		if (pg_now_ms() >= deadline)
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
	int rc = pg_call(c, c->stmt_ms, PG_STMT_KEY, err);
	if (rc == 0)
		rc = pg_command(c, "SELECT pg_advisory_unlock(" PG_MIGRATE_LOCK ")", "migration unlock", err);
	if (rc == 0)
		c->migrate_locked = false;
	return rc;
}

/* ---- read replicas (EMH_CAP_REPLICAS) ---- */

/* One row, one column of sql (with param when not NULL) as text into buf; a call under its deadline. */
static int pg_scalar(emh_conn *c, const char *sql, const char *param, const char *what, char *buf, size_t cap,
		     emh_error *err)
{
	PGresult *res;
	int rc = pg_call(c, c->stmt_ms, PG_STMT_KEY, err);
	if (!rc)
		rc = param ? pg_run_params(c, sql, 1, &param, what, &res, err) : pg_run(c, sql, what, &res, err);
	if (rc)
		return rc;
	if (!res || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
		rc = pg_fail(c, res, what, err);
	else
		snprintf(buf, cap, "%s", PQgetisnull(res, 0, 0) ? "" : PQgetvalue(res, 0, 0));
	PQclear(res);
	return rc;
}

/* The WAL insert position: at or past the end of every commit record written before it. */
int pg_position(emh_conn *c, char *buf, size_t cap, emh_error *err)
{
	return pg_scalar(c, "SELECT pg_current_wal_insert_lsn()::text", NULL, "replication position", buf, cap, err);
}

/* A standby has replayed pos when its last replayed LSN is at or past it (checked once: wait_ms unused). */
int pg_replayed(emh_conn *c, const char *pos, int64_t wait_ms, bool *yes, emh_error *err)
{
	(void)wait_ms;
	char v[8];
	*yes = false;
	int rc = pg_scalar(c, "SELECT COALESCE(pg_last_wal_replay_lsn() >= $1::pg_lsn, false)::text", pos,
			   "replay position", v, sizeof v, err);
	if (rc == EMH_EDRIVER && strcmp(err->sqlstate, "22P02") == 0)
		return emh_error_set(err, EMH_EINVAL, "'%s' is not a PostgreSQL WAL position", pos);
	*yes = rc == 0 && strcmp(v, "true") == 0;
	return rc;
}

/*
 * How far behind: 0 when everything received is replayed (an idle primary
 * sends nothing, so the last replayed commit's age would only grow), else
 * the age of the last replayed commit.
 */
int pg_lag_ms(emh_conn *c, int64_t *lag, emh_error *err)
{
	char v[32];
	int rc = pg_scalar(c,
			   "SELECT CASE WHEN NOT pg_is_in_recovery() THEN -1 "
			   "WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 "
			   "ELSE COALESCE((EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()) * 1000)::bigint, -1) "
			   "END::text",
			   NULL, "replica lag", v, sizeof v, err);
	*lag = rc ? -1 : strtoll(v, NULL, 10);
	return rc;
}
