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
#include <pthread.h>
#include <sys/types.h>

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
	/* the failure pg_fail reported last was "cached plan must not change
	 * result type" (pg_stale_statement reads it) */
	bool plan_changed;
	/* parameter scratch, grown to the largest statement seen */
	const char **pvals;
	int *plens;
	int *pfmts;
	uint64_t *pbuf;
	size_t pcap;
	/* decoded row scratch */
	emh_value *row;
	size_t rowcap;
	/* deadlines in ms (0: none): of a call (statement_timeout_ms), of a ping
	 * (the smaller of that and connect_timeout_ms) */
	int stmt_ms, ping_ms;
	const char *ping_key; /* the key ping_ms comes from */
	/* the call in progress: its length in ms (0: none) and key, and the
	 * CLOCK_MONOTONIC ms it must end by (0: not armed yet; pg_call arms it
	 * lazily, at the call's first wait) */
	int64_t deadline_ms;
	int deadline_len;
	const char *deadline_key;
	/* a call passed its deadline: the connection is never used again */
	bool abandoned;
	/* its context's state (the cancel requests in flight) */
	emh_dctx *dc;
};

/*
 * A context's state: the cancel requests sent for its calls that passed
 * their deadline, each a child process (io.c) that may still run.  At most
 * PG_CANCEL_MAX at once: beyond, a timed-out statement is left to the
 * server's statement_timeout.
 */
#define PG_CANCEL_MAX 16
struct emh_dctx {
	pthread_mutex_t lock;
	/* how long one cancel request may take (connect_timeout_ms, 5000 when 0) */
	int cancel_ms;
	/* pid 0: free, -1: being started, > 0: a child not reaped yet */
	struct pg_canceller {
		pid_t pid;
		int64_t due_ms; /* CLOCK_MONOTONIC ms its own timer kills it at */
	} cancel[PG_CANCEL_MAX];
};

/* errors.c */
/* Portable code of a SQLSTATE (EMH_EDRIVER when unknown); *retryable set. */
int pg_sqlstate_code(const char *s, bool *retryable);
void pg_clean_message(char *dst, size_t cap, const char *src, const char *const *passwords, size_t npw);
void pg_error_state(emh_error *err, const char *state, bool retryable);
int pg_fail(emh_conn *c, const PGresult *res, const char *what, emh_error *err);
int pg_command(emh_conn *c, const char *sql, const char *what, emh_error *err);

/* io.c: round trips under the call's deadline */
#define PG_STMT_KEY "statement_timeout_ms"
int64_t pg_now_ms(void);
/* Every entry point starts with this: the call's deadline, ms (0: none) from
 * its first wait for the server, and the key it comes from; EMH_EUNAVAILABLE
 * on an abandoned connection. */
int pg_call(emh_conn *c, int ms, const char *key, emh_error *err);
/* The next result of what was sent (*out NULL: no more), or EMH_ETIMEOUT
 * (its message starts with what, unless NULL). */
int pg_result(emh_conn *c, const char *what, PGresult **out, emh_error *err);
/* Every result of what was sent; *out the last (PQexec's rule), or EMH_ETIMEOUT. */
int pg_collect(emh_conn *c, const char *what, PGresult **out, emh_error *err);
/* PQexec and PQexecParams (text parameters) under the deadline: 0 with *out
 * the result to check (may be NULL), or the failure to send, or EMH_ETIMEOUT. */
int pg_run(emh_conn *c, const char *sql, const char *what, PGresult **out, emh_error *err);
int pg_run_params(emh_conn *c, const char *sql, int n, const char *const *vals, const char *what, PGresult **out,
		  emh_error *err);
/* End a COPY that raw SQL started, so the connection stays usable. */
int pg_copy_drain(emh_conn *c, ExecStatusType s, const char *what, emh_error *err);
/* A context's state, cancel requests bounded by cancel_ms; NULL when out of memory. */
emh_dctx *pg_dctx_new(int cancel_ms);
/* Reap its cancel requests (those still running get a short grace, then are killed) and free it. */
void pg_dctx_free(emh_dctx *dc);
/* Collect the cancel requests of dc that ended (never waits). */
void pg_cancel_reap(emh_dctx *dc);

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
int pg_position(emh_conn *c, char *buf, size_t cap, emh_error *err);
int pg_replayed(emh_conn *c, const char *pos, int64_t wait_ms, bool *yes, emh_error *err);
int pg_lag_ms(emh_conn *c, int64_t *lag, emh_error *err);

/* statements.c */
/* A statement prepared on a connection: the statement cache's handle (its destroy callback frees it). */
typedef struct pg_prep pg_prep;
void pg_prep_free(void *handle, void *arg);
int pg_stmt_exec(emh_conn *c, const emh_stmt *st, const emh_value *params, emh_rowsink *sink, emh_error *err);

/* schema.c */
extern const emh_sql_dialect pg_dialect;
int pg_sync(emh_conn *c, const emh_meta *m, emh_error *err);
int pg_describe(emh_conn *c, const char *table, emh_table_desc *out, emh_error *err);

#endif
