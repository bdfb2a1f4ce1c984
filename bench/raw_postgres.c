/* SPDX-License-Identifier: MIT */
/* bench/raw_postgres.c: the raw libpq side of emh-bench (same statements and binary formats as the driver). */
#include "config.h"

#include <endian.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "bench.h"

/* int8, text, int8, float8, as the driver declares them */
#define RAW_INT8OID 20
#define RAW_TEXTOID 25
#define RAW_FLOAT8OID 701

typedef struct raw_pg {
	PGconn *pg;
} raw_pg;

static const char raw_get_sql[] =
	"SELECT \"id\", \"name\", \"counter\", \"score\" FROM \"" BENCH_TABLE "\" WHERE \"id\" = $1";
static const char raw_update_sql[] = "UPDATE \"" BENCH_TABLE "\" SET \"counter\" = $1 WHERE \"id\" = $2";
static const char raw_update_where_sql[] =
	"UPDATE \"" BENCH_TABLE "\" SET \"counter\" = \"counter\" + $1 WHERE \"id\" = $2";
static const char raw_agg_sql[] = "SELECT \"counter\", COUNT(*), SUM(\"score\") FROM \"" BENCH_TABLE
				  "\" WHERE \"id\" >= $1 AND \"id\" < $2 GROUP BY \"counter\"";
static const char raw_find_sql[] = "SELECT \"id\", \"name\", \"counter\", \"score\" FROM \"" BENCH_TABLE
				   "\" WHERE \"id\" >= $1 AND \"id\" < $2";
static const char raw_insert_sql[] =
	"INSERT INTO \"" BENCH_TABLE "\" (\"name\", \"counter\", \"score\") VALUES ($1, $2, $3) RETURNING \"id\"";

static int raw_pg_prepare(PGconn *pg, const char *name, const char *sql, int n, const Oid *types)
{
	PGresult *r = PQprepare(pg, name, sql, n, types);
	int ok = r && PQresultStatus(r) == PGRES_COMMAND_OK;
	if (!ok)
		fprintf(stderr, "raw postgres: prepare %s: %s", name, PQerrorMessage(pg));
	PQclear(r);
	return ok ? 0 : -1;
}

static void *raw_pg_open(emh_host *h, const char *ctx)
{
	const char *kw[14], *val[14];
	int n = 0;
	raw_pg *raw;
#define RAW_KW(k, v)                                                           \
	do {                                                                   \
		const char *v_ = (v);                                          \
		if (v_ && *v_) {                                               \
			kw[n] = (k);                                           \
			val[n] = v_;                                           \
			n++;                                                   \
		}                                                              \
	} while (0)
	/* the context's whole URL first, as emhost's driver does; single keys override it */
	const char *url = emh_host_context_setting(h, ctx, "url");
	RAW_KW("dbname", url);
	RAW_KW("host", emh_host_context_setting(h, ctx, "host"));
	RAW_KW("port", emh_host_context_setting(h, ctx, "port"));
	RAW_KW("dbname", emh_host_context_setting(h, ctx, "database"));
	RAW_KW("user", emh_host_context_setting(h, ctx, "user"));
	RAW_KW("password", emh_host_context_setting(h, ctx, "password"));
	RAW_KW("sslmode", emh_host_context_setting(h, ctx, "sslmode"));
	RAW_KW("client_encoding", "UTF8");
	RAW_KW("options", "-c TimeZone=UTC -c standard_conforming_strings=on");
#undef RAW_KW
	kw[n] = val[n] = NULL;

	raw = calloc(1, sizeof *raw);
	if (!raw)
		return NULL;
	raw->pg = PQconnectdbParams(kw, val, url && *url ? 1 : 0);
	if (!raw->pg || PQstatus(raw->pg) != CONNECTION_OK) {
		fprintf(stderr, "raw postgres: cannot connect for context '%s'\n", ctx);
		PQfinish(raw->pg);
		free(raw);
		return NULL;
	}
	static const Oid get_t[] = {RAW_INT8OID}, upd_t[] = {RAW_INT8OID, RAW_INT8OID},
			 ins_t[] = {RAW_TEXTOID, RAW_INT8OID, RAW_FLOAT8OID};
	if (raw_pg_prepare(raw->pg, "raw_get", raw_get_sql, 1, get_t) ||
	    raw_pg_prepare(raw->pg, "raw_update", raw_update_sql, 2, upd_t) ||
	    raw_pg_prepare(raw->pg, "raw_update_where", raw_update_where_sql, 2, upd_t) ||
	    raw_pg_prepare(raw->pg, "raw_insert", raw_insert_sql, 3, ins_t) ||
	    raw_pg_prepare(raw->pg, "raw_agg", raw_agg_sql, 2, upd_t) ||
	    raw_pg_prepare(raw->pg, "raw_find", raw_find_sql, 2, upd_t)) {
		PQfinish(raw->pg);
		free(raw);
		return NULL;
	}
	return raw;
}

static void raw_pg_close(void *p)
{
	raw_pg *raw = p;
	if (!raw)
		return;
	PQfinish(raw->pg);
	free(raw);
}

static uint64_t raw_be64(const char *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return be64toh(v);
}

/* Run the prepared get and read every column, as the driver does. */
static int raw_pg_select(raw_pg *raw, int64_t id)
{
	uint64_t be = htobe64((uint64_t)id);
	const char *vals[1] = {(const char *)&be};
	static const int lens[1] = {8}, fmts[1] = {1};
	PGresult *r = PQexecPrepared(raw->pg, "raw_get", 1, vals, lens, fmts, 1);
	int rc = -1;
	if (r && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
		volatile int64_t rid = (int64_t)raw_be64(PQgetvalue(r, 0, 0));
		volatile size_t nlen = (size_t)PQgetlength(r, 0, 1);
		const char *name = PQgetvalue(r, 0, 1);
		volatile int64_t counter = PQgetisnull(r, 0, 2) ? 0 : (int64_t)raw_be64(PQgetvalue(r, 0, 2));
		uint64_t sb = PQgetisnull(r, 0, 3) ? 0 : raw_be64(PQgetvalue(r, 0, 3));
		volatile double score;
		double d;
		memcpy(&d, &sb, 8);
		score = d;
		(void)rid, (void)nlen, (void)name, (void)counter, (void)score;
		rc = 0;
	}
	PQclear(r);
	return rc;
}

static int raw_pg_get_by_key(void *p, int64_t id)
{
	return raw_pg_select(p, id);
}

static int raw_pg_command(raw_pg *raw, const char *sql)
{
	PGresult *r = PQexec(raw->pg, sql);
	int rc = r && PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : -1;
	PQclear(r);
	return rc;
}

static int raw_pg_update(void *p, int64_t id, int64_t counter)
{
	raw_pg *raw = p;
	uint64_t b[2] = {htobe64((uint64_t)counter), htobe64((uint64_t)id)};
	const char *vals[2] = {(const char *)&b[0], (const char *)&b[1]};
	static const int lens[2] = {8, 8}, fmts[2] = {1, 1};
	PGresult *r;
	int rc;

	if (raw_pg_command(raw, "BEGIN"))
		return -1;
	if (raw_pg_select(raw, id)) {
		raw_pg_command(raw, "ROLLBACK");
		return -1;
	}
	r = PQexecPrepared(raw->pg, "raw_update", 2, vals, lens, fmts, 1);
	rc = r && PQresultStatus(r) == PGRES_COMMAND_OK && strcmp(PQcmdTuples(r), "1") == 0 ? 0 : -1;
	PQclear(r);
	if (rc) {
		raw_pg_command(raw, "ROLLBACK");
		return -1;
	}
	return raw_pg_command(raw, "COMMIT");
}

static int raw_pg_update_where(void *p, int64_t id, int64_t delta)
{
	raw_pg *raw = p;
	uint64_t b[2] = {htobe64((uint64_t)delta), htobe64((uint64_t)id)};
	const char *vals[2] = {(const char *)&b[0], (const char *)&b[1]};
	static const int lens[2] = {8, 8}, fmts[2] = {1, 1};
	PGresult *r = PQexecPrepared(raw->pg, "raw_update_where", 2, vals, lens, fmts, 1);
	int rc = r && PQresultStatus(r) == PGRES_COMMAND_OK && strcmp(PQcmdTuples(r), "1") == 0 ? 0 : -1;
	PQclear(r);
	return rc;
}

static int raw_pg_insert(void *p, const char *name, int64_t counter, double score)
{
	raw_pg *raw = p;
	uint64_t cb = htobe64((uint64_t)counter), sb;
	memcpy(&sb, &score, 8);
	sb = htobe64(sb);
	const char *vals[3] = {name, (const char *)&cb, (const char *)&sb};
	int lens[3] = {(int)strlen(name), 8, 8};
	static const int fmts[3] = {1, 1, 1};
	PGresult *r = PQexecPrepared(raw->pg, "raw_insert", 3, vals, lens, fmts, 1);
	int rc = -1;
	if (r && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && PQgetlength(r, 0, 0) == 8) {
		volatile int64_t id = (int64_t)raw_be64(PQgetvalue(r, 0, 0));
		(void)id;
		rc = 0;
	}
	PQclear(r);
	return rc;
}

static int raw_pg_aggregate(void *p, int64_t lo, int64_t hi, int64_t *groups)
{
	raw_pg *raw = p;
	uint64_t b[2] = {htobe64((uint64_t)lo), htobe64((uint64_t)hi)};
	const char *vals[2] = {(const char *)&b[0], (const char *)&b[1]};
	static const int lens[2] = {8, 8}, fmts[2] = {1, 1};
	PGresult *r = PQexecPrepared(raw->pg, "raw_agg", 2, vals, lens, fmts, 1);
	int rc = -1;
	if (r && PQresultStatus(r) == PGRES_TUPLES_OK) {
		volatile double sink = 0;
		int n = PQntuples(r);
		for (int i = 0; i < n; i++) {
			uint64_t sb = raw_be64(PQgetvalue(r, i, 2));
			double d;
			memcpy(&d, &sb, 8);
			sink += (double)(int64_t)raw_be64(PQgetvalue(r, i, 0)) +
				(double)(int64_t)raw_be64(PQgetvalue(r, i, 1)) + d;
		}
		*groups = n;
		rc = 0;
	}
	PQclear(r);
	return rc;
}

/* The rows of [lo, hi) into an array of bench_item, binary results as the driver reads them. */
static int raw_pg_find(void *p, int64_t lo, int64_t hi, size_t *rows)
{
	raw_pg *raw = p;
	uint64_t b[2] = {htobe64((uint64_t)lo), htobe64((uint64_t)hi)};
	const char *vals[2] = {(const char *)&b[0], (const char *)&b[1]};
	static const int lens[2] = {8, 8}, fmts[2] = {1, 1};
	PGresult *r = PQexecPrepared(raw->pg, "raw_find", 2, vals, lens, fmts, 1);
	bench_rows out = {0};
	int rc = -1;
	if (r && PQresultStatus(r) == PGRES_TUPLES_OK) {
		int n = PQntuples(r);
		rc = 0;
		for (int i = 0; i < n; i++) {
			bench_item *it = bench_rows_push(&out);
			char *name = it ? malloc((size_t)PQgetlength(r, i, 1) + 1) : NULL;
			if (!name) {
				if (it)
					out.n--;
				rc = -1;
				break;
			}
			memcpy(name, PQgetvalue(r, i, 1), (size_t)PQgetlength(r, i, 1));
			name[PQgetlength(r, i, 1)] = '\0';
			it->name = name;
			it->id = (int64_t)raw_be64(PQgetvalue(r, i, 0));
			it->counter = PQgetisnull(r, i, 2) ? 0 : (int64_t)raw_be64(PQgetvalue(r, i, 2));
			uint64_t sb = PQgetisnull(r, i, 3) ? 0 : raw_be64(PQgetvalue(r, i, 3));
			memcpy(&it->score, &sb, 8);
		}
	}
	PQclear(r);
	*rows = out.n;
	bench_rows_free(&out);
	return rc;
}

const bench_raw_ops bench_raw_postgres = {
	.driver = "postgres",
	.open = raw_pg_open,
	.close = raw_pg_close,
	.get_by_key = raw_pg_get_by_key,
	.update = raw_pg_update,
	.insert = raw_pg_insert,
	.update_where = raw_pg_update_where,
	.aggregate = raw_pg_aggregate,
	.find = raw_pg_find,
};
