/* SPDX-License-Identifier: MIT */
/* core/log.c: the one logging function; plugins and services log through the host's sink. */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>

#include "internal.h"

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void emh__log_stderr(void *ud, int level, const char *context, const char *msg)
{
	(void)ud;
	const char *lv = (level >= 0 && level <= EMH_LOG_DEBUG) ? level_names[level] : "log";
	if (context)
		fprintf(stderr, "emhost: %s [%s] %s\n", lv, context, msg);
	else
		fprintf(stderr, "emhost: %s %s\n", lv, msg);
}

static void log_v(const emh__logger *lg, int level, const char *context, const char *fmt, va_list ap)
{
	if (!lg || level > lg->level)
		return;
	char buf[2048];
	vsnprintf(buf, sizeof buf, fmt, ap);
	(lg->fn ? lg->fn : emh__log_stderr)(lg->ud, level, context, buf);
}

void emh__log(const emh__logger *lg, int level, const char *context, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_v(lg, level, context, fmt, ap);
	va_end(ap);
}

void emh_host_log(const emh_host *h, int level, const char *context, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_v(h ? &h->log : NULL, level, context, fmt, ap);
	va_end(ap);
}

void emh_params_log(const emh_params *p, int level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_v(p ? p->log : NULL, level, p ? p->context : NULL, fmt, ap);
	va_end(ap);
}
