/* SPDX-License-Identifier: MIT */
/*
 * plugins/mongo/mongo_int.h: what the mongo driver's files share (never
 * installed).  One file per job:
 *
 *   mongo.c         descriptor, process-wide libmongoc state, errors,
 *                   contexts and connections, transactions
 *   mongo_value.c   emhost values <-> BSON fields (the storage layout below)
 *   mongo_json.c    json fields: JSON text <-> BSON (jansson reads, our writer writes)
 *   mongo_filter.c  emh_query -> BSON filter, sort, skip and limit
 *   mongo_crud.c    insert, update, upsert, remove, find, count, generated keys,
 *                   update_where and delete_where (update_many, delete_many)
 *   mongo_agg.c     aggregates as an aggregation pipeline
 *   mongo_schema.c  sync (collections, indexes), drop, raw commands
 *   mongo_migrate.c the migration lock (a document with an expiry), schema diff (indexes)
 *
 * The plugin exports only emh_driver_descriptor (libtool's
 * -export-symbols-regex; the functions below are hidden as well), so the
 * mg_ names shared here are the driver's own, as static functions would be.
 *
 * Storage layout (docs/drivers/mongo.md says the same to users):
 *
 *   entity              collection named entity->table
 *   primary key         _id, as int32 / int64 / utf8 (its own type)
 *   generated key       counter document {_id: "<collection>", seq: int64} in
 *                       MG_COUNTERS, bumped with findAndModify $inc + upsert
 *                       outside any transaction (like an SQL sequence)
 *   bool int32 int64 double text
 *                       bool int32 int64 double utf8
 *   blob                binary subtype 0
 *   timestamp           sub-document {t: BSON date (ms), us: int64 µs}; queries,
 *                       sorts and indexes use "<column>.us"
 *   json                an object or array is stored as an embedded document /
 *                       array when it reads back exactly (modulo whitespace);
 *                       anything else (scalars, keys with '$' or '.', numbers
 *                       written as 1e2 or 1.50, \u escapes) as its text, utf8
 *   NULL                BSON null, except a nullable field with a unique
 *                       index: absent (its index is sparse, so several NULLs
 *                       may coexist as in SQL)
 */
#ifndef EMH_PLUGINS_MONGO_INT_H
#define EMH_PLUGINS_MONGO_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <mongoc/mongoc.h>

#include <emhost/buf.h>
#include <emhost/driver.h>

#pragma GCC visibility push(hidden)

#define MG_COUNTERS "emh_counters"
#define MG_LOCKS "emh_locks" /* the migration lock's document */
#define MG_TS_DATE "t"
#define MG_TS_US "us"
/* Room for a field's path in a document: a column (at most 63 bytes) + ".us". */
#define MG_PATH_MAX 80

/* Server error codes the driver maps. */
enum {
	MG_E_HOST_UNREACHABLE = 6,
	MG_E_UNAUTHORIZED = 13,
	MG_E_AUTHENTICATION_FAILED = 18,
	MG_E_HOST_NOT_FOUND = 7,
	MG_E_NAMESPACE_NOT_FOUND = 26,
	MG_E_MAX_TIME_EXPIRED = 50,
	MG_E_NAMESPACE_EXISTS = 48,
	MG_E_NETWORK_TIMEOUT = 89,
	MG_E_SHUTDOWN_IN_PROGRESS = 91,
	MG_E_INDEX_OPTIONS_CONFLICT = 85,
	MG_E_INDEX_KEY_SPECS_CONFLICT = 86,
	MG_E_WRITE_CONFLICT = 112,
	MG_E_PRIMARY_STEPPED_DOWN = 189,
	MG_E_NO_SUCH_TRANSACTION = 251,
	MG_E_NOT_WRITABLE_PRIMARY = 10107,
	MG_E_DUPLICATE_KEY = 11000,
	MG_E_DUPLICATE_KEY_OLD = 11001,
	MG_E_INTERRUPTED_AT_SHUTDOWN = 11600,
	MG_E_INTERRUPTED_REPL_CHANGE = 11602,
	MG_E_NOT_PRIMARY_NO_SECONDARY_OK = 13435,
	MG_E_NOT_PRIMARY_OR_SECONDARY = 13436,
};

struct emh_dctx {
	mongoc_client_pool_t *pool;
	char *database;
	uint32_t max_pool;
	atomic_bool warned_standalone; /* the "no transactions" warning, once per context */
	atomic_bool described;         /* the client's URL as parsed, logged once per context */
	atomic_int servers;            /* in the pool's topology, from its monitoring events */
	atomic_uint down_gen;          /* bumped each time an operation finds the server gone */
	long long stmt_ms;             /* statement_timeout_ms: maxTimeMS of reads; 0 = none */
	int32_t sock_ms;               /* the URI's socketTimeoutMS in effect (0: libmongoc's) */
	const char *sock_key;          /* the setting it comes from, for messages */
};

/* Per-connection facts about one entity, cached by emh_meta.id. */
typedef struct mg_coll {
	mongoc_collection_t *coll;
	const emh_meta *meta;
} mg_coll;

struct emh_conn {
	emh_dctx *dc;
	mongoc_client_t *client;
	mongoc_client_session_t *session; /* kept for the connection's life once made */
	bool in_txn;
	uint64_t caps;
	unsigned gen; /* dc->down_gen when this connection last reached the server */
	mg_coll *colls;
	size_t ncolls;
	mongoc_collection_t *counters;
	int64_t call_ms; /* when the call in progress started (CLOCK_MONOTONIC ms) */
	bool migrate_locked;    /* holds the migration lock */
	char migrate_owner[25]; /* this connection's mark on the lock document (an ObjectId's hex) */
};

/* ---- mongo.c: errors and connections ---- */

/* Is e a duplicate-key error (11000, 11001) from any of libmongoc's domains? */
bool mg_is_dup(const bson_error_t *e);
/* Is e a duplicate key on the _id index (the key itself, not another unique field)? */
bool mg_dup_on_id(const bson_error_t *e);
/*
 * Map a libmongoc failure of operation what (on collection coll, or NULL) of
 * the call in progress on c to an emhost status, fill err and return the
 * status.  An unavailable server bumps c->dc->down_gen; a call past its
 * deadline is EMH_ETIMEOUT.  The message never quotes the server's
 * duplicate-key text, which holds the duplicated value.
 */
int mg_fail(emh_conn *c, emh_error *err, const bson_error_t *e, const bson_t *reply, const char *what,
	    const char *coll);
int64_t mg_now_ms(void);
/* Every entry point on a connection starts with this: the call's start, for mg_fail. */
void mg_call(emh_conn *c);
/* Initialise opts (the caller destroys it): the session while a transaction is open. */
int mg_opts(emh_conn *c, bson_t *opts, emh_error *err);
/* Append a read's maxTimeMS (statement_timeout_ms) to opts, unless it is 0. */
void mg_max_time(const emh_conn *c, bson_t *opts);
/* The collection handle of entity m on this connection (cached by m->id; borrowed). */
int mg_coll_get(emh_conn *c, const emh_meta *m, mongoc_collection_t **out, emh_error *err);

/* ---- mongo_value.c: values as stored ---- */

/* Stored absent rather than null: a nullable field with a unique (sparse) index. */
bool mg_null_absent(const emh_field *f);
/*
 * Append value v under key as field f is stored.  Values of query calls may
 * be int64 for an int32 field (they mix freely) and int64 for a timestamp.
 */
int mg_append_value(bson_t *doc, const char *key, const emh_field *f, const emh_value *v, emh_error *err);
/* Where field i lives in a document: "_id", "<column>", or "<column>.us" for
 * comparisons, sorts and indexes on a timestamp (compare).  buf: MG_PATH_MAX bytes. */
const char *mg_path(const emh_meta *m, int i, bool compare, char *buf, size_t cap);
/* Deliver document doc to sink as a row in field order; returns what sink->row returns. */
int mg_deliver(const bson_t *doc, const emh_meta *m, emh_rowsink *sink, emh_error *err);

/* ---- mongo_json.c: json fields ---- */

/*
 * Append the JSON text (s, n) under key: as an embedded document or array
 * when it reads back as the same text (modulo whitespace), else as its text
 * (utf8).  EMH_EINVAL naming field when it is not valid JSON.
 */
int mg_json_append(bson_t *doc, const char *key, const char *s, size_t n, const char *field, emh_error *err);
/* Append the value at it as compact JSON text (shortest round-trip doubles). */
void mg_json_write(emh_buf *b, bson_iter_t *it);

/* ---- mongo_filter.c: queries ---- */

/* Initialise filter with the condition of q (q may be NULL: every document). */
int mg_filter(bson_t *filter, const emh_meta *m, const emh_query *q, emh_error *err);
/* Append q's order (made total by _id), offset and limit to the find options opts. */
void mg_find_opts(bson_t *opts, const emh_meta *m, const emh_query *q);

/* ---- mongo_crud.c: entity operations ---- */

int mg_insert(emh_conn *c, const emh_meta *m, const emh_value *vals, emh_value *key, emh_error *err);
int mg_upsert(emh_conn *c, const emh_meta *m, const emh_value *vals, emh_error *err);
int mg_update(emh_conn *c, const emh_meta *m, const emh_value *vals, uint64_t mask, emh_error *err);
int mg_remove(emh_conn *c, const emh_meta *m, const emh_value *key, emh_error *err);
int mg_find(emh_conn *c, const emh_meta *m, const emh_query *q, emh_rowsink *sink, emh_error *err);
int mg_count(emh_conn *c, const emh_meta *m, const emh_query *q, int64_t *n, emh_error *err);
int mg_update_where(emh_conn *c, const emh_meta *m, const emh_query *q, const emh_set *sets, size_t n,
		    int64_t *affected, emh_error *err);
int mg_delete_where(emh_conn *c, const emh_meta *m, const emh_query *q, int64_t *affected, emh_error *err);
/* Forget the generated-key counter of collection table (the next key is 1). */
int mg_key_reset(emh_conn *c, const char *table, emh_error *err);

/* ---- mongo_agg.c: aggregates ---- */

int mg_aggregate(emh_conn *c, const emh_meta *m, const emh_query *q, const emh_agg *a, emh_rowsink *sink,
		 emh_error *err);

/* ---- mongo_schema.c: collections, indexes, raw commands ---- */

int mg_sync(emh_conn *c, const emh_meta *m, emh_error *err);
int mg_drop(emh_conn *c, const emh_meta *m, emh_error *err);
int mg_execute(emh_conn *c, const char *text, emh_error *err);

/* ---- mongo_migrate.c: the migration lock, schema diff ---- */

int mg_migrate_lock(emh_conn *c, int64_t wait_ms, bool *in_txn, emh_error *err);
int mg_migrate_unlock(emh_conn *c, bool commit, emh_error *err);
int mg_diff(emh_conn *c, const emh_meta *m, unsigned flags, emh_schema_diff *out, emh_error *err);

#pragma GCC visibility pop

#endif
