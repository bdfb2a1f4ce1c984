/* SPDX-License-Identifier: MIT */
/*
 * core/migrate_int.h: what the migration files share (never installed):
 *
 *   sha256.c         checksums of migration files
 *   migrate_files.c  a context's migration folder; splitting a file into statements
 *   migrate.c        emh_migrations, the lock, status/up/down, start-up policy, refusals
 *   schema_diff.c    a context's database against its registered entities
 */
#ifndef EMH_CORE_MIGRATE_INT_H
#define EMH_CORE_MIGRATE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <emhost/migrate.h>

#include "internal.h"

/* The table every context records its migrations in; schema diff and check leave it alone. */
#define EMH__MIGRATIONS_TABLE "emh_migrations"

/* ---- sha256.c ---- */

void emh__sha256(const void *data, size_t len, unsigned char out[32]);
/* Lower-case hex, NUL-terminated. */
void emh__sha256_hex(const void *data, size_t len, char out[65]);

/* ---- migrate_files.c ---- */

/* One migration in a folder: the files this driver uses. */
typedef struct emh__migfile {
	int64_t number;
	char *stem; /* "0003_add_email" */
	char *name; /* "add_email" */
	char *up;   /* path, or NULL when the number has a down file only */
	char *down; /* path, or NULL */
	bool up_own, down_own; /* up/down is the driver's own file (NNNN_name.DRIVER.sql) */
	char *other; /* a file of this number for another driver only (for the error), or NULL */
} emh__migfile;

typedef struct emh__migdir {
	emh__migfile *v; /* by number */
	size_t n;
} emh__migdir;

/*
 * Read folder dir for driver (its name) and extension ext ("sql" or
 * "json") into *out.  Errors (EMH_ECONFIG): a folder that cannot be read,
 * a file with the extension whose name is not NNNN_name[.DRIVER][.down].EXT,
 * two stems with one number (naming both files), a number with a down file
 * only or with files for other drivers only.
 */
int emh__migdir_read(const char *dir, const char *driver, const char *ext, emh__migdir *out, emh_error *err);
void emh__migdir_release(emh__migdir *d);

/* The whole file at path, NUL-terminated, into *text (malloc'd) and *len.  EMH_EIO naming it. */
int emh__file_read(const char *path, char **text, size_t *len, emh_error *err);

/* How a file is split into statements. */
enum {
	/* '' strings (E'' with backslashes), "" identifiers, -- and nested block
	 * comments, $tag$ quoting, BEGIN/CASE ... END blocks (SQLite triggers,
	 * PostgreSQL BEGIN ATOMIC) kept whole: PostgreSQL */
	EMH__SPLIT_SQL = 0,
	/* backslash escapes in '' and "", `` identifiers, "-- " and # comments,
	 * DELIMITER lines as in the mysql client: MySQL, MariaDB */
	EMH__SPLIT_MYSQL = 1,
	/* the elements of one JSON array, each an object: document drivers */
	EMH__SPLIT_JSON = 2,
	/* as EMH__SPLIT_SQL, but block comments do not nest: a comment ends at
	 * its first star-slash, and a slash-star inside one is refused (a reader
	 * expecting nesting would take what follows for comment, the database
	 * runs it): SQLite and the other SQL drivers */
	EMH__SPLIT_SQL_FLAT = 3,
};

/* A statement in a text: where it starts, how long, and its first line (from 1). */
typedef struct emh__span {
	size_t off, len;
	unsigned line;
} emh__span;

/*
 * Split text (len bytes) into statements without their terminators, empty
 * ones (blanks and comments) left out, into *out (malloc'd, *n entries).
 * EMH_EINVAL with the line when a quote, comment or block is not closed
 * (JSON: when text is not an array of objects), at a NUL byte, or
 * (EMH__SPLIT_SQL_FLAT) at a comment opened inside a comment; EMH_ENOMEM.
 */
int emh__split(const char *text, size_t len, int how, emh__span **out, size_t *n, emh_error *err);

/* ---- migrate.c ---- */

/* Make c refuse every later fork, saying why (the first reason stays).  Thread-safe.
 * EMH_ENOMEM: not refused (no memory for the reason). */
int emh__context_refuse(emh_context *c, const char *why);

/*
 * A context a reload adds gets its policy (migrate = "on-start"|"check") as
 * at start, without serving a fork before: emh__migrate_hold refuses c
 * (not in the host yet) until emh__migrate_startup_added, run on it once
 * inserted, replaces that with the policy's verdict.  Both: 0 or
 * EMH_ENOMEM (then c stays refused).  Nothing for a context without one.
 */
int emh__migrate_hold(emh_context *c);
int emh__migrate_startup_added(emh_host *h, const char *name);

/* ---- schema_diff.c ---- */

/* An empty diff for the driver of c (SQL statements or JSON commands). */
int emh__schema_diff_make(const emh_context *c, emh_schema_diff **out, emh_error *err);
/* Add the differences of m's table on conn to d. */
int emh__schema_diff_meta(emh__meta *m, emh_conn *conn, unsigned flags, emh_schema_diff *d, emh_error *err);
/* Does table exist (drv has .describe)?  0 or the database's error. */
int emh__table_exists(const emh_driver *drv, emh_conn *conn, const char *table, bool *exists, emh_error *err);
/*
 * schema = "check": compare m's table on conn with the entity; when they
 * differ, log the diff, refuse the context and return EMH_ESCHEMA.
 */
int emh__schema_check(emh__meta *m, emh_conn *conn, emh_error *err);

#endif
