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
 * The loader checks the ABI major and struct_size, copies min(struct_size,
 * sizeof(emh_driver)) bytes into a zeroed local copy (an older plugin's
 * missing members read as NULL; a newer plugin's extra ones are ignored),
 * then checks the required members.  Members are only ever appended.
 *
 * Two kinds of driver:
 *  - SQL drivers set .dialect and .stmt_exec.  The core compiles every
 *    entity operation (get, find, count, insert, update, delete) to SQL
 *    through the dialect, caches the text per (entity, query shape) and
 *    calls stmt_exec with bound parameters.  begin/commit/rollback and
 *    savepoints may be left NULL: the core then sends the dialect's SQL
 *    through .execute.
 *  - Other drivers (documents) leave .dialect NULL and implement the
 *    entity members .insert .update .remove .find .count themselves, plus
 *    begin/commit/rollback if they advertise EMH_CAP_TRANSACTIONS.
 *
 * Threading: a connection is used by one thread at a time; different
 * connections of a driver are used concurrently.  Drivers keep no per-host
 * state in globals (two hosts can share a process); process-wide library
 * initialisation is the driver's own business (pthread_once).
 *
 * Errors: fill emh_error with a portable code, the native code and SQLSTATE,
 * and .retryable; never put a password or bound values in the message.  The
 * core adds the context's name.  Map connection loss to EMH_EUNAVAILABLE:
 * the core then discards that connection.
 */
#ifndef EMHOST_DRIVER_H
#define EMHOST_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <emhost/entity.h>
#include <emhost/error.h>
#include <emhost/host.h> /* EMH_LOG_* for emh_params_log */
#include <emhost/query.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EMH_DRIVER_ABI_MAJOR 1u
#define EMH_DRIVER_ABI_MINOR 0u
#define EMH_DRIVER_ABI_VERSION ((EMH_DRIVER_ABI_MAJOR << 16) | EMH_DRIVER_ABI_MINOR)
#define EMH_DRIVER_SYMBOL "emh_driver_descriptor"
#define EMH_DRIVER_HEADER                                                      \
	.abi_version = EMH_DRIVER_ABI_VERSION, .struct_size = sizeof(emh_driver)
#define EMH_DRIVER_EXPORT __attribute__((visibility("default")))

/* Capability bits.  Append-only. */
#define EMH_CAP_TRANSACTIONS (UINT64_C(1) << 0) /* begin/commit/rollback */
#define EMH_CAP_SAVEPOINTS (UINT64_C(1) << 1)   /* nested transactions */
#define EMH_CAP_RETURNING (UINT64_C(1) << 2)    /* INSERT ... RETURNING */
#define EMH_CAP_UPSERT (UINT64_C(1) << 3)
#define EMH_CAP_TWO_PHASE (UINT64_C(1) << 4)
#define EMH_CAP_SQL (UINT64_C(1) << 5)          /* has .dialect + .stmt_exec */
#define EMH_CAP_ATOMIC_FLUSH (UINT64_C(1) << 6) /* a flush is all-or-nothing */

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

/* What keys a driver accepts in a context; anything else is a config error. */
enum { EMH_PARAM_STRING = 1, EMH_PARAM_INT = 2, EMH_PARAM_BOOL = 3 };
enum { EMH_PARAM_SECRET = 1u << 0 };
typedef struct emh_param_spec {
	const char *key;
	int kind;       /* EMH_PARAM_* */
	unsigned flags; /* EMH_PARAM_SECRET: masked wherever it is printed */
	const char *help;
} emh_param_spec;

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
	 * Document drivers.  vals holds one value per field of the entity, in
	 * field order.  insert: a generated key field is NULL in vals and its
	 * value is written to *key.  update: mask has bit i set for each
	 * changed field i; EMH_ENOTFOUND when no row has that key.  find
	 * delivers rows in field order through sink.
	 */
	int (*insert)(emh_conn *c, const emh_meta *m, const emh_value *vals, emh_value *key, emh_error *err);
	int (*update)(emh_conn *c, const emh_meta *m, const emh_value *vals, uint64_t mask, emh_error *err);
	int (*remove)(emh_conn *c, const emh_meta *m, const emh_value *key, emh_error *err);
	int (*find)(emh_conn *c, const emh_meta *m, const emh_query *q, emh_rowsink *sink, emh_error *err);
	int (*count)(emh_conn *c, const emh_meta *m, const emh_query *q, int64_t *n, emh_error *err);
} emh_driver;

_Static_assert(offsetof(emh_driver, abi_version) == 0, "abi_version must come first");
_Static_assert(offsetof(emh_driver, struct_size) == 4, "struct_size must come second");

#ifdef __cplusplus
}
#endif
#endif
