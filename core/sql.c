/* SPDX-License-Identifier: MIT */
/*
 * core/sql.c: the SQL dialect helper.  Compiles entity operations and
 * queries to SQL text for the SQL drivers.  get/insert/delete/count are
 * compiled once at registration; updates (per changed-column mask) and
 * queries (per shape: operators, fields, IN sizes, ordering, limit/offset
 * presence -- never values) are compiled on first use and cached per entity,
 * so repeating a shape does no string work.  Values are always bound
 * parameters; identifiers were validated at registration and are quoted.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sql_int.h"

void emh_buf_ident(emh_buf *b, const emh_sql_dialect *d, const char *s)
{
	/* Identifiers are validated ([A-Za-z_][A-Za-z0-9_]*), so they hold no quote. */
	char q = d->quote ? d->quote : '"';
	emh_buf_add(b, &q, 1);
	emh_buf_adds(b, s);
	emh_buf_add(b, &q, 1);
}

/* ---- statements ---- */

typedef emh__sqlb stmt_builder; /* sql_int.h */

static void add_param(stmt_builder *sb, emh_type t)
{
	if (sb->nparams >= sizeof sb->params / sizeof *sb->params) {
		sb->too_many = true;
		return;
	}
	sb->params[sb->nparams++] = t;
	if (sb->d->numbered_params)
		emh_buf_addf(&sb->sql, "$%zu", sb->nparams);
	else
		emh_buf_add(&sb->sql, "?", 1);
}

/* One allocation: the stmt, its type arrays and its text. */
static emh_stmt *stmt_finish(stmt_builder *sb, emh__meta *m, int kind, const emh_type *cols, size_t ncols,
			     emh_error *err)
{
	if (sb->sql.oom || sb->too_many) {
		emh_buf_release(&sb->sql);
		return emh_error_set(err, sb->too_many ? EMH_EINVAL : EMH_ENOMEM,
				     sb->too_many ? "statement has too many parameters" : "out of memory"),
		       NULL;
	}
	size_t sz = sizeof(emh_stmt) + (sb->nparams + ncols) * sizeof(emh_type) + sb->sql.len + 1;
	emh_stmt *st = malloc(sz);
	if (!st) {
		emh_buf_release(&sb->sql);
		emh_error_set(err, EMH_ENOMEM, "out of memory");
		return NULL;
	}
	emh_type *pt = (emh_type *)(st + 1);
	emh_type *ct = pt + sb->nparams;
	char *text = (char *)(ct + ncols);
	memcpy(pt, sb->params, sb->nparams * sizeof *pt);
	if (ncols)
		memcpy(ct, cols, ncols * sizeof *ct);
	memcpy(text, sb->sql.ptr, sb->sql.len + 1);
	*st = (emh_stmt){.sql = text, .sql_len = sb->sql.len, .kind = kind,
			 .id = atomic_fetch_add_explicit(&m->ctx->next_stmt_id, 1, memory_order_relaxed),
			 .nparams = (uint16_t)sb->nparams, .ncols = (uint16_t)ncols, .param_types = pt,
			 .col_types = ct, .meta = &m->pub};
	emh_buf_release(&sb->sql);
	return st;
}

static stmt_builder *sb_new(const emh_sql_dialect *d)
{
	stmt_builder *sb = malloc(sizeof *sb);
	if (sb) {
		memset(&sb->sql, 0, sizeof sb->sql);
		sb->d = d;
		sb->nparams = 0;
		sb->too_many = false;
	}
	return sb;
}

static void select_list(stmt_builder *sb, const emh_entity *e, emh_type *cols)
{
	emh_buf_adds(&sb->sql, "SELECT ");
	for (size_t i = 0; i < e->nfields; i++) {
		if (i)
			emh_buf_adds(&sb->sql, ", ");
		emh_buf_ident(&sb->sql, sb->d, e->fields[i].column);
		cols[i] = e->fields[i].type;
	}
	emh_buf_adds(&sb->sql, " FROM ");
	emh_buf_ident(&sb->sql, sb->d, e->table);
}

static void where_key(stmt_builder *sb, const emh__meta *m)
{
	const emh_field *k = &m->pub.entity->fields[m->pub.pk];
	emh_buf_adds(&sb->sql, " WHERE ");
	emh_buf_ident(&sb->sql, sb->d, k->column);
	emh_buf_adds(&sb->sql, " = ");
	add_param(sb, k->type);
}

static const char *const cmp_sql[] = {
	[EMH_OP_EQ] = " = ", [EMH_OP_NE] = " <> ", [EMH_OP_LT] = " < ",
	[EMH_OP_LE] = " <= ", [EMH_OP_GT] = " > ", [EMH_OP_GE] = " >= ",
};

static void compile_cond(stmt_builder *sb, const emh_entity *e, const emh_cond *c)
{
	const emh_field *f = c->field >= 0 ? &e->fields[c->field] : NULL;
	switch (c->op) {
	case EMH_OP_EQ: case EMH_OP_NE: case EMH_OP_LT: case EMH_OP_LE: case EMH_OP_GT: case EMH_OP_GE:
		emh_buf_ident(&sb->sql, sb->d, f->column);
		emh_buf_adds(&sb->sql, cmp_sql[c->op]);
		add_param(sb, f->type);
		break;
	case EMH_OP_IN:
		if (c->nvals == 0) {
			emh_buf_adds(&sb->sql, "1 = 0");
			break;
		}
		emh_buf_ident(&sb->sql, sb->d, f->column);
		emh_buf_adds(&sb->sql, " IN (");
		for (size_t i = 0; i < c->nvals; i++) {
			if (i)
				emh_buf_adds(&sb->sql, ", ");
			add_param(sb, f->type);
		}
		emh_buf_adds(&sb->sql, ")");
		break;
	case EMH_OP_LIKE:
		emh_buf_ident(&sb->sql, sb->d, f->column);
		emh_buf_adds(&sb->sql, " LIKE ");
		add_param(sb, EMH_T_TEXT);
		emh_buf_adds(&sb->sql, sb->d->like_escape ? sb->d->like_escape : "");
		break;
	case EMH_OP_IS_NULL:
	case EMH_OP_NOT_NULL:
		emh_buf_ident(&sb->sql, sb->d, f->column);
		emh_buf_adds(&sb->sql, c->op == EMH_OP_IS_NULL ? " IS NULL" : " IS NOT NULL");
		break;
	case EMH_OP_AND:
	case EMH_OP_OR:
		emh_buf_adds(&sb->sql, "(");
		for (size_t i = 0; i < c->nkids; i++) {
			if (i)
				emh_buf_adds(&sb->sql, c->op == EMH_OP_AND ? " AND " : " OR ");
			compile_cond(sb, e, c->kids[i]);
		}
		emh_buf_adds(&sb->sql, ")");
		break;
	case EMH_OP_NOT:
		emh_buf_adds(&sb->sql, "NOT (");
		compile_cond(sb, e, c->kids[0]);
		emh_buf_adds(&sb->sql, ")");
		break;
	}
}

/* Does the entity have a unique column or index besides its key? */
static bool has_other_unique(const emh_entity *e)
{
	for (size_t i = 0; i < e->nfields; i++)
		if ((e->fields[i].flags & EMH_F_UNIQUE) && !(e->fields[i].flags & EMH_F_PK))
			return true;
	for (size_t i = 0; i < e->nindexes; i++)
		if (e->indexes[i].unique)
			return true;
	return false;
}

/*
 * INSERT of every column, then the dialect's way of updating the row with the
 * same key.  MySQL's ON DUPLICATE KEY fires on any unique index, which for an
 * entity with another unique column would overwrite a different row: no
 * statement then (emh_repo_upsert says why).  An entity with global filters
 * updates the existing row only when its filter columns are the new row's
 * (ON CONFLICT ... DO UPDATE ... WHERE; no row changed then tells the key is
 * another tenant's); ON DUPLICATE KEY has no such condition: no statement.
 */
static int compile_upsert(emh__meta *m, const emh_sql_dialect *d, stmt_builder *sb, emh_error *err)
{
	const emh_entity *e = m->pub.entity;
	const emh_field *k = &e->fields[m->pub.pk];
	if (d->upsert == EMH_SQL_UPSERT_ON_DUPLICATE_KEY && (has_other_unique(e) || m->filters))
		return 0;
	sb->nparams = 0;
	emh_buf_adds(&sb->sql, "INSERT INTO ");
	emh_buf_ident(&sb->sql, d, e->table);
	emh_buf_adds(&sb->sql, " (");
	for (size_t i = 0; i < e->nfields; i++) {
		if (i)
			emh_buf_adds(&sb->sql, ", ");
		emh_buf_ident(&sb->sql, d, e->fields[i].column);
	}
	emh_buf_adds(&sb->sql, ") VALUES (");
	for (size_t i = 0; i < e->nfields; i++) {
		if (i)
			emh_buf_adds(&sb->sql, ", ");
		add_param(sb, e->fields[i].type);
	}
	emh_buf_adds(&sb->sql, ")");
	bool on_conflict = d->upsert == EMH_SQL_UPSERT_ON_CONFLICT;
	if (on_conflict) {
		emh_buf_adds(&sb->sql, " ON CONFLICT (");
		emh_buf_ident(&sb->sql, d, k->column);
		emh_buf_adds(&sb->sql, e->nfields > 1 ? ") DO UPDATE SET " : ") DO NOTHING");
	} else {
		emh_buf_adds(&sb->sql, " ON DUPLICATE KEY UPDATE ");
		if (e->nfields == 1) {
			emh_buf_ident(&sb->sql, d, k->column);
			emh_buf_adds(&sb->sql, " = ");
			emh_buf_ident(&sb->sql, d, k->column);
		}
	}
	/* Filter columns are equal when the WHERE below holds: not set, unless
	 * there is nothing else (DO UPDATE needs one assignment). */
	uint64_t keep = m->filters;
	if ((keep | (UINT64_C(1) << m->pub.pk)) == (e->nfields == 64 ? ~UINT64_C(0) : (UINT64_C(1) << e->nfields) - 1))
		keep &= keep - 1;
	size_t n = 0;
	for (size_t i = 0; i < e->nfields; i++) {
		if ((int)i == m->pub.pk || ((keep >> i) & 1))
			continue;
		if (n++)
			emh_buf_adds(&sb->sql, ", ");
		emh_buf_ident(&sb->sql, d, e->fields[i].column);
		emh_buf_adds(&sb->sql, on_conflict ? " = excluded." : " = VALUES(");
		emh_buf_ident(&sb->sql, d, e->fields[i].column);
		if (!on_conflict)
			emh_buf_adds(&sb->sql, ")");
	}
	for (size_t i = 0, w = 0; i < e->nfields; i++) {
		if (!((m->filters >> i) & 1))
			continue;
		emh_buf_adds(&sb->sql, w++ ? " AND " : " WHERE ");
		emh_buf_ident(&sb->sql, d, e->table);
		emh_buf_adds(&sb->sql, ".");
		emh_buf_ident(&sb->sql, d, e->fields[i].column);
		emh_buf_adds(&sb->sql, " = excluded.");
		emh_buf_ident(&sb->sql, d, e->fields[i].column);
	}
	m->st_upsert = stmt_finish(sb, m, EMH_STMT_INSERT, NULL, 0, err);
	return m->st_upsert ? 0 : (err ? err->code : EMH_ENOMEM);
}

int emh__sql_prepare_meta(emh__meta *m, const emh_sql_dialect *d, emh_error *err)
{
	const emh_entity *e = m->pub.entity;
	const emh_field *k = &e->fields[m->pub.pk];
	emh_type cols[EMH_ENTITY_MAX_FIELDS];
	stmt_builder *sb = sb_new(d);
	if (!sb)
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	int rc = 0;

	select_list(sb, e, cols);
	where_key(sb, m);
	if (!(m->st_get = stmt_finish(sb, m, EMH_STMT_SELECT, cols, e->nfields, err)))
		goto out_fail;

	sb->nparams = 0;
	select_list(sb, e, cols);
	if (!(m->st_select_all = stmt_finish(sb, m, EMH_STMT_SELECT, cols, e->nfields, err)))
		goto out_fail;

	sb->nparams = 0;
	emh_buf_adds(&sb->sql, "SELECT COUNT(*) FROM ");
	emh_buf_ident(&sb->sql, d, e->table);
	emh_type cnt = EMH_T_INT64;
	if (!(m->st_count_all = stmt_finish(sb, m, EMH_STMT_COUNT, &cnt, 1, err)))
		goto out_fail;

	sb->nparams = 0;
	emh_buf_adds(&sb->sql, "INSERT INTO ");
	emh_buf_ident(&sb->sql, d, e->table);
	emh_buf_adds(&sb->sql, " (");
	size_t ncol = 0;
	for (size_t i = 0; i < e->nfields; i++) {
		if ((int)i == m->pub.pk && m->pub.generated)
			continue;
		if (ncol++)
			emh_buf_adds(&sb->sql, ", ");
		emh_buf_ident(&sb->sql, d, e->fields[i].column);
	}
	emh_buf_adds(&sb->sql, ") VALUES (");
	ncol = 0;
	for (size_t i = 0; i < e->nfields; i++) {
		if ((int)i == m->pub.pk && m->pub.generated)
			continue;
		if (ncol++)
			emh_buf_adds(&sb->sql, ", ");
		add_param(sb, e->fields[i].type);
	}
	emh_buf_adds(&sb->sql, ")");
	bool ret = m->pub.generated && d->returning;
	if (ret) {
		emh_buf_adds(&sb->sql, " RETURNING ");
		emh_buf_ident(&sb->sql, d, k->column);
	}
	if (!(m->st_insert = stmt_finish(sb, m, EMH_STMT_INSERT, &k->type, ret ? 1 : 0, err)))
		goto out_fail;

	if (d->upsert && !m->pub.generated) {
		if (compile_upsert(m, d, sb, err) != 0)
			goto out_fail;
	}

	sb->nparams = 0;
	emh_buf_adds(&sb->sql, "DELETE FROM ");
	emh_buf_ident(&sb->sql, d, e->table);
	where_key(sb, m);
	if (!(m->st_delete = stmt_finish(sb, m, EMH_STMT_DELETE, NULL, 0, err)))
		goto out_fail;
	free(sb);
	return 0;
out_fail:
	rc = err ? err->code : EMH_ENOMEM;
	free(sb);
	emh__sql_free_meta(m);
	return rc ? rc : EMH_ENOMEM;
}

/* ---- the per-entity cache of update and query statements ---- */

/*
 * Read without a lock: every find looks a statement up here, from every
 * thread at once.  An entry is immutable once published; a table's slots
 * are published one by one (release, read with acquire) under the writers'
 * mutex, and a table outgrown is replaced whole and kept (readers may still
 * be probing it) until the cache is freed -- the old tables together are
 * smaller than the current one.  A reader that misses on an old table
 * compiles, takes the mutex and finds the entry in the current one.
 */
typedef struct cache_entry {
	uint64_t hash;
	emh_stmt *st;
	size_t klen;
	unsigned char key[]; /* the shape: what the statement's text depends on */
} cache_entry;

typedef struct cache_table {
	struct cache_table *older; /* the table this one replaced */
	size_t cap;                /* a power of two; at most half full */
	cache_entry *_Atomic slot[];
} cache_table;

struct emh__stmtcache {
	pthread_mutex_t mu; /* writers */
	cache_table *_Atomic t;
	size_t n; /* entries; under mu */
};

static uint64_t fnv(const unsigned char *p, size_t n)
{
	uint64_t h = 1469598103934665603ULL;
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 1099511628211ULL;
	return h;
}

/* Does entry e hold the statement asked for (its hash is the one asked for)? */
typedef bool (*match_fn)(const cache_entry *e, const void *arg);

typedef struct key_bytes {
	const unsigned char *p;
	size_t len;
} key_bytes;

static bool match_bytes(const cache_entry *e, const void *arg)
{
	const key_bytes *k = arg;
	return e->klen == k->len && memcmp(e->key, k->p, k->len) == 0;
}

/* The statement of the first entry with hash h that match accepts; NULL if none.  Lock-free. */
static inline emh_stmt *cache_find(emh__stmtcache *c, uint64_t h, match_fn match, const void *arg)
{
	cache_table *t = atomic_load_explicit(&c->t, memory_order_acquire);
	if (!t)
		return NULL;
	for (size_t i = h & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
		cache_entry *e = atomic_load_explicit(&t->slot[i], memory_order_acquire);
		if (!e)
			return NULL;
		if (e->hash == h && match(e, arg))
			return e->st;
	}
}

static void table_place(cache_table *t, cache_entry *e)
{
	size_t j = e->hash & (t->cap - 1);
	while (atomic_load_explicit(&t->slot[j], memory_order_relaxed))
		j = (j + 1) & (t->cap - 1);
	atomic_store_explicit(&t->slot[j], e, memory_order_release);
}

static bool cache_put_locked(emh__stmtcache *c, uint64_t h, const unsigned char *key, size_t klen, emh_stmt *st)
{
	cache_table *t = atomic_load_explicit(&c->t, memory_order_relaxed);
	if (!t || (c->n + 1) * 2 > t->cap) {
		size_t ncap = t ? t->cap * 2 : 16;
		cache_table *nt = calloc(1, sizeof *nt + ncap * sizeof nt->slot[0]);
		if (!nt)
			return false;
		nt->cap = ncap;
		nt->older = t;
		for (size_t i = 0; t && i < t->cap; i++) {
			cache_entry *e = atomic_load_explicit(&t->slot[i], memory_order_relaxed);
			if (e)
				table_place(nt, e);
		}
		atomic_store_explicit(&c->t, nt, memory_order_release);
		t = nt;
	}
	cache_entry *e = malloc(sizeof *e + klen);
	if (!e)
		return false;
	e->hash = h;
	e->st = st;
	e->klen = klen;
	memcpy(e->key, key, klen);
	table_place(t, e);
	c->n++;
	return true;
}

static void cache_free(emh__stmtcache *c)
{
	cache_table *t = atomic_load_explicit(&c->t, memory_order_relaxed);
	for (size_t i = 0; t && i < t->cap; i++) {
		cache_entry *e = atomic_load_explicit(&t->slot[i], memory_order_relaxed);
		if (e) {
			free(e->st);
			free(e);
		}
	}
	while (t) {
		cache_table *older = t->older;
		free(t);
		t = older;
	}
	pthread_mutex_destroy(&c->mu);
	free(c);
}

static emh__stmtcache *meta_cache_new(emh__meta *m)
{
	/* Created at first use under the context mutex: registration time is
	 * not the hot path, and most entities never need one. */
	emh__stmtcache *c;
	pthread_mutex_lock(&m->ctx->mu);
	c = m->cache;
	if (!c && (c = calloc(1, sizeof *c)) != NULL) {
		pthread_mutex_init(&c->mu, NULL);
		__atomic_store_n(&m->cache, c, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&m->ctx->mu);
	return c;
}

static inline emh__stmtcache *meta_cache(emh__meta *m)
{
	emh__stmtcache *c = __atomic_load_n(&m->cache, __ATOMIC_ACQUIRE);
	return c ? c : meta_cache_new(m);
}

typedef emh__sql_compile_fn compile_fn;

/*
 * A statement not found in c: compiled by fn outside the lock and stored
 * under hash h and key; if another thread stored one first, its copy is
 * kept.  Equal keys always have equal hashes.
 */
static const emh_stmt *cache_compile(emh__stmtcache *c, emh__meta *m, const emh_sql_dialect *d, uint64_t h,
				     const unsigned char *key, size_t klen, compile_fn fn, const void *arg, emh_error *err)
{
	emh_stmt *mine = fn(m, d, arg, err);
	if (!mine)
		return NULL;
	pthread_mutex_lock(&c->mu);
	emh_stmt *st = cache_find(c, h, match_bytes, &(key_bytes){key, klen});
	if (!st) {
		if (!cache_put_locked(c, h, key, klen, mine)) {
			pthread_mutex_unlock(&c->mu);
			free(mine);
			return emh_error_set(err, EMH_ENOMEM, "out of memory"), NULL;
		}
		st = mine;
		mine = NULL;
	}
	pthread_mutex_unlock(&c->mu);
	free(mine);
	return st;
}

static const emh_stmt *cached(emh__meta *m, const emh_sql_dialect *d, const unsigned char *key, size_t klen,
			      compile_fn fn, const void *arg, emh_error *err)
{
	emh__stmtcache *c = meta_cache(m);
	if (!c)
		return emh_error_set(err, EMH_ENOMEM, "out of memory"), NULL;
	uint64_t h = fnv(key, klen);
	emh_stmt *st = cache_find(c, h, match_bytes, &(key_bytes){key, klen});
	return st ? st : cache_compile(c, m, d, h, key, klen, fn, arg, err);
}

static emh_stmt *compile_update(emh__meta *m, const emh_sql_dialect *d, const void *arg, emh_error *err)
{
	uint64_t mask = *(const uint64_t *)arg;
	const emh_entity *e = m->pub.entity;
	stmt_builder *sb = sb_new(d);
	if (!sb)
		return emh_error_set(err, EMH_ENOMEM, "out of memory"), NULL;
	emh_buf_adds(&sb->sql, "UPDATE ");
	emh_buf_ident(&sb->sql, d, e->table);
	emh_buf_adds(&sb->sql, " SET ");
	size_t n = 0;
	for (size_t i = 0; i < e->nfields; i++) {
		if (!(mask & (UINT64_C(1) << i)))
			continue;
		if (n++)
			emh_buf_adds(&sb->sql, ", ");
		emh_buf_ident(&sb->sql, d, e->fields[i].column);
		emh_buf_adds(&sb->sql, " = ");
		add_param(sb, e->fields[i].type);
	}
	where_key(sb, m);
	emh_stmt *st = stmt_finish(sb, m, EMH_STMT_UPDATE, NULL, 0, err);
	free(sb);
	return st;
}

const emh_stmt *emh__sql_update_stmt(emh__meta *m, const emh_sql_dialect *d, uint64_t mask, emh_error *err)
{
	unsigned char key[9] = {'U'};
	memcpy(key + 1, &mask, sizeof mask);
	return cached(m, d, key, sizeof key, compile_update, &mask, err);
}

/*
 * A query's shape (the statement cache's key), built on the stack unless
 * the query has very many conditions, so that a query compiled once
 * allocates nothing.  It is a sequence of 8-byte words (stored unaligned),
 * so that a hash hit is checked against it a word per node (match_query).
 */
typedef struct shape_key {
	unsigned char *p;
	size_t len, cap;
	bool oom;
	unsigned char stack[256];
} shape_key;

static void shape_init(shape_key *k)
{
	k->p = k->stack;
	k->len = 0;
	k->cap = sizeof k->stack;
	k->oom = false;
}

static void shape_free(shape_key *k)
{
	if (k->p != k->stack)
		free(k->p);
}

static void shape_add(shape_key *k, const void *s, size_t n)
{
	if (k->oom)
		return;
	if (n > k->cap - k->len) {
		size_t cap = k->cap * 2 >= k->len + n ? k->cap * 2 : k->len + n + 64;
		unsigned char *np = malloc(cap);
		if (!np) {
			k->oom = true;
			return;
		}
		memcpy(np, k->p, k->len);
		if (k->p != k->stack)
			free(k->p);
		k->p = np;
		k->cap = cap;
	}
	memcpy(k->p + k->len, s, n);
	k->len += n;
}

static void shape_word(shape_key *k, uint64_t w) { shape_add(k, &w, sizeof w); }

/* Shape of a condition: everything its SQL text depends on, never its
 * values -- its nodes' words, in prefix order. */
static void shape_cond(shape_key *b, const emh_cond *c)
{
	shape_word(b, emh__cond_word(c));
	for (size_t i = 0; i < c->nkids; i++)
		shape_cond(b, c->kids[i]);
}

typedef struct query_arg {
	const emh_query *q;
	bool count;
	const char *lock; /* row-lock clause ending a SELECT, or NULL */
	uint64_t word;    /* query_word */
} query_arg;

/* The first word of a query's key: count or select, a condition or none,
 * the number of order keys, limit and offset present, a lock clause.  Its
 * first byte, 'S' or 'C', starts no other key in the cache (updates U and
 * V, set-based writes W and X, aggregates A). */
static inline uint64_t query_word(const emh_query *q, bool count, const char *lock)
{
	uint64_t w = (uint64_t)(count ? 'C' : 'S') | (uint64_t)!!q->where << 8 | (uint64_t)!!lock << 9;
	if (!count) /* limit, offset >= 0: their sign bits clear */
		w |= (~(uint64_t)q->limit >> 63) << 10 | (~(uint64_t)q->offset >> 63) << 11 | (uint64_t)q->norder << 32;
	return w;
}

/* An order key's word (a select's key only). */
static inline uint64_t order_word(const emh__order *o) { return (uint64_t)(unsigned)o->field | (uint64_t)o->desc << 32; }

/* The key of a query's statement: the query word, the condition's shape,
 * the order keys, the lock clause's length and text (the server's, from
 * driver.h lock_clause); never a value. */
static void shape_of(shape_key *b, const query_arg *qa)
{
	const emh_query *q = qa->q;
	shape_word(b, qa->word);
	if (q->where)
		shape_cond(b, q->where);
	for (size_t i = 0; !qa->count && i < q->norder; i++)
		shape_word(b, order_word(&q->order[i]));
	if (qa->lock) {
		size_t n = strlen(qa->lock);
		shape_word(b, n);
		shape_add(b, qa->lock, n);
	}
}

static inline uint64_t key_word(const unsigned char *p)
{
	uint64_t w;
	memcpy(&w, p, sizeof w);
	return w;
}

/* Does the key at p hold c's shape next (the key is long enough)?  Where it
 * ends, or NULL.  A leaf child is compared here, without a call. */
static const unsigned char *cond_matches(const emh_cond *c, const unsigned char *p)
{
	if (key_word(p) != emh__cond_word(c))
		return NULL;
	p += 8;
	for (size_t i = 0; i < c->nkids; i++) {
		const emh_cond *k = c->kids[i];
		if (k->nkids) {
			if (!(p = cond_matches(k, p)))
				return NULL;
		} else { /* a builder's leaf: its shape is its word */
			if (key_word(p) != (k->shape ? k->shape : emh__cond_word(k)))
				return NULL;
			p += 8;
		}
	}
	return p;
}

/* Is e's key the shape of the query in arg (what shape_of would write)?
 * Its length is checked first: the words are compared without bounds. */
static bool match_query(const cache_entry *e, const void *arg)
{
	const query_arg *qa = arg;
	const emh_query *q = qa->q;
	size_t nord = qa->count ? 0 : q->norder, nlock = qa->lock ? strlen(qa->lock) : 0;
	size_t words = 1 + (q->where ? emh__cond_figures(q->where).nnodes : 0) + nord + (qa->lock != NULL);
	if (e->klen != words * 8 + nlock || key_word(e->key) != qa->word)
		return false;
	const unsigned char *p = e->key + 8;
	if (q->where && !(p = cond_matches(q->where, p)))
		return false;
	for (size_t i = 0; i < nord; i++, p += 8)
		if (key_word(p) != order_word(&q->order[i]))
			return false;
	return !qa->lock || (key_word(p) == nlock && memcmp(p + 8, qa->lock, nlock) == 0);
}

/* The hash of the key shape_of writes, from the condition's shape hash: no
 * walk of the condition, no key written.  Equal keys, equal hashes. */
static uint64_t query_hash(const query_arg *qa)
{
	const emh_query *q = qa->q;
	uint64_t h = emh__shape_step(qa->word, q->where ? emh__cond_figures(q->where).shape : 0);
	for (size_t i = 0; !qa->count && i < q->norder; i++)
		h = emh__shape_step(h, order_word(&q->order[i]));
	if (qa->lock)
		h = emh__shape_step(h, fnv((const unsigned char *)qa->lock, strlen(qa->lock)));
	return h;
}

static emh_stmt *compile_query(emh__meta *m, const emh_sql_dialect *d, const void *arg, emh_error *err)
{
	const query_arg *qa = arg;
	const emh_query *q = qa->q;
	const emh_entity *e = m->pub.entity;
	emh_type cols[EMH_ENTITY_MAX_FIELDS];
	stmt_builder *sb = sb_new(d);
	if (!sb)
		return emh_error_set(err, EMH_ENOMEM, "out of memory"), NULL;
	if (qa->count) {
		emh_buf_adds(&sb->sql, "SELECT COUNT(*) FROM ");
		emh_buf_ident(&sb->sql, d, e->table);
	} else {
		select_list(sb, e, cols);
	}
	if (q->where) {
		emh_buf_adds(&sb->sql, " WHERE ");
		compile_cond(sb, e, q->where);
	}
	if (!qa->count) {
		for (size_t i = 0; i < q->norder; i++) {
			emh_buf_adds(&sb->sql, i ? ", " : " ORDER BY ");
			emh_buf_ident(&sb->sql, d, e->fields[q->order[i].field].column);
			emh_buf_adds(&sb->sql, q->order[i].desc ? " DESC" : " ASC");
		}
		if (q->limit >= 0) {
			emh_buf_adds(&sb->sql, " LIMIT ");
			add_param(sb, EMH_T_INT64);
		} else if (q->offset >= 0 && d->limit_all) {
			emh_buf_addf(&sb->sql, " LIMIT %s", d->limit_all);
		}
		if (q->offset >= 0) {
			emh_buf_adds(&sb->sql, " OFFSET ");
			add_param(sb, EMH_T_INT64);
		}
		if (qa->lock)
			emh_buf_adds(&sb->sql, qa->lock);
	}
	emh_type cnt = EMH_T_INT64;
	emh_stmt *st = qa->count ? stmt_finish(sb, m, EMH_STMT_COUNT, &cnt, 1, err)
				 : stmt_finish(sb, m, EMH_STMT_SELECT, cols, e->nfields, err);
	free(sb);
	return st;
}

/*
 * The statement of q (a count, or a SELECT ending with lock when not NULL).
 * Looked up by the hash of its shape, which the builder computed as it went
 * (query_hash), and checked against the entry's key on a hash hit; the key
 * is written only for a statement not cached yet.
 */
static const emh_stmt *query_stmt(emh__meta *m, const emh_sql_dialect *d, const emh_query *q, bool count,
				  const char *lock, const uint64_t *hash, emh_error *err)
{
	if (lock && !*lock)
		lock = NULL;
	if (!lock && (!q || (!q->where && (count || (q->norder == 0 && q->limit < 0 && q->offset < 0)))))
		return count ? m->st_count_all : m->st_select_all;
	emh__stmtcache *c = meta_cache(m);
	if (!c)
		return emh_error_set(err, EMH_ENOMEM, "out of memory"), NULL;
	query_arg qa = {q, count, lock, query_word(q, count, lock)};
	uint64_t h = hash ? *hash : query_hash(&qa);
	const emh_stmt *st = cache_find(c, h, match_query, &qa);
	if (st)
		return st;
	shape_key b;
	shape_init(&b);
	shape_of(&b, &qa);
	if (b.oom)
		emh_error_set(err, EMH_ENOMEM, "out of memory");
	else
		st = cache_compile(c, m, d, h, b.p, b.len, compile_query, &qa, err);
	shape_free(&b);
	return st;
}

const emh_stmt *emh__sql_query_stmt(emh__meta *m, const emh_sql_dialect *d, const emh_query *q, bool count,
				    emh_error *err)
{
	return query_stmt(m, d, q, count, NULL, NULL, err);
}

const emh_stmt *emh__sql_select_stmt(emh__meta *m, const emh_sql_dialect *d, const emh_query *q, const char *lock,
				     emh_error *err)
{
	return query_stmt(m, d, q, false, lock, NULL, err);
}

const emh_stmt *emh__sql_query_stmt_hashed(emh__meta *m, const emh_sql_dialect *d, const emh_query *q, bool count,
					   const char *lock, uint64_t hash, emh_error *err)
{
	return query_stmt(m, d, q, count, lock, &hash, err);
}

/* The values of c's subtree in binding order into out; returns the end.  A
 * child with one value (most comparisons) is copied without a call. */
static emh_value *put_params(const emh_cond *c, emh_value *out)
{
	if (!c->nkids) {
		if (c->op != EMH_OP_IS_NULL && c->op != EMH_OP_NOT_NULL)
			for (size_t i = 0; i < c->nvals; i++)
				*out++ = c->vals[i];
		return out;
	}
	for (size_t i = 0; i < c->nkids; i++) {
		const emh_cond *k = c->kids[i];
		if (!k->nkids && k->nvals == 1 && k->op != EMH_OP_IS_NULL && k->op != EMH_OP_NOT_NULL)
			*out++ = k->vals[0];
		else
			out = put_params(k, out);
	}
	return out;
}

size_t emh__query_nparams(const emh_query *q, bool count)
{
	if (!q)
		return 0;
	size_t n = q->where ? emh__cond_figures(q->where).nparams : 0;
	if (!count)
		n += (q->limit >= 0) + (q->offset >= 0);
	return n;
}

void emh__query_params(const emh_query *q, bool count, emh_value *out)
{
	if (!q)
		return;
	if (q->where)
		out = put_params(q->where, out);
	if (!count) {
		if (q->limit >= 0)
			*out++ = emh_v_int64(q->limit);
		if (q->offset >= 0)
			*out++ = emh_v_int64(q->offset);
	}
}

void emh__sql_free_meta(emh__meta *m)
{
	free(m->st_get);
	free(m->st_insert);
	free(m->st_delete);
	free(m->st_count_all);
	free(m->st_select_all);
	free(m->st_upsert);
	m->st_get = m->st_insert = m->st_delete = m->st_count_all = m->st_select_all = m->st_upsert = NULL;
	if (m->cache) {
		cache_free(m->cache);
		m->cache = NULL;
	}
}

/* ---- the builder for the other compile files (sql_int.h) ---- */

emh__sqlb *emh__sqlb_new(const emh_sql_dialect *d) { return sb_new(d); }
void emh__sqlb_param(emh__sqlb *sb, emh_type t) { add_param(sb, t); }
void emh__sqlb_where_key(emh__sqlb *sb, const emh__meta *m) { where_key(sb, m); }
void emh__sqlb_cond(emh__sqlb *sb, const emh_entity *e, const emh_cond *c) { compile_cond(sb, e, c); }
void emh__sql_shape_cond(emh_buf *b, const emh_cond *c)
{
	shape_key k;
	shape_init(&k);
	shape_cond(&k, c);
	if (k.oom)
		b->oom = true;
	else
		emh_buf_add(b, (const char *)k.p, k.len);
	shape_free(&k);
}

emh_stmt *emh__sqlb_finish(emh__sqlb *sb, emh__meta *m, int kind, const emh_type *cols, size_t ncols,
			   emh_error *err)
{
	return stmt_finish(sb, m, kind, cols, ncols, err);
}

const emh_stmt *emh__sql_cached(emh__meta *m, const emh_sql_dialect *d, const unsigned char *key, size_t klen,
				emh__sql_compile_fn fn, const void *arg, emh_error *err)
{
	return cached(m, d, key, klen, fn, arg, err);
}

/* ---- DDL helpers for drivers ---- */

int emh_sql_create_table(const emh_sql_dialect *d, const emh_meta *m, emh_buf *out)
{
	const emh_entity *e = m->entity;
	char type[128];
	emh_buf_adds(out, "CREATE TABLE IF NOT EXISTS ");
	emh_buf_ident(out, d, e->table);
	emh_buf_adds(out, " (");
	for (size_t i = 0; i < e->nfields; i++) {
		const emh_field *f = &e->fields[i];
		if (i)
			emh_buf_adds(out, ", ");
		emh_buf_ident(out, d, f->column);
		type[0] = '\0';
		d->column_type(m, (int)i, type, sizeof type);
		emh_buf_addf(out, " %s", type);
		if ((int)i == m->pk)
			/* NOT NULL spelled out: SQLite would otherwise take NULL in a
			 * non-integer primary key. */
			emh_buf_adds(out, m->generated ? " PRIMARY KEY" : " NOT NULL PRIMARY KEY");
		else if (!(f->flags & EMH_F_NULLABLE))
			emh_buf_adds(out, " NOT NULL");
		if ((f->flags & EMH_F_UNIQUE) && (int)i != m->pk)
			emh_buf_adds(out, " UNIQUE");
	}
	emh_buf_adds(out, ")");
	return out->oom ? EMH_ENOMEM : 0;
}

/* Single-field secondary indexes first (EMH_F_INDEXED without UNIQUE), then composites. */
static int indexed_field(const emh_meta *m, size_t i)
{
	const emh_entity *e = m->entity;
	size_t k = 0;
	for (size_t f = 0; f < e->nfields; f++) {
		unsigned fl = e->fields[f].flags;
		if ((fl & EMH_F_INDEXED) && !(fl & (EMH_F_UNIQUE | EMH_F_PK)) && k++ == i)
			return (int)f;
	}
	return -1;
}

size_t emh_sql_index_count(const emh_meta *m)
{
	size_t n = 0;
	while (indexed_field(m, n) >= 0)
		n++;
	return n + m->entity->nindexes;
}

int emh_sql_create_index(const emh_sql_dialect *d, const emh_meta *m, size_t i, bool if_not_exists,
			 emh_buf *out, const char **name)
{
	const emh_entity *e = m->entity;
	size_t nsingle = emh_sql_index_count(m) - e->nindexes;
	static _Thread_local char namebuf[160];
	if (i < nsingle) {
		const emh_field *f = &e->fields[indexed_field(m, i)];
		snprintf(namebuf, sizeof namebuf, "%s_%s_idx", e->table, f->column);
		if (!emh_ident_valid(namebuf)) {
			/* Too long for an identifier (63 bytes): keep it unique with a hash. */
			char full[160];
			snprintf(full, sizeof full, "%s.%s", e->table, f->column);
			snprintf(namebuf, sizeof namebuf, "%.30s_%.20s_%08x", e->table, f->column,
				 (unsigned)(fnv((const unsigned char *)full, strlen(full)) & 0xffffffffu));
		}
		emh_buf_addf(out, "CREATE INDEX %s", if_not_exists ? "IF NOT EXISTS " : "");
		emh_buf_ident(out, d, namebuf);
		emh_buf_adds(out, " ON ");
		emh_buf_ident(out, d, e->table);
		emh_buf_adds(out, " (");
		emh_buf_ident(out, d, f->column);
		emh_buf_adds(out, ")");
	} else {
		const emh_index *ix = &e->indexes[i - nsingle];
		snprintf(namebuf, sizeof namebuf, "%s", ix->name);
		emh_buf_addf(out, "CREATE %sINDEX %s", ix->unique ? "UNIQUE " : "", if_not_exists ? "IF NOT EXISTS " : "");
		emh_buf_ident(out, d, ix->name);
		emh_buf_adds(out, " ON ");
		emh_buf_ident(out, d, e->table);
		emh_buf_adds(out, " (");
		for (const char *const *fp = ix->fields; *fp; fp++) {
			if (fp != ix->fields)
				emh_buf_adds(out, ", ");
			emh_buf_ident(out, d, e->fields[emh_entity_field_index(e, *fp)].column);
		}
		emh_buf_adds(out, ")");
	}
	if (name)
		*name = namebuf;
	return out->oom ? EMH_ENOMEM : 0;
}

int emh_sql_check_columns(const emh_meta *m, const char *const *names, const char *const *types, size_t n,
			  bool (*compatible)(const emh_meta *m, int field, const char *type), emh_error *err)
{
	const emh_entity *e = m->entity;
	for (size_t i = 0; i < e->nfields; i++) {
		const emh_field *f = &e->fields[i];
		size_t j = 0;
		while (j < n && strcasecmp(names[j], f->column) != 0)
			j++;
		if (j == n)
			return emh_error_set(err, EMH_ESCHEMA,
					     "table '%s' exists without column '%s' (field '%s' of entity '%s')",
					     e->table, f->column, f->name, e->name);
		if (compatible && !compatible(m, (int)i, types[j]))
			return emh_error_set(err, EMH_ESCHEMA,
					     "table '%s', column '%s' has type '%s', incompatible with %s field '%s' of entity '%s'",
					     e->table, f->column, types[j], emh_type_name(f->type), f->name, e->name);
	}
	return 0;
}
