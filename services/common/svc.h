/* SPDX-License-Identifier: MIT */
/* services/common/svc.h: small helpers shared by the bundled services (JSON bodies, paths, arguments). */
#ifndef EMH_SERVICES_SVC_H
#define EMH_SERVICES_SVC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include <emhost/emhost.h>
#include <emhost/service.h>

/*
 * Answer with j as a JSON body (compact) and status; takes the reference to
 * j (decref'd in every case).  Returns 0 or EMH_ENOMEM.
 */
int svc_reply_json(emh_response *res, int status, json_t *j, emh_error *err);

/* 405 with the same error body as the daemon's, naming the allowed methods. */
int svc_reply_method(emh_response *res, const emh_request *req, const char *allow, emh_error *err);

/*
 * The request body as a JSON object.  EMH_EINVAL with the parser's message
 * and position when it is missing, malformed or not an object.
 */
int svc_body_object(const emh_request *req, json_t **out, emh_error *err);

/*
 * A string member of o: *out = NULL when absent (and !required).  EMH_EINVAL
 * naming the member when it is of another type, empty, or missing but
 * required.  The string is borrowed from o.
 */
int svc_member_string(json_t *o, const char *member, bool required, const char **out, emh_error *err);

/* An integer member, as for svc_member_string; *present says whether it was there. */
int svc_member_int(json_t *o, const char *member, bool required, int64_t *out, bool *present, emh_error *err);

/* Parse "/123" (exactly one segment, a positive integer) into *id. */
bool svc_path_id(const char *path, const char *prefix, int64_t *id);

/*
 * A non-negative integer query argument (def when absent), at most max.
 * EMH_EINVAL naming the argument otherwise.
 */
int svc_arg_int(const emh_request *req, const char *name, int64_t def, int64_t max, int64_t *out,
		emh_error *err);

/* Now, in microseconds since the epoch. */
emh_time svc_now(void);
/* A timestamp as an RFC 3339 string ("2024-05-01T12:00:00.123456Z"), a new JSON string. */
json_t *svc_json_time(emh_time t);

/* An int64 as a JSON integer (jansson's json_int_t is long long). */
static inline json_t *svc_json_int(int64_t v) { return json_integer((json_int_t)v); }

/* svc_flush's limits: tries, and the time after which no new try starts. */
#define SVC_FLUSH_TRIES 10
#define SVC_FLUSH_BUDGET_MS 2000

/*
 * emh_em_flush, retried while it fails with EMH_ERETRY (a deadlock,
 * serialization failure or busy database the driver says to retry), with
 * a growing pause, at most SVC_FLUSH_TRIES times and never starting a try
 * SVC_FLUSH_BUDGET_MS after the first (one try may wait a whole busy
 * timeout: a locked SQLite database).  A failed flush leaves the fork as it
 * was, so retrying is safe.  A last EMH_ERETRY is returned as is: the
 * daemon answers it 503 with Retry-After.
 */
int svc_flush(emh_em *em, emh_error *err);

#endif
