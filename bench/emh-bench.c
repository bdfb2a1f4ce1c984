/* SPDX-License-Identifier: MIT */
/*
 * bench/emh-bench.c: emhost against the raw client library, in one run, on
 * the same database.
 *
 * Usage:
 *   emh-bench [-c FILE] [-p DIR] [--context NAME]... [--seconds S] [--rows N] [--rounds R] [--workload W]
 *             [--find LIST]
 *   emh-bench [-p DIR] --tenants [N,N,...] [--tenant-dir DIR] [--tenant-journal MODE] [--seconds S]
 *
 *   -c FILE          libconfig file with contexts (optional)
 *   -p DIR           plugin directory; default $EMH_PLUGIN_DIR, else
 *                    $EMH_BUILDDIR/plugins-build, else the file's plugin_dir
 *   --context NAME   a context to measure (repeatable), from the file or from
 *                    EMH_CONTEXT_<NAME>_URL / _<KEY> variables; without any,
 *                    an in-memory SQLite context is added and measured
 *   --seconds S      measuring time of each side per round (default 1)
 *   --rows N         rows filled through emhost before measuring (default 10000)
 *   --rounds R       rounds, the median of each figure kept (default 3); more,
 *                    shorter rounds ride out a machine whose load comes and goes
 *   --workload W     measure only workload W (get_by_key, get_by_key_ro, update_flush, ...,
 *                    find for every size of the find workload, find_N or find_ro_N for one)
 *   --find LIST      result sizes of the find workload (default 1,100,10000,100000)
 *   --tenants LIST   instead: the tenants workload (bench/tenants.c) for each
 *                    count of SQLite contexts in LIST (default 1,100,10000)
 *
 * For each context: bench_item (bench/bench.h) is registered, its table
 * synced and emptied, N rows are inserted through emhost, then every
 * workload runs on the raw side (bench_raw_<driver>, chosen by the context's
 * driver) and on emhost alternately: a warm-up, then R rounds of S seconds
 * per side, each side's S seconds in slices taking turns with the other's
 * (raw, emhost, emhost, raw, ...).  Printed: the median over the rounds of
 * each side's rate and of the round's own ratio.  One line per workload:
 *
 *   bench <driver> <workload> raw_ops_s=N emhost_ops_s=N ratio=R
 *   bench <driver> find_<N> raw_ops_s=N emhost_ops_s=N ratio=R
 *   bench <driver> find_ro_<N> raw_ops_s=N emhost_ops_s=N ratio=R
 *   bench <driver> fork_close ns_per_op=N
 *   bench <driver> relations hand_ops_s=N emhost_ops_s=N ratio=R
 *   bench <driver> get_by_key_replica raw_ops_s=N emhost_ops_s=N ratio=R replica_share=S
 *   bench <driver> get_by_key_floor raw_ops_s=N floor_ops_s=N ratio=R
 *
 * get_by_key_ro and find_ro_<N> are get_by_key and find_<N> in forks opened
 * with EMH_FORK_READONLY (no snapshot, no identity map): what a request that
 * only reads costs when it says so.
 *
 * get_by_key_floor (SQLite) is not emhost: it is the raw get_by_key plus,
 * written by hand, the least that any framework with emhost's per-request
 * model must add (a fork found by name, a parked connection, a timed call,
 * the object tracked with a snapshot; bench/raw_sqlite.c).  Its ratio is the
 * bound of what emhost's get_by_key could reach on the machine.
 *
 * get_by_key_replica runs for a context with replica_urls (docs/replicas.md):
 * emhost's reads go to the replica, the raw side reads that same replica.
 *
 * find_<N> reads N consecutive rows (WHERE id >= lo AND id < hi) in a fresh
 * fork, against the raw side reading them into an array of structs with the
 * names copied (bench_raw_ops.find).  Its rows are a block of as many rows
 * as the largest size, inserted through emhost after the other workloads
 * ran (so --rows stays what they measure on), and both sides check that
 * they read exactly N rows.
 *
 * relations (bench/relations.c) is emhost against emhost: the posts of 100
 * users in another context through a relation, against the hand-written IN
 * query and join loop it replaces (medians of 3 rounds).
 *
 * ratio = emhost / raw.  Lines starting with '#' are diagnostics.  A context
 * whose driver has no raw side in this build is skipped with a '#' line.
 * Exit status: 0, or 1 when a context failed (setup or a workload).
 *
 * In-memory SQLite: the driver names its ":memory:" database after a
 * context instance string that the public API does not expose, so the raw
 * side could not reach it.  The default context is therefore given the path
 * "file:/emh-bench-<pid>?vfs=memdb": the same kind of database the driver
 * makes for ":memory:" (SQLite's memdb VFS, shared by the connections of the
 * process), which raw_sqlite.c opens through the "path" setting.  When the
 * library has no memdb VFS, a temporary file is used for both sides and a
 * diagnostic says "sqlite (file)".
 */
#include "config.h"

#include <ctype.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <emhost/driver.h>
#include <emhost/emhost.h>

#include "bench.h"

extern char **environ;

static const emh_field bench_fields[] = {
	EMH_FIELD(bench_item, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(bench_item, name, EMH_T_TEXT, 0),
	EMH_FIELD(bench_item, counter, EMH_T_INT64, 0),
	EMH_FIELD(bench_item, score, EMH_T_DOUBLE, 0),
};
const emh_entity bench_entity = EMH_ENTITY(bench_item, BENCH_TABLE, bench_fields);

#define ROUNDS 3 /* default of --rounds */

/* State of the context being measured. */
typedef struct bench {
	emh_host *h;
	const char *ctx;
	const char *driver;
	const bench_raw_ops *ops;
	void *raw;
	void *floor; /* get_by_key_floor's raw connection, while it runs */
	int64_t *ids; /* keys of the filled rows */
	size_t nids;
	int64_t *fids; /* keys of the find workload's block, ascending and consecutive */
	size_t nfids;
	size_t find_n; /* rows of the find being measured */
	uint64_t rng;
	int64_t counter;
	uint64_t seq;
	int rounds;  /* --rounds */
	size_t sink; /* bytes read, so loads are not optimised away */
	uint64_t gets; /* emhost get_by_key operations run */
	unsigned fork_flags; /* EMH_FORK_* of the emhost side's forks (get_by_key and find) */
	emh_error err;
	char failed[EMH_ERROR_MSG_MAX + 64];
} bench;

typedef int (*bench_op)(bench *b);

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int64_t pick_id(bench *b)
{
	/* xorshift64* */
	b->rng ^= b->rng >> 12;
	b->rng ^= b->rng << 25;
	b->rng ^= b->rng >> 27;
	return b->ids[(b->rng * UINT64_C(2685821657736338717)) % b->nids];
}

static const bench_raw_ops *raw_for(const char *driver)
{
	(void)driver;
#ifdef BENCH_HAVE_SQLITE
	if (strcmp(driver, "sqlite") == 0)
		return &bench_raw_sqlite;
#endif
#ifdef BENCH_HAVE_POSTGRES
	if (strcmp(driver, "postgres") == 0)
		return &bench_raw_postgres;
#endif
#ifdef BENCH_HAVE_MYSQL
	if (strcmp(driver, "mysql") == 0)
		return &bench_raw_mysql;
#endif
#ifdef BENCH_HAVE_MONGO
	if (strcmp(driver, "mongo") == 0)
		return &bench_raw_mongo;
#endif
	return NULL;
}

static int em_fail(bench *b, const char *what, int rc)
{
	snprintf(b->failed, sizeof b->failed, "emhost %s: %s: %s", what, emh_status_name(rc), b->err.message);
	return rc;
}

/* ---- the workloads, emhost side ---- */

/* A fork of the measured context with b->fork_flags. */
static int bench_fork(bench *b, emh_em **em)
{
	emh_fork_opts fo = {.flags = b->fork_flags};
	return emh_host_fork_opts(b->h, b->ctx, b->fork_flags ? &fo : NULL, em, &b->err);
}

static int em_get_by_key(bench *b)
{
	emh_em *em;
	emh_repo *r;
	void *p;
	int rc = bench_fork(b, &em);
	if (rc)
		return em_fail(b, "fork", rc);
	b->gets++;
	rc = emh_em_repo(em, &bench_entity, &r, &b->err);
	if (!rc)
		rc = emh_repo_get(r, emh_v_int64(pick_id(b)), &p, &b->err);
	if (!rc) {
		const bench_item *it = p;
		b->sink += strlen(it->name) + (size_t)it->counter + (size_t)it->score;
	}
	emh_em_close(em);
	return rc ? em_fail(b, "get", rc) : 0;
}

static int em_update_flush(bench *b)
{
	emh_em *em;
	emh_repo *r;
	void *p;
	int rc = emh_host_fork(b->h, b->ctx, &em, &b->err);
	if (rc)
		return em_fail(b, "fork", rc);
	b->gets++;
	rc = emh_em_repo(em, &bench_entity, &r, &b->err);
	if (!rc)
		rc = emh_repo_get(r, emh_v_int64(pick_id(b)), &p, &b->err);
	if (!rc) {
		((bench_item *)p)->counter = ++b->counter;
		rc = emh_em_flush(em, &b->err);
	}
	emh_em_close(em);
	return rc ? em_fail(b, "update", rc) : 0;
}

static int em_insert_flush(bench *b)
{
	char name[32];
	emh_em *em;
	emh_repo *r;
	void *p;
	int rc = emh_host_fork(b->h, b->ctx, &em, &b->err);
	if (rc)
		return em_fail(b, "fork", rc);
	snprintf(name, sizeof name, "new-%" PRIu64, ++b->seq);
	rc = emh_em_repo(em, &bench_entity, &r, &b->err);
	if (!rc)
		rc = emh_repo_new(r, &p, &b->err);
	if (!rc) {
		bench_item *it = p;
		it->name = name;
		it->counter = (int64_t)b->seq;
		it->score = (double)b->seq * 0.5;
		rc = emh_em_flush(em, &b->err);
	}
	emh_em_close(em);
	return rc ? em_fail(b, "insert", rc) : 0;
}

static int em_update_where(bench *b)
{
	emh_em *em;
	emh_repo *r;
	emh_query *q;
	emh_sets *s;
	int64_t n = 0;
	int rc = emh_host_fork(b->h, b->ctx, &em, &b->err);
	if (rc)
		return em_fail(b, "fork", rc);
	rc = emh_em_repo(em, &bench_entity, &r, &b->err);
	if (!rc)
		rc = emh_repo_query(r, &q, &b->err);
	if (!rc)
		rc = emh_repo_sets(r, &s, &b->err);
	if (!rc) {
		emh_q_where(q, emh_q_eq(q, "id", emh_v_int64(pick_id(b))));
		emh_sets_add(s, "counter", emh_v_int64(1));
		rc = emh_repo_update_where(r, q, s, &n, &b->err);
		if (!rc && n != 1)
			rc = emh_error_set(&b->err, EMH_EINVAL, "matched %lld rows", (long long)n);
	}
	emh_em_close(em);
	return rc ? em_fail(b, "update_where", rc) : 0;
}

/* GROUP BY counter over a window of ids: count and sum, every value read. */
static int em_aggregate(bench *b)
{
	emh_em *em;
	emh_repo *r;
	emh_query *q;
	emh_agg *a;
	emh_rows *rows;
	int64_t lo = pick_id(b);
	int rc = emh_host_fork(b->h, b->ctx, &em, &b->err);
	if (rc)
		return em_fail(b, "fork", rc);
	if ((rc = emh_em_repo(em, &bench_entity, &r, &b->err)) == 0 && (rc = emh_repo_query(r, &q, &b->err)) == 0 &&
	    (rc = emh_repo_agg(r, &a, &b->err)) == 0) {
		emh_q_where(q, emh_q_and(q, emh_q_ge(q, "id", emh_v_int64(lo)),
					 emh_q_lt(q, "id", emh_v_int64(lo + BENCH_AGG_WINDOW))));
		emh_agg_group_by(a, "counter");
		emh_agg_count(a, "n");
		emh_agg_sum(a, "score", "total");
		rc = emh_repo_aggregate(r, q, a, &rows, &b->err);
	}
	if (!rc) {
		size_t n = emh_rows_count(rows);
		for (size_t i = 0; i < n; i++)
			b->sink += (size_t)emh_rows_value(rows, i, 0)->u.i64 + (size_t)emh_rows_value(rows, i, 1)->u.i64 +
				   (size_t)emh_rows_value(rows, i, 2)->u.d;
		if (n == 0)
			rc = emh_error_set(&b->err, EMH_ENOTFOUND, "no group in [%lld, %lld)", (long long)lo,
					   (long long)(lo + BENCH_AGG_WINDOW));
	}
	emh_em_close(em);
	return rc ? em_fail(b, "aggregate", rc) : 0;
}

/* The key range of N consecutive rows of the find block: [*lo, *hi). */
static void pick_range(bench *b, int64_t *lo, int64_t *hi)
{
	b->rng ^= b->rng >> 12;
	b->rng ^= b->rng << 25;
	b->rng ^= b->rng >> 27;
	size_t k = (size_t)((b->rng * UINT64_C(2685821657736338717)) % (b->nfids - b->find_n + 1));
	*lo = b->fids[k];
	*hi = b->fids[k + b->find_n - 1] + 1;
}

static int em_find(bench *b)
{
	emh_em *em;
	emh_repo *r;
	emh_query *q;
	emh_list l = {0};
	int64_t lo, hi;
	pick_range(b, &lo, &hi);
	int rc = bench_fork(b, &em);
	if (rc)
		return em_fail(b, "fork", rc);
	if ((rc = emh_em_repo(em, &bench_entity, &r, &b->err)) == 0 && (rc = emh_repo_query(r, &q, &b->err)) == 0) {
		emh_q_where(q, emh_q_and(q, emh_q_ge(q, "id", emh_v_int64(lo)), emh_q_lt(q, "id", emh_v_int64(hi))));
		rc = emh_repo_find(r, q, &l, &b->err);
	}
	if (!rc) {
		for (size_t i = 0; i < l.count; i++) {
			const bench_item *it = l.items[i];
			b->sink += strlen(it->name) + (size_t)it->counter + (size_t)it->score;
		}
		if (l.count != b->find_n)
			rc = emh_error_set(&b->err, EMH_EINVAL, "read %zu rows of [%lld, %lld), expected %zu", l.count,
					   (long long)lo, (long long)hi, b->find_n);
	}
	emh_em_close(em);
	return rc ? em_fail(b, "find", rc) : 0;
}

static int em_fork_close(bench *b)
{
	emh_em *em;
	int rc = emh_host_fork(b->h, b->ctx, &em, &b->err);
	if (rc)
		return em_fail(b, "fork", rc);
	emh_em_close(em);
	return 0;
}

/* ---- the workloads, raw side ---- */

static int raw_fail(bench *b, const char *what)
{
	snprintf(b->failed, sizeof b->failed, "raw %s %s failed (see stderr)", b->driver, what);
	return -1;
}

static int raw_get_by_key(bench *b)
{
	return b->ops->get_by_key(b->raw, pick_id(b)) ? raw_fail(b, "get_by_key") : 0;
}

/* get_by_key_floor's side: on b->floor, the second raw connection. */
static int floor_get_by_key(bench *b)
{
	return b->ops->get_by_key_floor(b->floor, b->ctx, pick_id(b)) ? raw_fail(b, "get_by_key_floor") : 0;
}

static int raw_update(bench *b)
{
	return b->ops->update(b->raw, pick_id(b), ++b->counter) ? raw_fail(b, "update") : 0;
}

static int raw_update_where(bench *b)
{
	return b->ops->update_where(b->raw, pick_id(b), 1) ? raw_fail(b, "update_where") : 0;
}

static int raw_aggregate(bench *b)
{
	int64_t lo = pick_id(b), groups = 0;
	if (b->ops->aggregate(b->raw, lo, lo + BENCH_AGG_WINDOW, &groups) || groups == 0)
		return raw_fail(b, "aggregate");
	b->sink += (size_t)groups;
	return 0;
}

static int raw_find(bench *b)
{
	int64_t lo, hi;
	size_t n = 0;
	pick_range(b, &lo, &hi);
	if (b->ops->find(b->raw, lo, hi, &n) || n != b->find_n)
		return raw_fail(b, "find");
	b->sink += n;
	return 0;
}

static int raw_insert(bench *b)
{
	char name[32];
	snprintf(name, sizeof name, "new-%" PRIu64, ++b->seq);
	return b->ops->insert(b->raw, name, (int64_t)b->seq, (double)b->seq * 0.5) ? raw_fail(b, "insert") : 0;
}

/*
 * Run op for about secs seconds, adding the operations run to *n and the
 * time taken to *took; returns 0, or -1 when an operation failed.  The
 * clock is read every `batch` operations, batch doubling while reads come
 * less than 1 ms apart, so that fast operations do not mostly measure
 * clock_gettime.
 */
static int bench_run(bench *b, bench_op op, double secs, double *n, double *took)
{
	uint64_t ops = 0, batch = 1;
	double t0 = now_s(), last = t0, t;

	for (;;) {
		for (uint64_t i = 0; i < batch; i++)
			if (op(b))
				return -1;
		ops += batch;
		t = now_s();
		if (t - t0 >= secs)
			break;
		if (t - last < 1e-3 && batch < 4096)
			batch *= 2;
		last = t;
	}
	*n += (double)ops;
	*took += t - t0;
	return 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof *v, cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Slices per side in a round: raw and emhost take turns (raw, emhost,
 * emhost, raw, ...), so that a machine whose speed changes while a round
 * runs -- other work starting or stopping, two cores shared -- slows both
 * sides alike, instead of whichever side ran then. */
#define BENCH_SLICES 4

/*
 * Rates of raw and emhost and their ratio (emhost / raw), each the median
 * over b->rounds rounds after a warm-up; a round runs each side for secs
 * seconds in BENCH_SLICES interleaved slices, and its ratio is of its own
 * two rates.  raw may be NULL (emhost alone): then *raw_rate and *ratio
 * are 0.
 */
static int bench_pair(bench *b, bench_op raw, bench_op em, double secs, double *raw_rate, double *em_rate,
		      double *ratio)
{
	enum { MAX_ROUNDS = 64 };
	double warm = secs / 4 < 0.2 ? secs / 4 : 0.2, unused = 0, unused_t = 0;
	double rr[MAX_ROUNDS], er[MAX_ROUNDS], q[MAX_ROUNDS];
	int rounds = b->rounds < 1 ? 1 : b->rounds > MAX_ROUNDS ? MAX_ROUNDS : b->rounds;

	*raw_rate = *em_rate = *ratio = 0;
	if ((raw && bench_run(b, raw, warm, &unused, &unused_t)) || bench_run(b, em, warm, &unused, &unused_t))
		return -1;
	for (int round = 0; round < rounds; round++) {
		double rn = 0, rt = 0, en = 0, et = 0;
		for (int i = 0; i < 2 * BENCH_SLICES; i++) {
			bool raw_turn = i % 4 == 0 || i % 4 == 3;
			if (raw_turn && !raw)
				continue;
			if (bench_run(b, raw_turn ? raw : em, secs / BENCH_SLICES, raw_turn ? &rn : &en,
				      raw_turn ? &rt : &et))
				return -1;
		}
		rr[round] = rt > 0 ? rn / rt : 0;
		er[round] = et > 0 ? en / et : 0;
		q[round] = rr[round] > 0 ? er[round] / rr[round] : 0;
	}
	*raw_rate = raw ? median(rr, rounds) : 0;
	*em_rate = median(er, rounds);
	*ratio = raw ? median(q, rounds) : 0;
	return 0;
}

/* ---- one context ---- */

static int bench_exec(bench *b, const char *text)
{
	emh_em *em;
	int rc = emh_host_fork(b->h, b->ctx, &em, &b->err);
	if (rc)
		return rc;
	rc = emh_em_execute(em, text, &b->err);
	emh_em_close(em);
	return rc;
}

/* Empty the table (rows of an earlier run on a server) in the driver's language. */
static int bench_empty_table(bench *b)
{
	if (strcmp(b->driver, "mongo") == 0)
		return bench_exec(b, "{\"delete\": \"" BENCH_TABLE "\", \"deletes\": [{\"q\": {}, \"limit\": 0}]}");
	return bench_exec(b, "DELETE FROM " BENCH_TABLE);
}

static void bench_drop_table(bench *b)
{
	int rc;
	if (strcmp(b->driver, "mongo") == 0)
		rc = bench_exec(b, "{\"drop\": \"" BENCH_TABLE "\"}");
	else
		rc = bench_exec(b, "DROP TABLE " BENCH_TABLE);
	if (rc)
		printf("# bench %s: could not drop table " BENCH_TABLE ": %s\n", b->driver, b->err.message);
}

/* Insert rows through emhost, 500 per flush, their keys into *ids (malloc'd,
 * in insertion order; the caller frees it). */
static int bench_fill(bench *b, size_t rows, int64_t **idsp)
{
	size_t done = 0;
	int64_t *ids = *idsp = malloc((rows ? rows : 1) * sizeof *ids);

	if (!ids)
		return emh_error_set(&b->err, EMH_ENOMEM, "out of memory");
	while (done < rows) {
		emh_em *em;
		emh_repo *r;
		bench_item *batch[500];
		size_t n = rows - done < 500 ? rows - done : 500;
		char name[32];
		int rc = emh_host_fork(b->h, b->ctx, &em, &b->err);
		if (rc)
			return rc;
		rc = emh_em_repo(em, &bench_entity, &r, &b->err);
		for (size_t i = 0; i < n && !rc; i++) {
			void *p;
			rc = emh_repo_new(r, &p, &b->err);
			if (rc)
				break;
			batch[i] = p;
			snprintf(name, sizeof name, "item-%zu", done + i);
			batch[i]->name = emh_em_strdup(em, name);
			batch[i]->counter = 0;
			batch[i]->score = (double)(done + i) * 0.25;
			if (!batch[i]->name)
				rc = emh_error_set(&b->err, EMH_ENOMEM, "out of memory");
		}
		if (!rc)
			rc = emh_em_flush(em, &b->err);
		for (size_t i = 0; i < n && !rc; i++)
			ids[done + i] = batch[i]->id;
		emh_em_close(em);
		if (rc)
			return rc;
		done += n;
	}
	return 0;
}

/*
 * Register, sync, empty and fill the table, and open the raw side.
 * Returns 0, or -1 after printing why.
 */
static int bench_prepare(bench *b, size_t rows)
{
	int rc = emh_host_register_entity(b->h, b->ctx, &bench_entity, &b->err);
	if (!rc)
		rc = emh_host_sync_schema(b->h, b->ctx, &b->err);
	if (!rc)
		rc = bench_empty_table(b);
	if (rc) {
		printf("# bench %s: context '%s': cannot set up table " BENCH_TABLE ": %s: %s\n", b->driver, b->ctx,
		       emh_status_name(rc), b->err.message);
		return -1;
	}
	/* Open the raw side while emhost's connection is pooled: for an
	 * in-memory database it must exist when the raw side attaches. */
	b->raw = b->ops->open(b->h, b->ctx);
	if (!b->raw) {
		printf("# bench %s: context '%s': the raw side cannot open the database (see stderr)\n", b->driver,
		       b->ctx);
		return -1;
	}
	rc = bench_fill(b, rows, &b->ids);
	b->nids = rc ? 0 : rows;
	if (rc) {
		printf("# bench %s: context '%s': filling %zu rows through emhost failed: %s: %s\n", b->driver,
		       b->ctx, rows, emh_status_name(rc), b->err.message);
		return -1;
	}
	if (rows && b->ops->get_by_key(b->raw, b->ids[0]) != 0) {
		printf("# bench %s: context '%s': the raw side does not see the rows emhost wrote "
		       "(not the same database)\n", b->driver, b->ctx);
		return -1;
	}
	return 0;
}

/* Reads the replicas of ctx answered so far (emh_host_replicas). */
static uint64_t replica_reads(emh_host *h, const char *ctx)
{
	emh_replica_info *ri;
	size_t n;
	uint64_t sum = 0;
	if (emh_host_replicas(h, &ri, &n, NULL) != 0)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (strcmp(ri[i].context, ctx) == 0)
			sum += ri[i].queries;
	free(ri);
	return sum;
}

/*
 * get_by_key_replica (a context with replicas, docs/replicas.md): emhost's
 * get_by_key, whose reads go to the replica, against the raw client on that
 * same replica (its first URL, through a context added for the raw side).
 * replica_share: of emhost's gets, the fraction a replica answered.
 */
static int bench_replica(bench *b, const char *urls, double secs)
{
	char url[2048];
	snprintf(url, sizeof url, "%.*s", (int)strcspn(urls, ","), urls);
	const char *kv[] = {"url", url, NULL};
	if (emh_host_add_context(b->h, "bench_replica", kv, &b->err)) {
		printf("# bench %s get_by_key_replica: %s\n", b->driver, b->err.message);
		return -1;
	}
	int status = 0;
	void *raw = NULL, *primary = b->raw;
	/* the replica has replayed the fill (the table too) once it has the last row */
	if (emh_host_register_entity(b->h, "bench_replica", &bench_entity, &b->err) == 0) {
		for (double t0 = now_s(); now_s() - t0 < 60;) {
			emh_em *em = NULL;
			emh_repo *rp;
			void *obj;
			int rc = emh_host_fork(b->h, "bench_replica", &em, &b->err);
			if (!rc && (rc = emh_em_repo(em, &bench_entity, &rp, &b->err)) == 0)
				rc = emh_repo_get(rp, emh_v_int64(b->ids[b->nids - 1]), &obj, &b->err);
			emh_em_close(em);
			if (!rc)
				break;
			struct timespec ts = {0, 50000000L};
			nanosleep(&ts, NULL);
		}
	}
	if (!(raw = b->ops->open(b->h, "bench_replica"))) {
		printf("# bench %s get_by_key_replica: the raw side cannot open the replica\n", b->driver);
		status = -1;
		goto out_remove;
	}
	b->raw = raw;
	uint64_t before = replica_reads(b->h, b->ctx), gets0 = b->gets;
	double r, e, q;
	if (bench_pair(b, raw_get_by_key, em_get_by_key, secs, &r, &e, &q)) {
		printf("# bench %s get_by_key_replica: failed: %s\n", b->driver, b->failed);
		status = -1;
	} else {
		uint64_t gets = b->gets - gets0;
		double share = gets ? (double)(replica_reads(b->h, b->ctx) - before) / (double)gets : 0;
		printf("bench %s get_by_key_replica raw_ops_s=%.0f emhost_ops_s=%.0f ratio=%.3f replica_share=%.3f\n",
		       b->driver, r, e, q, share);
	}
	b->raw = primary;
	b->ops->close(raw);
out_remove:
	emh_host_remove_context(b->h, "bench_replica", NULL);
	fflush(stdout);
	return status;
}

/*
 * get_by_key_floor (a driver whose raw side has one, SQLite): the raw
 * get_by_key against the hand-written least a framework with emhost's
 * per-request model adds to it (bench/raw_sqlite.c), on a second raw
 * connection to the same database.  Its ratio bounds what emhost's
 * get_by_key could reach here; emhost itself takes no part.
 */
static int bench_floor(bench *b, double secs)
{
	if (!(b->floor = b->ops->open(b->h, b->ctx))) {
		printf("# bench %s get_by_key_floor: the raw side cannot open a second connection\n", b->driver);
		return -1;
	}
	double r, f, q;
	int status = 0;
	if (bench_pair(b, raw_get_by_key, floor_get_by_key, secs, &r, &f, &q)) {
		printf("# bench %s get_by_key_floor: failed: %s\n", b->driver, b->failed);
		status = -1;
	} else {
		printf("bench %s get_by_key_floor raw_ops_s=%.0f floor_ops_s=%.0f ratio=%.3f\n", b->driver, r, f, q);
	}
	b->ops->close(b->floor);
	b->floor = NULL;
	fflush(stdout);
	return status;
}

/* Is workload name (find_<N> for sizes) asked for by --workload only? */
static bool wanted(const char *only, const char *name)
{
	return !only || strcmp(only, name) == 0 || (strcmp(only, "find") == 0 && strncmp(name, "find_", 5) == 0);
}

/*
 * The find workload for each size in list: the block of rows it reads is
 * filled first (as many rows as the largest size), checked consecutive.
 * 0 or -1 (printed).
 */
static int bench_find(bench *b, const char *list, double secs, const char *only)
{
	size_t sizes[16], nsizes = 0, max = 0;
	int status = 0;

	for (const char *p = list; *p && nsizes < sizeof sizes / sizeof sizes[0];) {
		char *end, name[32], ro_name[32];
		unsigned long long v = strtoull(p, &end, 10);
		if (end == p || v == 0 || v > 100000000) {
			printf("# bench %s find: bad --find list '%s'\n", b->driver, list);
			return -1;
		}
		snprintf(name, sizeof name, "find_%llu", v);
		snprintf(ro_name, sizeof ro_name, "find_ro_%llu", v);
		if (wanted(only, name) || wanted(only, ro_name)) {
			sizes[nsizes++] = (size_t)v;
			if (v > max)
				max = (size_t)v;
		}
		p = *end == ',' ? end + 1 : end;
	}
	if (!nsizes)
		return 0;
	if (!b->ops->find) {
		printf("# bench %s find: skipped: the raw %s side has no find\n", b->driver, b->driver);
		return 0;
	}
	int rc = bench_fill(b, max, &b->fids);
	if (rc) {
		printf("# bench %s find: filling %zu rows through emhost failed: %s: %s\n", b->driver, max,
		       emh_status_name(rc), b->err.message);
		return -1;
	}
	for (size_t i = 1; i < max; i++)
		if (b->fids[i] != b->fids[i - 1] + 1) {
			printf("# bench %s find: the %zu keys emhost generated are not consecutive (%lld after %lld)\n",
			       b->driver, max, (long long)b->fids[i], (long long)b->fids[i - 1]);
			return -1;
		}
	b->nfids = max;
	for (size_t i = 0; i < nsizes * 2; i++) {
		double raw, em, q;
		char name[32];
		b->find_n = sizes[i / 2];
		snprintf(name, sizeof name, i % 2 ? "find_ro_%zu" : "find_%zu", b->find_n);
		if (!wanted(only, name))
			continue;
		b->fork_flags = i % 2 ? EMH_FORK_READONLY : 0;
		int failed = bench_pair(b, raw_find, em_find, secs, &raw, &em, &q);
		b->fork_flags = 0;
		if (failed) {
			printf("# bench %s %s: failed: %s\n", b->driver, name, b->failed);
			status = -1;
			continue;
		}
		printf("bench %s %s raw_ops_s=%.0f emhost_ops_s=%.0f ratio=%.3f\n", b->driver, name, raw, em, q);
		fflush(stdout);
	}
	return status;
}

/* Measure every workload on one context; returns 0 or -1 (printed). */
static int bench_context(emh_host *h, const char *ctx, size_t rows, double secs, int rounds, const char *only,
			 const char *find)
{
	static const struct {
		const char *name;
		bench_op raw, em;
		unsigned fork_flags;
	} workloads[] = {
		{"get_by_key", raw_get_by_key, em_get_by_key, 0},
		{"get_by_key_ro", raw_get_by_key, em_get_by_key, EMH_FORK_READONLY},
		{"update_flush", raw_update, em_update_flush, 0},
		{"insert_flush", raw_insert, em_insert_flush, 0},
		{"update_where", raw_update_where, em_update_where, 0},
		{"aggregate", raw_aggregate, em_aggregate, 0},
	};
	bench b;
	int status = 0;

	memset(&b, 0, sizeof b);
	b.h = h;
	b.ctx = ctx;
	b.rng = UINT64_C(0x9E3779B97F4A7C15);
	b.rounds = rounds;
	b.driver = emh_host_context_driver(h, ctx);
	if (!b.driver) {
		char up[64];
		size_t i;
		for (i = 0; ctx[i] && i < sizeof up - 1; i++)
			up[i] = (char)toupper((unsigned char)ctx[i]);
		up[i] = '\0';
		printf("# bench: no context '%s' (give it with -c FILE or EMH_CONTEXT_%s_URL=...)\n", ctx, up);
		return -1;
	}
	b.ops = raw_for(b.driver);
	if (!b.ops) {
		printf("# bench %s: context '%s' skipped: the raw %s side is not built into emh-bench "
		       "(bench/raw_%s.c is not compiled in: see bench/local.mk)\n", b.driver, ctx, b.driver, b.driver);
		return 0;
	}
	if (rows == 0) {
		printf("# bench %s: --rows must be at least 1\n", b.driver);
		return -1;
	}
	printf("# bench %s: context '%s', %zu rows, %.2f s per side and round, median of %d rounds\n", b.driver, ctx,
	       rows, secs, rounds);
	fflush(stdout);
	if (bench_prepare(&b, rows)) {
		status = -1;
		goto out_close;
	}
	for (size_t w = 0; w < sizeof workloads / sizeof workloads[0]; w++) {
		double raw, em, q;
		if (only && strcmp(only, workloads[w].name) != 0)
			continue;
		b.fork_flags = workloads[w].fork_flags;
		int failed = bench_pair(&b, workloads[w].raw, workloads[w].em, secs, &raw, &em, &q);
		b.fork_flags = 0;
		if (failed) {
			printf("# bench %s %s: failed: %s\n", b.driver, workloads[w].name, b.failed);
			status = -1;
			continue;
		}
		printf("bench %s %s raw_ops_s=%.0f emhost_ops_s=%.0f ratio=%.3f\n", b.driver, workloads[w].name, raw,
		       em, q);
		fflush(stdout);
	}
	if (bench_find(&b, find, secs, only))
		status = -1;
	double raw_unused, fc, q_unused;
	if (!only || strcmp(only, "fork_close") == 0) {
		if (bench_pair(&b, NULL, em_fork_close, secs, &raw_unused, &fc, &q_unused) || fc <= 0) {
			printf("# bench %s fork_close: failed: %s\n", b.driver, b.failed);
			status = -1;
		} else {
			printf("bench %s fork_close ns_per_op=%.0f\n", b.driver, 1e9 / fc);
		}
		fflush(stdout);
	}
	if (b.ops->get_by_key_floor && (!only || strcmp(only, "get_by_key_floor") == 0) && bench_floor(&b, secs))
		status = -1;
	if ((!only || strcmp(only, "relations") == 0) && bench_relations(h, ctx, b.driver, secs))
		status = -1;
	const char *rurls = emh_host_context_setting(h, ctx, "replica_urls");
	if (rurls && (!only || strcmp(only, "get_by_key_replica") == 0) && bench_replica(&b, rurls, secs))
		status = -1;
out_close:
	if (b.raw)
		b.ops->close(b.raw);
	bench_drop_table(&b);
	free(b.ids);
	free(b.fids);
	return status;
}

/*
 * The default context: in-memory SQLite reachable by the raw side (see the
 * file comment), else a temporary file.  Writes the context name into name
 * and the file to remove afterwards into file ("" for none).
 */
static int bench_add_default(emh_host *h, char *name, size_t cap, char *file, size_t fcap)
{
	char path[256];
	emh_error err;
	int rc;

	file[0] = '\0';
	snprintf(name, cap, "bench");
	snprintf(path, sizeof path, "file:/emh-bench-%ld?vfs=memdb", (long)getpid());
	rc = emh_host_add_context(h, name, (const char *const[]){"driver", "sqlite", "path", path,
								 "journal_mode", "memory", NULL}, &err);
	if (!rc)
		rc = emh_host_ping(h, name, &err);
	if (!rc) {
		printf("# bench sqlite (memory): context '%s' is an in-memory database (SQLite memdb VFS, path %s) "
		       "shared by emhost and the raw side\n", name, path);
		return 0;
	}
	printf("# bench sqlite: no shared in-memory database (%s): %s\n", emh_status_name(rc), err.message);
	emh_host_remove_context(h, name, NULL);

	snprintf(name, cap, "bench_file");
	const char *tmpdir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	int n = snprintf(file, fcap, "%s/emh-bench-%ld.db", tmpdir, (long)getpid());
	if (n < 0 || (size_t)n >= fcap) {
		printf("# bench sqlite: TMPDIR '%s' is too long for a database file name\n", tmpdir);
		file[0] = '\0';
		return EMH_EINVAL;
	}
	rc = emh_host_add_context(h, name, (const char *const[]){"driver", "sqlite", "path", file, NULL}, &err);
	if (rc) {
		printf("# bench sqlite: cannot add a sqlite context: %s: %s\n", emh_status_name(rc), err.message);
		file[0] = '\0';
		return rc;
	}
	printf("# bench sqlite (file): context '%s' uses the temporary file %s for both sides "
	       "(the raw side cannot reach emhost's in-memory database)\n", name, file);
	return 0;
}

static void remove_db_files(const char *file)
{
	static const char *const suffix[] = {"", "-wal", "-shm", "-journal"};
	char p[PATH_MAX + sizeof "-journal"];
	for (size_t i = 0; i < sizeof suffix / sizeof suffix[0]; i++) {
		int n = snprintf(p, sizeof p, "%s%s", file, suffix[i]);
		if (n > 0 && (size_t)n < sizeof p) /* a cut name is some other file */
			unlink(p);
	}
}

/* The configured name matching want case-insensitively (EMH_CONTEXT_PG_URL
 * makes a context that --context pg should find), else want itself: a
 * malloc'd copy the caller frees, NULL when out of memory. */
static char *resolve_ctx(emh_host *h, const char *want)
{
	emh_context_info *infos = NULL;
	size_t n = 0;
	const char *found = want;

	if (emh_host_contexts(h, &infos, &n, NULL) != 0)
		return strdup(want);
	for (size_t i = 0; i < n; i++) {
		if (strcasecmp(infos[i].name, want) == 0) {
			found = infos[i].name;
			break;
		}
	}
	char *out = strdup(found);
	emh_context_info_free(infos, n);
	return out;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: emh-bench [-c FILE] [-p DIR] [--context NAME]... [--seconds S] [--rows N] [--rounds R] "
		   "[--workload W] [--find LIST]\n"
		   "       emh-bench [-p DIR] --tenants [N,N,...] [--tenant-dir DIR] [--tenant-journal MODE] "
		   "[--seconds S]\n");
}

int main(int argc, char **argv)
{
	const char *cfg = NULL, *pdir = NULL, *tenants = NULL, *tdir = NULL, *tjournal = "memory";
	const char **ctxs = calloc((size_t)argc + 1, sizeof *ctxs);
	const char **envp = NULL;
	size_t nctx = 0, rows = 10000;
	double secs = 1.0;
	int rounds = ROUNDS;
	const char *only = NULL, *find = "1,100,10000,100000";
	char pbuf[PATH_MAX], defname[32], deffile[PATH_MAX] = "";
	emh_host_opts opts;
	emh_host *h = NULL;
	emh_error err;
	int status = 0;

	if (!ctxs)
		return 1;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "-c") == 0 && i + 1 < argc)
			cfg = argv[++i];
		else if (strcmp(a, "-p") == 0 && i + 1 < argc)
			pdir = argv[++i];
		else if (strcmp(a, "--context") == 0 && i + 1 < argc)
			ctxs[nctx++] = argv[++i];
		else if (strncmp(a, "--context=", 10) == 0)
			ctxs[nctx++] = a + 10;
		else if (strcmp(a, "--seconds") == 0 && i + 1 < argc)
			secs = atof(argv[++i]);
		else if (strcmp(a, "--rows") == 0 && i + 1 < argc)
			rows = (size_t)strtoull(argv[++i], NULL, 10);
		else if (strcmp(a, "--rounds") == 0 && i + 1 < argc)
			rounds = atoi(argv[++i]);
		else if (strcmp(a, "--workload") == 0 && i + 1 < argc)
			only = argv[++i];
		else if (strcmp(a, "--find") == 0 && i + 1 < argc)
			find = argv[++i];
		else if (strcmp(a, "--tenants") == 0)
			tenants = i + 1 < argc && argv[i + 1][0] >= '0' && argv[i + 1][0] <= '9' ? argv[++i]
												 : "1,100,10000";
		else if (strcmp(a, "--tenant-dir") == 0 && i + 1 < argc)
			tdir = argv[++i];
		else if (strcmp(a, "--tenant-journal") == 0 && i + 1 < argc)
			tjournal = argv[++i];
		else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			usage(stdout);
			free(ctxs);
			return 0;
		} else {
			usage(stderr);
			free(ctxs);
			return 2;
		}
	}
	if (secs <= 0 || rows == 0 || rounds < 1 || rounds > 1000) {
		fprintf(stderr, "emh-bench: --seconds and --rows must be positive, --rounds 1 to 1000\n");
		free(ctxs);
		return 2;
	}
	if (!pdir)
		pdir = getenv("EMH_PLUGIN_DIR");
	if (!pdir && getenv("EMH_BUILDDIR")) {
		int n = snprintf(pbuf, sizeof pbuf, "%s/plugins-build", getenv("EMH_BUILDDIR"));
		if (n < 0 || (size_t)n >= sizeof pbuf) {
			fprintf(stderr, "emh-bench: EMH_BUILDDIR is too long for a plugin directory\n");
			free(ctxs);
			return 2;
		}
		pdir = pbuf;
	}
	if (tenants) {
		free(ctxs);
		return bench_tenants(pdir, tenants, tdir, tjournal, secs) ? 1 : 0;
	}
	memset(&opts, 0, sizeof opts);
	opts.config_path = cfg;
	opts.plugin_dir = pdir;
	opts.log_level = EMH_LOG_WARN;
	if (nctx == 0) {
		/* Only the context added below is measured: leave out the
		 * environment's contexts (`make bench EMH_BENCH_ARGS=...` runs
		 * this with them set), which could make the host refuse to start. */
		size_t n = 0, k = 0;
		while (environ[n])
			n++;
		envp = calloc(n + 1, sizeof *envp);
		if (!envp) {
			free(ctxs);
			return 1;
		}
		for (size_t i = 0; i < n; i++)
			if (strncmp(environ[i], "EMH_CONTEXT_", 12) != 0 &&
			    strncmp(environ[i], "EMH_DEFAULT_CONTEXT=", 20) != 0)
				envp[k++] = environ[i];
		opts.envp = envp;
	}
	if (emh_host_new(&opts, &h, &err)) {
		/* Several contexts from the environment and none the default is a
		 * configuration error for the host; the first one asked for is as
		 * good a default as any here.  Otherwise report the first error. */
		emh_error err2;
		if (err.code != EMH_ECONFIG || !nctx || getenv("EMH_DEFAULT_CONTEXT") ||
		    setenv("EMH_DEFAULT_CONTEXT", ctxs[0], 0) || emh_host_new(&opts, &h, &err2)) {
			fprintf(stderr, "emh-bench: %s\n", err.message);
			free(envp);
			free(ctxs);
			return 1;
		}
	}
	if (nctx == 0) {
		if (bench_add_default(h, defname, sizeof defname, deffile, sizeof deffile)) {
			status = 1;
			goto out_free;
		}
		ctxs[nctx++] = defname;
	}
	for (size_t i = 0; i < nctx; i++) {
		char *name = resolve_ctx(h, ctxs[i]);
		if (!name || bench_context(h, name, rows, secs, rounds, only, find))
			status = 1;
		free(name);
	}
out_free:
	emh_host_free(h);
	if (deffile[0])
		remove_db_files(deffile);
	free(envp);
	free(ctxs);
	return status;
}
