/* SPDX-License-Identifier: MIT */
/* emhost/error.h: portable status codes and the caller-owned error struct. */
#ifndef EMHOST_ERROR_H
#define EMHOST_ERROR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Every fallible emhost call returns int: 0 on success or one of the negative
 * EMH_E* codes below.  The table is append-only: a code keeps its number
 * forever (codes cross the plugin ABI and are stored in logs and metrics).
 *
 *   X(NAME, number, "message")
 */
#define EMH_ERRNO_MAP(X)                                                      \
	X(ENOMEM, -1, "out of memory")                                        \
	X(EINVAL, -2, "invalid argument")                                     \
	X(ENOTFOUND, -3, "not found")                                         \
	X(ECONFLICT, -4, "conflict (a unique value, a row changed since it was loaded, or a lock held)") \
	X(EUNAVAILABLE, -5, "database unavailable")                           \
	X(ETIMEOUT, -6, "timed out waiting for a pooled connection")          \
	X(ECONFIG, -7, "configuration error")                                 \
	X(EPLUGIN, -8, "plugin error")                                        \
	X(ECROSSCTX, -9, "object belongs to another context")                 \
	X(EUNSUPPORTED, -10, "not supported by this driver")                  \
	X(ENOCONTEXT, -11, "no such context")                                 \
	X(EDRIVER, -12, "database error")                                     \
	X(ESCHEMA, -13, "schema mismatch")                                    \
	X(ESTATE, -14, "operation not valid in the current state")            \
	X(ENOENTITY, -15, "entity not registered in this context")            \
	X(EIO, -16, "input/output error")                                     \
	X(ERETRY, -17, "transient failure, retry the transaction")            \
	X(ENOSERVICE, -18, "no such service")

enum emh_status {
	EMH_OK = 0,
#define EMH__ERRNO_ENUM(name, num, msg) EMH_##name = (num),
	EMH_ERRNO_MAP(EMH__ERRNO_ENUM)
#undef EMH__ERRNO_ENUM
};

/* Sizes of the fixed buffers in emh_error; messages longer than that are cut. */
#define EMH_ERROR_MSG_MAX 512
#define EMH_ERROR_CTX_MAX 64

/*
 * The error every call fills on failure (never on success).  Caller-owned,
 * usually on the stack; no allocation happens on the error path.
 *
 *   code       the EMH_E* code the call returned
 *   native     the driver's own error number (errno, MySQL error, Mongo code), 0 if none
 *   sqlstate   the five-character SQLSTATE where the database gave one, else ""
 *   retryable  true when retrying the whole transaction may succeed (deadlock,
 *              serialization failure, SQLite busy; a stale version or a lock
 *              not available, both EMH_ECONFLICT -- never a unique violation)
 *   context    name of the context the failure concerns, else ""
 *   message    what went wrong and where, for humans; never holds a password
 *              or SQL text with values
 */
typedef struct emh_error {
	int code;
	int native;
	char sqlstate[6];
	bool retryable;
	char context[EMH_ERROR_CTX_MAX];
	char message[EMH_ERROR_MSG_MAX];
} emh_error;

/* Message of a status code ("database unavailable"); "unknown error" for others. */
const char *emh_strerror(int code);
/* Name of a status code ("EMH_EUNAVAILABLE"); "EMH_E?" for unknown codes. */
const char *emh_status_name(int code);

/*
 * Fill err (if not NULL) with code and a printf-formatted message, clearing
 * the other members.  Returns code, so `return emh_error_set(err, ...)` is one
 * line.  Thread-safe (touches only err).
 */
int emh_error_set(emh_error *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * Put a printf-formatted prefix in front of err's message, keeping every
 * other member (native code, SQLSTATE, retryable): "insert into 'users': "
 * + the driver's text.  Returns err->code (code when err is NULL).
 */
int emh_error_prefix(emh_error *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Set err->context (if err is not NULL) and return err->code or code when err is NULL. */
int emh_error_context(emh_error *err, int code, const char *context);

/*
 * Copy s into out (cap bytes, NUL-terminated) for a message or a log line:
 * valid UTF-8 is kept, control characters and bytes that are not valid UTF-8
 * are written as \xNN, and the result is cut at a character boundary.
 * s may be NULL (""); returns out.  For text that came from outside (a
 * request path, a key) before it goes into an error, a log or JSON.
 */
const char *emh_text_clean(const char *s, char *out, size_t cap);

/* Reset err to "no error". */
void emh_error_clear(emh_error *err);

#ifdef __cplusplus
}
#endif
#endif
