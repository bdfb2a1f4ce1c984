/* SPDX-License-Identifier: MIT */
/*
 * plugins/postgres/statements.c: the core's compiled statements: prepared
 * once per connection (emh_prepcache) and executed with binary parameters
 * and results; PREPARE and a deferred BEGIN pipelined with the first
 * execution; statements the server forgot or re-planned prepared again.
 */
#include "config.h"

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
 * The statement cache's handle for a statement prepared on the server: the
 * server keeps it by name, so the client has nothing to release.
 */
static char pg_prepared_mark;
#define PG_PREPARED ((void *)&pg_prepared_mark)

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

/* Deliver the rows of res to sink, typed as st->col_types. */
static int pg_deliver(emh_conn *c, const emh_stmt *st, PGresult *res, emh_rowsink *sink, emh_error *err)
{
	int nrows = PQntuples(res), ncols = PQnfields(res);
	char what[120];

	if (!sink || !sink->row || nrows == 0)
		return 0;
	if (ncols != st->ncols)
		return emh_error_set(err, EMH_EDRIVER, "%s: %d columns returned, expected %u",
				     pg_stmt_what(st, what, sizeof what), ncols, (unsigned)st->ncols);
	if ((size_t)ncols > c->rowcap) {
		size_t cap = c->rowcap;
		if (pg_grow((void **)&c->row, &cap, (size_t)ncols, sizeof *c->row))
			return emh_error_set(err, EMH_ENOMEM, "out of memory");
		cap = c->rowcap;
		if (pg_grow((void **)&c->rowtypes, &cap, (size_t)ncols, sizeof *c->rowtypes))
			return emh_error_set(err, EMH_ENOMEM, "out of memory");
		c->rowcap = (size_t)ncols;
	}
	for (int j = 0; j < ncols; j++) {
		c->rowtypes[j] = PQftype(res, j);
		if (PQfformat(res, j) != 1 || !pg_readable(c->rowtypes[j], st->col_types[j]))
			return emh_error_set(err, EMH_ESCHEMA,
					     "%s: column '%s' has type oid %u, which cannot be read as %s",
					     pg_stmt_what(st, what, sizeof what), PQfname(res, j),
					     (unsigned)c->rowtypes[j], emh_type_name(st->col_types[j]));
	}
	for (int i = 0; i < nrows; i++) {
		for (int j = 0; j < ncols; j++) {
			if (PQgetisnull(res, i, j)) {
				c->row[j] = emh_v_null(st->col_types[j]);
				continue;
			}
			int rc = pg_decode(c->rowtypes[j], PQgetvalue(res, i, j), PQgetlength(res, i, j),
					   st->col_types[j], &c->row[j], PQfname(res, j), err);
			if (rc)
				return rc;
		}
		int rc = sink->row(sink, c->row, err);
		if (rc)
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
static int pg_exec_pipeline(emh_conn *c, const emh_stmt *st, const char *name, bool begin, bool prepare,
			    PGresult **out, emh_error *err)
{
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
	if ((begin && !PQsendQueryParams(c->pg, "BEGIN", 0, NULL, NULL, NULL, NULL, 0)) ||
	    (prepare && !PQsendPrepare(c->pg, name, st->sql, st->nparams, oids)) ||
	    !PQsendQueryPrepared(c->pg, name, st->nparams, c->pvals, c->plens, c->pfmts, 1) ||
	    !PQpipelineSync(c->pg)) {
		rc = pg_fail(c, NULL, what, err);
		goto out_exit;
	}
	/* Each step yields one result then NULL; the Sync yields PIPELINE_SYNC. */
	while (!synced) {
		PGresult *res = PQgetResult(c->pg);
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
			if (prepare && step == nsteps - 2) /* reserved by pg_stmt_exec: cannot fail */
				(void)emh_prepcache_put(c->stmts, st->id, st, PG_PREPARED, NULL);
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
static int pg_exec_pipeline(emh_conn *c, const emh_stmt *st, const char *name, bool begin, bool prepare,
			    PGresult **out, emh_error *err)
{
	Oid oids_local[32], *oids = oids_local;
	char what[120];
	PGresult *res;
	int rc = 0;

	*out = NULL;
	if (begin && (rc = pg_command(c, "BEGIN", "begin", err)))
		return rc;
	if (prepare) {
		if (st->nparams > 32 && !(oids = malloc(st->nparams * sizeof *oids)))
			return emh_error_set(err, EMH_ENOMEM, "out of memory");
		for (uint16_t i = 0; i < st->nparams; i++)
			oids[i] = pg_type_oid(st->param_types[i]);
		res = PQprepare(c->pg, name, st->sql, st->nparams, oids);
		if (!res || PQresultStatus(res) != PGRES_COMMAND_OK)
			rc = pg_fail(c, res, pg_stmt_what(st, what, sizeof what), err);
		else /* reserved by pg_stmt_exec: cannot fail */
			(void)emh_prepcache_put(c->stmts, st->id, st, PG_PREPARED, NULL);
		PQclear(res);
		if (oids != oids_local)
			free(oids);
		if (rc)
			return rc;
	}
	*out = PQexecPrepared(c->pg, name, st->nparams, c->pvals, c->plens, c->pfmts, 1);
	return 0;
}
#endif

/*
 * The server's copy of a cached statement can go away or go stale behind the
 * driver's back: dropped by a raw DEALLOCATE (26000), already there though
 * the driver thought not (42P05), or planned for a column type that an ALTER
 * TABLE changed since (0A000 "cached plan must not change result type").
 * Fix the bookkeeping; the caller resends once when no transaction was open
 * (inside one, the failed statement aborted it, and the next transaction
 * re-prepares).
 */
static bool pg_stale_statement(emh_conn *c, const emh_stmt *st, const char *name, const emh_error *err)
{
	if (!err)
		return false;
	if (strcmp(err->sqlstate, "26000") == 0) {
		emh_prepcache_drop(c->stmts, st->id);
	} else if (strcmp(err->sqlstate, "42P05") == 0) {
		(void)emh_prepcache_put(c->stmts, st->id, st, PG_PREPARED, NULL); /* reserved: cannot fail */
	} else if (strcmp(err->sqlstate, "0A000") == 0 && strstr(err->message, "cached plan")) {
		if (PQtransactionStatus(c->pg) == PQTRANS_IDLE) {
			char sql[48];
			snprintf(sql, sizeof sql, "DEALLOCATE \"%s\"", name);
			PQclear(PQexec(c->pg, sql));
		}
		emh_prepcache_drop(c->stmts, st->id);
	} else {
		return false;
	}
	return PQstatus(c->pg) == CONNECTION_OK && PQtransactionStatus(c->pg) == PQTRANS_IDLE;
}

static int pg_stmt_exec_once(emh_conn *c, const emh_stmt *st, const char *name, emh_rowsink *sink,
			     emh_error *err)
{
	char what[120];
	PGresult *res;
	ExecStatusType s;
	bool prepare, begin;
	int rc;

	prepare = !emh_prepcache_get(c->stmts, st->id, st);
	begin = c->begin_pending;
	if (prepare || begin) {
		c->begin_pending = false;
		rc = pg_exec_pipeline(c, st, name, begin, prepare, &res, err);
		if (rc)
			return rc;
	} else {
		res = PQexecPrepared(c->pg, name, st->nparams, c->pvals, c->plens, c->pfmts, 1);
	}
	s = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
	if (s == PGRES_TUPLES_OK) {
		rc = pg_deliver(c, st, res, sink, err);
	} else if (s != PGRES_COMMAND_OK) {
		rc = pg_fail(c, res, pg_stmt_what(st, what, sizeof what), err);
		PQclear(res);
		return rc;
	}
	if (sink) {
		const char *t = PQcmdTuples(res);
		sink->affected = (t && *t) ? strtoll(t, NULL, 10) : 0;
	}
	PQclear(res);
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
	char name[24];
	emh_error local;
	int rc;

	if (!err)
		err = &local;
	snprintf(name, sizeof name, "emh_%" PRIu32, st->id);
	if ((rc = emh_prepcache_reserve(c->stmts, st->id, err)) || (rc = pg_params_reserve(c, st->nparams, err)) ||
	    (rc = pg_bind(c, st, params, err)))
		return rc;
	rc = pg_stmt_exec_once(c, st, name, sink, err);
	/* rc > 0 is the sink's "enough rows", not an error (err is untouched) */
	if (rc < 0 && pg_stale_statement(c, st, name, err))
		rc = pg_stmt_exec_once(c, st, name, sink, err);
	return rc;
}
