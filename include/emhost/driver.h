/* SPDX-License-Identifier: MIT */
/*
 * emhost/driver.h: the driver plugin ABI.
 *
 * A driver is a shared object exporting exactly one symbol, EMH_DRIVER_SYMBOL,
 * a const emh_driver filled with designated initialisers that start with
 * EMH_DRIVER_HEADER:
 *
 *   EMH_DRIVER_EXPORT const emh_driver emh_driver_descriptor = {
 *       EMH_DRIVER_HEADER,
 *       .name = "sqlite", .version = "1.0", .caps = EMH_CAP_TRANSACTIONS | ...,
 *       .connect = sq_connect, ...
 *   };
 *
 * The loader checks the file (an ELF object for this machine, every segment
 * inside it), the ABI major and struct_size (never more than the symbol's
 * own size), copies min(struct_size, sizeof(emh_driver)) bytes into a
 * zeroed local copy (an older plugin's missing members read as NULL; a
 * newer plugin's extra ones are ignored), then checks before calling any
 * member (the plugin's constructors have run: they run inside dlopen):
 *  - the file is named after the driver: postgres.so provides "postgres"
 *    (a plugin named otherwise is refused; statically registered drivers,
 *    which have no file, are not concerned);
 *  - the required members, and the members of its kind (below);
 *  - every capability bit against the members that serve it (see EMH_CAP_*);
 *    a bit this ABI does not define is refused, unless the plugin was built
 *    against a newer minor: then it is ignored like its newer members.
 * Every refusal names the file, the member or bit, and why.  Members are
 * only ever appended.
 *
 * Two kinds of driver:
 *  - SQL drivers set .dialect and .stmt_exec.  The core compiles every
 *    entity operation (get, find, count, insert, update, delete, upsert) to
 *    SQL through the dialect, caches the text per (entity, query shape) and
 *    calls stmt_exec with bound parameters.  begin/commit/rollback and
 *    savepoints may be left NULL: the core then sends the dialect's SQL
 *    through .execute.
 *  - Document drivers leave .dialect and .stmt_exec NULL and implement the
 *    entity members .insert .update .remove .find .count themselves (the
 *    contract is above those members), plus begin/commit/rollback when they
 *    advertise EMH_CAP_TRANSACTIONS, the savepoint members with
 *    EMH_CAP_SAVEPOINTS and .upsert with EMH_CAP_UPSERT.
 *
 * Threading: a connection is used by one thread at a time; different
 * connections of a driver are used concurrently.  Drivers keep no per-host
 * state in globals (two hosts can share a process); process-wide library
 * initialisation is the driver's own business (pthread_once).
 *
 * Errors: fill emh_error with a portable code, the native code and SQLSTATE,
 * and .retryable; never put a password or bound values in the message.  The
 * core adds the context's name.  Map connection loss to EMH_EUNAVAILABLE:
 * the core then discards that connection; a unique violation (key, unique
 * field, unique index) to EMH_ECONFLICT.  .native is the client library's
 * own error number and 0 when it has none (an in-memory store, a protocol
 * without numbers): never invent one.  The conformance suite checks it is
 * kept (non-zero) unless run with --no-native-codes.
 */
#ifndef EMHOST_DRIVER_H
#define EMHOST_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <emhost/aggregate.h>
#include <emhost/em.h> /* EMH_ISO_* for begin_isolation */
#include <emhost/entity.h>
#include <emhost/error.h>
#include <emhost/host.h> /* EMH_LOG_* for emh_params_log */
#include <emhost/query.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EMH_DRIVER_ABI_MAJOR 1u
#define EMH_DRIVER_ABI_MINOR 1u
#define EMH_DRIVER_ABI_VERSION ((EMH_DRIVER_ABI_MAJOR << 16) | EMH_DRIVER_ABI_MINOR)
#define EMH_DRIVER_SYMBOL "emh_driver_descriptor"
#define EMH_DRIVER_HEADER                                                      \
	.abi_version = EMH_DRIVER_ABI_VERSION, .struct_size = sizeof(emh_driver), \
	.param_spec_size = sizeof(emh_param_spec)
#define EMH_DRIVER_EXPORT __attribute__((visibility("default")))

/*
 * Capability bits.  Append-only.  Each is checked at load against the members
 * that serve it: a driver never advertises what it cannot do.  A bit added
 * here also gets its line in core/loader.c, which refuses bits it does not know.
 */
/* begin/commit/rollback: the members, or with a dialect its SQL */
#define EMH_CAP_TRANSACTIONS (UINT64_C(1) << 0)
/* nested transactions: savepoint/release/rollback_to, or with a dialect its
 * SQL; needs EMH_CAP_TRANSACTIONS */
#define EMH_CAP_SAVEPOINTS (UINT64_C(1) << 1)
/* INSERT ... RETURNING: SQL drivers whose dialect says .returning */
#define EMH_CAP_RETURNING (UINT64_C(1) << 2)
/* emh_repo_upsert: a dialect with an upsert style (sql.h), or the .upsert member */
#define EMH_CAP_UPSERT (UINT64_C(1) << 3)
/* reserved: no member serves it yet, so the loader refuses it */
#define EMH_CAP_TWO_PHASE (UINT64_C(1) << 4)
/* has .dialect + .stmt_exec */
#define EMH_CAP_SQL (UINT64_C(1) << 5)
/* a flush (in a transaction) is all-or-nothing; needs EMH_CAP_TRANSACTIONS.
 * Without it, what a failed flush sent before the failure stays stored. */
#define EMH_CAP_ATOMIC_FLUSH (UINT64_C(1) << 6)
/* emh_repo_update_where/_delete_where and the checks of version fields
 * (EMH_F_VERSION): SQL drivers through the dialect (the core compiles them,
 * so every SQL driver has it, advertised or not), document drivers with
 * .update_where and .delete_where */
#define EMH_CAP_CONDITIONAL_WRITES (UINT64_C(1) << 7)
/* row locks (emh_q_lock): SQL drivers with .lock_clause */
#define EMH_CAP_LOCKS (UINT64_C(1) << 8)
/* transactions at a chosen isolation level (emh_em_begin_opts): .begin_isolation;
 * needs EMH_CAP_TRANSACTIONS */
#define EMH_CAP_ISOLATION (UINT64_C(1) << 9)
/* emh_repo_aggregate: SQL drivers (the core compiles it; the driver decodes
 * columns by col_types as always), or a document driver's .aggregate member */
#define EMH_CAP_AGGREGATE (UINT64_C(1) << 10)
/* causal tokens for read replicas: .position and .replayed */
#define EMH_CAP_REPLICAS (UINT64_C(1) << 11)

/* A driver's connection: each driver defines struct emh_conn in its own .c. */
typedef struct emh_conn emh_conn;
/* A driver's per-context state (optional): defined by the driver likewise. */
typedef struct emh_dctx emh_dctx;

/* ---- connection parameters ---- */

/*
 * The effective settings of a context (file, environment, URL), as strings,
 * handed to .context_open and .connect.  Valid as long as the context: a
 * driver may keep the pointer (in its emh_dctx or emh_conn) to log later
 * with emh_params_log.
 */
typedef struct emh_params emh_params;

/* Value of key, or NULL when not set.  "password" holds the resolved secret. */
const char *emh_params_get(const emh_params *p, const char *key);
/* Integer value of key (def when unset); EMH_EINVAL naming key and origin when malformed. */
int emh_params_int(const emh_params *p, const char *key, long long def, long long *out, emh_error *err);
/* Boolean value of key (def when unset): true/false, 1/0, yes/no, on/off;
 * EMH_ECONFIG naming key and origin otherwise. */
int emh_params_bool(const emh_params *p, const char *key, bool def, bool *out, emh_error *err);
/* Name of the context being connected. */
const char *emh_params_context(const emh_params *p);
/* A string unique to this context instance in this process (two hosts with a
 * context of the same name get different ones); stable for its lifetime. */
const char *emh_params_instance(const emh_params *p);
/* Log through the host's sink, tagged with the context. */
void emh_params_log(const emh_params *p, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * What keys a driver accepts in a context; anything else is a config error.
 * The array's stride is the descriptor's param_spec_size (set by
 * EMH_DRIVER_HEADER), so members appended here never shift an older
 * plugin's array: the loader reads each entry zero-extended.
 */
enum { EMH_PARAM_STRING = 1, EMH_PARAM_INT = 2, EMH_PARAM_BOOL = 3 };
enum { EMH_PARAM_SECRET = 1u << 0 };
typedef struct emh_param_spec {
	const char *key;
	int kind;       /* EMH_PARAM_* */
	unsigned flags; /* EMH_PARAM_SECRET: masked wherever it is printed */
	const char *help;
	/* ABI 1.1 */
	const char *def;  /* the value used when the key is unset (shown by check-config), or NULL */
	long long min, max; /* EMH_PARAM_INT: the accepted range, checked at start-up; min == max == 0: any */
} emh_param_spec;

/* How the core reads a URL of one of the driver's schemes (emh_driver.url_form). */
enum {
	/*
	 * scheme://user:password@host:port/database?key=value&...: split into the
	 * settings user, password (secret), host, port, database and one per query
	 * key (each must be a key the driver accepts).  One host only.
	 */
	EMH_URL_NETWORK = 0,
	/* scheme:///abs/path, scheme://rel/path, scheme::memory: -> the setting path. */
	EMH_URL_FILE = 1,
	/*
	 * Kept whole as the setting "url" and handed to the driver, which parses
	 * it (several hosts, options only the client library knows).  The core
	 * only finds the userinfo (it ends at the last '@' before the path) to
	 * mark the URL secret and mask its password wherever it is shown.
	 * Settings given as single keys override what the URL says.
	 */
	EMH_URL_WHOLE = 2,
};

/* ---- entity metadata as registered in a context ---- */

typedef struct emh_meta {
	const emh_entity *entity;
	int pk;           /* index of the primary key field */
	bool generated;   /* the key is generated by the database */
	uint32_t id;      /* unique within the context */
	const char *context;
} emh_meta;

/* ---- SQL drivers ---- */

/*
 * A compiled statement, owned by the core and valid as long as the context:
 * drivers may key a per-connection prepared-statement cache by .id (small,
 * dense, unique within the context) or by the pointer.
 */
enum {
	EMH_STMT_SELECT = 1, /* rows of the entity's fields, in field order */
	EMH_STMT_COUNT,      /* one row, one int64 column */
	EMH_STMT_INSERT,     /* with RETURNING: one row with the key */
	EMH_STMT_UPDATE,
	EMH_STMT_DELETE,
	EMH_STMT_OTHER,
};
typedef struct emh_stmt {
	const char *sql;
	size_t sql_len;
	uint32_t id;
	int kind;  /* EMH_STMT_* */
	uint16_t nparams;
	uint16_t ncols;
	const emh_type *param_types;
	const emh_type *col_types;
	const emh_meta *meta;
} emh_stmt;

/*
 * Where a driver delivers results.  .row is called once per row with
 * values typed as st->col_types (text/blob borrowed until .row returns; it
 * copies what it keeps).  A non-zero return from .row stops the statement
 * at once and is returned by stmt_exec (and .find) as it is: negative is an
 * error, 1 means "enough rows" (a lookup by key stops after its row).  The driver sets .affected (rows changed by
 * INSERT/UPDATE/DELETE) and, for INSERT without RETURNING, .last_id.
 */
typedef struct emh_rowsink {
	int (*row)(struct emh_rowsink *s, const emh_value *cols, emh_error *err);
	int64_t affected;
	int64_t last_id;
} emh_rowsink;

typedef struct emh_sql_dialect emh_sql_dialect; /* see emhost/sql.h */
typedef struct emh_table_desc emh_table_desc;   /* see emhost/sql.h */
typedef struct emh_schema_diff emh_schema_diff; /* see emhost/migrate.h */

/* ---- the descriptor ---- */

typedef struct emh_driver {
	uint32_t abi_version; /* EMH_DRIVER_ABI_VERSION */
	uint32_t struct_size; /* sizeof(emh_driver) the plugin was built with */

	const char *name;        /* required: "sqlite", "postgres", ... */
	const char *version;     /* required */
	const char *description;
	uint64_t caps;           /* EMH_CAP_* */
	/* URL schemes this driver answers ("postgres", "postgresql"), NULL-terminated. */
	const char *const *url_schemes;
	/* Accepted context keys beyond the common ones, { NULL } terminated. */
	const emh_param_spec *params;

	/*
	 * Per-context state, optional: context_open is called once when the
	 * context is created (it should do no network I/O: a database that is
	 * down must not stop the host), context_close when it is removed or the
	 * host freed, after every connection is closed.  The state is handed to
	 * connect.  Use it for what belongs to the context, not a connection
	 * (a client pool, a shared in-memory database kept alive).
	 */
	int (*context_open)(const emh_params *p, emh_dctx **out, emh_error *err);
	void (*context_close)(emh_dctx *dc);

	/* required; dc is NULL when the driver has no context_open */
	int (*connect)(const emh_params *p, emh_dctx *dc, emh_conn **out, emh_error *err);
	void (*disconnect)(emh_conn *c);
	int (*ping)(emh_conn *c, emh_error *err);
	/* Raw SQL or driver command text, several statements allowed. Required. */
	int (*execute)(emh_conn *c, const char *text, emh_error *err);
	/* Create the table/collection and indexes of m when missing; EMH_ESCHEMA
	 * naming the table and column when an existing one is incompatible. Required. */
	int (*sync)(emh_conn *c, const emh_meta *m, emh_error *err);

	/* Capabilities that hold on this connection's server (NULL = .caps). */
	uint64_t (*conn_caps)(emh_conn *c);

	/* transactions (NULL with a dialect: the dialect's SQL through .execute) */
	int (*begin)(emh_conn *c, emh_error *err);
	int (*commit)(emh_conn *c, emh_error *err);
	int (*rollback)(emh_conn *c, emh_error *err);
	int (*savepoint)(emh_conn *c, const char *name, emh_error *err);
	int (*release)(emh_conn *c, const char *name, emh_error *err);
	int (*rollback_to)(emh_conn *c, const char *name, emh_error *err);

	/* SQL drivers */
	const emh_sql_dialect *dialect;
	int (*stmt_exec)(emh_conn *c, const emh_stmt *st, const emh_value *params,
			 emh_rowsink *sink, emh_error *err);

	/*
	 * Document drivers: the entity operations.  The contract (the conformance
	 * suite checks it; tests/fixtures/memdoc.c is a complete small example):
	 *
	 * Values.  vals holds one value per field of m->entity, in field order,
	 * each of the field's own type (or NULL); text, json and blob bytes are
	 * borrowed for the call only: copy what you keep.  Text is UTF-8 without
	 * NUL bytes; a blob may be empty (len 0, not NULL).  Condition values in a
	 * query are of the field's type too: the core converts int32 <-> int64 and
	 * refuses what does not fit, so a driver never compares mixed types.
	 * Values a driver delivers to a sink may be EMH_T_INT32 or EMH_T_INT64 for
	 * any integer field (int32, int64, timestamp) -- a document store may hold
	 * either -- and the core converts them; they must fit the field.
	 *
	 * insert: a generated key field (m->generated) is NULL in vals; the driver
	 *   makes the key -- positive, unique, ascending in the order of inserts --
	 *   and writes it to *key as EMH_T_INT32 or EMH_T_INT64.  Otherwise *key is
	 *   not read.
	 * update: vals holds every field (vals[m->pk] is the key, which never
	 *   changes); mask has bit i set for each changed field i, never 0.
	 *   EMH_ENOTFOUND when no row has that key.
	 * remove: the row with that key; removing a row that is not there
	 *   succeeds (0), as SQL's DELETE of no row does: another fork may have
	 *   removed it first.
	 * Uniqueness: the driver (its database) enforces the key, EMH_F_UNIQUE
	 *   fields and unique emh_index entries on insert, update and upsert, with
	 *   EMH_ECONFLICT; the core never checks.  NULLs never conflict (several
	 *   rows may hold NULL in a unique field, as in SQL).
	 * find: the rows matching q through sink, each as one value per field in
	 *   field order (borrowed until sink->row returns).  q is NULL for "every
	 *   row, no order, no limit" (emh_repo_find(r, NULL)); every emh_query_*
	 *   accessor accepts NULL.  A non-zero return of sink->row ends the find at
	 *   once and is returned as it is (1: enough rows, e.g. a lookup by key).
	 *   Limit -1: none, 0: no rows; offset -1 or 0: none.  Without ordering
	 *   keys rows come in any order, and ties of the keys too (order by the
	 *   key last for stable pages).  Where NULLs sort is the driver's choice
	 *   (document it): SQLite, MySQL and MongoDB put them first ascending,
	 *   PostgreSQL last; the suite does not order by nullable fields.
	 * count: the number of rows matching q (NULL: all); limit, offset and
	 *   ordering do not apply.
	 * Conditions follow SQL's three-valued logic: a comparison, IN or LIKE on
	 *   a NULL field is unknown, and so is its NOT, so neither `a = 1` nor
	 *   `not (a = 1)` matches a row whose a is NULL; AND and OR combine
	 *   unknowns as SQL does; a row matches when its condition is true.  IN
	 *   with no values is false for every row, NULL or not.  Text compares
	 *   byte for byte, case-sensitively; doubles and timestamps (microseconds)
	 *   exactly.  LIKE: '%' any run of characters, '_' exactly one character
	 *   (a UTF-8 code point, not a byte: "\xC3\xA9" matches '_'), a backslash
	 *   makes the next character literal; the pattern arrives unprocessed.
	 *   Blobs take eq/ne only, json only the null tests.
	 */
	int (*insert)(emh_conn *c, const emh_meta *m, const emh_value *vals, emh_value *key, emh_error *err);
	int (*update)(emh_conn *c, const emh_meta *m, const emh_value *vals, uint64_t mask, emh_error *err);
	int (*remove)(emh_conn *c, const emh_meta *m, const emh_value *key, emh_error *err);
	int (*find)(emh_conn *c, const emh_meta *m, const emh_query *q, emh_rowsink *sink, emh_error *err);
	int (*count)(emh_conn *c, const emh_meta *m, const emh_query *q, int64_t *n, emh_error *err);

	/* ---- ABI 1.1 ---- */

	/* sizeof(emh_param_spec) the plugin was built with (EMH_DRIVER_HEADER sets
	 * it); 0 in 1.0 plugins, whose entries have the 1.0 size. */
	uint32_t param_spec_size;
	/* EMH_URL_*: how URLs of url_schemes are read (0 = EMH_URL_NETWORK). */
	int url_form;
	/*
	 * Remove the table/collection of m with everything in it; no error when
	 * it does not exist.  For tests and tools (emh_host_drop_schema).
	 * Optional: SQL drivers may leave it NULL (the core then sends the
	 * dialect's DROP TABLE through .execute); a document driver without it
	 * cannot have its tables dropped by the host.
	 */
	int (*drop)(emh_conn *c, const emh_meta *m, emh_error *err);
	/*
	 * Document drivers (emh_repo_upsert): insert vals, or replace every field
	 * of the row with vals' key, in one operation.  vals as for insert, but
	 * the key is always set (upsert is refused for generated keys before the
	 * driver sees it); EMH_ECONFLICT when another unique field or index would
	 * be broken, and when the row with that key holds other values in the
	 * entity's EMH_F_FILTER fields than vals (another tenant's row: never
	 * replaced; MongoDB: the filter fields join _id in the replace's filter,
	 * so the upsert's insert meets the duplicate key).  Required when a document driver advertises EMH_CAP_UPSERT,
	 * unused with a dialect (the core compiles the dialect's upsert).
	 */
	int (*upsert)(emh_conn *c, const emh_meta *m, const emh_value *vals, emh_error *err);
	/*
	 * Document drivers (EMH_CAP_CONDITIONAL_WRITES): apply sets to every row
	 * matching q, or delete those rows, each in one operation, and write the
	 * number of rows matched (not only those whose values changed) to
	 * *affected.  q as for count (NULL: every row; no order, limit or offset).
	 * sets (n >= 1) name each field at most once and never the key; a VALUE
	 * is of the field's type or NULL (nullable fields only); an ADD is on an
	 * int32, int64 or double field that is not nullable, with a non-NULL
	 * delta of the field's type.  Uniqueness as for update (EMH_ECONFLICT).
	 * The core also sends the checked writes of version fields through them
	 * (q: key = k AND version = v), so each must be atomic per row.
	 */
	int (*update_where)(emh_conn *c, const emh_meta *m, const emh_query *q, const emh_set *sets, size_t n,
			    int64_t *affected, emh_error *err);
	int (*delete_where)(emh_conn *c, const emh_meta *m, const emh_query *q, int64_t *affected, emh_error *err);
	/*
	 * SQL drivers (EMH_CAP_LOCKS): the text that ends a SELECT to lock its
	 * rows on this connection's server, for mode EMH_LOCK_UPDATE or
	 * EMH_LOCK_SHARE and wait EMH_LOCK_WAIT, _NOWAIT or _SKIP_LOCKED
	 * (query.h): static text such as " FOR UPDATE NOWAIT", "" when the
	 * database needs no clause (its transactions already exclude other
	 * writers), or NULL when this server cannot (the call is then
	 * EMH_EUNSUPPORTED).  A lock that cannot be had with NOWAIT (or within a
	 * lock timeout) must come back as EMH_ECONFLICT with .retryable set; a
	 * deadlock victim as EMH_ERETRY.
	 */
	const char *(*lock_clause)(emh_conn *c, int mode, int wait);
	/*
	 * EMH_CAP_ISOLATION: begin a transaction (level 1, like .begin, or the
	 * dialect's BEGIN) at isolation level EMH_ISO_READ_COMMITTED,
	 * _REPEATABLE_READ or _SERIALIZABLE (em.h), or a stronger one;
	 * EMH_EUNSUPPORTED for a level the server does not have.  The
	 * transaction then ends through commit/rollback as usual.
	 */
	int (*begin_isolation)(emh_conn *c, int isolation, emh_error *err);
	/*
	 * SQL drivers (schema diff, schema = "check", emhost migrate): describe
	 * the table called table as the database has it, through the builder
	 * calls of emhost/sql.h (emh_table_desc_column, emh_table_desc_index):
	 * every column with its type as the database names it and its
	 * nullability, and every index other than the primary key's with its
	 * columns in order.  Indexes an entity cannot declare (on expressions,
	 * partial ones) are left out.  EMH_ENOTFOUND when there is no such table
	 * (a driver may then still give emh_table_desc_create_suffix).
	 * Optional: without it, schema diff and check are EMH_EUNSUPPORTED.
	 */
	int (*describe)(emh_conn *c, const char *table, emh_table_desc *out, emh_error *err);
	/*
	 * Document drivers (schema diff, schema = "check"): compare the
	 * collection of m with the entity and add to out, with
	 * emh_schema_diff_add (emhost/migrate.h), one change per difference, each
	 * with the command (in the text .execute reads) that removes it: the
	 * collection to create, missing indexes, indexes the entity does not
	 * declare (with EMH_DIFF_DROP in flags or not: they are always listed).
	 * Optional, as describe is for SQL drivers.
	 */
	int (*diff)(emh_conn *c, const emh_meta *m, unsigned flags, emh_schema_diff *out, emh_error *err);
	/*
	 * emhost migrate: take the lock that lets one migration run at a time
	 * on this context's database, on this connection, waiting up to wait_ms
	 * for a run that holds it; EMH_ETIMEOUT (naming what holds it when the
	 * driver can tell) when it is still held then.  *in_txn says how it is
	 * held: false, a lock of the session (PostgreSQL advisory lock, MySQL
	 * GET_LOCK, a MongoDB lock document with an expiry), dropped with the
	 * connection; true, a transaction (SQLite BEGIN EXCLUSIVE): the core then
	 * runs each migration in a savepoint and migrate_unlock ends it.  Taking
	 * it again while holding it renews it (a lock with an expiry is
	 * extended) and returns at once.  migrate_unlock releases it: commit says
	 * whether a transaction that holds it commits (true) or rolls back.
	 * Optional, both or neither: without them emhost migrate refuses the
	 * context (EMH_EUNSUPPORTED).
	 */
	int (*migrate_lock)(emh_conn *c, int64_t wait_ms, bool *in_txn, emh_error *err);
	int (*migrate_unlock)(emh_conn *c, bool commit, emh_error *err);
	/*
	 * Where NULLs sort (EMH_NULLS_*): what the core's keyset paging
	 * (emh_repo_iter) needs to continue after a row whose ordering key is
	 * NULL.  0 = EMH_NULLS_LOW.
	 */
	int null_order;
	/*
	 * Document drivers (emh_repo_aggregate): deliver the result rows of a
	 * over the rows q matches (q may be NULL: every row) to sink, one value
	 * per result column (emh_agg_ncols; read the spec through the emh_agg_*
	 * accessors of emhost/aggregate.h), in that order:
	 *  - group columns: the field's value, typed as for find; the rows whose
	 *    field is NULL (or absent) form one group;
	 *  - EMH_AGG_COUNT: rows of the group; COUNT_DISTINCT: distinct non-NULL
	 *    values; both int32 or int64;
	 *  - SUM of an integer field: int32 or int64 -- a sum beyond int64 is an
	 *    error, never a wrapped or rounded value; SUM of a double field, AVG:
	 *    double; MIN/MAX: the field's type; SUM, AVG, MIN and MAX are NULL
	 *    when the group holds no non-NULL value (not 0).
	 * Having conditions (all must hold; a NULL never satisfies one), the
	 * order (NULLs where find puts them) and the limit (-1: none, 0: no row)
	 * apply to the result rows.  Without group columns deliver the one row,
	 * or none when no row matched q: the core then supplies SQL's answer
	 * (count 0, the rest NULL) and applies having to it.  Global filters are
	 * already in q.  Required when a document driver advertises
	 * EMH_CAP_AGGREGATE, unused with a dialect.
	 */
	int (*aggregate)(emh_conn *c, const emh_meta *m, const emh_query *q, const emh_agg *a,
			 emh_rowsink *sink, emh_error *err);
	/*
	 * The most file descriptors one connection of the context dc holds (its
	 * socket; a database file with its journal or WAL), which the host's
	 * connection budget counts (max_connections, RLIMIT_NOFILE).  Called
	 * once, after context_open.  Optional: NULL counts 1; 0 is right for a
	 * connection that holds none (an in-memory database).  A driver whose
	 * connect fails with EMFILE/ENFILE returns EMH_ENOFD.
	 */
	unsigned (*conn_fds)(const emh_dctx *dc);
	/*
	 * Read replicas (EMH_CAP_REPLICAS; docs/replicas.md).  position: on a
	 * primary's connection outside a transaction, the server's replication
	 * position, at or past every transaction committed before the call, as
	 * text into buf (cap bytes with its NUL; PostgreSQL a WAL LSN, MariaDB a
	 * GTID position).  replayed: on a replica's connection, whether it has
	 * replayed every transaction up to pos (a position text of this driver;
	 * EMH_EINVAL for one it cannot read), waiting at most wait_ms for it.
	 * lag_ms: on a replica's connection, how far behind its primary it is
	 * in milliseconds (0 caught up); EMH_LAG_INFINITE when its replication
	 * is stopped or broken (it falls behind without bound: the core takes
	 * it out of rotation under any max_replica_lag_ms); -1 when it cannot
	 * tell, which the core lets serve; optional.  What a server that is no
	 * replica now reports is the driver's choice, documented in its page:
	 * PostgreSQL -1 (a promoted standby is the new primary after a
	 * failover), MariaDB EMH_LAG_INFINITE (no replication status: a server
	 * cut off from its primary, diverging).  An error leaves the replica out until measured.
	 * position and replayed: both or neither.  Zero/NULL: as before (the
	 * core then routes tokens' reads to the primary and never measures lag).
	 */
	int (*position)(emh_conn *c, char *buf, size_t cap, emh_error *err);
	int (*replayed)(emh_conn *c, const char *pos, int64_t wait_ms, bool *yes, emh_error *err);
	int (*lag_ms)(emh_conn *c, int64_t *lag, emh_error *err);
} emh_driver;

/* emh_driver.lag_ms: replication stopped or broken, as far behind as can be. */
#define EMH_LAG_INFINITE INT64_MAX

/* emh_driver.null_order */
enum {
	EMH_NULLS_LOW = 0,  /* NULL sorts before every value ascending (SQLite, MySQL, MongoDB) */
	EMH_NULLS_HIGH = 1, /* after every value ascending (PostgreSQL) */
};

_Static_assert(offsetof(emh_driver, abi_version) == 0, "abi_version must come first");
_Static_assert(offsetof(emh_driver, struct_size) == 4, "struct_size must come second");
/* The 1.0 layouts, pinned: a plugin built against 1.0 headers must keep loading. */
#if UINTPTR_MAX == UINT64_MAX
_Static_assert(offsetof(emh_param_spec, def) == 24, "emh_param_spec 1.0 members must keep their layout");
_Static_assert(offsetof(emh_driver, param_spec_size) == 224, "emh_driver 1.0 members must keep their layout");
#endif

#ifdef __cplusplus
}
#endif
#endif
