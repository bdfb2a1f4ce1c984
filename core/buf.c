/* SPDX-License-Identifier: MIT */
/* core/buf.c: emh_buf, the one growable string of the core, the drivers and the daemon. */
#include "config.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <emhost/buf.h>

static bool buf_reserve(emh_buf *b, size_t more)
{
	if (b->oom)
		return false;
	if (b->len + more + 1 <= b->cap)
		return true;
	size_t cap = b->cap ? b->cap : 128;
	while (cap < b->len + more + 1)
		cap *= 2;
	char *p = realloc(b->ptr, cap);
	if (!p) {
		b->oom = true;
		return false;
	}
	b->ptr = p;
	b->cap = cap;
	return true;
}

void emh_buf_release(emh_buf *b)
{
	free(b->ptr);
	memset(b, 0, sizeof *b);
}

void emh_buf_reset(emh_buf *b)
{
	b->len = 0;
	b->oom = false;
	if (b->ptr)
		b->ptr[0] = '\0';
}

void emh_buf_add(emh_buf *b, const char *s, size_t n)
{
	if (!buf_reserve(b, n))
		return;
	memcpy(b->ptr + b->len, s, n);
	b->len += n;
	b->ptr[b->len] = '\0';
}

void emh_buf_adds(emh_buf *b, const char *s) { emh_buf_add(b, s, strlen(s)); }

void emh_buf_addf(emh_buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || !buf_reserve(b, (size_t)n))
		return;
	va_start(ap, fmt);
	vsnprintf(b->ptr + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

char *emh_buf_take(emh_buf *b)
{
	char *p = b->oom ? NULL : b->ptr;
	if (b->oom)
		free(b->ptr);
	else if (!p)
		p = calloc(1, 1);
	memset(b, 0, sizeof *b);
	return p;
}
