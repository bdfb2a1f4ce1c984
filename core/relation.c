/* SPDX-License-Identifier: MIT */
/*
 * core/relation.c: relations between entities, within a context and across
 * contexts: the host's copy of each declared relation, finding the fork and
 * the entity a relation targets, batched loading (emh_em_load, emh_q_with),
 * counting, and the checks of a flush (checked references, on_delete
 * restrict).
 *
 * Loading goes through forks, never around them: the targets of a level are
 * asked for with one query per target context (IN lists of at most
 * EMH_QUERY_MAX_IN distinct keys each), run by the target's fork and
 * materialised by it, so its identity map and read-only mode hold as for any
 * find.  Keys are de-duplicated in a hash set; SQL IN lists are padded to a
 * power of two (repeating a key), so a relation compiles at most eleven
 * statement shapes whatever the batch sizes.
 *
 * Which fork a relation targets: a scope's (the service resolved the target's
 * context when it loaded, scope.c), or else the fork itself or one linked to
 * it (emh_em_link) whose context has the target registered with the
 * structure the relation was declared with.  A fork group is a ring through
 * the forks; a fork leaves it when it closes.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "em_int.h"
#include "query_int.h"

#define MAX_DEPTH 8

/* ---- the host's copy of a relation ---- */

static bool str_same(const char *a, const char *b) { return a == b || (a && b && strcmp(a, b) == 0); }

static bool rel_same(const emh__rel *a, const emh__rel *b)
{
	return a->kind == b->kind && a->flags == b->flags && a->offset == b->offset && str_same(a->key, b->key) &&
	       str_same(a->context, b->context) && str_same(a->target_table, b->target_table) &&
	       a->target_print == b->target_print && str_same(a->through_table, b->through_table) &&
	       a->through_print == b->through_print && str_same(a->through_key, b->through_key);
}

const emh__rel *emh__meta_rel(const emh__meta *m, const char *name)
{
	if (!name)
		return NULL;
	for (const emh__rel *r = atomic_load_explicit(&((emh__meta *)m)->rels, memory_order_acquire); r; r = r->next)
		if (strcmp(r->name, name) == 0)
			return r;
	return NULL;
}

int emh__meta_add_relations(emh__meta *m, const emh_entity *e, emh_error *err)
{
	emh__rel *add[EMH_ENTITY_MAX_RELATIONS];
	size_t nadd = 0;
	unsigned next = m->nrels;
	int rc = 0;
	const char *ctx = m->ctx->name, *en = m->pub.entity->name;
	for (size_t i = 0; i < e->nfields && rc == 0; i++) {
		const emh_field *f = &e->fields[i];
		if (f->type != EMH_T_RELATION)
			continue;
		emh__rel *x = emh__rel_dup(f, next);
		if (!x) {
			rc = emh_error_set(err, EMH_ENOMEM, "out of memory");
			break;
		}
		const emh__rel *have = emh__meta_rel(m, f->name);
		if (have) {
			/* declared again by another registration: it must say the same */
			if (!rel_same(have, x))
				rc = emh_error_set(err, EMH_ECONFIG,
						   "context '%s': entity '%s' was registered before with a different "
						   "relation '%s' (one table, one meaning of each relation)",
						   ctx, en, f->name);
			free(x);
			continue;
		}
		if (next >= EMH_ENTITY_MAX_RELATIONS) {
			free(x);
			rc = emh_error_set(err, EMH_ECONFIG, "context '%s': entity '%s': its registrations declare more "
					   "than %d relations", ctx, en, EMH_ENTITY_MAX_RELATIONS);
			break;
		}
		if (x->kind == EMH_REL_BELONGS_TO)
			x->key_col = emh__entity_column(m->pub.entity, x->key);
		add[nadd++] = x;
		next++;
	}
	if (rc) {
		while (nadd > 0)
			free(add[--nadd]);
		return rc;
	}
	unsigned flags = 0;
	for (size_t i = 0; i < nadd; i++) {
		/* Readers walk the list without a lock: next is fixed before the
		 * node is published. */
		add[i]->next = atomic_load_explicit(&m->rels, memory_order_relaxed);
		atomic_store_explicit(&m->rels, add[i], memory_order_release);
		flags |= add[i]->flags;
	}
	m->nrels = next;
	atomic_fetch_or_explicit(&m->rel_flags, flags, memory_order_release);
	return 0;
}

void emh__meta_free_relations(emh__meta *m)
{
	for (emh__rel *r = atomic_load(&m->rels), *n; r; r = n) {
		n = r->next;
		free(r);
	}
	atomic_store(&m->rels, NULL);
}

emh__meta *emh__context_meta_print(emh_context *c, const char *table, uint64_t print)
{
	for (emh__meta *m = atomic_load_explicit(&c->metas, memory_order_acquire); m; m = m->next)
		if (m->print == print && strcmp(m->pub.entity->table, table) == 0)
			return m;
	return NULL;
}

/* "author, posts": m's relations in declaration order, into buf. */
static const char *rel_list(const emh__meta *m, char *buf, size_t cap)
{
	const emh__rel *by[EMH_ENTITY_MAX_RELATIONS] = {0};
	for (const emh__rel *r = atomic_load_explicit(&((emh__meta *)m)->rels, memory_order_acquire); r; r = r->next)
		by[r->index] = r;
	buf[0] = '\0';
	for (size_t i = 0, off = 0; i < EMH_ENTITY_MAX_RELATIONS && off < cap; i++)
		if (by[i])
			off += (size_t)snprintf(buf + off, cap - off, "%s%s", off ? ", " : "", by[i]->name);
	if (!buf[0])
		snprintf(buf, cap, "none");
	return buf;
}

/* "a, b": the contexts of h that have the entity on table with structure print. */
static const char *registered_in(emh_host *h, const char *table, uint64_t print, char *buf, size_t cap)
{
	size_t off = 0;
	buf[0] = '\0';
	pthread_rwlock_rdlock(&h->lock);
	for (size_t i = 0; i < h->nctx && off < cap; i++)
		if (emh__context_meta_print(h->ctxs[i], table, print))
			off += (size_t)snprintf(buf + off, cap - off, "%s%s", off ? ", " : "", h->ctxs[i]->name);
	pthread_rwlock_unlock(&h->lock);
	if (!buf[0])
		snprintf(buf, cap, "no context");
	return buf;
}

/* ---- fork groups ---- */

/* The fork after f in em's group, or NULL when the walk from em is done. */
static emh_em *ring_next(const emh_em *em, const emh_em *f)
{
	return f->link_next && f->link_next != em ? f->link_next : NULL;
}

void emh__em_set_owner(emh_em *em, const emh__em_owner *o, void *ud)
{
	em->owner = o;
	em->owner_ud = ud;
}

int emh_em_link(emh_em *em, emh_em *other, emh_error *err)
{
	if (!em || !other || em == other)
		return emh_error_set(err, EMH_EINVAL, "emh_em_link: two different forks are needed");
	for (emh_em *f = em; f; f = ring_next(em, f))
		if (f == other)
			return 0; /* already one group */
	for (emh_em *f = em; f; f = ring_next(em, f))
		for (emh_em *g = other; g; g = ring_next(other, g))
			if (f->ctx == g->ctx)
				return emh_error_set(err, EMH_EINVAL,
						     "emh_em_link: both groups have a fork of context '%s' (relations find "
						     "their fork by context: one per context)",
						     f->ctx->name);
	if (!em->link_next)
		em->link_next = em->link_prev = em;
	if (!other->link_next)
		other->link_next = other->link_prev = other;
	/* splice the two rings */
	emh_em *a_next = em->link_next, *b_prev = other->link_prev;
	em->link_next = other;
	other->link_prev = em;
	b_prev->link_next = a_next;
	a_next->link_prev = b_prev;
	return 0;
}

void emh__em_unlink(emh_em *em)
{
	if (!em->link_next)
		return;
	em->link_prev->link_next = em->link_next;
	em->link_next->link_prev = em->link_prev;
	em->link_next = em->link_prev = NULL;
}

/* ---- where a relation leads ---- */

/* One resolved level of a path: the relation, and the fork and entities it targets. */
typedef struct hop {
	const emh__rel *r;
	emh_em *g;       /* the target's fork */
	emh__meta *tm;   /* the target entity there */
	emh__meta *jm;   /* many_to_many: the join entity there */
} hop;

static int rel_fail(emh_em *em, int rc, emh_error *err) { return emh__em_fail(em, rc, err); }

/* The fork, target and join of relation r of m, for objects of em; nothing is sent. */
static int rel_resolve(emh_em *em, const emh__meta *m, const emh__rel *r, hop *out, emh_error *err)
{
	emh_em *g = NULL;
	int rc;
	char list[512];
	if (em->owner) {
		if ((rc = em->owner->rel_fork(em->owner_ud, em, r, &g, err)) != 0)
			return rc;
	} else {
		for (emh_em *f = em; f; f = ring_next(em, f)) {
			if (r->context && strcmp(f->ctx->name, r->context) != 0)
				continue;
			if (!emh__context_meta_print(f->ctx, r->target_table, r->target_print))
				continue;
			if (g)
				return rel_fail(em, emh_error_set(err, EMH_EINVAL,
								  "relation '%s' of '%s': the forks of contexts '%s' and "
								  "'%s' both hold entity '%s' (name one in the relation's context)",
								  r->name, m->pub.entity->name, g->ctx->name, f->ctx->name,
								  r->target_name), err);
			g = f;
		}
		if (!g)
			return rel_fail(em, emh_error_set(err, EMH_ENOCONTEXT,
							  "relation '%s' of '%s': no fork of a context holding entity '%s'%s%s%s "
							  "is linked to this fork (emh_em_link; '%s' is registered in: %s)",
							  r->name, m->pub.entity->name, r->target_name,
							  r->context ? " in context '" : "", r->context ? r->context : "",
							  r->context ? "'" : "", r->target_name,
							  registered_in(em->host, r->target_table, r->target_print, list,
									sizeof list)), err);
	}
	*out = (hop){.r = r, .g = g};
	if (!(out->tm = emh__context_meta_print(g->ctx, r->target_table, r->target_print)))
		return rel_fail(em, emh_error_set(err, EMH_ENOENTITY,
						  "relation '%s' of '%s': context '%s' has no entity '%s' on table '%s' as the "
						  "relation declares it (registered in: %s)",
						  r->name, m->pub.entity->name, g->ctx->name, r->target_name, r->target_table,
						  registered_in(em->host, r->target_table, r->target_print, list,
								sizeof list)), err);
	if (r->kind == EMH_REL_MANY_TO_MANY &&
	    !(out->jm = emh__context_meta_print(g->ctx, r->through_table, r->through_print)))
		return rel_fail(em, emh_error_set(err, EMH_ENOENTITY,
						  "relation '%s' of '%s': the join entity '%s' is not registered in context "
						  "'%s', the target's",
						  r->name, m->pub.entity->name, r->through_name, g->ctx->name), err);
	return 0;
}

/* Relation name of m, or EMH_EINVAL listing m's relations. */
static int rel_find(emh_em *em, const emh__meta *m, const char *name, const emh__rel **out, emh_error *err)
{
	char list[512];
	if ((*out = emh__meta_rel(m, name)) != NULL)
		return 0;
	return rel_fail(em, emh_error_set(err, EMH_EINVAL, "entity '%s' has no relation '%s' (relations: %s)",
					  m->pub.entity->name, name ? name : "(null)", rel_list(m, list, sizeof list)),
			err);
}

/* ---- key sets ---- */

/* v with room for element n (of size bytes; *cap of them now): v itself, or
 * a copy twice as large (v freed), or NULL (v kept) when out of memory. */
static void *grown(void *v, size_t n, size_t *cap, size_t size)
{
	if (n < *cap)
		return v;
	size_t c = *cap ? *cap * 2 : 64;
	void *nv = realloc(v, c * size);
	if (nv)
		*cap = c;
	return nv;
}

/*
 * Distinct keys in insertion order with a hash index: integers of either
 * width as int64, text by bytes (borrowed, or copied into copy).  Also a set
 * of pointers (as int64 keys), to de-duplicate objects.
 */
typedef struct keyset {
	emh_value *v;
	size_t n, cap;
	uint32_t *slot; /* index + 1; 0 is empty */
	size_t nslot;   /* a power of two, at most half full */
	emh__arena *copy;
} keyset;

static bool key_norm(const emh_value *in, emh_value *out)
{
	if (in->is_null)
		return false;
	if (in->type == EMH_T_TEXT)
		*out = *in;
	else
		*out = emh_v_int64(emh__value_i64(in));
	return true;
}

static uint64_t key_hash(const emh_value *k)
{
	uint64_t h = 1469598103934665603ULL;
	if (k->type != EMH_T_TEXT)
		return (uint64_t)k->u.i64 * 0x9E3779B97F4A7C15ULL;
	for (size_t i = 0; i < k->u.s.len; i++)
		h = (h ^ (unsigned char)k->u.s.ptr[i]) * 1099511628211ULL;
	return h;
}

static bool key_eq(const emh_value *a, const emh_value *b)
{
	if (a->type != b->type)
		return false;
	if (a->type != EMH_T_TEXT)
		return a->u.i64 == b->u.i64;
	return a->u.s.len == b->u.s.len && memcmp(a->u.s.ptr, b->u.s.ptr, a->u.s.len) == 0;
}

/* Index of normalised key k, or -1. */
static ssize_t keyset_find(const keyset *s, const emh_value *k)
{
	if (!s->nslot)
		return -1;
	for (size_t j = key_hash(k) & (s->nslot - 1);; j = (j + 1) & (s->nslot - 1)) {
		uint32_t x = s->slot[j];
		if (!x)
			return -1;
		if (key_eq(&s->v[x - 1], k))
			return (ssize_t)(x - 1);
	}
}

static int keyset_grow(keyset *s, size_t ns)
{
	uint32_t *sl = calloc(ns, sizeof *sl);
	if (!sl)
		return EMH_ENOMEM;
	for (size_t i = 0; i < s->n; i++) {
		size_t j = key_hash(&s->v[i]) & (ns - 1);
		while (sl[j])
			j = (j + 1) & (ns - 1);
		sl[j] = (uint32_t)(i + 1);
	}
	free(s->slot);
	s->slot = sl;
	s->nslot = ns;
	return 0;
}

/* Add key in (NULL keys are not added: *idx = -1); *idx its index. */
static int keyset_add(keyset *s, const emh_value *in, ssize_t *idx)
{
	emh_value k;
	*idx = -1;
	if (!key_norm(in, &k))
		return 0;
	if ((*idx = keyset_find(s, &k)) >= 0)
		return 0;
	if ((s->n + 1) * 2 > s->nslot && keyset_grow(s, s->nslot ? s->nslot * 2 : 64) != 0)
		return EMH_ENOMEM;
	emh_value *v = grown(s->v, s->n, &s->cap, sizeof *v);
	if (!v)
		return EMH_ENOMEM;
	s->v = v;
	if (k.type == EMH_T_TEXT && s->copy) {
		char *p = emh__arena_strndup(s->copy, k.u.s.ptr ? k.u.s.ptr : "", k.u.s.len);
		if (!p)
			return EMH_ENOMEM;
		k.u.s.ptr = p;
	}
	size_t j = key_hash(&k) & (s->nslot - 1);
	while (s->slot[j])
		j = (j + 1) & (s->nslot - 1);
	s->slot[j] = (uint32_t)(s->n + 1);
	s->v[s->n] = k;
	*idx = (ssize_t)s->n++;
	return 0;
}

/* Room for n keys without growing (an empty set; a hint: 0 on failure too). */
static void keyset_reserve(keyset *s, size_t n)
{
	size_t ns = 64;
	while (ns < 2 * n)
		ns *= 2;
	if (n > 64 && (s->v = malloc(n * sizeof *s->v)) != NULL)
		s->cap = n;
	if (ns > 64)
		keyset_grow(s, ns);
}

static void keyset_release(keyset *s)
{
	free(s->v);
	free(s->slot);
	memset(s, 0, sizeof *s);
}

/* Objects of the next level: distinct, in the order first met. */
typedef struct objset {
	keyset seen;
	void **v;
	size_t n, cap;
} objset;

static int objset_add(objset *s, void *obj)
{
	if (!obj)
		return 0;
	ssize_t idx;
	size_t before = s->seen.n;
	emh_value k = emh_v_int64((int64_t)(uintptr_t)obj);
	if (keyset_add(&s->seen, &k, &idx) != 0)
		return EMH_ENOMEM;
	if (s->seen.n == before)
		return 0;
	void **v = grown(s->v, s->n, &s->cap, sizeof *v);
	if (!v)
		return EMH_ENOMEM;
	s->v = v;
	s->v[s->n++] = obj;
	return 0;
}

/* The targets an object's loaded relation member holds, into s. */
static int objset_add_member(objset *s, const void *obj, const emh__rel *r)
{
	const char *p = (const char *)obj + r->offset;
	if (r->kind == EMH_REL_HAS_MANY || r->kind == EMH_REL_MANY_TO_MANY) {
		emh_list l;
		memcpy(&l, p, sizeof l);
		for (size_t i = 0; i < l.count; i++)
			if (objset_add(s, l.items[i]) != 0)
				return EMH_ENOMEM;
		return 0;
	}
	void *t;
	memcpy(&t, p, sizeof t);
	return objset_add(s, t);
}

/* ---- queries of a level ---- */

/* One pair of a level's rows: which key it answers, and the object (or the other key's index). */
typedef struct pair {
	size_t k;
	void *obj;
	size_t other;
} pair;

typedef struct pairs {
	pair *v;
	size_t n, cap;
} pairs;

static inline int pairs_add(pairs *p, size_t k, void *obj, size_t other)
{
	if (p->n < p->cap) { /* the common case, once per row: no call */
		p->v[p->n++] = (pair){k, obj, other};
		return 0;
	}
	pair *v = grown(p->v, p->n, &p->cap, sizeof *v);
	if (!v)
		return EMH_ENOMEM;
	p->v = v;
	p->v[p->n++] = (pair){k, obj, other};
	return 0;
}

/*
 * What a level's rows are for.  mode OBJ: materialise each row in the
 * target's fork, pair it with the key its column col holds.  JOIN: a join
 * row: pair col's key with col2's, added to right.  PROBE: note which keys
 * (of column col) exist, nothing materialised.  FIRST: keep the first row
 * (col's key and the row's primary key), skipping rows this fork removes
 * (unless immediate).  KEYS: every row's col into right (keys unused).
 */
enum { SINK_OBJ, SINK_JOIN, SINK_PROBE, SINK_FIRST, SINK_KEYS };

typedef struct rel_sink {
	emh_rowsink base;
	int mode;
	emh_em *g;
	emh__meta *tm;
	int col, col2;
	const keyset *keys;
	keyset *right;
	pairs *out;
	bool *found;
	bool got;
	bool immediate;        /* SINK_FIRST: no flush, removals this fork has not sent yet count for nothing */
	char first_buf[2][72]; /* SINK_FIRST: the row's key (col) and primary key, as text */
} rel_sink;

/* A key value for a message (text cut), into buf. */
static const char *key_text(const emh_value *v, char *buf, size_t cap)
{
	if (v->type == EMH_T_TEXT)
		snprintf(buf, cap, "'%.*s'", (int)(v->u.s.len > 64 ? 64 : v->u.s.len), v->u.s.ptr ? v->u.s.ptr : "");
	else
		snprintf(buf, cap, "%lld", (long long)emh__value_i64(v));
	return buf;
}

static int rel_row(emh_rowsink *base, const emh_value *cols, emh_error *err)
{
	rel_sink *s = (rel_sink *)base;
	emh_value k;
	ssize_t ki;
	if (s->mode == SINK_KEYS) /* every row's column col, into right */
		return keyset_add(s->right, &cols[s->col], &ki) ? emh_error_set(err, EMH_ENOMEM, "out of memory") : 0;
	ki = key_norm(&cols[s->col], &k) ? keyset_find(s->keys, &k) : -1;
	switch (s->mode) {
	case SINK_OBJ: {
		if (ki < 0)
			return 0; /* not a row asked for */
		void *obj;
		int rc = emh__em_materialize(s->g, s->tm, cols, &obj, err);
		if (rc)
			return rc;
		if (obj && pairs_add(s->out, (size_t)ki, obj, 0) != 0)
			return emh_error_set(err, EMH_ENOMEM, "out of memory");
		return 0;
	}
	case SINK_JOIN: {
		ssize_t ri;
		if (ki < 0)
			return 0;
		if (keyset_add(s->right, &cols[s->col2], &ri) != 0)
			return emh_error_set(err, EMH_ENOMEM, "out of memory");
		if (ri >= 0 && pairs_add(s->out, (size_t)ki, NULL, (size_t)ri) != 0)
			return emh_error_set(err, EMH_ENOMEM, "out of memory");
		return 0;
	}
	case SINK_PROBE:
		if (ki >= 0)
			s->found[ki] = true;
		return 0;
	default: {
		const emh_value *pk = &cols[s->tm->pub.pk];
		emh__obj *gone = s->g->readonly || s->immediate ? NULL : emh__imap_find(s->g, s->tm, pk);
		if (ki < 0 || (gone && gone->state == ST_REMOVED))
			return 0; /* removed by the flush being checked */
		s->got = true;
		key_text(&cols[s->col], s->first_buf[0], sizeof s->first_buf[0]);
		key_text(pk, s->first_buf[1], sizeof s->first_buf[1]);
		return EMH__STOP;
	}
	}
}

/*
 * Bucket of n keys: up to 8 exact, then four steps per power of two (9-16
 * by 2, 17-32 by 4, ... 100 -> 112), at most EMH_QUERY_MAX_IN: at most a
 * quarter more keys than asked, and some thirty statement shapes per
 * relation whatever the batch sizes.
 */
static size_t bucket(size_t n)
{
	size_t p = 8;
	if (n <= p)
		return n;
	while (p < n)
		p *= 2;
	size_t step = p / 8, b = (n + step - 1) / step * step;
	return b > EMH_QUERY_MAX_IN ? EMH_QUERY_MAX_IN : b;
}

/*
 * Rows of tm in fork g whose field is one of keys (all of them: one query per
 * EMH_QUERY_MAX_IN keys), ordered by tm's primary key, into sink; limit 1
 * when first is set.  Queries are built in scratch.
 */
static int run_in(emh_em *g, emh__meta *tm, const char *field, const keyset *keys, bool first, rel_sink *sink,
		  emh__arena *scratch, emh_error *err)
{
	const emh_entity *te = tm->pub.entity;
	bool sql = emh__em_is_sql(g);
	emh_value pad[EMH_QUERY_MAX_IN];
	int rc = 0;
	sink->base.row = rel_row;
	g->loaded = true; /* a fork that loaded cannot turn read-only */
	for (size_t a = 0; a < keys->n && rc == 0; a += EMH_QUERY_MAX_IN) {
		size_t n = keys->n - a < EMH_QUERY_MAX_IN ? keys->n - a : EMH_QUERY_MAX_IN;
		const emh_value *vals = keys->v + a;
		size_t b = sql ? bucket(n) : n;
		if (b > n) {
			/* a repeated key changes nothing in an IN list, and few shapes
			 * means few compiled statements */
			memcpy(pad, vals, n * sizeof *pad);
			for (size_t i = n; i < b; i++)
				pad[i] = vals[n - 1];
			vals = pad;
		}
		emh_query *q = emh__query_new(scratch, te);
		if (!q)
			return emh_error_set(err, EMH_ENOMEM, "out of memory");
		emh_q_where(q, emh_q_in(q, field, vals, b));
		emh_q_order_by(q, te->fields[tm->pub.pk].name, false);
		if (first)
			emh_q_limit(q, 1);
		rc = emh__em_scan(g, tm, q, &sink->base, err);
		if (first && sink->got)
			break;
	}
	return rc;
}

/* ---- loading one level ---- */

static bool rel_is_list(const emh__rel *r) { return r->kind == EMH_REL_HAS_MANY || r->kind == EMH_REL_MANY_TO_MANY; }

static bool obj_loaded(const emh__obj *o, const emh__rel *r) { return (o->rel_loaded >> r->index) & 1; }

/* Fill obj's member of r with a list or a pointer, and mark it loaded. */
static void member_set(void *obj, const emh__rel *r, void **items, size_t n)
{
	char *p = (char *)obj + r->offset;
	if (rel_is_list(r)) {
		emh_list l = {n ? items : NULL, n};
		memcpy(p, &l, sizeof l);
	} else {
		void *t = n ? items[0] : NULL;
		memcpy(p, &t, sizeof t);
	}
	HDR(obj)->rel_loaded |= (uint16_t)(1u << r->index);
}

/* The key an object offers relation r: its belongs_to column, else its primary key (none while new). */
static bool obj_rel_key(const emh__obj *o, const emh__rel *r, emh_value *out)
{
	if (r->kind == EMH_REL_BELONGS_TO) {
		*out = emh__obj_value(o, OBJ(o), &o->m->pub.entity->fields[r->key_col], r->key_col);
		return !out->is_null;
	}
	if (o->state == ST_NEW && o->m->pub.generated)
		return false; /* not stored yet: nothing refers to it */
	*out = emh__obj_key(o);
	return !out->is_null;
}

/*
 * The targets of keys (normalised, in fork h.g's entity tm by primary key)
 * into tobj[i]: those h.g already manages from its identity map, the others
 * with one query per EMH_QUERY_MAX_IN keys.
 */
static int load_by_pk(const hop *h, const keyset *keys, void **tobj, emh__arena *scratch, emh_error *err)
{
	emh_em *g = h->g;
	emh__meta *tm = h->tm;
	const emh_field *tpk = &tm->pub.entity->fields[tm->pub.pk];
	keyset ask = {0};
	size_t *map = NULL;
	int rc = 0;
	if (keys->n && !(map = malloc(keys->n * sizeof *map)))
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	for (size_t i = 0; i < keys->n && rc == 0; i++) {
		/* the identity map compares integer keys of either width as int64;
		 * a filtered target is asked for (its query is filtered, and
		 * materialising a row gives the map's object): the map may hold
		 * rows of another parameter value, or of an unfiltered find */
		emh__obj *have = g->readonly || tm->filters ? NULL : emh__imap_find(g, tm, &keys->v[i]);
		if (have) {
			tobj[i] = have->state == ST_MANAGED || have->state == ST_NEW ? OBJ(have) : NULL;
			continue;
		}
		ssize_t ai;
		if (keyset_add(&ask, &keys->v[i], &ai) != 0)
			rc = emh_error_set(err, EMH_ENOMEM, "out of memory");
		else
			map[ai] = i;
	}
	pairs got = {0};
	if (rc == 0 && ask.n) {
		rel_sink s = {.mode = SINK_OBJ, .g = g, .tm = tm, .col = tm->pub.pk, .keys = &ask, .out = &got};
		rc = run_in(g, tm, tpk->name, &ask, false, &s, scratch, err);
		for (size_t i = 0; i < got.n; i++)
			tobj[map[got.v[i].k]] = got.v[i].obj;
	}
	free(got.v);
	free(map);
	keyset_release(&ask);
	return rc;
}

/* Load hop h for the n objects of level objs (fork em), the next level's objects into next. */
static int load_hop(emh_em *em, void *const *objs, size_t n, const hop *h, objset *next, emh__arena *scratch,
		    emh_error *err)
{
	const emh__rel *r = h->r;
	keyset keys = {0};
	pairs got = {0};
	keyset right = {.copy = scratch};
	void **tobj = NULL, **items = NULL;
	size_t *kid = malloc((n ? n : 1) * sizeof *kid), *cnt = NULL;
	int rc = 0;
	if (!kid)
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	keyset_reserve(&keys, n);
	const size_t DONE = SIZE_MAX - 1, NOKEY = SIZE_MAX; /* kid[i] when not a key's index */
	for (size_t i = 0; i < n && rc == 0; i++) {
		emh__obj *o = HDR(objs[i]);
		emh_value k;
		ssize_t ki;
		kid[i] = NOKEY;
		if (obj_loaded(o, r)) {
			kid[i] = DONE;
			if (next)
				rc = objset_add_member(next, objs[i], r);
		} else if (obj_rel_key(o, r, &k)) {
			/* the objects' keys stay put while we load: borrowed */
			if (keyset_add(&keys, &k, &ki) != 0)
				rc = EMH_ENOMEM;
			kid[i] = (size_t)ki;
		}
	}
	if (rc)
		goto out_oom;
	switch (r->kind) {
	case EMH_REL_BELONGS_TO:
		if (keys.n && !(tobj = calloc(keys.n, sizeof *tobj)))
			goto out_oom;
		rc = load_by_pk(h, &keys, tobj, scratch, err);
		for (size_t i = 0; i < keys.n && rc == 0; i++)
			if (tobj[i])
				if (pairs_add(&got, i, tobj[i], 0) != 0)
					goto out_oom;
		break;
	case EMH_REL_HAS_MANY:
	case EMH_REL_HAS_ONE: {
		rel_sink s = {.mode = SINK_OBJ, .g = h->g, .tm = h->tm, .keys = &keys, .out = &got,
			      .col = emh__entity_column(h->tm->pub.entity, r->key)};
		rc = run_in(h->g, h->tm, r->key, &keys, false, &s, scratch, err);
		break;
	}
	default: {
		/* the join rows, then their targets */
		pairs join = {0};
		const emh_entity *je = h->jm->pub.entity;
		rel_sink s = {.mode = SINK_JOIN, .g = h->g, .tm = h->jm, .keys = &keys, .right = &right, .out = &join,
			      .col = emh__entity_column(je, r->key), .col2 = emh__entity_column(je, r->through_key)};
		rc = run_in(h->g, h->jm, r->key, &keys, false, &s, scratch, err);
		if (rc == 0 && right.n && !(tobj = calloc(right.n, sizeof *tobj)))
			rc = EMH_ENOMEM;
		if (rc == 0)
			rc = load_by_pk(h, &right, tobj, scratch, err);
		for (size_t i = 0; i < join.n && rc == 0; i++)
			if (tobj[join.v[i].other] && pairs_add(&got, join.v[i].k, tobj[join.v[i].other], 0) != 0)
				rc = EMH_ENOMEM;
		free(join.v);
		if (rc == EMH_ENOMEM)
			goto out_oom;
		break;
	}
	}
	if (rc)
		goto out;
	/* Group the pairs by key, in the order they came (the target's or the
	 * join's primary key): one block in the fork's arena, a slice per key. */
	if (!(cnt = calloc(keys.n + 1, sizeof *cnt)) ||
	    (got.n && !(items = emh__arena_alloc(&em->arena, got.n * sizeof *items))))
		goto out_oom;
	for (size_t i = 0; i < got.n; i++)
		cnt[got.v[i].k + 1]++;
	for (size_t i = 0; i < keys.n; i++)
		cnt[i + 1] += cnt[i];
	/* cnt[k] is now where key k's slice starts; fill advances it to the next's */
	for (size_t i = 0; i < got.n; i++)
		items[cnt[got.v[i].k]++] = got.v[i].obj;
	for (size_t i = 0; i < n; i++) {
		if (kid[i] == DONE)
			continue;
		size_t end = kid[i] == NOKEY ? 0 : cnt[kid[i]], start = kid[i] == NOKEY || kid[i] == 0 ? 0 : cnt[kid[i] - 1];
		member_set(objs[i], r, items ? items + start : NULL, end - start);
	}
	for (size_t i = 0; next && i < got.n; i++)
		if (objset_add(next, got.v[i].obj) != 0)
			goto out_oom;
	goto out;
out_oom:
	rc = emh_error_set(err, EMH_ENOMEM, "out of memory");
out:
	free(cnt);
	free(tobj);
	free(got.v);
	free(kid);
	keyset_release(&keys);
	keyset_release(&right);
	return rc;
}

/* ---- paths ---- */

/*
 * Load path for the n objects objs of entity m0 in fork em.  Every level's
 * relation, fork and entities are resolved before anything is sent.
 */
static int load_path(emh_em *em, emh__meta *m0, void *const *objs, size_t n, const char *path, emh_error *err)
{
	char segs[MAX_DEPTH][64];
	size_t depth = 0;
	for (const char *p = path;; depth++) {
		const char *dot = strchr(p, '.');
		size_t len = dot ? (size_t)(dot - p) : strlen(p);
		if (depth == MAX_DEPTH || len == 0 || len >= sizeof segs[0])
			return rel_fail(em, emh_error_set(err, EMH_EINVAL, "relation path '%s' is not valid (names of at "
							  "most 63 bytes, at most %d levels, dot-separated)",
							  path, MAX_DEPTH), err);
		memcpy(segs[depth], p, len);
		segs[depth][len] = '\0';
		if (!dot)
			break;
		p = dot + 1;
	}
	depth++;
	hop hops[MAX_DEPTH];
	const emh__rel *r;
	int rc;
	if (n == 0) /* no objects: no forks to find, only the first name to check */
		return rel_find(em, m0, segs[0], &r, err);
	emh_em *f = em;
	emh__meta *m = m0;
	for (size_t i = 0; i < depth; i++) {
		if ((rc = rel_find(f, m, segs[i], &r, err)) != 0 || (rc = rel_resolve(f, m, r, &hops[i], err)) != 0)
			return rc;
		f = hops[i].g;
		m = hops[i].tm;
	}
	/* the queries of a load are built here; most fit the first block */
	_Alignas(16) unsigned char first[8192];
	emh__arena scratch;
	emh__arena_init(&scratch, first, sizeof first);
	objset cur = {0}, nxt = {0};
	void *const *lv = objs;
	size_t ln = n;
	f = em;
	rc = 0;
	for (size_t i = 0; i < depth && rc == 0; i++) {
		rc = load_hop(f, lv, ln, &hops[i], i + 1 < depth ? &nxt : NULL, &scratch, err);
		keyset_release(&cur.seen);
		free(cur.v);
		cur = nxt;
		nxt = (objset){0};
		lv = cur.v;
		ln = cur.n;
		f = hops[i].g;
	}
	keyset_release(&cur.seen);
	free(cur.v);
	emh__arena_release(&scratch);
	return rc;
}

int emh_em_load(emh_em *em, void *const *objs, size_t n, const char *path, emh_error *err)
{
	if (!em || (n && !objs) || !path)
		return emh_error_set(err, EMH_EINVAL, "emh_em_load: fork, objects or path missing");
	if (n == 0)
		return 0;
	emh__obj *first;
	int rc = emh__em_own(em, objs[0], &first, err);
	for (size_t i = 1; i < n && rc == 0; i++) {
		emh__obj *o;
		if ((rc = emh__em_own(em, objs[i], &o, err)) == 0 && o->m != first->m)
			rc = rel_fail(em, emh_error_set(err, EMH_EINVAL,
							"emh_em_load: objects of entities '%s' and '%s' in one call",
							first->m->pub.entity->name, o->m->pub.entity->name), err);
	}
	return rc ? rc : load_path(em, first->m, objs, n, path, err);
}

int emh__rel_load_with(emh_em *em, const emh_query *q, void *const *objs, size_t n, emh_error *err)
{
	emh__meta *m = emh__context_meta(em->ctx, q->e);
	int rc = 0;
	for (size_t i = 0; i < q->nwith && rc == 0; i++)
		rc = load_path(em, m, objs, n, q->with[i], err);
	return rc;
}

bool emh_em_loaded(const emh_em *em, const void *obj, const char *relation)
{
	if (!obj)
		return false;
	const emh__obj *o = HDR(obj);
	if (o->magic != OBJ_MAGIC || o->em != em)
		return false;
	const emh__rel *r = emh__meta_rel(o->m, relation);
	return r && obj_loaded(o, r);
}

int emh_em_count_related(emh_em *em, const void *obj, const char *relation, int64_t *n, emh_error *err)
{
	emh__obj *o;
	const emh__rel *r;
	hop h;
	emh_value k;
	int rc;
	*n = 0;
	if ((rc = emh__em_own(em, (void *)obj, &o, err)) != 0 || (rc = rel_find(em, o->m, relation, &r, err)) != 0 ||
	    (rc = rel_resolve(em, o->m, r, &h, err)) != 0)
		return rc;
	if (!obj_rel_key(o, r, &k))
		return 0;
	emh__meta *cm = r->kind == EMH_REL_MANY_TO_MANY ? h.jm : h.tm;
	const char *field = r->kind == EMH_REL_BELONGS_TO ? cm->pub.entity->fields[cm->pub.pk].name : r->key;
	emh_repo *repo;
	emh_query *q;
	if ((rc = emh_em_repo(h.g, cm->pub.entity, &repo, err)) != 0 || (rc = emh_repo_query(repo, &q, err)) != 0)
		return rc;
	emh_q_where(q, emh_q_eq(q, field, k));
	if ((rc = emh_repo_count(repo, q, n, err)) == 0 && r->kind == EMH_REL_HAS_ONE && *n > 1)
		*n = 1;
	return rc;
}

/* ---- the checks of a flush ---- */

/* The objects a flush writes: only, or every object the fork tracks. */
static emh__obj *flush_next(emh_em *em, emh__obj *only, emh__obj *o)
{
	return o ? (only ? NULL : o->next) : (only ? only : em->head);
}

/*
 * The key in field col of o as this flush writes it into *k: an insert's,
 * or an update's that changes it; false for NULL, or a key the database
 * has already (unchanged since the load).
 */
static bool written_key(emh__obj *o, int col, emh_value *k)
{
	const emh_field *f = &o->m->pub.entity->fields[col];
	if (o->state != ST_NEW && o->state != ST_MANAGED)
		return false;
	*k = emh__obj_value(o, OBJ(o), f, col);
	if (k->is_null)
		return false;
	if (o->state == ST_NEW)
		return true;
	emh_value was = emh__obj_value(&(emh__obj){.nulls = o->snap_nulls}, o->snap, f, col);
	emh_value a, b;
	return !key_norm(&was, &b) || !key_norm(k, &a) || !key_eq(&a, &b);
}


/*
 * The keys of entity tm this very flush of em inserts (present once it is
 * done) or deletes (missing): state[i] of here's key i is ST_NEW or
 * ST_REMOVED.  Only a flush on the target's own fork can say.
 */
static int written_here(emh_em *em, emh__obj *only, emh__meta *tm, keyset *here, uint8_t **state)
{
	size_t cap = 0;
	*state = NULL;
	for (emh__obj *o = NULL; (o = flush_next(em, only, o));) {
		if (o->m != tm || (o->state != ST_NEW && o->state != ST_REMOVED))
			continue;
		if (o->state == ST_NEW && o->m->pub.generated)
			continue; /* its key is the database's, unknown before the insert: not its placeholder 0 */
		emh_value k = emh__obj_key(o);
		size_t before = here->n;
		ssize_t ki;
		if (keyset_add(here, &k, &ki) != 0)
			return EMH_ENOMEM;
		if (here->n == before)
			continue; /* NULL, or seen */
		uint8_t *st = grown(*state, (size_t)ki, &cap, 1);
		if (!st)
			return EMH_ENOMEM;
		*state = st;
		st[ki] = o->state;
	}
	return 0;
}

/*
 * Checked belongs_to r of m: every one of keys exists in the target context.
 * flush: the keys of a flush of em (only, when set, the one object flushed),
 * which may insert or delete targets in the same fork; else an immediate
 * write (emh_repo_update_where) that changes nothing else.
 */
static int refs_exist(emh_em *em, emh__meta *m, const emh__rel *r, const keyset *keys, bool flush,
		      emh__obj *only, const char *what, emh__arena *scratch, emh_error *err)
{
	keyset here = {0};
	bool *found = NULL;
	uint8_t *state = NULL;
	hop h;
	int rc = 0;
	if (keys->n == 0 || (rc = rel_resolve(em, m, r, &h, err)) != 0)
		goto out;
	if (!(found = calloc(keys->n, sizeof *found))) {
		rc = emh_error_set(err, EMH_ENOMEM, "out of memory");
		goto out;
	}
	rel_sink s = {.mode = SINK_PROBE, .g = h.g, .tm = h.tm, .col = h.tm->pub.pk, .keys = keys, .found = found};
	if ((rc = run_in(h.g, h.tm, h.tm->pub.entity->fields[h.tm->pub.pk].name, keys, false, &s, scratch, err)) != 0)
		goto out;
	if (flush && h.g == em && written_here(em, only, h.tm, &here, &state) != 0) {
		rc = emh_error_set(err, EMH_ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < keys->n; i++) {
		ssize_t w = keyset_find(&here, &keys->v[i]);
		if (w >= 0 ? state[w] == ST_NEW : found[i])
			continue;
		char kt[80];
		emh_error_set(err, EMH_ECONFLICT,
			      "context '%s': %s of '%s': %s %s has no '%s' in context '%s' (checked relation '%s')",
			      em->ctx->name, what, m->pub.entity->name, r->key, key_text(&keys->v[i], kt, sizeof kt),
			      r->target_name, h.g->ctx->name, r->name);
		rc = rel_fail(em, EMH_ECONFLICT, err);
		break;
	}
out:
	free(found);
	free(state);
	keyset_release(&here);
	return rc;
}

/* Checked belongs_to r of m: every key this flush writes exists in the target context. */
static int check_refs(emh_em *em, emh__obj *only, emh__meta *m, const emh__rel *r, emh__arena *scratch,
		      emh_error *err)
{
	keyset keys = {0};
	int rc = 0;
	for (emh__obj *o = NULL; rc == 0 && (o = flush_next(em, only, o));) {
		emh_value k;
		ssize_t ki;
		/* a checked key is what an insert writes, or what an update changes */
		if (o->m == m && written_key(o, r->key_col, &k) && keyset_add(&keys, &k, &ki) != 0)
			rc = emh_error_set(err, EMH_ENOMEM, "out of memory");
	}
	if (rc == 0)
		rc = refs_exist(em, m, r, &keys, true, only, "flush", scratch, err);
	keyset_release(&keys);
	return rc;
}

/*
 * A child of r (a has_many/has_one of m, resolved to h) that this flush
 * writes pointing at one of keys, the parents it deletes: a new child, or
 * one whose key it changes.  The database has no such row yet, so
 * no_children's query cannot see it; without this the parent went and the
 * child was stored pointing at nothing.
 */
static emh__obj *flushed_child(emh_em *em, emh__obj *only, const hop *h, const emh__rel *r, const keyset *keys)
{
	int kc = emh__entity_column(h->tm->pub.entity, r->key);
	if (kc < 0)
		return NULL;
	for (emh__obj *o = NULL; (o = flush_next(em, only, o));) {
		emh_value k, a, b;
		/* an unchanged key the database has, and the query sees */
		if (o->m != h->tm || !written_key(o, kc, &k) || !key_norm(&k, &a))
			continue;
		for (size_t i = 0; i < keys->n; i++)
			if (key_norm(&keys->v[i], &b) && key_eq(&a, &b))
				return o;
	}
	return NULL;
}

/* on_delete restrict of has_many/has_one r of m: none of the parents keys (deleted) has children. */
static int no_children(emh_em *em, emh__obj *only, emh__meta *m, const emh__rel *r, const keyset *keys, bool flush,
		       emh__arena *scratch, emh_error *err)
{
	hop h;
	int rc = 0;
	if (keys->n == 0 || (rc = rel_resolve(em, m, r, &h, err)) != 0)
		return rc;
	/* Children this same flush deletes do not count: the sink skips them,
	 * so the first row is only enough when no such child can exist. */
	rel_sink s = {.mode = SINK_FIRST, .g = h.g, .tm = h.tm, .keys = keys, .immediate = !flush,
		      .col = emh__entity_column(h.tm->pub.entity, r->key)};
	if ((rc = run_in(h.g, h.tm, r->key, keys, !flush || h.g != em, &s, scratch, err)) != 0)
		return rc;
	if (!s.got) {
		/* the children this flush writes, which the database has not seen */
		emh__obj *c = flush && h.g == em ? flushed_child(em, only, &h, r, keys) : NULL;
		if (!c)
			return 0;
		int kc = emh__entity_column(h.tm->pub.entity, r->key);
		emh_value ck = emh__obj_value(c, OBJ(c), &h.tm->pub.entity->fields[kc], kc);
		key_text(&ck, s.first_buf[0], sizeof s.first_buf[0]);
		if (c->state == ST_NEW)
			snprintf(s.first_buf[1], sizeof s.first_buf[1], "(new, inserted by this flush)");
		else {
			emh_value pk = emh__obj_key(c);
			key_text(&pk, s.first_buf[1], sizeof s.first_buf[1]);
		}
	}
	emh_error_set(err, EMH_ECONFLICT,
		      "context '%s': cannot delete '%s' %s %s: '%s' %s %s in context '%s' refers to it "
		      "(relation '%s' restricts deletes)",
		      em->ctx->name, m->pub.entity->name, m->pub.entity->fields[m->pub.pk].name, s.first_buf[0],
		      r->target_name, h.tm->pub.entity->fields[h.tm->pub.pk].name, s.first_buf[1], h.g->ctx->name,
		      r->name);
	return rel_fail(em, EMH_ECONFLICT, err);
}

/* on_delete restrict of has_many/has_one r of m: no parent this flush deletes has children. */
static int check_restrict(emh_em *em, emh__obj *only, emh__meta *m, const emh__rel *r, emh__arena *scratch,
			  emh_error *err)
{
	keyset keys = {0};
	int rc = 0;
	for (emh__obj *o = NULL; rc == 0 && (o = flush_next(em, only, o));) {
		emh_value k = emh__obj_key(o);
		ssize_t ki;
		if (o->m == m && o->state == ST_REMOVED && keyset_add(&keys, &k, &ki) != 0)
			rc = emh_error_set(err, EMH_ENOMEM, "out of memory");
	}
	if (rc == 0)
		rc = no_children(em, only, m, r, &keys, true, scratch, err);
	keyset_release(&keys);
	return rc;
}

int emh__rel_flush_check(emh_em *em, emh__obj *only, emh_error *err)
{
	unsigned any = 0;
	for (emh__meta *m = atomic_load_explicit(&em->ctx->metas, memory_order_acquire); m; m = m->next)
		any |= atomic_load_explicit(&m->rel_flags, memory_order_acquire);
	if (!(any & (EMH_REL_CHECKED | EMH_REL_RESTRICT)))
		return 0;
	_Alignas(16) unsigned char first[4096];
	emh__arena scratch;
	emh__arena_init(&scratch, first, sizeof first);
	int rc = 0;
	for (emh__meta *m = atomic_load_explicit(&em->ctx->metas, memory_order_acquire); m && rc == 0; m = m->next) {
		if (!(atomic_load_explicit(&m->rel_flags, memory_order_acquire) & (EMH_REL_CHECKED | EMH_REL_RESTRICT)))
			continue;
		for (const emh__rel *r = atomic_load_explicit(&m->rels, memory_order_acquire); r && rc == 0; r = r->next)
			if (r->flags & EMH_REL_CHECKED)
				rc = check_refs(em, only, m, r, &scratch, err);
			else if (r->flags & EMH_REL_RESTRICT)
				rc = check_restrict(em, only, m, r, &scratch, err);
	}
	emh__arena_release(&scratch);
	return rc;
}

int emh__rel_where_check(emh_em *em, emh__meta *m, const emh_query *q, const emh_set *sets, size_t nsets,
			 emh_error *err)
{
	unsigned want = sets ? EMH_REL_CHECKED : EMH_REL_RESTRICT;
	if (!(atomic_load_explicit(&m->rel_flags, memory_order_acquire) & want))
		return 0;
	_Alignas(16) unsigned char first[4096];
	emh__arena scratch;
	emh__arena_init(&scratch, first, sizeof first);
	keyset keys = {.copy = &scratch}; /* a row's text is the driver's only while it is read */
	int rc = 0;
	if (!sets) {
		/* The parents the delete will remove: their keys first, one query. */
		rel_sink s = {.mode = SINK_KEYS, .g = em, .tm = m, .col = m->pub.pk, .right = &keys};
		s.base.row = rel_row;
		rc = emh__em_scan(em, m, q, &s.base, err);
	}
	for (const emh__rel *r = atomic_load_explicit(&m->rels, memory_order_acquire); r && rc == 0; r = r->next) {
		if (!(r->flags & want))
			continue;
		if (!sets) {
			rc = no_children(em, NULL, m, r, &keys, false, &scratch, err);
			continue;
		}
		for (size_t i = 0; i < nsets && rc == 0; i++) {
			ssize_t ki;
			if (sets[i].field != r->key_col)
				continue;
			if (sets[i].op != EMH_SET_VALUE) {
				emh_error_set(err, EMH_EINVAL,
					      "context '%s': update_where of '%s': '%s' is the key of checked relation '%s': "
					      "set it to a value, not by adding to it",
					      em->ctx->name, m->pub.entity->name, r->key, r->name);
				rc = rel_fail(em, EMH_EINVAL, err);
			} else if (keyset_add(&keys, &sets[i].value, &ki) != 0) {
				rc = emh_error_set(err, EMH_ENOMEM, "out of memory");
			} else {
				rc = refs_exist(em, m, r, &keys, false, NULL, "update_where", &scratch, err);
			}
			keyset_release(&keys);
			keys.copy = &scratch;
		}
	}
	keyset_release(&keys);
	emh__arena_release(&scratch);
	return rc;
}

void emh__rel_begin_note(emh_em *em)
{
	if (em->owner) {
		if (em->owner->begin)
			em->owner->begin(em->owner_ud, em);
		return;
	}
	for (emh_em *f = ring_next(em, em); f; f = ring_next(em, f)) {
		if (f->tx_depth == 0)
			continue;
		if (!atomic_exchange_explicit(&em->host->xtx_warned, true, memory_order_relaxed))
			emh__log(&em->host->log, EMH_LOG_WARN, em->ctx->name,
				 "a transaction begins on context '%s' while the linked fork of context '%s' has one open: "
				 "the two commit separately, no transaction spans two databases (docs/cross-context.md; "
				 "logged once)",
				 em->ctx->name, f->ctx->name);
		return;
	}
}
