/* SPDX-License-Identifier: MIT */
/* core/arena.c: bump allocator slow path. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "arena.h"

void *emh__arena_grow(emh__arena *a, size_t n)
{
	size_t cap = a->next_size;
	while (cap < n)
		cap *= 2;
	emh__arena_block *b = malloc(sizeof *b + cap);
	if (!b)
		return NULL;
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
		free(b);
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
		free(b);
	}
	keep->next = NULL;
	a->ptr = keep->data;
	a->end = keep->data + keep->cap;
}
