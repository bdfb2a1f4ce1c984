/* SPDX-License-Identifier: MIT */
/*
 * tests/migrate/fxm_service.c: a service module registering one entity, in
 * two versions (tests/migrate/local.mk builds this file twice), so that the
 * schema diff test can change the entity between runs:
 *
 *   FXM_V1  mig_things: id (generated key), title, email (unique, nullable),
 *           created (indexed timestamp)
 *   FXM_V2  the same plus score (int32, NOT NULL) and an index on title
 */
#include "config.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <emhost/emhost.h>
#include <emhost/service.h>

typedef struct fxm_thing {
	int64_t id;
	const char *title;
	const char *email;
	emh_time created;
	int32_t score;
} fxm_thing;

static const emh_field fxm_fields[] = {
	EMH_FIELD(fxm_thing, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(fxm_thing, title, EMH_T_TEXT, 0),
	EMH_FIELD(fxm_thing, email, EMH_T_TEXT, EMH_F_UNIQUE | EMH_F_NULLABLE),
	EMH_FIELD(fxm_thing, created, EMH_T_TIMESTAMP, EMH_F_INDEXED),
#if defined(FXM_V2)
	EMH_FIELD(fxm_thing, score, EMH_T_INT32, 0),
#endif
};

#if defined(FXM_V2)
static const char *const fxm_by_title[] = {"title", NULL};
static const emh_index fxm_indexes[] = {{"mig_things_title_ix", fxm_by_title, false}};
static const emh_entity fxm_entity = EMH_ENTITY_IDX(fxm_thing, "mig_things", fxm_fields, fxm_indexes);
#else
static const emh_entity fxm_entity = EMH_ENTITY(fxm_thing, "mig_things", fxm_fields);
#endif

static const emh_need fxm_needs[] = {EMH_NEED_REPO(&fxm_entity, NULL)};

/* Any request: the number of things, as text (a fork of the context: refused when it is). */
static int fxm_handle(emh_scope *scope, const emh_request *req, emh_response *res, emh_error *err)
{
	emh_repo *r;
	int64_t n;
	char buf[32];
	(void)req;
	int rc = emh_scope_repo_at(scope, 0, &r, err);
	if (!rc)
		rc = emh_repo_count(r, NULL, &n, err);
	if (rc)
		return rc;
	int len = snprintf(buf, sizeof buf, "%lld", (long long)n);
	return emh_response_set(res, 200, "text/plain", buf, (size_t)len, err);
}

EMH_SERVICE_EXPORT const emh_service emh_service_descriptor = {
	EMH_SERVICE_HEADER,
	.name = "things",
	.version = "1.0",
	.needs = fxm_needs,
	.nneeds = EMH_NEEDS_COUNT(fxm_needs),
	.handle = fxm_handle,
};
