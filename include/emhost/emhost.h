/* SPDX-License-Identifier: MIT */
/* emhost/emhost.h: umbrella header for applications. */
#ifndef EMHOST_EMHOST_H
#define EMHOST_EMHOST_H

#include <emhost/error.h>
#include <emhost/entity.h>
#include <emhost/query.h>
#include <emhost/host.h>
#include <emhost/em.h>
#include <emhost/service.h>
#include <emhost/migrate.h>
#include <emhost/version.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The version of the library the program runs with, as "0.1.0" (static
 * storage, never freed).  EMH_VERSION_STRING is the version of the headers
 * it was compiled with; the two differ only when a program built against
 * one release runs with another.  Thread-safe.
 */
const char *emh_version(void);

#ifdef __cplusplus
}
#endif

#endif
