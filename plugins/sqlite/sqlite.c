/* SPDX-License-Identifier: MIT */
/*
 * plugins/sqlite/sqlite.c: the SQLite driver plugin (files and shared
 * in-memory databases): its descriptor, the context's settings and state,
 * and opening and closing connections.  The other files: errors.c (result
 * codes), session.c (lock waits, ping, transactions, raw SQL), statements.c
 * (compiled statements), schema.c (dialect and schema sync).
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <sqlite3.h>

#include <emhost/driver.h>
#include <emhost/host.h>
#include <emhost/prepcache.h>
#include <emhost/sql.h>

#include "sqlite_int.h"

/* ---- settings ---- */

static const emh_param_spec sq_params[] = {
	{.key = "path", .kind = EMH_PARAM_STRING, .help = "database file, or \":memory:\" (required)"},
	{.key = "busy_timeout_ms", .kind = EMH_PARAM_INT, .def = "5000", .min = 0, .max = INT_MAX,
	 .help = "how long to wait for a lock"},
	{.key = "journal_mode", .kind = EMH_PARAM_STRING, .def = "wal",
	 .help = "wal, delete, truncate, persist, memory or off (files only)"},
	{.key = "synchronous", .kind = EMH_PARAM_STRING, .def = "normal", .help = "off, normal, full or extra (files only)"},
	{.key = "foreign_keys", .kind = EMH_PARAM_BOOL, .def = "true", .help = "enforce foreign keys"},
	{.key = NULL},
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
	rc = sq_step_done(c, st, sql, out, cap, err);
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

/* ---- the descriptor ---- */


static const char *const sq_schemes[] = {"sqlite", "sqlite3", NULL};

EMH_DRIVER_EXPORT const emh_driver emh_driver_descriptor = {
	EMH_DRIVER_HEADER,
	.name = "sqlite",
	.version = "1.0",
	.description = "SQLite files and shared in-memory databases",
	.caps = EMH_CAP_SQL | EMH_CAP_TRANSACTIONS | EMH_CAP_SAVEPOINTS | EMH_CAP_ATOMIC_FLUSH |
		EMH_CAP_RETURNING | EMH_CAP_UPSERT | EMH_CAP_CONDITIONAL_WRITES | EMH_CAP_LOCKS | EMH_CAP_ISOLATION,
	.url_schemes = sq_schemes,
	.url_form = EMH_URL_FILE,
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
	.lock_clause = sq_lock_clause,
	.begin_isolation = sq_begin_isolation,
	.describe = sq_describe,
	.migrate_lock = sq_migrate_lock,
	.migrate_unlock = sq_migrate_unlock,
};
