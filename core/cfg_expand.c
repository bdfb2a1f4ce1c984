/* SPDX-License-Identifier: MIT */
/*
 * core/cfg_expand.c: ${VAR} and ${VAR:-fallback} expansion of configuration
 * strings.  One pass over the input, each character looked at once, so the
 * time is linear in the input whatever it holds; fallbacks nest at most
 * EXPAND_MAX_DEPTH deep, so the recursion (one level per fallback) is
 * bounded too.  A fallback that is not used is still parsed (its syntax is
 * checked) but not expanded: its variables need not be set.
 */
#include "config.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <emhost/buf.h>

#include "cfg_int.h"

extern char **environ;

/* ${A:-${B:-...}} deeper than this is an error, not a stack to exhaust. */
#define EXPAND_MAX_DEPTH 16

struct expansion {
	const char *s;
	size_t len, i;
	const char *const *envp;
	const char *where; /* "FILE:LINE: contexts.[0].path", "api" */
	emh_buf *out;
	emh_error *err;
};

const char *emh__getenv_n(const char *const *envp, const char *name, size_t n)
{
	const char *const *e = envp ? envp : (const char *const *)environ;
	for (; e && *e; e++)
		if (strncmp(*e, name, n) == 0 && (*e)[n] == '=')
			return *e + n + 1;
	return NULL;
}

const char *emh__getenv(const char *const *envp, const char *name)
{
	return name ? emh__getenv_n(envp, name, strlen(name)) : NULL;
}

static int expand_fail(const struct expansion *x, const char *what)
{
	return emh_error_set(x->err, EMH_ECONFIG, "%s: %s", x->where, what);
}

static int expand_run(struct expansion *x, int depth, bool emit);

/*
 * The reference starting at x->i ("${"): ${NAME} or ${NAME:-fallback}.
 * depth is the number of fallbacks around it; emit false while inside a
 * fallback that is not used.
 */
static int expand_ref(struct expansion *x, int depth, bool emit)
{
	const char *s = x->s;
	size_t name = x->i + 2, j = name;
	bool fallback;
	while (j < x->len && (isalnum((unsigned char)s[j]) || s[j] == '_'))
		j++;
	if (j < x->len && s[j] == '}')
		fallback = false;
	else if (j + 1 < x->len && s[j] == ':' && s[j + 1] == '-')
		fallback = true;
	else if (j >= x->len)
		return expand_fail(x, "unterminated '${' (write $$ for a literal '$')");
	else
		return expand_fail(x, "bad variable reference (use ${NAME} or ${NAME:-fallback}, $$ for a literal '$')");
	if (!emh__valid_varname(s + name, j - name))
		return expand_fail(x, "bad variable name in '${' (use ${NAME} or ${NAME:-fallback})");
	if (fallback && depth >= EXPAND_MAX_DEPTH)
		return emh_error_set(x->err, EMH_ECONFIG, "%s: '${NAME:-fallback}' nested more than %d deep", x->where,
				     EXPAND_MAX_DEPTH);
	const char *v = emh__getenv_n(x->envp, s + name, j - name);
	bool use_fallback = fallback && !(v && *v);
	if (emit && v && !use_fallback)
		emh_buf_adds(x->out, v);
	else if (emit && !fallback) {
		/* named whole up to 64 bytes, so the rest of the message survives a very long name */
		int shown = j - name > 64 ? 64 : (int)(j - name);
		const char *more = j - name > 64 ? "..." : "";
		return emh_error_set(x->err, EMH_ECONFIG,
				     "%s: environment variable '%.*s%s' is not set (write ${%.*s%s:-fallback} for a default)",
				     x->where, shown, s + name, more, shown, s + name, more);
	}
	x->i = fallback ? j + 2 : j + 1;
	return fallback ? expand_run(x, depth + 1, emit && use_fallback) : 0;
}

/*
 * Expand from x->i to the end of the input (depth 0), or to the '}' closing
 * the fallback being read (depth > 0), which is consumed.  $$ is one literal
 * '$'; any other '$' not starting "${" is kept.
 */
static int expand_run(struct expansion *x, int depth, bool emit)
{
	const char *s = x->s;
	while (x->i < x->len) {
		size_t i = x->i;
		if (s[i] == '}' && depth > 0) {
			x->i++;
			return 0;
		}
		if (s[i] == '$' && i + 1 < x->len && s[i + 1] == '$') {
			if (emit)
				emh_buf_add(x->out, "$", 1);
			x->i += 2;
		} else if (s[i] == '$' && i + 1 < x->len && s[i + 1] == '{') {
			int rc = expand_ref(x, depth, emit);
			if (rc)
				return rc;
		} else {
			size_t j = i + 1;
			while (j < x->len && s[j] != '$' && s[j] != '}')
				j++;
			if (emit)
				emh_buf_add(x->out, s + i, j - i);
			x->i = j;
		}
	}
	return depth > 0 ? expand_fail(x, "unterminated '${' (write $$ for a literal '$')") : 0;
}

int emh__config_expand(const char *s, const char *const *envp, const char *where, char **out, emh_error *err)
{
	emh_buf b = EMH_BUF_INIT;
	struct expansion x = { .s = s, .len = strlen(s), .envp = envp, .where = where, .out = &b, .err = err };
	*out = NULL;
	int rc = expand_run(&x, 0, true);
	if (!rc && b.oom)
		rc = emh__cfg_oom(err);
	if (rc) {
		emh_buf_release(&b);
		return rc;
	}
	*out = emh_buf_take(&b);
	return *out ? 0 : emh__cfg_oom(err);
}

int emh__config_expand_api(const char *s, const char *const *envp, const char *ctx, const char *key, char **out,
			   emh_error *err)
{
	char *where = emh__strf("api: context '%s', key '%s'", ctx, key);
	if (!where) {
		*out = NULL;
		return emh__cfg_oom(err);
	}
	int rc = emh__config_expand(s, envp, where, out, err);
	free(where);
	return rc;
}
