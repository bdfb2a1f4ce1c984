/* SPDX-License-Identifier: MIT */
/*
 * core/iter.c: iterators (emh_repo_iter), a query's rows in constant memory.
 *
 * Keyset paging in the core rather than a cursor in each driver: the driver
 * ABI delivers rows to a sink during one call (stmt_exec, find), so a pull
 * iterator over a driver cursor would need new members in every driver and
 * would hold the connection's statement open between calls (MySQL cannot
 * run another statement on it meanwhile).  A page is instead one ordinary
 * statement: the query's ordering with the primary key as the last key
 * (a total order), limited to a page, and from the second page on narrowed
 * to the rows after the last one read:
 *
 *   (k1 > v1) OR (k1 = v1 AND k2 > v2) OR ... OR (k1 = v1 AND ... AND pk > p)
 *
 * with `>` as `<` for descending keys and NULLs placed where the driver
 * sorts them (emh_driver.null_order): a NULL last value is matched by IS
 * NULL, and "after" a NULL is IS NOT NULL or nothing.  Every driver serves
 * it as it is, the fork stays usable between two pages, and each page
 * repeats one cached statement shape.  A page's objects, strings and query
 * live in the iterator's own arena, emptied page by page.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "em_int.h"
#include "query_int.h"

#define ITER_PAGE 1000
#define ITER_PAGE_MAX 100000

struct emh_iter {
	emh_em *em;
	emh__meta *m;
	emh_iter *next;          /* the fork's open iterators */
	const emh_query *base;   /* the caller's query, filtered (the fork's arena) */
	emh__order keys[EMH_ENTITY_MAX_FIELDS + 1];
	size_t nkeys;
	size_t page;             /* rows per page */
	int64_t remaining;       /* of the query's limit; -1: none */
	emh__arena arena;        /* the current page */
	emh__arena keyarena;     /* the last row's key values */
	emh_value last[EMH_ENTITY_MAX_FIELDS + 1];
	bool have_last, started, done;
	int failed;              /* the status that ended it, else 0 */
	void **rows;             /* the current page */
	size_t nrows, pos;
};

int emh_repo_iter(emh_repo *r, const emh_query *q, emh_iter **out, emh_error *err)
{
	emh_error local;
	if (!err)
		err = &local;
	*out = NULL;
	emh_em *em = r->em;
	emh__meta *m = r->m;
	const emh_entity *e = m->pub.entity;
	int rc = emh__em_check_query(r, q, err);
	if (rc || (rc = emh__em_refuse_lock(em, q, "an iterator", err)) != 0 ||
	    (rc = emh__em_refuse_with(em, q, "an iterator", err)) != 0 ||
	    (rc = emh__em_filter(em, m, q, &q, err)) != 0)
		return rc;
	emh_iter *it = calloc(1, sizeof *it);
	if (!it)
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	*it = (emh_iter){.em = em, .m = m, .base = q, .page = ITER_PAGE, .remaining = q ? q->limit : -1};
	emh__arena_init(&it->arena, NULL, 0);
	emh__arena_init(&it->keyarena, NULL, 0);
	/* The ordering, made total by the key: keys after the key add nothing,
	 * and neither does a field ordered by a second time. */
	bool by_key = false;
	uint64_t seen = 0;
	for (size_t i = 0; q && i < q->norder && !by_key; i++) {
		int fi = q->order[i].field;
		emh_type t = e->fields[fi].type;
		if (t == EMH_T_BLOB || t == EMH_T_JSON) {
			free(it);
			return emh__em_fail(em, emh_error_set(err, EMH_EINVAL,
							  "iterator on '%s': cannot page by the %s field '%s'", e->name,
							  emh_type_name(t), e->fields[fi].name), err);
		}
		if ((seen >> fi) & 1)
			continue;
		seen |= UINT64_C(1) << fi;
		it->keys[it->nkeys++] = q->order[i];
		by_key = fi == m->pub.pk;
	}
	if (!by_key)
		it->keys[it->nkeys++] = (emh__order){.field = m->pub.pk, .desc = false};
	it->next = em->iters;
	em->iters = it;
	*out = it;
	return 0;
}

int emh_iter_set_page_size(emh_iter *it, size_t rows, emh_error *err)
{
	if (it->started)
		return emh_error_set(err, EMH_ESTATE, "iterator on '%s': the page size is set before the first row",
				     it->m->pub.entity->name);
	if (rows < 1 || rows > ITER_PAGE_MAX)
		return emh_error_set(err, EMH_EINVAL, "iterator on '%s': page size %zu is not 1 to %d",
				     it->m->pub.entity->name, rows, ITER_PAGE_MAX);
	it->page = rows;
	return 0;
}

/* ---- a page ---- */

typedef struct page_sink {
	emh_rowsink base;
	emh_iter *it;
	size_t cap;
} page_sink;

static int page_row(emh_rowsink *s, const emh_value *cols, emh_error *err)
{
	page_sink *ps = (page_sink *)s;
	emh_iter *it = ps->it;
	if (it->nrows == ps->cap) /* a driver sending more than the limit */
		return EMH__STOP;
	return emh__em_load_detached(it->em, it->m, &it->arena, cols, &it->rows[it->nrows++], err);
}

/* The key values of the last row of the page, copied out of the page. */
static int keep_last(emh_iter *it, emh_error *err)
{
	const emh__obj *o = HDR(it->rows[it->nrows - 1]);
	const emh_entity *e = it->m->pub.entity;
	emh__arena_reset(&it->keyarena);
	for (size_t k = 0; k < it->nkeys; k++) {
		int fi = it->keys[k].field;
		emh_value v = emh__obj_value(o, OBJ(o), &e->fields[fi], fi);
		if (!v.is_null && emh__is_ptr_type(v.type) &&
		    !(v.u.s.ptr = emh__arena_strndup(&it->keyarena, v.u.s.ptr, v.u.s.len)))
			return emh_error_set(err, EMH_ENOMEM, "out of memory");
		it->last[k] = v;
	}
	it->have_last = true;
	return 0;
}

/* "key k comes after the last row's": NULL when no row can. */
static emh_cond *after(emh_iter *it, emh_query *q, size_t k)
{
	const emh_field *f = &it->m->pub.entity->fields[it->keys[k].field];
	const emh_value *v = &it->last[k];
	bool desc = it->keys[k].desc, nulls_high = it->em->ctx->drv->d.null_order == EMH_NULLS_HIGH;
	/* Ascending with NULLs low, or descending with NULLs high, NULLs come
	 * first: after one come the values; otherwise NULLs come last. */
	bool nulls_first = desc == nulls_high;
	if (v->is_null)
		return nulls_first ? emh_q_not_null(q, f->name) : NULL;
	emh_cond *c = emh_q_cmp(q, f->name, desc ? EMH_OP_LT : EMH_OP_GT, *v);
	if (!nulls_first && (f->flags & EMH_F_NULLABLE))
		c = emh_q_or(q, c, emh_q_is_null(q, f->name));
	return c;
}

/* The keyset condition: rows after the last one read; NULL when none can be. */
static emh_cond *keyset(emh_iter *it, emh_query *q)
{
	emh_cond *alts[EMH_ENTITY_MAX_FIELDS + 1], *conj[EMH_ENTITY_MAX_FIELDS + 1];
	size_t nalts = 0;
	for (size_t k = 0; k < it->nkeys; k++) {
		emh_cond *a = after(it, q, k);
		if (!a)
			continue;
		size_t n = 0;
		for (size_t j = 0; j < k; j++) {
			const char *name = it->m->pub.entity->fields[it->keys[j].field].name;
			conj[n++] = it->last[j].is_null ? emh_q_is_null(q, name) : emh_q_eq(q, name, it->last[j]);
		}
		conj[n++] = a;
		alts[nalts++] = n == 1 ? a : emh_q_and_n(q, conj, n);
	}
	if (!nalts)
		return NULL;
	return nalts == 1 ? alts[0] : emh_q_or_n(q, alts, nalts);
}

/* Read the next page into it->rows (empty when the rows are done). */
static int page_load(emh_iter *it, emh_error *err)
{
	emh_em *em = it->em;
	const emh_entity *e = it->m->pub.entity;
	bool first = !it->have_last;
	it->nrows = it->pos = 0;
	emh__arena_reset(&it->arena);
	int64_t limit = it->remaining >= 0 && it->remaining < (int64_t)it->page ? it->remaining : (int64_t)it->page;
	if (limit == 0) {
		it->done = true;
		return 0;
	}
	emh_query *q = emh__query_copy(&it->arena, e, it->base);
	if (!q || !(q->order = emh__arena_alloc(&it->arena, it->nkeys * sizeof *q->order)) ||
	    !(it->rows = emh__arena_alloc(&it->arena, (size_t)limit * sizeof *it->rows)))
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	memcpy(q->order, it->keys, it->nkeys * sizeof *q->order);
	q->norder = q->ordcap = it->nkeys;
	q->limit = limit;
	if (!first) {
		q->offset = -1; /* the query's offset counted on the first page */
		emh_cond *c = keyset(it, q);
		if (!c) {
			it->done = true;
			return 0;
		}
		emh__query_restrict(q, c);
	}
	int rc = emh__query_error(q, err);
	if (rc)
		return emh__em_fail(em, rc, err);
	page_sink ps = {.base.row = page_row, .it = it, .cap = (size_t)limit};
	if ((rc = emh__em_find_run(em, it->m, q, &ps.base, err)) != 0)
		return rc;
	if (it->remaining >= 0)
		it->remaining -= (int64_t)it->nrows;
	/* A short page is the last one. */
	if (it->nrows < (size_t)limit)
		it->done = true;
	else if ((rc = keep_last(it, err)) != 0)
		return rc;
	return 0;
}

int emh_iter_next(emh_iter *it, void **obj, emh_error *err)
{
	*obj = NULL;
	if (it->failed)
		return emh_error_set(err, EMH_ESTATE, "iterator on '%s' failed earlier (%s)", it->m->pub.entity->name,
				     emh_status_name(it->failed));
	it->started = true;
	if (it->pos == it->nrows) {
		if (it->done)
			return 0;
		int rc = page_load(it, err);
		if (rc) {
			it->failed = rc;
			return rc;
		}
		if (it->pos == it->nrows)
			return 0;
	}
	*obj = it->rows[it->pos++];
	return 1;
}

void emh_iter_close(emh_iter *it)
{
	if (!it)
		return;
	for (emh_iter **pp = &it->em->iters; *pp; pp = &(*pp)->next)
		if (*pp == it) {
			*pp = it->next;
			break;
		}
	emh__arena_release(&it->arena);
	emh__arena_release(&it->keyarena);
	free(it);
}

void emh__iter_close_all(emh_em *em)
{
	while (em->iters)
		emh_iter_close(em->iters);
}
