/* SPDX-License-Identifier: MIT */
/* core/arena.c: bump allocator slow path, and the cache of large blocks. */
#include "config.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"

void emh__blockcache_init(emh__blockcache *c, size_t max)
{
	*c = (emh__blockcache){.max = max};
	pthread_mutex_init(&c->mu, NULL);
}

void emh__blockcache_destroy(emh__blockcache *c)
{
	for (emh__arena_block *b = c->head, *next; b; b = next) {
		next = b->next;
		free(b);
	}
	c->head = NULL;
	c->bytes = 0;
	pthread_mutex_destroy(&c->mu);
}

size_t emh__blockcache_bytes(emh__blockcache *c)
{
	pthread_mutex_lock(&c->mu);
	size_t n = c->bytes;
	pthread_mutex_unlock(&c->mu);
	return n;
}

/* A kept block of at least n bytes (the newest that fits), or NULL. */
static emh__arena_block *cache_take(emh__blockcache *c, size_t n)
{
	pthread_mutex_lock(&c->mu);
	emh__arena_block **pp = &c->head, *b;
	while ((b = *pp) != NULL && b->cap < n)
		pp = &b->next;
	if (b) {
		*pp = b->next;
		c->bytes -= b->cap;
	}
	pthread_mutex_unlock(&c->mu);
	return b;
}

/* Free b, or keep it in a's cache when it is large and there is room. */
static void block_drop(emh__arena *a, emh__arena_block *b)
{
	emh__blockcache *c = a->cache;
	if (c && b->cap >= EMH__ARENA_CACHE_MIN) {
		pthread_mutex_lock(&c->mu);
		bool keep = c->bytes + b->cap <= c->max;
		if (keep) {
			b->next = c->head;
			c->head = b;
			c->bytes += b->cap;
		}
		pthread_mutex_unlock(&c->mu);
		if (keep)
			return;
	}
	free(b);
}

void *emh__arena_grow(emh__arena *a, size_t n)
{
	size_t cap = a->next_size;
	while (cap < n)
		cap *= 2;
	emh__arena_block *b = a->cache && cap >= EMH__ARENA_CACHE_MIN ? cache_take(a->cache, n) : NULL;
	if (b) {
		cap = b->cap; /* perhaps larger than asked: all of it is used */
	} else if (!(b = malloc(sizeof *b + cap))) {
		return NULL;
	}
	b->cap = cap;
	b->next = a->blocks;
	a->blocks = b;
	if (a->next_size < EMH__ARENA_NEXT)
		a->next_size = EMH__ARENA_NEXT;
	else if (a->next_size < (1u << 20))
		a->next_size *= 2;
	a->ptr = b->data + n;
	a->end = b->data + cap;
	return b->data;
}

void *emh__arena_zalloc(emh__arena *a, size_t n)
{
	void *p = emh__arena_alloc(a, n);
	if (p)
		memset(p, 0, n);
	return p;
}

void *emh__arena_memdup(emh__arena *a, const void *p, size_t n)
{
	void *d = emh__arena_alloc(a, n ? n : 1);
	if (d && n)
		memcpy(d, p, n);
	return d;
}

void emh__arena_release(emh__arena *a)
{
	emh__arena_block *b = a->blocks;
	while (b) {
		emh__arena_block *next = b->next;
		block_drop(a, b);
		b = next;
	}
	a->blocks = NULL;
	a->ptr = a->end = NULL;
}

void emh__arena_reset(emh__arena *a)
{
	emh__arena_block *keep = a->blocks;
	if (!keep) {
		a->ptr = a->end = NULL;
		return;
	}
	for (emh__arena_block *b = keep->next, *next; b; b = next) {
		next = b->next;
		block_drop(a, b);
	}
	keep->next = NULL;
	a->ptr = keep->data;
	a->end = keep->data + keep->cap;
}
