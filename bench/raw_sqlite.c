/* SPDX-License-Identifier: MIT */
/* bench/raw_sqlite.c: the benchmark's raw SQLite side (libsqlite3 with prepared statements). */
#include "config.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "bench.h"

typedef struct sq_floor sq_floor;

typedef struct raw_sq {
	sqlite3 *db;
	sqlite3_stmt *get, *begin, *commit, *rollback, *update, *insert, *update_where, *agg, *find;
	char name[256]; /* last name read, so reading it is real work */
	sq_floor *floor; /* get_by_key_floor's state, made at its first call */
} raw_sq;

static void raw_sq_close(void *raw)
{
	raw_sq *r = raw;
	if (!r)
		return;
	sqlite3_finalize(r->get);
	sqlite3_finalize(r->begin);
	sqlite3_finalize(r->commit);
	sqlite3_finalize(r->rollback);
	sqlite3_finalize(r->update);
	sqlite3_finalize(r->insert);
	sqlite3_finalize(r->update_where);
	sqlite3_finalize(r->agg);
	sqlite3_finalize(r->find);
	sqlite3_close_v2(r->db);
	free(r->floor);
	free(r);
}

static int raw_sq_prep(raw_sq *r, const char *sql, sqlite3_stmt **out)
{
	if (sqlite3_prepare_v3(r->db, sql, -1, SQLITE_PREPARE_PERSISTENT, out, NULL) == SQLITE_OK)
		return 0;
	fprintf(stderr, "raw sqlite: cannot prepare '%s': %s\n", sql, sqlite3_errmsg(r->db));
	return -1;
}

/*
 * Same settings as the emhost driver's connections: busy timeout, foreign
 * keys, synchronous (WAL is a property of the file, already set by
 * emhost).  A ":memory:" context cannot be shared: its database is named
 * after an instance string that the public API does not expose, so the
 * benchmark gives its context a memdb URI path (or a file) instead.
 */
static void *raw_sq_open(emh_host *h, const char *ctx)
{
	const char *path = emh_host_context_setting(h, ctx, "path");
	const char *busy = emh_host_context_setting(h, ctx, "busy_timeout_ms");
	const char *sync = emh_host_context_setting(h, ctx, "synchronous");
	char sql[96];
	raw_sq *r;

	if (!path) {
		fprintf(stderr, "raw sqlite: context '%s' has no path\n", ctx ? ctx : "(default)");
		return NULL;
	}
	if (strcmp(path, ":memory:") == 0) {
		fprintf(stderr, "raw sqlite: context '%s' is \":memory:\", whose database is private to emhost; "
				"use a file or a path like \"file:/name?vfs=memdb\"\n", ctx ? ctx : "(default)");
		return NULL;
	}
	r = calloc(1, sizeof *r);
	if (!r)
		return NULL;
	if (sqlite3_open_v2(path, &r->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_URI,
			    NULL) != SQLITE_OK) {
		fprintf(stderr, "raw sqlite: cannot open '%s': %s\n", path,
			r->db ? sqlite3_errmsg(r->db) : "out of memory");
		goto out_close;
	}
	sqlite3_busy_timeout(r->db, busy ? atoi(busy) : 5000);
	int n = snprintf(sql, sizeof sql, "PRAGMA foreign_keys=ON; PRAGMA synchronous=%s",
			 sync && strspn(sync, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") ==
					 strlen(sync)
				 ? sync : "NORMAL");
	if (n < 0 || (size_t)n >= sizeof sql) { /* cut, it would be another setting */
		fprintf(stderr, "raw sqlite: synchronous '%s' is not a setting SQLite has\n", sync);
		goto out_close;
	}
	if (sqlite3_exec(r->db, sql, NULL, NULL, NULL) != SQLITE_OK) {
		fprintf(stderr, "raw sqlite: '%s': %s\n", sql, sqlite3_errmsg(r->db));
		goto out_close;
	}
	if (raw_sq_prep(r, "SELECT id, name, counter, score FROM " BENCH_TABLE " WHERE id = ?", &r->get) ||
	    raw_sq_prep(r, "BEGIN IMMEDIATE", &r->begin) || raw_sq_prep(r, "COMMIT", &r->commit) ||
	    raw_sq_prep(r, "ROLLBACK", &r->rollback) ||
	    raw_sq_prep(r, "UPDATE " BENCH_TABLE " SET counter = ? WHERE id = ?", &r->update) ||
	    raw_sq_prep(r, "UPDATE " BENCH_TABLE " SET counter = counter + ? WHERE id = ?", &r->update_where) ||
	    raw_sq_prep(r, "INSERT INTO " BENCH_TABLE " (name, counter, score) VALUES (?, ?, ?) RETURNING id",
			&r->insert) ||
	    raw_sq_prep(r, "SELECT counter, COUNT(*), SUM(score) FROM " BENCH_TABLE " WHERE id >= ? AND id < ? "
			   "GROUP BY counter", &r->agg) ||
	    raw_sq_prep(r, "SELECT id, name, counter, score FROM " BENCH_TABLE " WHERE id >= ? AND id < ?",
			&r->find))
		goto out_close;
	return r;

out_close:
	raw_sq_close(r);
	return NULL;
}

/* Step a statement with no rows to its end and reset it. */
static int raw_sq_done(sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

/* Read row id into the struct the way an application would: every column. */
static int raw_sq_read(raw_sq *r, int64_t id)
{
	bench_item it;
	int rc = -1;

	sqlite3_bind_int64(r->get, 1, id);
	if (sqlite3_step(r->get) == SQLITE_ROW) {
		it.id = sqlite3_column_int64(r->get, 0);
		const unsigned char *name = sqlite3_column_text(r->get, 1);
		size_t n = (size_t)sqlite3_column_bytes(r->get, 1);
		if (n >= sizeof r->name)
			n = sizeof r->name - 1;
		memcpy(r->name, name ? (const char *)name : "", n);
		r->name[n] = '\0';
		it.name = r->name;
		it.counter = sqlite3_column_int64(r->get, 2);
		it.score = sqlite3_column_double(r->get, 3);
		rc = it.id == id && it.name ? 0 : -1;
	}
	sqlite3_reset(r->get);
	return rc;
}

static int raw_sq_get_by_key(void *raw, int64_t id)
{
	return raw_sq_read(raw, id);
}

/*
 * get_by_key_floor: the least work that any framework with emhost's model --
 * a fork per request, found by the context's name, a pooled connection, every
 * call timed, loaded objects tracked -- must add to raw_sq_read, written by
 * hand with nothing else: no options, no error paths, no driver interface,
 * no checks but the ones that decide.  What it does per get:
 *
 * - fork: malloc a fork (arena and identity map inline), zero its header,
 *   find the context by name (FNV-1a, open addressing, strcmp) and take a
 *   reference on it (one atomic add);
 * - connection: take it from a one-place park (atomic exchange), give it back
 *   with a compare-and-swap;
 * - call: two CLOCK_MONOTONIC reads and one atomic add into a histogram;
 * - row: an object with a header in the fork's arena, every column stored,
 *   the name copied into the arena, a snapshot of the struct, and an entry
 *   in an 8-bucket identity map;
 * - close: the reference put back (one atomic subtraction), the fork freed.
 *
 * Its ratio to raw is the best emhost's get_by_key could reach on this
 * machine for the same work (docs/architecture.md, "Performance").
 */
enum { SQ_FLOOR_TABLE = 16, SQ_FLOOR_MAP = 8 };

typedef struct sq_floor_ctx {
	const char *name;
	_Atomic unsigned refs;
	_Atomic(sqlite3_stmt *) park;
	_Atomic uint64_t hist[64];
} sq_floor_ctx;

struct sq_floor {
	sq_floor_ctx ctx;
	sq_floor_ctx *table[SQ_FLOOR_TABLE];
};

typedef struct sq_floor_obj {
	struct sq_floor_obj *next; /* in the identity map's bucket */
	int64_t key;
	void *snap;
	bench_item v;
} sq_floor_obj;

typedef struct sq_floor_fork {
	sq_floor_ctx *ctx;
	sqlite3_stmt *conn;
	char *ap, *aend; /* the arena: the inline buffer */
	sq_floor_obj *map[SQ_FLOOR_MAP];
	size_t n;
	_Alignas(16) char buf[640];
} sq_floor_fork;

static uint64_t sq_floor_hash(const char *s)
{
	uint64_t h = UINT64_C(1469598103934665603);
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * UINT64_C(1099511628211);
	return h;
}

static sq_floor_ctx *sq_floor_lookup(sq_floor *f, const char *name)
{
	for (size_t i = sq_floor_hash(name) % SQ_FLOOR_TABLE, n = 0; n < SQ_FLOOR_TABLE;
	     i = (i + 1) % SQ_FLOOR_TABLE, n++) {
		sq_floor_ctx *c = f->table[i];
		if (!c)
			return NULL;
		if (strcmp(c->name, name) == 0) {
			atomic_fetch_add_explicit(&c->refs, 1, memory_order_acquire);
			return c;
		}
	}
	return NULL;
}

static void *sq_floor_alloc(sq_floor_fork *k, size_t n)
{
	n = (n + 15) & ~(size_t)15;
	if ((size_t)(k->aend - k->ap) < n)
		return NULL;
	void *p = k->ap;
	k->ap += n;
	return p;
}

static int64_t sq_floor_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int raw_sq_get_by_key_floor(void *raw, const char *ctx, int64_t id)
{
	raw_sq *r = raw;
	sq_floor *f = r->floor;
	if (!f) {
		if (!(f = r->floor = calloc(1, sizeof *f)))
			return -1;
		f->ctx.name = ctx; /* the caller's, for the run */
		f->ctx.park = r->get;
		f->table[sq_floor_hash(ctx) % SQ_FLOOR_TABLE] = &f->ctx;
	}
	sq_floor_fork *k = malloc(sizeof *k);
	if (!k)
		return -1;
	memset(k, 0, offsetof(sq_floor_fork, buf));
	k->ap = k->buf;
	k->aend = k->buf + sizeof k->buf;
	int rc = -1;
	if (!(k->ctx = sq_floor_lookup(f, ctx)))
		goto out_free;
	sqlite3_stmt *s = k->conn = atomic_exchange(&k->ctx->park, NULL);
	if (!s)
		goto out_put;
	int64_t t0 = sq_floor_now();
	sqlite3_bind_int64(s, 1, id);
	if (sqlite3_step(s) == SQLITE_ROW) {
		sq_floor_obj *o = sq_floor_alloc(k, sizeof *o + sizeof o->v);
		const unsigned char *name = sqlite3_column_text(s, 1);
		size_t n = (size_t)sqlite3_column_bytes(s, 1);
		char *copy = o ? sq_floor_alloc(k, n + 1) : NULL;
		if (copy) {
			memcpy(copy, name ? (const char *)name : "", n);
			copy[n] = '\0';
			o->v = (bench_item){.id = sqlite3_column_int64(s, 0), .name = copy,
					    .counter = sqlite3_column_int64(s, 2), .score = sqlite3_column_double(s, 3)};
			o->snap = o + 1;
			memcpy(o->snap, &o->v, sizeof o->v);
			o->key = o->v.id;
			size_t b = (size_t)(((uint64_t)o->key * UINT64_C(0x9E3779B97F4A7C15)) >> 61) % SQ_FLOOR_MAP;
			o->next = k->map[b];
			k->map[b] = o;
			k->n++;
			rc = o->v.id == id ? 0 : -1;
		}
	}
	sqlite3_reset(s);
	uint64_t ns = (uint64_t)(sq_floor_now() - t0) | 1;
	atomic_fetch_add_explicit(&k->ctx->hist[63 - __builtin_clzll(ns)], 1, memory_order_relaxed);
	sqlite3_stmt *none = NULL;
	atomic_compare_exchange_strong(&k->ctx->park, &none, s);
out_put:
	atomic_fetch_sub_explicit(&k->ctx->refs, 1, memory_order_release);
out_free:
	free(k);
	return rc;
}

static int raw_sq_update(void *raw, int64_t id, int64_t counter)
{
	raw_sq *r = raw;

	if (raw_sq_done(r->begin))
		return -1;
	if (raw_sq_read(r, id))
		goto out_rollback;
	sqlite3_bind_int64(r->update, 1, counter);
	sqlite3_bind_int64(r->update, 2, id);
	if (raw_sq_done(r->update) || sqlite3_changes(r->db) != 1)
		goto out_rollback;
	if (raw_sq_done(r->commit))
		goto out_rollback;
	return 0;

out_rollback:
	if (!sqlite3_get_autocommit(r->db))
		raw_sq_done(r->rollback);
	return -1;
}

static int raw_sq_update_where(void *raw, int64_t id, int64_t delta)
{
	raw_sq *r = raw;
	sqlite3_bind_int64(r->update_where, 1, delta);
	sqlite3_bind_int64(r->update_where, 2, id);
	return raw_sq_done(r->update_where) || sqlite3_changes(r->db) != 1 ? -1 : 0;
}

static int raw_sq_insert(void *raw, const char *name, int64_t counter, double score)
{
	raw_sq *r = raw;
	int rc = -1;

	sqlite3_bind_text(r->insert, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(r->insert, 2, counter);
	sqlite3_bind_double(r->insert, 3, score);
	if (sqlite3_step(r->insert) == SQLITE_ROW && sqlite3_column_int64(r->insert, 0) > 0)
		rc = sqlite3_step(r->insert) == SQLITE_DONE ? 0 : -1;
	sqlite3_reset(r->insert);
	sqlite3_clear_bindings(r->insert);
	return rc;
}

static int raw_sq_aggregate(void *raw, int64_t lo, int64_t hi, int64_t *groups)
{
	raw_sq *r = raw;
	int rc;
	volatile double sink = 0;
	sqlite3_bind_int64(r->agg, 1, lo);
	sqlite3_bind_int64(r->agg, 2, hi);
	*groups = 0;
	while ((rc = sqlite3_step(r->agg)) == SQLITE_ROW) {
		sink += (double)sqlite3_column_int64(r->agg, 0) + (double)sqlite3_column_int64(r->agg, 1) +
			sqlite3_column_double(r->agg, 2);
		(*groups)++;
	}
	sqlite3_reset(r->agg);
	return rc == SQLITE_DONE ? 0 : -1;
}

static int raw_sq_find(void *raw, int64_t lo, int64_t hi, size_t *rows)
{
	raw_sq *r = raw;
	bench_rows out = {0};
	int rc;
	sqlite3_bind_int64(r->find, 1, lo);
	sqlite3_bind_int64(r->find, 2, hi);
	while ((rc = sqlite3_step(r->find)) == SQLITE_ROW) {
		bench_item *it = bench_rows_push(&out);
		const unsigned char *name = sqlite3_column_text(r->find, 1);
		if (!it || !(it->name = strdup(name ? (const char *)name : ""))) {
			if (it)
				out.n--;
			rc = SQLITE_NOMEM;
			break;
		}
		it->id = sqlite3_column_int64(r->find, 0);
		it->counter = sqlite3_column_int64(r->find, 2);
		it->score = sqlite3_column_double(r->find, 3);
	}
	sqlite3_reset(r->find);
	*rows = out.n;
	bench_rows_free(&out);
	return rc == SQLITE_DONE ? 0 : -1;
}

const bench_raw_ops bench_raw_sqlite = {
	.driver = "sqlite",
	.open = raw_sq_open,
	.close = raw_sq_close,
	.get_by_key = raw_sq_get_by_key,
	.update = raw_sq_update,
	.insert = raw_sq_insert,
	.update_where = raw_sq_update_where,
	.aggregate = raw_sq_aggregate,
	.find = raw_sq_find,
	.get_by_key_floor = raw_sq_get_by_key_floor,
};
