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

/* cf_concurrency.c: versions, row locks, conditional writes, retried transactions, refresh, isolation. */
void cf_concurrency(const cf_ctx *cx);

#endif
