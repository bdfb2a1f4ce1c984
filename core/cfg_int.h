/* SPDX-License-Identifier: MIT */
/*
 * core/cfg_int.h: what the configuration files (core/cfg_*.c) share among
 * themselves and no other part of the core needs.  The rest of the core
 * sees core/cfg.h only.
 *
 *   cfg_model.c   settings, contexts, services, release, lookups, small helpers
 *   cfg_expand.c  ${VAR} expansion
 *   cfg_file.c    the libconfig file (the one file that includes libconfig.h)
 *   cfg_url.c     connection URLs, in the forms the drivers declare
 *   cfg_env.c     EMH_CONTEXT_* and EMH_DEFAULT_CONTEXT
 *   cfg_check.c   the common keys, value kinds and ranges, a context against its driver
 */
#ifndef EMH_CORE_CFG_INT_H
#define EMH_CORE_CFG_INT_H

#include <stdbool.h>
#include <stddef.h>

#include <emhost/buf.h>

#include "cfg.h"

static inline int emh__cfg_oom(emh_error *err) { return emh_error_set(err, EMH_ENOMEM, "out of memory"); }

/* ---- cfg_model.c ---- */

/* A malloc'd formatted string (no size limit), or NULL when out of memory. */
char *emh__strf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

bool emh__in_list(const char *const *list, const char *s);
/*
 * Context and service names: [a-z_][a-z0-9_]*, at most EMH__NAME_MAX bytes
 * (what emh_error.context and identifiers hold).  Why s is not one, or NULL.
 */
#define EMH__NAME_MAX 63
const char *emh__name_problem(const char *s);
/* printf arguments for "%.*s%s": s in a message, at most 64 bytes of it and then "...". */
#define EMH__SHOWN(s) (int)(strlen(s) > 64 ? 64 : strlen(s)), (s), (strlen(s) > 64 ? "..." : "")
/* An environment variable name s[0..n): [A-Za-z_][A-Za-z0-9_]*. */
bool emh__valid_varname(const char *s, size_t n);

emh__setting *emh__settings_find_mut(emh__settings *s, const char *key);
/* Remove key, keeping the order of the others; absent is fine. */
void emh__settings_remove(emh__settings *s, const char *key);
/* Replace the single setting st (a top-level key) with copies.  Returns 0 or EMH_ENOMEM. */
int emh__setting_assign(emh__setting *st, const char *key, const char *value, const char *origin,
			const char *path, int ltype);
/* Append a zeroed context; NULL when memory ran out. */
emh__ctxconf *emh__config_add_context(emh__config *cfg);
emh__ctxconf *emh__config_find_context(emh__config *cfg, const char *name);

/* ---- cfg_expand.c ---- */

/* The value of the variable name[0..n) in envp (NULL: the process environment), or NULL. */
const char *emh__getenv_n(const char *const *envp, const char *name, size_t n);

/* ---- cfg_check.c ---- */

bool emh__parse_ll(const char *s, long long *out);
const emh_param_spec *emh__spec_find(const emh_param_spec *specs, const char *key);
/*
 * The one range check of the configuration, for every integer key (ports,
 * pool sizes, timeouts) from any source: EMH_ECONFIG "WHERE: 'KEY' must be
 * in [MIN, MAX], got V" (V left out for a secret) unless min <= v <= max or
 * min == max == 0 (any value).
 */
int emh__check_range(const char *where, const char *key, long long v, long long min, long long max, bool secret,
		     emh_error *err);
/* Append where st is to b, for errors: "FILE:LINE: contexts.[1].port" or "env X: context 'c', key 'k'". */
void emh__setting_where(const char *ctxname, const emh__setting *st, emh_buf *b);
/* Fail with EMH_ECONFIG "WHERE: message" (WHERE as emh__setting_where). */
int emh__setting_fail(const char *ctxname, const emh__setting *st, emh_error *err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/*
 * Check st against its spec: secret flag, kind (the value rewritten in
 * canonical form: integers in decimal, booleans "true"/"false"), range, and
 * for the common keys their own rules (schema's values, password_env a
 * variable name).  ctxname names the context where st has no config path.
 */
int emh__setting_check(const char *ctxname, emh__setting *st, const emh_param_spec *spec, emh_error *err);
/*
 * For a context that names no driver (yet): EMH_ECONFIG for the first key
 * that neither the common set nor any of the drivers knows, with the
 * closest valid key as a hint ("unknown key 'drvier' (did you mean
 * 'driver'? ...)"), so a misspelt key is reported before what it left
 * missing.  0 when every key is known to some driver.
 */
int emh__config_check_unknown_keys(const emh__ctxconf *c, const emh_driver *const *drivers, size_t ndrivers,
				   emh_error *err);

/* ---- cfg_url.c ---- */

/* The length of url's scheme (letters, digits, '+', '.', '-' before the ':'), as the url is parsed. */
size_t emh__url_scheme_len(const char *url);

/* Does driver d (may be NULL) declare the scheme text[0..slen) (any case)? */
bool emh__driver_has_scheme(const emh_driver *d, const char *text, size_t slen);

/*
 * Apply the url written in a context of the file: its pieces fill only the
 * keys c does not set itself (explicit keys of the file win).
 */
int emh__url_fill(emh__ctxconf *c, const char *url, const char *origin, const emh_driver *const *drivers,
		  size_t ndrivers, emh_error *err);

#endif
