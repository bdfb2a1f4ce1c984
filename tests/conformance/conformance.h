/* SPDX-License-Identifier: MIT */
/*
 * tests/conformance/conformance.h: what emh-conformance.c (the suite's main,
 * its set-up and first cases) hands to the suite's other files, one topic
 * each (cf_<topic>.c).  Every file is built with EMH_TAP_SHARED, so the TAP
 * count is the program's; emh-conformance.c owns it.
 */
#ifndef EMH_TESTS_CONFORMANCE_H
#define EMH_TESTS_CONFORMANCE_H

#include <stdbool.h>
#include <stdint.h>

#include <emhost/driver.h> /* EMH_CAP_* */
#include <emhost/emhost.h>

#include "tap.h"

/* The context under test, set up and reachable. */
typedef struct cf_ctx {
	emh_host *h;
	const char *ctx;    /* its name */
	const char *driver; /* its driver's name, for messages */
	uint64_t caps;      /* emh_em_caps on it */
	const char *capstr; /* the same, as emh_caps_string writes it */
	long pid;           /* tables are named conf_<pid>_<name>; emh_host_drop_schema drops them */
} cf_ctx;

/* ok(rc == want) with the error's code name and message as diagnostics. */
int expect_rc(int rc, int want, const emh_error *err, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
#define OK_RC(rc, err, ...) expect_rc((rc), EMH_OK, &(err), __VA_ARGS__)

/*
 * A case that cannot run on this context, printed as a passing test with a
 * SKIP directive and its reason ("# SKIP not applicable: why"), so that no
 * case disappears silently.
 */
void na(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* cf_concurrency.c: versions, row locks, conditional writes, retried transactions, refresh, isolation. */
void cf_concurrency(const cf_ctx *cx);

#endif
