/* SPDX-License-Identifier: MIT */
/*
 * plugins/postgres/statements.c: the core's compiled statements: prepared
 * once per connection (emh_prepcache) and executed with every parameter and
 * result column in PostgreSQL's binary format (encoded for the statement's
 * declared types, decoded by type OID); PREPARE and a deferred BEGIN
 * pipelined with the first execution; statements the server forgot or
 * re-planned prepared again.
 */
#include "config.h"

#include <endian.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include <emhost/driver.h>
#include <emhost/prepcache.h>

#include "postgres_int.h"

/*
 * Type OIDs of the built-in types we bind and read (pg_type.oid; they are
 * fixed across server versions).  libpq-dev ships no header with them.
 */
enum {
	PG_BOOLOID = 16,
	PG_BYTEAOID = 17,
	PG_CHAROID = 18,
	PG_NAMEOID = 19,
	PG_INT8OID = 20,
	PG_INT2OID = 21,
	PG_INT4OID = 23,
	PG_TEXTOID = 25,
	PG_OIDOID = 26,
	PG_JSONOID = 114,
	PG_FLOAT4OID = 700,
	PG_FLOAT8OID = 701,
	PG_UNKNOWNOID = 705,
	PG_BPCHAROID = 1042,
	PG_VARCHAROID = 1043,
	PG_DATEOID = 1082,
	PG_TIMESTAMPOID = 1114,
	PG_TIMESTAMPTZOID = 1184,
	PG_JSONBOID = 3802,
};

/* Microseconds between 1970-01-01 (emhost) and 2000-01-01 (PostgreSQL) epochs. */
#define PG_EPOCH_OFFSET_US INT64_C(946684800000000)

/*
 * The statement cache's handle for a statement prepared on the server (which
 * keeps it by name): how each result column is read, fixed from the first
 * result it returns.  A prepared statement's result columns never change
 * type: the server refuses with 0A000 "cached plan must not change result
 * type" instead (pg_stale_statement then marks the handle stale, and the
 * statement is deallocated, prepared and planned afresh), so the oids are
 * read once per statement on a connection, not once per result.
 */
struct pg_prep {
	char name[16]; /* "emh_<id>", what the server knows it by */
	/* the server's copy must not be used (planned for an old result type,
	 * or found there unexpectedly): DEALLOCATE it, then prepare afresh */
	bool stale;
	bool planned;
	uint16_t ncols;
	struct pg_col {
		Oid oid;
		emh_type type;      /* asked for: st->col_types[j] */
		unsigned char kind; /* PG_K_* */
	} cols[];
};

static void pg_stmt_name(char *name, uint32_t id);

/* A handle for st, not planned yet; NULL when out of memory. */
static pg_prep *pg_prep_new(const emh_stmt *st)
{
	pg_prep *pp = malloc(sizeof *pp + st->ncols * sizeof pp->cols[0]);
	if (pp) {
		pg_stmt_name(pp->name, st->id);
		pp->stale = false;
		pp->planned = false;
		pp->ncols = st->ncols;
	}
	return pp;
}

void pg_prep_free(void *handle, void *arg)
{
	(void)arg;
	free(handle);
}

static Oid pg_type_oid(emh_type t)
{
	switch (t) {
	case EMH_T_BOOL: return PG_BOOLOID;
	case EMH_T_INT32: return PG_INT4OID;
	case EMH_T_INT64: return PG_INT8OID;
	case EMH_T_DOUBLE: return PG_FLOAT8OID;
	case EMH_T_TEXT: return PG_TEXTOID;
	case EMH_T_BLOB: return PG_BYTEAOID;
	case EMH_T_TIMESTAMP: return PG_TIMESTAMPTZOID;
	case EMH_T_JSON: return PG_JSONOID;
	}
	return 0;
}

static const char *pg_stmt_what(const emh_stmt *st, char *buf, size_t cap)
{
	const char *table = st->meta && st->meta->entity ? st->meta->entity->table : NULL;
	const char *verb;
	switch (st->kind) {
	case EMH_STMT_SELECT: verb = "select from"; break;
	case EMH_STMT_COUNT: verb = "count of"; break;
	case EMH_STMT_INSERT: verb = "insert into"; break;
	case EMH_STMT_UPDATE: verb = "update of"; break;
	case EMH_STMT_DELETE: verb = "delete from"; break;
	default: verb = "statement on"; break;
	}
	if (table)
		snprintf(buf, cap, "%s '%s'", verb, table);
	else
		snprintf(buf, cap, "statement");
	return buf;
}

static int pg_grow(void **p, size_t *cap, size_t want, size_t elem)
{
	void *np;
	if (want <= *cap)
		return 0;
	np = realloc(*p, want * elem);
	if (!np)
		return -1;
	*p = np;
	*cap = want;
	return 0;
}

/* ---- values in the binary format ---- */

static int64_t pg_value_int(const emh_value *v)
{
	switch (v->type) {
	case EMH_T_INT32: return v->u.i32;
	case EMH_T_BOOL: return v->u.b;
	case EMH_T_DOUBLE: return v->u.d >= -9.2e18 && v->u.d <= 9.2e18 ? (int64_t)v->u.d : 0;
	default: return v->u.i64;
	}
}

/*
 * Encode params[i] in PostgreSQL's binary format for the statement's
 * declared type (the value may be of a kindred type: int32 for int64,
 * int64 for a timestamp).  Numbers go through c->pbuf[i].
 */
static int pg_bind(emh_conn *c, const emh_stmt *st, const emh_value *params, emh_error *err)
{
	for (uint16_t i = 0; i < st->nparams; i++) {
		const emh_value *v = &params[i];
		emh_type t = st->param_types[i];
		char *b = (char *)&c->pbuf[i];
		uint64_t u;
		int64_t x;

		c->pfmts[i] = 1;
		if (v->is_null) {
			c->pvals[i] = NULL;
			c->plens[i] = 0;
			continue;
		}
		switch (t) {
		case EMH_T_BOOL:
			b[0] = v->type == EMH_T_BOOL ? (char)v->u.b : (char)(pg_value_int(v) != 0);
			c->plens[i] = 1;
			break;
		case EMH_T_INT32: {
			uint32_t be;
			x = pg_value_int(v);
			if (x < INT32_MIN || x > INT32_MAX)
				return emh_error_set(err, EMH_EINVAL, "parameter %u out of int32 range", (unsigned)i + 1);
			be = htobe32((uint32_t)(int32_t)x);
			memcpy(b, &be, 4);
			c->plens[i] = 4;
			break;
		}
		case EMH_T_INT64:
			u = htobe64((uint64_t)pg_value_int(v));
			memcpy(b, &u, 8);
			c->plens[i] = 8;
			break;
		case EMH_T_DOUBLE: {
			double d = v->type == EMH_T_DOUBLE ? v->u.d : (double)pg_value_int(v);
			memcpy(&u, &d, 8);
			u = htobe64(u);
			memcpy(b, &u, 8);
			c->plens[i] = 8;
			break;
		}
		case EMH_T_TIMESTAMP:
			x = pg_value_int(v);
			if (x < INT64_MIN + PG_EPOCH_OFFSET_US)
				return emh_error_set(err, EMH_EINVAL, "parameter %u: timestamp out of range",
						     (unsigned)i + 1);
			u = htobe64((uint64_t)(x - PG_EPOCH_OFFSET_US));
			memcpy(b, &u, 8);
			c->plens[i] = 8;
			break;
		case EMH_T_TEXT:
		case EMH_T_JSON:
		case EMH_T_BLOB:
			if (v->u.s.len > INT32_MAX)
				return emh_error_set(err, EMH_EINVAL, "parameter %u is larger than 2 GiB",
						     (unsigned)i + 1);
			c->pvals[i] = v->u.s.ptr ? v->u.s.ptr : "";
			c->plens[i] = (int)v->u.s.len;
			continue;
		default:
			return emh_error_set(err, EMH_EINVAL, "parameter %u has unknown type %d", (unsigned)i + 1,
					     (int)t);
		}
		c->pvals[i] = b;
	}
	return 0;
}

static uint16_t pg_be16(const char *p)
{
	uint16_t v;
	memcpy(&v, p, 2);
	return be16toh(v);
}

static uint32_t pg_be32(const char *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return be32toh(v);
}

static uint64_t pg_be64(const char *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return be64toh(v);
}

/* Can a column of type oid be read as want?  (Checked once per result.) */
static bool pg_readable(Oid oid, emh_type want)
{
	switch (want) {
	case EMH_T_BOOL: return oid == PG_BOOLOID;
	case EMH_T_INT32:
	case EMH_T_INT64: return oid == PG_INT2OID || oid == PG_INT4OID || oid == PG_INT8OID || oid == PG_OIDOID;
	case EMH_T_DOUBLE:
		return oid == PG_FLOAT8OID || oid == PG_FLOAT4OID || oid == PG_INT2OID || oid == PG_INT4OID ||
		       oid == PG_INT8OID;
	case EMH_T_TEXT:
	case EMH_T_JSON:
		return oid == PG_TEXTOID || oid == PG_VARCHAROID || oid == PG_BPCHAROID || oid == PG_NAMEOID ||
		       oid == PG_JSONOID || oid == PG_JSONBOID || oid == PG_UNKNOWNOID || oid == PG_CHAROID;
	case EMH_T_BLOB: return oid == PG_BYTEAOID;
	case EMH_T_TIMESTAMP: return oid == PG_TIMESTAMPTZOID || oid == PG_TIMESTAMPOID || oid == PG_DATEOID;
	}
	return false;
}

/* Integer of a binary int2/int4/int8/oid value; false on a bad length. */
static bool pg_read_int(Oid oid, const char *p, int len, int64_t *out)
{
	if (oid == PG_INT2OID && len == 2)
		*out = (int16_t)pg_be16(p);
	else if (oid == PG_INT4OID && len == 4)
		*out = (int32_t)pg_be32(p);
	else if (oid == PG_OIDOID && len == 4)
		*out = pg_be32(p);
	else if (oid == PG_INT8OID && len == 8)
		*out = (int64_t)pg_be64(p);
	else
		return false;
	return true;
}

/* Decode one binary field (already known readable) into v of type want;
 * column col of res, whose name is looked up only for an error. */
static int pg_decode(Oid oid, const char *p, int len, emh_type want, emh_value *v, const PGresult *res, int col,
		     emh_error *err)
{
	int64_t x;
	uint64_t u;

	v->type = want;
	v->is_null = false;
	switch (want) {
	case EMH_T_BOOL:
		if (len != 1)
			goto bad;
		v->u.b = p[0] != 0;
		return 0;
	case EMH_T_INT32:
		if (!pg_read_int(oid, p, len, &x))
			goto bad;
		if (x < INT32_MIN || x > INT32_MAX)
			return emh_error_set(err, EMH_EINVAL, "column '%s': value out of int32 range", PQfname(res, col));
		v->u.i32 = (int32_t)x;
		return 0;
	case EMH_T_INT64:
		if (!pg_read_int(oid, p, len, &x))
			goto bad;
		v->u.i64 = x;
		return 0;
	case EMH_T_DOUBLE:
		if (oid == PG_FLOAT8OID && len == 8) {
			u = pg_be64(p);
			memcpy(&v->u.d, &u, 8);
		} else if (oid == PG_FLOAT4OID && len == 4) {
			uint32_t w = pg_be32(p);
			float f;
			memcpy(&f, &w, 4);
			v->u.d = f;
		} else if (pg_read_int(oid, p, len, &x)) {
			v->u.d = (double)x;
		} else {
			goto bad;
		}
		return 0;
	case EMH_T_TEXT:
	case EMH_T_JSON:
	case EMH_T_BLOB:
		if (oid == PG_JSONBOID) {
			/* binary jsonb: a version byte (1), then the text */
			if (len < 1 || p[0] != 1)
				goto bad;
			p++;
			len--;
		}
		v->u.s.ptr = p;
		v->u.s.len = (size_t)len;
		return 0;
	case EMH_T_TIMESTAMP:
		if (oid == PG_DATEOID && len == 4) {
			x = (int64_t)(int32_t)pg_be32(p);
			if (x == INT32_MAX || x == INT32_MIN) /* +-infinity */
				v->u.i64 = x == INT32_MAX ? INT64_MAX : INT64_MIN;
			else if (x > 100000000 || x < -100000000) /* beyond ~273,000 years */
				return emh_error_set(err, EMH_EINVAL, "column '%s': date out of range", PQfname(res, col));
			else
				v->u.i64 = x * INT64_C(86400000000) + PG_EPOCH_OFFSET_US;
			return 0;
		}
		if (len != 8)
			goto bad;
		x = (int64_t)pg_be64(p);
		/* +-infinity stay at the int64 extremes */
		if (x == INT64_MAX || x == INT64_MIN)
			v->u.i64 = x;
		else if (x > INT64_MAX - PG_EPOCH_OFFSET_US)
			return emh_error_set(err, EMH_EINVAL, "column '%s': timestamp out of range", PQfname(res, col));
		else
			v->u.i64 = x + PG_EPOCH_OFFSET_US;
		return 0;
	}
bad:
	return emh_error_set(err, EMH_EDRIVER, "column '%s': unexpected binary value (type oid %u, %d bytes)",
			     PQfname(res, col), (unsigned)oid, len);
}

/* ---- executing ---- */

/*
 * How a column of a result is read, fixed once per prepared statement from
 * its type oid and the type asked: the common exact pairs are decoded inline
 * by pg_deliver, any other (and a value of a surprising length) by pg_decode.
 */
enum { PG_K_DECODE, PG_K_INT8, PG_K_INT4, PG_K_FLOAT8, PG_K_TEXT, PG_K_BOOL };

static unsigned char pg_plan(Oid oid, emh_type want)
{
	switch (want) {
	case EMH_T_INT64: return oid == PG_INT8OID ? PG_K_INT8 : PG_K_DECODE;
	case EMH_T_INT32: return oid == PG_INT4OID ? PG_K_INT4 : PG_K_DECODE;
	case EMH_T_DOUBLE: return oid == PG_FLOAT8OID ? PG_K_FLOAT8 : PG_K_DECODE;
	case EMH_T_TEXT:
	case EMH_T_JSON: return oid == PG_TEXTOID || oid == PG_VARCHAROID ? PG_K_TEXT : PG_K_DECODE;
	case EMH_T_BOOL: return oid == PG_BOOLOID ? PG_K_BOOL : PG_K_DECODE;
	default: return PG_K_DECODE; /* timestamps and dates shift epochs; bytea, jsonb */
	}
}

/* Fix pp's column plan from the first result of its statement (st's columns). */
static int pg_prep_plan(pg_prep *pp, const emh_stmt *st, const PGresult *res, emh_error *err)
{
	char what[120];
	for (int j = 0; j < (int)pp->ncols; j++) {
		Oid oid = PQftype(res, j);
		if (PQfformat(res, j) != 1 || !pg_readable(oid, st->col_types[j]))
			return emh_error_set(err, EMH_ESCHEMA,
					     "%s: column '%s' has type oid %u, which cannot be read as %s",
					     pg_stmt_what(st, what, sizeof what), PQfname(res, j), (unsigned)oid,
					     emh_type_name(st->col_types[j]));
		pp->cols[j].oid = oid;
		pp->cols[j].type = st->col_types[j];
		pp->cols[j].kind = pg_plan(oid, st->col_types[j]);
	}
	pp->planned = true;
	return 0;
}

/* Deliver the rows of res to sink, typed as st->col_types, read as pp plans. */
static int pg_deliver(emh_conn *c, const emh_stmt *st, pg_prep *pp, PGresult *res, emh_rowsink *sink,
		      emh_error *err)
{
	int nrows = PQntuples(res), ncols = PQnfields(res);
	char what[120];
	int rc;

	if (!sink || !sink->row || nrows == 0)
		return 0;
	if (ncols != st->ncols || ncols != pp->ncols)
		return emh_error_set(err, EMH_EDRIVER, "%s: %d columns returned, expected %u",
				     pg_stmt_what(st, what, sizeof what), ncols, (unsigned)st->ncols);
	if (!pp->planned && (rc = pg_prep_plan(pp, st, res, err)) != 0)
		return rc;
	if ((size_t)ncols > c->rowcap) {
		size_t cap = c->rowcap;
		if (pg_grow((void **)&c->row, &cap, (size_t)ncols, sizeof *c->row))
			return emh_error_set(err, EMH_ENOMEM, "out of memory");
		c->rowcap = cap;
	}
	for (int i = 0; i < nrows; i++) {
		/* by pointer, the column's plan carrying its type: few enough
		 * values live across the libpq calls to stay in registers */
		emh_value *v = c->row;
		const struct pg_col *pc = pp->cols;
		for (int j = 0; j < ncols; j++, v++, pc++) {
			/* A NULL reads as the empty string (length 0): only an empty
			 * value is asked whether it is NULL, one libpq call less for
			 * every other column of every row. */
			int len = PQgetlength(res, i, j);
			if (len == 0 && PQgetisnull(res, i, j)) {
				*v = emh_v_null(pc->type);
				continue;
			}
			const char *p = PQgetvalue(res, i, j);
			v->type = pc->type;
			v->is_null = false;
			switch (pc->kind) {
			case PG_K_INT8:
				if (len != 8)
					break;
				v->u.i64 = (int64_t)pg_be64(p);
				continue;
			case PG_K_INT4:
				if (len != 4)
					break;
				v->u.i32 = (int32_t)pg_be32(p);
				continue;
			case PG_K_FLOAT8: {
				if (len != 8)
					break;
				uint64_t u = pg_be64(p);
				memcpy(&v->u.d, &u, 8);
				continue;
			}
			case PG_K_TEXT:
				v->u.s.ptr = p;
				v->u.s.len = (size_t)len;
				continue;
			case PG_K_BOOL:
				if (len != 1)
					break;
				v->u.b = p[0] != 0;
				continue;
			}
			if ((rc = pg_decode(pc->oid, p, len, pc->type, v, res, j, err)) != 0)
				return rc;
		}
		if ((rc = sink->row(sink, c->row, err)) != 0)
			return rc;
	}
	return 0;
}

/* Size the parameter scratch for n parameters. */
static int pg_params_reserve(emh_conn *c, size_t n, emh_error *err)
{
	size_t cap;
	if (n <= c->pcap)
		return 0;
	cap = c->pcap;
	if (pg_grow((void **)&c->pvals, &cap, n, sizeof *c->pvals))
		goto out_nomem;
	cap = c->pcap;
	if (pg_grow((void **)&c->plens, &cap, n, sizeof *c->plens))
		goto out_nomem;
	cap = c->pcap;
	if (pg_grow((void **)&c->pfmts, &cap, n, sizeof *c->pfmts))
		goto out_nomem;
	cap = c->pcap;
	if (pg_grow((void **)&c->pbuf, &cap, n, sizeof *c->pbuf))
		goto out_nomem;
	c->pcap = n;
	return 0;
out_nomem:
	return emh_error_set(err, EMH_ENOMEM, "out of memory");
}

/*
 * Send [BEGIN,] [PREPARE,] EXECUTE and one Sync in a single round trip
 * (libpq pipeline mode) and collect the results in order.  On success *out
 * is the EXECUTE's result; on failure err holds the first failing step's
 * error (later steps only report "pipeline aborted").
 */
#ifdef LIBPQ_HAS_PIPELINING
static int pg_exec_pipeline(emh_conn *c, const emh_stmt *st, const char *name, bool begin, pg_prep **newpp,
			    PGresult **out, emh_error *err)
{
	bool prepare = *newpp != NULL;
	Oid oids_local[32], *oids = oids_local;
	char what[120];
	int nsteps = (begin ? 1 : 0) + (prepare ? 1 : 0) + 1, step = 0, rc = 0;
	int nulls = 0;
	bool synced = false;

	*out = NULL;
	pg_stmt_what(st, what, sizeof what);
	if (prepare && st->nparams > 32 && !(oids = malloc(st->nparams * sizeof *oids)))
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	for (uint16_t i = 0; prepare && i < st->nparams; i++)
		oids[i] = pg_type_oid(st->param_types[i]);
	if (!PQenterPipelineMode(c->pg)) {
		rc = pg_fail(c, NULL, what, err);
		goto out_free;
	}
	if ((begin && !PQsendQueryParams(c->pg, c->begin_sql, 0, NULL, NULL, NULL, NULL, 0)) ||
	    (prepare && !PQsendPrepare(c->pg, name, st->sql, st->nparams, oids)) ||
	    !PQsendQueryPrepared(c->pg, name, st->nparams, c->pvals, c->plens, c->pfmts, 1) ||
	    !PQpipelineSync(c->pg)) {
		rc = pg_fail(c, NULL, what, err);
		goto out_exit;
	}
	/* Each step yields one result then NULL; the Sync yields PIPELINE_SYNC. */
	while (!synced) {
		PGresult *res;
		int wrc = pg_result(c, what, &res, err);
		if (wrc) {
			/* past the deadline: the connection is abandoned as it is */
			if (*out)
				PQclear(*out);
			*out = NULL;
			rc = wrc;
			goto out_free;
		}
		if (!res) {
			/* one NULL ends each step; more means the connection is gone */
			if (PQstatus(c->pg) == CONNECTION_BAD || ++nulls > nsteps) {
				if (!rc)
					rc = pg_fail(c, NULL, what, err);
				break;
			}
			continue;
		}
		ExecStatusType s = PQresultStatus(res);
		if (s == PGRES_PIPELINE_SYNC) {
			synced = true;
		} else if (step >= nsteps) {
			/* nothing more was sent: ignore */
		} else if (s == PGRES_PIPELINE_ABORTED) {
			step++;
		} else if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
			if (!rc)
				rc = pg_fail(c, res, step < nsteps - 1 && begin && step == 0 ? "begin" : what, err);
			step++;
		} else {
			if (prepare && step == nsteps - 2) /* reserved by pg_stmt_exec_once: cannot fail */
				if (emh_prepcache_put(c->stmts, st->id, st, *newpp, NULL) == 0)
					*newpp = NULL; /* the cache's now */
			if (step == nsteps - 1 && !rc) {
				*out = res;
				res = NULL;
			}
			step++;
		}
		PQclear(res);
	}
out_exit:
	if (!PQexitPipelineMode(c->pg) && !rc && PQstatus(c->pg) == CONNECTION_BAD)
		rc = pg_fail(c, NULL, what, err);
	if (rc && *out) {
		PQclear(*out);
		*out = NULL;
	}
out_free:
	if (oids != oids_local)
		free(oids);
	return rc;
}
#else
/* libpq older than 14 has no pipeline mode: the same steps, one round trip each. */
static int pg_exec_pipeline(emh_conn *c, const emh_stmt *st, const char *name, bool begin, pg_prep **newpp,
			    PGresult **out, emh_error *err)
{
	bool prepare = *newpp != NULL;
	Oid oids_local[32], *oids = oids_local;
	char what[120];
	PGresult *res;
	int rc = 0;

	*out = NULL;
	pg_stmt_what(st, what, sizeof what);
	if (begin && (rc = pg_command(c, c->begin_sql, "begin", err)))
		return rc;
	if (prepare) {
		if (st->nparams > 32 && !(oids = malloc(st->nparams * sizeof *oids)))
			return emh_error_set(err, EMH_ENOMEM, "out of memory");
		for (uint16_t i = 0; i < st->nparams; i++)
			oids[i] = pg_type_oid(st->param_types[i]);
		if (!PQsendPrepare(c->pg, name, st->sql, st->nparams, oids))
			rc = pg_fail(c, NULL, what, err);
		else if ((rc = pg_collect(c, what, &res, err)) == 0) {
			if (!res || PQresultStatus(res) != PGRES_COMMAND_OK)
				rc = pg_fail(c, res, what, err);
			else if (emh_prepcache_put(c->stmts, st->id, st, *newpp, NULL) == 0)
				*newpp = NULL; /* reserved by pg_stmt_exec_once: cannot fail */
			PQclear(res);
		}
		if (oids != oids_local)
			free(oids);
		if (rc)
			return rc;
	}
	if (!PQsendQueryPrepared(c->pg, name, st->nparams, c->pvals, c->plens, c->pfmts, 1))
		return pg_fail(c, NULL, what, err);
	return pg_collect(c, what, out, err);
}
#endif

/*
 * The server's copy of a cached statement can go away or go stale behind the
 * driver's back: dropped by a raw DEALLOCATE (26000), already there though
 * the driver thought not (42P05: a statement this id stood for before, or
 * one left stale), or planned for a column type that an ALTER TABLE changed
 * since (0A000 "cached plan must not change result type", c->plan_changed).
 * Fix the bookkeeping: a copy gone is forgotten (the next use prepares it);
 * a copy there but unusable is marked stale, and the next use deallocates
 * it before preparing (pg_stmt_exec_once).  Neither depends on a
 * transaction: DEALLOCATE and PREPARE are not undone by a rollback, so the
 * next transaction finds the server as the cache says.  True when the
 * bookkeeping was fixed: pg_may_resend says whether the statement can go
 * again now.
 */
static bool pg_stale_statement(emh_conn *c, const emh_stmt *st, const emh_error *err)
{
	if (!err)
		return false;
	if (strcmp(err->sqlstate, "26000") == 0) {
		emh_prepcache_drop(c->stmts, st->id);
	} else if (strcmp(err->sqlstate, "42P05") == 0 ||
		   (strcmp(err->sqlstate, "0A000") == 0 && c->plan_changed)) {
		pg_prep *pp = emh_prepcache_get(c->stmts, st->id, st);
		if (!pp) {
			/* room at this id was made when it was prepared (or
			 * reserved for the PREPARE): cannot fail */
			if (!(pp = pg_prep_new(st)) || emh_prepcache_put(c->stmts, st->id, st, pp, NULL) != 0) {
				free(pp);
				return false;
			}
		}
		pp->stale = true;
	} else {
		return false;
	}
	return true;
}

/*
 * May a statement whose server copy pg_stale_statement fixed be sent again,
 * once?  Yes when no transaction is open (and none was begun for it).
 * Inside a transaction the failure aborted it, so it may only when the
 * statement was the transaction's first (first: its deferred BEGIN went
 * with it, begin_sql that BEGIN): nothing else ran in it, so it is rolled
 * back and begun again, and the caller sees no failure.  Otherwise the
 * failure stands; the next transaction finds the statement fixed.
 */
static bool pg_may_resend(emh_conn *c, bool first, const char *begin_sql)
{
	emh_error rollback_err;
	if (PQstatus(c->pg) != CONNECTION_OK)
		return false;
	switch (PQtransactionStatus(c->pg)) {
	case PQTRANS_IDLE:
		return !first || c->begin_pending;
	case PQTRANS_INERROR:
		if (!first || c->begin_pending || pg_command(c, "ROLLBACK", "rollback", &rollback_err) != 0)
			return false;
		c->begin_pending = true;
		c->begin_sql = begin_sql;
		return true;
	default:
		return false;
	}
}

/*
 * Drop the server's stale copy of st (pp, in the cache) so that it can be
 * prepared again: DEALLOCATE works in any transaction that has not failed,
 * and is not undone by its rollback.  One already gone (26000) is as good.
 * The deferred BEGIN stays deferred: DEALLOCATE outside a transaction is
 * its own.
 */
static int pg_deallocate(emh_conn *c, const emh_stmt *st, pg_prep *pp, emh_error *err)
{
	char sql[48], what[120];
	PGresult *res;
	int rc;
	snprintf(sql, sizeof sql, "DEALLOCATE \"%s\"", pp->name);
	pg_stmt_what(st, what, sizeof what);
	if ((rc = pg_run(c, sql, what, &res, err)) != 0)
		return rc;
	if (!res || PQresultStatus(res) != PGRES_COMMAND_OK) {
		const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
		if (!state || strcmp(state, "26000") != 0 || PQstatus(c->pg) != CONNECTION_OK)
			rc = pg_fail(c, res, what, err);
	}
	PQclear(res);
	if (rc == 0)
		emh_prepcache_drop(c->stmts, st->id); /* frees pp */
	return rc;
}

/* "emh_<id>", the name a statement is prepared under (name holds 15
 * bytes; a pg_prep keeps it).  By hand: snprintf cost more instructions
 * than the rest of what the driver adds to a get by key. */
static void pg_stmt_name(char *name, uint32_t id)
{
	char digits[10];
	size_t n = 0;
	do {
		digits[n++] = (char)('0' + id % 10);
		id /= 10;
	} while (id);
	memcpy(name, "emh_", 4);
	for (size_t i = 0; i < n; i++)
		name[4 + i] = digits[n - 1 - i];
	name[4 + n] = '\0';
}

/* PQcmdTuples' row count ("" for a command without one): digits only, so
 * no strtoll with its locale and sign handling on every statement. */
static int64_t pg_cmd_count(const char *t)
{
	int64_t n = 0;
	while (t && *t >= '0' && *t <= '9')
		n = n * 10 + (*t++ - '0');
	return n;
}

static int pg_stmt_exec_once(emh_conn *c, const emh_stmt *st, emh_rowsink *sink, emh_error *err)
{
	char what[120];
	PGresult *res;
	ExecStatusType s;
	pg_prep *pp, *newpp = NULL;
	bool begin;
	int rc;

	pp = emh_prepcache_get(c->stmts, st->id, st);
	if (pp && pp->stale) {
		if ((rc = pg_deallocate(c, st, pp, err)) != 0)
			return rc;
		pp = NULL;
	}
	if (!pp) {
		/* Room for recording the PREPARE in the middle of the pipeline's results. */
		if ((rc = emh_prepcache_reserve(c->stmts, st->id, err)) != 0)
			return rc;
		if (!(pp = newpp = pg_prep_new(st)))
			return emh_error_set(err, EMH_ENOMEM, "out of memory");
	}
	begin = c->begin_pending;
	if (newpp || begin) {
		c->begin_pending = false;
		/* newpp stays ours unless the PREPARE succeeded and the cache took it */
		if ((rc = pg_exec_pipeline(c, st, pp->name, begin, &newpp, &res, err)) != 0)
			goto out_free;
	} else if (!PQsendQueryPrepared(c->pg, pp->name, st->nparams, c->pvals, c->plens, c->pfmts, 1)) {
		return pg_fail(c, NULL, pg_stmt_what(st, what, sizeof what), err);
	} else if ((rc = pg_collect(c, NULL, &res, err)) != 0) {
		/* named only now: the fast path formats no text */
		return emh_error_prefix(err, rc, "%s: ", pg_stmt_what(st, what, sizeof what));
	}
	s = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
	if (s == PGRES_TUPLES_OK) {
		rc = pg_deliver(c, st, pp, res, sink, err);
	} else if (s != PGRES_COMMAND_OK) {
		rc = pg_fail(c, res, pg_stmt_what(st, what, sizeof what), err);
		PQclear(res);
		goto out_free;
	}
	/* A read's count is its rows, which the sink has: parsing the command
	 * tag is for writes (and raw statements) only. */
	if (sink && st->kind != EMH_STMT_SELECT && st->kind != EMH_STMT_COUNT)
		sink->affected = pg_cmd_count(PQcmdTuples(res));
	PQclear(res);
out_free:
	if (newpp)
		free(newpp);
	return rc;
}

/*
 * Run a compiled statement: prepared once per connection as "emh_<id>",
 * then executed with every parameter and result column in binary format
 * (no text escaping of bytea, exact doubles and microsecond timestamps).
 * The first execution on a connection, and the first statement after
 * begin(), go out pipelined with their PREPARE / BEGIN in one round trip.
 */
int pg_stmt_exec(emh_conn *c, const emh_stmt *st, const emh_value *params, emh_rowsink *sink,
		 emh_error *err)
{
	emh_error local;
	int rc;

	if (!err)
		err = &local;
	if ((rc = pg_call(c, c->stmt_ms, PG_STMT_KEY, err)) || (rc = pg_params_reserve(c, st->nparams, err)) ||
	    (rc = pg_bind(c, st, params, err)))
		return rc;
	/* the deferred BEGIN (if any) goes out with this statement */
	bool first = c->begin_pending;
	const char *begin_sql = c->begin_sql;
	rc = pg_stmt_exec_once(c, st, sink, err);
	/* rc > 0 is the sink's "enough rows", not an error (err is untouched) */
	if (rc < 0 && pg_stale_statement(c, st, err) && pg_may_resend(c, first, begin_sql))
		rc = pg_stmt_exec_once(c, st, sink, err);
	return rc;
}
