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

#include <string.h>

#include <emhost/emhost.h>
#include <emhost/service.h>

#include "../common/entities.h"
#include "../common/svc.h"

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

static int profile_handle(emh_scope *scope, const emh_request *req, emh_response *res, emh_error *err)
{
	int64_t id;
	if (!svc_path_id(req->path, "/", &id)) {
		char path[256];
		return emh_error_set(err, EMH_ENOTFOUND, "no route /profile%s: use /profile/<user id>",
				     emh_text_clean(req->path, path, sizeof path));
	}
	if (strcmp(req->method, "GET") != 0)
		return svc_reply_method(res, req, "GET", err);
	emh_repo *users, *events;
	int rc;
	if ((rc = emh_scope_repo_at(scope, NEED_USERS, &users, err)) ||
	    (rc = emh_scope_repo_at(scope, NEED_EVENTS, &events, err)) ||
	    (rc = emh_em_set_readonly(emh_repo_em(users), err)) ||
	    (rc = emh_em_set_readonly(emh_repo_em(events), err)))
		return rc;
	user *u;
	rc = emh_repo_get(users, emh_v_int64(id), (void **)&u, err);
	if (rc == EMH_ENOTFOUND) {
		emh_error_set(err, rc, "no user %lld", (long long)id);
		return emh_error_context(err, rc, emh_em_context(emh_repo_em(users)));
	}
	if (rc)
		return rc;
	void *obj = u;
	if ((rc = emh_em_load(emh_repo_em(users), &obj, 1, "events", err)))
		return rc;
	/* the newest first (the list is ordered by key), at most PROFILE_EVENTS_MAX */
	const emh_list *list = &u->events;
	json_t *arr = json_array(), *counts = json_object();
	for (size_t i = list->count; i-- > 0 && list->count - i <= PROFILE_EVENTS_MAX;) {
		const event *e = list->items[i];
		const char *type = e->type ? e->type : "";
		json_array_append_new(arr, json_pack("{s:o,s:s,s:o}", "id", svc_json_int(e->id), "type", type,
						     "created_at", svc_json_time(e->created_at)));
		json_t *n = json_object_get(counts, type);
		json_object_set_new(counts, type, json_integer(n ? json_integer_value(n) + 1 : 1));
	}
	int64_t total = (int64_t)list->count;
	json_t *j = json_pack("{s:{s:o,s:s,s:s},s:o,s:o,s:o}", "user", "id", svc_json_int(u->id), "name",
			      u->name ? u->name : "", "email", u->email ? u->email : "", "events", arr,
			      "event_count", svc_json_int(total), "recent_counts", counts);
	return svc_reply_json(res, 200, j, err);
}

EMH_SERVICE_EXPORT const emh_service emh_service_descriptor = {
	EMH_SERVICE_HEADER,
	.name = "profile",
	.version = "1.0",
	.description = "profile: a user (default context) with their events (context 'analytics')",
	.needs = profile_needs,
	.nneeds = EMH_NEEDS_COUNT(profile_needs),
	.handle = profile_handle,
};
