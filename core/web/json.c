/* SPDX-License-Identifier: MIT */
/*
 * core/web/json.c: entities to and from JSON from their field metadata
 * (emhost/web.h): the member types, RFC 3339 timestamps, base64 blobs,
 * int64 as strings when asked, and input checked member by member with
 * every problem kept, so that a client learns all of them in one answer.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

#include <emhost/buf.h>
#include <emhost/web.h>

#include "web_int.h"

/* Beyond this an int64 is not exact in a double (a JavaScript number). */
#define JSON_SAFE_INT ((int64_t)1 << 53)

static bool is_column(const emh_field *f) { return f->type != EMH_T_RELATION; }

static bool field_readonly(const emh_field *f)
{
	return (f->flags & (EMH_F_READONLY | EMH_F_VERSION | EMH_F_FILTER)) ||
	       ((f->flags & EMH_F_PK) && (f->flags & EMH_F_GENERATED));
}

/* ---- time ---- */

const char *emh_web_time_format(emh_time t, char *buf, size_t cap)
{
	time_t secs = (time_t)(t / 1000000);
	long us = (long)(t % 1000000);
	if (us < 0) {
		us += 1000000;
		secs--;
	}
	struct tm tm;
	gmtime_r(&secs, &tm);
	/* the year as 4 digits (strftime's %Y does not pad year 999): what the
	 * reader takes back */
	snprintf(buf, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
		 tm.tm_hour, tm.tm_min, tm.tm_sec, us);
	return buf;
}

bool emh__web_int64(const char *s, size_t len, int64_t *out)
{
	/* a sign or a digit first: strtoll would also skip blanks and take '+' */
	if (!len || !(*s == '-' || (*s >= '0' && *s <= '9')))
		return false;
	char *end;
	errno = 0;
	long long x = strtoll(s, &end, 10);
	if (errno || (size_t)(end - s) != len)
		return false;
	*out = x;
	return true;
}

static bool digits(const char *s, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return true;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

bool emh_web_time_parse(const char *s, emh_time *out)
{
	int y, mo, d, h, mi, se;
	if (!s || strlen(s) < 20 || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) || s[7] != '-' ||
	    !digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || !digits(s + 11, 2, &h) ||
	    s[13] != ':' || !digits(s + 14, 2, &mi) || s[16] != ':' || !digits(s + 17, 2, &se))
		return false;
	static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 || se > 60)
		return false;
	if (mo == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
		return false;
	const char *p = s + 19;
	int64_t us = 0;
	if (*p == '.') {
		int n = 0;
		for (p++; *p >= '0' && *p <= '9'; p++, n++)
			if (n < 6)
				us = us * 10 + (*p - '0');
		if (n == 0)
			return false;
		for (; n < 6; n++)
			us *= 10;
	}
	int64_t off = 0;
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int oh, om;
		if (!digits(p + 1, 2, &oh) || p[3] != ':' || !digits(p + 4, 2, &om) || oh > 23 || om > 59)
			return false;
		off = (int64_t)(oh * 60 + om) * 60 * (*p == '+' ? 1 : -1);
		p += 6;
	} else {
		return false;
	}
	if (*p)
		return false;
	int64_t secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + (se == 60 ? 59 : se) - off;
	*out = secs * 1000000 + us;
	return true;
}

emh_time emh_web_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (emh_time)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- base64 (RFC 4648, padded) ---- */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static json_t *base64_json(const unsigned char *p, size_t n)
{
	size_t len = 4 * ((n + 2) / 3);
	char *s = malloc(len + 1), *o = s;
	if (!s)
		return NULL;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
		*o++ = b64[v >> 18 & 63];
		*o++ = b64[v >> 12 & 63];
		*o++ = i + 1 < n ? b64[v >> 6 & 63] : '=';
		*o++ = i + 2 < n ? b64[v & 63] : '=';
	}
	json_t *j = json_stringn(s, len);
	free(s);
	return j;
}

static int b64val(char c)
{
	const char *p = c ? strchr(b64, c) : NULL;
	return p ? (int)(p - b64) : -1;
}

/* Decode s (len bytes) into out (at least len / 4 * 3 bytes); -1 when it is not base64. */
static ssize_t base64_decode(const char *s, size_t len, unsigned char *out)
{
	if (len % 4)
		return -1;
	size_t o = 0;
	for (size_t i = 0; i < len; i += 4) {
		int v[4], pad = 0;
		for (int k = 0; k < 4; k++) {
			if (s[i + k] == '=' && i + 4 == len && k >= 2) {
				v[k] = 0;
				pad++;
				continue;
			}
			if (pad || (v[k] = b64val(s[i + k])) < 0)
				return -1;
		}
		uint32_t x = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
		out[o++] = (unsigned char)(x >> 16);
		if (pad < 2)
			out[o++] = (unsigned char)(x >> 8);
		if (pad < 1)
			out[o++] = (unsigned char)x;
	}
	return (ssize_t)o;
}

/* ---- to JSON ---- */

static json_t *int64_json(int64_t v, unsigned flags)
{
	if ((flags & EMH_JSON_INT64_STRINGS) && (v > JSON_SAFE_INT || v < -JSON_SAFE_INT)) {
		char buf[24];
		snprintf(buf, sizeof buf, "%" PRId64, v);
		return json_string(buf);
	}
	return json_integer((json_int_t)v);
}

static size_t utf8_len(const unsigned char *s);

/*
 * Stored text as a JSON string.  Text that is not UTF-8 (a row another
 * writer stored; SQLite keeps any bytes) is written with U+FFFD for each
 * byte that starts no valid sequence: one such row must not turn a whole
 * answer or listing into an error.  NULL only when out of memory.
 */
static json_t *text_json(const char *s)
{
	json_t *j = json_string(s);
	if (j)
		return j;
	size_t n = strlen(s), o = 0;
	char *c = malloc(3 * n + 1);
	if (!c)
		return NULL;
	for (size_t i = 0, k; i < n; i += k ? k : 1) {
		if ((k = utf8_len((const unsigned char *)s + i)) != 0) {
			memcpy(c + o, s + i, k);
			o += k;
		} else {
			memcpy(c + o, "\xEF\xBF\xBD", 3);
			o += 3;
		}
	}
	c[o] = '\0';
	j = json_string(c);
	free(c);
	return j;
}

static json_t *field_json(emh_em *em, const emh_field *f, const void *obj, unsigned flags)
{
	const char *m = (const char *)obj + f->offset;
	if ((f->flags & EMH_F_NULLABLE) && em && emh_em_is_null(em, obj, f->name))
		return json_null();
	switch (f->type) {
	case EMH_T_BOOL:
		return json_boolean(*(const bool *)m);
	case EMH_T_INT32:
		return json_integer(*(const int32_t *)m);
	case EMH_T_INT64:
		return int64_json(*(const int64_t *)m, flags);
	case EMH_T_DOUBLE: {
		double d = *(const double *)m;
		return isfinite(d) ? json_real(d) : json_null();
	}
	case EMH_T_TEXT: {
		const char *s = *(const char *const *)m;
		return s ? text_json(s) : json_null();
	}
	case EMH_T_JSON: {
		const char *s = *(const char *const *)m;
		if (!s)
			return json_null();
		json_t *j = json_loads(s, JSON_DECODE_ANY, NULL);
		return j ? j : text_json(s); /* stored text that is no JSON stays readable */
	}
	case EMH_T_BLOB: {
		const emh_blob *b = (const emh_blob *)m;
		return b->data ? base64_json(b->data, b->len) : json_null();
	}
	case EMH_T_TIMESTAMP: {
		char buf[48];
		return json_string(emh_web_time_format(*(const emh_time *)m, buf, sizeof buf));
	}
	default:
		return json_null();
	}
}

json_t *emh_json_from_object(emh_em *em, const emh_entity *e, const void *obj, unsigned flags)
{
	json_t *o = json_object();
	if (!o)
		return NULL;
	for (size_t i = 0; i < e->nfields; i++) {
		const emh_field *f = &e->fields[i];
		if (!is_column(f) || (f->flags & EMH_F_HIDDEN))
			continue;
		json_t *v = field_json(em, f, obj, flags);
		if (!v || json_object_set_new(o, f->name, v) != 0) {
			json_decref(o);
			return NULL;
		}
	}
	return o;
}

json_t *emh_json_from_list(emh_em *em, const emh_entity *e, void *const *items, size_t n, unsigned flags)
{
	json_t *a = json_array();
	for (size_t i = 0; a && i < n; i++) {
		json_t *o = emh_json_from_object(em, e, items[i], flags);
		if (!o || json_array_append_new(a, o) != 0) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

/* ---- to JSON text, without a tree ---- */

/*
 * An answer of one object is written straight into its body: no jansson
 * tree (a dozen allocations for three members), no json_dumps.  The text is
 * byte for byte what json_dumps(emh_json_from_object(), JSON_COMPACT) makes
 * (tests/web/test_web checks it value by value); whatever this writer does
 * not do the same way -- a double, a JSON member, text that is not valid
 * UTF-8 (jansson refuses it) -- sends the caller back to the tree.
 */
/* Append to an emh_buf: the common case inline (a call per piece would cost
 * more than the piece), growing through emh_buf_add.  The NUL is written
 * at the end (emh__web_object_text): there is room for it. */
static inline void jt_add(emh_buf *o, const char *s, size_t n)
{
	if (o->len + n < o->cap) {
		memcpy(o->ptr + o->len, s, n);
		o->len += n;
	} else {
		emh_buf_add(o, s, n);
	}
}

/* Length of the valid UTF-8 sequence at s (1-4 bytes; no overlong form, no
 * surrogate, nothing past U+10FFFF), 0 when it is none: jansson's rule. */
static size_t utf8_len(const unsigned char *s)
{
	unsigned c = s[0];
	if (c < 0x80)
		return 1;
	size_t n = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
	for (size_t i = 1; i < n; i++)
		if ((s[i] & 0xC0) != 0x80)
			return 0;
	if ((c == 0xE0 && s[1] < 0xA0) || (c == 0xED && s[1] > 0x9F) || (c == 0xF0 && s[1] < 0x90) ||
	    (c == 0xF4 && s[1] > 0x8F))
		return 0; /* overlong, a surrogate, or past U+10FFFF */
	return n;
}

/* s as a JSON string, escaped as jansson escapes; false when s is not UTF-8. */
static bool jt_string(emh_buf *o, const char *str)
{
	const unsigned char *s = (const unsigned char *)str;
	jt_add(o, "\"", 1);
	/* 1: a byte that goes out as it is: ASCII from 0x20, but '"' and '\\' */
	static const unsigned char plain[256] = {
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
		1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
		1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
		1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
		1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
		1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
		1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
		/* 0x80-0xff: 0, UTF-8 checked below */
	};
	for (;;) {
		size_t run = 0, n;
		/* bytes that go out as they are */
		for (;;) {
			while (plain[s[run]])
				run++;
			if (s[run] < 0x80)
				break; /* NUL, a control character, '"' or '\\' */
			if (!(n = utf8_len(s + run)))
				return false;
			run += n;
		}
		jt_add(o, (const char *)s, run);
		s += run;
		if (!*s)
			break;
		char esc[8] = {'\\', 0};
		size_t el = 2;
		switch (*s) {
		case '"': esc[1] = '"'; break;
		case '\\': esc[1] = '\\'; break;
		case '\b': esc[1] = 'b'; break;
		case '\f': esc[1] = 'f'; break;
		case '\n': esc[1] = 'n'; break;
		case '\r': esc[1] = 'r'; break;
		case '\t': esc[1] = 't'; break;
		default:
			memcpy(esc + 1, "u00", 3);
			esc[4] = "0123456789ABCDEF"[*s >> 4];
			esc[5] = "0123456789ABCDEF"[*s & 15];
			el = 6;
			break;
		}
		jt_add(o, esc, el);
		s++;
	}
	jt_add(o, "\"", 1);
	return true;
}

static void jt_int(emh_buf *o, int64_t v, bool quoted)
{
	char buf[24], *e = buf + sizeof buf, *p = e;
	uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
	if (quoted)
		*--p = '"';
	do
		*--p = (char)('0' + u % 10);
	while (u /= 10);
	if (v < 0)
		*--p = '-';
	if (quoted)
		*--p = '"';
	jt_add(o, p, (size_t)(e - p));
}

static void jt_base64(emh_buf *o, const unsigned char *p, size_t n)
{
	jt_add(o, "\"", 1);
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
		char q[4] = {b64[v >> 18 & 63], b64[v >> 12 & 63], i + 1 < n ? b64[v >> 6 & 63] : '=',
			     i + 2 < n ? b64[v & 63] : '='};
		jt_add(o, q, 4);
	}
	jt_add(o, "\"", 1);
}

/* One member's value as field_json() would make it; false: not this way. */
static bool jt_field(emh_buf *o, emh_em *em, const emh_field *f, const void *obj, unsigned flags)
{
	const char *m = (const char *)obj + f->offset;
	if ((f->flags & EMH_F_NULLABLE) && em && emh_em_is_null(em, obj, f->name)) {
		jt_add(o, "null", 4);
		return true;
	}
	switch (f->type) {
	case EMH_T_BOOL:
		if (*(const bool *)m)
			jt_add(o, "true", 4);
		else
			jt_add(o, "false", 5);
		return true;
	case EMH_T_INT32:
		jt_int(o, *(const int32_t *)m, false);
		return true;
	case EMH_T_INT64: {
		int64_t v = *(const int64_t *)m;
		jt_int(o, v, (flags & EMH_JSON_INT64_STRINGS) && (v > JSON_SAFE_INT || v < -JSON_SAFE_INT));
		return true;
	}
	case EMH_T_TEXT: {
		const char *s = *(const char *const *)m;
		if (!s) {
			jt_add(o, "null", 4);
			return true;
		}
		return jt_string(o, s);
	}
	case EMH_T_BLOB: {
		const emh_blob *b = (const emh_blob *)m;
		if (b->data)
			jt_base64(o, b->data, b->len);
		else
			jt_add(o, "null", 4);
		return true;
	}
	case EMH_T_TIMESTAMP: {
		char buf[48];
		return jt_string(o, emh_web_time_format(*(const emh_time *)m, buf, sizeof buf));
	}
	default:
		return false; /* a double (jansson's own number format), a JSON member, or no type */
	}
}

int emh__web_object_text(emh_em *em, const emh_entity *e, const void *obj, unsigned flags, char **out, size_t *len)
{
	emh_buf o = EMH_BUF_INIT;
	bool first = true;
	jt_add(&o, "{", 1);
	for (size_t i = 0; i < e->nfields; i++) {
		const emh_field *f = &e->fields[i];
		if (!is_column(f) || (f->flags & EMH_F_HIDDEN))
			continue;
		if (!first)
			jt_add(&o, ",", 1);
		first = false;
		if (!jt_string(&o, f->name))
			goto out_tree;
		jt_add(&o, ":", 1);
		if (!jt_field(&o, em, f, obj, flags))
			goto out_tree;
	}
	jt_add(&o, "}", 1);
	if (o.oom) {
		emh_buf_release(&o);
		return EMH_ENOMEM;
	}
	o.ptr[o.len] = '\0'; /* jt_add leaves a byte for it */
	*out = o.ptr;
	*len = o.len;
	return 0;
out_tree:
	emh_buf_release(&o);
	return 1;
}

/* ---- from JSON ---- */

/* One member's value, checked and converted, waiting until every member is. */
typedef struct staged {
	const emh_field *f;
	bool is_null;
	union {
		bool b;
		int32_t i32;
		int64_t i64;
		double d;
		const char *s;
		emh_blob blob;
	} u;
} staged;

typedef struct checker {
	json_t *problems; /* NULL: the caller does not want them */
	size_t n;
	char first[EMH_ERROR_MSG_MAX];
	bool oom;
} checker;

static void problem(checker *c, const char *field, const char *kind, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void problem(checker *c, const char *field, const char *kind, const char *fmt, ...)
{
	char msg[EMH_ERROR_MSG_MAX], clean[64];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (c->n++ == 0)
		snprintf(c->first, sizeof c->first, "%s", msg);
	if (c->problems &&
	    json_array_append_new(c->problems, json_pack("{s:s,s:s,s:s}", "field", emh_text_clean(field, clean, sizeof clean),
							 "problem", kind, "message", msg)) != 0)
		c->oom = true;
}

static const char *type_wanted(emh_type t, unsigned flags)
{
	switch (t) {
	case EMH_T_BOOL: return "a boolean";
	case EMH_T_INT32: return "an integer from -2147483648 to 2147483647";
	case EMH_T_INT64: return flags & EMH_JSON_INT64_STRINGS ? "an integer (or its decimal string)" : "an integer";
	case EMH_T_DOUBLE: return "a number";
	case EMH_T_TEXT: return "a string without NUL";
	case EMH_T_BLOB: return "a base64 string";
	case EMH_T_TIMESTAMP: return "an RFC 3339 timestamp string";
	default: return "a JSON value";
	}
}

/* Check and convert v for f into st; false (a problem noted) when it does not fit. */
static bool stage(emh_em *em, const emh_field *f, json_t *v, unsigned flags, staged *st, checker *c)
{
	char name[64];
	emh_text_clean(f->name, name, sizeof name);
	st->f = f;
	st->is_null = false;
	if (json_is_null(v)) {
		if (!(f->flags & EMH_F_NULLABLE)) {
			problem(c, f->name, "type", "field '%s' must be %s, not null", name, type_wanted(f->type, flags));
			return false;
		}
		st->is_null = true;
		return true;
	}
	size_t len = 0;
	switch (f->type) {
	case EMH_T_BOOL:
		if (!json_is_boolean(v))
			goto wrong;
		st->u.b = json_is_true(v);
		return true;
	case EMH_T_INT32:
		if (!json_is_integer(v) || json_integer_value(v) < INT32_MIN || json_integer_value(v) > INT32_MAX)
			goto wrong;
		st->u.i32 = (int32_t)json_integer_value(v);
		return true;
	case EMH_T_INT64:
		if (json_is_integer(v)) {
			st->u.i64 = (int64_t)json_integer_value(v);
			return true;
		}
		if ((flags & EMH_JSON_INT64_STRINGS) && json_is_string(v)) {
			int64_t x;
			if (emh__web_int64(json_string_value(v), json_string_length(v), &x)) {
				st->u.i64 = x;
				return true;
			}
		}
		goto wrong;
	case EMH_T_DOUBLE:
		if (!json_is_number(v))
			goto wrong;
		st->u.d = json_number_value(v);
		return true;
	case EMH_T_TIMESTAMP:
		if (!json_is_string(v) || !emh_web_time_parse(json_string_value(v), &st->u.i64))
			goto wrong;
		return true;
	case EMH_T_TEXT:
		if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v))
			goto wrong;
		len = json_string_length(v);
		if (f->max_len && len > f->max_len)
			goto too_long;
		if (!(st->u.s = emh_em_strdup(em, json_string_value(v))))
			goto oom;
		return true;
	case EMH_T_JSON: {
		char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
		if (!s)
			goto oom;
		len = strlen(s);
		if (f->max_len && len > f->max_len) {
			free(s);
			goto too_long;
		}
		st->u.s = emh_em_strdup(em, s);
		free(s);
		if (!st->u.s)
			goto oom;
		return true;
	}
	case EMH_T_BLOB: {
		if (!json_is_string(v))
			goto wrong;
		size_t n = json_string_length(v);
		unsigned char *buf = malloc(n / 4 * 3 + 1);
		if (!buf)
			goto oom;
		ssize_t got = base64_decode(json_string_value(v), n, buf);
		if (got < 0) {
			free(buf);
			goto wrong;
		}
		len = (size_t)got;
		if (f->max_len && len > f->max_len) {
			free(buf);
			goto too_long;
		}
		/* an empty blob is not NULL: its data points somewhere */
		st->u.blob.data = emh_em_memdup(em, buf, len ? len : 1);
		st->u.blob.len = len;
		free(buf);
		if (!st->u.blob.data)
			goto oom;
		return true;
	}
	default:
		goto wrong;
	}
wrong:
	problem(c, f->name, "type", "field '%s' must be %s", name, type_wanted(f->type, flags));
	return false;
too_long:
	problem(c, f->name, "too_long", "field '%s' is %zu bytes, longer than its max_len of %u", name, len,
		(unsigned)f->max_len);
	return false;
oom:
	c->oom = true;
	return false;
}

static int write_staged(emh_em *em, void *obj, const staged *st, emh_error *err)
{
	const emh_field *f = st->f;
	char *m = (char *)obj + f->offset;
	bool scalar = f->type != EMH_T_TEXT && f->type != EMH_T_JSON && f->type != EMH_T_BLOB;
	if (st->is_null) {
		if (f->type == EMH_T_TEXT || f->type == EMH_T_JSON)
			*(const char **)m = NULL;
		else if (f->type == EMH_T_BLOB)
			*(emh_blob *)m = (emh_blob){0};
		else
			return emh_em_set_null(em, obj, f->name, true, err);
		return 0;
	}
	switch (f->type) {
	case EMH_T_BOOL: *(bool *)m = st->u.b; break;
	case EMH_T_INT32: *(int32_t *)m = st->u.i32; break;
	case EMH_T_INT64:
	case EMH_T_TIMESTAMP: *(int64_t *)m = st->u.i64; break;
	case EMH_T_DOUBLE: *(double *)m = st->u.d; break;
	case EMH_T_TEXT:
	case EMH_T_JSON: *(const char **)m = st->u.s; break;
	case EMH_T_BLOB: *(emh_blob *)m = st->u.blob; break;
	default: break;
	}
	if (scalar && (f->flags & EMH_F_NULLABLE))
		return emh_em_set_null(em, obj, f->name, false, err);
	return 0;
}

int emh_json_into_object(emh_em *em, const emh_entity *e, json_t *in, void *obj, unsigned flags,
			 json_t **problems, emh_error *err)
{
	if (problems)
		*problems = NULL;
	if (!em || !e || !obj || !json_is_object(in))
		return emh_error_set(err, EMH_EINVAL, "a fork, an entity, an object and a JSON object are required");
	checker c = {.problems = problems ? json_array() : NULL};
	staged *st = calloc(e->nfields ? e->nfields : 1, sizeof *st);
	size_t nst = 0;
	int rc = 0;
	if (!st || (problems && !c.problems)) {
		rc = emh_error_set(err, EMH_ENOMEM, "out of memory");
		goto out;
	}
	const char *key;
	json_t *v;
	json_object_foreach(in, key, v) {
		int idx = emh_entity_field_index(e, key);
		const emh_field *f = idx >= 0 ? &e->fields[idx] : NULL;
		char name[64];
		if (!f || !is_column(f)) {
			if (!(flags & EMH_JSON_IGNORE_UNKNOWN))
				problem(&c, key, "unknown", "unknown field '%s'", emh_text_clean(key, name, sizeof name));
			continue;
		}
		if (field_readonly(f)) {
			if (flags & EMH_JSON_REFUSE_READONLY)
				problem(&c, key, "read_only", "field '%s' is read-only", emh_text_clean(key, name, sizeof name));
			continue;
		}
		if (stage(em, f, v, flags, &st[nst], &c))
			nst++;
	}
	for (size_t i = 0; !(flags & EMH_JSON_PARTIAL) && i < e->nfields; i++) {
		const emh_field *f = &e->fields[i];
		if (is_column(f) && !field_readonly(f) && !(f->flags & EMH_F_NULLABLE) && !json_object_get(in, f->name))
			problem(&c, f->name, "missing", "field '%s' is required", f->name);
	}
	if (c.oom) {
		rc = emh_error_set(err, EMH_ENOMEM, "out of memory");
		goto out;
	}
	if (c.n) {
		if (c.n > 1)
			rc = emh_error_set(err, EMH_EINVAL, "invalid request body: %s (and %zu more)", c.first, c.n - 1);
		else
			rc = emh_error_set(err, EMH_EINVAL, "invalid request body: %s", c.first);
		if (problems) {
			*problems = c.problems;
			c.problems = NULL;
		}
		goto out;
	}
	for (size_t i = 0; i < nst && rc == 0; i++)
		rc = write_staged(em, obj, &st[i], err);
out:
	json_decref(c.problems);
	free(st);
	return rc;
}
