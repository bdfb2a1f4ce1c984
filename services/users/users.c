/* SPDX-License-Identifier: MIT */
/*
 * services/users/users.c: the `users` service, CRUD over one entity in the
 * default context.
 *
 *   POST   /users            {"name","email"} -> 201 + the user with its id
 *   GET    /users?limit=&offset=               -> 200 {"users":[...]}
 *   GET    /users/<id>                          -> 200 user | 404
 *   PUT    /users/<id>       {"name"?,"email"?} -> 200 user | 404 | 409
 *   DELETE /users/<id>                          -> 204 | 404
 *
 * A duplicate email is the database's unique constraint, surfacing as
 * EMH_ECONFLICT from any driver: 409.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include <emhost/emhost.h>
#include <emhost/service.h>

#include "../common/entities.h"
#include "../common/svc.h"

/* Needs, by index: the users repository of the default context. */
enum { NEED_USERS };
static const emh_need users_needs[] = {
	[NEED_USERS] = EMH_NEED_REPO(&user_entity, NULL),
};

static json_t *user_json(const user *u)
{
	return json_pack("{s:o,s:s,s:s}", "id", svc_json_int(u->id), "name", u->name ? u->name : "", "email",
			 u->email ? u->email : "");
}

/* A conflict names the email, not the database's constraint text. */
static int users_flush(emh_em *em, const char *email, emh_error *err)
{
	int rc = svc_flush(em, err);
	if (rc == EMH_ECONFLICT) {
		emh_error_set(err, rc, "a user with email '%s' already exists", email ? email : "");
		emh_error_context(err, rc, emh_em_context(em));
	}
	return rc;
}

static int users_create(emh_repo *repo, const emh_request *req, emh_response *res, emh_error *err)
{
	json_t *body;
	const char *name, *email;
	user *u;
	int rc = svc_body_object(req, &body, err);
	if (rc)
		return rc;
	if ((rc = svc_member_string(body, "name", true, &name, err)) ||
	    (rc = svc_member_string(body, "email", true, &email, err)))
		goto out_body;
	if (!strchr(email, '@')) {
		rc = emh_error_set(err, EMH_EINVAL, "member 'email' must be an email address");
		goto out_body;
	}
	emh_em *em = emh_repo_em(repo);
	if ((rc = emh_repo_new(repo, (void **)&u, err)))
		goto out_body;
	u->name = emh_em_strdup(em, name);
	u->email = emh_em_strdup(em, email);
	if (!u->name || !u->email) {
		rc = emh_error_set(err, EMH_ENOMEM, "out of memory");
		goto out_body;
	}
	if ((rc = users_flush(em, email, err)))
		goto out_body;
	char location[64];
	snprintf(location, sizeof location, "/users/%lld", (long long)u->id);
	if ((rc = svc_reply_json(res, 201, user_json(u), err)) == 0)
		rc = emh_response_add_header(res, "Location", location, err);
out_body:
	json_decref(body);
	return rc;
}

static int users_list(emh_repo *repo, const emh_request *req, emh_response *res, emh_error *err)
{
	int64_t limit, offset;
	int rc;
	if ((rc = svc_arg_int(req, "limit", 20, 1000, &limit, err)) ||
	    (rc = svc_arg_int(req, "offset", 0, INT64_MAX / 2, &offset, err)))
		return rc;
	if ((rc = emh_em_set_readonly(emh_repo_em(repo), err)))
		return rc;
	emh_query *q;
	emh_list list;
	if ((rc = emh_repo_query(repo, &q, err)))
		return rc;
	emh_q_order_by(q, "id", false);
	emh_q_limit(q, limit);
	emh_q_offset(q, offset);
	if ((rc = emh_repo_find(repo, q, &list, err)))
		return rc;
	json_t *arr = json_array();
	for (size_t i = 0; i < list.count; i++)
		json_array_append_new(arr, user_json(list.items[i]));
	return svc_reply_json(res, 200,
			      json_pack("{s:o,s:o,s:o}", "users", arr, "limit", svc_json_int(limit), "offset",
					svc_json_int(offset)),
			      err);
}

static int users_get(emh_repo *repo, int64_t id, user **out, emh_error *err)
{
	int rc = emh_repo_get(repo, emh_v_int64(id), (void **)out, err);
	if (rc == EMH_ENOTFOUND) {
		emh_error_set(err, rc, "no user %lld", (long long)id);
		return emh_error_context(err, rc, emh_em_context(emh_repo_em(repo)));
	}
	return rc;
}

static int users_update(emh_repo *repo, int64_t id, const emh_request *req, emh_response *res, emh_error *err)
{
	json_t *body;
	const char *name, *email;
	user *u;
	int rc = svc_body_object(req, &body, err);
	if (rc)
		return rc;
	if ((rc = svc_member_string(body, "name", false, &name, err)) ||
	    (rc = svc_member_string(body, "email", false, &email, err)))
		goto out_body;
	if (!name && !email) {
		rc = emh_error_set(err, EMH_EINVAL, "nothing to update: give 'name' and/or 'email'");
		goto out_body;
	}
	if (email && !strchr(email, '@')) {
		rc = emh_error_set(err, EMH_EINVAL, "member 'email' must be an email address");
		goto out_body;
	}
	if ((rc = users_get(repo, id, &u, err)))
		goto out_body;
	emh_em *em = emh_repo_em(repo);
	if (name && !(u->name = emh_em_strdup(em, name)))
		rc = emh_error_set(err, EMH_ENOMEM, "out of memory");
	if (email && !(u->email = emh_em_strdup(em, email)))
		rc = emh_error_set(err, EMH_ENOMEM, "out of memory");
	if (rc || (rc = users_flush(em, email, err)))
		goto out_body;
	rc = svc_reply_json(res, 200, user_json(u), err);
out_body:
	json_decref(body);
	return rc;
}

static int users_handle(emh_scope *scope, const emh_request *req, emh_response *res, emh_error *err)
{
	emh_repo *repo;
	user *u;
	int64_t id;
	int rc;
	bool collection = strcmp(req->path, "") == 0 || strcmp(req->path, "/") == 0;
	bool item = !collection && svc_path_id(req->path, "/", &id);
	if (!collection && !item) {
		char path[256];
		return emh_error_set(err, EMH_ENOTFOUND, "no route /users%s: use /users or /users/<id>",
				     emh_text_clean(req->path, path, sizeof path));
	}
	const char *m = req->method;
	if (collection && strcmp(m, "POST") != 0 && strcmp(m, "GET") != 0)
		return svc_reply_method(res, req, "GET, POST", err);
	if (item && strcmp(m, "GET") != 0 && strcmp(m, "PUT") != 0 && strcmp(m, "DELETE") != 0)
		return svc_reply_method(res, req, "GET, PUT, DELETE", err);
	if ((rc = emh_scope_repo_at(scope, NEED_USERS, &repo, err)))
		return rc;
	if (collection)
		return strcmp(m, "POST") == 0 ? users_create(repo, req, res, err) : users_list(repo, req, res, err);
	if (strcmp(m, "PUT") == 0)
		return users_update(repo, id, req, res, err);
	if (strcmp(m, "GET") == 0) {
		if ((rc = emh_em_set_readonly(emh_repo_em(repo), err)) || (rc = users_get(repo, id, &u, err)))
			return rc;
		return svc_reply_json(res, 200, user_json(u), err);
	}
	if ((rc = users_get(repo, id, &u, err)) || (rc = emh_repo_remove(repo, u, err)))
		return rc;
	return emh_response_set(res, 204, NULL, NULL, 0, err);
}

EMH_SERVICE_EXPORT const emh_service emh_service_descriptor = {
	EMH_SERVICE_HEADER,
	.name = "users",
	.version = "1.0",
	.description = "users: create, read, list, update and delete users (default context)",
	.needs = users_needs,
	.nneeds = EMH_NEEDS_COUNT(users_needs),
	.handle = users_handle,
};
