/* SPDX-License-Identifier: MIT */
/*
 * plugins/postgres/postgres_int.h: what the PostgreSQL driver's files share:
 * the connection structure, and the functions one file calls in another
 * (never exported: the plugin exports only its descriptor).
 */
#ifndef EMH_POSTGRES_INT_H
#define EMH_POSTGRES_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include <emhost/driver.h>
#include <emhost/prepcache.h>
#include <emhost/sql.h>

struct emh_conn {
	PGconn *pg;
	/* BEGIN asked for but not sent yet: it goes out with the next statement */
	bool begin_pending;
	/* its text: "BEGIN", or "BEGIN ISOLATION LEVEL ..." (static) */
	const char *begin_sql;
	/* holds the migration lock (a session advisory lock) */
	bool migrate_locked;
	/* statements prepared on this connection, as "emh_<id>", by id (PG_PREPARED each) */
	emh_prepcache *stmts;
	/* parameter scratch, grown to the largest statement seen */
	const char **pvals;
	int *plens;
	int *pfmts;
	uint64_t *pbuf;
	size_t pcap;
	/* decoded row scratch */
	emh_value *row;
	Oid *rowtypes;
	size_t rowcap;
};

/* errors.c */
void pg_clean_message(char *dst, size_t cap, const char *src, const char *password);
void pg_error_state(emh_error *err, const char *state, bool retryable);
int pg_fail(emh_conn *c, const PGresult *res, const char *what, emh_error *err);
int pg_command(emh_conn *c, const char *sql, const char *what, emh_error *err);

/* session.c */
int pg_send_begin(emh_conn *c, emh_error *err);
int pg_ping(emh_conn *c, emh_error *err);
int pg_execute(emh_conn *c, const char *text, emh_error *err);
int pg_begin(emh_conn *c, emh_error *err);
int pg_begin_isolation(emh_conn *c, int isolation, emh_error *err);
const char *pg_lock_clause(emh_conn *c, int mode, int wait);
int pg_commit(emh_conn *c, emh_error *err);
int pg_rollback(emh_conn *c, emh_error *err);
int pg_savepoint(emh_conn *c, const char *name, emh_error *err);
int pg_release(emh_conn *c, const char *name, emh_error *err);
int pg_rollback_to(emh_conn *c, const char *name, emh_error *err);
int pg_migrate_lock(emh_conn *c, int64_t wait_ms, bool *in_txn, emh_error *err);
int pg_migrate_unlock(emh_conn *c, bool commit, emh_error *err);

/* statements.c */
int pg_stmt_exec(emh_conn *c, const emh_stmt *st, const emh_value *params, emh_rowsink *sink, emh_error *err);

/* schema.c */
extern const emh_sql_dialect pg_dialect;
int pg_sync(emh_conn *c, const emh_meta *m, emh_error *err);
int pg_describe(emh_conn *c, const char *table, emh_table_desc *out, emh_error *err);

#endif
