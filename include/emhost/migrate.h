/* SPDX-License-Identifier: MIT */
/*
 * emhost/migrate.h: per-context migrations (a folder of numbered files,
 * recorded in the context's emh_migrations table) and the schema diff (the
 * database against the entities registered in a context).
 *
 * A context's `migrations` setting names its folder (relative paths are
 * taken from the current directory).  In it, for SQL drivers:
 *
 *   NNNN_name.sql            the migration
 *   NNNN_name.DRIVER.sql     used instead of it by that driver ("postgres")
 *   NNNN_name.down.sql       undoes it (NNNN_name.DRIVER.down.sql likewise)
 *
 * and for document drivers NNNN_name.json (a JSON array of database
 * commands) and NNNN_name.down.json.  NNNN is any number of digits; files
 * run in numeric order, gaps allowed; two migrations with one number are an
 * error naming both files.  The table records number, name, the SHA-256 of
 * the file that ran, when and how long.  docs/migrations.md has the
 * workflow.
 *
 * Every call here takes the host and a context name (NULL = the default
 * context) and is thread-safe; up and down on one database are serialised
 * across processes by the driver's migration lock.
 */
#ifndef EMHOST_MIGRATE_H
#define EMHOST_MIGRATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <emhost/entity.h>
#include <emhost/error.h>
#include <emhost/host.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct emh_schema_diff emh_schema_diff; /* below; also named in emhost/driver.h */

/* ---- migrations ---- */

/* State of one migration. */
enum {
	EMH_MIGRATION_PENDING = 1, /* a file, not applied */
	EMH_MIGRATION_APPLIED = 2, /* applied, and the file is the one that ran */
	EMH_MIGRATION_CHANGED = 3, /* applied, but the file changed since (checksum) */
	EMH_MIGRATION_MISSING = 4, /* applied, but no file has its number any more */
};

/*
 * One migration, as a file and as recorded.  Strings belong to the array
 * that holds it.  Handed out in arrays, so its size never changes (what a
 * later release adds comes through another call).
 *
 *   number, name   from the file name ("0003_add_email.sql": 3, "add_email"),
 *                  or as recorded when the file is missing
 *   file           path of the file this context's driver runs; NULL when missing
 *   down_file      path of its down file, or NULL
 *   state          EMH_MIGRATION_*
 *   checksum       lower-case hex SHA-256 of file ("" when missing)
 *   recorded       applied ones: the checksum recorded when it ran
 *   applied_at     applied ones: when (microseconds since the epoch, UTC)
 *   duration_us    applied ones: how long it took
 */
typedef struct emh_migration {
	int64_t number;
	const char *name;
	const char *file;
	const char *down_file;
	int state;
	char checksum[65];
	char recorded[65];
	emh_time applied_at;
	int64_t duration_us;
} emh_migration;

/*
 * Every migration of the context, files and records merged, by number,
 * into *out (*n entries, freed with emh_migrations_free).  Reads the folder
 * and the table; creates nothing.  Returns 0, EMH_ENOCONTEXT, EMH_ECONFIG
 * (no `migrations` setting, a folder that cannot be read, a file named
 * wrongly, two migrations with one number, a number with files for other
 * drivers only), EMH_EIO, EMH_EUNSUPPORTED, or the database's error.
 */
int emh_migrate_status(emh_host *h, const char *context, emh_migration **out, size_t *n, emh_error *err);
void emh_migrations_free(emh_migration *v, size_t n);

/* Events of emh_migrate_opts.progress. */
enum {
	EMH_MIGRATE_START = 1, /* about to run m (up or down) */
	EMH_MIGRATE_DONE = 2,  /* m ran; duration_us says how long it took */
};

/*
 * Options of emh_migrate_up and emh_migrate_down; zero-initialise.
 *
 *   to            up: apply the pending migrations numbered up to to (0: all);
 *                 down: undo the applied ones numbered above to (0: all)
 *   lock_wait_ms  how long to wait for another run on the same database
 *                 (0: 60000)
 *   progress      called before and after each migration (may be NULL), on
 *                 the calling thread, with m borrowed for the call
 */
typedef struct emh_migrate_opts {
	int64_t to;
	int64_t lock_wait_ms;
	void (*progress)(void *ud, const char *context, const emh_migration *m, int event, int64_t duration_us);
	void *ud;
} emh_migrate_opts;

/*
 * Apply the pending migrations (all, or up to opts->to), in order, under
 * the context's migration lock, creating emh_migrations if needed.  Nothing
 * runs when an applied migration's file changed or is missing, or when a
 * pending one is numbered below an applied one (each is an error naming the
 * file).  Where the driver has transactional DDL each migration runs and is
 * recorded in one transaction, so a failure leaves nothing of it; elsewhere
 * its statements run one by one and it is recorded after the last, and a
 * failure names the file, the statement and its line and says the schema
 * may be partly changed.  The run stops at the first failure; migrations
 * before it stay applied -- except where the driver holds its lock as one
 * transaction (SQLite): there the run is all or nothing, and a failure
 * that ends that transaction (its COMMIT, a timeout) applies none of it,
 * which the error says.  *done (may be NULL) counts the applied ones.
 * opts may be NULL.  Returns 0, the errors of emh_migrate_status,
 * EMH_ETIMEOUT (another run held the lock), EMH_EINVAL (a file that cannot
 * be split into statements), or the database's error.
 */
int emh_migrate_up(emh_host *h, const char *context, const emh_migrate_opts *opts, size_t *done,
		   emh_error *err);

/*
 * Undo the applied migrations numbered above opts->to, newest first, each by
 * its down file, and forget them, as emh_migrate_up runs them.  Refused
 * before anything runs (EMH_ECONFIG naming it) when one of them has no down
 * file.  Returns as emh_migrate_up.
 */
int emh_migrate_down(emh_host *h, const char *context, const emh_migrate_opts *opts, size_t *done,
		     emh_error *err);

/*
 * Write a new migration file in the context's folder, numbered one above
 * the highest there (four digits at least): NNNN_name.sql (.json for a
 * document driver), holding text (NULL: a commented template, or "[]" for
 * JSON).  name: letters, digits, '_' and '-'.  Its path goes into path (cap
 * bytes).  Never overwrites a file.  Returns 0, EMH_ENOCONTEXT, EMH_EINVAL
 * (name), EMH_ECONFIG (no folder; files as for status), EMH_EIO.
 */
int emh_migrate_create(emh_host *h, const char *context, const char *name, const char *text, char *path,
		       size_t cap, emh_error *err);

/*
 * At start-up (emhostd), for every context whose `migrate` setting says so:
 * "on-start" applies its pending migrations; "check" only reads them.  A
 * context whose migrations fail, or (check) has any not applied, changed
 * or missing, is refused: every later fork of it fails with EMH_ESCHEMA
 * saying why (emh_host_context_refusal), the reason is logged, and every
 * other context goes on.  A context whose database cannot be reached then
 * is refused likewise.  *refused (may be NULL) counts them.  Returns 0 or
 * EMH_ENOMEM.
 */
int emh_migrate_startup(emh_host *h, size_t *refused, emh_error *err);

/*
 * Why the context refuses forks (a failed or pending migration, a schema
 * that differs under schema = "check"), or NULL when it serves.  Borrowed
 * until the context is removed or the host freed (a refusal, once made,
 * stays).  Thread-safe.
 */
const char *emh_host_context_refusal(emh_host *h, const char *context);

/*
 * Change the context's schema mode now: "none", "sync" or "check" (as the
 * `schema` setting).  For tools that register entities without touching
 * the database (emhost schema diff sets "none" before loading services).
 * Call it before any fork or registration on the context.  Returns 0,
 * EMH_ENOCONTEXT, EMH_EINVAL.
 */
int emh_host_set_schema_mode(emh_host *h, const char *context, const char *mode, emh_error *err);

/* ---- schema diff ---- */

/* What a change is. */
enum {
	EMH_CHANGE_CREATE_TABLE = 1,   /* a table or collection to create (with its indexes) */
	EMH_CHANGE_ADD_COLUMN = 2,
	EMH_CHANGE_ALTER_COLUMN = 3,   /* type or nullability */
	EMH_CHANGE_CREATE_INDEX = 4,
	EMH_CHANGE_DROP_INDEX = 5,     /* an index no entity declares */
	EMH_CHANGE_DROP_COLUMN = 6,    /* a column no entity knows, with EMH_DIFF_DROP */
	EMH_CHANGE_UNKNOWN_COLUMN = 7, /* the same without it: reported, kept */
	EMH_CHANGE_REFUSED = 8,        /* a difference no statement is written for (note says why) */
};

/*
 * One change.  table: the table or collection; what: the column or index
 * (NULL for a table); statement: what removes the difference (SQL without
 * the final ';', or one JSON command), NULL for a report or a refusal;
 * note: why, or what to do by hand, or NULL.
 */
typedef struct emh_schema_change {
	int kind;
	const char *table;
	const char *what;
	const char *statement;
	const char *note;
} emh_schema_change;

/* Flags of emh_schema_diff_new. */
enum {
	EMH_DIFF_DROP = 1u << 0, /* write DROP COLUMN for columns no entity knows (else only report them) */
};

/*
 * Compare the context's database with every entity registered in it (the
 * emh_migrations table aside) into a new diff (freed with
 * emh_schema_diff_free).  Reads the database's catalogue; changes nothing.
 * Returns 0, EMH_ENOCONTEXT, EMH_EUNSUPPORTED (a driver that cannot
 * describe its tables), EMH_ENOMEM, or the database's error.
 */
int emh_schema_diff_new(emh_host *h, const char *context, unsigned flags, emh_schema_diff **out,
			emh_error *err);
void emh_schema_diff_free(emh_schema_diff *d);

/* The changes, in the order their statements must run; borrowed until the diff is freed. */
size_t emh_schema_diff_count(const emh_schema_diff *d);
const emh_schema_change *emh_schema_diff_at(const emh_schema_diff *d, size_t i);
/* Anything to do: a change other than EMH_CHANGE_UNKNOWN_COLUMN. */
bool emh_schema_diff_differs(const emh_schema_diff *d);
/*
 * The changes as the text of a migration file: SQL statements, each ending
 * with ";", notes and refusals as "--" comments; for a document driver a
 * JSON array of its commands.  Borrowed until the diff is freed; NULL on
 * out of memory.
 */
const char *emh_schema_diff_script(emh_schema_diff *d);

/*
 * Add a change (document drivers' .diff; every string copied; statement
 * and note may be NULL).  Returns 0 or EMH_ENOMEM.
 */
int emh_schema_diff_add(emh_schema_diff *d, int kind, const char *table, const char *what,
			const char *statement, const char *note);

#ifdef __cplusplus
}
#endif
#endif
