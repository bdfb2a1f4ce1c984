/* SPDX-License-Identifier: MIT */
/* core/error.c: status code table, emh_strerror/emh_status_name, the error setter. */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <emhost/error.h>

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

int emh_error_prefix(emh_error *err, int code, const char *fmt, ...)
{
	if (!err)
		return code;
	char prefix[EMH_ERROR_MSG_MAX], msg[EMH_ERROR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof prefix, fmt, ap);
	va_end(ap);
	snprintf(msg, sizeof msg, "%s%s", prefix, err->message);
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

void emh_error_clear(emh_error *err)
{
	if (err)
		memset(err, 0, sizeof *err);
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
		snprintf(msg, sizeof msg, "context '%s': %s", name, err->message);
		memcpy(err->message, msg, sizeof msg);
	}
	snprintf(err->context, sizeof err->context, "%s", name);
	err->code = code;
	return code;
}
