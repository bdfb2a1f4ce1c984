/* SPDX-License-Identifier: MIT */
/*
 * core/service_int.h: what the services layer's files share (never
 * installed): the loaded service and the services object (service.c), which
 * scopes (scope.c) read.
 */
#ifndef EMH_CORE_SERVICE_INT_H
#define EMH_CORE_SERVICE_INT_H

#include <stdio.h>
#include <string.h>

#include <emhost/service.h>

#include "internal.h"

/* First word of an emh_services: tells one from a host handed in its place
 * by a caller of the 1.0 emh_scope_open(emh_host *, ...). */
#define EMH__SERVICES_MAGIC 0x53565353u /* "SSVS" */

typedef struct emh__svc_need {
	const char *declared;     /* the module's context name, NULL = default (the module's string) */
	const emh_entity *entity; /* as declared: what the module asks with, a key in the context */
	const emh_entity *reg;    /* the host's copy in that context; NULL for an EM-only need */
	size_t ctx;               /* index into emh_svc.ctx */
} emh__svc_need;

/* A relation of an entity the service registered, and the context (index
 * into emh_svc.ctx) its target resolved to when the service loaded. */
typedef struct emh__svc_rel {
	const struct emh__rel *rel; /* the meta's relation (lives with the context) */
	size_t ctx;
} emh__svc_rel;

/* A service's route patterns, parsed when it loads (route.c). */
typedef struct emh__routes emh__routes;

struct emh_svc {
	emh_services *owner;
	emh_host *host;
	char *name;
	char *file;
	void *dl; /* NULL for a static service */
	emh_service desc;
	emh__routes *routes; /* desc.routes parsed (emh__routes_compile) */
	void *state;
	bool inited; /* init succeeded, or the service has none: fini is called at its end */
	emh__svc_need *needs;
	size_t nneeds;
	char **ctx; /* distinct contexts of this host the needs resolved to */
	size_t nctx;
	emh__svc_rel *rels; /* the relations of its entities, resolved at load */
	size_t nrels;
	_Atomic bool xtx_warned; /* a scope had transactions open on two contexts (logged once) */
	emh__settings settings;
};

struct emh_services {
	uint32_t magic; /* EMH__SERVICES_MAGIC while alive */
	emh_host *host;
	pthread_mutex_t add_mu; /* serialises adding (registration may do I/O) */
	pthread_rwlock_t lock;  /* v, n: lookups by emh_scope_open */
	emh_svc **v;            /* load order */
	size_t n, cap;
};

/* How errors name a declared context: NULL is "default". */
static inline const char *emh__declared_name(const char *declared) { return declared ? declared : "default"; }

/* Append s to buf (cap bytes) as a ", "-separated list item. */
static inline void emh__list_add(char *buf, size_t cap, const char *s)
{
	size_t n = strlen(buf);
	if (n + 1 < cap)
		snprintf(buf + n, cap - n, "%s%s", n ? ", " : "", s);
}

/* "default, analytics": the context names a descriptor declares, into buf. */
const char *emh__declared_list(const emh_service *d, char *buf, size_t cap);
/* The service mounted as name, or NULL.  s->lock held (either side). */
emh_svc *emh__services_find_locked(const emh_services *s, const char *name);

/* ---- route.c ---- */

/* Check the descriptor's route table (patterns, functions, shadowing pairs);
 * -1 with why naming the service and the route(s). */
int emh__routes_check(const emh_service *d, char *why, size_t cap);
/* The descriptor's route patterns (checked) parsed once; NULL: out of memory. */
emh__routes *emh__routes_compile(const emh_service *d);
void emh__routes_free(emh__routes *rs);
/* Match req against the service's routes and run the route (or handle, or
 * answer 405, or EMH_ENOTFOUND). */
int emh__routes_dispatch(emh_scope *scope, const emh_svc *svc, const emh_request *req, emh_response *res,
			 emh_error *err);

#endif
