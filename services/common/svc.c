/* SPDX-License-Identifier: MIT */
/* services/common/svc.c: helpers shared by the bundled services (compiled into each module). */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "svc.h"

int svc_reply_json(emh_response *res, int status, json_t *j, emh_error *err)
{
	char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	if (!s)
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	return emh_response_set_owned(res, status, "application/json", s, strlen(s), err);
}

int svc_reply_method(emh_response *res, const emh_request *req, const char *allow, emh_error *err)
{
	/* allow is the service's own short list: a longer one is cut in the
	 * message only (the Allow header has it whole) */
	char method[64], msg[sizeof "method  is not allowed here (allowed: )" + sizeof method + 128];
	snprintf(msg, sizeof msg, "method %s is not allowed here (allowed: %.128s)",
		 emh_text_clean(req->method, method, sizeof method), allow);
	json_t *j = json_pack("{s:{s:s,s:s,s:s}}", "error", "code", "method_not_allowed", "message", msg, "context", "");
	int rc = svc_reply_json(res, 405, j, err);
	return rc ? rc : emh_response_add_header(res, "Allow", allow, err);
}

int svc_body_object(const emh_request *req, json_t **out, emh_error *err)
{
	*out = NULL;
	if (!req->body || req->body_len == 0)
		return emh_error_set(err, EMH_EINVAL, "request body must be a JSON object");
	json_error_t je;
	json_t *j = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &je);
	if (!j)
		return emh_error_set(err, EMH_EINVAL, "malformed JSON body at line %d, column %d: %s", je.line,
				     je.column, je.text);
	if (!json_is_object(j)) {
		json_decref(j);
		return emh_error_set(err, EMH_EINVAL, "request body must be a JSON object");
	}
	*out = j;
	return 0;
}

int svc_member_string(json_t *o, const char *member, bool required, const char **out, emh_error *err)
{
	*out = NULL;
	json_t *v = json_object_get(o, member);
	if (!v || json_is_null(v)) {
		if (required)
			return emh_error_set(err, EMH_EINVAL, "member '%s' is required", member);
		return 0;
	}
	if (!json_is_string(v))
		return emh_error_set(err, EMH_EINVAL, "member '%s' must be a string", member);
	const char *s = json_string_value(v);
	if (!*s || strlen(s) != json_string_length(v))
		return emh_error_set(err, EMH_EINVAL, "member '%s' must be a non-empty string without NUL", member);
	*out = s;
	return 0;
}

int svc_member_int(json_t *o, const char *member, bool required, int64_t *out, bool *present, emh_error *err)
{
	if (present)
		*present = false;
	json_t *v = json_object_get(o, member);
	if (!v || json_is_null(v)) {
		if (required)
			return emh_error_set(err, EMH_EINVAL, "member '%s' is required", member);
		return 0;
	}
	if (!json_is_integer(v))
		return emh_error_set(err, EMH_EINVAL, "member '%s' must be an integer", member);
	*out = (int64_t)json_integer_value(v);
	if (present)
		*present = true;
	return 0;
}

bool svc_path_id(const char *path, const char *prefix, int64_t *id)
{
	size_t n = strlen(prefix);
	if (strncmp(path, prefix, n) != 0)
		return false;
	const char *p = path + n;
	if (*p < '1' || *p > '9')
		return false;
	char *end;
	errno = 0;
	long long v = strtoll(p, &end, 10);
	if (errno || (*end && strcmp(end, "/") != 0))
		return false;
	*id = v;
	return true;
}

int svc_arg_int(const emh_request *req, const char *name, int64_t def, int64_t max, int64_t *out, emh_error *err)
{
	const char *v = emh_request_arg(req, name);
	*out = def;
	if (!v)
		return 0;
	char *end;
	errno = 0;
	long long n = strtoll(v, &end, 10);
	if (!*v || errno || *end || n < 0 || n > max)
		return emh_error_set(err, EMH_EINVAL, "query argument '%s' must be an integer from 0 to %lld", name,
				     (long long)max);
	*out = n;
	return 0;
}

emh_time svc_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (emh_time)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

json_t *svc_json_time(emh_time t)
{
	time_t secs = (time_t)(t / 1000000);
	long us = (long)(t % 1000000);
	if (us < 0) {
		us += 1000000;
		secs--;
	}
	struct tm tm;
	char buf[64], out[80];
	gmtime_r(&secs, &tm);
	strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, sizeof out, "%s.%06ldZ", buf, us);
	return json_string(out);
}

static int64_t svc_mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int svc_flush(emh_em *em, emh_error *err)
{
	int64_t start = svc_mono_ns();
	long pause_ms = 2;
	for (int attempt = 1;; attempt++) {
		int rc = emh_em_flush(em, err);
		if (rc != EMH_ERETRY || attempt >= SVC_FLUSH_TRIES)
			return rc;
		/* one try may itself wait a whole busy timeout: the budget is
		 * for all of them, and no try starts past it */
		if (svc_mono_ns() - start + pause_ms * 1000000 >= (int64_t)SVC_FLUSH_BUDGET_MS * 1000000)
			return rc;
		struct timespec ts = {0, pause_ms * 1000000};
		nanosleep(&ts, NULL);
		if (pause_ms < 100)
			pause_ms *= 2;
	}
}
