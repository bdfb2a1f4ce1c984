/* SPDX-License-Identifier: MIT */
/*
 * core/text.h: text helpers shared by layers that otherwise share nothing
 * (the config reader and the service routes); defined in core/buf.c.
 */
#ifndef EMH_CORE_TEXT_H
#define EMH_CORE_TEXT_H

#include <stddef.h>

/*
 * Percent-decode s[0..n) into a new NUL-terminated string (*out, malloc'd).
 * 0; EMH_EINVAL for a malformed escape or an escaped NUL (%00: the result
 * is a C string); EMH_ENOMEM.  *out is NULL unless 0.
 */
int emh__pct_decode(const char *s, size_t n, char **out);

#endif
