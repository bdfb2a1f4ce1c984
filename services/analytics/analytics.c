/* SPDX-License-Identifier: MIT */
/*
 * services/analytics/analytics.c: the `analytics` service, events in the
 * context it knows as "analytics" (remap it per deployment).
 *
 *   POST /analytics/events   {"user_id","type"} -> 201 + the event
 *   GET  /analytics/events?user_id=&limit=&offset= -> 200 {"events":[...],"total":n,...}
 *   GET  /analytics/counts                        -> 200 {"counts":{type:n},"total":n}
 */
#include "config.h"

#include <emhost/emhost.h>
#include <emhost/service.h>
#include <emhost/web.h>

#include "../common/entities.h"

enum { NEED_EVENTS };
static const emh_need analytics_needs[] = {
	[NEED_EVENTS] = EMH_NEED_REPO(&event_entity, "analytics"),
};

static int events_create(emh_scope *s, const emh_request *req, emh_response *res, emh_error *err)
{
	emh_repo *r;
	event *e;
	int rc;
	if ((rc = emh_scope_repo_at(s, NEED_EVENTS, &r, err)) || (rc = emh_repo_new(r, (void **)&e, err)) ||
	    (rc = emh_web_read_body(req, emh_repo_em(r), &event_entity, e, EMH_JSON_IGNORE_UNKNOWN, res, err)))
		return rc;
	if (e->user_id <= 0)
		return emh_error_set(err, EMH_EINVAL, "'user_id' must be positive");
	e->created_at = emh_web_now();
	if ((rc = emh_web_flush(emh_repo_em(r), err)))
		return rc;
	return emh_web_reply_object(res, 201, emh_repo_em(r), &event_entity, e, 0, err);
}

static int events_list(emh_scope *s, const emh_request *req, emh_response *res, emh_error *err)
{
	emh_repo *r;
	emh_query *q;
	int64_t user_id;
	int rc;
	if ((rc = emh_web_arg_int64(req, "user_id", 0, 0, INT64_MAX / 2, &user_id, err)) ||
	    (rc = emh_scope_repo_at(s, NEED_EVENTS, &r, err)) || (rc = emh_em_set_readonly(emh_repo_em(r), err)) ||
	    (rc = emh_repo_query(r, &q, err)))
		return rc;
	if (emh_request_arg(req, "user_id"))
		emh_q_where(q, emh_q_eq(q, "user_id", emh_v_int64(user_id)));
	emh_q_order_by(q, "id", false);
	return emh_web_list(r, q, req, &(emh_web_list_opts){.default_limit = 100, .items_key = "events"}, res, err);
}

/* Add n to the count of type in counts. */
static void count_add(json_t *counts, const char *type, int64_t n)
{
	json_t *have = json_object_get(counts, type);
	json_object_set_new(counts, type, json_integer(have ? json_integer_value(have) + n : n));
}

/*
 * Count per type: one aggregate (GROUP BY type, or a $group pipeline), so
 * the service holds one row per type whatever the number of events.  A
 * context whose driver has no aggregates is read through an iterator
 * instead: one page at a time, constant memory too.
 */
static int events_counts(emh_scope *s, const emh_request *req, emh_response *res, emh_error *err)
{
	emh_repo *repo;
	int rc = emh_scope_repo_at(s, NEED_EVENTS, &repo, err);
	if (rc)
		return rc;
	json_t *counts = json_object();
	int64_t total = 0;
	emh_agg *a;
	emh_rows *rows;
	if ((rc = emh_repo_agg(repo, &a, err)))
		goto out_counts;
	emh_agg_group_by(a, "type");
	emh_agg_count(a, "n");
	rc = emh_repo_aggregate(repo, NULL, a, &rows, err);
	if (rc == 0) {
		for (size_t i = 0; i < emh_rows_count(rows); i++) {
			const emh_value *type = emh_rows_value(rows, i, 0), *n = emh_rows_value(rows, i, 1);
			count_add(counts, type->is_null ? "" : type->u.s.ptr, n->u.i64);
			total += n->u.i64;
		}
	} else if (rc == EMH_EUNSUPPORTED) {
		emh_iter *it;
		void *obj;
		if ((rc = emh_repo_iter(repo, NULL, &it, err)) != 0)
			goto out_counts;
		while ((rc = emh_iter_next(it, &obj, err)) == 1) {
			const event *e = obj;
			count_add(counts, e->type ? e->type : "", 1);
			total++;
		}
		emh_iter_close(it);
	}
out_counts:
	if (rc) {
		json_decref(counts);
		return rc;
	}
	return emh_web_reply_json(res, 200, json_pack("{s:o,s:I}", "counts", counts, "total", (json_int_t)total), err);
}

static const emh_route analytics_routes[] = {
	EMH_ROUTE_DOC("POST", "/events", events_create, .summary = "record an event", .body = &event_entity,
		      .reply = &event_entity, .flags = EMH_ROUTE_CREATED),
	EMH_ROUTE_DOC("GET", "/events", events_list, .summary = "list events (?user_id=)", .reply = &event_entity,
		      .flags = EMH_ROUTE_LIST, .items_key = "events"),
	EMH_ROUTE_DOC("GET", "/counts", events_counts, .summary = "events counted by type"),
};

EMH_SERVICE_EXPORT const emh_service emh_service_descriptor = {
	EMH_SERVICE_HEADER,
	.name = "analytics",
	.version = "1.0",
	.description = "analytics: record events and count them (context 'analytics')",
	.needs = analytics_needs,
	.nneeds = EMH_NEEDS_COUNT(analytics_needs),
	.routes = analytics_routes,
	.nroutes = EMH_ROUTES_COUNT(analytics_routes),
};
