/* SPDX-License-Identifier: MIT */
/*
 * core/em_int.h: the fork's structures, shared by em.c (forks, connections
 * and driver calls, objects, the identity map, repositories) and uow.c (the
 * unit of work: change sets, flush, transactions and their rollback journal).
 * Core only, never installed.
 */
#ifndef EMH_CORE_EM_INT_H
#define EMH_CORE_EM_INT_H

#include <string.h>

#include "internal.h"
#include "relation_int.h"

#define OBJ_MAGIC 0x454d484fu /* "EMHO" */
#define EM_INLINE 640
#define EM_IMAP0 8 /* buckets of the identity map's first table, in the fork */

/* An object's state in its fork. */
enum { ST_NEW = 1, ST_MANAGED, ST_REMOVED, ST_DELETED, ST_DETACHED };
/* emh__obj.flags */
enum {
	OBJF_STALE = 1u << 0, /* a set-based write may have changed its row: reload it when clean */
};

/* A row callback's "enough rows, no error" (drivers return it as is). */
#define EMH__STOP 1

/* The hidden header in front of every object a fork hands out. */
typedef struct emh__obj {
	_Alignas(16) uint32_t magic;
	uint8_t state;
	uint8_t flags; /* OBJF_* */
	uint16_t rel_loaded; /* bit r->index: relation r was loaded (in the padding: no larger header) */
	emh_em *em;
	emh_context *ctx;
	emh__meta *m;
	struct emh__obj *next;  /* tracked objects, creation order */
	struct emh__obj *inext; /* identity map chain */
	void *snap;             /* struct as last loaded/flushed; NULL when new */
	uint64_t nulls, snap_nulls;
	uint64_t ihash; /* its identity-map hash, set when added (in the padding on 64-bit: no larger header) */
} emh__obj;

#define HDR(p) ((emh__obj *)((char *)(p) - sizeof(emh__obj)))
#define OBJ(h) ((void *)((char *)(h) + sizeof(emh__obj)))

struct emh_repo {
	emh_em *em;
	emh__meta *m;
	emh_repo *next;
};

/* One driver call (em.c runs it; uow.c builds the writes). */
enum {
	OP_STMT = 1, OP_INSERT, OP_UPDATE, OP_REMOVE, OP_FIND, OP_COUNT, OP_EXECUTE, OP_SYNC, OP_UPSERT,
	OP_UPDATE_WHERE, OP_DELETE_WHERE, OP_AGGREGATE,
};
typedef struct emh__op {
	int kind;
	emh__meta *m;
	const emh_stmt *st;
	const emh_value *params; /* OP_STMT; vals for OP_INSERT/UPDATE/UPSERT; key for OP_REMOVE */
	emh_rowsink *sink;
	uint64_t mask;
	emh_value *key;
	const emh_query *q;      /* OP_FIND, OP_COUNT, OP_UPDATE_WHERE, OP_DELETE_WHERE */
	int64_t *count;          /* OP_COUNT; rows matched by OP_UPDATE_WHERE/OP_DELETE_WHERE */
	const char *text;
	bool get; /* OP_FIND or OP_STMT of emh_repo_get: counted and logged as a get */
	const emh_set *sets;     /* OP_UPDATE_WHERE */
	size_t nsets;
	const emh_agg *agg;      /* OP_AGGREGATE; also a SQL aggregate's OP_STMT (counted as an aggregate) */
	bool locked;             /* a locked read (emh_q_lock): on the primary, in its transaction */
} emh__op;

/*
 * Bookkeeping to restore when a transaction level is rolled back (uow.c).
 * kind: OP_INSERT, OP_UPDATE or OP_REMOVE (a flush wrote o); OP_FIND (o was
 * loaded over, or detached because its row was gone: fields holds what it
 * was); OP_UPDATE_WHERE (a set-based write on m's rows: whatever the fork
 * read of them since is suspect).
 */
typedef struct emh__jentry {
	struct emh__jentry *next;
	emh__obj *o;
	int depth;
	int kind;
	uint8_t state;
	uint8_t flags; /* OP_FIND: o->flags */
	void *snap;
	uint64_t snap_nulls;
	bool key_set; /* a generated key was written by the flush */
	int64_t old_key;
	bool version_set; /* the flush wrote the version field (EMH_F_VERSION) */
	int64_t old_version;
	void *fields;   /* OP_FIND: a copy of o's struct */
	uint64_t nulls; /* OP_FIND: o->nulls */
	uint16_t rel_loaded; /* OP_FIND: o->rel_loaded (the relation members are in fields) */
	emh__meta *m;   /* OP_UPDATE_WHERE */
} emh__jentry;

/* A fork parameter (emh_em_set_param): name and value in the fork's arena. */
typedef struct emh__param {
	const char *name;
	emh_value v;
} emh__param;

struct emh_em {
	emh_host *host;
	emh_context *ctx;
	emh__ctxhot *hot; /* ctx->hot: what the fork and its close touch (no line of ctx) */
	emh__pconn *pc;
	int pc_status;   /* worst status seen on pc, for the pool */
	bool conn_used;  /* a statement ran on pc in this fork */
	/* read replicas (docs/replicas.md): the fork's replica connection, taken
	 * at its first routed read and kept (its reads are monotonic) */
	bool primary_only; /* emh_host_fork_opts EMH_FORK_PRIMARY, or a read the primary answered in a replica's place */
	bool nowait, would_wait; /* EMH_FORK_NOWAIT; a call it refused for that */
	bool wrote;        /* a write was sent: the rest of the fork reads the primary */
	bool rconn_used;
	int rpc_status;
	emh__pconn *rpc;
	emh__replica *rep;
	char *after;       /* a causal token (emh_fork_opts.after), in the arena; NULL: none */
	bool readonly, loaded;
	bool caps_known;
	bool tx_failed;
	int tx_depth;
	uint64_t caps;
	emh__obj *head, *tail;
	emh__obj **imap;
	size_t icap, in;
	emh_repo *repos;
	emh__jentry *journal;
	emh__param *params; /* filter parameters */
	size_t nparams, pcap;
	struct emh_iter *iters; /* open iterators, closed with the fork */
	/* relations (relation.c): the scope that made the fork, and the forks
	 * the application linked to it (a ring; NULL when alone) */
	const emh__em_owner *owner;
	void *owner_ud;
	emh_em *link_next, *link_prev;
	emh__arena arena;
	/* the identity map's first table (imap_add_h): most forks load a few
	 * objects, and their map then costs neither an allocation nor the
	 * fork's zeroing (it is zeroed when first used) */
	emh__obj *imap0[EM_IMAP0];
	_Alignas(16) unsigned char inline_buf[EM_INLINE];
};

/* ---- values of objects (small, on every field of a flush or load: inline) ---- */

static inline bool emh__is_ptr_type(emh_type t) { return t == EMH_T_TEXT || t == EMH_T_JSON || t == EMH_T_BLOB; }

/* Field i of obj (o's struct, or its snapshot) as a value; text/blob borrowed. */
static inline emh_value emh__obj_value(const emh__obj *o, const void *obj, const emh_field *f, int i)
{
	const char *p = (const char *)obj + f->offset;
	emh_value v = {.type = f->type};
	if (!emh__is_ptr_type(f->type) && (o->nulls >> i) & 1) {
		v.is_null = true;
		return v;
	}
	switch (f->type) {
	case EMH_T_BOOL: memcpy(&v.u.b, p, sizeof(bool)); break;
	case EMH_T_INT32: memcpy(&v.u.i32, p, sizeof(int32_t)); break;
	case EMH_T_INT64:
	case EMH_T_TIMESTAMP: memcpy(&v.u.i64, p, sizeof(int64_t)); break;
	case EMH_T_DOUBLE: memcpy(&v.u.d, p, sizeof(double)); break;
	case EMH_T_TEXT:
	case EMH_T_JSON: {
		const char *s;
		memcpy(&s, p, sizeof s);
		v.is_null = s == NULL;
		v.u.s.ptr = s;
		v.u.s.len = s ? strlen(s) : 0;
		break;
	}
	case EMH_T_BLOB: {
		emh_blob b;
		memcpy(&b, p, sizeof b);
		v.is_null = b.data == NULL;
		v.u.s.ptr = b.data;
		v.u.s.len = b.len;
		break;
	}
	}
	return v;
}

/* An integer (or bool, or double cut to an integer) value as int64. */
static inline int64_t emh__value_i64(const emh_value *v)
{
	switch (v->type) {
	case EMH_T_INT32: return v->u.i32;
	case EMH_T_BOOL: return v->u.b;
	case EMH_T_DOUBLE: return (int64_t)v->u.d;
	default: return v->u.i64;
	}
}

static inline bool emh__em_is_sql(const emh_em *em) { return em->ctx->drv->d.dialect != NULL; }

/* ---- em.c ---- */

/* Name the context in err and count the error; returns rc. */
int emh__em_fail(emh_em *em, int rc, emh_error *err);
/* Take a connection from the pool if the fork has none (and sync pending schema on it). */
int emh__em_conn(emh_em *em, emh_error *err);
/* Give the fork's connection back to the pool with the worst status seen on it. */
void emh__em_conn_release(emh_em *em);
/* After a driver call failed with rc: drop a lost connection, mark a suspect one. */
void emh__em_conn_failed(emh_em *em, int rc, const emh_error *err);
/* rc says the fork's idle connection went stale before anything ran on it
 * in this fork, outside a transaction: safe to resend a read (or BEGIN). */
bool emh__em_stale_first_use(const emh_em *em, int rc);
/* Run a driver call on the fork's connection (retrying a read once on a stale one). */
int emh__em_run(emh_em *em, emh__op *o, emh_error *err);
/* The driver's capabilities that hold on the fork's connection (taken first). */
uint64_t emh__em_caps(emh_em *em);
/* obj's header, if obj is an object of this fork. */
int emh__em_own(emh_em *em, void *obj, emh__obj **out, emh_error *err);
/* The object for a row (cols: every column of m): the one the identity map
 * holds, or a new one; *out NULL when this fork removed that row. */
int emh__em_materialize(emh_em *em, emh__meta *m, const emh_value *cols, void **out, emh_error *err);
/* Run q (NULL: every row) on m's table through the fork, each row's columns
 * to sink as the driver gives them (nothing materialised).  q is checked. */
int emh__em_scan(emh_em *em, emh__meta *m, const emh_query *q, emh_rowsink *sink, emh_error *err);

/* The key an object is known by: as stored (its snapshot), else as set. */
emh_value emh__obj_key(const emh__obj *o);
int64_t emh__obj_key_read(const emh__obj *o);
void emh__obj_key_write(emh__obj *o, int64_t k);

/* The version field of o (its entity has one): as set in the object, or as stored (snapshot). */
int64_t emh__obj_version(const emh__obj *o, bool stored);
void emh__obj_version_write(emh__obj *o, int64_t v);

/* The checks every call taking a query makes: q (may be NULL) is of r's
 * fork and entity and holds no builder mistake. */
int emh__em_check_query(emh_repo *r, const emh_query *q, emh_error *err);
/* EMH_EINVAL when q (checked) is locked (emh_q_lock): for the calls that
 * load no objects to lock ("a count", "an aggregate", ...: what). */
int emh__em_refuse_lock(emh_em *em, const emh_query *q, const char *what, emh_error *err);
/* EMH_EINVAL naming what (an aggregate, an iterator, a count) when q has
 * relation paths to load (emh_q_with): only the finds load them. */
int emh__em_refuse_with(emh_em *em, const emh_query *q, const char *what, emh_error *err);
/* Mark every object of m in the fork's identity map stale (a set-based write ran). */
void emh__em_mark_stale(emh_em *em, emh__meta *m);

emh__obj *emh__imap_find(emh_em *em, emh__meta *m, const emh_value *k);
void emh__imap_add(emh_em *em, emh__obj *o);
void emh__imap_del(emh_em *em, emh__obj *o);

/*
 * Run q (already checked and filtered; NULL: every row) on the fork's
 * connection, delivering rows of m's fields to sink: the dialect's compiled
 * statement, or the document driver's find.
 */
int emh__em_find_run(emh_em *em, emh__meta *m, const emh_query *q, emh_rowsink *sink, emh_error *err);
/*
 * An object for a loaded row that enters no identity map and takes no
 * snapshot (state ST_DETACHED), allocated with its strings from arena: for
 * read-only forks and iterators.
 */
int emh__em_load_detached(emh_em *em, emh__meta *m, emh__arena *arena, const emh_value *cols, void **out,
			  emh_error *err);

/* ---- filter.c: global filters (EMH_F_FILTER) ---- */

/*
 * The query to run for q on m (see query_int.h): q itself when m has no
 * filter field or q is unfiltered, else a copy narrowed by filter =
 * parameter for each filter field.  EMH_ESTATE naming the entity and the
 * parameter when one is unset, EMH_EINVAL when its value does not suit the
 * field.  q was checked (emh__em_check_query).
 */
int emh__em_filter(emh_em *em, emh__meta *m, const emh_query *q, const emh_query **out, emh_error *err);
/* Insert and upsert of o: write the parameters into its filter fields (a
 * field left zero/NULL), refusing another value (EMH_EINVAL). */
int emh__filter_stamp(emh_em *em, emh__obj *o, emh_error *err);
/* Update (mask: changed fields) or removal (mask 0) of o: the object as
 * stored has this fork's values, and the update changes no filter field. */
int emh__filter_check_write(emh_em *em, emh__obj *o, uint64_t mask, emh_error *err);
/* An identity-map hit for get: does o, as stored, have this fork's filter
 * values?  (The parameters are known to be set.) */
bool emh__filter_match(emh_em *em, const emh__obj *o);

/* ---- iter.c ---- */

/* Close every iterator still open on the fork (its close). */
void emh__iter_close_all(emh_em *em);

/* ---- uow.c ---- */

/* Fields of a managed object changed since its snapshot (0: none). */
uint64_t emh__obj_changed(emh__obj *o);
/* A timestamp version of context c later than after and than any handed out
 * before in this process (µs since the epoch). */
int64_t emh__version_time(emh_context *c, int64_t after);

/* Close the innermost transaction level: commit, or roll back and restore
 * the bookkeeping of what was flushed inside it. */
int emh__tx_end(emh_em *em, bool commit, emh_error *err);
/* Inside a transaction, before o (in the fork's map) is loaded over or
 * detached for a missing row: keep what it holds, restored if the level is
 * rolled back.  0, or EMH_ENOMEM with nothing changed. */
int emh__journal_reload(emh_em *em, emh__obj *o);

#endif
