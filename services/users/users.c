/* SPDX-License-Identifier: MIT */
/*
 * services/users/users.c: the `users` service, CRUD over one entity in the
 * default context, with declared routes and the toolkit (emhost/web.h).
 *
 *   POST   /users            {"name","email"} -> 201 + the user with its id
 *   GET    /users?limit=&offset=               -> 200 {"users":[...],"total":n,...}
 *   GET    /users/<id>                          -> 200 user | 404
 *   PUT    /users/<id>       {"name"?,"email"?} -> 200 user | 404 | 409
 *   DELETE /users/<id>                          -> 204 | 404
 *
 * A duplicate email is the database's unique constraint, surfacing as
 * EMH_ECONFLICT from any driver: 409, naming the email (any other conflict
 * is 409 in the database's words).  Members the service does not know
 * are ignored, as they always were.
 */
#include "config.h"

#include <string.h>

#include <emhost/emhost.h>
#include <emhost/service.h>
#include <emhost/web.h>

#include "../common/entities.h"

enum { NEED_USERS };
static const emh_need users_needs[] = {
	[NEED_USERS] = EMH_NEED_REPO(&user_entity, NULL),
};

/* The body of a user: the toolkit's checks, then an address that is one. */
static int read_user(const emh_request *req, emh_repo *r, user *u, unsigned flags, emh_response *res,
		     emh_error *err)
{
	const char *email = u->email;
	int rc = emh_web_read_body(req, emh_repo_em(r), &user_entity, u, flags | EMH_JSON_IGNORE_UNKNOWN, res, err);
	if (rc == 0 && u->email != email && !strchr(u->email, '@'))
		rc = emh_error_set(err, EMH_EINVAL, "member 'email' must be an email address");
	return rc;
}

/* Whether another user than u has u's email (u's own row may not exist: a failed insert). */
static bool email_taken(emh_repo *r, const user *u)
{
	emh_query *q;
	emh_error e;
	int64_t n = 0;
	if (!u->email || emh_repo_query(r, &q, &e))
		return false;
	emh_q_where(q, emh_q_and(q, emh_q_eq(q, "email", emh_v_text(u->email)), emh_q_ne(q, "id", emh_v_int64(u->id))));
	return emh_repo_count(r, q, &n, &e) == 0 && n > 0;
}

/*
 * Flush.  A conflict over the email names it, not the database's constraint
 * text; any other conflict -- a key the database handed out twice (a
 * sequence behind rows inserted with their ids) -- keeps the database's
 * words, which name the key: it is no duplicate email.
 */
static int users_flush(emh_repo *r, const user *u, emh_error *err)
{
	int rc = emh_web_flush(emh_repo_em(r), err);
	if (rc == EMH_ECONFLICT && email_taken(r, u)) {
		emh_error_set(err, rc, "a user with email '%s' already exists", u->email);
		emh_error_context(err, rc, emh_em_context(emh_repo_em(r)));
	}
	return rc;
}

/* The user of the route's <id>; EMH_ENOTFOUND naming it. */
static int user_at(emh_scope *s, const emh_request *req, emh_repo **r, user **u, emh_error *err)
{
	int64_t id = emh_request_param_int64(req, "id");
	int rc = emh_scope_repo_at(s, NEED_USERS, r, err);
	if (rc == 0 && (rc = emh_repo_get(*r, emh_v_int64(id), (void **)u, err)) == EMH_ENOTFOUND) {
		emh_error_set(err, rc, "no user %lld", (long long)id);
		emh_error_context(err, rc, emh_em_context(emh_repo_em(*r)));
	}
	return rc;
}

static int users_create(emh_scope *s, const emh_request *req, emh_response *res, emh_error *err)
{
	emh_repo *r;
	user *u;
	int rc;
	if ((rc = emh_scope_repo_at(s, NEED_USERS, &r, err)) || (rc = emh_repo_new(r, (void **)&u, err)) ||
	    (rc = read_user(req, r, u, 0, res, err)) || (rc = users_flush(r, u, err)))
		return rc;
	return emh_web_reply_created(s, res, "", emh_repo_em(r), &user_entity, u, err);
}

static int users_list(emh_scope *s, const emh_request *req, emh_response *res, emh_error *err)
{
	emh_repo *r;
	int rc;
	if ((rc = emh_scope_repo_at(s, NEED_USERS, &r, err)) || (rc = emh_em_set_readonly(emh_repo_em(r), err)))
		return rc;
	return emh_web_list(r, NULL, req, &(emh_web_list_opts){.items_key = "users"}, res, err);
}

static int users_get(emh_scope *s, const emh_request *req, emh_response *res, emh_error *err)
{
	emh_repo *r;
	user *u;
	int rc;
	if ((rc = emh_scope_repo_at(s, NEED_USERS, &r, err)) || (rc = emh_em_set_readonly(emh_repo_em(r), err)) ||
	    (rc = user_at(s, req, &r, &u, err)))
		return rc;
	return emh_web_reply_object(res, 200, emh_repo_em(r), &user_entity, u, 0, err);
}

static int users_update(emh_scope *s, const emh_request *req, emh_response *res, emh_error *err)
{
	emh_repo *r;
	user *u;
	int rc;
	if ((rc = user_at(s, req, &r, &u, err)))
		return rc;
	const char *name = u->name, *email = u->email;
	if ((rc = read_user(req, r, u, EMH_JSON_PARTIAL, res, err)))
		return rc;
	if (u->name == name && u->email == email)
		return emh_error_set(err, EMH_EINVAL, "nothing to update: give 'name' and/or 'email'");
	if ((rc = users_flush(r, u, err)))
		return rc;
	return emh_web_reply_object(res, 200, emh_repo_em(r), &user_entity, u, 0, err);
}

static int users_delete(emh_scope *s, const emh_request *req, emh_response *res, emh_error *err)
{
	emh_repo *r;
	user *u;
	int rc;
	if ((rc = user_at(s, req, &r, &u, err)) || (rc = emh_em_remove(emh_repo_em(r), u, err)) ||
	    (rc = emh_web_flush(emh_repo_em(r), err)))
		return rc;
	return emh_response_set(res, 204, NULL, NULL, 0, err);
}

static const emh_route users_routes[] = {
	EMH_ROUTE_DOC("GET", "", users_list, .summary = "list users", .reply = &user_entity,
		      .flags = EMH_ROUTE_LIST, .items_key = "users"),
	EMH_ROUTE_DOC("POST", "", users_create, .summary = "add a user", .body = &user_entity, .reply = &user_entity,
		      .flags = EMH_ROUTE_CREATED),
	EMH_ROUTE_DOC("GET", "/:id", users_get, .summary = "a user", .reply = &user_entity),
	EMH_ROUTE_DOC("PUT", "/:id", users_update, .summary = "change a user's name or email", .body = &user_entity,
		      .reply = &user_entity, .flags = EMH_ROUTE_PARTIAL),
	EMH_ROUTE_DOC("DELETE", "/:id", users_delete, .summary = "remove a user", .flags = EMH_ROUTE_NO_CONTENT),
};

EMH_SERVICE_EXPORT const emh_service emh_service_descriptor = {
	EMH_SERVICE_HEADER,
	.name = "users",
	.version = "1.0",
	.description = "users: create, read, list, update and delete users (default context)",
	.needs = users_needs,
	.nneeds = EMH_NEEDS_COUNT(users_needs),
	.routes = users_routes,
	.nroutes = EMH_ROUTES_COUNT(users_routes),
};
