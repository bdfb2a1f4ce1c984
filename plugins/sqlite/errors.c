/* SPDX-License-Identifier: MIT */
/* plugins/sqlite/errors.c: SQLite result codes as portable emhost errors. */
#include "config.h"

#include <errno.h>
#include <string.h>

#include <sqlite3.h>

#include <emhost/error.h>

#include "sqlite_int.h"

/*
 * Portable code of a SQLite (extended) result code.  Unique and primary-key
 * violations are conflicts; other constraints are invalid data; busy and
 * locked are transient (retry the transaction); a file that cannot be read
 * any more makes the connection unusable, so the core discards it; an
 * interrupted statement passed its deadline (the progress handler).
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
	case SQLITE_INTERRUPT:
		return EMH_ETIMEOUT;
	default:
		return EMH_EDRIVER;
	}
}

int sq_out_of_fds(sqlite3 *db, int ext)
{
	int e = db ? sqlite3_system_errno(db) : 0;
	bool fileop = (ext & 0xff) == SQLITE_CANTOPEN || (ext & 0xff) == SQLITE_IOERR;
	return fileop && (e == EMFILE || e == ENFILE) ? e : 0;
}

/* Fill err from a failed call on c: what + SQLite's message (which names
 * tables, columns and constraints but never bound values). */
int sq_fail(emh_conn *c, int rc, const char *what, emh_error *err)
{
	sqlite3 *db = c ? c->db : NULL;
	int ext = db ? sqlite3_extended_errcode(db) : rc;
	const char *msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);

	/* sqlite3_extended_errcode reports the latest call on db; when that
	 * succeeded in between (a reset) trust the code we were handed. */
	if ((ext & 0xff) != (rc & 0xff)) {
		ext = rc;
		msg = sqlite3_errstr(rc);
	}
	int fd_errno = sq_out_of_fds(db, ext);
	if (fd_errno) {
		/* The process's limit, not the database: retry once descriptors are free. */
		emh_error_set(err, EMH_ENOFD, "sqlite: %s: %s: out of file descriptors (%s)", what, msg,
			      strerror(fd_errno));
		if (err) {
			err->native = ext;
			err->retryable = true;
		}
		return EMH_ENOFD;
	}
	int code = sq_code(ext);
	if (code == EMH_ETIMEOUT && c)
		emh_error_set(err, code, "sqlite: %s: interrupted past its deadline (statement_timeout_ms=%d)", what,
			      c->dc->cfg.stmt_ms);
	else
		emh_error_set(err, code, "sqlite: %s: %s", what, msg);
	if (err) {
		err->native = ext;
		err->retryable = code == EMH_ERETRY || code == EMH_ETIMEOUT;
	}
	return code;
}
