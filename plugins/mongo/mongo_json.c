/* SPDX-License-Identifier: MIT */
/*
 * plugins/mongo/mongo_json.c: json fields.  A JSON text is read with jansson
 * (strict RFC 8259: extended JSON such as {"$numberLong": "5"} is never
 * interpreted, trailing text is an error) and kept as an embedded document
 * or array only when our writer reads it back as the same text; anything
 * else is stored verbatim as utf8.  The writer turns BSON back into compact
 * JSON for reading.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <mongoc/mongoc.h>

#include <emhost/buf.h>
#include <emhost/driver.h>

#include "mongo_int.h"

#define MG_JSON_MAX_DEPTH 1000 /* deeper JSON is refused (recursion bound) */
#define MG_BSON_MAX_DEPTH 90   /* deeper JSON is kept as text (server limit 100) */

/* ---- JSON text -> jansson ---- */

static bool mgr_hex4(const char *p, unsigned *out)
{
	unsigned v = 0;
	for (int k = 0; k < 4; k++) {
		char ch = p[k];
		v <<= 4;
		if (ch >= '0' && ch <= '9')
			v |= (unsigned)(ch - '0');
		else if (ch >= 'a' && ch <= 'f')
			v |= (unsigned)(ch - 'a' + 10);
		else if (ch >= 'A' && ch <= 'F')
			v |= (unsigned)(ch - 'A' + 10);
		else
			return false;
	}
	*out = v;
	return true;
}

static bool mgr_is_digit(char ch)
{
	return ch >= '0' && ch <= '9';
}

/* Length of the RFC 8259 number at the start of (s, n), or 0 when there is none. */
static size_t mgr_number_len(const char *s, size_t n)
{
	size_t i = 0;
	if (i < n && s[i] == '-')
		i++;
	if (i < n && s[i] == '0')
		i++;
	else if (i < n && s[i] >= '1' && s[i] <= '9')
		while (i < n && mgr_is_digit(s[i]))
			i++;
	else
		return 0;
	if (i < n && s[i] == '.') {
		if (++i >= n || !mgr_is_digit(s[i]))
			return 0;
		while (i < n && mgr_is_digit(s[i]))
			i++;
	}
	if (i < n && (s[i] == 'e' || s[i] == 'E')) {
		if (++i < n && (s[i] == '+' || s[i] == '-'))
			i++;
		if (i >= n || !mgr_is_digit(s[i]))
			return 0;
		while (i < n && mgr_is_digit(s[i]))
			i++;
	}
	return i;
}

/* Does the number t[0..k) (valid, t[k] writable) overflow what jansson reads it into? */
static bool mgr_number_overflows(char *t, size_t k)
{
	char save = t[k];
	bool over;
	t[k] = '\0';
	bool integer = strcspn(t, ".eE") == k;
	errno = 0;
	if (integer) {
		(void)strtoll(t, NULL, 10);
		over = errno == ERANGE;
	} else {
		over = isinf(strtod(t, NULL)) && errno == ERANGE;
	}
	t[k] = save;
	return over;
}

/*
 * jansson refuses a few texts that RFC 8259 allows: integers beyond int64,
 * numbers beyond double, \u0000, and \u escapes of lone surrogates (which
 * have no UTF-8 form).  BSON could not keep any of them as written, so such
 * a text is stored verbatim; it must still be accepted, with everything
 * else in it checked.  This returns a NUL-terminated copy of the text in
 * which each such token is replaced by one of the same length that jansson
 * takes ("0" and spaces for a number, \u0001 for an escape), so that parsing
 * the copy checks the rest and reports errors at the same byte offsets.
 * Each replacement turns a valid token into a valid one, so it never makes
 * an invalid text valid.  *changed says whether anything was replaced; NULL
 * when out of memory.
 */
static char *mgr_tame(const char *s, size_t n, bool *changed)
{
	char *t = malloc(n + 1);
	*changed = false;
	if (!t)
		return NULL;
	memcpy(t, s, n);
	t[n] = '\0';
	for (size_t i = 0; i < n;) {
		if (t[i] == '"') {
			for (i++; i < n && t[i] != '"';) {
				unsigned cp, lo;
				if (t[i] != '\\') {
					i++;
				} else if (i + 6 > n || t[i + 1] != 'u' || !mgr_hex4(t + i + 2, &cp)) {
					i += 2;
				} else if (cp >= 0xD800 && cp <= 0xDBFF && i + 12 <= n && t[i + 6] == '\\' &&
					   t[i + 7] == 'u' && mgr_hex4(t + i + 8, &lo) && lo >= 0xDC00 && lo <= 0xDFFF) {
					i += 12; /* a surrogate pair: one character */
				} else {
					if (cp == 0 || (cp >= 0xD800 && cp <= 0xDFFF)) {
						memcpy(t + i + 2, "0001", 4);
						*changed = true;
					}
					i += 6;
				}
			}
			i++; /* the closing quote */
		} else if (t[i] == '-' || mgr_is_digit(t[i])) {
			size_t k = mgr_number_len(t + i, n - i), run = 1;
			while (i + run < n && t[i + run] && (mgr_is_digit(t[i + run]) || strchr("+-.eE", t[i + run])))
				run++;
			/* Only a whole, valid number token (run == k) is replaced. */
			if (k && k == run && mgr_number_overflows(t + i, k)) {
				t[i] = '0';
				memset(t + i + 1, ' ', k - 1);
				*changed = true;
			}
			i += run;
		} else {
			i++;
		}
	}
	return t;
}

static int mgr_error(const json_error_t *je, const char *field, emh_error *err)
{
	char why[JSON_ERROR_TEXT_LENGTH];
	if (json_error_code(je) == json_error_out_of_memory)
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	/* jansson ends its messages with " near '<the text there>'": part of a
	 * value, which error messages never quote. */
	snprintf(why, sizeof why, "%s", je->text);
	char *near = strstr(why, " near ");
	if (near)
		*near = '\0';
	return emh_error_set(err, EMH_EINVAL, "field '%s': invalid json: %s at byte %d", field, why, je->position);
}

/* Parse (s, n), any value at the top; *verbatim is set when only mgr_tame made it parse. */
static int mgr_load(const char *s, size_t n, json_t **out, bool *verbatim, const char *field, emh_error *err)
{
	json_error_t je;
	bool changed;

	*out = json_loadb(s, n, JSON_DECODE_ANY, &je);
	if (*out)
		return 0;
	if (json_error_code(&je) != json_error_out_of_memory) {
		char *t = mgr_tame(s, n, &changed);
		if (!t)
			return emh_error_set(err, EMH_ENOMEM, "out of memory");
		if (changed)
			*out = json_loadb(t, n, JSON_DECODE_ANY, &je);
		free(t);
		if (*out) {
			*verbatim = true;
			return 0;
		}
	}
	return mgr_error(&je, field, err);
}

/* ---- jansson -> BSON ---- */

/* Keys the server would refuse, or read as an operator or a path. */
static bool mgr_key_verbatim(const char *k)
{
	return k[0] == '\0' || k[0] == '$' || strchr(k, '.') != NULL;
}

/*
 * Append v under key, depth levels down.  *verbatim is set when BSON cannot
 * keep v as written.  -1 with *why set (what to say after the field's name)
 * when v cannot be stored at all.
 */
static int mgr_put(bson_t *parent, const char *key, json_t *v, int depth, bool *verbatim, const char **why)
{
	bool ok;

	switch (json_typeof(v)) {
	case JSON_OBJECT:
	case JSON_ARRAY: {
		bool object = json_is_object(v);
		bson_t child;
		if (depth > MG_JSON_MAX_DEPTH) {
			*why = "invalid json: nested deeper than 1000 levels";
			return -1;
		}
		if (depth > MG_BSON_MAX_DEPTH)
			*verbatim = true;
		ok = object ? bson_append_document_begin(parent, key, -1, &child)
			    : bson_append_array_begin(parent, key, -1, &child);
		if (!ok)
			break;
		if (object) {
			const char *k;
			json_t *x;
			json_object_foreach (v, k, x) {
				if (mgr_key_verbatim(k))
					*verbatim = true;
				if (mgr_put(&child, k, x, depth + 1, verbatim, why))
					return -1;
			}
		} else {
			size_t i;
			json_t *x;
			json_array_foreach (v, i, x) {
				char ikey[16];
				const char *k;
				bson_uint32_to_string((uint32_t)i, &k, ikey, sizeof ikey);
				if (mgr_put(&child, k, x, depth + 1, verbatim, why))
					return -1;
			}
		}
		ok = object ? bson_append_document_end(parent, &child) : bson_append_array_end(parent, &child);
		break;
	}
	case JSON_STRING:
		ok = json_string_length(v) < INT32_MAX &&
		     bson_append_utf8(parent, key, -1, json_string_value(v), (int)json_string_length(v));
		break;
	case JSON_INTEGER: {
		json_int_t i = json_integer_value(v);
		ok = i >= INT32_MIN && i <= INT32_MAX ? bson_append_int32(parent, key, -1, (int32_t)i)
						      : bson_append_int64(parent, key, -1, (int64_t)i);
		break;
	}
	case JSON_REAL:
		ok = bson_append_double(parent, key, -1, json_real_value(v));
		break;
	case JSON_TRUE:
	case JSON_FALSE:
		ok = bson_append_bool(parent, key, -1, json_is_true(v));
		break;
	default:
		ok = bson_append_null(parent, key, -1);
		break;
	}
	if (!ok)
		*why = "document too large";
	return ok ? 0 : -1;
}

/* ---- BSON -> JSON text ---- */

static void mgw_string(emh_buf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef", named[] = "\"\\\n\r\t\b\f";
	static const char *const escaped[] = {"\\\"", "\\\\", "\\n", "\\r", "\\t", "\\b", "\\f"};
	size_t start = 0;
	emh_buf_add(b, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		const char *hit = ch ? memchr(named, ch, sizeof named - 1) : NULL, *esc = NULL;
		char u[7];
		if (hit)
			esc = escaped[hit - named];
		else if (ch < 0x20) {
			memcpy(u, "\\u00", 4);
			u[4] = hex[ch >> 4];
			u[5] = hex[ch & 15];
			u[6] = '\0';
			esc = u;
		}
		if (esc) {
			emh_buf_add(b, s + start, i - start);
			emh_buf_adds(b, esc);
			start = i + 1;
		}
	}
	emh_buf_add(b, s + start, n - start);
	emh_buf_add(b, "\"", 1);
}

/* The shortest text that reads back as d, always with a '.' or an exponent. */
static void mgw_double(emh_buf *b, double d)
{
	char tmp[40];
	if (!isfinite(d)) {
		emh_buf_adds(b, isnan(d) ? "{\"$numberDouble\":\"NaN\"}"
				 : d > 0 ? "{\"$numberDouble\":\"Infinity\"}" : "{\"$numberDouble\":\"-Infinity\"}");
		return;
	}
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(tmp, sizeof tmp, "%.*g", prec, d);
		if (strtod(tmp, NULL) == d)
			break;
	}
	if (!strpbrk(tmp, ".eE"))
		strcat(tmp, ".0");
	emh_buf_adds(b, tmp);
}

static void mgw_container(emh_buf *b, bson_iter_t *it, bool object)
{
	bson_iter_t child;
	bool first = true;
	emh_buf_add(b, object ? "{" : "[", 1);
	if (bson_iter_recurse(it, &child)) {
		while (bson_iter_next(&child)) {
			if (!first)
				emh_buf_add(b, ",", 1);
			first = false;
			if (object) {
				mgw_string(b, bson_iter_key(&child), bson_iter_key_len(&child));
				emh_buf_add(b, ":", 1);
			}
			mg_json_write(b, &child);
		}
	}
	emh_buf_add(b, object ? "}" : "]", 1);
}

void mg_json_write(emh_buf *b, bson_iter_t *it)
{
	switch (bson_iter_type(it)) {
	case BSON_TYPE_DOCUMENT:
		mgw_container(b, it, true);
		break;
	case BSON_TYPE_ARRAY:
		mgw_container(b, it, false);
		break;
	case BSON_TYPE_UTF8: {
		uint32_t n;
		const char *s = bson_iter_utf8(it, &n);
		mgw_string(b, s, n);
		break;
	}
	case BSON_TYPE_INT32:
		emh_buf_addf(b, "%" PRId32, bson_iter_int32(it));
		break;
	case BSON_TYPE_INT64:
		emh_buf_addf(b, "%" PRId64, bson_iter_int64(it));
		break;
	case BSON_TYPE_DOUBLE:
		mgw_double(b, bson_iter_double(it));
		break;
	case BSON_TYPE_BOOL:
		emh_buf_adds(b, bson_iter_bool(it) ? "true" : "false");
		break;
	case BSON_TYPE_NULL:
		emh_buf_adds(b, "null");
		break;
	default: {
		/* Written by another tool: relaxed extended JSON of the value. */
		bson_t one = BSON_INITIALIZER;
		char *s;
		size_t n;
		bson_append_iter(&one, "v", 1, it);
		s = bson_as_relaxed_extended_json(&one, &n);
		bson_destroy(&one);
		/* "{ "v" : VALUE }" */
		if (s && n > 10 && strncmp(s, "{ \"v\" : ", 8) == 0)
			emh_buf_add(b, s + 8, n - 10);
		else
			emh_buf_adds(b, "null");
		bson_free(s);
		break;
	}
	}
}

/* Compare JSON texts ignoring whitespace outside strings. */
static bool mg_json_same(const char *a, size_t an, const char *b, size_t bn)
{
	size_t i = 0, k = 0;
	bool in = false;
	for (;;) {
		if (!in) {
			while (i < an && (a[i] == ' ' || a[i] == '\t' || a[i] == '\n' || a[i] == '\r'))
				i++;
			while (k < bn && (b[k] == ' ' || b[k] == '\t' || b[k] == '\n' || b[k] == '\r'))
				k++;
		}
		if (i == an || k == bn)
			return i == an && k == bn;
		if (a[i] != b[k])
			return false;
		char ch = a[i];
		i++;
		k++;
		if (in && ch == '\\') { /* an escape: the next byte is part of it */
			if (i == an || k == bn || a[i] != b[k])
				return false;
			i++;
			k++;
		} else if (ch == '"') {
			in = !in;
		}
	}
}

/* ---- a json field ---- */

/* Append the container root under key when BSON keeps it as written; *done says whether it did. */
static int mg_json_append_doc(bson_t *doc, const char *key, json_t *root, bool verbatim, const char *s, size_t n,
			      const char *field, bool *done, emh_error *err)
{
	bson_t tmp = BSON_INITIALIZER;
	emh_buf b = EMH_BUF_INIT;
	const char *why = NULL;
	bson_iter_t it;
	int rc = 0;

	*done = false;
	/* Walked even when verbatim already: a text nested too deeply is refused. */
	if (mgr_put(&tmp, "v", root, 0, &verbatim, &why)) {
		rc = emh_error_set(err, EMH_EINVAL, "field '%s': %s", field, why);
		goto out;
	}
	if (verbatim || !bson_iter_init_find(&it, &tmp, "v"))
		goto out;
	mg_json_write(&b, &it);
	if (b.oom) {
		emh_buf_release(&b);
		rc = emh_error_set(err, EMH_ENOMEM, "out of memory");
		goto out;
	}
	bool same = mg_json_same(b.ptr, b.len, s, n);
	emh_buf_release(&b);
	if (same) {
		if (!bson_append_iter(doc, key, -1, &it))
			rc = emh_error_set(err, EMH_EINVAL, "field '%s': document too large", field);
		*done = rc == 0;
	}
out:
	bson_destroy(&tmp);
	return rc;
}

int mg_json_append(bson_t *doc, const char *key, const char *s, size_t n, const char *field, emh_error *err)
{
	json_t *root;
	bool verbatim = false, done = false;
	int rc = mgr_load(s, n, &root, &verbatim, field, err);

	if (rc)
		return rc;
	if (json_is_object(root) || json_is_array(root))
		rc = mg_json_append_doc(doc, key, root, verbatim, s, n, field, &done, err);
	json_decref(root);
	if (rc || done)
		return rc;
	if (n > INT32_MAX - 1 || !bson_append_utf8(doc, key, -1, s, (int)n))
		return emh_error_set(err, EMH_EINVAL, "field '%s': document too large", field);
	return 0;
}
