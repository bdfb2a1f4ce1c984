/* SPDX-License-Identifier: MIT */
/* core/buf.c: emh_buf, the one growable string of the core, the drivers and the daemon; and the
 * core's shared text helpers (text.h). */
#include "config.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <emhost/buf.h>
#include <emhost/error.h>

#include "text.h"

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

/* ---- text helpers (text.h) ---- */

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int emh__pct_decode(const char *s, size_t n, char **out)
{
	char *d = malloc(n + 1), *w = d;
	*out = NULL;
	if (!d)
		return EMH_ENOMEM;
	for (size_t i = 0; i < n; i++) {
		if (s[i] != '%') {
			*w++ = s[i];
			continue;
		}
		int hi = i + 2 < n ? hexval(s[i + 1]) : -1, lo = i + 2 < n ? hexval(s[i + 2]) : -1;
		if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
			free(d);
			return EMH_EINVAL;
		}
		*w++ = (char)(hi * 16 + lo);
		i += 2;
	}
	*w = '\0';
	*out = d;
	return 0;
}
