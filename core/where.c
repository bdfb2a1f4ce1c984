/* SPDX-License-Identifier: MIT */
/*
 * core/where.c: guarded set-based writes (emh_repo_update_where,
 * emh_repo_delete_where) and their set lists (emh_sets).  One statement on
 * every row a condition matches, nothing loaded: the condition is the guard
 * ("stock = stock - 3 WHERE id = 7 AND stock >= 3"), so a check and its
 * write cannot be separated by another transaction's.  SQL drivers run what
 * core/sql_where.c compiles; document drivers their update_where and
 * delete_where members.  The fork's objects of the entity are marked stale
 * afterwards (em.c reloads them when next loaded).
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "em_int.h"
#include "query_int.h"
#include "relation_int.h"

/* A set list: the assignments so far, or the first mistake of a builder call. */
struct emh_sets {
	const emh_entity *e;
	emh__arena *arena; /* the fork's: the list, its values and the message live there */
	emh_set *v;
	size_t n, cap;
	uint64_t fields; /* bit i: field i is assigned */
	int err_code;
	const char *err_msg;
};

int emh_repo_sets(emh_repo *r, emh_sets **out, emh_error *err)
{
	emh_sets *s = emh__arena_zalloc(&r->em->arena, sizeof *s);
	*out = s;
	if (!s)
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	s->e = r->m->pub.entity;
	s->arena = &r->em->arena;
	return 0;
}

static void sets_fail(emh_sets *s, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void sets_fail(emh_sets *s, int code, const char *fmt, ...)
{
	char msg[256];
	if (s->err_code)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	s->err_code = code;
	s->err_msg = emh__arena_strndup(s->arena, msg, strlen(msg));
	if (!s->err_msg)
		s->err_msg = "out of memory";
}

/* v checked and converted for field f by the rules of query values (query.c), copied into the arena. */
static bool sets_check(emh_sets *s, const emh_field *f, emh_value v, emh_value *out)
{
	emh_query q = {.e = s->e, .arena = s->arena};
	if (emh__query_value(&q, f, v, out))
		return true;
	sets_fail(s, q.err_code, "%s", q.err_msg);
	return false;
}

/* The field called field and its index, when it may be assigned (once,
 * never the key or the version); else NULL, the mistake kept in s.  NULL
 * too after an earlier mistake: the first one is reported. */
static const emh_field *sets_field(emh_sets *s, const char *field, int *index)
{
	if (!s || s->err_code)
		return NULL;
	const emh_entity *e = s->e;
	int i = emh_entity_field_index(e, field);
	if (i < 0)
		sets_fail(s, EMH_EINVAL, "no field '%s' in entity '%s'", field ? field : "(null)", e->name);
	else if (e->fields[i].flags & EMH_F_PK)
		sets_fail(s, EMH_EINVAL, "field '%s' is the primary key: a set-based update cannot change it", field);
	else if (e->fields[i].flags & EMH_F_VERSION)
		sets_fail(s, EMH_EINVAL, "field '%s' is the version, which emhost moves on by itself", field);
	else if (s->fields & (UINT64_C(1) << i))
		sets_fail(s, EMH_EINVAL, "field '%s' is assigned twice", field);
	else
		return *index = i, &e->fields[i];
	return NULL;
}

static void sets_push(emh_sets *s, int field, int op, emh_value v)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 2;
		emh_set *nv = emh__arena_alloc(s->arena, cap * sizeof *nv);
		if (!nv) {
			sets_fail(s, EMH_ENOMEM, "out of memory");
			return;
		}
		if (s->n)
			memcpy(nv, s->v, s->n * sizeof *nv);
		s->v = nv;
		s->cap = cap;
	}
	s->v[s->n++] = (emh_set){.field = field, .op = op, .value = v};
	s->fields |= UINT64_C(1) << field;
}

void emh_sets_value(emh_sets *s, const char *field, emh_value v)
{
	int i;
	const emh_field *f = sets_field(s, field, &i);
	if (!f)
		return;
	emh_value out = emh_v_null(f->type);
	if (v.is_null) {
		if (!(f->flags & EMH_F_NULLABLE)) {
			sets_fail(s, EMH_EINVAL, "field '%s' is not nullable: it cannot be set to NULL", f->name);
			return;
		}
	} else if (!sets_check(s, f, v, &out)) {
		return;
	} else if (f->max_len && out.u.s.len > f->max_len) {
		/* A write like a flush's: its limit holds here too (entity.h). */
		sets_fail(s, EMH_EINVAL, "field '%s' is %zu bytes, longer than its max_len of %u", f->name, out.u.s.len,
			  (unsigned)f->max_len);
		return;
	}
	sets_push(s, i, EMH_SET_VALUE, out);
}

void emh_sets_add(emh_sets *s, const char *field, emh_value delta)
{
	int i;
	const emh_field *f = sets_field(s, field, &i);
	if (!f)
		return;
	emh_value out;
	if (f->type != EMH_T_INT32 && f->type != EMH_T_INT64 && f->type != EMH_T_DOUBLE) {
		sets_fail(s, EMH_EINVAL, "field '%s' is %s: only int32, int64 and double fields take a delta", f->name,
			  emh_type_name(f->type));
		return;
	}
	if (f->flags & EMH_F_NULLABLE) {
		sets_fail(s, EMH_EINVAL,
			  "field '%s' is nullable: field + delta is NULL on NULL in SQL and an error in MongoDB, so "
			  "a delta needs a non-nullable field",
			  f->name);
		return;
	}
	if (delta.is_null) {
		sets_fail(s, EMH_EINVAL, "field '%s': the delta is NULL", f->name);
		return;
	}
	/* A whole delta on a double field is the same number as a double. */
	if (f->type == EMH_T_DOUBLE && (delta.type == EMH_T_INT32 || delta.type == EMH_T_INT64))
		delta = emh_v_double(delta.type == EMH_T_INT32 ? (double)delta.u.i32 : (double)delta.u.i64);
	if (sets_check(s, f, delta, &out))
		sets_push(s, i, EMH_SET_ADD, out);
}

/* ---- the writes ---- */

/* What both writes check before anything is sent. */
/*
 * The checks of a set-based write of the rows *q matches, before anything is
 * sent; *q becomes the query to send: with global filters, the filtered one
 * (emh__em_filter), so that no such write reaches another tenant's rows.
 */
static int where_check(emh_repo *r, const emh_query **qp, const char *call, emh_error *err)
{
	emh_em *em = r->em;
	const emh_entity *e = r->m->pub.entity;
	const emh_query *q = *qp;
	int rc = emh__em_check_query(r, q, err);
	if (rc)
		return rc;
	if (q && (q->norder || q->limit >= 0 || q->offset >= 0 || q->lock || q->nwith))
		return emh__em_fail(em, emh_error_set(err, EMH_EINVAL,
						  "%s on '%s': the query may hold conditions only (no order, limit, "
						  "offset, lock or relations to load)",
						  call, e->name), err);
	if (q && q->unfiltered && r->m->filters)
		return emh__em_fail(em, emh_error_set(err, EMH_EINVAL,
						  "%s on '%s': writes stay inside the global filters, so an "
						  "emh_q_unfiltered query cannot choose the rows",
						  call, e->name), err);
	if (em->readonly)
		return emh__em_fail(em, emh_error_set(err, EMH_ESTATE, "%s on '%s': the fork is read-only", call, e->name),
				err);
	if (em->tx_failed)
		return emh_error_set(err, EMH_ESTATE, "context '%s': the transaction failed; roll it back first",
				     em->ctx->name);
	if ((rc = emh__em_filter(em, r->m, q, qp, err)) != 0 || (rc = emh__em_conn(em, err)) != 0)
		return rc;
	if (!(emh__em_caps(em) & EMH_CAP_CONDITIONAL_WRITES))
		return emh__em_fail(em, emh_error_set(err, EMH_EUNSUPPORTED,
						  "driver '%s' has no conditional writes (EMH_CAP_CONDITIONAL_WRITES)",
						  em->ctx->drv->d.name), err);
	return 0;
}

/* Send the update (sets) or delete (sets NULL) of the rows q matches. */
static int where_send(emh_repo *r, const emh_query *q, const emh_set *sets, size_t nsets, int64_t *affected,
		      emh_error *err)
{
	emh_em *em = r->em;
	emh__meta *m = r->m;
	int rc;
	/* Inside a transaction, a rollback must know the write ran: taken
	 * before anything is sent, so that it cannot fail after. */
	emh__jentry *j = NULL;
	if (em->tx_depth > 0 && !(j = emh__arena_alloc(&em->arena, sizeof *j)))
		return emh__em_fail(em, emh_error_set(err, EMH_ENOMEM, "out of memory"), err);
	if (emh__em_is_sql(em)) {
		const emh_stmt *st = emh__sql_where_stmt(m, em->ctx->drv->d.dialect, q, sets, nsets, err);
		if (!st)
			return emh__em_fail(em, err->code, err);
		size_t np = nsets + emh__query_nparams(q, true);
		emh_value stackp[64], *params = np <= 64 ? stackp : malloc(np * sizeof *params);
		if (!params)
			return emh_error_set(err, EMH_ENOMEM, "out of memory");
		for (size_t i = 0; i < nsets; i++)
			params[i] = sets[i].value;
		emh__query_params(q, true, params + nsets);
		emh_rowsink rs = {0};
		emh__op o = {.kind = OP_STMT, .m = m, .st = st, .params = params, .sink = &rs};
		rc = emh__em_run(em, &o, err);
		if (params != stackp)
			free(params);
		*affected = rs.affected;
	} else {
		emh__op o = {.kind = sets ? OP_UPDATE_WHERE : OP_DELETE_WHERE, .m = m, .q = q, .sets = sets,
			     .nsets = nsets, .count = affected};
		rc = emh__em_run(em, &o, err);
	}
	if (rc) {
		/* No savepoint around one statement: a failure inside a transaction
		 * spoils it (PostgreSQL's would be aborted anyway). */
		if (em->tx_depth > 0)
			em->tx_failed = true;
		return rc;
	}
	emh__em_mark_stale(em, m);
	if (j) {
		*j = (emh__jentry){.next = em->journal, .depth = em->tx_depth, .kind = OP_UPDATE_WHERE, .m = m};
		em->journal = j;
	}
	return 0;
}

int emh_repo_update_where(emh_repo *r, const emh_query *q, const emh_sets *sets, int64_t *affected,
			  emh_error *err)
{
	emh_error local;
	int64_t n = 0;
	if (!err)
		err = &local;
	if (affected)
		*affected = 0;
	emh_em *em = r->em;
	emh__meta *m = r->m;
	const emh_entity *e = m->pub.entity;
	if (!sets)
		return emh__em_fail(em, emh_error_set(err, EMH_EINVAL, "emh_repo_update_where on '%s': sets is NULL",
						  e->name), err);
	if (sets->arena != &em->arena || sets->e != e)
		return emh__em_fail(em, emh_error_set(err, EMH_EINVAL,
						  "emh_repo_update_where on '%s': the set list is of another fork or "
						  "entity (make it with emh_repo_sets on this repository)",
						  e->name), err);
	if (sets->err_code)
		return emh__em_fail(em, emh_error_set(err, sets->err_code, "update of '%s': %s", e->name, sets->err_msg),
				err);
	if (sets->n == 0)
		return emh__em_fail(em, emh_error_set(err, EMH_EINVAL, "update of '%s': the set list is empty", e->name),
				err);
	if (sets->fields & m->filters) {
		/* As for a flushed update (filter.c): rows never move between the
		 * values of a filter field. */
		const emh_field *f = &e->fields[__builtin_ctzll(sets->fields & m->filters)];
		return emh__em_fail(em, emh_error_set(err, EMH_EINVAL,
						  "entity '%s': field '%s' is a filter field and cannot change",
						  e->name, f->name), err);
	}
	int rc = where_check(r, &q, "emh_repo_update_where", err);
	if (rc)
		return rc;
	emh_set all[EMH_ENTITY_MAX_FIELDS];
	size_t nall = sets->n;
	memcpy(all, sets->v, nall * sizeof *all);
	if (m->version >= 0) {
		/* Every updated row's version moves on, so that objects loaded
		 * before this update fail their versioned flush. */
		const emh_field *vf = &e->fields[m->version];
		all[nall++] = vf->type == EMH_T_TIMESTAMP
				      ? (emh_set){m->version, EMH_SET_VALUE, emh_v_time(emh__version_time(em->ctx, 0))}
				      : (emh_set){m->version, EMH_SET_ADD, emh_v_int64(1)};
	}
	if ((rc = emh__rel_where_check(em, m, q, sets->v, sets->n, err)) != 0)
		return rc;
	rc = where_send(r, q, all, nall, &n, err);
	if (affected)
		*affected = n;
	return rc;
}

int emh_repo_delete_where(emh_repo *r, const emh_query *q, int64_t *affected, emh_error *err)
{
	emh_error local;
	int64_t n = 0;
	if (!err)
		err = &local;
	if (affected)
		*affected = 0;
	int rc = where_check(r, &q, "emh_repo_delete_where", err);
	if (rc)
		return rc;
	if ((rc = emh__rel_where_check(r->em, r->m, q, NULL, 0, err)) != 0)
		return rc;
	rc = where_send(r, q, NULL, 0, &n, err);
	if (affected)
		*affected = n;
	return rc;
}
