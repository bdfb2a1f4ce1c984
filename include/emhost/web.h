/* SPDX-License-Identifier: MIT */
/*
 * emhost/web.h: the service toolkit (libemhost-web, `pkg-config --cflags
 * --libs emhost-web`): what every HTTP service needs on top of the service
 * ABI -- entities to and from JSON (jansson) from their field metadata with
 * per-field validation, the one mapping from EMH_E* codes to HTTP answers,
 * 201 + Location, paged listings, a retry wrapper for a unit of work, and
 * the OpenAPI 3.1 description of services' declared routes.
 *
 * libemhost stays free of HTTP and JSON; this library is what emhostd and
 * service modules link.  Every function is thread-safe on its own
 * arguments.
 *
 * Field flags it reads (entity.h): EMH_F_READONLY, EMH_F_HIDDEN.
 *
 * JSON of an entity (emh_json_from_object): one member per column field,
 * named after the field, except EMH_F_HIDDEN fields (never serialised: a
 * password hash); relations are not serialised.  bool: true/false;
 * int32/int64: numbers (int64 beyond +-2^53 as decimal strings with
 * EMH_JSON_INT64_STRINGS); double: a number (null when not finite);
 * text: a string (stored bytes that are not UTF-8 as U+FFFD each); blob:
 * standard base64 (RFC 4648, padded); timestamp:
 * RFC 3339 UTC with microseconds ("2024-05-01T12:00:00.123456Z"); json: the
 * JSON value itself; a NULL: null.
 */
#ifndef EMHOST_WEB_H
#define EMHOST_WEB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include <emhost/em.h>
#include <emhost/entity.h>
#include <emhost/error.h>
#include <emhost/service.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- JSON flags ---- */
enum {
	EMH_JSON_INT64_STRINGS = 1u << 0, /* int64 beyond +-2^53 as strings (and accepted as strings) */
	EMH_JSON_PARTIAL = 1u << 1,       /* input: nothing is required (an update: only what is given) */
	EMH_JSON_IGNORE_UNKNOWN = 1u << 2, /* input: members that are no field are ignored, not refused */
	EMH_JSON_REFUSE_READONLY = 1u << 3, /* input: read-only members are refused, not ignored */
};

/* The service's EMH_SVC_INT64_STRINGS as EMH_JSON_INT64_STRINGS, for the
 * calls below from a handler. */
unsigned emh_web_json_flags(const emh_scope *scope);

/*
 * obj (an object of entity e) as a new JSON object; em (may be NULL) tells
 * the NULL scalars of a managed object (emh_em_is_null).  NULL only when
 * out of memory.
 */
json_t *emh_json_from_object(emh_em *em, const emh_entity *e, const void *obj, unsigned flags);
/* n objects as a new JSON array. */
json_t *emh_json_from_list(emh_em *em, const emh_entity *e, void *const *items, size_t n, unsigned flags);

/*
 * Copy the members of in (a JSON object) into obj, an object of entity e
 * in fork em (new from emh_repo_new, or loaded: strings go to em's arena).
 * Every member is checked, and every problem is kept, not only the first:
 *   unknown    a member that is no column field of e (unless
 *              EMH_JSON_IGNORE_UNKNOWN)
 *   read_only  a read-only member given with EMH_JSON_REFUSE_READONLY (else
 *              it is ignored and obj keeps its value)
 *   type       a value of the wrong JSON type (null for a field that is not
 *              nullable, a number out of an int32's range, a string with a
 *              NUL, a timestamp that is not RFC 3339, base64 that is not)
 *   too_long   text, json or blob over the field's max_len
 *   missing    a required field absent (not with EMH_JSON_PARTIAL): every
 *              field that is not nullable, read-only, generated, a version
 *              or a filter
 * Nothing is written to obj unless every member is good.  Returns 0;
 * EMH_EINVAL with err naming the first problem and, when problems is not
 * NULL, *problems a new JSON array of {"field","problem","message"} (one
 * per problem); EMH_ENOMEM.
 */
int emh_json_into_object(emh_em *em, const emh_entity *e, json_t *in, void *obj, unsigned flags,
			 json_t **problems, emh_error *err);

/* An RFC 3339 UTC string of t into buf (at least 32 bytes). */
const char *emh_web_time_format(emh_time t, char *buf, size_t cap);
/* Parse RFC 3339 ("2024-05-01T12:00:00Z", fraction and offset optional);
 * false when s is not one. */
bool emh_web_time_parse(const char *s, emh_time *out);
/* Now, in microseconds since the epoch. */
emh_time emh_web_now(void);

/* ---- standard answers ---- */

/*
 * The one mapping from EMH_E* codes to HTTP statuses: EMH_EINVAL 400,
 * EMH_ENOTFOUND and EMH_ENOSERVICE 404, EMH_ECONFLICT 409,
 * EMH_EUNAVAILABLE, EMH_ETIMEOUT, EMH_ENOFD and EMH_ERETRY 503 (with
 * Retry-After: 1), everything else 500.
 */
int emh_web_status(int code);
/* The "code" member of an error body for an HTTP status ("not_found"). */
const char *emh_web_status_code(int status);

/*
 * Answer err as the error body every emhost error has:
 *   {"error":{"code":"not_found","message":"...","context":"default"}}
 * with the status of emh_web_status(err->code).  Text that came from a
 * database or the core -- every 500 and 503, and a 400 or 409 a driver
 * wrote -- may hold SQL or values: the body then carries a fixed text for
 * its code, and the whole message goes to h's log (h may be NULL: not
 * logged) prefixed by what (the request's URI).  res is reset first.
 */
void emh_web_answer_error(emh_response *res, const emh_error *err, emh_host *h, const char *what);
/* An error body of status with message and context (both cleaned), into res (reset first). */
void emh_web_answer_status(emh_response *res, int status, const char *message, const char *context);

/* Answer j (a reference taken, decref'd in every case) with status as
 * application/json.  Returns 0 or EMH_ENOMEM. */
int emh_web_reply_json(emh_response *res, int status, json_t *j, emh_error *err);
/* Answer obj as JSON (emh_json_from_object) with status. */
int emh_web_reply_object(emh_response *res, int status, emh_em *em, const emh_entity *e, const void *obj,
			 unsigned flags, emh_error *err);
/*
 * 201 + Location: obj as JSON, and Location "/<mount><collection>/<key>"
 * (collection is the route's path below the mount, "" or "/orders").
 */
int emh_web_reply_created(emh_scope *scope, emh_response *res, const char *collection, emh_em *em,
			  const emh_entity *e, const void *obj, emh_error *err);

/*
 * The request body as an object of entity e, into obj (emh_json_into_object
 * with flags).  When it is missing, malformed, not a JSON object or has bad
 * members, res gets the 400 answer -- the error body with a "fields" array
 * listing every problem -- and EMH_EINVAL is returned with err naming the
 * first: return it from the handler (emhostd keeps a handler's own answer
 * when its status is the one its code maps to, and so does every caller
 * following emh_web_answer).  Returns 0, EMH_EINVAL, EMH_ENOMEM.
 */
int emh_web_read_body(const emh_request *req, emh_em *em, const emh_entity *e, void *obj, unsigned flags,
		      emh_response *res, emh_error *err);

/*
 * What a caller of emh_scope_handle answers for its return code rc: res as
 * the handler left it when rc is 0, or when it is a 4xx answer of the
 * status rc maps to (the handler's own error body, e.g. per-field errors);
 * otherwise the error body of err (emh_web_answer_error).
 */
void emh_web_answer(emh_response *res, int rc, const emh_error *err, emh_host *h, const char *what);

/* ---- query arguments, listings ---- */

/*
 * An integer query argument name in [min, max] into *out, def when absent.
 * EMH_EINVAL naming the argument and the range otherwise.
 */
int emh_web_arg_int64(const emh_request *req, const char *name, int64_t def, int64_t min, int64_t max,
		      int64_t *out, emh_error *err);

/* Options of emh_web_list; zero means the default. */
typedef struct emh_web_list_opts {
	int64_t default_limit; /* 0 = 20 */
	int64_t max_limit;     /* 0 = 1000 */
	const char *items_key; /* NULL = "items" */
	unsigned flags;        /* EMH_JSON_* */
} emh_web_list_opts;

/*
 * A paged listing: ?limit= (1..max_limit, default_limit when absent) and
 * ?offset= (>= 0) validated, q (conditions and order; NULL: every row by
 * key) paged with them, emh_repo_find_page, and the answer 200
 *   {"<items_key>":[...],"total":N,"limit":L,"offset":O}.
 * o may be NULL.  Returns 0, EMH_EINVAL (a bad argument), or what
 * emh_repo_find_page returns.
 */
int emh_web_list(emh_repo *repo, emh_query *q, const emh_request *req, const emh_web_list_opts *o,
		 emh_response *res, emh_error *err);

/* ---- retrying a unit of work ---- */

/* A unit of work of a handler, run by emh_web_retry. */
typedef int (*emh_web_work_fn)(emh_scope *scope, void *ud, emh_error *err);

/*
 * Run fn and, while it fails in a way retrying may cure (EMH_ERETRY, or
 * err.retryable: a deadlock, a serialization failure, a busy SQLite, a stale
 * version, the connection budget full), reset the scope (emh_scope_reset:
 * transactions rolled back, objects forgotten, so fn loads fresh rows),
 * wait a short random while (1 ms doubling up to 100 ms, spread) and run it
 * again, at most max_attempts times (<= 0: 5).  fn must undo what it did
 * outside the scope's forks before it fails, as a retry repeats it.  A
 * scope that refused a wait (EMH_FORK_NOWAIT, emh_scope_would_wait) is not
 * retried: its answer is not the request's anyway.
 * Returns 0 or the last attempt's status with err.
 */
int emh_web_retry(emh_scope *scope, emh_web_work_fn fn, void *ud, int max_attempts, emh_error *err);

/* emh_web_flush's limits: tries, and the time after which no new try starts. */
#define EMH_WEB_FLUSH_TRIES 10
#define EMH_WEB_FLUSH_BUDGET_MS 2000

/*
 * emh_em_flush, tried again while it fails with EMH_ERETRY (a deadlock, a
 * serialization failure, a busy SQLite: what the driver says to retry),
 * with a growing pause, at most EMH_WEB_FLUSH_TRIES times and never
 * starting a try EMH_WEB_FLUSH_BUDGET_MS after the first (one try may wait
 * a whole busy timeout).  A failed flush leaves the fork as it was, so the
 * same changes are sent again; for a unit of work that must reload what it
 * read, use emh_web_retry.  A last EMH_ERETRY is returned as it is (503
 * with Retry-After).
 */
int emh_web_flush(emh_em *em, emh_error *err);

/* ---- OpenAPI ---- */

/*
 * The OpenAPI 3.1 document of every service of s that declares routes:
 * paths "/<mount><route path>" with their parameters (path parameters,
 * ?limit=&offset= of listings), request bodies and answers from the routes'
 * docs and the entities' fields, and the error answers (400, 404, 405, 409,
 * 500, 503) with the error body's schema.  title names the API.  A new
 * object, NULL when out of memory.  emhostd serves it at
 * GET /_emhost/openapi.json.
 */
json_t *emh_web_openapi(emh_services *s, const char *title);

#ifdef __cplusplus
}
#endif
#endif
