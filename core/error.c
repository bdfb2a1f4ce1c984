/* SPDX-License-Identifier: MIT */
/* core/error.c: status code table, emh_strerror/emh_status_name, the error setter. */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <emhost/error.h>

#include "internal.h"

const char *emh_strerror(int code)
{
	switch (code) {
	case EMH_OK:
		return "success";
#define EMH__ERRNO_MSG(name, num, msg) case EMH_##name: return msg;
	EMH_ERRNO_MAP(EMH__ERRNO_MSG)
#undef EMH__ERRNO_MSG
	}
	return "unknown error";
}

const char *emh_status_name(int code)
{
	switch (code) {
	case EMH_OK:
		return "EMH_OK";
#define EMH__ERRNO_NAME(name, num, msg) case EMH_##name: return "EMH_" #name;
	EMH_ERRNO_MAP(EMH__ERRNO_NAME)
#undef EMH__ERRNO_NAME
	}
	return "EMH_E?";
}

int emh_error_set(emh_error *err, int code, const char *fmt, ...)
{
	if (!err)
		return code;
	memset(err, 0, sizeof *err);
	err->code = code;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof err->message, fmt, ap);
	va_end(ap);
	return code;
}

/* Back a cut string off to a UTF-8 character boundary (n bytes were kept). */
static void cut_at_char(char *buf, size_t n)
{
	while (n > 0 && ((unsigned char)buf[n] & 0xc0) == 0x80)
		n--;
	buf[n] = '\0';
}

void emh__msgf(char *buf, size_t cap, const char *fmt, ...)
{
	if (!cap)
		return;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, cap, fmt, ap);
	va_end(ap);
	if (n >= 0 && (size_t)n >= cap)
		cut_at_char(buf, cap - 1); /* a message is bounded: the cut is meant */
}

int emh_error_prefix(emh_error *err, int code, const char *fmt, ...)
{
	if (!err)
		return code;
	char prefix[EMH_ERROR_MSG_MAX], msg[EMH_ERROR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof prefix, fmt, ap);
	va_end(ap);
	emh__msgf(msg, sizeof msg, "%s%s", prefix, err->message);
	memcpy(err->message, msg, sizeof msg);
	return err->code ? err->code : code;
}

int emh_error_context(emh_error *err, int code, const char *context)
{
	if (!err)
		return code;
	if (context)
		snprintf(err->context, sizeof err->context, "%s", context);
	return err->code ? err->code : code;
}

/* Member by member: every member reads empty (the texts from their first
 * byte), without zeroing ~600 bytes -- emhostd clears one per request. */
void emh_error_clear(emh_error *err)
{
	if (!err)
		return;
	err->code = err->native = 0;
	err->sqlstate[0] = err->context[0] = err->message[0] = '\0';
	err->retryable = false;
}

/* Prefix err's message with "context 'name': " unless it already names it,
 * and record the context.  Returns code. */
int emh__error_in_context(emh_error *err, int code, const char *name);
int emh__error_in_context(emh_error *err, int code, const char *name)
{
	if (!err || !name)
		return code;
	char needle[EMH_ERROR_CTX_MAX + 16];
	snprintf(needle, sizeof needle, "context '%s'", name);
	if (!strstr(err->message, needle)) {
		char msg[EMH_ERROR_MSG_MAX];
		emh__msgf(msg, sizeof msg, "context '%s': %s", name, err->message);
		memcpy(err->message, msg, sizeof msg);
	}
	snprintf(err->context, sizeof err->context, "%s", name);
	err->code = code;
	return code;
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when it is not one. */
static size_t utf8_seq(const unsigned char *s)
{
	unsigned char c = s[0];
	if (c < 0x80)
		return 1;
	size_t n;
	unsigned char lo = 0x80, hi = 0xBF;
	if (c >= 0xC2 && c <= 0xDF)
		n = 2;
	else if (c >= 0xE0 && c <= 0xEF) {
		n = 3;
		if (c == 0xE0)
			lo = 0xA0;
		else if (c == 0xED)
			hi = 0x9F; /* no surrogates */
	} else if (c >= 0xF0 && c <= 0xF4) {
		n = 4;
		if (c == 0xF0)
			lo = 0x90;
		else if (c == 0xF4)
			hi = 0x8F;
	} else {
		return 0;
	}
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (s[i] < 0x80 || s[i] > 0xBF)
			return 0;
	return n;
}

/*
 * s made fit for a JSON string and a log line: bytes that are not valid
 * UTF-8, and control characters, become "\xNN".  Request text (a path, a
 * method) reaches error messages, and jansson refuses invalid UTF-8.  Cut
 * at a character boundary when out is too small.
 */
const char *emh_text_clean(const char *s, char *out, size_t cap)
{
	size_t o = 0;
	const unsigned char *p = (const unsigned char *)(s ? s : "");
	while (*p) {
		size_t n = utf8_seq(p);
		if (n == 1 && (*p < 0x20 || *p == 0x7F))
			n = 0;
		if (n) {
			if (o + n >= cap)
				break;
			memcpy(out + o, p, n);
			o += n;
			p += n;
		} else {
			if (o + 4 >= cap)
				break;
			snprintf(out + o, 5, "\\x%02X", *p);
			o += 4;
			p++;
		}
	}
	out[o] = '\0';
	return out;
}

