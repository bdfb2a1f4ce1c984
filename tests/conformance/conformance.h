/* SPDX-License-Identifier: MIT */
/*
 * tests/conformance/conformance.h: what emh-conformance.c (the suite's main,
 * its set-up and first cases) hands to the suite's other files, one topic
 * each (cf_<topic>.c): the suite's state and its helpers.  Every file is
 * built with EMH_TAP_SHARED, so the TAP count is the program's;
 * emh-conformance.c owns it.
 */
#ifndef EMH_TESTS_CONFORMANCE_H
#define EMH_TESTS_CONFORMANCE_H

#include <stdbool.h>
#include <stdint.h>

#include <emhost/driver.h> /* EMH_CAP_* */
#include <emhost/emhost.h>

#include "tap.h"

enum { T_ALL, T_Q, T_USER, T_KV, T_THR, T_UNREG, T__N };

/* Everything the cases share: the context under test, set up and
 * reachable, and the suite's entities; one per run, passed around
 * explicitly. */
typedef struct suite {
	emh_host *h;
	char ctx[128];    /* the context's name */
	char driver[64];  /* its driver's name, for messages */
	uint64_t caps;    /* emh_em_caps on it */
	char capstr[256]; /* the same, as emh_caps_string writes it */
	bool sql;
	bool no_native; /* --no-native-codes */
	bool have_other;
	long pid; /* tables are named conf_<pid>_<name>; emh_host_drop_schema drops them */
	char tables[T__N][64];
	emh_entity e[T__N];
	unsigned char *big; /* BIG_BLOB bytes */
	char *longtxt;      /* 1000 characters */
} suite;

/* "EMH_OK" or the status's name. */
const char *st_name(int rc);
/* The error of rc as diagnostics. */
void diag_err(int rc, const emh_error *err);
/* ok(rc == want) with the error's code name and message as diagnostics. */
int expect_rc(int rc, int want, const emh_error *err, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
#define OK_RC(rc, err, ...) expect_rc((rc), EMH_OK, &(err), __VA_ARGS__)

/*
 * A case that cannot run on this context, printed as a passing test with a
 * SKIP directive and its reason ("# SKIP not applicable: why"), so that no
 * case disappears silently.
 */
void na(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A fork of ctx (NULL: the context under test), a repository, a query; bail on failure. */
emh_em *xfork(suite *s, const char *ctx);
emh_repo *xrepo(emh_em *em, const emh_entity *e);
emh_query *xquery(emh_repo *r);

/* cf_query.c: aggregates, iterators, pages, global filters. */
void cf_query(suite *s);
/* cf_concurrency.c: versions, row locks, conditional writes, retried transactions, refresh, isolation. */
void cf_concurrency(const suite *cx);

#endif
