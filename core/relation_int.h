/* SPDX-License-Identifier: MIT */
/*
 * core/relation_int.h: relations as the host keeps them (core only, never
 * installed): each meta's relations, copied from the declarations that
 * registered it, and what forks, the unit of work, scopes and services ask
 * of relation.c.
 */
#ifndef EMH_CORE_RELATION_INT_H
#define EMH_CORE_RELATION_INT_H

#include "internal.h"

struct emh__obj;

/*
 * One relation of a meta: everything it needs from the declaration, copied
 * (names, the target's and the join's table and structure fingerprint), so
 * nothing points into a module's memory once it is registered.  One block,
 * freed with the meta.
 */
typedef struct emh__rel {
	struct emh__rel *next; /* declaration order; fixed before publication */
	unsigned index;        /* its bit in an object's loaded mask */
	emh_rel_kind kind;
	unsigned flags;        /* EMH_REL_* */
	size_t offset;         /* the member in the struct */
	const char *name;      /* the member's name */
	const char *key;       /* belongs_to: ours; has_*: the target's; many_to_many: the join's (our key) */
	int key_col;           /* belongs_to: the key's column in the meta's copy; else -1 */
	const char *context;   /* as declared, or NULL */
	const char *target_name, *target_table;
	uint64_t target_print;
	const char *through_name, *through_table, *through_key; /* many_to_many */
	uint64_t through_print;
} emh__rel;

/*
 * Who gives a fork the forks of other contexts (a scope): the fork relation
 * r targets, made on first ask; and a note that em begins a transaction.
 */
typedef struct emh__em_owner {
	int (*rel_fork)(void *ud, emh_em *em, const emh__rel *r, emh_em **out, emh_error *err);
	void (*begin)(void *ud, emh_em *em);
} emh__em_owner;

/* ---- registration (meta.c, under the context's mu) ---- */

/* The host's copy of relation field f of a valid declaration, index idx, in
 * one malloc'd block (entity.c, beside the entity's copy); NULL on out of memory. */
emh__rel *emh__rel_dup(const emh_field *f, unsigned idx);

/*
 * Add the relations of declaration e to m (a registration of e): new ones
 * are appended, one declared again must be the same.  Checks everything
 * before changing anything.  EMH_ECONFIG (a relation declared differently
 * before, or too many), EMH_ENOMEM.
 */
int emh__meta_add_relations(emh__meta *m, const emh_entity *e, emh_error *err);
void emh__meta_free_relations(emh__meta *m);
/* m's relation called name, or NULL.  Lock-free. */
const emh__rel *emh__meta_rel(const emh__meta *m, const char *name);
/* The meta of context c on table with structure print, or NULL.  Lock-free. */
emh__meta *emh__context_meta_print(emh_context *c, const char *table, uint64_t print);

/* ---- forks (em.c, uow.c, scope.c) ---- */

/* Set the fork's owner (a scope); NULL clears it. */
void emh__em_set_owner(emh_em *em, const emh__em_owner *o, void *ud);
/* Take em out of its group of linked forks (emh_em_close). */
void emh__em_unlink(emh_em *em);
/* Load the paths emh_q_with put on q into the n objects a find returned. */
int emh__rel_load_with(emh_em *em, const emh_query *q, void *const *objs, size_t n, emh_error *err);
/* The checks of a flush (checked references, on_delete restrict), before it
 * writes anything; only, when set, is the one object flushed. */
int emh__rel_flush_check(emh_em *em, struct emh__obj *only, emh_error *err);
/* The checks of an immediate set-based write of m's rows matching q, before
 * it is sent: an update (sets) that sets a checked belongs_to's key to a value
 * missing in the target context, or (sets NULL) a delete of parents that a
 * restricting has_many/has_one's children refer to, is EMH_ECONFLICT. */
int emh__rel_where_check(emh_em *em, emh__meta *m, const emh_query *q, const emh_set *sets, size_t nsets,
			 emh_error *err);
/* em begins a transaction at depth 0: warn (once) when a fork of another
 * context of its scope or group has one open. */
void emh__rel_begin_note(emh_em *em);

#endif
