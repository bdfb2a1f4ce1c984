/* SPDX-License-Identifier: MIT */
/*
 * core/web/web_int.h: what the files of libemhost-web share (never
 * installed, never exported: the library exports emh_web_* and emh_json_*).
 */
#ifndef EMH_WEB_WEB_INT_H
#define EMH_WEB_WEB_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <emhost/web.h>

/*
 * obj as the JSON text json_dumps(emh_json_from_object(em, e, obj, flags),
 * JSON_COMPACT) makes, written without a tree (json.c): 0 with *out a
 * malloc'd NUL-terminated string of *len bytes, EMH_ENOMEM, or 1 when the
 * object has what only the tree writes the same way (a double, a JSON
 * member, text that is not UTF-8): the caller takes that way.
 */
int emh__web_object_text(emh_em *em, const emh_entity *e, const void *obj, unsigned flags, char **out, size_t *len);

/*
 * s[0..len) as a whole decimal int64 into *out (json.c): an optional '-'
 * and digits, nothing else (strtoll alone also takes leading blanks and a
 * '+'), in range; false for anything else.  s is NUL-terminated at len or
 * earlier (a NUL inside is not the end: false).
 */
bool emh__web_int64(const char *s, size_t len, int64_t *out);

#endif
