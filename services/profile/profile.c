/* SPDX-License-Identifier: MIT */
/*
 * services/profile/profile.c: the `profile` service, one read across two
 * contexts: the user from the default context and their events from
 * "analytics".  The user declares the relation (has_many events by
 * user_id), so the events come with one query in the analytics context,
 * through the scope's fork of it (never a join: the databases may be of
 * different kinds).
 *
 *   GET /profile/<id> -> 200 {"user":{...},"events":[...],"event_count":n,
 *                            "recent_counts":{type:n}} | 404
 */
#include "config.h"

#include <emhost/emhost.h>
#include <emhost/service.h>
#include <emhost/web.h>

#include "../common/entities.h"

/* Users with their events: the relation resolves to NEED_EVENTS's context
 * (a remap of "analytics" moves it along) when the service loads. */
static const emh_field profile_user_fields[] = {
	USER_COLUMNS,
	EMH_HAS_MANY(user, events, &event_entity, "user_id", 0),
};
static const emh_entity profile_user_entity = EMH_ENTITY(user, "users", profile_user_fields);

enum { NEED_USERS, NEED_EVENTS };
static const emh_need profile_needs[] = {
	[NEED_USERS] = EMH_NEED_REPO(&profile_user_entity, NULL),
	[NEED_EVENTS] = EMH_NEED_REPO(&event_entity, "analytics"),
};

#define PROFILE_EVENTS_MAX 100

static int profile_get(emh_scope *scope, const emh_request *req, emh_response *res, emh_error *err)
{
	int64_t id = emh_request_param_int64(req, "id");
	emh_repo *users, *events;
	user *u;
	int rc;
	if ((rc = emh_scope_repo_at(scope, NEED_USERS, &users, err)) ||
	    (rc = emh_scope_repo_at(scope, NEED_EVENTS, &events, err)) ||
	    (rc = emh_em_set_readonly(emh_repo_em(users), err)) ||
	    (rc = emh_em_set_readonly(emh_repo_em(events), err)))
		return rc;
	if ((rc = emh_repo_get(users, emh_v_int64(id), (void **)&u, err)) == EMH_ENOTFOUND) {
		emh_error_set(err, rc, "no user %lld", (long long)id);
		return emh_error_context(err, rc, emh_em_context(emh_repo_em(users)));
	}
	void *obj = u;
	if (rc || (rc = emh_em_load(emh_repo_em(users), &obj, 1, "events", err)))
		return rc;
	/* the newest first (the list is ordered by key), at most PROFILE_EVENTS_MAX */
	const emh_list *list = &u->events;
	json_t *arr = json_array(), *counts = json_object();
	for (size_t i = list->count; i-- > 0 && list->count - i <= PROFILE_EVENTS_MAX;) {
		const event *e = list->items[i];
		const char *type = e->type ? e->type : "";
		json_array_append_new(arr, emh_json_from_object(emh_repo_em(events), &event_entity, e, 0));
		json_t *n = json_object_get(counts, type);
		json_object_set_new(counts, type, json_integer(n ? json_integer_value(n) + 1 : 1));
	}
	json_t *j = json_pack("{s:o,s:o,s:I,s:o}", "user", emh_json_from_object(emh_repo_em(users), &user_entity, u, 0),
			      "events", arr, "event_count", (json_int_t)list->count, "recent_counts", counts);
	return emh_web_reply_json(res, 200, j, err);
}

static const emh_route profile_routes[] = {
	EMH_ROUTE_DOC("GET", "/:id", profile_get, .summary = "a user with their recent events"),
};

EMH_SERVICE_EXPORT const emh_service emh_service_descriptor = {
	EMH_SERVICE_HEADER,
	.name = "profile",
	.version = "1.0",
	.description = "profile: a user (default context) with their events (context 'analytics')",
	.needs = profile_needs,
	.nneeds = EMH_NEEDS_COUNT(profile_needs),
	.routes = profile_routes,
	.nroutes = EMH_ROUTES_COUNT(profile_routes),
};
