/* SPDX-License-Identifier: MIT */
/* core/prepcache.c: emh_prepcache, a driver connection's prepared statements indexed by emh_stmt.id. */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <emhost/prepcache.h>

typedef struct prep_entry {
	const void *key; /* what the handle was prepared for; NULL: empty */
	void *handle;
} prep_entry;

struct emh_prepcache {
	prep_entry *v;
	size_t n; /* entries in v: 0 or a power of two */
	emh_prepcache_destroy_fn destroy;
	void *arg;
};

int emh_prepcache_new(emh_prepcache_destroy_fn destroy, void *arg, emh_prepcache **out, emh_error *err)
{
	emh_prepcache *c = calloc(1, sizeof *c);
	*out = NULL;
	if (!c)
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	c->destroy = destroy;
	c->arg = arg;
	*out = c;
	return 0;
}

/* Empty entry e, handing its handle to the destroy callback. */
static void entry_release(emh_prepcache *c, prep_entry *e)
{
	void *h = e->handle;
	e->handle = NULL;
	e->key = NULL;
	if (h && c->destroy)
		c->destroy(h, c->arg);
}

void emh_prepcache_clear(emh_prepcache *c)
{
	for (size_t i = 0; c && i < c->n; i++)
		entry_release(c, &c->v[i]);
}

void emh_prepcache_free(emh_prepcache *c)
{
	if (!c)
		return;
	emh_prepcache_clear(c);
	free(c->v);
	free(c);
}

void *emh_prepcache_get(const emh_prepcache *c, uint32_t id, const void *key)
{
	if (id >= c->n || c->v[id].key != key)
		return NULL;
	return c->v[id].handle;
}

int emh_prepcache_reserve(emh_prepcache *c, uint32_t id, emh_error *err)
{
	if (id < c->n)
		return 0;
	size_t n = c->n ? c->n : 16;
	while (n <= id)
		n *= 2;
	if (n > SIZE_MAX / sizeof *c->v)
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	prep_entry *v = realloc(c->v, n * sizeof *v);
	if (!v)
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	memset(v + c->n, 0, (n - c->n) * sizeof *v);
	c->v = v;
	c->n = n;
	return 0;
}

int emh_prepcache_put(emh_prepcache *c, uint32_t id, const void *key, void *handle, emh_error *err)
{
	int rc = emh_prepcache_reserve(c, id, err);
	if (rc)
		return rc;
	prep_entry *e = &c->v[id];
	if (e->handle != handle)
		entry_release(c, e);
	e->key = key;
	e->handle = handle;
	return 0;
}

void emh_prepcache_drop(emh_prepcache *c, uint32_t id)
{
	if (id < c->n)
		entry_release(c, &c->v[id]);
}
