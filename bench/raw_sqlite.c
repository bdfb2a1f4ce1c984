/* SPDX-License-Identifier: MIT */
/* bench/raw_sqlite.c: the benchmark's raw SQLite side (libsqlite3 with prepared statements). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "bench.h"

typedef struct raw_sq {
	sqlite3 *db;
	sqlite3_stmt *get, *begin, *commit, *rollback, *update, *insert, *update_where, *agg, *find;
	char name[256]; /* last name read, so reading it is real work */
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
};
