/* SPDX-License-Identifier: MIT */
/*
 * tests/fixture.h: the host setup the tests repeat, in one place: a
 * temporary directory, the build's plugin directory, a host on a SQLite
 * file as its default context with entities registered, and "setup that
 * must work" wrappers that bail out (TAP "Bail out!") naming the call that
 * failed, so that a broken setup can never pass silently.
 *
 * Link tests/fixture.c.  Every function here either succeeds or bails,
 * except fixture_host, whose result a test may assert on.  None of them
 * counts a TAP assertion: the counters live in each test's own tap.h.
 */
#ifndef EMH_TESTS_FIXTURE_H
#define EMH_TESTS_FIXTURE_H

#include <pthread.h>
#include <stddef.h>

#include <emhost/emhost.h>

typedef struct fixture {
	char dir[64];          /* the temporary directory; fixture_release removes it */
	char plugin_dir[1024]; /* $EMH_BUILDDIR/plugins-build */
	int log_level;         /* of the hosts fixture_host makes (EMH_LOG_WARN) */
} fixture;

/*
 * Make a fresh directory /tmp/emh-TAG-XXXXXX and find the build's plugins
 * ($EMH_BUILDDIR, set by make check).  Bails when either fails.
 */
void fixture_init(fixture *fx, const char *tag);

/* Remove the directory and everything in it (free the hosts using it first). */
void fixture_release(fixture *fx);

/* "<dir>/<name>" into buf; bails when it does not fit. */
void fixture_path(const fixture *fx, const char *name, char *buf, size_t cap);

/*
 * A host loading the build's plugins, configured only by envp (NULL means
 * no variables at all, never the process environment).  Returns
 * emh_host_new's status, *out NULL on failure: for tests that assert on it.
 */
int fixture_host(const fixture *fx, const char *const *envp, emh_host **out, emh_error *err);

/*
 * A host whose default context is the SQLite file <dir>/<db>
 * (EMH_CONTEXT_DEFAULT_URL), plus the NULL-terminated extra_env variables,
 * with the NULL-terminated entities registered on the default context.
 * Bails when any of it fails.  The caller frees the host.
 */
emh_host *fixture_sqlite_host(const fixture *fx, const char *db, const char *const *extra_env,
			      const emh_entity *const *entities);

/* Setup that must work: each bails with the call, the context and the error. */
void fixture_register(emh_host *h, const char *ctx, const emh_entity *e);
void fixture_sync(emh_host *h, const char *ctx);
emh_em *fixture_fork(emh_host *h, const char *ctx);
/* Run text on a fork of ctx (emh_em_execute), closed after: its status, err filled. */
int fixture_exec(emh_host *h, const char *ctx, const char *text, emh_error *err);
emh_repo *fixture_repo(emh_em *em, const emh_entity *e);
emh_query *fixture_query(emh_repo *r);
void *fixture_new(emh_repo *r);
void fixture_thread(pthread_t *t, void *(*fn)(void *), void *arg);
/* CLOCK_MONOTONIC in milliseconds: how long a call took, in the tests that bound it. */
double fixture_now_ms(void);
/* The introspection record of context name (its numbers and state; the
 * string members are not kept: NULL); bails when it is not listed. */
emh_context_info fixture_context_info(emh_host *h, const char *name);
/* emh_host_ping(h, ctx) made while the process is out of file descriptors:
 * the soft RLIMIT_NOFILE lowered to just above the highest open one and the
 * few left taken; everything is restored before it returns.  Bails when the
 * limit cannot be lowered or descriptors keep opening under it. */
int fixture_ping_without_fds(emh_host *h, const char *ctx, emh_error *err);

#endif
