/* SPDX-License-Identifier: MIT */
/* core/arena.h: bump allocator for a fork's objects; freed all at once. */
#ifndef EMH_CORE_ARENA_H
#define EMH_CORE_ARENA_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define EMH__ALIGN 16u
/*
 * The first heap block's room: its malloc (with the block header) stays
 * within glibc's per-thread cache (1,032 bytes), a few dozen instructions
 * to take and give back, where a 4 kB block is not; what outgrows it goes
 * on at EMH__ARENA_NEXT and doubles.  A fork that reads a few rows fits
 * its inline buffer and this block.
 */
#define EMH__ARENA_FIRST 1008u
#define EMH__ARENA_NEXT 4096u
/* Blocks this large and up go back to the arena's block cache, if it has one. */
#define EMH__ARENA_CACHE_MIN ((size_t)64 * 1024)

typedef struct emh__arena_block {
	struct emh__arena_block *next;
	size_t cap;
	_Alignas(16) unsigned char data[];
} emh__arena_block;

/*
 * Large blocks kept for the next arena (a host's forks share one): a fork
 * that loaded 100,000 rows gives back megabytes, and malloc would trim them
 * off the heap (or unmap them) at once, for the next large read to fault
 * them in again, page by page.  Kept up to max bytes; what does not fit is
 * freed.  Its own lock: taken once per block of 64 kB or more, never on a
 * small fork's path.
 */
typedef struct emh__blockcache {
	pthread_mutex_t mu;
	emh__arena_block *head;
	size_t bytes, max;
} emh__blockcache;

void emh__blockcache_init(emh__blockcache *c, size_t max);
/* Free every block kept; no arena may use c any more. */
void emh__blockcache_destroy(emh__blockcache *c);
/* Bytes of blocks kept now (tests/unit/test_arena reads it). */
size_t emh__blockcache_bytes(emh__blockcache *c);

typedef struct emh__arena {
	unsigned char *ptr, *end;
	emh__arena_block *blocks; /* heap blocks, newest first */
	size_t next_size;
	emh__blockcache *cache; /* where large blocks come from and go back to; NULL: malloc and free */
} emh__arena;

/* Start with buf (cap bytes, 16-aligned, caller-owned) as the first block; buf may be NULL. */
static inline void emh__arena_init(emh__arena *a, void *buf, size_t cap)
{
	a->ptr = buf;
	a->end = buf ? (unsigned char *)buf + cap : NULL;
	a->blocks = NULL;
	a->next_size = EMH__ARENA_FIRST;
	a->cache = NULL;
}

void *emh__arena_grow(emh__arena *a, size_t n);

/* n rounded up to the arena's alignment: what an allocation of n takes. */
static inline size_t emh__arena_round(size_t n) { return (n + (EMH__ALIGN - 1)) & ~(size_t)(EMH__ALIGN - 1); }

/* n bytes aligned to 16; NULL on out of memory.  Not zeroed. */
static inline void *emh__arena_alloc(emh__arena *a, size_t n)
{
	if (n > ((size_t)1 << 40))
		return NULL; /* a size this large is a corrupt length, not a request */
	n = emh__arena_round(n);
	if ((size_t)(a->end - a->ptr) >= n && a->ptr) {
		void *p = a->ptr;
		a->ptr += n;
		return p;
	}
	return emh__arena_grow(a, n);
}

void *emh__arena_zalloc(emh__arena *a, size_t n);
void *emh__arena_memdup(emh__arena *a, const void *p, size_t n);
/* n bytes of s plus a NUL.  Inline: every loaded text value of every row
 * comes through here.  Text of 4 to 16 bytes (names, codes, short labels)
 * is copied as two overlapping words, no call to memcpy. */
static inline char *emh__arena_strndup(emh__arena *a, const char *s, size_t n)
{
	char *d = emh__arena_alloc(a, n + 1);
	if (d) {
		if (n >= 8 && n <= 16) {
			uint64_t x, y;
			memcpy(&x, s, 8);
			memcpy(&y, s + n - 8, 8);
			memcpy(d, &x, 8);
			memcpy(d + n - 8, &y, 8);
		} else if (n >= 4 && n < 8) {
			uint32_t x, y;
			memcpy(&x, s, 4);
			memcpy(&y, s + n - 4, 4);
			memcpy(d, &x, 4);
			memcpy(d + n - 4, &y, 4);
		} else if (n) {
			memcpy(d, s, n);
		}
		d[n] = '\0';
	}
	return d;
}
/* Free every heap block; the inline buffer is the caller's. */
void emh__arena_release(emh__arena *a);
/*
 * Free everything allocated so far but keep the newest heap block (the
 * largest but for an oversized request) to allocate from again: memory
 * reused round after round, for an arena refilled in rounds (an iterator's
 * pages).  An inline buffer is no longer used after it.
 */
void emh__arena_reset(emh__arena *a);

#endif
