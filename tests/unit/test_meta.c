/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/test_meta.c: entities registered in a context: the host's deep
 * copy (the caller's declaration may be overwritten and freed), aliases of a
 * structurally identical declaration, keys forgotten and keys whose memory
 * now holds another declaration, emh_host_entity, and emh_host_drop_schema.
 * Uses the real SQLite plugin from plugins-build, and memdrv for a driver
 * that can drop nothing.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <emhost/emhost.h>

#include "../../core/internal.h"
#include "../tap.h"
#include "memdrv.h"

typedef struct item {
	int64_t id;
	const char *label;
	int32_t qty;
} item;

static const emh_field item_fields[] = {
	EMH_FIELD(item, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(item, label, EMH_T_TEXT, EMH_F_INDEXED),
	EMH_FIELD(item, qty, EMH_T_INT32, 0),
};
static const char *const by_label_qty[] = {"label", "qty", NULL};
static const emh_index item_indexes[] = {{"items_label_qty", by_label_qty, true}};
/* Two declarations of one entity at two addresses, as two modules would have. */
static const emh_entity item_a = EMH_ENTITY_IDX(item, "items", item_fields, item_indexes);
static const emh_entity item_b = EMH_ENTITY_IDX(item, "items", item_fields, item_indexes);
/* Another entity on the same table. */
static const emh_field other_fields[] = {EMH_FIELD(item, id, EMH_T_INT64, EMH_F_PK)};
static const emh_entity item_other = EMH_ENTITY(item, "items", other_fields);
/* A table whose name is an SQL keyword: only quoting makes DROP TABLE work. */
static const emh_entity order_entity = EMH_ENTITY(item, "order", item_fields);

static const emh_driver *const statics[] = {&memdrv};
static char plugdir[512], tmp[64];

static emh_host *new_host(emh_error *err)
{
	char url[128];
	snprintf(url, sizeof url, "EMH_CONTEXT_DEFAULT_URL=sqlite://%s/meta.db", tmp);
	const char *env[] = {url, "EMH_CONTEXT_DEFAULT_SCHEMA=sync", NULL};
	emh_host_opts o = {.plugin_dir = plugdir, .envp = env, .drivers = statics, .ndrivers = 1};
	emh_host *h = NULL;
	emh_host_new(&o, &h, err);
	return h;
}

/* A declaration of item in malloc'd memory, every string its own allocation. */
typedef struct heap_entity {
	emh_entity e;
	emh_field f[3];
	emh_index ix[1];
	const char *ixf[3];
	char *strs[11];
} heap_entity;

static heap_entity *heap_new(const char *table)
{
	heap_entity *he = calloc(1, sizeof *he);
	if (!he)
		bail("out of memory");
	size_t k = 0;
	he->e = (emh_entity)EMH_ENTITY_IDX(item, NULL, item_fields, item_indexes);
	he->e.table = he->strs[k++] = strdup(table);
	he->e.name = he->strs[k++] = strdup("item");
	memcpy(he->f, item_fields, sizeof he->f);
	for (size_t i = 0; i < 3; i++) {
		he->f[i].name = he->strs[k++] = strdup(item_fields[i].name);
		he->f[i].column = he->strs[k++] = strdup(item_fields[i].column);
	}
	he->ixf[0] = he->strs[k++] = strdup("label");
	he->ixf[1] = he->strs[k++] = strdup("qty");
	he->ixf[2] = NULL;
	char ixname[64];
	snprintf(ixname, sizeof ixname, "%s_label_qty", table);
	he->ix[0] = (emh_index){.name = he->strs[k++] = strdup(ixname), .fields = he->ixf, .unique = true};
	he->e.fields = he->f;
	he->e.indexes = he->ix;
	return he;
}

/* Overwrite everything the declaration holds, keeping its address. */
static void heap_poison(heap_entity *he)
{
	for (size_t i = 0; i < sizeof he->strs / sizeof *he->strs; i++)
		if (he->strs[i])
			memset(he->strs[i], 'X', strlen(he->strs[i]));
	memset(he->f, 0xA5, sizeof he->f);
	memset(he->ix, 0xA5, sizeof he->ix);
	he->e.nfields = 999;
	he->e.size = 1;
}

static void heap_free(heap_entity *he)
{
	for (size_t i = 0; i < sizeof he->strs / sizeof *he->strs; i++)
		free(he->strs[i]);
	free(he);
}

static int add_item(emh_host *h, const char *ctx, const emh_entity *e, const char *label, emh_error *err)
{
	emh_em *em;
	item *it;
	int rc = emh_host_fork(h, ctx, &em, err);
	if (rc)
		return rc;
	if ((rc = emh_em_new(em, e, (void **)&it, err)) == 0) {
		it->label = label;
		it->qty = 7;
		rc = emh_em_flush(em, err);
	}
	emh_em_close(em);
	return rc;
}

static int64_t count_items(emh_host *h, const char *ctx, const emh_entity *e, emh_error *err)
{
	emh_em *em;
	emh_repo *r;
	int64_t n = -1;
	if (emh_host_fork(h, ctx, &em, err) == 0) {
		if (emh_em_repo(em, e, &r, err) == 0 && emh_repo_count(r, NULL, &n, err) != 0)
			n = -1;
		emh_em_close(em);
	}
	return n;
}

static void test_deep_copy(emh_host *h)
{
	emh_error err;
	heap_entity *he = heap_new("heap_items");
	is_int(emh_host_register_entity(h, NULL, &he->e, &err), 0, "a declaration in heap memory registers");
	const emh_entity *copy = NULL;
	is_int(emh_host_entity(h, NULL, "heap_items", &copy, &err), 0, "emh_host_entity finds the host's copy");
	ok(copy && copy != &he->e && copy->fields != he->f && copy->table != he->e.table &&
	   copy->indexes[0].fields != he->ixf && copy->indexes[0].fields[0] != he->ixf[0],
	   "the copy shares no memory with the declaration");
	ok(copy && strcmp(copy->table, "heap_items") == 0 && copy->nfields == 3 &&
	   strcmp(copy->fields[1].column, "label") == 0 && copy->fields[2].offset == offsetof(item, qty) &&
	   strcmp(copy->indexes[0].name, "heap_items_label_qty") == 0 &&
	   strcmp(copy->indexes[0].fields[1], "qty") == 0 && copy->indexes[0].fields[2] == NULL,
	   "and holds every name, column, offset and index field");

	heap_poison(he);
	is_int(add_item(h, NULL, &he->e, "kept", &err), 0, "insert by the caller's (now overwritten) declaration");
	emh_em *em;
	emh_repo *r1, *r2;
	emh_query *q;
	emh_list ls = {0};
	if (emh_host_fork(h, NULL, &em, &err) != 0)
		bail("fork: %s", err.message);
	ok(emh_em_repo(em, &he->e, &r1, &err) == 0 && emh_em_repo(em, copy, &r2, &err) == 0 && r1 == r2,
	   "the caller's address and the host's copy name one repository");
	if (emh_repo_query(r1, &q, &err) == 0) {
		emh_q_where(q, emh_q_eq(q, "label", emh_v_text("kept")));
		is_int(emh_repo_find(r1, q, &ls, &err), 0, "a query compiled from the copy");
	}
	ok(ls.count == 1 && ((item *)ls.items[0])->qty == 7, "finds the row with its fields");
	emh_em_close(em);
	heap_free(he); /* the key dangles now: only the copy is used below */
	is_int(add_item(h, NULL, copy, "after", &err), 0, "the context works on after the declaration is freed");
	is_int(count_items(h, NULL, copy, &err), 2, "both rows are there");
	is_int(emh_host_sync_schema(h, NULL, &err), 0, "schema sync reads the copy");

	is_int(emh_host_entity(h, NULL, "nosuch", &copy, &err), EMH_ENOENTITY, "an unknown table");
	like_str(err.message, "no entity on table 'nosuch' is registered (tables: heap_items)", "lists the tables");
	is_int(emh_host_entity(h, "nosuch", "heap_items", &copy, &err), EMH_ENOCONTEXT, "an unknown context");
}

static void test_aliases(emh_host *h)
{
	emh_error err;
	is_int(emh_host_register_entity(h, NULL, &item_a, &err), 0, "register a declaration");
	is_int(emh_host_register_entity(h, NULL, &item_a, &err), 0, "registering it twice is a no-op");
	is_int(emh_host_register_entity(h, NULL, &item_b, &err), 0,
	       "an identical declaration at another address is accepted");
	is_int(emh_host_register_entity(h, NULL, &item_other, &err), EMH_ECONFIG,
	       "a different entity on the same table is refused");
	like_str(err.message, "context 'default': entities 'item' and 'item' both map to table 'items'",
		 "naming the context and the table");
	emh_em *em;
	emh_repo *ra, *rb;
	if (emh_host_fork(h, NULL, &em, &err) != 0)
		bail("fork: %s", err.message);
	ok(emh_em_repo(em, &item_a, &ra, &err) == 0 && emh_em_repo(em, &item_b, &rb, &err) == 0 && ra == rb,
	   "both addresses name one repository");
	emh_em_close(em);
	is_int(add_item(h, NULL, &item_b, "b", &err), 0, "written through one");
	is_int(count_items(h, NULL, &item_a, &err), 1, "read through the other");

	/* keys held by several registrations, then forgotten (the service layer's unload) */
	emh_context *c = emh__host_get_context(h, NULL, &err);
	if (!c)
		bail("context: %s", err.message);
	const emh_entity *copy;
	is_int(emh__meta_register(h, NULL, &item_b, &copy, &err), 0, "a second hold of the alias");
	emh__meta *m = emh__context_meta(c, &item_b);
	ok(m && copy == m->pub.entity && copy != &item_b, "the internal register hands back the host's copy");
	emh__meta_forget(h, NULL, &item_b);
	ok(emh__context_meta(c, &item_b) == m, "one forget of two holds keeps the key");
	emh__meta_forget(h, NULL, &item_b);
	ok(emh__context_meta(c, &item_b) == NULL, "the last forget drops it: that address finds nothing");
	ok(emh__context_meta(c, &item_a) == m && emh__context_meta(c, copy) == m,
	   "the other key and the copy still find the entity");
	is_int(count_items(h, NULL, copy, &err), 1, "and its data");
	is_int(emh_host_register_entity(h, NULL, &item_b, &err), 0, "a forgotten address registers again");
	ok(emh__context_meta(c, &item_b) == m, "as a key of the same entity");

	/* the memory behind a key now holds another declaration */
	heap_entity *he = heap_new("first_table");
	is_int(emh_host_register_entity(h, NULL, &he->e, &err), 0, "a heap declaration registers");
	emh__meta *first = emh__context_meta(c, &he->e);
	char *t = he->strs[0];
	he->strs[0] = strdup("second_table");
	he->e.table = he->strs[0];
	free(t);
	is_int(emh_host_register_entity(h, NULL, &he->e, &err), 0,
	       "another entity at the same address registers (not taken for the old one)");
	emh__meta *second = emh__context_meta(c, &he->e);
	ok(first && second && second != first && strcmp(second->pub.entity->table, "second_table") == 0,
	   "the address now finds the new entity");
	ok(strcmp(first->pub.entity->table, "first_table") == 0, "the old one keeps its copy");
	heap_free(he);
	emh__context_put(c);
}

static void test_drop(emh_host *h)
{
	emh_error err;
	is_int(emh_host_register_entity(h, NULL, &order_entity, &err), 0, "an entity on table \"order\"");
	is_int(add_item(h, NULL, &order_entity, "o", &err), 0, "a row in it");
	is_int(add_item(h, NULL, &item_a, "a", &err), 0, "a row in items");
	is_int(emh_host_drop_schema(h, NULL, &err), 0, "drop every table of the context");
	if (err.code)
		diag("%s", err.message);
	/* schema = "sync": the next fork creates the tables again, empty */
	is_int(count_items(h, NULL, &order_entity, &err), 0, "a later fork finds \"order\" re-created, empty");
	is_int(count_items(h, NULL, &item_a, &err), 0, "and items");
	is_int(add_item(h, NULL, &item_a, "again", &err), 0, "and writes again");

	char path[128];
	snprintf(path, sizeof path, "%s/plain.db", tmp);
	const char *kv[] = {"driver", "sqlite", "path", path, NULL};
	if (emh_host_add_context(h, "plain", kv, &err) || emh_host_register_entity(h, "plain", &item_a, &err) ||
	    emh_host_sync_schema(h, "plain", &err))
		bail("plain context: %s", err.message);
	is_int(add_item(h, "plain", &item_a, "p", &err), 0, "a context without schema sync has its table");
	is_int(emh_host_drop_schema(h, "plain", &err), 0, "dropped");
	ok(count_items(h, "plain", &item_a, &err) < 0, "then the table is gone (nothing re-creates it)");
	is_int(emh_host_sync_schema(h, "plain", &err), 0, "until emh_host_sync_schema");
	is_int(count_items(h, "plain", &item_a, &err), 0, "which creates it empty");

	const char *mkv[] = {"driver", "memdrv", NULL};
	if (emh_host_add_context(h, "docs", mkv, &err) || emh_host_register_entity(h, "docs", &item_a, &err))
		bail("docs context: %s", err.message);
	is_int(emh_host_drop_schema(h, "docs", &err), EMH_EUNSUPPORTED,
	       "a driver with neither drop nor a dialect cannot drop");
	like_str(err.message, "context 'docs': driver 'memdrv' cannot drop tables", "saying so");
	is_int(emh_host_drop_schema(h, "nosuch", &err), EMH_ENOCONTEXT, "an unknown context");
}

int main(void)
{
	const char *b = getenv("EMH_BUILDDIR");
	if (!b)
		bail("EMH_BUILDDIR is not set (run through make check)");
	snprintf(plugdir, sizeof plugdir, "%s/plugins-build", b);
	snprintf(tmp, sizeof tmp, "/tmp/emh-meta-XXXXXX");
	if (!mkdtemp(tmp))
		bail("mkdtemp");
	emh_error err;
	emh_host *h = new_host(&err);
	if (!h)
		bail("host: %s", err.message);
	test_deep_copy(h);
	test_aliases(h);
	test_drop(h);
	emh_host_free(h);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
	if (system(cmd) != 0)
		diag("could not remove %s", tmp);
	return done_testing();
}
