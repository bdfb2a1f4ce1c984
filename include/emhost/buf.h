/* SPDX-License-Identifier: MIT */
/*
 * emhost/buf.h: a growable NUL-terminated string, for drivers, services and
 * the core alike.  Appends never fail loudly: on out of memory the buffer
 * sets .oom and ignores further appends, so a caller checks once at the end.
 *
 *   emh_buf b = EMH_BUF_INIT;
 *   emh_buf_addf(&b, "%s=%d", key, n);
 *   if (b.oom) ...;
 *   use(b.ptr, b.len);
 *   emh_buf_release(&b);
 */
#ifndef EMHOST_BUF_H
#define EMHOST_BUF_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct emh_buf {
	char *ptr;  /* NUL-terminated; NULL until the first append */
	size_t len;
	size_t cap;
	bool oom;   /* an append failed; the content is incomplete */
} emh_buf;

#define EMH_BUF_INIT {0}
/* Free the storage; the buffer is empty and reusable. */
void emh_buf_release(emh_buf *b);
/* Empty it, keeping the storage. */
void emh_buf_reset(emh_buf *b);
void emh_buf_add(emh_buf *b, const char *s, size_t n);
void emh_buf_adds(emh_buf *b, const char *s);
void emh_buf_addf(emh_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/*
 * Hand the string over: a malloc'd NUL-terminated copy the caller frees
 * ("" when nothing was appended), or NULL when an append had failed.  The
 * buffer is empty afterwards.
 */
char *emh_buf_take(emh_buf *b);

#ifdef __cplusplus
}
#endif
#endif
