/* SPDX-License-Identifier: MIT */
/*
 * tests/tap.h: a tiny TAP producer for emhost's tests (header-only).
 *
 *   plan(n) or plan_lazy() + done_testing(); ok(cond, fmt...); is_int(got, want, name);
 *   is_str(got, want, name); skip(n, why); diag(fmt...); bail(fmt...)
 *
 * Thread-safe enough for tests: assertions from several threads are
 * serialised by a mutex.
 */
#ifndef EMH_TESTS_TAP_H
#define EMH_TESTS_TAP_H

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * One program, one count.  A test built from several files defines
 * EMH_TAP_SHARED in all of them and EMH_TAP_OWNER in the one that holds the
 * counters (its main); a single-file test needs neither.
 */
#if defined(EMH_TAP_SHARED) && !defined(EMH_TAP_OWNER)
extern int tap__n, tap__failed, tap__planned;
extern pthread_mutex_t tap__mu;
#elif defined(EMH_TAP_SHARED)
extern int tap__n, tap__failed, tap__planned;
extern pthread_mutex_t tap__mu;
int tap__n, tap__failed, tap__planned = -1;
pthread_mutex_t tap__mu = PTHREAD_MUTEX_INITIALIZER;
#else
static int tap__n, tap__failed, tap__planned = -1;
static pthread_mutex_t tap__mu = PTHREAD_MUTEX_INITIALIZER;
#endif

static inline void plan(int n) { tap__planned = n; printf("1..%d\n", n); fflush(stdout); }
static inline void plan_lazy(void) { tap__planned = -1; }

static inline void diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void diag(const char *fmt, ...)
{
	va_list ap;
	char buf[4096];
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&tap__mu);
	for (char *line = buf, *nl; line && *line; line = nl) {
		nl = strchr(line, '\n');
		if (nl)
			*nl++ = '\0';
		printf("# %s\n", line);
	}
	fflush(stdout);
	pthread_mutex_unlock(&tap__mu);
}

static inline int ok(int cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline int ok(int cond, const char *fmt, ...)
{
	va_list ap;
	char name[1024];
	va_start(ap, fmt);
	vsnprintf(name, sizeof name, fmt, ap);
	va_end(ap);
	for (char *p = name; *p; p++)
		if (*p == '\n' || *p == '#')
			*p = ' ';
	pthread_mutex_lock(&tap__mu);
	tap__n++;
	if (!cond)
		tap__failed++;
	printf("%sok %d - %s\n", cond ? "" : "not ", tap__n, name);
	fflush(stdout);
	pthread_mutex_unlock(&tap__mu);
	return cond;
}

#define is_int(got, want, ...)                                                 \
	do {                                                                   \
		long long tap__g = (long long)(got), tap__w = (long long)(want); \
		if (!ok(tap__g == tap__w, __VA_ARGS__))                        \
			diag("  got: %lld\n  expected: %lld", tap__g, tap__w);   \
	} while (0)

#define is_str(got, want, ...)                                                 \
	do {                                                                   \
		const char *tap__g = (got), *tap__w = (want);                  \
		int tap__eq = (tap__g && tap__w) ? strcmp(tap__g, tap__w) == 0 \
						  : tap__g == tap__w;          \
		if (!ok(tap__eq, __VA_ARGS__))                                 \
			diag("  got: '%s'\n  expected: '%s'",                  \
			     tap__g ? tap__g : "(null)",                       \
			     tap__w ? tap__w : "(null)");                      \
	} while (0)

/* Substring match: like is_str but passes when want occurs in got. */
#define like_str(got, want, ...)                                               \
	do {                                                                   \
		const char *tap__g = (got), *tap__w = (want);                  \
		if (!ok(tap__g && strstr(tap__g, tap__w) != NULL, __VA_ARGS__))  \
			diag("  got: '%s'\n  expected to contain: '%s'",       \
			     tap__g ? tap__g : "(null)", tap__w);              \
	} while (0)

static inline void skip(int n, const char *why)
{
	pthread_mutex_lock(&tap__mu);
	for (int i = 0; i < n; i++)
		printf("ok %d # SKIP %s\n", ++tap__n, why);
	fflush(stdout);
	pthread_mutex_unlock(&tap__mu);
}

/* One named skipped test: "ok N - name # SKIP why". */
static inline void skip_named(const char *name, const char *why)
{
	pthread_mutex_lock(&tap__mu);
	printf("ok %d - %s # SKIP %s\n", ++tap__n, name, why);
	fflush(stdout);
	pthread_mutex_unlock(&tap__mu);
}

static inline void bail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static inline void bail(const char *fmt, ...)
{
	va_list ap;
	char buf[1024];
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	printf("Bail out! %s\n", buf);
	fflush(stdout);
	exit(1);
}

/* Print the plan when lazy, and return the exit status for main. */
static inline int done_testing(void)
{
	if (tap__planned < 0)
		printf("1..%d\n", tap__n);
	else if (tap__planned != tap__n)
		printf("# planned %d tests but ran %d\n", tap__planned, tap__n);
	fflush(stdout);
	return tap__failed ? 1 : (tap__planned >= 0 && tap__planned != tap__n) ? 1 : 0;
}

/*
 * A test that needs a server it cannot find: fails under CI=true, else skips
 * loudly.  Use: if (!uri) { need_server(n, "postgres: EMH_TEST_PG_URL not set"); }
 */
static inline void need_server(int n, const char *why)
{
	const char *ci = getenv("CI");
	if (ci && (strcmp(ci, "true") == 0 || strcmp(ci, "1") == 0)) {
		ok(0, "required server missing under CI: %s", why);
		for (int i = 1; i < n; i++)
			ok(0, "required server missing under CI");
	} else {
		diag("SKIPPING %d tests: %s (set CI=true to make this a failure)", n, why);
		skip(n, why);
	}
}

#endif
