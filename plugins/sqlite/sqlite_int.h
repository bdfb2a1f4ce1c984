/* SPDX-License-Identifier: MIT */
/*
 * plugins/sqlite/sqlite_int.h: what the SQLite driver's files share: the
 * context and connection structures, and the functions one file calls in
 * another (never exported: the plugin exports only its descriptor).
 */
#ifndef EMH_SQLITE_INT_H
#define EMH_SQLITE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include <emhost/driver.h>
#include <emhost/prepcache.h>
#include <emhost/sql.h>

/* Settings of a context, read once by context_open. */
typedef struct sq_cfg {
	int busy_ms;
	int stmt_ms;       /* statement_timeout_ms: a call's deadline; 0 = none */
	bool foreign_keys;
	bool memory;       /* path was ":memory:" */
	char journal[16];  /* validated PRAGMA journal_mode value, files only */
	char sync[8];      /* validated PRAGMA synchronous value, files only */
} sq_cfg;

/*
 * Per-context state.  For ":memory:" it names one database shared by every
 * connection of the context and keeps it alive with a connection of its own
 * (an in-memory database dies with its last connection, and the pool may
 * close them all, e.g. on idle timeout).
 */
struct emh_dctx {
	sq_cfg cfg;
	char *path;      /* what sqlite3_open_v2 is given: the path or a memory URI */
	char *shown;     /* the path as configured, for messages */
	bool in_memory;  /* ":memory:" or an in-memory "file:" URI */
	sqlite3 *keeper; /* in-memory databases only */
};

struct emh_conn {
	sqlite3 *db;
	const emh_dctx *dc;
	int busy_ms;
	/* CLOCK_MONOTONIC_COARSE ns past which the progress handler interrupts the
	 * statement running; 0 = none; SQ_DEADLINE_UNARMED: a call started, and
	 * its first progress callback sets it (sq_deadline_start) */
	int64_t deadline_ns;
	emh_prepcache *stmts; /* sqlite3_stmt * of each emh_stmt, by id */
	sqlite3_stmt *ping, *begin, *commit, *rollback;
};

/* errors.c */
/* Fill err from a failed call on c (NULL: only rc is known). */
int sq_fail(emh_conn *c, int rc, const char *what, emh_error *err);
/* EMFILE or ENFILE when the call on db that failed with ext ran out of file descriptors, else 0. */
int sq_out_of_fds(sqlite3 *db, int ext);

/* session.c */
#define SQ_DEADLINE_UNARMED INT64_MIN
/* Start a call's deadline (statement_timeout_ms from its first progress callback); every entry point calls it. */
void sq_deadline_start(emh_conn *c);
/* The progress handler: non-zero (interrupt) once the deadline of c (its argument) passed. */
int sq_progress(void *arg);
bool sq_locked_wait(int rc, int busy_ms, int *waited_ms);
int sq_prepare(emh_conn *c, const char *sql, int len, unsigned flags, sqlite3_stmt **out, const char **tail,
	       emh_error *err);
int sq_step_done(emh_conn *c, sqlite3_stmt *st, const char *what, char *out, size_t cap, emh_error *err);
int sq_ping(emh_conn *c, emh_error *err);
int sq_begin(emh_conn *c, emh_error *err);
int sq_begin_isolation(emh_conn *c, int isolation, emh_error *err);
const char *sq_lock_clause(emh_conn *c, int mode, int wait);
int sq_commit(emh_conn *c, emh_error *err);
int sq_rollback(emh_conn *c, emh_error *err);
int sq_execute(emh_conn *c, const char *text, emh_error *err);
int sq_migrate_lock(emh_conn *c, int64_t wait_ms, bool *in_txn, emh_error *err);
int sq_migrate_unlock(emh_conn *c, bool commit, emh_error *err);

/* statements.c */
int sq_stmt_exec(emh_conn *c, const emh_stmt *st, const emh_value *params, emh_rowsink *sink, emh_error *err);

/* schema.c */
extern const emh_sql_dialect sq_dialect;
int sq_sync(emh_conn *c, const emh_meta *m, emh_error *err);
int sq_describe(emh_conn *c, const char *table, emh_table_desc *out, emh_error *err);

#endif
