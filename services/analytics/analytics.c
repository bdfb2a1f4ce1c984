/* SPDX-License-Identifier: MIT */
/*
 * services/analytics/analytics.c: the `analytics` service, events in the
 * context it knows as "analytics" (remap it per deployment).
 *
 *   POST /analytics/events   {"user_id","type"} -> 201 + the event
 *   GET  /analytics/events?user_id=&limit=&offset= -> 200 {"events":[...]}
 *   GET  /analytics/counts                        -> 200 {"counts":{type:n},"total":n}
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include <emhost/emhost.h>
#include <emhost/service.h>

#include "../common/entities.h"
#include "../common/svc.h"

enum { NEED_EVENTS };
static const emh_need analytics_needs[] = {
	[NEED_EVENTS] = EMH_NEED_REPO(&event_entity, "analytics"),
};

#define TYPE_MAX 64

static json_t *event_json(const event *e)
{
	return json_pack("{s:o,s:o,s:s,s:o}", "id", svc_json_int(e->id), "user_id", svc_json_int(e->user_id),
			 "type", e->type ? e->type : "", "created_at", svc_json_time(e->created_at));
}

static int events_create(emh_repo *repo, const emh_request *req, emh_response *res, emh_error *err)
{
	json_t *body;
	const char *type;
	int64_t user_id;
	event *e;
	int rc = svc_body_object(req, &body, err);
	if (rc)
		return rc;
	if ((rc = svc_member_int(body, "user_id", true, &user_id, NULL, err)) ||
	    (rc = svc_member_string(body, "type", true, &type, err)))
		goto out_body;
	if (user_id <= 0 || strlen(type) > TYPE_MAX) {
		rc = emh_error_set(err, EMH_EINVAL, "'user_id' must be positive and 'type' at most %d bytes", TYPE_MAX);
		goto out_body;
	}
	emh_em *em = emh_repo_em(repo);
	if ((rc = emh_repo_new(repo, (void **)&e, err)))
		goto out_body;
	e->user_id = user_id;
	e->created_at = svc_now();
	if (!(e->type = emh_em_strdup(em, type))) {
		rc = emh_error_set(err, EMH_ENOMEM, "out of memory");
		goto out_body;
	}
	if ((rc = svc_flush(em, err)))
		goto out_body;
	rc = svc_reply_json(res, 201, event_json(e), err);
out_body:
	json_decref(body);
	return rc;
}

static int events_list(emh_repo *repo, const emh_request *req, emh_response *res, emh_error *err)
{
	int64_t user_id, limit, offset;
	int rc;
	if ((rc = svc_arg_int(req, "user_id", 0, INT64_MAX / 2, &user_id, err)) ||
	    (rc = svc_arg_int(req, "limit", 100, 1000, &limit, err)) ||
	    (rc = svc_arg_int(req, "offset", 0, INT64_MAX / 2, &offset, err)))
		return rc;
	if ((rc = emh_em_set_readonly(emh_repo_em(repo), err)))
		return rc;
	emh_query *q;
	emh_list list;
	if ((rc = emh_repo_query(repo, &q, err)))
		return rc;
	if (emh_request_arg(req, "user_id"))
		emh_q_where(q, emh_q_eq(q, "user_id", emh_v_int64(user_id)));
	emh_q_order_by(q, "id", false);
	emh_q_limit(q, limit);
	emh_q_offset(q, offset);
	if ((rc = emh_repo_find(repo, q, &list, err)))
		return rc;
	json_t *arr = json_array();
	for (size_t i = 0; i < list.count; i++)
		json_array_append_new(arr, event_json(list.items[i]));
	return svc_reply_json(res, 200, json_pack("{s:o}", "events", arr), err);
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
static int events_counts(emh_repo *repo, emh_response *res, emh_error *err)
{
	json_t *counts = json_object();
	int64_t total = 0;
	emh_agg *a;
	emh_rows *rows;
	int rc = emh_repo_agg(repo, &a, err);
	if (rc)
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
	return svc_reply_json(res, 200, json_pack("{s:o,s:o}", "counts", counts, "total", svc_json_int(total)), err);
}

static int analytics_handle(emh_scope *scope, const emh_request *req, emh_response *res, emh_error *err)
{
	emh_repo *repo;
	int rc;
	const char *m = req->method;
	if (strcmp(req->path, "/events") == 0 || strcmp(req->path, "/events/") == 0) {
		if (strcmp(m, "POST") != 0 && strcmp(m, "GET") != 0)
			return svc_reply_method(res, req, "GET, POST", err);
		if ((rc = emh_scope_repo_at(scope, NEED_EVENTS, &repo, err)))
			return rc;
		return strcmp(m, "POST") == 0 ? events_create(repo, req, res, err) : events_list(repo, req, res, err);
	}
	if (strcmp(req->path, "/counts") == 0) {
		if (strcmp(m, "GET") != 0)
			return svc_reply_method(res, req, "GET", err);
		if ((rc = emh_scope_repo_at(scope, NEED_EVENTS, &repo, err)))
			return rc;
		return events_counts(repo, res, err);
	}
	char path[256];
	return emh_error_set(err, EMH_ENOTFOUND, "no route /analytics%s: use /analytics/events or /analytics/counts",
			     emh_text_clean(req->path, path, sizeof path));
}

EMH_SERVICE_EXPORT const emh_service emh_service_descriptor = {
	EMH_SERVICE_HEADER,
	.name = "analytics",
	.version = "1.0",
	.description = "analytics: record events and count them (context 'analytics')",
	.needs = analytics_needs,
	.nneeds = EMH_NEEDS_COUNT(analytics_needs),
	.handle = analytics_handle,
};
