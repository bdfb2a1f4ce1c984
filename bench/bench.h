/* SPDX-License-Identifier: MIT */
/*
 * bench/bench.h: the raw-client side of emh-bench.  Each driver provides one
 * bench_raw_ops (bench/raw_<driver>.c) doing the same work as emhost with the
 * client library directly (prepared statements, same server, same table), so
 * the benchmark prints ratios measured in one run.
 *
 * The table is created by emhost (schema sync of bench_item below) and
 * filled by emhost before the raw side runs; the raw side only reads and
 * writes rows of it.
 */
#ifndef EMH_BENCH_H
#define EMH_BENCH_H

#include <stdint.h>
#include <stdlib.h>

#include <emhost/emhost.h>

typedef struct bench_item {
	int64_t id;       /* primary key, generated */
	const char *name; /* text */
	int64_t counter;
	double score;
} bench_item;

#define BENCH_TABLE "emh_bench_items"
/* bench_item's entity (bench/emh-bench.c). */
extern const emh_entity bench_entity;

typedef struct bench_raw_ops {
	const char *driver; /* "sqlite", "postgres", "mysql", "mongo" */
	/* Open a raw connection to the same database as context ctx (use
	 * emh_host_context_setting for url/host/port/path/...).  NULL with a
	 * message on stderr when it cannot. */
	void *(*open)(emh_host *h, const char *ctx);
	void (*close)(void *raw);
	/* SELECT id,name,counter,score FROM table WHERE id=? and read every column. 0 = found. */
	int (*get_by_key)(void *raw, int64_t id);
	/* In one transaction: select row id, then UPDATE counter=? WHERE id=?. 0 = ok. */
	int (*update)(void *raw, int64_t id, int64_t counter);
	/* INSERT (name, counter, score) and read the generated id. 0 = ok. */
	int (*insert)(void *raw, const char *name, int64_t counter, double score);
	/* One statement, no transaction: UPDATE counter = counter + delta WHERE id = ?
	 * (emh_repo_update_where). 0 = one row matched. */
	int (*update_where)(void *raw, int64_t id, int64_t delta);
	/*
	 * SELECT counter, COUNT(*), SUM(score) FROM table WHERE id >= lo AND
	 * id < hi GROUP BY counter, reading every value; *groups gets the number
	 * of rows.  0 = ok.  (MongoDB: the $match/$group pipeline.)
	 */
	int (*aggregate)(void *raw, int64_t lo, int64_t hi, int64_t *groups);
	/*
	 * SELECT id, name, counter, score FROM table WHERE id >= lo AND id < hi,
	 * every row read into a fresh array of bench_item with its name copied,
	 * as an application keeping the result would (emh_repo_find's list),
	 * then freed; *rows gets the number of rows.  0 = ok.  NULL: the find
	 * workload is skipped for this driver.
	 */
	int (*find)(void *raw, int64_t lo, int64_t hi, size_t *rows);
	/*
	 * get_by_key_floor's side (NULL: that workload is skipped): get_by_key
	 * plus the least work a framework with emhost's per-request model must
	 * add to it, written by hand (see raw_sqlite.c), on its own connection
	 * from open.  0 = found.
	 */
	int (*get_by_key_floor)(void *raw, const char *ctx, int64_t id);
} bench_raw_ops;

/* The result a raw find builds (bench_raw_find_*): items grown by doubling,
 * each name its own copy. */
typedef struct bench_rows {
	bench_item *items;
	size_t n, cap;
} bench_rows;

/* Room for one more item (NULL when out of memory); its name is set by the caller. */
static inline bench_item *bench_rows_push(bench_rows *r)
{
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 16;
		bench_item *v = realloc(r->items, cap * sizeof *v);
		if (!v)
			return NULL;
		r->items = v;
		r->cap = cap;
	}
	return &r->items[r->n++];
}

static inline void bench_rows_free(bench_rows *r)
{
	for (size_t i = 0; i < r->n; i++)
		free((char *)r->items[i].name);
	free(r->items);
	r->items = NULL;
	r->n = r->cap = 0;
}

/* Rows an aggregate workload groups: ids [lo, lo + BENCH_AGG_WINDOW). */
#define BENCH_AGG_WINDOW 100

/*
 * The relations workload (bench/relations.c): posts of 100 users, the users
 * in an in-memory SQLite context it adds, the posts in context ctx, loaded
 * through a relation vs by hand; prints its line.  0, or -1 (printed).
 */
int bench_relations(emh_host *h, const char *ctx, const char *driver, double secs);

/* Defined in bench/raw_<driver>.c when that driver is built. */
extern const bench_raw_ops bench_raw_sqlite, bench_raw_postgres, bench_raw_mysql, bench_raw_mongo;

/*
 * The tenants workload (bench/tenants.c): for each count in list ("1,100,10000"),
 * that many SQLite contexts in files under base (NULL: /dev/shm or $TMPDIR),
 * journal_mode journal; prints RSS per idle context and ns per fork.  0 or -1.
 */
int bench_tenants(const char *plugin_dir, const char *list, const char *base, const char *journal, double secs);

#endif
