/* SPDX-License-Identifier: MIT */
/* plugins/sqlite/sqlite.c: the SQLite driver plugin (files and shared in-memory databases). */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include <sqlite3.h>

#include <emhost/driver.h>
#include <emhost/host.h>
#include <emhost/prepcache.h>
#include <emhost/sql.h>

/* Statement ids above this are prepared per call instead of cached (ids are
 * dense and small; this only guards the cache against a runaway id). */
#define SQ_CACHE_MAX 65536u
/* Row values kept on the stack; wider results use the heap. */
#define SQ_STACK_COLS 80

/* Settings of a context, read once by context_open. */
typedef struct sq_cfg {
	int busy_ms;
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
	emh_prepcache *stmts; /* sqlite3_stmt * of each emh_stmt, by id */
	sqlite3_stmt *ping, *begin, *commit, *rollback;
};

/* ---- errors ---- */

/*
 * Portable code of a SQLite (extended) result code.  Unique and primary-key
 * violations are conflicts; other constraints are invalid data; busy and
 * locked are transient (retry the transaction); a file that cannot be read
 * any more makes the connection unusable, so the core discards it.
 */
static int sq_code(int ext)
{
	switch (ext) {
	case SQLITE_CONSTRAINT_UNIQUE:
	case SQLITE_CONSTRAINT_PRIMARYKEY:
	case SQLITE_CONSTRAINT_ROWID:
		return EMH_ECONFLICT;
	default:
		break;
	}
	switch (ext & 0xff) {
	case SQLITE_CONSTRAINT:
	case SQLITE_TOOBIG:
	case SQLITE_MISMATCH:
		return EMH_EINVAL;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return EMH_ERETRY;
	case SQLITE_CANTOPEN:
	case SQLITE_IOERR:
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		return EMH_EUNAVAILABLE;
	case SQLITE_NOMEM:
		return EMH_ENOMEM;
	default:
		return EMH_EDRIVER;
	}
}

/* Fill err from a failed call on db: what + SQLite's message (which names
 * tables, columns and constraints but never bound values). */
static int sq_fail(sqlite3 *db, int rc, const char *what, emh_error *err)
{
	int ext = db ? sqlite3_extended_errcode(db) : rc;
	const char *msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);

	/* sqlite3_extended_errcode reports the latest call on db; when that
	 * succeeded in between (a reset) trust the code we were handed. */
	if ((ext & 0xff) != (rc & 0xff)) {
		ext = rc;
		msg = sqlite3_errstr(rc);
	}
	int code = sq_code(ext);
	emh_error_set(err, code, "sqlite: %s: %s", what, msg);
	if (err) {
		err->native = ext;
		err->retryable = code == EMH_ERETRY;
	}
	return code;
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
static bool sq_locked_wait(int rc, int busy_ms, int *waited_ms)
{
	if (rc != SQLITE_LOCKED_SHAREDCACHE || *waited_ms >= busy_ms)
		return false;
	int step = *waited_ms < 10 ? 1 : 5;
	struct timespec ts = {0, step * 1000000L};
	nanosleep(&ts, NULL);
	*waited_ms += step;
	return true;
}

static int sq_prepare(emh_conn *c, const char *sql, int len, unsigned flags, sqlite3_stmt **out,
		      const char **tail, emh_error *err)
{
	int waited = 0, rc;
	do
		rc = sqlite3_prepare_v3(c->db, sql, len, flags, out, tail);
	while (rc != SQLITE_OK && sq_locked_wait(sqlite3_extended_errcode(c->db), c->busy_ms, &waited));
	if (rc != SQLITE_OK)
		return sq_fail(c->db, rc, "prepare", err);
	return 0;
}

/* Run a statement that returns nothing useful to its end, then reset it. */
static int sq_step_done(emh_conn *c, sqlite3_stmt *st, const char *what, emh_error *err)
{
	int waited = 0, rc;
	for (;;) {
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW)
			continue;
		if (rc == SQLITE_DONE)
			break;
		if (sq_locked_wait(sqlite3_extended_errcode(c->db), c->busy_ms, &waited)) {
			sqlite3_reset(st);
			continue;
		}
		rc = sq_fail(c->db, rc, what, err);
		sqlite3_reset(st);
		return rc;
	}
	sqlite3_reset(st);
	return 0;
}

/* ---- settings ---- */

static const emh_param_spec sq_params[] = {
	{"path", EMH_PARAM_STRING, 0, "database file, or \":memory:\" (required)"},
	{"busy_timeout_ms", EMH_PARAM_INT, 0, "how long to wait for a lock (default 5000)"},
	{"journal_mode", EMH_PARAM_STRING, 0, "wal, delete, truncate, persist, memory or off (default wal; files only)"},
	{"synchronous", EMH_PARAM_STRING, 0, "off, normal, full or extra (default normal; files only)"},
	{"foreign_keys", EMH_PARAM_BOOL, 0, "enforce foreign keys (default true)"},
	{NULL, 0, 0, NULL},
};

/* Copy v lower-cased into out when it is one of the NULL-terminated words. */
static bool sq_pick(const char *v, const char *const *words, char *out, size_t cap)
{
	for (size_t i = 0; words[i]; i++) {
		if (strcasecmp(v, words[i]) == 0 && strlen(words[i]) < cap) {
			strcpy(out, words[i]);
			return true;
		}
	}
	return false;
}

static int sq_cfg_load(const emh_params *p, sq_cfg *cfg, const char **path, emh_error *err)
{
	static const char *const journals[] = {"wal", "delete", "truncate", "persist", "memory", "off", NULL};
	static const char *const syncs[] = {"off", "normal", "full", "extra", NULL};
	long long busy;
	int rc;

	*path = emh_params_get(p, "path");
	if (!*path || !**path)
		return emh_error_set(err, EMH_ECONFIG, "sqlite context '%s' needs a 'path' (a file or \":memory:\")",
				     emh_params_context(p));
	cfg->memory = strcmp(*path, ":memory:") == 0;

	rc = emh_params_int(p, "busy_timeout_ms", 5000, &busy, err);
	if (rc)
		return rc;
	if (busy < 0 || busy > INT_MAX)
		return emh_error_set(err, EMH_ECONFIG, "sqlite context '%s': 'busy_timeout_ms' must be 0..%d",
				     emh_params_context(p), INT_MAX);
	cfg->busy_ms = (int)busy;

	const char *v = emh_params_get(p, "journal_mode");
	if (!sq_pick(v ? v : "wal", journals, cfg->journal, sizeof cfg->journal))
		return emh_error_set(err, EMH_ECONFIG,
				     "sqlite context '%s': 'journal_mode' is '%s', expected wal, delete, truncate, persist, memory or off",
				     emh_params_context(p), v);
	v = emh_params_get(p, "synchronous");
	if (!sq_pick(v ? v : "normal", syncs, cfg->sync, sizeof cfg->sync))
		return emh_error_set(err, EMH_ECONFIG,
				     "sqlite context '%s': 'synchronous' is '%s', expected off, normal, full or extra",
				     emh_params_context(p), v);

	v = emh_params_get(p, "foreign_keys");
	if (!v || !strcasecmp(v, "true") || !strcasecmp(v, "1") || !strcasecmp(v, "yes") || !strcasecmp(v, "on"))
		cfg->foreign_keys = true;
	else if (!strcasecmp(v, "false") || !strcasecmp(v, "0") || !strcasecmp(v, "no") || !strcasecmp(v, "off"))
		cfg->foreign_keys = false;
	else
		return emh_error_set(err, EMH_ECONFIG, "sqlite context '%s': 'foreign_keys' is '%s', expected true or false",
				     emh_params_context(p), v);
	return 0;
}

/*
 * The name of a context's in-memory database.  The memdb VFS (SQLite >=
 * 3.36) shares a database whose name starts with '/' among the connections
 * of the process and locks like a file in rollback-journal mode (SQLITE_BUSY,
 * so busy_timeout works; a write transaction holds readers of the other
 * connections off until it ends).  SQLite discourages shared-cache mode,
 * whose table locks bypass the busy handler; only older libraries get a
 * shared-cache memory URI (its SQLITE_LOCKED is waited on in
 * sq_locked_wait).  The instance string is encoded so that distinct
 * instances give distinct names.
 */
static char *sq_memory_uri(const char *instance)
{
	bool memdb = sqlite3_libversion_number() >= 3036000 && sqlite3_vfs_find("memdb") != NULL;
	emh_buf b = EMH_BUF_INIT;

	emh_buf_adds(&b, memdb ? "file:/emh-" : "file:emh-");
	for (const unsigned char *s = (const unsigned char *)instance; *s; s++) {
		if (isalnum(*s) || *s == '-')
			emh_buf_add(&b, (const char *)s, 1);
		else
			emh_buf_addf(&b, "_%02x", *s);
	}
	emh_buf_adds(&b, memdb ? "?vfs=memdb" : "?mode=memory&cache=shared");
	if (b.oom) {
		emh_buf_release(&b);
		return NULL;
	}
	return b.ptr;
}

/* Whether path is a "file:" URI of an in-memory database ("mode=memory" or
 * "vfs=memdb"), which, like ":memory:", needs a connection keeping it. */
static bool sq_uri_in_memory(const char *path)
{
	const char *q = strncmp(path, "file:", 5) == 0 ? strchr(path, '?') : NULL;

	while (q && *q) {
		q++;
		size_t n = strcspn(q, "&#");
		if ((n == 11 && strncmp(q, "mode=memory", 11) == 0) || (n == 9 && strncmp(q, "vfs=memdb", 9) == 0))
			return true;
		q += n;
		if (*q == '#')
			break;
	}
	return false;
}

static void sq_context_close(emh_dctx *dc)
{
	if (!dc)
		return;
	if (dc->keeper)
		sqlite3_close_v2(dc->keeper);
	free(dc->path);
	free(dc->shown);
	free(dc);
}

static const int sq_open_flags =
	SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_URI;

/* Check the settings; for an in-memory database create it now and keep it.
 * Files are not touched: a missing file or directory fails at connect. */
static int sq_context_open(const emh_params *p, emh_dctx **out, emh_error *err)
{
	const char *path;
	emh_dctx *dc = calloc(1, sizeof *dc);
	int rc;

	*out = NULL;
	if (!dc)
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	rc = sq_cfg_load(p, &dc->cfg, &path, err);
	if (rc)
		goto out_free;
	dc->shown = strdup(path);
	if (dc->cfg.memory) {
		char own[32];
		const char *inst = emh_params_instance(p);
		if (!inst) { /* not expected: any string unique to this context will do */
			snprintf(own, sizeof own, "%p", (void *)dc);
			inst = own;
		}
		dc->path = sq_memory_uri(inst);
	} else {
		dc->path = strdup(path);
	}
	if (!dc->shown || !dc->path) {
		rc = emh_error_set(err, EMH_ENOMEM, "out of memory");
		goto out_free;
	}
	dc->in_memory = dc->cfg.memory || sq_uri_in_memory(path);
	if (dc->in_memory) {
		rc = sqlite3_open_v2(dc->path, &dc->keeper, sq_open_flags, NULL);
		if (rc != SQLITE_OK) {
			int ext = dc->keeper ? sqlite3_extended_errcode(dc->keeper) : rc;
			rc = emh_error_set(err, EMH_EUNAVAILABLE, "cannot open in-memory sqlite database '%s': %s",
					   dc->shown, dc->keeper ? sqlite3_errmsg(dc->keeper) : sqlite3_errstr(rc));
			if (err)
				err->native = ext;
			goto out_free;
		}
		/* Holds no lock and runs nothing: it only keeps the database. */
	}
	*out = dc;
	return 0;

out_free:
	sq_context_close(dc);
	return rc;
}

/* ---- connections ---- */

/* Destroy callback of the statement cache. */
static void sq_finalize(void *stmt, void *arg)
{
	(void)arg;
	sqlite3_finalize(stmt);
}

static void sq_disconnect(emh_conn *c)
{
	if (!c)
		return;
	emh_prepcache_free(c->stmts);
	sqlite3_finalize(c->ping);
	sqlite3_finalize(c->begin);
	sqlite3_finalize(c->commit);
	sqlite3_finalize(c->rollback);
	sqlite3_close_v2(c->db);
	free(c);
}

/* Run one PRAGMA (or other statement) whose first result column, when
 * there is one, is copied to out. */
static int sq_pragma(emh_conn *c, const char *sql, char *out, size_t cap, emh_error *err)
{
	sqlite3_stmt *st;
	int rc = sq_prepare(c, sql, -1, 0, &st, NULL, err);
	if (rc)
		return rc;
	if (out && cap)
		out[0] = '\0';
	int waited = 0;
	for (;;) {
		int s = sqlite3_step(st);
		if (s == SQLITE_ROW) {
			const unsigned char *t = sqlite3_column_text(st, 0);
			if (out && cap && t && !out[0])
				snprintf(out, cap, "%s", (const char *)t);
			continue;
		}
		if (s == SQLITE_DONE)
			break;
		if (sq_locked_wait(sqlite3_extended_errcode(c->db), c->busy_ms, &waited)) {
			sqlite3_reset(st);
			continue;
		}
		rc = sq_fail(c->db, s, sql, err);
		break;
	}
	sqlite3_finalize(st);
	return rc;
}

/* EMH_EUNAVAILABLE naming the directory when path's parent does not exist
 * (SQLite would only say "unable to open database file"). */
static int sq_check_dir(const char *path, emh_error *err)
{
	const char *slash = strrchr(path, '/');
	struct stat sb;

	if (strncmp(path, "file:", 5) == 0 || !slash || slash == path)
		return 0;
	char *dir = strndup(path, (size_t)(slash - path));
	if (!dir)
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	int rc = 0;
	if (stat(dir, &sb) != 0)
		rc = emh_error_set(err, EMH_EUNAVAILABLE, "cannot open sqlite database '%s': directory '%s': %s",
				   path, dir, strerror(errno));
	else if (!S_ISDIR(sb.st_mode))
		rc = emh_error_set(err, EMH_EUNAVAILABLE, "cannot open sqlite database '%s': '%s' is not a directory",
				   path, dir);
	free(dir);
	return rc;
}

static int sq_connect(const emh_params *p, emh_dctx *dc, emh_conn **out, emh_error *err)
{
	char got[32], sql[64];
	emh_conn *c;
	int rc;

	*out = NULL;
	if (!dc) /* the core always calls context_open first; be safe anyway */
		return emh_error_set(err, EMH_ESTATE, "sqlite context '%s' was not opened", emh_params_context(p));
	if (!dc->in_memory && (rc = sq_check_dir(dc->path, err)) != 0)
		return rc;
	c = calloc(1, sizeof *c);
	if (!c)
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	c->dc = dc;
	c->busy_ms = dc->cfg.busy_ms;
	if ((rc = emh_prepcache_new(sq_finalize, NULL, &c->stmts, err)) != 0)
		goto out_close;

	rc = sqlite3_open_v2(dc->path, &c->db, sq_open_flags, NULL);
	if (rc != SQLITE_OK) {
		int ext = c->db ? sqlite3_extended_errcode(c->db) : rc;
		emh_error_set(err, EMH_EUNAVAILABLE, "cannot open sqlite database '%s': %s", dc->shown,
			      c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
		if (err)
			err->native = ext;
		rc = EMH_EUNAVAILABLE;
		goto out_close;
	}
	sqlite3_extended_result_codes(c->db, 1);
	sqlite3_busy_timeout(c->db, c->busy_ms);

	/* LIKE is case-sensitive on every emhost driver. */
	rc = sq_pragma(c, "PRAGMA case_sensitive_like=ON", NULL, 0, err);
	if (!rc)
		rc = sq_pragma(c, dc->cfg.foreign_keys ? "PRAGMA foreign_keys=ON" : "PRAGMA foreign_keys=OFF",
			       NULL, 0, err);
	/* No journal settings for a database without a file: in memory, or a
	 * temporary database (an empty path in a URI). */
	const char *fname = sqlite3_db_filename(c->db, "main");
	if (!rc && !dc->in_memory && fname && *fname) {
		snprintf(sql, sizeof sql, "PRAGMA journal_mode=%s", dc->cfg.journal);
		rc = sq_pragma(c, sql, got, sizeof got, err);
		if (!rc && strcasecmp(got, dc->cfg.journal) != 0)
			emh_params_log(p, EMH_LOG_WARN, "sqlite database '%s': journal_mode is '%s', not '%s'",
				       dc->shown, got, dc->cfg.journal);
		snprintf(sql, sizeof sql, "PRAGMA synchronous=%s", dc->cfg.sync);
		if (!rc)
			rc = sq_pragma(c, sql, NULL, 0, err);
	}
	if (rc) {
		if (err && (rc == EMH_EDRIVER || rc == EMH_EUNAVAILABLE)) {
			/* A file that is not a database shows up here, not at open. */
			char msg[EMH_ERROR_MSG_MAX];
			int native = err->native;
			bool retry = err->retryable;
			snprintf(msg, sizeof msg, "%s", err->message);
			emh_error_set(err, rc, "sqlite database '%s': %s", dc->shown, msg);
			err->native = native;
			err->retryable = retry;
		}
		goto out_close;
	}
	*out = c;
	return 0;

out_close:
	sq_disconnect(c);
	return rc;
}

/* Step a cached single-statement command (BEGIN, COMMIT, ping ...). */
static int sq_cached(emh_conn *c, sqlite3_stmt **slot, const char *sql, emh_error *err)
{
	if (!*slot) {
		int rc = sq_prepare(c, sql, -1, SQLITE_PREPARE_PERSISTENT, slot, NULL, err);
		if (rc)
			return rc;
	}
	return sq_step_done(c, *slot, sql, err);
}

static int sq_ping(emh_conn *c, emh_error *err)
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
static int sq_begin(emh_conn *c, emh_error *err)
{
	return sq_cached(c, &c->begin, "BEGIN IMMEDIATE", err);
}

static int sq_commit(emh_conn *c, emh_error *err)
{
	return sq_cached(c, &c->commit, "COMMIT", err);
}

/* SQLite rolls a transaction back by itself on some errors (out of memory,
 * disk full, I/O); rolling back then is not an error. */
static int sq_rollback(emh_conn *c, emh_error *err)
{
	if (sqlite3_get_autocommit(c->db))
		return 0;
	return sq_cached(c, &c->rollback, "ROLLBACK", err);
}

/* Raw SQL: every statement of text in turn, rows ignored.  Statements
 * before a failing one keep their effect (as with sqlite3_exec). */
static int sq_execute(emh_conn *c, const char *text, emh_error *err)
{
	const char *sql = text;
	int rc = 0;

	while (sql && *sql) {
		sqlite3_stmt *st = NULL;
		const char *tail = NULL;
		rc = sq_prepare(c, sql, -1, 0, &st, &tail, err);
		if (rc)
			return rc;
		if (st) { /* NULL for whitespace or a comment */
			rc = sq_step_done(c, st, "execute", err);
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

/* ---- statements ---- */

/* Prepare st's text and check that it has the shape the core expects. */
static int sq_stmt_prepare(emh_conn *c, const emh_stmt *st, unsigned flags, sqlite3_stmt **out, emh_error *err)
{
	int rc;

	if (st->sql_len > INT_MAX)
		return emh_error_set(err, EMH_EINVAL, "sqlite: statement too long");
	rc = sq_prepare(c, st->sql, (int)st->sql_len, flags, out, NULL, err);
	if (rc)
		return rc;
	if (!*out)
		return emh_error_set(err, EMH_EINVAL, "sqlite: empty statement");
	if (sqlite3_bind_parameter_count(*out) != st->nparams ||
	    (st->ncols && sqlite3_column_count(*out) < st->ncols)) {
		rc = emh_error_set(err, EMH_EDRIVER,
				   "sqlite: statement takes %d parameters and returns %d columns, expected %u and %u",
				   sqlite3_bind_parameter_count(*out), sqlite3_column_count(*out),
				   (unsigned)st->nparams, (unsigned)st->ncols);
		sqlite3_finalize(*out);
		*out = NULL;
	}
	return rc;
}

/* The cached statement for st, prepared on first use; *owned when it is
 * not cached and the caller finalizes it. */
static int sq_stmt_get(emh_conn *c, const emh_stmt *st, sqlite3_stmt **out, bool *owned, emh_error *err)
{
	*owned = false;
	if (st->id >= SQ_CACHE_MAX) {
		*owned = true;
		return sq_stmt_prepare(c, st, 0, out, err);
	}
	*out = emh_prepcache_get(c->stmts, st->id, st);
	if (*out)
		return 0;
	/* Not prepared yet, or the id stood for another statement (put destroys that one). */
	int rc = sq_stmt_prepare(c, st, SQLITE_PREPARE_PERSISTENT, out, err);
	if (!rc && (rc = emh_prepcache_put(c->stmts, st->id, st, *out, err)) != 0) {
		sqlite3_finalize(*out);
		*out = NULL;
	}
	return rc;
}

/*
 * Bind params by the type each value carries (which is what its union
 * holds; st->param_types is the column's type and may differ, e.g. an int64
 * key for an int32 column).  Timestamps are INTEGER microseconds, booleans
 * 0/1.  An empty blob is bound as a zero-length blob, not NULL.
 */
static int sq_bind(sqlite3_stmt *s, const emh_stmt *st, const emh_value *params, emh_error *err)
{
	static const char empty[1];

	for (int i = 0; i < st->nparams; i++) {
		const emh_value *v = &params[i];
		emh_type t = v->type ? v->type : st->param_types[i];
		int rc, n = i + 1;

		if (v->is_null) {
			rc = sqlite3_bind_null(s, n);
		} else {
			switch (t) {
			case EMH_T_BOOL:
				rc = sqlite3_bind_int(s, n, v->u.b ? 1 : 0);
				break;
			case EMH_T_INT32:
				rc = sqlite3_bind_int64(s, n, v->u.i32);
				break;
			case EMH_T_INT64:
			case EMH_T_TIMESTAMP:
				rc = sqlite3_bind_int64(s, n, v->u.i64);
				break;
			case EMH_T_DOUBLE:
				rc = sqlite3_bind_double(s, n, v->u.d);
				break;
			case EMH_T_TEXT:
			case EMH_T_JSON:
				rc = sqlite3_bind_text64(s, n, v->u.s.ptr ? v->u.s.ptr : empty, v->u.s.len,
							 SQLITE_STATIC, SQLITE_UTF8);
				break;
			case EMH_T_BLOB:
				if (v->u.s.len == 0)
					rc = sqlite3_bind_zeroblob(s, n, 0);
				else
					rc = sqlite3_bind_blob64(s, n, v->u.s.ptr, v->u.s.len, SQLITE_STATIC);
				break;
			default:
				return emh_error_set(err, EMH_EINVAL, "sqlite: parameter %d has unknown type %d", n,
						     (int)t);
			}
		}
		if (rc != SQLITE_OK)
			return sq_fail(NULL, rc, "bind", err);
	}
	return 0;
}

/* Decode the current row into cols per st->col_types.  Text and blobs
 * borrow SQLite's buffers (valid until the next step or reset). */
static int sq_decode(sqlite3_stmt *s, const emh_stmt *st, emh_value *cols, emh_error *err)
{
	static const char empty[1];

	for (int i = 0; i < st->ncols; i++) {
		emh_value *v = &cols[i];
		emh_type t = st->col_types[i];

		memset(v, 0, sizeof *v);
		v->type = t;
		if (sqlite3_column_type(s, i) == SQLITE_NULL) {
			v->is_null = true;
			continue;
		}
		switch (t) {
		case EMH_T_BOOL:
			v->u.b = sqlite3_column_int64(s, i) != 0;
			break;
		case EMH_T_INT32:
			v->u.i32 = (int32_t)sqlite3_column_int64(s, i);
			break;
		case EMH_T_INT64:
		case EMH_T_TIMESTAMP:
			v->u.i64 = sqlite3_column_int64(s, i);
			break;
		case EMH_T_DOUBLE:
			v->u.d = sqlite3_column_double(s, i);
			break;
		case EMH_T_TEXT:
		case EMH_T_JSON: {
			const unsigned char *p = sqlite3_column_text(s, i);
			if (!p)
				return emh_error_set(err, EMH_ENOMEM, "out of memory");
			v->u.s.ptr = (const char *)p;
			v->u.s.len = (size_t)sqlite3_column_bytes(s, i);
			break;
		}
		case EMH_T_BLOB: {
			const void *p = sqlite3_column_blob(s, i);
			size_t n = (size_t)sqlite3_column_bytes(s, i);
			if (!p && n)
				return emh_error_set(err, EMH_ENOMEM, "out of memory");
			v->u.s.ptr = p ? (const char *)p : empty; /* an empty blob is not NULL */
			v->u.s.len = n;
			break;
		}
		default:
			return emh_error_set(err, EMH_EINVAL, "sqlite: column %d has unknown type %d", i, (int)t);
		}
	}
	return 0;
}

static int sq_stmt_exec(emh_conn *c, const emh_stmt *st, const emh_value *params, emh_rowsink *sink,
			emh_error *err)
{
	emh_value stack[SQ_STACK_COLS], *cols = stack;
	sqlite3_stmt *s;
	bool owned, rows = false;
	int rc, waited = 0;

	rc = sq_stmt_get(c, st, &s, &owned, err);
	if (rc)
		return rc;
	if (st->ncols > SQ_STACK_COLS) {
		cols = calloc(st->ncols, sizeof *cols);
		if (!cols) {
			rc = emh_error_set(err, EMH_ENOMEM, "out of memory");
			goto out_reset;
		}
	}
	rc = sq_bind(s, st, params, err);
	if (rc)
		goto out_reset;
	for (;;) {
		int r = sqlite3_step(s);
		if (r == SQLITE_ROW) {
			rows = true;
			if (!sink || !sink->row || !st->ncols)
				continue;
			rc = sq_decode(s, st, cols, err);
			if (!rc)
				rc = sink->row(sink, cols, err);
			if (rc)
				goto out_reset;
			continue;
		}
		if (r == SQLITE_DONE)
			break;
		/* Table locks are taken before the first row: retrying is only
		 * safe while nothing has been delivered. */
		if (!rows && sq_locked_wait(sqlite3_extended_errcode(c->db), c->busy_ms, &waited)) {
			sqlite3_reset(s);
			continue;
		}
		rc = sq_fail(c->db, r, st->kind == EMH_STMT_SELECT || st->kind == EMH_STMT_COUNT ? "query"
				 : st->kind == EMH_STMT_INSERT ? "insert"
				 : st->kind == EMH_STMT_UPDATE ? "update"
				 : st->kind == EMH_STMT_DELETE ? "delete" : "statement",
			     err);
		goto out_reset;
	}
	if (sink) {
		if (st->kind == EMH_STMT_INSERT || st->kind == EMH_STMT_UPDATE || st->kind == EMH_STMT_DELETE ||
		    (st->kind == EMH_STMT_OTHER && !sqlite3_stmt_readonly(s)))
			sink->affected = sqlite3_changes(c->db);
		if (st->kind == EMH_STMT_INSERT)
			sink->last_id = sqlite3_last_insert_rowid(c->db);
	}

out_reset:
	/* Reset ends the statement's read transaction (in autocommit mode) so a
	 * cached statement never holds a lock between calls. */
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	if (owned)
		sqlite3_finalize(s);
	if (cols != stack)
		free(cols);
	return rc;
}

/* ---- schema ---- */

/*
 * Column type in CREATE TABLE.  A generated key is "INTEGER" exactly, so
 * that with PRIMARY KEY it is the rowid (assigned by SQLite; a deleted
 * largest key may be handed out again, there is no AUTOINCREMENT).
 */
static void sq_column_type(const emh_meta *m, int field, char *buf, size_t cap)
{
	const char *t;

	switch (m->entity->fields[field].type) {
	case EMH_T_DOUBLE:
		t = "REAL";
		break;
	case EMH_T_TEXT:
	case EMH_T_JSON:
		t = "TEXT";
		break;
	case EMH_T_BLOB:
		t = "BLOB";
		break;
	default: /* bool, int32, int64, timestamp (microseconds UTC) */
		t = "INTEGER";
		break;
	}
	/* (emh_sql_create_table writes NOT NULL on a non-generated key: SQLite
	 * would otherwise let a PRIMARY KEY other than the rowid hold NULL.) */
	snprintf(buf, cap, "%s", t);
}

static const emh_sql_dialect sq_dialect = {
	.quote = '"',
	.numbered_params = false,
	.returning = true,
	.limit_all = "-1",
	.like_escape = " ESCAPE '\\'",
	.begin_sql = "BEGIN IMMEDIATE", /* see sq_begin */
	.commit_sql = "COMMIT",
	.rollback_sql = "ROLLBACK",
	.column_type = sq_column_type,
	.upsert = EMH_SQL_UPSERT_ON_CONFLICT, /* 3.24+ */
};

static bool sq_has(const char *type, const char *word)
{
	return strcasestr(type, word) != NULL;
}

/*
 * Whether an existing column's declared type fits a field: the types this
 * driver creates, and others of the same SQLite affinity (INT, BIGINT ... for
 * INTEGER; FLOAT, DOUBLE for REAL; VARCHAR, CLOB for TEXT).  A generated key
 * must be declared INTEGER exactly, or it would not be the rowid and no key
 * would be generated.
 */
static bool sq_type_compatible(const emh_meta *m, int field, const char *type)
{
	const emh_field *f = &m->entity->fields[field];
	const char *t = type ? type : "";

	if (field == m->pk && m->generated)
		return strcasecmp(t, "INTEGER") == 0;
	switch (f->type) {
	case EMH_T_BOOL:
		if (!strcasecmp(t, "BOOLEAN") || !strcasecmp(t, "BOOL"))
			return true;
		/* fall through */
	case EMH_T_INT32:
	case EMH_T_INT64:
	case EMH_T_TIMESTAMP:
		return sq_has(t, "INT");
	case EMH_T_DOUBLE:
		if (sq_has(t, "INT") || sq_has(t, "CHAR") || sq_has(t, "CLOB") || sq_has(t, "TEXT") ||
		    sq_has(t, "BLOB"))
			return false;
		return sq_has(t, "REAL") || sq_has(t, "FLOA") || sq_has(t, "DOUB") || sq_has(t, "NUMERIC") ||
		       sq_has(t, "DECIMAL");
	case EMH_T_TEXT:
	case EMH_T_JSON:
		return !sq_has(t, "INT") && (sq_has(t, "CHAR") || sq_has(t, "CLOB") || sq_has(t, "TEXT"));
	case EMH_T_BLOB:
		return !strcasecmp(t, "BLOB") || !*t;
	default:
		return false;
	}
}

/* Names and declared types of table's columns; *n == 0 when it does not exist. */
static int sq_table_info(emh_conn *c, const emh_meta *m, char ***names, char ***types, size_t *n,
			 emh_error *err)
{
	emh_buf q = EMH_BUF_INIT;
	sqlite3_stmt *st = NULL;
	size_t cap = 0;
	int rc;

	*names = *types = NULL;
	*n = 0;
	emh_buf_adds(&q, "PRAGMA table_info(");
	emh_buf_ident(&q, &sq_dialect, m->entity->table);
	emh_buf_adds(&q, ")");
	if (q.oom) {
		emh_buf_release(&q);
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	}
	rc = sq_prepare(c, q.ptr, -1, 0, &st, NULL, err);
	emh_buf_release(&q);
	if (rc)
		return rc;
	int waited = 0;
	for (;;) {
		int s = sqlite3_step(st);
		if (s == SQLITE_DONE)
			break;
		if (s != SQLITE_ROW) {
			if (*n == 0 && sq_locked_wait(sqlite3_extended_errcode(c->db), c->busy_ms, &waited)) {
				sqlite3_reset(st);
				continue;
			}
			rc = sq_fail(c->db, s, "table_info", err);
			break;
		}
		if (*n == cap) {
			size_t nc = cap ? cap * 2 : 16;
			char **a = realloc(*names, nc * sizeof *a), **b;
			if (a)
				*names = a;
			b = a ? realloc(*types, nc * sizeof *b) : NULL;
			if (!b) {
				rc = emh_error_set(err, EMH_ENOMEM, "out of memory");
				break;
			}
			*types = b;
			cap = nc;
		}
		const unsigned char *name = sqlite3_column_text(st, 1), *type = sqlite3_column_text(st, 2);
		(*names)[*n] = strdup(name ? (const char *)name : "");
		(*types)[*n] = strdup(type ? (const char *)type : "");
		(*n)++;
		if (!(*names)[*n - 1] || !(*types)[*n - 1]) {
			rc = emh_error_set(err, EMH_ENOMEM, "out of memory");
			break;
		}
	}
	sqlite3_finalize(st);
	return rc;
}

static void sq_strv_free(char **v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free(v[i]);
	free(v);
}

static int sq_exec_buf(emh_conn *c, emh_buf *b, emh_error *err)
{
	if (b->oom)
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	return sq_execute(c, b->ptr, err);
}

/*
 * Create the table when missing, else check its columns; then create any
 * missing index.  In one IMMEDIATE transaction (unless one is open) so that
 * processes syncing the same file at once do not race.
 */
static int sq_sync(emh_conn *c, const emh_meta *m, emh_error *err)
{
	const emh_sql_dialect *d = &sq_dialect;
	char **names = NULL, **types = NULL;
	emh_buf b = EMH_BUF_INIT;
	bool own_tx = sqlite3_get_autocommit(c->db) != 0;
	size_t n = 0;
	int rc;

	if (own_tx && (rc = sq_begin(c, err)) != 0)
		return rc;
	rc = sq_table_info(c, m, &names, &types, &n, err);
	if (rc)
		goto out_rollback;
	if (n == 0) {
		rc = emh_sql_create_table(d, m, &b);
		if (!rc)
			rc = sq_exec_buf(c, &b, err);
		else
			rc = emh_error_set(err, rc, "out of memory");
	} else {
		rc = emh_sql_check_columns(m, (const char *const *)names, (const char *const *)types, n,
					   sq_type_compatible, err);
	}
	for (size_t i = 0, ni = emh_sql_index_count(m); !rc && i < ni; i++) {
		const char *name;
		emh_buf_reset(&b);
		rc = emh_sql_create_index(d, m, i, true, &b, &name);
		if (rc)
			rc = emh_error_set(err, rc, "out of memory");
		else
			rc = sq_exec_buf(c, &b, err);
	}
	if (rc)
		goto out_rollback;
	if (own_tx)
		rc = sq_commit(c, err);
	if (rc)
		goto out_rollback;
	emh_buf_release(&b);
	sq_strv_free(names, n);
	sq_strv_free(types, n);
	return 0;

out_rollback:
	if (own_tx)
		sq_rollback(c, NULL);
	emh_buf_release(&b);
	sq_strv_free(names, n);
	sq_strv_free(types, n);
	return rc;
}

/* ---- the descriptor ---- */


static const char *const sq_schemes[] = {"sqlite", NULL};

EMH_DRIVER_EXPORT const emh_driver emh_driver_descriptor = {
	EMH_DRIVER_HEADER,
	.name = "sqlite",
	.version = "1.0",
	.description = "SQLite files and shared in-memory databases",
	.caps = EMH_CAP_SQL | EMH_CAP_TRANSACTIONS | EMH_CAP_SAVEPOINTS | EMH_CAP_ATOMIC_FLUSH |
		EMH_CAP_RETURNING | EMH_CAP_UPSERT,
	.url_schemes = sq_schemes,
	.params = sq_params,
	.context_open = sq_context_open,
	.context_close = sq_context_close,
	.connect = sq_connect,
	.disconnect = sq_disconnect,
	.ping = sq_ping,
	.execute = sq_execute,
	.sync = sq_sync,
	.begin = sq_begin,
	.commit = sq_commit,
	.rollback = sq_rollback,
	.dialect = &sq_dialect,
	.stmt_exec = sq_stmt_exec,
};
