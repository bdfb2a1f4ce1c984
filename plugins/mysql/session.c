/* SPDX-License-Identifier: MIT */
/* plugins/mysql/session.c: what runs on a connection outside compiled statements: raw SQL, ping, the
 * migration lock and the replication position, replay check and lag. */
#include "config.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mysql.h>

#include <emhost/driver.h>

#include "mysql_int.h"

/* Run text (several statements allowed) and drain every result. */
int my_run_text(emh_conn *c, const char *text, size_t len, const char *what, const char *table,
		emh_error *err)
{
	int status;
	if (mysql_real_query(c->my, text, (unsigned long)len) != 0) {
		if (mysql_errno(c->my) == MY_ER_EMPTY_QUERY)
			return 0;
		return my_conn_fail(c, what, table, err);
	}
	do {
		MYSQL_RES *res = mysql_store_result(c->my);
		if (res)
			mysql_free_result(res);
		else if (mysql_field_count(c->my) != 0)
			return my_conn_fail(c, what, table, err);
		status = mysql_next_result(c->my);
	} while (status == 0);
	if (status > 0 && mysql_errno(c->my) != MY_ER_EMPTY_QUERY)
		return my_conn_fail(c, what, table, err);
	return 0;
}

static bool my_blank(const char *s)
{
	for (; *s; s++)
		if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r' && *s != ';')
			return false;
	return true;
}

int my_execute(emh_conn *c, const char *text, emh_error *err)
{
	int rc = my_call_enter(c, err);
	if (rc)
		return rc;
	if (!text || my_blank(text))
		return 0;
	return my_deadline(c, my_run_text(c, text, strlen(text), "execute", NULL, err), err);
}

/* SET TRANSACTION sets the level of the next transaction only. */
int my_begin_isolation(emh_conn *c, int isolation, emh_error *err)
{
	static const char *const sql[] = {
		[EMH_ISO_READ_COMMITTED] = "SET TRANSACTION ISOLATION LEVEL READ COMMITTED; START TRANSACTION",
		[EMH_ISO_REPEATABLE_READ] = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ; START TRANSACTION",
		[EMH_ISO_SERIALIZABLE] = "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE; START TRANSACTION",
	};
	int rc = my_call_enter(c, err);
	if (rc)
		return rc;
	if (isolation < EMH_ISO_READ_COMMITTED || isolation > EMH_ISO_SERIALIZABLE)
		return emh_error_set(err, EMH_EUNSUPPORTED, "begin: no isolation level %d", isolation);
	return my_deadline(c, my_run_text(c, sql[isolation], strlen(sql[isolation]), "begin", NULL, err), err);
}

/* Row locks with NOWAIT and SKIP LOCKED: MySQL 8.0.1 and MariaDB 10.6 on. */
static bool my_has_locks(const emh_conn *c)
{
	return c->server_version >= (c->mariadb ? 100600UL : 80001UL);
}

uint64_t my_conn_caps(emh_conn *c)
{
	return my_has_locks(c) ? ~UINT64_C(0) : ~EMH_CAP_LOCKS;
}

/* MariaDB has no FOR SHARE: its share lock is LOCK IN SHARE MODE (which, on
 * MySQL 8, takes neither NOWAIT nor SKIP LOCKED). */
const char *my_lock_clause(emh_conn *c, int mode, int wait)
{
	static const char *const mysql[3][3] = {
		[EMH_LOCK_UPDATE] = {" FOR UPDATE", " FOR UPDATE NOWAIT", " FOR UPDATE SKIP LOCKED"},
		[EMH_LOCK_SHARE] = {" FOR SHARE", " FOR SHARE NOWAIT", " FOR SHARE SKIP LOCKED"},
	};
	static const char *const mariadb[3][3] = {
		[EMH_LOCK_UPDATE] = {" FOR UPDATE", " FOR UPDATE NOWAIT", " FOR UPDATE SKIP LOCKED"},
		[EMH_LOCK_SHARE] = {" LOCK IN SHARE MODE", " LOCK IN SHARE MODE NOWAIT", " LOCK IN SHARE MODE SKIP LOCKED"},
	};
	if (!my_has_locks(c) || mode < EMH_LOCK_UPDATE || mode > EMH_LOCK_SHARE || wait < EMH_LOCK_WAIT ||
	    wait > EMH_LOCK_SKIP_LOCKED)
		return NULL;
	return (c->mariadb ? mariadb : mysql)[mode][wait];
}

/* A stopped server holds the ping for the read timeout (the client library
 * takes its timeouts at connect only): statement_timeout_ms, not connect_timeout_ms. */
int my_ping(emh_conn *c, emh_error *err)
{
	int rc = my_call_enter(c, err);
	if (rc)
		return rc;
	if (mysql_ping(c->my) != 0) {
		my_conn_fail(c, "ping", NULL, err);
		/* A ping that fails for any reason means the connection is unusable. */
		if (err) {
			err->code = EMH_EUNAVAILABLE;
			err->retryable = false;
		}
		return my_deadline(c, EMH_EUNAVAILABLE, err);
	}
	return 0;
}

/* ---- the migration lock ---- */

/* GET_LOCK names are server-wide: this one is of the connection's database. */
#define MY_LOCK_NAME "CONCAT('emh_migrate_', LEFT(SHA2(COALESCE(DATABASE(), ''), 256), 40))"

/*
 * The wait is its own deadline, wait_ms, but each GET_LOCK is a call under
 * statement_timeout_ms (the socket read timeout, the session's
 * max_statement_time / MAX_EXECUTION_TIME would end a longer one as a
 * timeout and lose the connection): it waits in slices of whole seconds
 * within half of the shorter of the two, and polls when that is under a
 * second.
 */
int my_migrate_lock(emh_conn *c, int64_t wait_ms, bool *in_txn, emh_error *err)
{
	*in_txn = false;
	if (c->migrate_locked)
		return 0;
	int rc = my_thread_enter(err);
	if (rc)
		return rc;
	long long cap_ms = c->stmt_ms;
	if (c->rto_s && (!cap_ms || (long long)c->rto_s * 1000 < cap_ms))
		cap_ms = (long long)c->rto_s * 1000;
	int64_t deadline = my_now_ms() + wait_ms;
	for (;;) {
		c->call_ms = my_call_clock_ms();
		int64_t left = deadline - my_now_ms();
		long long slice = left > 0 ? (left + 999) / 1000 : 0;
		if (cap_ms && slice > cap_ms / 2000)
			slice = cap_ms / 2000;
		char secs[32];
		snprintf(secs, sizeof secs, "%lld", slice);
		my_strtab t;
		rc = my_select_strings(c, "SELECT GET_LOCK(" MY_LOCK_NAME ", ?)", secs, 1, &t, "migration lock", NULL,
				       err);
		if (rc)
			return my_deadline(c, rc, err);
		const char *got = t.n ? t.v[0] : "";
		bool held = strcmp(got, "0") == 0;
		if (strcmp(got, "1") == 0)
			c->migrate_locked = true;
		else if (!held)
			rc = emh_error_set(err, EMH_EDRIVER, "GET_LOCK of the migration lock failed");
		my_strtab_release(&t);
		if (!held)
			return rc;
		if (my_now_ms() >= deadline)
			return emh_error_set(err, EMH_ETIMEOUT,
					     "another migration run held the database's migration lock (GET_LOCK) for "
					     "%lld ms", (long long)wait_ms);
		if (slice == 0) {
			struct timespec ts = {0, 50 * 1000000L};
			nanosleep(&ts, NULL);
		}
	}
}

int my_migrate_unlock(emh_conn *c, bool commit, emh_error *err)
{
	(void)commit; /* a lock of the session: nothing to commit */
	if (!c->migrate_locked)
		return 0;
	my_strtab t;
	int rc = my_call_enter(c, err);
	if (!rc)
		rc = my_deadline(c,
				 my_select_strings(c, "SELECT RELEASE_LOCK(" MY_LOCK_NAME ")", NULL, 1, &t,
						   "migration unlock", NULL, err),
				 err);
	if (!rc) {
		c->migrate_locked = false;
		my_strtab_release(&t);
	}
	return rc;
}

/* ---- read replicas (EMH_CAP_REPLICAS) ---- */

/* The GTID position of the binary log: it holds every transaction committed before the call. */
int my_position(emh_conn *c, char *buf, size_t cap, emh_error *err)
{
	my_strtab t;
	int rc = my_call_enter(c, err);
	if (!rc)
		rc = my_deadline(c, my_select_strings(c, "SELECT @@gtid_binlog_pos", NULL, 1, &t, "replication position",
						      NULL, err), err);
	if (rc)
		return rc;
	snprintf(buf, cap, "%s", t.n ? t.v[0] : "");
	my_strtab_release(&t);
	return 0;
}

/* MASTER_GTID_WAIT with a short timeout: 0 when the replica applied pos, -1 when not within it. */
int my_replayed(emh_conn *c, const char *pos, int64_t wait_ms, bool *yes, emh_error *err)
{
	char sql[96];
	my_strtab t;
	*yes = false;
	snprintf(sql, sizeof sql, "SELECT MASTER_GTID_WAIT(?, %lld.%03lld)", (long long)(wait_ms / 1000),
		 (long long)(wait_ms % 1000));
	int rc = my_call_enter(c, err);
	if (!rc)
		rc = my_deadline(c, my_select_strings(c, sql, pos, 1, &t, "replay position", NULL, err), err);
	if (rc)
		return rc;
	const char *v = t.n ? t.v[0] : "";
	*yes = strcmp(v, "0") == 0;
	my_strtab_release(&t);
	return 0;
}

/*
 * SHOW SLAVE STATUS's Seconds_Behind_Master in ms (whole seconds: the
 * server counts no finer).  NULL there means the SQL or the IO thread is
 * stopped (or not connected to its primary), and no row means the server
 * replicates from nothing: either way it falls behind without bound, which
 * is EMH_LAG_INFINITE, never "cannot tell".  Read by name: the columns
 * differ between versions (MySQL 8.0.22 on: SHOW REPLICA STATUS,
 * Seconds_Behind_Source; 8.4 has no SHOW SLAVE STATUS).
 */
int my_lag_ms(emh_conn *c, int64_t *lag, emh_error *err)
{
	const char *sql = !c->mariadb && c->server_version >= 80022UL ? "SHOW REPLICA STATUS" : "SHOW SLAVE STATUS";
	*lag = -1;
	int rc = my_call_enter(c, err);
	if (rc)
		return rc;
	if (mysql_real_query(c->my, sql, (unsigned long)strlen(sql)) != 0)
		return my_deadline(c, my_conn_fail(c, "replica lag", NULL, err), err);
	MYSQL_RES *res = mysql_store_result(c->my);
	if (!res)
		return my_deadline(c, my_conn_fail(c, "replica lag", NULL, err), err);
	unsigned nf = mysql_num_fields(res), col = nf;
	MYSQL_FIELD *fields = mysql_fetch_fields(res);
	for (unsigned i = 0; i < nf && col == nf; i++)
		if (strcmp(fields[i].name, "Seconds_Behind_Master") == 0 || strcmp(fields[i].name, "Seconds_Behind_Source") == 0)
			col = i;
	MYSQL_ROW row = col < nf ? mysql_fetch_row(res) : NULL;
	if (col == nf)
		rc = emh_error_set(err, EMH_EDRIVER, "replica lag: %s has no Seconds_Behind_Master", sql);
	else if (!row || !row[col])
		*lag = EMH_LAG_INFINITE;
	else {
		char *end;
		long long s = strtoll(row[col], &end, 10);
		if (*end || s < 0)
			rc = emh_error_set(err, EMH_EDRIVER, "replica lag: Seconds_Behind_Master '%s'", row[col]);
		else
			*lag = s > INT64_MAX / 1000 ? EMH_LAG_INFINITE : (int64_t)s * 1000;
	}
	mysql_free_result(res);
	while (mysql_next_result(c->my) == 0) /* none expected; the connection stays in step */
		mysql_free_result(mysql_store_result(c->my));
	return rc;
}
